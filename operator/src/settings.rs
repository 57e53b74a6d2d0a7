//! Operator settings: environment variables with the `SBOM_` prefix.
//!
//! Each setting is declared once, in [`table::ALL`]; start-up reads every variable through
//! [`Vars`], which applies the table's default and parser, so that a bad value fails start-up
//! with a message naming the variable and what it expected. Names match sbom-operator where a
//! setting exists there.

pub mod table;

use sbomjob_contract::referrers::is_media_type;
use std::{collections::BTreeMap, ops::RangeInclusive, time::Duration};

use k8s_openapi::{
    api::core::v1::{Affinity, ResourceRequirements, Toleration},
    apimachinery::pkg::api::resource::Quantity,
};
use sbomjob_contract::units::{ShortDuration, parse_bool, parse_duration, parse_size};
use serde::de::DeserializeOwned;

use crate::schedule::{Schedule, unescape};

/// Prefix of every operator setting.
pub const PREFIX: &str = "SBOM_";
/// Variables with this prefix are forwarded to the job container without it.
pub const FORWARD_PREFIX: &str = "SBOM_JOB_";
/// `SBOM_JOBSECRET_<X>=<secret>/<key>` forwards `<X>` as a `secretKeyRef` instead of a literal.
pub const SECRET_REF_PREFIX: &str = "SBOM_JOBSECRET_";

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
    /// A variable forwarded to the job (`SBOM_JOB_*`, `SBOM_JOBSECRET_*`): its value is never
    /// shown, it may be a secret (say, a token put where a `<secret>/<key>` belongs).
    #[error(
        "{var} is invalid (value not shown: it is forwarded to the job and may be a secret): expected {expected}"
    )]
    InvalidForwarded { var: String, expected: &'static str },
    #[error("{0}")]
    Conflict(String),
}

/// How the job container gets one forwarded variable. `{:?}` shows no literal value.
#[derive(Clone, PartialEq, Eq)]
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

impl std::fmt::Debug for ForwardedEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Literal { name, value } => f
                .debug_struct("Literal")
                .field("name", name)
                .field("value", &format_args!("<{} bytes>", value.len()))
                .finish(),
            Self::SecretRef { name, secret, key } => f
                .debug_struct("SecretRef")
                .field("name", name)
                .field("secret", secret)
                .field("key", key)
                .finish(),
        }
    }
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
    All,
    /// Only a Warning on the pods whose images a failed Job did not catalogue.
    #[default]
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
    /// Requests and limits of the job container: `SBOM_JOB_RESOURCES`, or
    /// [`DEFAULT_JOB_RESOURCES`] when it is not set (`{}` sets none).
    pub resources: ResourceRequirements,
    /// `sizeLimit` of the job pod's `/tmp` emptyDir, in bytes, as written (`2Gi`).
    pub tmp_size: Quantity,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub affinity: Option<Affinity>,
    pub priority_class: Option<String>,
    /// At most this many images per Job (a cycle with more becomes several Jobs).
    pub max_images: usize,
    /// At most this many Jobs of a cycle run at once.
    pub max_parallel: usize,
    /// `SBOM_MAX_JOBS_PER_CYCLE`: at most this many Jobs made by one cycle, re-planned ones
    /// included; the images left over wait for the next cycle.
    pub max_per_cycle: usize,
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
    /// `SBOM_MAX_CREDENTIAL_SIZE`: a pull-secret credential larger than this (user name and
    /// password, in bytes) is never copied into `image-config.json`.
    pub max_credential_size: usize,
    pub ignore_annotations: bool,
    pub annotation_prefix: String,
    /// `SBOM_POD_EVENTS`: which Events the pods get ([`crate::pod_events`]).
    pub pod_events: PodEvents,
    /// Namespace of the Jobs and Secrets (`POD_NAMESPACE`); `None` = the client's default.
    pub namespace: Option<String>,
    /// `POD_NAME`: this replica's Lease identity and the instance of its Events.
    pub pod_name: Option<String>,
    pub log_format: LogFormat,
    /// `RUST_LOG`: the tracing filter.
    pub log_filter: String,
    /// Digest cache, admin endpoint and leader election (see [`OpsSettings`]).
    pub ops: OpsSettings,
}

/// The job container's resources when `SBOM_JOB_RESOURCES` is not set. The requests are what
/// syft or trivy need to catalogue an ordinary image at the presets' `ENTRYPOINT_CONCURRENCY`
/// of 2, and small enough that `SBOM_JOB_MAX_PARALLEL` (3) Jobs fit a small node (300m CPU,
/// 768Mi); the memory limit stops one huge image from taking the node's memory (the Job fails,
/// its images are retried alone). No CPU limit: throttling would only slow a Job towards its
/// deadline. The chart's `job.resources` default is the same (charts/sbomjob/tests checks it).
pub const DEFAULT_JOB_RESOURCES: &str =
    r#"{"requests":{"cpu":"100m","memory":"256Mi"},"limits":{"memory":"2Gi"}}"#;
/// The allowed range of every number and duration setting, checked at start-up (and listed in
/// docs/configuration.md and the chart's values.schema.json). Besides keeping values sensible,
/// they keep every sum and product the operator makes of a setting (deadlines, timestamps,
/// Kubernetes' i32/i64 seconds) far from overflowing.
pub mod bounds {
    use std::{ops::RangeInclusive, time::Duration};

    const S: u64 = 1;
    const H: u64 = 3600;
    const D: u64 = 86400;

    const fn secs(from: u64, to: u64) -> RangeInclusive<Duration> {
        Duration::from_secs(from)..=Duration::from_secs(to)
    }

