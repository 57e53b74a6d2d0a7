//! Operator settings: environment variables with the `SBOM_` prefix.
//!
//! envy maps the variables onto [`RawSettings`] (all strings), then each value is parsed here so
//! that a bad value fails start-up with a message naming the variable and what it expected.
//! Names match sbom-operator where a setting exists there.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use serde::{Deserialize, de::DeserializeOwned};

use crate::schedule::Schedule;

/// Prefix of every operator setting.
pub const PREFIX: &str = "SBOM_";
/// Variables with this prefix are forwarded to the job container without it.
pub const FORWARD_PREFIX: &str = "SBOM_JOB_";
/// `SBOM_JOBSECRET_<X>=<secret>/<key>` forwards `<X>` as a `secretKeyRef` instead of a literal.
pub const SECRET_REF_PREFIX: &str = "SBOM_JOBSECRET_";

/// The operator's own `SBOM_JOB_*` settings: they configure the Job and are never forwarded.
/// One list, used both to parse and to exclude.
pub const OWN_JOB_SETTINGS: &[&str] = &[
    "SBOM_JOB_IMAGE",
    "SBOM_JOB_IMAGE_PULL_SECRET",
    "SBOM_JOB_IMAGE_PULL_POLICY",
    "SBOM_JOB_TIMEOUT",
    "SBOM_JOB_TTL",
    "SBOM_JOB_SERVICE_ACCOUNT",
    "SBOM_JOB_PRIVILEGED",
    "SBOM_JOB_RESOURCES",
    "SBOM_JOB_NODE_SELECTOR",
    "SBOM_JOB_TOLERATIONS",
    "SBOM_JOB_AFFINITY",
    "SBOM_JOB_PRIORITY_CLASS",
    "SBOM_JOB_MAX_IMAGES",
    "SBOM_JOB_MAX_PARALLEL",
];

/// A setting that could not be used; start-up stops with this message.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{var} is required: {what}")]
    Missing { var: String, what: &'static str },
    #[error("{var}={value:?} is invalid: expected {expected}")]
    Invalid {
        var: String,
        value: String,
        expected: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("reading SBOM_ settings: {0}")]
    Env(#[from] envy::Error),
}

/// Every `SBOM_` variable as a string, before parsing (field names are the variables' names
/// without the prefix, lower-cased).
#[derive(Deserialize, Default, Debug)]
struct RawSettings {
    job_image: Option<String>,
    job_image_pull_secret: Option<String>,
    job_image_pull_policy: Option<String>,
    job_timeout: Option<String>,
    job_ttl: Option<String>,
    job_service_account: Option<String>,
    job_privileged: Option<String>,
    job_resources: Option<String>,
    job_node_selector: Option<String>,
    job_tolerations: Option<String>,
    job_affinity: Option<String>,
    job_priority_class: Option<String>,
    job_max_images: Option<String>,
    job_max_parallel: Option<String>,
    cron: Option<String>,
    interval: Option<String>,
    pod_label_selector: Option<String>,
    namespace_label_selector: Option<String>,
    kubernetes_cluster_id: Option<String>,
    fallback_pull_secret: Option<String>,
    ignore_annotations: Option<String>,
    annotation_prefix: Option<String>,
    pod_events: Option<String>,
    log_format: Option<String>,
}

/// How the job container gets one forwarded variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardedEnv {
    /// `SBOM_JOB_<name>=<value>`: the value, byte for byte.
    Literal { name: String, value: String },
    /// `SBOM_JOBSECRET_<name>=<secret>/<key>`: read by the kubelet from a Secret in the job
    /// namespace, so the value never appears in the Job spec.
    SecretRef {
        name: String,
        secret: String,
        key: String,
    },
}

