//! Settings, from the environment only (the spec forbids command-line arguments).
//!
//! Every variable is `ENTRYPOINT_<NAME>`; on the operator a user sets `SBOM_JOB_ENTRYPOINT_<NAME>`,
//! which the operator forwards to the job as `ENTRYPOINT_<NAME>`. Each is declared once, in
//! [`table::ALL`], read through [`Vars`] and parsed here, so that a bad value is reported with
//! its variable name and what was expected.

use sbomjob_contract::referrers::is_media_type;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use sbomjob_contract::ImageRef;
use sbomjob_contract::units::{parse_bool, parse_duration};

pub mod table;

pub const PREFIX: &str = "ENTRYPOINT_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The command template (validated separately by [`crate::template::Template::parse`]).
    pub command: String,
    /// How many images run at once.
    pub concurrency: usize,
    /// Per-attempt time limit; `None` = no limit (the Job's deadline still applies).
    pub timeout: Option<Duration>,
    /// Extra attempts after a failed one.
    pub retries: u32,
    /// Wait before the first retry; doubles each time, capped at [`MAX_BACKOFF`].
    pub retry_backoff: Duration,
    /// Launch no new image after the first failure.
    pub fail_fast: bool,
    /// Where `{output}` paths and captured output go; `None` = a private scratch directory.
    pub output_dir: Option<PathBuf>,
    pub config: PathBuf,
    /// How long a child gets between SIGTERM and SIGKILL when it is stopped.
    pub kill_grace: Duration,
    pub log_format: LogFormat,
    /// A tracing-subscriber filter such as `info` or `debug`.
    pub log_level: String,
    /// `ENTRYPOINT_ATTACH=true`: push each image's `{output}.*` files to its registry.
    pub attach: Option<AttachSettings>,
    /// `ENTRYPOINT_ATTACH_*` variables that are set while `ENTRYPOINT_ATTACH` is not true
    /// (reported as a warning: they do nothing).
    pub attach_ignored: Vec<String>,
    /// Where the per-image outcomes go at exit (see [`crate::termination`]).
    pub termination_log: TerminationLog,
    /// `ENTRYPOINT_DEADLINE`: the whole run's time, from the entrypoint's start. When it is
    /// up, every tool is stopped as on SIGTERM and the images still running count as failed,
    /// so a slow image is named in the report before the Job's own deadline kills the pod
    /// (and with it the report). The operator sets it a margin below activeDeadlineSeconds.
    pub deadline: Option<Duration>,
    /// The image's preset defaults for the tool's environment (keys other than `ENTRYPOINT_*`
    /// that the container's environment does not set); see [`crate::preset`].
    pub tool_env: Vec<(String, String)>,
}

/// `ENTRYPOINT_TERMINATION_LOG`: the file the per-image outcomes are written to at exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminationLog {
    /// `off`.
    Off,
    /// Unset: Kubernetes' default `terminationMessagePath`, written only if it exists (outside
    /// Kubernetes it does not, and nothing may be created in `/dev`).
    IfExists(PathBuf),
    /// Set to a path: written, created if missing.
    Path(PathBuf),
}

/// Kubernetes' default `terminationMessagePath`.
pub const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";

/// The `ENTRYPOINT_ATTACH_*` settings, validated (see [`crate::attach`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AttachSettings {
    /// The fallback tag is `<alg>-<hex>.<suffix>`.
    pub suffix: String,
    /// Overrides the artifactType derived from the file names.
    pub artifact_type: Option<String>,
    /// Push into this repository instead of the image's own (no tag, no digest).
    pub repository: Option<ImageRef>,
    /// A docker `config.json` with credentials for the registries pushed to.
    pub docker_config: Option<PathBuf>,
    /// `host[:port]` entries spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
}

/// Longest suffix that keeps `sha256-<64 hex>.<suffix>` within the 128 characters of a tag.
pub const MAX_ATTACH_SUFFIX: usize = 128 - "sha256-".len() - 64 - 1;

pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("{PREFIX}{name} is not set: expected {expected}")]
    Missing {
        name: &'static str,
        expected: &'static str,
    },
    /// The value is not shown: every `ENTRYPOINT_*` variable is forwarded by the operator from
    /// the user's settings, and a value put in the wrong variable may be a secret.
    #[error("{PREFIX}{name} is invalid (value not shown): expected {expected}")]
    Invalid {
        name: &'static str,
        expected: &'static str,
    },
    #[error(transparent)]
    Preset(#[from] crate::preset::PresetError),
    #[error("{0} is not valid UTF-8")]
    NotUnicode(String),
}

