//! The entrypoint's settings, each declared once: its name (after `ENTRYPOINT_`), how it is set
//! on the operator, its default and what it does. Start-up reads every variable through
//! [`super::Vars`], unknown names get a warning, and `sbomjob-entrypoint --print-settings`
//! (the table of job-image/README.md) comes from [`ALL`].

use serde::Serialize;

use super::PREFIX;

/// One setting.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The variable without [`PREFIX`].
    pub name: &'static str,
    /// How it is set through the operator, when not `SBOM_JOB_ENTRYPOINT_<name>` (Markdown).
    pub set_on: Option<&'static str>,
    /// The default, as a value of the setting: parsed like one when the variable is not set.
    pub default: Option<&'static str>,
    /// How the docs state the default when `default` alone does not say it (Markdown).
    pub default_doc: Option<&'static str>,
    /// What it does (Markdown, one table cell).
    pub help: &'static str,
}

/// The setting named `name` (without the prefix). Every name the entrypoint reads is in
/// [`ALL`] (a unit test reads them all), so a miss is a bug here, not bad input.
pub fn get(name: &str) -> &'static Setting {
    ALL.iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{PREFIX}{name} is not in settings::table::ALL"))
}

/// Whether `name` (without the prefix) is a setting.
pub fn is_known(name: &str) -> bool {
    ALL.iter().any(|s| s.name == name)
}

/// One setting as `--print-settings` prints it.
#[derive(Serialize)]
pub struct Printed {
    pub name: String,
    pub set_on: String,
    pub default: Option<&'static str>,
    pub default_doc: String,
    pub meaning: &'static str,
}

/// Every setting, as `--print-settings` prints them.
pub fn printed() -> Vec<Printed> {
    ALL.iter()
        .map(|s| Printed {
            name: format!("{PREFIX}{}", s.name),
            set_on: s
                .set_on
                .map_or_else(|| format!("`SBOM_JOB_{PREFIX}{}`", s.name), str::to_string),
            default: s.default,
            default_doc: match (s.default_doc, s.default) {
                (Some(doc), _) => doc.to_string(),
                (None, Some(d)) => format!("`{d}`"),
                (None, None) => "none".to_string(),
            },
            meaning: s.help,
        })
        .collect()
}