impl ForwardedEnv {
    pub fn name(&self) -> &str {
        match self {
            Self::Literal { name, .. } | Self::SecretRef { name, .. } => name,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// Which Kubernetes Events the operator publishes on the pods it works for (the Jobs always get
/// theirs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodEvents {
    /// `Processed` on every pod annotated, and the failures.
    #[default]
    All,
    /// Only a Warning on the pods whose images a failed Job did not catalogue.
    Failures,
    /// None.
    None,
}

impl PodEvents {
    /// A `Processed` event on each pod annotated.
    pub fn processed(self) -> bool {
        self == Self::All
    }

    /// A Warning on each pod whose images a failed Job did not catalogue.
    pub fn failures(self) -> bool {
        self != Self::None
    }
}

/// What the Job looks like.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobSettings {
    pub image: String,
    pub image_pull_secret: Option<String>,
    pub image_pull_policy: Option<String>,
    /// `activeDeadlineSeconds` of every Job.
    pub timeout: Duration,
    /// `ttlSecondsAfterFinished`: how long finished Jobs stay for inspection.
    pub ttl: Duration,
    pub service_account: Option<String>,
    /// Run the job container privileged (for daemon-based job images); off by default.
    pub privileged: bool,
    pub resources: Option<ResourceRequirements>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub affinity: Option<Affinity>,
    pub priority_class: Option<String>,
    /// At most this many images per Job (a cycle with more becomes several Jobs).
    pub max_images: usize,
    /// At most this many Jobs of a cycle run at once.
    pub max_parallel: usize,
    /// Variables forwarded to the job container, sorted by name.
    pub env: Vec<ForwardedEnv>,
}

/// All settings of the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub job: JobSettings,
    pub schedule: Schedule,
    pub pod_label_selector: Option<String>,
    pub namespace_label_selector: Option<String>,
    pub cluster_id: String,
    pub fallback_pull_secret: Option<String>,
    pub ignore_annotations: bool,
    pub annotation_prefix: String,
    /// `SBOM_POD_EVENTS`: which Events the pods get ([`crate::pod_events`]).
    pub pod_events: PodEvents,
    /// Namespace of the Jobs and Secrets (`POD_NAMESPACE`); `None` = the client's default.
    pub namespace: Option<String>,
    pub log_format: LogFormat,
    /// Digest cache, admin endpoint and leader election (see [`OpsSettings`]).
    pub ops: OpsSettings,
}

pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(3600);
pub const DEFAULT_JOB_TTL: Duration = Duration::from_secs(3600);
pub const DEFAULT_MAX_IMAGES: usize = 200;
pub const DEFAULT_CRON: &str = "0 0 * * * *";