    /// `SBOM_JOB_TIMEOUT`: `activeDeadlineSeconds` must be above zero.
    pub const JOB_TIMEOUT: RangeInclusive<Duration> = secs(S, 7 * D);
    /// `SBOM_JOB_TTL`: `ttlSecondsAfterFinished` (an i32); 0 deletes a Job when it ends.
    pub const JOB_TTL: RangeInclusive<Duration> = secs(0, 30 * D);
    /// `SBOM_JOB_MAX_IMAGES`.
    pub const MAX_IMAGES: RangeInclusive<usize> = 1..=10_000;
    /// `SBOM_JOB_MAX_PARALLEL`.
    pub const MAX_PARALLEL: RangeInclusive<usize> = 1..=100;
    /// `SBOM_MAX_JOBS_PER_CYCLE`.
    pub const MAX_JOBS_PER_CYCLE: RangeInclusive<usize> = 1..=10_000;
    /// `SBOM_MAX_CREDENTIAL_SIZE`, in bytes: at most half the Secret budget
    /// ([`crate::objects::SECRET_BUDGET`]), so that an element with its credential always fits.
    pub const MAX_CREDENTIAL_SIZE: RangeInclusive<usize> = 1024..=256 * 1024;
    /// `SBOM_INTERVAL`, and `SBOM_CRON=@every <duration>`.
    pub const INTERVAL: RangeInclusive<Duration> = secs(S, 366 * D);
    /// `SBOM_CACHE_TTL`; 0 turns the cache off.
    pub const CACHE_TTL: RangeInclusive<Duration> = secs(0, 366 * D);
    /// `SBOM_CACHE_GRACE`.
    pub const CACHE_GRACE: RangeInclusive<Duration> = secs(0, 366 * D);
    /// `SBOM_HEALTH_TIMEOUT`.
    pub const HEALTH_TIMEOUT: RangeInclusive<Duration> = secs(10, D);
    /// `SBOM_DRIFT_INTERVAL`; 0 turns drift off.
    pub const DRIFT_INTERVAL: RangeInclusive<Duration> = secs(0, 30 * D);
    /// `SBOM_LEASE_DURATION`: renewed every third of it, in whole seconds, so at least 3 s.
    pub const LEASE_DURATION: RangeInclusive<Duration> = secs(3 * S, H);
    /// `SBOM_DEBOUNCE`.
    pub const DEBOUNCE: RangeInclusive<Duration> = secs(0, H);
    /// `SBOM_RETRY_BACKOFF`.
    pub const RETRY_BACKOFF: RangeInclusive<Duration> = secs(S, 7 * D);
    /// `SBOM_RETRY_BACKOFF_MAX`.
    pub const RETRY_BACKOFF_MAX: RangeInclusive<Duration> = secs(S, 30 * D);
    /// `SBOM_JOB_TMP_SIZE`, in bytes: room for a small image at least, and never unbounded.
    pub const JOB_TMP_SIZE: RangeInclusive<u64> = 64 << 20..=1 << 40;
}

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
        Self::parse(&Vars::new(&vars), &vars)
    }

    fn parse(v: &Vars, all: &[(String, String)]) -> Result<Self, SettingsError> {
        let schedule = match (v.set("SBOM_CRON"), v.set("SBOM_INTERVAL")) {
            (Some(_), Some(_)) => {
                return Err(SettingsError::Conflict(
                    "SBOM_CRON and SBOM_INTERVAL are both set: choose one schedule".into(),
                ));
            }
            (None, Some(_)) => Schedule::Interval(v.duration("SBOM_INTERVAL")?.expect("set")),
            (_, None) => {
                let cron = v.text("SBOM_CRON").expect("SBOM_CRON has a default");
                let schedule = Schedule::cron(&cron).map_err(|e| invalid("SBOM_CRON", &cron, e))?;
                // `@every <duration>` is an interval too: the same bound applies.
                if let Schedule::Interval(d) = schedule
                    && !bounds::INTERVAL.contains(&d)
                {
                    return Err(invalid(
                        "SBOM_CRON",
                        &cron,
                        format!("@every with {}", duration_in(&bounds::INTERVAL)),
                    ));
                }
                schedule
            }
        };

        let job = JobSettings {
            image: v.text("SBOM_JOB_IMAGE").ok_or_else(|| SettingsError::Missing {
                var: "SBOM_JOB_IMAGE".into(),
                what: "the job image that catalogues the images (e.g. registry.example/sbomjob-syft:1.0)",
            })?,
            image_pull_secret: v.text("SBOM_JOB_IMAGE_PULL_SECRET"),
            image_pull_policy: v.one_of("SBOM_JOB_IMAGE_PULL_POLICY")?.map(str::to_string),
            timeout: v.duration("SBOM_JOB_TIMEOUT")?.expect("default"),
            ttl: v.duration("SBOM_JOB_TTL")?.expect("default"),
            service_account: v.text("SBOM_JOB_SERVICE_ACCOUNT"),
            privileged: v.bool("SBOM_JOB_PRIVILEGED")?,
            resources: v.json("SBOM_JOB_RESOURCES")?.expect("default"),
            tmp_size: Quantity(v.size("SBOM_JOB_TMP_SIZE")?),
            node_selector: v
                .custom("SBOM_JOB_NODE_SELECTOR", parse_string_map)?
                .unwrap_or_default(),
            tolerations: v.json("SBOM_JOB_TOLERATIONS")?.unwrap_or_default(),
            affinity: v.json("SBOM_JOB_AFFINITY")?,
            priority_class: v.text("SBOM_JOB_PRIORITY_CLASS"),
            max_images: v.count("SBOM_JOB_MAX_IMAGES")?,
            max_parallel: v.count("SBOM_JOB_MAX_PARALLEL")?,
            max_per_cycle: v.count("SBOM_MAX_JOBS_PER_CYCLE")?,
            env: forwarded_env(all)?,
        };
        Ok(Settings {
            job,
            schedule,
            pod_label_selector: v.text("SBOM_POD_LABEL_SELECTOR").map(|s| unescape(&s)),
            namespace_label_selector: v.text("SBOM_NAMESPACE_LABEL_SELECTOR").map(|s| unescape(&s)),
            cluster_id: v.text("SBOM_KUBERNETES_CLUSTER_ID").expect("default"),
            fallback_pull_secret: v.text("SBOM_FALLBACK_PULL_SECRET"),
            max_credential_size: v.count("SBOM_MAX_CREDENTIAL_SIZE")?,
            ignore_annotations: v.bool("SBOM_IGNORE_ANNOTATIONS")?,
            annotation_prefix: v
                .custom("SBOM_ANNOTATION_PREFIX", parse_annotation_prefix)?
                .expect("default"),
            pod_events: match v.one_of("SBOM_POD_EVENTS")?.expect("default") {
                "failures" => PodEvents::Failures,
                "none" => PodEvents::None,
                _ => PodEvents::All,
            },
            namespace: v.text("POD_NAMESPACE"),
            pod_name: v.text("POD_NAME"),
            log_format: match v.one_of("SBOM_LOG_FORMAT")?.expect("default") {
                "json" => LogFormat::Json,
                _ => LogFormat::Plain,
            },
            log_filter: v.text("RUST_LOG").expect("default"),
            ops: OpsSettings::parse(v)?,
        })
    }
}