/// In the order of job-image/README.md.
pub static ALL: &[Setting] = &[
    Setting {
        name: "COMMAND",
        set_on: None,
        default: None,
        default_doc: Some(r#"required"#),
        help: r#"The command template, see below."#,
    },
    Setting {
        name: "CONCURRENCY",
        set_on: None,
        default: Some("1"),
        default_doc: None,
        help: r#"How many images are processed at once (integer ≥ 1)."#,
    },
    Setting {
        name: "TIMEOUT",
        set_on: None,
        default: None,
        default_doc: Some(r#"none"#),
        help: r#"Time limit per attempt: humantime (`10m`, `90s`, `1h 30m`) or plain seconds (`600`). `0` = none. The Job's `activeDeadlineSeconds` bounds the whole run anyway."#,
    },
    Setting {
        name: "RETRIES",
        set_on: None,
        default: Some("0"),
        default_doc: None,
        help: r#"Extra attempts for an image whose attempt failed or timed out (0–100)."#,
    },
    Setting {
        name: "RETRY_BACKOFF",
        set_on: None,
        default: Some("2s"),
        default_doc: None,
        help: r#"Wait before the first retry; doubles for each further retry, at most 60 s."#,
    },
    Setting {
        name: "FAIL_FAST",
        set_on: None,
        default: Some("false"),
        default_doc: None,
        help: r#"After the first failed image, start no further images (running ones finish). `true/false`, `1/0`, `yes/no`, `on/off`."#,
    },
    Setting {
        name: "OUTPUT_DIR",
        set_on: None,
        default: None,
        default_doc: Some(r#"scratch"#),
        help: r#"Directory for `{output}` paths and the captured output of each image (created if missing). Unset: `{output}` points into a private scratch directory that is **removed at exit**, for tools that upload their result themselves."#,
    },
    Setting {
        name: "PRESET_FILE",
        set_on: Some(r#"(not needed)"#),
        default: Some("/etc/sbomjob/preset.env"),
        default_doc: None,
        help: r#"The image's preset, see below."#,
    },
    Setting {
        name: "CONFIG",
        set_on: Some(r#"(not needed)"#),
        default: Some("/sbom/image-config.json"),
        default_doc: None,
        help: r#"Path of the config file."#,
    },
    Setting {
        name: "KILL_GRACE",
        set_on: None,
        default: Some("5s"),
        default_doc: None,
        help: r#"Time between SIGTERM and SIGKILL when a tool is stopped (timeout, or the entrypoint got SIGTERM). Keep it below the pod's `terminationGracePeriodSeconds` (30 s by default)."#,
    },
    Setting {
        name: "TERMINATION_LOG",
        set_on: Some(r#"(not needed)"#),
        default: None,
        default_doc: Some(r#"`/dev/termination-log`"#),
        help: r#"File for the [per-image outcomes](#per-image-outcomes-the-termination-message) at exit. The default (Kubernetes' `terminationMessagePath`) is written only if it exists; a path set here is created if missing; `off` disables it."#,
    },
    Setting {
        name: "DEADLINE",
        set_on: Some(r#"set by the operator"#),
        default: None,
        default_doc: Some(r#"none"#),
        help: r#"The whole run's time from the entrypoint's start (`0`: none). When it is up, every tool is stopped as on SIGTERM, images still running count as failed in the [per-image outcomes](#per-image-outcomes-the-termination-message), and the exit code is 1. The operator sets it a margin below the Job's `activeDeadlineSeconds` (a tenth, at least 10 s or half, at most 10 min), so a slow image is named before Kubernetes kills the pod; set `SBOM_JOB_ENTRYPOINT_DEADLINE` to override."#,
    },
    Setting {
        name: "LOG_FORMAT",
        set_on: None,
        default: Some("plain"),
        default_doc: None,
        help: r#"`plain` or `json` (one JSON object per line on stderr)."#,
    },
    Setting {
        name: "LOG_LEVEL",
        set_on: None,
        default: Some("info"),
        default_doc: None,
        help: r#"A tracing filter: `debug`, `warn`, ..."#,
    },
    Setting {
        name: "ATTACH",
        set_on: None,
        default: Some("false"),
        default_doc: None,
        help: r#"`true`: after an image's tool succeeded, push the `{output}.*` files it wrote to the registry as an OCI artifact of the image, see [Attaching the output to the image](#attaching-the-output-to-the-image). The template must use `{output}`."#,
    },
    Setting {
        name: "ATTACH_SUFFIX",
        set_on: None,
        default: Some("sbom"),
        default_doc: None,
        help: r#"The artifact's tag is `sha256-<hex>.<suffix>` (1–56 of `A-Z a-z 0-9 _ . -`)."#,
    },
    Setting {
        name: "ATTACH_ARTIFACT_TYPE",
        set_on: None,
        default: None,
        default_doc: Some(r#"from the file names"#),
        help: r#"The artifact's `artifactType` (a media type). Unset: `application/spdx+json` for `.spdx.json`, `application/vnd.cyclonedx+json` for `.cdx.json`/`.cyclonedx.json`, ... (table below)."#,
    },
    Setting {
        name: "ATTACH_REPOSITORY",
        set_on: None,
        default: None,
        default_doc: Some(r#"the image's own"#),
        help: r#"Push every artifact into this repository instead, e.g. a central store `registry.example.com/sboms` (`registry[:port]/path`, no tag)."#,
    },
    Setting {
        name: "ATTACH_DOCKER_CONFIG",
        set_on: None,
        default: None,
        default_doc: Some(r#"none"#),
        help: r#"Path of a docker `config.json` with credentials for pushing (e.g. a mounted `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson`). Read at start; unreadable or malformed = exit 2."#,
    },
    Setting {
        name: "ATTACH_INSECURE_REGISTRIES",
        set_on: None,
        default: None,
        default_doc: Some(r#"none"#),
        help: r#"Comma-separated `host[:port]` list, spelled as in the image references, spoken to over plain HTTP (e.g. `10.244.0.1:5000`). All others use HTTPS with verified certificates."#,
    },
];