impl Settings {
    /// Settings from this process's environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        // vars_os: a non-UTF-8 variable must not panic the operator; it cannot be forwarded into
        // a Kubernetes object (whose strings are UTF-8) anyway.
        let vars = std::env::vars_os().filter_map(|(k, v)| {
            let (k, v) = (k.into_string().ok()?, v.into_string().ok()?);
            Some((k, v))
        });
        Self::from_vars(vars)
    }

    /// Settings from a list of variables (tests pass their own).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, SettingsError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let raw: RawSettings =
            envy::prefixed(PREFIX).from_iter(vars.iter().filter(|(k, _)| k.starts_with(PREFIX)).cloned())?;
        let namespace = vars
            .iter()
            .find(|(k, _)| k == "POD_NAMESPACE")
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty());

        let schedule = match (non_empty(raw.cron), non_empty(raw.interval)) {
            (Some(_), Some(_)) => {
                return Err(SettingsError::Conflict(
                    "SBOM_CRON and SBOM_INTERVAL are both set: choose one schedule".into(),
                ));
            }
            (Some(cron), None) => Schedule::cron(&cron).map_err(|e| invalid("SBOM_CRON", &cron, e))?,
            (None, Some(every)) => Schedule::Interval(
                parse_duration(&every).ok_or_else(|| invalid("SBOM_INTERVAL", &every, DURATION))?,
            ),
            (None, None) => Schedule::cron(DEFAULT_CRON).expect("default cron parses"),
        };
        if let Schedule::Interval(d) = schedule
            && d.is_zero()
        {
            return Err(invalid("SBOM_INTERVAL", "0", "a duration above zero"));
        }

        let job = JobSettings {
            image: non_empty(raw.job_image).ok_or_else(|| SettingsError::Missing {
                var: "SBOM_JOB_IMAGE".into(),
                what: "the job image that catalogues the images (e.g. registry.example/sbomjob-syft:1.0)",
            })?,
            image_pull_secret: non_empty(raw.job_image_pull_secret),
            image_pull_policy: parse_opt(
                "SBOM_JOB_IMAGE_PULL_POLICY",
                raw.job_image_pull_policy,
                |v| {
                    ["Always", "IfNotPresent", "Never"]
                        .contains(&v)
                        .then(|| v.to_string())
                },
                "Always, IfNotPresent or Never",
            )?,
            timeout: parse_opt("SBOM_JOB_TIMEOUT", raw.job_timeout, parse_duration, DURATION)?
                .unwrap_or(DEFAULT_JOB_TIMEOUT),
            ttl: parse_opt("SBOM_JOB_TTL", raw.job_ttl, parse_duration, DURATION)?.unwrap_or(DEFAULT_JOB_TTL),
            service_account: non_empty(raw.job_service_account),
            privileged: parse_opt("SBOM_JOB_PRIVILEGED", raw.job_privileged, parse_bool, BOOL)?
                .unwrap_or(false),
            resources: parse_json(
                "SBOM_JOB_RESOURCES",
                raw.job_resources,
                "a JSON ResourceRequirements",
            )?,
            node_selector: parse_opt(
                "SBOM_JOB_NODE_SELECTOR",
                raw.job_node_selector,
                parse_string_map,
                "a JSON object of strings or key=value,key=value",
            )?
            .unwrap_or_default(),
            tolerations: parse_json(
                "SBOM_JOB_TOLERATIONS",
                raw.job_tolerations,
                "a JSON list of tolerations",
            )?
            .unwrap_or_default(),
            affinity: parse_json("SBOM_JOB_AFFINITY", raw.job_affinity, "a JSON Affinity")?,
            priority_class: non_empty(raw.job_priority_class),
            max_images: parse_opt(
                "SBOM_JOB_MAX_IMAGES",
                raw.job_max_images,
                parse_positive,
                POSITIVE,
            )?
            .unwrap_or(DEFAULT_MAX_IMAGES),
            max_parallel: parse_opt(
                "SBOM_JOB_MAX_PARALLEL",
                raw.job_max_parallel,
                parse_positive,
                POSITIVE,
            )?
            .unwrap_or(1),
            env: forwarded_env(&vars)?,
        };
        if job.timeout.as_secs() == 0 {
            return Err(invalid("SBOM_JOB_TIMEOUT", "0", "at least one second"));
        }

        Ok(Settings {
            job,
            schedule,
            pod_label_selector: non_empty(raw.pod_label_selector).map(|s| unescape(&s)),
            namespace_label_selector: non_empty(raw.namespace_label_selector).map(|s| unescape(&s)),
            cluster_id: non_empty(raw.kubernetes_cluster_id).unwrap_or_else(|| "default".into()),
            fallback_pull_secret: non_empty(raw.fallback_pull_secret),
            ignore_annotations: parse_opt(
                "SBOM_IGNORE_ANNOTATIONS",
                raw.ignore_annotations,
                parse_bool,
                BOOL,
            )?
            .unwrap_or(false),
            annotation_prefix: parse_opt(
                "SBOM_ANNOTATION_PREFIX",
                raw.annotation_prefix,
                parse_annotation_prefix,
                "a DNS subdomain such as sbomjob.io",
            )?
            .unwrap_or_else(|| "sbomjob.io".into()),
            pod_events: parse_opt(
                "SBOM_POD_EVENTS",
                raw.pod_events,
                |v| match v.to_ascii_lowercase().as_str() {
                    "all" => Some(PodEvents::All),
                    "failures" => Some(PodEvents::Failures),
                    "none" => Some(PodEvents::None),
                    _ => None,
                },
                "all, failures or none",
            )?
            .unwrap_or_default(),
            namespace,
            log_format: parse_opt(
                "SBOM_LOG_FORMAT",
                raw.log_format,
                |v| match v {
                    "plain" | "text" => Some(LogFormat::Plain),
                    "json" => Some(LogFormat::Json),
                    _ => None,
                },
                "plain or json",
            )?
            .unwrap_or_default(),
            ops: OpsSettings::from_vars(&vars)?,
        })
    }
}