/// The variables start-up reads, each through its entry in [`table::ALL`]: a value that is
/// empty or only blanks is not set, and a setting that is not set takes the table's default,
/// parsed like a value.
pub struct Vars {
    values: BTreeMap<String, String>,
    /// The names read so far (a test checks that they are exactly the table's).
    read: std::cell::RefCell<std::collections::BTreeSet<&'static str>>,
}

impl Vars {
    pub fn new(vars: &[(String, String)]) -> Vars {
        Vars {
            values: vars
                .iter()
                .map(|(k, v)| (k.clone(), v.trim().to_string()))
                .filter(|(_, v)| !v.is_empty())
                .collect(),
            read: Default::default(),
        }
    }

    /// The value as set (trimmed), `None` when it is not.
    pub fn set(&self, name: &str) -> Option<&str> {
        let setting = table::get(name);
        self.read.borrow_mut().insert(setting.name);
        self.values.get(name).map(String::as_str)
    }

    /// The names read so far.
    pub fn read(&self) -> std::collections::BTreeSet<&'static str> {
        self.read.borrow().clone()
    }

    /// The value as set, else the default; parsed by `parse`. A bad value is an error naming
    /// the variable, the value and what the table says it expects; a default always parses.
    fn parsed<T>(&self, name: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, SettingsError> {
        let setting = table::get(name);
        match self.set(name) {
            Some(value) => parse(value)
                .map(Some)
                .ok_or_else(|| invalid(name, value, setting.expected())),
            None => Ok(setting
                .default
                .map(|d| parse(d).unwrap_or_else(|| panic!("the default of {name} ({d:?}) does not parse")))),
        }
    }

    /// A [`table::Kind::Text`] setting.
    pub fn text(&self, name: &str) -> Option<String> {
        self.set(name).or(table::get(name).default).map(str::to_string)
    }

    pub fn bool(&self, name: &str) -> Result<bool, SettingsError> {
        Ok(self.parsed(name, parse_bool)?.unwrap_or(false))
    }

    pub fn count(&self, name: &str) -> Result<usize, SettingsError> {
        let table::Kind::Count(range) = &table::get(name).kind else {
            panic!("{name} is not a count");
        };
        Ok(self
            .parsed(name, |v| v.parse().ok().filter(|n| range.contains(n)))?
            .expect("a count has a default"))
    }

    pub fn duration(&self, name: &str) -> Result<Option<Duration>, SettingsError> {
        let table::Kind::Duration(range) = &table::get(name).kind else {
            panic!("{name} is not a duration");
        };
        self.parsed(name, |v| parse_duration(v).filter(|d| range.contains(d)))
    }

    /// A size, kept as written: Kubernetes reads it.
    pub fn size(&self, name: &str) -> Result<String, SettingsError> {
        let table::Kind::Size(range) = &table::get(name).kind else {
            panic!("{name} is not a size");
        };
        Ok(self
            .parsed(name, |v| {
                parse_size(v).filter(|n| range.contains(n)).map(|_| v.to_string())
            })?
            .expect("a size has a default"))
    }

    /// One of the table's words (any case), as the table spells it.
    pub fn one_of(&self, name: &str) -> Result<Option<&'static str>, SettingsError> {
        let table::Kind::OneOf(words) = table::get(name).kind else {
            panic!("{name} is not a choice");
        };
        self.parsed(name, |v| {
            words.iter().copied().find(|w| w.eq_ignore_ascii_case(v))
        })
    }

    pub fn json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, SettingsError> {
        let setting = table::get(name);
        let expected = setting.expected();
        match self.set(name) {
            Some(value) => serde_json::from_str(value)
                .map(Some)
                .map_err(|e| invalid(name, value, format!("{expected} ({e})"))),
            None => Ok(setting.default.map(|d| {
                serde_json::from_str(d)
                    .unwrap_or_else(|e| panic!("the default of {name} does not parse: {e}"))
            })),
        }
    }

    /// A [`table::Kind::Custom`] setting, parsed by `parse`.
    pub fn custom<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, SettingsError> {
        self.parsed(name, parse)
    }
}