const DURATION: &str = "a duration such as `10m`, `90s`, `1h 30m` or plain seconds";

impl Settings {
    /// Reads the process environment. Returns the settings and the names of unknown
    /// `ENTRYPOINT_*` variables (for a warning).
    pub fn from_env() -> Result<(Settings, Vec<String>), SettingsError> {
        let mut vars = Vec::new();
        for (key, value) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            if !key.starts_with(PREFIX) {
                continue;
            }
            // A non-UTF-8 value of ours is an error; other variables are none of our business.
            let value = value
                .into_string()
                .map_err(|_| SettingsError::NotUnicode(key.to_owned()))?;
            vars.push((key.to_owned(), value));
        }
        // The image's preset: defaults for what the environment leaves unset or empty.
        let preset_file = std::env::var(format!("{PREFIX}PRESET_FILE"))
            .ok()
            .filter(|p| !p.is_empty())
            .or_else(|| table::get("PRESET_FILE").default.map(str::to_string))
            .expect("PRESET_FILE has a default");
        let set_in_env = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        let defaults = crate::preset::unset_in(
            crate::preset::load(std::path::Path::new(&preset_file))?,
            set_in_env,
        );
        let (ours, tool_env): (Vec<_>, Vec<_>) =
            defaults.into_iter().partition(|(k, _)| k.starts_with(PREFIX));
        vars.retain(|(k, v)| !(v.is_empty() && ours.iter().any(|(o, _)| o == k)));
        vars.extend(ours);
        let (mut settings, unknown) = Self::from_vars(vars)?;
        settings.tool_env = tool_env;
        Ok((settings, unknown))
    }

    /// Parses settings from `(name, value)` pairs (full names, with the prefix).
    pub fn from_vars(vars: Vec<(String, String)>) -> Result<(Settings, Vec<String>), SettingsError> {
        let unknown = vars
            .iter()
            .filter_map(|(k, _)| {
                k.strip_prefix(PREFIX)
                    .filter(|n| !table::is_known(n))
                    .map(|_| k.clone())
            })
            .collect();
        Ok((Self::parse(&Vars::new(&vars))?, unknown))
    }

    /// Parses the settings `v` holds.
    fn parse(v: &Vars) -> Result<Settings, SettingsError> {
        let set = |name: &str| v.get(name).map(str::to_owned);

        let command = set("COMMAND").ok_or(SettingsError::Missing {
            name: "COMMAND",
            expected: "the command template, e.g. `syft {image} -o spdx-json={output}.spdx.json`",
        })?;
        let concurrency = match set("CONCURRENCY") {
            None => unreachable!("CONCURRENCY has a default"),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or(SettingsError::Invalid {
                    name: "CONCURRENCY",
                    expected: "an integer of at least 1",
                })?,
        };
        // A limit: unset or 0 means none.
        let limit = |name: &'static str, v: Option<String>| match v {
            None => Ok(None),
            Some(v) => match parse_duration(&v) {
                Some(d) => Ok(Some(d).filter(|d| !d.is_zero())),
                None => Err(SettingsError::Invalid {
                    name,
                    expected: "a duration such as `10m`, `90s`, `1h 30m` or plain seconds; 0 for none",
                }),
            },
        };
        let timeout = limit("TIMEOUT", set("TIMEOUT"))?;
        let deadline = limit("DEADLINE", set("DEADLINE"))?;
        let retries = match set("RETRIES") {
            None => unreachable!("RETRIES has a default"),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 100)
                .ok_or(SettingsError::Invalid {
                    name: "RETRIES",
                    expected: "an integer from 0 to 100",
                })?,
        };
        let retry_backoff = duration("RETRY_BACKOFF", set("RETRY_BACKOFF"))?;
        let kill_grace = duration("KILL_GRACE", set("KILL_GRACE"))?;
        let fail_fast = match set("FAIL_FAST") {
            None => unreachable!("FAIL_FAST has a default"),
            Some(v) => parse_bool(&v).ok_or(SettingsError::Invalid {
                name: "FAIL_FAST",
                expected: "true or false (also 1/0, yes/no, on/off)",
            })?,
        };
        let log_format = match set("LOG_FORMAT") {
            None => unreachable!("LOG_FORMAT has a default"),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "plain" | "text" => LogFormat::Plain,
                "json" => LogFormat::Json,
                _ => {
                    return Err(SettingsError::Invalid {
                        name: "LOG_FORMAT",
                        expected: "plain or json",
                    });
                }
            },
        };
        let attach_on = match set("ATTACH") {
            None => unreachable!("ATTACH has a default"),
            Some(v) => parse_bool(&v).ok_or(SettingsError::Invalid {
                name: "ATTACH",
                expected: "true or false (also 1/0, yes/no, on/off)",
            })?,
        };
        // Only what the environment sets (not the defaults) is reported as doing nothing.
        let attach_ignored = if attach_on {
            Vec::new()
        } else {
            [
                "ATTACH_SUFFIX",
                "ATTACH_ARTIFACT_TYPE",
                "ATTACH_REPOSITORY",
                "ATTACH_DOCKER_CONFIG",
                "ATTACH_INSECURE_REGISTRIES",
            ]
            .into_iter()
            .filter(|n| v.is_set(n))
            .map(|n| format!("{PREFIX}{n}"))
            .collect()
        };
        let attach = AttachSettings::parse(
            set("ATTACH_SUFFIX").expect("ATTACH_SUFFIX has a default"),
            set("ATTACH_ARTIFACT_TYPE"),
            set("ATTACH_REPOSITORY"),
            set("ATTACH_DOCKER_CONFIG"),
            set("ATTACH_INSECURE_REGISTRIES"),
        )?;
        let settings = Settings {
            command,
            concurrency,
            timeout,
            retries,
            retry_backoff,
            fail_fast,
            output_dir: set("OUTPUT_DIR").map(PathBuf::from),
            config: PathBuf::from(set("CONFIG").expect("CONFIG has a default")),
            kill_grace,
            log_format,
            log_level: set("LOG_LEVEL").expect("LOG_LEVEL has a default"),
            attach: attach_on.then_some(attach),
            attach_ignored,
            termination_log: match set("TERMINATION_LOG") {
                None => TerminationLog::IfExists(PathBuf::from(DEFAULT_TERMINATION_LOG)),
                Some(v) if v.trim().eq_ignore_ascii_case("off") => TerminationLog::Off,
                Some(v) => TerminationLog::Path(PathBuf::from(v)),
            },
            deadline,
            tool_env: Vec::new(),
        };
        Ok(settings)
    }

    /// Wait before retry number `retry` (1-based): backoff, 2x backoff, 4x ... capped.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.retry_backoff.saturating_mul(factor).min(MAX_BACKOFF)
    }
}

