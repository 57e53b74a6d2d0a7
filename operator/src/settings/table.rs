//! The operator's settings, each declared once: its variable, the chart value that sets it, its
//! default, what it accepts and what it does. Start-up parsing ([`super::Vars`]), the list of
//! `SBOM_JOB_*` settings that are never forwarded, `sbomjob-operator --print-settings`,
//! docs/configuration.md and the chart's values check all come from [`ALL`].

use std::{ops::RangeInclusive, time::Duration};

use sbomjob_contract::units::{ShortDuration, ShortSize};
use serde::Serialize;

use super::{DEFAULT_JOB_RESOURCES, FORWARD_PREFIX, bounds};

/// What a setting accepts: its parser, and the words for it in messages and docs.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Any text (trimmed).
    Text,
    Bool,
    /// A whole number within the range.
    Count(RangeInclusive<usize>),
    /// Seconds or a humantime duration within the range.
    Duration(RangeInclusive<Duration>),
    /// A size in bytes (`2Gi`, `500M`) within the range, kept as written.
    Size(RangeInclusive<u64>),
    /// One of these words, any case.
    OneOf(&'static [&'static str]),
    /// JSON of the named Kubernetes type.
    Json(&'static str),
    /// Parsed by a function of its own; what it expects.
    Custom(&'static str),
}

/// One setting.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The environment variable.
    pub name: &'static str,
    /// The chart value that sets it (Markdown).
    pub chart: &'static str,
    /// The default, as a value of the setting: parsed like one when the variable is not set.
    pub default: Option<&'static str>,
    /// How the docs state the default when `default` alone does not say it (Markdown).
    pub default_doc: Option<&'static str>,
    pub kind: Kind,
    /// What it does (Markdown, one table cell).
    pub help: &'static str,
}

impl Setting {
    /// What a valid value looks like, for the message of a bad one.
    pub fn expected(&self) -> String {
        match &self.kind {
            Kind::Text => "text".into(),
            Kind::Bool => "true or false".into(),
            Kind::Count(r) => format!("a whole number from {} to {}", r.start(), r.end()),
            Kind::Duration(r) => format!(
                "a duration from {} to {}, such as 3600 (seconds), 90s, 10m or 1h",
                ShortDuration(*r.start()),
                ShortDuration(*r.end())
            ),
            Kind::Size(r) => format!(
                "a size from {} to {}, such as 2Gi or 512Mi",
                ShortSize(*r.start()),
                ShortSize(*r.end())
            ),
            Kind::OneOf(words) => one_of(words, |w| w.to_string()),
            Kind::Json(what) | Kind::Custom(what) => what.to_string(),
        }
    }

    /// The docs' "Meaning" cell: what it accepts (for the kinds that say it in a few words),
    /// then `help`.
    pub fn meaning(&self) -> String {
        let accepts = match &self.kind {
            Kind::Bool => "Boolean".to_string(),
            Kind::Count(r) => format!("Whole number from {} to {}", r.start(), r.end()),
            Kind::Duration(r) => format!(
                "Duration from {} to {}",
                ShortDuration(*r.start()),
                ShortDuration(*r.end())
            ),
            Kind::Size(r) => format!("Size from {} to {}", ShortSize(*r.start()), ShortSize(*r.end())),
            Kind::OneOf(words) => one_of(words, |w| format!("`{w}`")),
            Kind::Text | Kind::Json(_) | Kind::Custom(_) => return self.help.to_string(),
        };
        match self.help.chars().next() {
            Some(',') => format!("{accepts}{}", self.help),
            Some('(') => format!("{accepts} {}", self.help),
            _ => format!("{accepts}: {}", self.help),
        }
    }

    /// The docs' "Default" cell.
    pub fn default_cell(&self) -> String {
        match (self.default_doc, self.default) {
            (Some(doc), _) => doc.to_string(),
            (None, Some(value)) => format!("`{value}`"),
            (None, None) => "none".to_string(),
        }
    }