const DURATION: &str = "a duration such as 3600 (seconds), 90s, 10m or 1h";
const BOOL: &str = "true or false";
const POSITIVE: &str = "a whole number above zero";

/// The variables forwarded to the job container, sorted by their name in the job.
pub fn forwarded_env(vars: &[(String, String)]) -> Result<Vec<ForwardedEnv>, SettingsError> {
    let mut out = BTreeMap::new();
    for (key, value) in vars {
        // Anchored prefix match: `MY_SBOM_JOB_X` is not ours.
        if let Some(name) = key.strip_prefix(FORWARD_PREFIX) {
            if OWN_JOB_SETTINGS.contains(&key.as_str()) || name.is_empty() {
                continue;
            }
            out.insert(
                name.to_string(),
                ForwardedEnv::Literal {
                    name: name.to_string(),
                    value: value.clone(),
                },
            );
        } else if let Some(name) = key.strip_prefix(SECRET_REF_PREFIX) {
            let (secret, secret_key) = value
                .split_once('/')
                .filter(|(s, k)| !s.is_empty() && !k.is_empty())
                .ok_or_else(|| invalid(key, value, "<secret-name>/<key>"))?;
            if name.is_empty() {
                return Err(invalid(key, value, "a variable name after SBOM_JOBSECRET_"));
            }
            let literal = format!("{FORWARD_PREFIX}{name}");
            if vars.iter().any(|(k, _)| *k == literal) && !OWN_JOB_SETTINGS.contains(&literal.as_str()) {
                return Err(SettingsError::Conflict(format!(
                    "{key} and {literal} both set the job variable {name}"
                )));
            }
            out.insert(
                name.to_string(),
                ForwardedEnv::SecretRef {
                    name: name.to_string(),
                    secret: secret.to_string(),
                    key: secret_key.to_string(),
                },
            );
        }
    }
    Ok(out.into_values().collect())
}