impl AttachSettings {
    /// Validates the raw `ENTRYPOINT_ATTACH_*` values (already trimmed of empties). Checked even
    /// when attaching is off, so a typo is reported before it matters.
    fn parse(
        suffix: String,
        artifact_type: Option<String>,
        repository: Option<String>,
        docker_config: Option<String>,
        insecure: Option<String>,
    ) -> Result<AttachSettings, SettingsError> {
        let suffix = {
            {
                let t = suffix.trim();
                let ok = (1..=MAX_ATTACH_SUFFIX).contains(&t.len())
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                if !ok {
                    return Err(SettingsError::Invalid {
                        name: "ATTACH_SUFFIX",
                        expected: "1 to 56 letters, digits, `_`, `.` or `-` (it ends a tag)",
                    });
                }
                t.to_owned()
            }
        };
        let artifact_type = match artifact_type {
            None => None,
            Some(v) if is_media_type(v.trim()) => Some(v.trim().to_owned()),
            Some(_) => {
                return Err(SettingsError::Invalid {
                    name: "ATTACH_ARTIFACT_TYPE",
                    expected: "a media type such as `application/spdx+json`",
                });
            }
        };
        let repository = match repository {
            None => None,
            Some(v) => {
                let parsed = ImageRef::parse(v.trim())
                    .ok()
                    .filter(|r| r.tag.is_none() && r.digest.is_none() && !r.repository.is_empty());
                Some(parsed.ok_or(SettingsError::Invalid {
                    name: "ATTACH_REPOSITORY",
                    expected: "a repository `registry[:port]/path`, without tag or digest",
                })?)
            }
        };
        let insecure_registries = match insecure {
            None => Vec::new(),
            Some(v) => {
                let hosts: Vec<String> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_owned)
                    .collect();
                if hosts.iter().any(|h| !sbomjob_contract::image_ref::is_host(h)) {
                    return Err(SettingsError::Invalid {
                        name: "ATTACH_INSECURE_REGISTRIES",
                        expected: "a comma-separated list of `host[:port]`, e.g. `10.244.0.1:5000,localhost:5000`",
                    });
                }
                hosts
            }
        };
        Ok(AttachSettings {
            suffix,
            artifact_type,
            repository,
            docker_config: docker_config.map(PathBuf::from),
            insecure_registries,
        })
    }
}