    /// An `SBOM_JOB_*` setting of the operator itself: it configures the Job and is never
    /// forwarded to the job container.
    pub fn is_own_job_setting(&self) -> bool {
        self.name.starts_with(FORWARD_PREFIX)
    }
}

fn one_of(words: &[&str], show: impl Fn(&str) -> String) -> String {
    match words {
        [] => String::new(),
        [one] => show(one),
        [init @ .., last] => format!(
            "{} or {}",
            init.iter().map(|w| show(w)).collect::<Vec<_>>().join(", "),
            show(last)
        ),
    }
}

/// The setting named `name`. Every name the operator reads is in [`ALL`] (a unit test reads
/// them all), so a miss is a bug here, not bad input.
pub fn get(name: &str) -> &'static Setting {
    ALL.iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} is not in settings::table::ALL"))
}

/// Whether `name` is one of the operator's own `SBOM_JOB_*` settings.
pub fn is_own_job_setting(name: &str) -> bool {
    ALL.iter().any(|s| s.name == name && s.is_own_job_setting())
}

/// One setting as `--print-settings` prints it.
#[derive(Serialize)]
pub struct Printed {
    pub name: &'static str,
    pub chart: &'static str,
    /// `null` when there is none or it depends on other settings (see `default_doc`).
    pub default: Option<&'static str>,
    pub default_doc: String,
    pub expected: String,
    pub meaning: String,
    pub own_job_setting: bool,
}

/// Every setting, as `--print-settings` prints them.
pub fn printed() -> Vec<Printed> {
    ALL.iter()
        .map(|s| Printed {
            name: s.name,
            chart: s.chart,
            default: s.default,
            default_doc: s.default_cell(),
            expected: s.expected(),
            meaning: s.meaning(),
            own_job_setting: s.is_own_job_setting(),
        })
        .collect()
}