fn invalid(var: &str, value: &str, expected: impl ToString) -> SettingsError {
    SettingsError::Invalid {
        var: var.into(),
        value: value.into(),
        expected: expected.to_string(),
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn parse_opt<T>(
    var: &str,
    value: Option<String>,
    parse: impl Fn(&str) -> Option<T>,
    expected: &str,
) -> Result<Option<T>, SettingsError> {
    match non_empty(value) {
        None => Ok(None),
        Some(v) => parse(&v).map(Some).ok_or_else(|| invalid(var, &v, expected)),
    }
}

fn parse_json<T: DeserializeOwned>(
    var: &str,
    value: Option<String>,
    expected: &str,
) -> Result<Option<T>, SettingsError> {
    match non_empty(value) {
        None => Ok(None),
        Some(v) => serde_json::from_str(&v)
            .map(Some)
            .map_err(|e| invalid(var, &v, format!("{expected} ({e})"))),
    }
}

/// Plain seconds (as sbom-operator's `--job-timeout`) or a humantime duration.
pub fn parse_duration(v: &str) -> Option<Duration> {
    match v.parse::<u64>() {
        Ok(secs) => Some(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(v).ok(),
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_positive(v: &str) -> Option<usize> {
    v.parse().ok().filter(|n| *n > 0)
}

fn parse_string_map(v: &str) -> Option<BTreeMap<String, String>> {
    if v.starts_with('{') {
        return serde_json::from_str(v).ok();
    }
    v.split(',')
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (!k.trim().is_empty()).then(|| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn parse_annotation_prefix(v: &str) -> Option<String> {
    let ok = v.len() <= 253
        && v.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    ok.then(|| v.to_string())
}

/// sbom-operator's manifests quote values (`--cron="0 6 * * * *"`) and it strips `\` and `"`;
/// we do the same so copied values keep working.
pub fn unescape(v: &str) -> String {
    v.chars().filter(|c| *c != '\\' && *c != '"').collect()
}

// ---- Operations: digest cache, admin endpoint, leader election --------------------------------

/// `SBOM_` settings of the digest cache ([`crate::cache`]), the admin endpoint ([`crate::admin`])
/// and leader election ([`crate::leader`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OpsSettings {
    /// `SBOM_CACHE_TTL`: how long a processed digest counts as done; `None` when set to `0`,
    /// which disables the cache.
    pub cache_ttl: Option<Duration>,
    /// `SBOM_CACHE_GRACE`: how long a record outlives the last pod running its digest.
    pub cache_grace: Duration,
    /// `SBOM_ADMIN_ADDR`: where `/metrics`, `/healthz` and `/readyz` are served.
    pub admin_addr: std::net::SocketAddr,
    /// `SBOM_LEADER_ELECTION`: hold a Lease before creating Jobs (on by default, so a rolling
    /// update never runs two cycles at once).
    pub leader_election: bool,
    /// `SBOM_LEASE_NAME`: the Lease in the operator's namespace.
    pub lease_name: String,
    /// `SBOM_LEASE_DURATION`: how long a leader that stops renewing keeps the Lease.
    pub lease_duration: Duration,
    /// `SBOM_DEBOUNCE`: after a new image starts running, wait this long (collecting more)
    /// before the cycle it triggers.
    pub debounce: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(72 * 3600);
pub const DEFAULT_CACHE_GRACE: Duration = Duration::from_secs(3600);
pub const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:8080";
pub const DEFAULT_LEASE_NAME: &str = "sbomjob-leader";
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(30);

#[derive(Deserialize, Default, Debug)]
struct RawOpsSettings {
    cache_ttl: Option<String>,
    cache_grace: Option<String>,
    admin_addr: Option<String>,
    leader_election: Option<String>,
    lease_name: Option<String>,
    lease_duration: Option<String>,
    debounce: Option<String>,
}

impl Default for OpsSettings {
    fn default() -> Self {
        OpsSettings {
            cache_ttl: Some(DEFAULT_CACHE_TTL),
            cache_grace: DEFAULT_CACHE_GRACE,
            admin_addr: DEFAULT_ADMIN_ADDR.parse().expect("default address parses"),
            leader_election: true,
            lease_name: DEFAULT_LEASE_NAME.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            debounce: DEFAULT_DEBOUNCE,
            backoff_initial: Duration::from_secs(600),
            backoff_max: Duration::from_secs(86400),
        }
    }
}

impl OpsSettings {
    fn from_vars(vars: &[(String, String)]) -> Result<Self, SettingsError> {
        let raw: RawOpsSettings =
            envy::prefixed(PREFIX).from_iter(vars.iter().filter(|(k, _)| k.starts_with(PREFIX)).cloned())?;
        let default = OpsSettings::default();
        let lease_duration = parse_opt(
            "SBOM_LEASE_DURATION",
            raw.lease_duration,
            |v| parse_duration(v).filter(|d| d.as_secs() >= 3),
            "a duration of at least 3s, such as 15s",
        )?
        .unwrap_or(default.lease_duration);
        Ok(OpsSettings {
            cache_ttl: match parse_opt("SBOM_CACHE_TTL", raw.cache_ttl, parse_duration, DURATION)? {
                None => default.cache_ttl,
                Some(ttl) => Some(ttl).filter(|d| !d.is_zero()),
            },
            cache_grace: parse_opt("SBOM_CACHE_GRACE", raw.cache_grace, parse_duration, DURATION)?
                .unwrap_or(default.cache_grace),
            admin_addr: parse_opt(
                "SBOM_ADMIN_ADDR",
                raw.admin_addr,
                |v| v.parse().ok(),
                "an address and port such as 0.0.0.0:8080 or [::]:8080",
            )?
            .unwrap_or(default.admin_addr),
            leader_election: parse_opt("SBOM_LEADER_ELECTION", raw.leader_election, parse_bool, BOOL)?
                .unwrap_or(default.leader_election),
            lease_name: parse_opt(
                "SBOM_LEASE_NAME",
                raw.lease_name,
                parse_annotation_prefix,
                "a DNS subdomain such as sbomjob-leader",
            )?
            .unwrap_or(default.lease_name),
            lease_duration: Duration::from_secs(lease_duration.as_secs()),
            debounce: parse_opt("SBOM_DEBOUNCE", raw.debounce, parse_duration, DURATION)?
                .unwrap_or(default.debounce),
            backoff_initial: default.backoff_initial,
            backoff_max: default.backoff_max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn settings(list: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_vars(vars(list))
    }

    #[test]
    fn defaults() {
        let s = settings(&[("SBOM_JOB_IMAGE", "reg/job:1")]).unwrap();
        assert_eq!(s.job.image, "reg/job:1");
        assert_eq!(s.job.timeout, Duration::from_secs(3600));
        assert_eq!(s.cluster_id, "default");
        assert_eq!(s.annotation_prefix, "sbomjob.io");
        assert!(!s.job.privileged);
        assert!(!s.ignore_annotations);
        assert_eq!(s.job.max_parallel, 1);
        assert_eq!(s.log_format, LogFormat::Plain);
        assert_eq!(s.pod_events, PodEvents::All);
        assert!(s.job.env.is_empty());
    }

    #[test]
    fn pod_events() {
        for (value, want, processed, failures) in [
            ("all", PodEvents::All, true, true),
            ("failures", PodEvents::Failures, false, true),
            (" None ", PodEvents::None, false, false),
            ("", PodEvents::All, true, true),
        ] {
            let s = settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_POD_EVENTS", value)]).unwrap();
            assert_eq!(s.pod_events, want, "{value:?}");
            assert_eq!(
                (s.pod_events.processed(), s.pod_events.failures()),
                (processed, failures),
                "{value:?}"
            );
        }
        // Not a job setting: never forwarded.
        let s = settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_POD_EVENTS", "none")]).unwrap();
        assert!(s.job.env.is_empty());
    }

    #[test]
    fn job_image_is_required() {
        let err = settings(&[("SBOM_CRON", "@hourly")]).unwrap_err().to_string();
        assert!(err.contains("SBOM_JOB_IMAGE is required"), "{err}");
    }

    #[test]
    fn timeout_takes_seconds_and_humantime() {
        let s = settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_JOB_TIMEOUT", "90")]).unwrap();
        assert_eq!(s.job.timeout, Duration::from_secs(90));
        let s = settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_JOB_TIMEOUT", "1h 30m")]).unwrap();
        assert_eq!(s.job.timeout, Duration::from_secs(5400));
        let err = settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_JOB_TIMEOUT", "soon")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SBOM_JOB_TIMEOUT=\"soon\" is invalid: expected a duration"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value, expected) in [
            ("SBOM_JOB_PRIVILEGED", "maybe", "true or false"),
            ("SBOM_JOB_MAX_IMAGES", "0", "above zero"),
            ("SBOM_JOB_RESOURCES", "{\"limits\":", "ResourceRequirements"),
            ("SBOM_LOG_FORMAT", "xml", "plain or json"),
            ("SBOM_POD_EVENTS", "some", "all, failures or none"),
            ("SBOM_ANNOTATION_PREFIX", "Not_A_Domain", "DNS subdomain"),
            ("SBOM_CRON", "every tuesday", "cron"),
            ("SBOM_INTERVAL", "-3", "duration"),
            ("SBOM_JOBSECRET_API_KEY", "no-slash", "<secret-name>/<key>"),
        ] {
            let err = settings(&[("SBOM_JOB_IMAGE", "i"), (var, value)])
                .unwrap_err()
                .to_string();
            assert!(err.contains(var) && err.contains(expected), "{var}: {err}");
        }
    }

    #[test]
    fn cron_and_interval_conflict() {
        let err = settings(&[
            ("SBOM_JOB_IMAGE", "i"),
            ("SBOM_CRON", "@hourly"),
            ("SBOM_INTERVAL", "1h"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("SBOM_CRON and SBOM_INTERVAL"), "{err}");
    }

    #[test]
    fn job_pod_shape_settings() {
        let s = settings(&[
            ("SBOM_JOB_IMAGE", "i"),
            ("SBOM_JOB_NODE_SELECTOR", "kubernetes.io/arch=arm64, pool=scan"),
            (
                "SBOM_JOB_TOLERATIONS",
                r#"[{"key":"scan","operator":"Exists","effect":"NoSchedule"}]"#,
            ),
            (
                "SBOM_JOB_RESOURCES",
                r#"{"limits":{"memory":"1Gi"},"requests":{"cpu":"100m"}}"#,
            ),
            ("SBOM_JOB_PRIVILEGED", "true"),
            ("SBOM_POD_LABEL_SELECTOR", r#"\"app in (a,b)\""#),
        ])
        .unwrap();
        assert_eq!(
            s.job.node_selector.get("kubernetes.io/arch").map(String::as_str),
            Some("arm64")
        );
        assert_eq!(s.job.node_selector.get("pool").map(String::as_str), Some("scan"));
        assert_eq!(s.job.tolerations[0].key.as_deref(), Some("scan"));
        assert!(s.job.resources.unwrap().limits.unwrap().contains_key("memory"));
        assert!(s.job.privileged);
        assert_eq!(s.pod_label_selector.as_deref(), Some("app in (a,b)"));
    }

    #[test]
    fn env_forwarding_keeps_values_byte_for_byte() {
        let tricky = "https://x:443/a b=c";
        let b64 = "aGVsbG8gd29ybGQ+Pz8/+/==";
        let env = forwarded_env(&vars(&[
            ("SBOM_JOB_FOO", tricky),
            ("SBOM_JOB_B64", b64),
            ("SBOM_JOB_EMPTY", ""),
            (
                "SBOM_JOB_ENTRYPOINT_COMMAND",
                "syft {image} -o spdx-json={output}",
            ),
        ]))
        .unwrap();
        let get = |n: &str| env.iter().find(|e| e.name() == n).cloned();
        assert_eq!(
            get("FOO"),
            Some(ForwardedEnv::Literal {
                name: "FOO".into(),
                value: tricky.into()
            })
        );
        assert_eq!(
            get("B64"),
            Some(ForwardedEnv::Literal {
                name: "B64".into(),
                value: b64.into()
            })
        );
        assert_eq!(
            get("EMPTY"),
            Some(ForwardedEnv::Literal {
                name: "EMPTY".into(),
                value: String::new()
            })
        );
        assert_eq!(
            get("ENTRYPOINT_COMMAND"),
            Some(ForwardedEnv::Literal {
                name: "ENTRYPOINT_COMMAND".into(),
                value: "syft {image} -o spdx-json={output}".into()
            })
        );
        // Sorted by name, so the Job spec is stable between cycles.
        let names: Vec<_> = env.iter().map(|e| e.name().to_string()).collect();
        assert_eq!(names, ["B64", "EMPTY", "ENTRYPOINT_COMMAND", "FOO"]);
    }

    #[test]
    fn own_settings_and_lookalikes_are_not_forwarded() {
        let mut list: Vec<(&str, &str)> = OWN_JOB_SETTINGS.iter().map(|k| (*k, "1")).collect();
        list.extend([
            ("MY_SBOM_JOB_X", "1"),
            ("SBOM_CRON", "@hourly"),
            ("SBOM_JOB_", "1"),
            ("SBOM_JOB_KEEP", "k"),
        ]);
        let env = forwarded_env(&vars(&list)).unwrap();
        assert_eq!(
            env,
            [ForwardedEnv::Literal {
                name: "KEEP".into(),
                value: "k".into()
            }]
        );
    }

    #[test]
    fn secret_refs() {
        let env = forwarded_env(&vars(&[("SBOM_JOBSECRET_VCN_LC_API_KEY", "vcn-creds/api-key")])).unwrap();
        assert_eq!(
            env,
            [ForwardedEnv::SecretRef {
                name: "VCN_LC_API_KEY".into(),
                secret: "vcn-creds".into(),
                key: "api-key".into()
            }]
        );
        for order in [
            [("SBOM_JOB_X", "1"), ("SBOM_JOBSECRET_X", "s/k")],
            [("SBOM_JOBSECRET_X", "s/k"), ("SBOM_JOB_X", "1")],
        ] {
            let err = forwarded_env(&vars(&order)).unwrap_err();
            assert!(err.to_string().contains("both set the job variable X"), "{err}");
        }
    }

    #[test]
    fn ops_defaults() {
        let ops = settings(&[("SBOM_JOB_IMAGE", "i")]).unwrap().ops;
        assert_eq!(ops, OpsSettings::default());
        assert_eq!(ops.cache_ttl, Some(Duration::from_secs(72 * 3600)));
        assert_eq!(ops.cache_grace, Duration::from_secs(3600));
        assert_eq!(ops.admin_addr.to_string(), "0.0.0.0:8080");
        assert!(ops.leader_election);
        assert_eq!(ops.lease_name, "sbomjob-leader");
        assert_eq!(ops.lease_duration, Duration::from_secs(15));
    }

    #[test]
    fn ops_settings() {
        let ops = settings(&[
            ("SBOM_JOB_IMAGE", "i"),
            ("SBOM_CACHE_TTL", "0"),
            ("SBOM_CACHE_GRACE", "30m"),
            ("SBOM_ADMIN_ADDR", "[::]:9090"),
            ("SBOM_LEADER_ELECTION", "false"),
            ("SBOM_LEASE_NAME", "other-leader"),
            ("SBOM_LEASE_DURATION", "20s"),
        ])
        .unwrap()
        .ops;
        assert_eq!(ops.cache_ttl, None, "0 disables the cache");
        assert_eq!(ops.cache_grace, Duration::from_secs(1800));
        assert_eq!(ops.admin_addr.port(), 9090);
        assert!(!ops.leader_election);
        assert_eq!(ops.lease_name, "other-leader");
        assert_eq!(ops.lease_duration, Duration::from_secs(20));
        let ttl = settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_CACHE_TTL", "1d")]).unwrap();
        assert_eq!(ttl.ops.cache_ttl, Some(Duration::from_secs(86400)));
        // Not forwarded to the job: only SBOM_JOB_* is.
        assert!(ttl.job.env.is_empty());
        for (var, value, expected) in [
            ("SBOM_CACHE_TTL", "forever", "duration"),
            ("SBOM_ADMIN_ADDR", "8080", "address and port"),
            ("SBOM_LEASE_DURATION", "1s", "at least 3s"),
            ("SBOM_LEADER_ELECTION", "sometimes", "true or false"),
            ("SBOM_LEASE_NAME", "Bad_Name", "DNS subdomain"),
        ] {
            let err = settings(&[("SBOM_JOB_IMAGE", "i"), (var, value)])
                .unwrap_err()
                .to_string();
            assert!(err.contains(var) && err.contains(expected), "{var}: {err}");
        }
    }
}