/// Only the log format, read on its own so that errors in the other settings can already be
/// logged in the requested format. Falls back to plain on a bad value (reported later).
pub fn log_format_from_env() -> LogFormat {
    match std::env::var(format!("{PREFIX}LOG_FORMAT")) {
        Ok(v) if v.trim().eq_ignore_ascii_case("json") => LogFormat::Json,
        _ => LogFormat::Plain,
    }
}

/// A duration setting that has a default.
fn duration(name: &'static str, value: Option<String>) -> Result<Duration, SettingsError> {
    let value = value.unwrap_or_else(|| panic!("{PREFIX}{name} has a default"));
    parse_duration(&value).ok_or(SettingsError::Invalid {
        name,
        expected: DURATION,
    })
}

/// The variables start-up reads, each through its entry in [`table::ALL`]: a value that is
/// empty or only blanks is not set, and a setting that is not set takes the table's default.
pub struct Vars {
    values: std::collections::BTreeMap<String, String>,
    /// The names read so far (a test checks that they are exactly the table's).
    read: std::cell::RefCell<std::collections::BTreeSet<&'static str>>,
}

impl Vars {
    pub fn new(vars: &[(String, String)]) -> Vars {
        Vars {
            values: vars
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?.to_owned(), v.trim().to_owned())))
                .filter(|(_, v)| !v.is_empty())
                .collect(),
            read: Default::default(),
        }
    }

    /// Whether the environment sets `name` (without the prefix).
    pub fn is_set(&self, name: &str) -> bool {
        self.read.borrow_mut().insert(table::get(name).name);
        self.values.contains_key(name)
    }

    /// The value as set (trimmed), else the table's default.
    pub fn get(&self, name: &str) -> Option<&str> {
        let setting = table::get(name);
        self.read.borrow_mut().insert(setting.name);
        self.values.get(name).map(String::as_str).or(setting.default)
    }

    /// The names read so far.
    pub fn read(&self) -> std::collections::BTreeSet<&'static str> {
        self.read.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_up_reads_exactly_the_settings_of_the_table() {
        let vars: Vec<(String, String)> = vec![("ENTRYPOINT_COMMAND".into(), "true {image}".into())];
        let v = Vars::new(&vars);
        let settings = Settings::parse(&v).unwrap();
        assert_eq!(settings.command, "true {image}");
        let mut read = v.read();
        // Read by from_env, before the preset's defaults are merged.
        read.insert("PRESET_FILE");
        let table: std::collections::BTreeSet<_> = table::ALL.iter().map(|s| s.name).collect();
        assert_eq!(read, table, "settings read at start-up vs table::ALL");
        assert_eq!(table.len(), table::ALL.len(), "a setting declared twice");
    }

    fn settings(vars: &[(&str, &str)]) -> Result<(Settings, Vec<String>), SettingsError> {
        Settings::from_vars(
            vars.iter()
                .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults() {
        let (s, unknown) = settings(&[("COMMAND", "syft {image}")]).unwrap();
        assert!(unknown.is_empty());
        assert_eq!(s.command, "syft {image}");
        assert_eq!(s.concurrency, 1);
        assert_eq!(s.timeout, None);
        assert_eq!(s.retries, 0);
        assert!(!s.fail_fast);
        assert_eq!(s.output_dir, None);
        assert_eq!(s.config, PathBuf::from("/sbom/image-config.json"));
        assert_eq!(s.log_format, LogFormat::Plain);
        assert_eq!(s.retry_backoff, Duration::from_secs(2));
    }

    #[test]
    fn all_set() {
        let (s, unknown) = settings(&[
            ("COMMAND", "x"),
            ("CONCURRENCY", "4"),
            ("TIMEOUT", "10m"),
            ("RETRIES", "2"),
            ("RETRY_BACKOFF", "250ms"),
            ("FAIL_FAST", "True"),
            ("OUTPUT_DIR", "/out"),
            ("CONFIG", "/tmp/c.json"),
            ("LOG_FORMAT", "json"),
            ("CONCURENCY", "9"),
        ])
        .unwrap();
        assert_eq!(unknown, vec!["ENTRYPOINT_CONCURENCY".to_owned()]);
        assert_eq!(s.concurrency, 4);
        assert_eq!(s.timeout, Some(Duration::from_secs(600)));
        assert_eq!(s.retries, 2);
        assert_eq!(s.retry_backoff, Duration::from_millis(250));
        assert!(s.fail_fast);
        assert_eq!(s.output_dir, Some(PathBuf::from("/out")));
        assert_eq!(s.config, PathBuf::from("/tmp/c.json"));
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn durations_in_humantime_or_seconds() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("-1"), None);
        assert_eq!(parse_duration("soon"), None);
        let (s, _) = settings(&[("COMMAND", "x"), ("TIMEOUT", "0")]).unwrap();
        assert_eq!(s.timeout, None);
    }

    #[test]
    fn errors_name_the_variable_and_the_expectation() {
        let e = settings(&[]).unwrap_err().to_string();
        assert!(
            e.starts_with("ENTRYPOINT_COMMAND is not set: expected the command template"),
            "{e}"
        );
        let cases = [
            (
                "CONCURRENCY",
                "0",
                "ENTRYPOINT_CONCURRENCY is invalid (value not shown): expected an integer of at least 1",
            ),
            (
                "CONCURRENCY",
                "two",
                "ENTRYPOINT_CONCURRENCY is invalid (value not shown): expected an integer of at least 1",
            ),
            (
                "TIMEOUT",
                "soon",
                "ENTRYPOINT_TIMEOUT is invalid (value not shown): expected a duration",
            ),
            (
                "RETRIES",
                "-1",
                "ENTRYPOINT_RETRIES is invalid (value not shown): expected an integer from 0 to 100",
            ),
            (
                "FAIL_FAST",
                "maybe",
                "ENTRYPOINT_FAIL_FAST is invalid (value not shown): expected true or false",
            ),
            (
                "LOG_FORMAT",
                "xml",
                "ENTRYPOINT_LOG_FORMAT is invalid (value not shown): expected plain or json",
            ),
            (
                "RETRY_BACKOFF",
                "whenever",
                "ENTRYPOINT_RETRY_BACKOFF is invalid (value not shown): expected a duration",
            ),
        ];
        for (name, value, want) in cases {
            let e = settings(&[("COMMAND", "x"), (name, value)])
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{name}={value}: {e}");
            assert!(!e.contains(value), "{name}: the value is never shown: {e}");
        }
    }

    #[test]
    fn empty_values_mean_default() {
        let (s, _) = settings(&[("COMMAND", "x"), ("CONCURRENCY", ""), ("OUTPUT_DIR", "")]).unwrap();
        assert_eq!((s.concurrency, s.output_dir), (1, None));
        assert!(settings(&[("COMMAND", "  ")]).is_err());
    }

    #[test]
    fn attach_settings() {
        let (s, _) = settings(&[("COMMAND", "x")]).unwrap();
        assert_eq!(s.attach, None);
        assert!(s.attach_ignored.is_empty());
        let (s, unknown) = settings(&[("COMMAND", "x"), ("ATTACH", "true")]).unwrap();
        assert!(unknown.is_empty());
        let a = s.attach.unwrap();
        assert_eq!(a.suffix, "sbom");
        assert_eq!(a.artifact_type, None);
        assert_eq!(a.repository, None);
        assert_eq!(a.docker_config, None);
        assert!(a.insecure_registries.is_empty());

        let (s, unknown) = settings(&[
            ("COMMAND", "x"),
            ("ATTACH", "on"),
            ("ATTACH_SUFFIX", "spdx.json"),
            ("ATTACH_ARTIFACT_TYPE", "application/vnd.cyclonedx+json"),
            ("ATTACH_REPOSITORY", "10.244.0.1:5000/sboms/store"),
            ("ATTACH_DOCKER_CONFIG", "/secret/config.json"),
            ("ATTACH_INSECURE_REGISTRIES", " 10.244.0.1:5000, localhost:5000,,"),
        ])
        .unwrap();
        assert!(unknown.is_empty());
        let a = s.attach.unwrap();
        assert_eq!(a.suffix, "spdx.json");
        assert_eq!(a.artifact_type.as_deref(), Some("application/vnd.cyclonedx+json"));
        let repo = a.repository.unwrap();
        assert_eq!(
            (repo.registry.as_str(), repo.repository.as_str()),
            ("10.244.0.1:5000", "sboms/store")
        );
        assert_eq!(a.docker_config, Some(PathBuf::from("/secret/config.json")));
        assert_eq!(a.insecure_registries, ["10.244.0.1:5000", "localhost:5000"]);

        // Set without ATTACH=true: reported, not used.
        let (s, _) = settings(&[("COMMAND", "x"), ("ATTACH", "false"), ("ATTACH_SUFFIX", "sig")]).unwrap();
        assert_eq!(s.attach, None);
        assert_eq!(s.attach_ignored, ["ENTRYPOINT_ATTACH_SUFFIX"]);
        assert_eq!(MAX_ATTACH_SUFFIX, 56, "the error message says 56");
    }

    #[test]
    fn bad_attach_settings() {
        let cases = [
            (
                "ATTACH",
                "sometimes",
                "ENTRYPOINT_ATTACH is invalid (value not shown): expected true or false",
            ),
            (
                "ATTACH_SUFFIX",
                "s b",
                "ENTRYPOINT_ATTACH_SUFFIX is invalid (value not shown): expected 1 to 56",
            ),
            (
                "ATTACH_SUFFIX",
                &"s".repeat(57),
                "ENTRYPOINT_ATTACH_SUFFIX is invalid (value not shown): expected 1 to 56",
            ),
            (
                "ATTACH_ARTIFACT_TYPE",
                "sbom-document",
                "ENTRYPOINT_ATTACH_ARTIFACT_TYPE is invalid (value not shown): expected a media type",
            ),
            (
                "ATTACH_ARTIFACT_TYPE",
                "a/b/c",
                "ENTRYPOINT_ATTACH_ARTIFACT_TYPE is invalid (value not shown): expected",
            ),
            (
                "ATTACH_REPOSITORY",
                "reg:5000/sboms:latest",
                "ENTRYPOINT_ATTACH_REPOSITORY is invalid (value not shown): expected a repository",
            ),
            (
                "ATTACH_REPOSITORY",
                "https://reg/sboms",
                "ENTRYPOINT_ATTACH_REPOSITORY is invalid (value not shown): expected",
            ),
            (
                "ATTACH_INSECURE_REGISTRIES",
                "http://reg:5000",
                "ENTRYPOINT_ATTACH_INSECURE_REGISTRIES is invalid (value not shown): expected a comma-separated list",
            ),
        ];
        for (name, value, want) in cases {
            let attach = if name == "ATTACH" { value } else { "true" };
            let mut vars = vec![("COMMAND", "x"), ("ATTACH", attach)];
            if name != "ATTACH" {
                vars.push((name, value));
            }
            let e = settings(&vars).unwrap_err().to_string();
            assert!(e.starts_with(want), "{name}={value}: {e}");
            assert!(!e.contains(value), "{name}: the value is never shown: {e}");
        }
    }

    #[test]
    fn termination_log() {
        let log = |v: &str| {
            settings(&[("COMMAND", "x"), ("TERMINATION_LOG", v)])
                .unwrap()
                .0
                .termination_log
        };
        assert_eq!(
            log(""),
            TerminationLog::IfExists(PathBuf::from("/dev/termination-log"))
        );
        assert_eq!(log("OFF"), TerminationLog::Off);
        assert_eq!(log("/tmp/t"), TerminationLog::Path(PathBuf::from("/tmp/t")));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let (s, _) = settings(&[("COMMAND", "x"), ("RETRY_BACKOFF", "1s")]).unwrap();
        assert_eq!(s.backoff(1), Duration::from_secs(1));
        assert_eq!(s.backoff(2), Duration::from_secs(2));
        assert_eq!(s.backoff(3), Duration::from_secs(4));
        assert_eq!(s.backoff(40), MAX_BACKOFF);
    }
}