/// In the order of docs/configuration.md.
pub static ALL: &[Setting] = &[
    Setting {
        name: "SBOM_JOB_IMAGE",
        chart: r#"`jobImage`"#,
        default: None,
        default_doc: Some(r#"**required**"#),
        kind: Kind::Text,
        help: r#"The job image: what every Job runs. See [write-your-own-job-image.md](write-your-own-job-image.md) and [entrypoints/](../entrypoints/README.md)."#,
    },
    Setting {
        name: "SBOM_JOB_IMAGE_PULL_SECRET",
        chart: r#"`jobImagePullSecret`"#,
        default: None,
        default_doc: None,
        kind: Kind::Text,
        help: r#"A pull secret (in the operator's namespace) for the job image itself, set as the job pod's `imagePullSecrets`."#,
    },
    Setting {
        name: "SBOM_JOB_IMAGE_PULL_POLICY",
        chart: r#"`jobImagePullPolicy`"#,
        default: None,
        default_doc: Some(r#"Kubernetes' default"#),
        kind: Kind::OneOf(&["Always", "IfNotPresent", "Never"]),
        help: r#"for the job container."#,
    },
    Setting {
        name: "SBOM_JOB_TIMEOUT",
        chart: r#"`jobTimeout`"#,
        default: Some("3600"),
        default_doc: Some(r#"`3600` (1 h)"#),
        kind: Kind::Duration(bounds::JOB_TIMEOUT),
        help: r#"each Job's `activeDeadlineSeconds`. When it passes, Kubernetes kills the job pod, the Job fails with `DeadlineExceeded`, and nothing is annotated."#,
    },
    Setting {
        name: "SBOM_JOB_TTL",
        chart: r#"`jobTTL`"#,
        default: Some("3600"),
        default_doc: Some(r#"`3600` (1 h)"#),
        kind: Kind::Duration(bounds::JOB_TTL),
        help: r#"each Job's `ttlSecondsAfterFinished`, how long a finished Job and its pod (and so its log) stay for inspection. `0` deletes them as soon as they finish."#,
    },
    Setting {
        name: "SBOM_JOB_SERVICE_ACCOUNT",
        chart: r#"`job.serviceAccountName`"#,
        default: None,
        default_doc: Some(r#"the namespace's `default`"#),
        kind: Kind::Text,
        help: r#"Service account of the job pods. Its token is never mounted; it matters for its `imagePullSecrets` and for admission policies."#,
    },
    Setting {
        name: "SBOM_JOB_PRIVILEGED",
        chart: r#"`job.privileged`"#,
        default: Some("false"),
        default_doc: None,
        kind: Kind::Bool,
        help: r#"Run the job container privileged and as root, for daemon-based job images (docker-in-docker). Off, the job pod meets the `restricted` Pod Security Standard; on, its namespace must allow `privileged`."#,
    },
    Setting {
        name: "SBOM_JOB_RESOURCES",
        chart: r#"`job.resources`"#,
        default: Some(DEFAULT_JOB_RESOURCES),
        default_doc: Some(r#"requests `cpu: 100m`, `memory: 256Mi`; limit `memory: 2Gi`"#),
        kind: Kind::Json("a JSON ResourceRequirements"),
        help: r#"JSON `ResourceRequirements` of the job container: `{"requests":{"cpu":"100m"},"limits":{"memory":"1Gi"}}`; `{}` for none. It replaces the default as a whole. The default (repeated in the chart's values) fits syft or trivy cataloguing ordinary images two at a time; 3 Jobs (`SBOM_JOB_MAX_PARALLEL`) request 300m CPU and 768Mi, which a small node has; the memory limit keeps one huge image from taking the node's memory (the Job is OOM-killed and fails; its images are retried alone, and a big one backs off). No CPU limit: throttling only slows a Job towards its deadline. Raise the memory for big images or a higher `ENTRYPOINT_CONCURRENCY`."#,
    },
    // The tools' caches and output, and an image pulled into an OCI layout there (`ENTRYPOINT_PULL`)
    // for each of the presets' 2 images at a time. A pod that writes more is evicted by the kubelet.
    Setting {
        name: "SBOM_JOB_TMP_SIZE",
        chart: r#"`job.tmpSize`"#,
        default: Some("4Gi"),
        default_doc: None,
        kind: Kind::Size(bounds::JOB_TMP_SIZE),
        help: r#"(`4Gi`, `512Mi`, `5G`, or bytes): the `sizeLimit` of the job pod's `/tmp` emptyDir, the only place a job container can write (its root filesystem is read-only). It holds the tools' caches and output and, with `ENTRYPOINT_PULL`, each image pulled into an OCI layout: the default leaves about 2 GiB for each of the presets' 2 images at a time. A job pod that writes more is evicted by the kubelet (the Job fails, as with too little memory). A privileged job image (docker-in-docker) also writes outside `/tmp`; bound that with an `ephemeral-storage` limit in `SBOM_JOB_RESOURCES`."#,
    },
    Setting {
        name: "SBOM_JOB_NODE_SELECTOR",
        chart: r#"`job.nodeSelector`"#,
        default: None,
        default_doc: None,
        kind: Kind::Custom("a JSON object of strings or key=value,key=value"),
        help: r#"The job pod's `nodeSelector`: a JSON object of strings, or `key=value,key=value`. E.g. `kubernetes.io/arch=amd64` for a tool built for one architecture."#,
    },
    Setting {
        name: "SBOM_JOB_TOLERATIONS",
        chart: r#"`job.tolerations`"#,
        default: None,
        default_doc: None,
        kind: Kind::Json("a JSON list of tolerations"),
        help: r#"JSON list of the job pod's tolerations."#,
    },
    Setting {
        name: "SBOM_JOB_AFFINITY",
        chart: r#"`job.affinity`"#,
        default: None,
        default_doc: None,
        kind: Kind::Json("a JSON Affinity"),
        help: r#"JSON `Affinity` of the job pod."#,
    },
    Setting {
        name: "SBOM_JOB_PRIORITY_CLASS",
        chart: r#"`job.priorityClassName`"#,
        default: None,
        default_doc: None,
        kind: Kind::Text,
        help: r#"The job pod's `priorityClassName`."#,
    },
    // 50 images per Job, 3 Jobs at once: a first cycle of 500 images at 30 s each finishes, every
    // Job within half its deadline at the presets' concurrency of 2, and at concurrency 1 too
    // (e2e/bench/defaults.sh; e2e/bench/RESULTS.md).
    Setting {
        name: "SBOM_JOB_MAX_IMAGES",
        chart: r#"`job.maxImages`"#,
        default: Some("50"),
        default_doc: None,
        kind: Kind::Count(bounds::MAX_IMAGES),
        help: r#"at most this many images per Job. A cycle with more images makes several Jobs; a failed Job holds back only its own images. Independently, a Job's `image-config.json` is kept under 512 KiB: an image with very many pods is still one element of one Job, listing as many pods as fit and counting the rest in `pods-omitted` (every pod running it is annotated when the Job succeeds). Keep a Job's work, images × time per image ÷ `ENTRYPOINT_CONCURRENCY`, well inside `SBOM_JOB_TIMEOUT` (the defaults: 50 × 30 s ÷ 2 = 750 s of 3600 s; see [sizing](#sizing-the-jobs))."#,
    },
    Setting {
        name: "SBOM_JOB_MAX_PARALLEL",
        chart: r#"`job.maxParallel`"#,
        default: Some("3"),
        default_doc: None,
        kind: Kind::Count(bounds::MAX_PARALLEL),
        help: r#"at most this many Jobs of one cycle run at once (the next starts when one ends)."#,
    },
    // Enough for 5,000 images at the default 50 per Job, with the re-planning budget on top.
    Setting {
        name: "SBOM_MAX_JOBS_PER_CYCLE",
        chart: r#"`maxJobsPerCycle`"#,
        default: Some("100"),
        default_doc: None,
        kind: Kind::Count(bounds::MAX_JOBS_PER_CYCLE),
        help: r#"at most this many Jobs in one cycle, counting the Jobs that re-plan a failed Job's images (of those, at most 32, or as many as the cycle first planned, as before). The images left over wait for the next cycle: one warning in the log with their count, and `sbomjob_images_deferred_total`. A cycle that first plans all its Jobs has none left to re-plan: the images of its failed Jobs wait too. 100 Jobs of the default 50 images cover 5,000 images a cycle."#,
    },
    Setting {
        name: "SBOM_CRON",
        chart: r#"`cron`"#,
        default: Some("0 0 * * * *"),
        default_doc: Some(
            r#"`0 0 * * * *` (hourly, at minute 0) when neither `SBOM_CRON` nor `SBOM_INTERVAL` is set"#,
        ),
        kind: Kind::Custom("5 fields, 6 with seconds first, or @hourly / @every 1h"),
        help: r#"When cycles run, in UTC: six fields with leading seconds (`0 6 * * * *`, sbom-operator's format: second 0 of minute 6 of every hour), the standard five fields (`30 6 * * *`), or a descriptor (`@hourly`, `@daily`, `@every 30m`). Weekdays are 0–6 with 0 = Sunday. `\` and `"` are removed first (sbom-operator's manifests quote the value). `@every` takes a duration from 1s to 366d, as `SBOM_INTERVAL`. An expression that never fires (`0 0 0 30 2 *`, February 30th; a seventh field, the year, that is past) stops the operator at start-up."#,
    },
    Setting {
        name: "SBOM_INTERVAL",
        chart: r#"`interval`"#,
        default: None,
        default_doc: None,
        kind: Kind::Duration(bounds::INTERVAL),
        help: r#"a cycle every this long, instead of `SBOM_CRON`. Setting both is an error."#,
    },
    Setting {
        name: "SBOM_POD_LABEL_SELECTOR",
        chart: r#"`podLabelSelector`"#,
        default: None,
        default_doc: Some(r#"all pods"#),
        kind: Kind::Text,
        help: r#"A label selector (`app in (web,api),tier!=test`): only matching pods are considered. `\` and `"` are removed first."#,
    },
    Setting {
        name: "SBOM_NAMESPACE_LABEL_SELECTOR",
        chart: r#"`namespaceLabelSelector`"#,
        default: None,
        default_doc: Some(r#"all namespaces"#),
        kind: Kind::Text,
        help: r#"A label selector on namespaces: only pods in matching namespaces are considered. `\` and `"` are removed first. The chart grants `list`/`watch` on namespaces only when this is set."#,
    },
    Setting {
        name: "SBOM_KUBERNETES_CLUSTER_ID",
        chart: r#"`clusterId`"#,
        default: Some("default"),
        default_doc: None,
        kind: Kind::Text,
        help: r#"Written as `cluster` next to every pod in `image-config.json` (the `{cluster}` placeholder of the entrypoint)."#,
    },
    Setting {
        name: "SBOM_FALLBACK_PULL_SECRET",
        chart: r#"`fallbackPullSecret`"#,
        default: None,
        default_doc: None,
        kind: Kind::Text,
        help: r#"A pull secret in the operator's namespace whose credentials are used for images that no pull secret of the pod (nor of its service account) covers."#,
    },
    // Registry tokens (ECR, GCR, ACR, GitHub) are a few KiB; 64 KiB leaves room for the largest
    // while one element with its credential stays far under the Secret budget.
    Setting {
        name: "SBOM_MAX_CREDENTIAL_SIZE",
        chart: r#"`maxCredentialSize`"#,
        default: Some("65536"),
        default_doc: Some(r#"`65536` (64 KiB)"#),
        kind: Kind::Count(bounds::MAX_CREDENTIAL_SIZE),
        help: r#"the largest pull-secret credential, in bytes (user name plus password, or what `auth` decodes to, as written into `image-config.json`), that is handed to a Job. A larger one is not copied: the image is pulled with the next matching credential (a less specific key, the pod's next pull secret, the fallback secret) or none, and each pod that uses the secret gets one Warning `CredentialTooLarge` naming the secret and its namespace (never its value). Registry tokens (ECR, GCR, ACR, GitHub) are a few KiB; the bound keeps a tenant's huge secret from filling every Job's config."#,
    },
    Setting {
        name: "SBOM_IGNORE_ANNOTATIONS",
        chart: r#"`ignoreAnnotations`"#,
        default: Some("false"),
        default_doc: None,
        kind: Kind::Bool,
        help: r#"Process every image every cycle, as if no pod were annotated."#,
    },
    Setting {
        name: "SBOM_POD_EVENTS",
        chart: r#"`podEvents` (always rendered)"#,
        default: Some("failures"),
        default_doc: None,
        kind: Kind::OneOf(&["all", "failures", "none"]),
        help: r#"Kubernetes Events (`events.k8s.io/v1`, action `Catalogue`) on the workload pods, shown by `kubectl describe pod`. `failures`: a Warning on each pod whose images a failed Job left unannotated, with the Job's reason (`BackoffLimitExceeded`, `DeadlineExceeded`, ...) and message, and the other Warnings about a pod (`ImageFailed`, `ImageSkipped`, ...); `all`: also a Normal `Processed` on each pod annotated (the note names the Job, or the digest cache, and the annotations written): one more API write per pod, so opt-in; `none`: no pod Events. Successes are summed up per Job in the Job's own `Processed` Event, which Jobs get in every case. Anything but `none` needs `create` on Events in every namespace (the chart grants it only then)."#,
    },
    Setting {
        name: "SBOM_ANNOTATION_PREFIX",
        chart: r#"`annotationPrefix`"#,
        default: Some("sbomjob.io"),
        default_doc: None,
        kind: Kind::Custom("a DNS subdomain such as sbomjob.io"),
        help: r#"Processed containers get the pod annotation `<prefix>/<container>: <imageID>`. A lower-case DNS subdomain. `ckotzbauer.sbom-operator.io` takes over the annotations of a cluster that sbom-operator processed, without redoing its work."#,
    },
    Setting {
        name: "SBOM_LOG_FORMAT",
        chart: r#"`logging.format`"#,
        default: Some("plain"),
        default_doc: None,
        kind: Kind::OneOf(&["plain", "text", "json"]),
        help: r#"one JSON object per line with `json`; `text` is `plain`."#,
    },
    Setting {
        name: "RUST_LOG",
        chart: r#"`logging.level`"#,
        default: Some("info"),
        default_doc: None,
        kind: Kind::Text,
        help: r#"A tracing filter: `debug`, `warn`, `info,sbomjob=debug`, ..."#,
    },
    Setting {
        name: "SBOM_DEBOUNCE",
        chart: r#"`debounce`"#,
        default: Some("30s"),
        default_doc: None,
        kind: Kind::Duration(bounds::DEBOUNCE),
        help: r#"when a pod starts Running with an image digest the operator has not seen before (and not annotated), a cycle runs this long afterwards; more new images in the meantime join that cycle."#,
    },
    Setting {
        name: "SBOM_CACHE_TTL",
        chart: r#"`cache.ttl`"#,
        default: Some("72h"),
        default_doc: None,
        kind: Kind::Duration(bounds::CACHE_TTL),
        help: r#"how long a processed digest counts as done in the digest cache (see below): a new pod running it is annotated without a Job while the record is younger than this, succeeded, and was made by the same job image with the same forwarded settings. `0` turns the cache off (the chart then leaves out its RBAC rule)."#,
    },
    Setting {
        name: "SBOM_CACHE_GRACE",
        chart: r#"`cache.grace`"#,
        default: Some("1h"),
        default_doc: None,
        kind: Kind::Duration(bounds::CACHE_GRACE),
        help: r#"an ImageRecord is deleted once no watched pod has run its digest for this long (or when it expires)."#,
    },
    Setting {
        name: "SBOM_REGISTRY_LOOKUP",
        chart: r#"`registryLookup.enabled`"#,
        default: Some("true"),
        default_doc: None,
        kind: Kind::Bool,
        help: r#"before making a Job for a digest that the digest cache does not cover, look among the image's referrers in its registry (the OCI referrers API, else the referrers tag schema `sha256-<hex>`) for an artifact that a Job with the same settings identity attached (`ENTRYPOINT_ATTACH=true`, any cluster, any release): found, the digest's record is written from the artifact's annotations and its pods are annotated, with no Job. Two `GET`s per image at most, with the pods' pull credentials; an unreachable or refusing registry only means a Job. See "Requests to registries" below."#,
    },
    Setting {
        name: "SBOM_REGISTRY_LOOKUP_ACCEPT",
        chart: r#"`registryLookup.acceptArtifactTypes`"#,
        default: None,
        default_doc: Some("none"),
        kind: Kind::Custom("a comma-separated list of media types such as application/spdx+json"),
        help: r#"artifact types that count as done whoever attached them (an SBOM pushed in CI, by cosign or oras): a referrer of one of these types spares its image a Job too. Empty: only artifacts attached under the same settings identity count."#,
    },
    Setting {
        name: "SBOM_REGISTRY_LOOKUP_REPOSITORIES",
        chart: r#"`registryLookup.repositories`"#,
        default: None,
        default_doc: Some("every repository"),
        kind: Kind::Custom("a comma-separated list of registry[/path] prefixes"),
        help: r#"whose referrers are trusted: only images (or the job's `ENTRYPOINT_ATTACH_REPOSITORY`) under one of these prefixes are looked up, e.g. `registry.example/platform,ghcr.io/my-org`. Whoever can push to a repository can attach an artifact that claims the settings identity (it is no secret) and so spare its images a Job with an SBOM of their own making: on a cluster whose tenants push their own images, list the repositories only your pipelines push to. Empty: every repository."#,
    },
    Setting {
        name: "SBOM_REGISTRY_LOOKUP_INSECURE",
        chart: r#"`registryLookup.insecureRegistries`"#,
        default: None,
        default_doc: Some("none"),
        kind: Kind::Custom("a comma-separated list of host[:port]"),
        help: r#"registries the operator's own reads (the lookup, ImageSources, drift) speak plain HTTP to (as the job's `ENTRYPOINT_ATTACH_INSECURE_REGISTRIES` does); every other registry is spoken to over HTTPS with the system's CA certificates."#,
    },
    Setting {
        name: "SBOM_SOURCE_REGISTRIES",
        chart: r#"`sources.registries`"#,
        default: None,
        default_doc: Some("none"),
        kind: Kind::Custom("`*` or a comma-separated list of host[:port]"),
        help: r#"the registries an ImageSource may name (`registry.example,ghcr.io`; `*`: any). The operator itself lists the tags and reads the manifests of what a source names, with the source's credentials Secret, so an admin says where: empty (the default), ImageSources are not watched at all (and the chart grants no access to them); a source naming a registry not listed says `Failed`/`RegistryNotAllowed`. Only sources in the namespaces `SBOM_NAMESPACE_LABEL_SELECTOR` selects are this release's. The registries of `SBOM_REGISTRY_LOOKUP_INSECURE` are spoken to over plain HTTP. Needs the digest cache (`SBOM_CACHE_TTL`): a scanned digest is catalogued once, by a Job like a running image's, and a pod that runs it later is annotated from its record."#,
    },
    Setting {
        name: "SBOM_DRIFT_INTERVAL",
        chart: r#"`drift.interval`"#,
        default: Some("1h"),
        default_doc: None,
        kind: Kind::Duration(bounds::DRIFT_INTERVAL),
        help: r#"how often the operator lists the tags of the repositories that running tagged images come from, to tell each container whether its tag is the newest version (`latest`), behind by a patch, minor or major version (the newest named), or `unknown` (not a version tag): the `<prefix>/drift-<container>` pod annotation, the `drift` of the digest's ImageRecord and the `sbomjob_drift_containers` metric. A repository an ImageSource names is compared under that source's tag selector (and needs no listing of its own); others under semantic versions without pre-releases. One tags listing per repository, with the pods' pull credentials. `0` turns it off."#,
    },
    Setting {
        name: "SBOM_RETRY_BACKOFF",
        chart: r#"`retryBackoff`"#,
        default: Some("10m"),
        default_doc: None,
        kind: Kind::Duration(bounds::RETRY_BACKOFF),
        help: r#"an image that failed alone in a Job (so the failure is its own, not a neighbour's) gets its next Job only this long after the failure, and twice as long after each further failure: `SBOM_RETRY_BACKOFF · 2^(failures−1)`, at most `SBOM_RETRY_BACKOFF_MAX`."#,
    },
    Setting {
        name: "SBOM_RETRY_BACKOFF_MAX",
        chart: r#"`retryBackoffMax`"#,
        default: Some("24h"),
        default_doc: None,
        kind: Kind::Duration(bounds::RETRY_BACKOFF_MAX),
        help: r#", and at least `SBOM_RETRY_BACKOFF` (otherwise start-up stops: `SBOM_RETRY_BACKOFF_MAX (…) is below SBOM_RETRY_BACKOFF (…)`): the longest wait between the retries of a failing image."#,
    },
    Setting {
        name: "SBOM_ADMIN_ADDR",
        chart: r#"`admin.port` (the chart sets `0.0.0.0:<port>`)"#,
        default: Some("0.0.0.0:8080"),
        default_doc: None,
        kind: Kind::Custom("an address and port such as 0.0.0.0:8080 or [::]:8080"),
        help: r#"Address and port (`0.0.0.0:8080`, `[::]:8080`) of the admin endpoint: `GET /metrics` (Prometheus/OpenMetrics text), `/healthz` (200 while the main loop makes progress and the watches deliver, see `SBOM_HEALTH_TIMEOUT`; liveness), `/readyz` (200 once the pod store is filled, 503 before and while stopping; readiness). A port in use stops start-up."#,
    },
    Setting {
        name: "SBOM_HEALTH_TIMEOUT",
        chart: r#"`admin.healthTimeout`"#,
        default: Some("10m"),
        default_doc: None,
        kind: Kind::Duration(bounds::HEALTH_TIMEOUT),
        help: r#"`/healthz` answers 503 (and the kubelet restarts the operator) when its main loop has shown no progress for this long, or the pod (or namespace) watch has been failing this long, e.g. an API server unreachable. The loop shows progress while it waits and at every step of a cycle; a Job being followed counts as progress at each of its checks (every 10 s), so a long Job does not."#,
    },
    Setting {
        name: "SBOM_LEADER_ELECTION",
        chart: r#"`leaderElection.enabled` (always rendered)"#,
        default: Some("true"),
        default_doc: None,
        kind: Kind::Bool,
        help: r#"Hold a Lease before creating Jobs, so that only one replica, and only one of the old and new pod of an update, runs cycles. Needed for more than one replica; the chart refuses `replicaCount` > 1 without it."#,
    },
    Setting {
        name: "SBOM_RELEASE",
        chart: r#"set by the chart to the release name (always rendered)"#,
        default: Some("sbomjob"),
        default_doc: None,
        kind: Kind::Custom(
            "a DNS label of at most 53 characters (lower-case letters, digits and '-'), such as sbomjob",
        ),
        help: r#"Which installation this operator is: a DNS label of at most 53 characters. Its Jobs, Secrets, Lease and Events carry the label `app.kubernetes.io/instance: <release>` and it selects only those, so releases side by side, two in one namespace included, never wait for, finish or delete each other's work. Job names start with it. See [several releases](#several-releases)."#,
    },
    Setting {
        name: "SBOM_LEASE_NAME",
        chart: r#"`leaderElection.leaseName`"#,
        default: None,
        default_doc: Some(r#"`<release>-leader`"#),
        kind: Kind::Custom("a DNS subdomain such as sbomjob-leader"),
        help: r#"Name of the `coordination.k8s.io` Lease in the operator's namespace (a lower-case DNS subdomain). The default already differs between releases."#,
    },
    Setting {
        name: "SBOM_LEASE_DURATION",
        chart: r#"`leaderElection.leaseDuration`"#,
        default: Some("15s"),
        default_doc: None,
        kind: Kind::Duration(bounds::LEASE_DURATION),
        help: r#"(whole seconds): a leader that stopped renewing keeps the Lease this long, so a standby takes over after at most this (at once when the leader stops cleanly: it releases the Lease). The leader renews every third of it and steps down when it could not renew for two thirds."#,
    },
    Setting {
        name: "POD_NAMESPACE",
        chart: r#"set by the chart from the pod's namespace"#,
        default: None,
        default_doc: Some(r#"the kubeconfig's namespace"#),
        kind: Kind::Text,
        help: r#"Where the operator creates its Jobs, Secrets and Lease, and where `SBOM_FALLBACK_PULL_SECRET`, `SBOM_JOB_IMAGE_PULL_SECRET`, `SBOM_JOB_SERVICE_ACCOUNT` and the Secrets of `SBOM_JOBSECRET_*` must be."#,
    },
    Setting {
        name: "POD_NAME",
        chart: r#"set by the chart from the pod's name"#,
        default: None,
        default_doc: Some(r#"the host name with a random suffix (Lease); `sbomjob` (Events)"#),
        kind: Kind::Text,
        help: r#"This replica's holder identity in the Lease (must differ between replicas), and the instance of the Kubernetes Events the operator publishes."#,
    },
];