/// The variables forwarded to the job container, sorted by their name in the job.
pub fn forwarded_env(vars: &[(String, String)]) -> Result<Vec<ForwardedEnv>, SettingsError> {
    let mut out = BTreeMap::new();
    for (key, value) in vars {
        // Anchored prefix match: `MY_SBOM_JOB_X` is not ours.
        if let Some(name) = key.strip_prefix(FORWARD_PREFIX) {
            if table::is_own_job_setting(key) || name.is_empty() {
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
            let forwarded = |expected| SettingsError::InvalidForwarded {
                var: key.clone(),
                expected,
            };
            let (secret, secret_key) = value
                .split_once('/')
                .filter(|(s, k)| !s.is_empty() && !k.is_empty())
                .ok_or_else(|| forwarded("<secret-name>/<key>"))?;
            if name.is_empty() {
                return Err(forwarded("a variable name after SBOM_JOBSECRET_"));
            }
            let literal = format!("{FORWARD_PREFIX}{name}");
            if vars.iter().any(|(k, _)| *k == literal) && !table::is_own_job_setting(&literal) {
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

/// "a duration from 1s to 7d".
fn duration_in(range: &RangeInclusive<Duration>) -> String {
    format!(
        "a duration from {} to {}",
        ShortDuration(*range.start()),
        ShortDuration(*range.end())
    )
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

fn parse_release(v: &str) -> Option<String> {
    let ok = v.len() <= MAX_RELEASE_LEN
        && !v.contains('.')
        && parse_annotation_prefix(v).is_some()
        && v.starts_with(|c: char| c.is_ascii_lowercase());
    ok.then(|| v.to_string())
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

// ---- Operations: digest cache, admin endpoint, leader election --------------------------------

/// `SBOM_` settings of the release, the digest cache ([`crate::cache`]), the admin endpoint
/// ([`crate::admin`]) and leader election ([`crate::leader`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OpsSettings {
    /// `SBOM_RELEASE`: which installation this operator is (the chart sets the Helm release
    /// name). Its Jobs, Secrets, Lease and Events carry it and it selects only those, so several
    /// releases, two in one namespace included, never touch each other's work.
    pub release: String,
    /// `SBOM_CACHE_TTL`: how long a processed digest counts as done; `None` when set to `0`,
    /// which disables the cache.
    pub cache_ttl: Option<Duration>,
    /// `SBOM_CACHE_GRACE`: how long a record outlives the last pod running its digest.
    pub cache_grace: Duration,
    /// `SBOM_ADMIN_ADDR`: where `/metrics`, `/healthz` and `/readyz` are served.
    pub admin_addr: std::net::SocketAddr,
    /// `SBOM_HEALTH_TIMEOUT`: `/healthz` fails after this long without progress ([`crate::health`]).
    pub health_timeout: Duration,
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
    /// `SBOM_RETRY_BACKOFF`: an image that failed alone in a Job is not retried before this,
    /// doubled for every further failure ([`OpsSettings::backoff`]).
    pub backoff_initial: Duration,
    /// `SBOM_RETRY_BACKOFF_MAX`: the longest wait between retries; at least `backoff_initial`.
    pub backoff_max: Duration,
    /// `SBOM_REGISTRY_LOOKUP*`: the registry as a cache shared by clusters ([`crate::lookup`]).
    pub lookup: LookupSettings,
    /// `SBOM_SOURCE_REGISTRIES`: the registries ImageSources may name ([`crate::sources`]).
    pub source_registries: crate::sources::spec::AllowedRegistries,
    /// `SBOM_DRIFT_INTERVAL`: how often running tags are compared with their repositories'
    /// ([`crate::drift`]); `None` when `0` turned it off.
    pub drift_interval: Option<Duration>,
}

/// `SBOM_REGISTRY_LOOKUP*`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LookupSettings {
    /// `SBOM_REGISTRY_LOOKUP`.
    pub enabled: bool,
    /// `SBOM_REGISTRY_LOOKUP_ACCEPT`: artifact types that count whoever attached them.
    pub accepted_types: Vec<String>,
    /// `SBOM_REGISTRY_LOOKUP_INSECURE`: `host[:port]` spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// `SBOM_REGISTRY_LOOKUP_REPOSITORIES`: `registry[/path]` prefixes whose referrers are
    /// trusted; empty: every repository.
    pub repositories: Vec<String>,
}

impl LookupSettings {
    /// Whether referrers in `registry/repository` are trusted: under one of the prefixes (whole
    /// path components: `reg/team` covers `reg/team/app`, not `reg/teams`), or no prefixes set.
    pub fn trusts(&self, repository: &str) -> bool {
        self.repositories.is_empty()
            || self.repositories.iter().any(|p| {
                let p = p.trim_end_matches('/');
                repository == p || repository.starts_with(&format!("{p}/"))
            })
    }
}

/// A comma-separated list whose every entry passes `valid` (empty entries dropped).
fn parse_list(value: &str, valid: impl Fn(&str) -> bool) -> Option<Vec<String>> {
    let items: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    items.iter().all(|i| valid(i)).then_some(items)
}

/// `SBOM_SOURCE_REGISTRIES`: `*`, or `host[:port]` entries (empty: none).
fn parse_allowed_registries(value: &str) -> Option<crate::sources::spec::AllowedRegistries> {
    use crate::sources::spec::AllowedRegistries;
    if value.trim() == "*" {
        return Some(AllowedRegistries::Any);
    }
    let list = parse_list(value, sbomjob_contract::image_ref::is_host)?;
    Some(if list.is_empty() {
        AllowedRegistries::None
    } else {
        AllowedRegistries::Only(list)
    })
}

/// The longest release name: Helm's limit, which leaves room in Job names for the cycle id.
pub const MAX_RELEASE_LEN: usize = 53;
/// The Lease name when `SBOM_LEASE_NAME` is not set: `<release>-leader` (`sbomjob-leader`).
pub fn default_lease_name(release: &str) -> String {
    format!("{release}-leader")
}
/// The defaults of the table.
impl Default for OpsSettings {
    fn default() -> Self {
        OpsSettings::parse(&Vars::new(&[])).expect("the defaults parse")
    }
}

impl OpsSettings {
    fn parse(v: &Vars) -> Result<Self, SettingsError> {
        let release = v.custom("SBOM_RELEASE", parse_release)?.expect("default");
        let lease_name = v
            .custom("SBOM_LEASE_NAME", parse_annotation_prefix)?
            .unwrap_or_else(|| default_lease_name(&release));
        let backoff_initial = v.duration("SBOM_RETRY_BACKOFF")?.expect("default");
        let backoff_max = v.duration("SBOM_RETRY_BACKOFF_MAX")?.expect("default");
        if backoff_max < backoff_initial {
            return Err(SettingsError::Conflict(format!(
                "SBOM_RETRY_BACKOFF_MAX ({}) is below SBOM_RETRY_BACKOFF ({}): the longest wait \
                 between retries must be at least the first",
                humantime::format_duration(backoff_max),
                humantime::format_duration(backoff_initial),
            )));
        }
        let lease_duration = v.duration("SBOM_LEASE_DURATION")?.expect("default");
        Ok(OpsSettings {
            release,
            cache_ttl: v.duration("SBOM_CACHE_TTL")?.filter(|d| !d.is_zero()),
            cache_grace: v.duration("SBOM_CACHE_GRACE")?.expect("default"),
            admin_addr: v.custom("SBOM_ADMIN_ADDR", |a| a.parse().ok())?.expect("default"),
            health_timeout: v.duration("SBOM_HEALTH_TIMEOUT")?.expect("default"),
            leader_election: v.bool("SBOM_LEADER_ELECTION")?,
            lease_name,
            // The Lease stores whole seconds.
            lease_duration: Duration::from_secs(lease_duration.as_secs()),
            debounce: v.duration("SBOM_DEBOUNCE")?.expect("default"),
            backoff_initial,
            backoff_max,
            lookup: LookupSettings {
                enabled: v.bool("SBOM_REGISTRY_LOOKUP")?,
                accepted_types: v
                    .custom("SBOM_REGISTRY_LOOKUP_ACCEPT", |s| parse_list(s, is_media_type))?
                    .unwrap_or_default(),
                insecure: v
                    .custom("SBOM_REGISTRY_LOOKUP_INSECURE", |s| {
                        parse_list(s, sbomjob_contract::image_ref::is_host)
                    })?
                    .unwrap_or_default(),
                repositories: v
                    .custom("SBOM_REGISTRY_LOOKUP_REPOSITORIES", |s| {
                        parse_list(s, |p| {
                            let host = p.split('/').next().unwrap_or_default();
                            sbomjob_contract::image_ref::is_host(host)
                                && !p.contains(|c: char| c.is_whitespace() || c == '@' || c == ',')
                        })
                    })?
                    .unwrap_or_default(),
            },
            source_registries: v
                .custom("SBOM_SOURCE_REGISTRIES", parse_allowed_registries)?
                .unwrap_or_default(),
            drift_interval: v.duration("SBOM_DRIFT_INTERVAL")?.filter(|d| !d.is_zero()),
        })
    }

    /// How long an image that failed alone in `attempts` Jobs waits before its next Job:
    /// `backoff_initial * 2^(attempts-1)`, at most `backoff_max` (`attempts` 0 counts as 1).
    /// Saturating, so any number of attempts is fine.
    pub fn backoff(&self, attempts: u32) -> Duration {
        crate::backoff::delay(attempts, self.backoff_initial, self.backoff_max)
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
        assert_eq!(s.job.max_parallel, 3);
        assert_eq!(s.log_format, LogFormat::Plain);
        assert_eq!(s.pod_events, PodEvents::Failures);
        assert!(s.job.env.is_empty());
        assert_eq!(s.job.ttl, Duration::from_secs(3600));
        assert_eq!(s.job.max_images, 50);
        assert_eq!(s.job.max_per_cycle, 100);
        assert_eq!(s.max_credential_size, 65_536);
        assert_eq!(s.schedule, Schedule::cron("0 0 * * * *").unwrap());
        assert_eq!(s.ops.debounce, Duration::from_secs(30));
        assert_eq!(s.ops.backoff_initial, Duration::from_secs(600));
        assert_eq!(s.ops.backoff_max, Duration::from_secs(24 * 3600));
        assert_eq!(s.job.tmp_size.0, "4Gi");
        let resources = &s.job.resources;
        let quantity = |m: &Option<BTreeMap<String, Quantity>>, k: &str| m.as_ref().map(|m| m[k].0.clone());
        assert_eq!(quantity(&resources.requests, "cpu").as_deref(), Some("100m"));
        assert_eq!(quantity(&resources.requests, "memory").as_deref(), Some("256Mi"));
        assert_eq!(quantity(&resources.limits, "memory").as_deref(), Some("2Gi"));
        assert!(
            !resources.limits.as_ref().unwrap().contains_key("cpu"),
            "no CPU limit"
        );
    }

    #[test]
    fn job_resources_default_unless_set_and_empty_sets_none() {
        let s = settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_JOB_RESOURCES", "{}")]).unwrap();
        assert_eq!(s.job.resources, ResourceRequirements::default());
        let s = settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_JOB_RESOURCES", "  ")]).unwrap();
        assert_eq!(
            s.job.resources,
            serde_json::from_str::<ResourceRequirements>(DEFAULT_JOB_RESOURCES).unwrap()
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2Gi"), Some(2 << 30));
        assert_eq!(parse_size("500M"), Some(500_000_000));
        assert_eq!(parse_size("1073741824"), Some(1 << 30));
        assert_eq!(parse_size("64Mi"), Some(64 << 20));
        for bad in [
            "",
            "Gi",
            "1.5Gi",
            "2 Gi",
            "2gi",
            "-1Gi",
            "2GiB",
            "1e9",
            "18446744073709551615Ki",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        // Kept as written: it is the Quantity Kubernetes reads.
        let s = settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_JOB_TMP_SIZE", " 512Mi ")]).unwrap();
        assert_eq!(s.job.tmp_size.0, "512Mi");
    }

    #[test]
    fn defaults_are_within_their_bounds() {
        // Vars parses a default like a value (range included) and panics on one that does not
        // parse: reading every setting with nothing set checks them all.
        let s = settings(&[("SBOM_JOB_IMAGE", "i")]).unwrap();
        assert!(s.ops.backoff_initial <= s.ops.backoff_max);
        // An element with the largest credential allowed fits a Secret with room for its pods.
        assert!(*bounds::MAX_CREDENTIAL_SIZE.end() <= crate::objects::SECRET_BUDGET / 2);
        assert_eq!(OpsSettings::default(), s.ops);
    }

    #[test]
    fn start_up_reads_exactly_the_settings_of_the_table() {
        // Every setting set, so that no branch skips one (SBOM_INTERVAL is read only when set).
        let list = vars(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_INTERVAL", "1h")]);
        let v = Vars::new(&list);
        Settings::parse(&v, &list).unwrap();
        let mut read = v.read();
        let v = Vars::new(&vars(&[("SBOM_JOB_IMAGE", "i")]));
        Settings::parse(&v, &vars(&[("SBOM_JOB_IMAGE", "i")])).unwrap();
        read.extend(v.read());
        let table: std::collections::BTreeSet<_> = table::ALL.iter().map(|s| s.name).collect();
        assert_eq!(read, table, "settings read at start-up vs table::ALL");
        assert_eq!(table.len(), table::ALL.len(), "a setting declared twice");
    }

    #[test]
    fn the_own_job_settings_are_the_tables_sbom_job_entries() {
        let own: Vec<_> = table::ALL
            .iter()
            .filter(|s| s.is_own_job_setting())
            .map(|s| s.name)
            .collect();
        assert!(
            own.contains(&"SBOM_JOB_IMAGE") && own.contains(&"SBOM_JOB_TMP_SIZE"),
            "{own:?}"
        );
        assert!(own.iter().all(|n| table::is_own_job_setting(n)));
        assert!(!table::is_own_job_setting("SBOM_JOB_ENTRYPOINT_COMMAND"));
        assert!(!table::is_own_job_setting("SBOM_CRON"));
    }

    /// A bounded variable: its range as the error states it, the smallest and largest values
    /// accepted (and what they become, in seconds or as a count), a value just outside each end,
    /// and other variables the accepted values need.
    struct Bounded {
        var: &'static str,
        range: &'static str,
        min: (&'static str, u64),
        max: (&'static str, u64),
        below: Option<&'static str>,
        above: &'static str,
        with: &'static [(&'static str, &'static str)],
    }

    const BOUNDED: &[Bounded] = &[
        Bounded {
            var: "SBOM_JOB_TIMEOUT",
            range: "a duration from 1s to 7d",
            min: ("1", 1),
            max: ("7d", 604_800),
            below: Some("500ms"),
            above: "604801",
            with: &[],
        },
        Bounded {
            var: "SBOM_JOB_TTL",
            range: "a duration from 0s to 30d",
            min: ("0", 0),
            max: ("30d", 2_592_000),
            below: None,
            above: "30d 1s",
            with: &[],
        },
        Bounded {
            var: "SBOM_JOB_MAX_IMAGES",
            range: "a whole number from 1 to 10000",
            min: ("1", 1),
            max: ("10000", 10_000),
            below: Some("0"),
            above: "10001",
            with: &[],
        },
        Bounded {
            var: "SBOM_JOB_MAX_PARALLEL",
            range: "a whole number from 1 to 100",
            min: ("1", 1),
            max: ("100", 100),
            below: Some("0"),
            above: "101",
            with: &[],
        },
        Bounded {
            var: "SBOM_MAX_JOBS_PER_CYCLE",
            range: "a whole number from 1 to 10000",
            min: ("1", 1),
            max: ("10000", 10_000),
            below: Some("0"),
            above: "10001",
            with: &[],
        },
        Bounded {
            var: "SBOM_MAX_CREDENTIAL_SIZE",
            range: "a whole number from 1024 to 262144",
            min: ("1024", 1024),
            max: ("262144", 262_144),
            below: Some("1023"),
            above: "262145",
            with: &[],
        },
        Bounded {
            var: "SBOM_INTERVAL",
            range: "a duration from 1s to 366d",
            min: ("1s", 1),
            max: ("366d", 31_622_400),
            below: Some("0"),
            above: "366d 1s",
            with: &[],
        },
        Bounded {
            var: "SBOM_CACHE_TTL",
            range: "a duration from 0s to 366d",
            min: ("0", 0),
            max: ("366d", 31_622_400),
            below: None,
            above: "31622401",
            with: &[],
        },
        Bounded {
            var: "SBOM_CACHE_GRACE",
            range: "a duration from 0s to 366d",
            min: ("0s", 0),
            max: ("366d", 31_622_400),
            below: None,
            above: "367d",
            with: &[],
        },
        Bounded {
            var: "SBOM_LEASE_DURATION",
            range: "a duration from 3s to 1h",
            min: ("3", 3),
            max: ("1h", 3600),
            below: Some("2s"),
            above: "3601",
            with: &[],
        },
        Bounded {
            var: "SBOM_DEBOUNCE",
            range: "a duration from 0s to 1h",
            min: ("0", 0),
            max: ("60m", 3600),
            below: None,
            above: "1h 1s",
            with: &[],
        },
        Bounded {
            var: "SBOM_RETRY_BACKOFF",
            range: "a duration from 1s to 7d",
            min: ("1s", 1),
            max: ("7d", 604_800),
            below: Some("0"),
            above: "7d 1s",
            with: &[("SBOM_RETRY_BACKOFF_MAX", "30d")],
        },
        Bounded {
            var: "SBOM_RETRY_BACKOFF_MAX",
            range: "a duration from 1s to 30d",
            min: ("1", 1),
            max: ("30d", 2_592_000),
            below: Some("0"),
            above: "2592001",
            with: &[("SBOM_RETRY_BACKOFF", "1s")],
        },
        Bounded {
            var: "SBOM_JOB_TMP_SIZE",
            range: "a size from 64Mi to 1Ti",
            min: ("64Mi", 64 << 20),
            max: ("1099511627776", 1 << 40),
            below: Some("67108863"),
            above: "1025Gi",
            with: &[],
        },
    ];

    /// Values no bounded variable accepts: near and past the limits of i64 and u64 seconds,
    /// and 1e13 s, which overflowed chrono's time.
    const OVERFLOWING: &[&str] = &[
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "10000000000000",
        "10000000000000s",
        "1e13s",
        "1e13",
        "584942417355y",
        "-1",
    ];

    /// What a bounded variable became, in seconds (durations) or as a count.
    fn value_of(s: &Settings, var: &str) -> u64 {
        match var {
            "SBOM_JOB_TIMEOUT" => s.job.timeout.as_secs(),
            "SBOM_JOB_TTL" => s.job.ttl.as_secs(),
            "SBOM_JOB_MAX_IMAGES" => s.job.max_images as u64,
            "SBOM_JOB_MAX_PARALLEL" => s.job.max_parallel as u64,
            "SBOM_MAX_JOBS_PER_CYCLE" => s.job.max_per_cycle as u64,
            "SBOM_MAX_CREDENTIAL_SIZE" => s.max_credential_size as u64,
            "SBOM_INTERVAL" => match s.schedule {
                Schedule::Interval(d) => d.as_secs(),
                Schedule::Cron(_) => panic!("not an interval"),
            },
            "SBOM_CACHE_TTL" => s.ops.cache_ttl.unwrap_or_default().as_secs(),
            "SBOM_CACHE_GRACE" => s.ops.cache_grace.as_secs(),
            "SBOM_LEASE_DURATION" => s.ops.lease_duration.as_secs(),
            "SBOM_DEBOUNCE" => s.ops.debounce.as_secs(),
            "SBOM_RETRY_BACKOFF" => s.ops.backoff_initial.as_secs(),
            "SBOM_RETRY_BACKOFF_MAX" => s.ops.backoff_max.as_secs(),
            "SBOM_JOB_TMP_SIZE" => parse_size(&s.job.tmp_size.0).unwrap(),
            _ => panic!("{var} is not in the table"),
        }
    }

    #[test]
    fn every_bound_is_checked_and_its_error_names_variable_value_and_range() {
        for b in BOUNDED {
            for (value, want) in [b.min, b.max] {
                let mut list = vec![("SBOM_JOB_IMAGE", "i"), (b.var, value)];
                list.extend(b.with);
                let s = settings(&list).unwrap_or_else(|e| panic!("{}={value:?}: {e}", b.var));
                assert_eq!(value_of(&s, b.var), want, "{}={value:?}", b.var);
            }
            for value in b.below.iter().chain([&b.above]).chain(OVERFLOWING) {
                match settings(&[("SBOM_JOB_IMAGE", "i"), (b.var, value)]) {
                    Err(SettingsError::Invalid {
                        var,
                        value: v,
                        expected,
                    }) => {
                        assert_eq!((var.as_str(), v.as_str()), (b.var, *value));
                        assert!(expected.starts_with(b.range), "{}={value:?}: {expected}", b.var);
                    }
                    other => panic!("{}={value:?} gave {other:?}", b.var),
                }
            }
        }
        // One message in full, as the operator prints it.
        let err = settings(&[
            ("SBOM_JOB_IMAGE", "i"),
            ("SBOM_JOB_TIMEOUT", "9223372036854775807"),
        ])
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "SBOM_JOB_TIMEOUT=\"9223372036854775807\" is invalid: expected a duration from 1s to 7d, \
             such as 3600 (seconds), 90s, 10m or 1h"
        );
    }

    #[test]
    fn bounds_are_documented() {
        // The chart value of each bounded variable (values.schema.json), and its docs.
        let chart = [
            ("SBOM_JOB_TIMEOUT", "/properties/jobTimeout"),
            ("SBOM_JOB_TTL", "/properties/jobTTL"),
            ("SBOM_JOB_MAX_IMAGES", "/properties/job/properties/maxImages"),
            ("SBOM_JOB_MAX_PARALLEL", "/properties/job/properties/maxParallel"),
            ("SBOM_MAX_JOBS_PER_CYCLE", "/properties/maxJobsPerCycle"),
            ("SBOM_MAX_CREDENTIAL_SIZE", "/properties/maxCredentialSize"),
            ("SBOM_INTERVAL", "/properties/interval"),
            ("SBOM_CACHE_TTL", "/properties/cache/properties/ttl"),
            ("SBOM_CACHE_GRACE", "/properties/cache/properties/grace"),
            (
                "SBOM_LEASE_DURATION",
                "/properties/leaderElection/properties/leaseDuration",
            ),
            ("SBOM_DEBOUNCE", "/properties/debounce"),
            ("SBOM_RETRY_BACKOFF", "/properties/retryBackoff"),
            ("SBOM_RETRY_BACKOFF_MAX", "/properties/retryBackoffMax"),
            ("SBOM_JOB_TMP_SIZE", "/properties/job/properties/tmpSize"),
        ];
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../charts/sbomjob/values.schema.json")).unwrap();
        let docs = include_str!("../../docs/configuration.md");
        let readme = include_str!("../../README.md");
        assert_eq!(chart.len(), BOUNDED.len());
        for (b, (var, pointer)) in BOUNDED.iter().zip(chart) {
            assert_eq!(b.var, var);
            let prop = schema.pointer(pointer).unwrap_or_else(|| panic!("{pointer}"));
            // Numbers in the chart are seconds (or counts, or bytes), as for the operator.
            assert_eq!(
                (prop["minimum"].as_u64(), prop["maximum"].as_u64()),
                (Some(b.min.1), Some(b.max.1)),
                "{pointer}"
            );
            let range = &b.range[b.range.find("from").unwrap()..];
            for (file, text) in [("docs/configuration.md", docs), ("README.md", readme)] {
                let row = text
                    .lines()
                    .find(|l| l.starts_with(&format!("| `{var}` |")))
                    .unwrap_or_else(|| panic!("{file} has no row for {var}"));
                assert!(row.contains(range), "{file}: {var} row lacks {range:?}: {row}");
            }
        }
    }

    #[test]
    fn cron_every_is_bounded_like_the_interval() {
        let s = settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_CRON", "@every 366d")]).unwrap();
        assert_eq!(s.schedule, Schedule::Interval(Duration::from_secs(366 * 86400)));
        for every in [
            "@every 366d 1s",
            "@every 10000000000000s",
            "@every 18446744073709551615",
        ] {
            match settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_CRON", every)]) {
                Err(SettingsError::Invalid { var, value, expected }) => {
                    assert_eq!((var.as_str(), value.as_str()), ("SBOM_CRON", every));
                    assert!(expected.contains("from 1s to 366d"), "{expected}");
                }
                other => panic!("{every:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_cron_that_never_fires_is_a_start_up_error() {
        // February 30th; a year in the past.
        for never in ["0 0 0 30 2 *", "0 0 0 1 1 * 2020"] {
            let err = settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_CRON", never)])
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("SBOM_CRON={never:?} is invalid")) && err.contains("fires"),
                "{err}"
            );
        }
    }

    #[test]
    fn retry_backoff_settings() {
        let ops = settings(&[
            ("SBOM_JOB_IMAGE", "i"),
            ("SBOM_RETRY_BACKOFF", "1m"),
            ("SBOM_RETRY_BACKOFF_MAX", "5m"),
        ])
        .unwrap()
        .ops;
        assert_eq!(ops.backoff_initial, Duration::from_secs(60));
        assert_eq!(ops.backoff_max, Duration::from_secs(300));
        let waits: Vec<u64> = (0..6).map(|n| ops.backoff(n).as_secs()).collect();
        assert_eq!(waits, [60, 60, 120, 240, 300, 300]);
        // Equal is fine: a fixed delay.
        let fixed = settings(&[
            ("SBOM_JOB_IMAGE", "i"),
            ("SBOM_RETRY_BACKOFF", "1h"),
            ("SBOM_RETRY_BACKOFF_MAX", "3600"),
        ])
        .unwrap()
        .ops;
        assert_eq!(fixed.backoff(1), fixed.backoff(9));
        // Not forwarded to the job.
        assert!(
            settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_RETRY_BACKOFF", "1m")])
                .unwrap()
                .job
                .env
                .is_empty()
        );
    }

    #[test]
    fn retry_backoff_max_below_the_first_wait_is_a_conflict() {
        for list in [
            &[("SBOM_RETRY_BACKOFF", "2h"), ("SBOM_RETRY_BACKOFF_MAX", "1h")][..],
            // Against the default maximum (24h).
            &[("SBOM_RETRY_BACKOFF", "2d")][..],
            // Against the default first wait (10m).
            &[("SBOM_RETRY_BACKOFF_MAX", "5m")][..],
        ] {
            let mut vars = vec![("SBOM_JOB_IMAGE", "i")];
            vars.extend(list);
            match settings(&vars) {
                Err(SettingsError::Conflict(msg)) => assert!(
                    msg.starts_with("SBOM_RETRY_BACKOFF_MAX (") && msg.contains("below SBOM_RETRY_BACKOFF ("),
                    "{msg}"
                ),
                other => panic!("{list:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn backoff_saturates() {
        let ops = OpsSettings::default();
        assert_eq!(ops.backoff(1), Duration::from_secs(600));
        assert_eq!(ops.backoff(2), Duration::from_secs(1200));
        assert_eq!(ops.backoff(8), Duration::from_secs(76_800), "10m · 2^7");
        assert_eq!(ops.backoff(9), Duration::from_secs(24 * 3600), "capped");
        for attempts in [32, 33, 64, u32::MAX] {
            assert_eq!(ops.backoff(attempts), ops.backoff_max, "{attempts}");
        }
        // Past the bounds (built by hand): still no overflow.
        let extreme = OpsSettings {
            backoff_initial: Duration::MAX,
            backoff_max: Duration::MAX,
            ..OpsSettings::default()
        };
        assert_eq!(extreme.backoff(u32::MAX), Duration::MAX);
    }

    #[test]
    fn pod_events() {
        for (value, want, processed, failures) in [
            ("all", PodEvents::All, true, true),
            ("failures", PodEvents::Failures, false, true),
            (" None ", PodEvents::None, false, false),
            ("", PodEvents::Failures, false, true),
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
            ("SBOM_JOB_MAX_IMAGES", "0", "a whole number from 1 to 10000"),
            ("SBOM_JOB_RESOURCES", "{\"limits\":", "ResourceRequirements"),
            ("SBOM_LOG_FORMAT", "xml", "plain, text or json"),
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

    /// A token put where `<secret>/<key>` belongs (or any forwarded value) never reaches the
    /// log of a failed start; the message still names the variable and what was expected.
    #[test]
    fn forwarded_values_are_never_shown() {
        for (var, value, expected) in [
            ("SBOM_JOBSECRET_API_KEY", "ghp_s3cr3tT0ken", "<secret-name>/<key>"),
            ("SBOM_JOBSECRET_TOKEN", "/ghp_s3cr3tT0ken", "<secret-name>/<key>"),
            (
                "SBOM_JOBSECRET_",
                "s/ghp_s3cr3tT0ken",
                "a variable name after SBOM_JOBSECRET_",
            ),
        ] {
            let err = settings(&[("SBOM_JOB_IMAGE", "i"), (var, value)]).unwrap_err();
            assert!(matches!(&err, SettingsError::InvalidForwarded { .. }), "{err:?}");
            let text = format!("{err} {err:?}");
            assert!(text.contains(var) && text.contains(expected), "{text}");
            assert!(!text.contains("s3cr3t"), "{var}: the value is shown: {text}");
        }
        // Nor does `{:?}` of the settings show a literal forwarded value.
        let s = settings(&[
            ("SBOM_JOB_IMAGE", "i"),
            ("SBOM_JOB_DTRACK_API_KEY", "s3cr3t-literal"),
        ])
        .unwrap();
        let shown = format!("{s:?}");
        assert!(
            shown.contains("DTRACK_API_KEY") && !shown.contains("s3cr3t"),
            "{shown}"
        );
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
        let limits = s.job.resources.limits.unwrap();
        assert_eq!(limits.keys().collect::<Vec<_>>(), ["memory"]);
        assert_eq!(limits["memory"].0, "1Gi");
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
        let mut list: Vec<(&str, &str)> = table::ALL
            .iter()
            .filter(|s| s.is_own_job_setting())
            .map(|s| (s.name, "1"))
            .collect();
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
    fn source_registries_and_drift_interval() {
        use crate::sources::spec::AllowedRegistries;
        let ops = settings(&[("SBOM_JOB_IMAGE", "i")]).unwrap().ops;
        assert_eq!(ops.source_registries, AllowedRegistries::None);
        assert_eq!(ops.drift_interval, Some(Duration::from_secs(3600)));
        for (value, want) in [
            ("*", AllowedRegistries::Any),
            (" * ", AllowedRegistries::Any),
            (" ,", AllowedRegistries::None),
            (
                "reg.example:5000, ghcr.io",
                AllowedRegistries::Only(vec!["reg.example:5000".into(), "ghcr.io".into()]),
            ),
        ] {
            let ops = settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_SOURCE_REGISTRIES", value)])
                .unwrap()
                .ops;
            assert_eq!(ops.source_registries, want, "{value:?}");
        }
        for value in ["*,ghcr.io", "https://ghcr.io", "ghcr.io/team"] {
            let err = settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_SOURCE_REGISTRIES", value)]).unwrap_err();
            assert!(err.to_string().contains("SBOM_SOURCE_REGISTRIES"), "{err}");
        }
        let ops = settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_DRIFT_INTERVAL", "0")])
            .unwrap()
            .ops;
        assert_eq!(ops.drift_interval, None);
        assert!(settings(&[("SBOM_JOB_IMAGE", "i"), ("SBOM_DRIFT_INTERVAL", "31d")]).is_err());
    }

    #[test]
    fn registry_lookup_settings() {
        let l = settings(&[("SBOM_JOB_IMAGE", "i")]).unwrap().ops.lookup;
        assert!(l.enabled && l.accepted_types.is_empty() && l.insecure.is_empty());
        assert!(l.trusts("anything.example/x"), "no prefixes: every repository");
        let l = settings(&[
            ("SBOM_JOB_IMAGE", "i"),
            ("SBOM_REGISTRY_LOOKUP", "false"),
            (
                "SBOM_REGISTRY_LOOKUP_ACCEPT",
                " application/spdx+json, application/vnd.cyclonedx+json ,",
            ),
            ("SBOM_REGISTRY_LOOKUP_INSECURE", "10.0.0.1:5000"),
            ("SBOM_REGISTRY_LOOKUP_REPOSITORIES", "reg.example/team/,ghcr.io"),
        ])
        .unwrap()
        .ops
        .lookup;
        assert!(!l.enabled);
        assert_eq!(
            l.accepted_types,
            ["application/spdx+json", "application/vnd.cyclonedx+json"]
        );
        assert_eq!(l.insecure, ["10.0.0.1:5000"]);
        assert!(l.trusts("reg.example/team/app") && l.trusts("reg.example/team") && l.trusts("ghcr.io/x/y"));
        assert!(!l.trusts("reg.example/teams/app") && !l.trusts("reg.example/other"));
        for (var, value) in [
            ("SBOM_REGISTRY_LOOKUP_ACCEPT", "spdx"),
            ("SBOM_REGISTRY_LOOKUP_INSECURE", "not a host"),
            ("SBOM_REGISTRY_LOOKUP_REPOSITORIES", "reg.example/a@sha256:x"),
        ] {
            let err = settings(&[("SBOM_JOB_IMAGE", "i"), (var, value)]).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
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
            ("SBOM_LEASE_DURATION", "1s", "from 3s to 1h"),
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
