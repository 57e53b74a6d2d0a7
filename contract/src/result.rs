//! What a job image found, per image: the result channel of the contract.
//!
//! A job image MAY print, for an element of `image-config.json`, one line to its standard output
//! (or error) that starts with [`PREFIX`] and goes on with one compact JSON object:
//!
//! ```text
//! sbomjob.result/v1 {"index":0,"digest":"sha256:…","outcome":"succeeded","tool":{"name":"syft","version":"1.20.0"},"packages":93,"artifacts":[{"repository":"registry.example/app","digest":"sha256:…","mediaType":"application/spdx+json","artifactType":"application/spdx+json"}]}
//! ```
//!
//! - `index` (0-based) and `digest` name the element: the line counts only if both match it.
//! - `outcome`: `succeeded` or `failed`. Only the Job's own status decides what is annotated; the
//!   outcome is shown in the record.
//! - Optional: `tool` {`name`, `version`, `database`}, `packages` (the SBOM's package count),
//!   `findings` {`critical`, `high`, `medium`, `low`, `unknown`} (vulnerability counts),
//!   `artifacts` (at most [`MAX_ARTIFACTS`]: {`repository`, `digest`, `mediaType`,
//!   `artifactType`} for an OCI artifact, or {`file`} for a file), `platforms` (at most
//!   [`MAX_PLATFORMS`] `os/architecture[/variant]`).
//! - A line is at most [`MAX_LINE_BYTES`] bytes; every string has a bound of its own
//!   ([`ReportError::Field`] names the field). Unknown keys are ignored (later versions may add
//!   some), so an older operator reads a newer job image.
//!
//! A job image that prints no such line works exactly as before. The operator reads the job
//! container's log once the Job is Complete and keeps, per element, the last valid line for it:
//! at most [`MAX_LINE_BYTES`] per image, whatever the job prints.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::image_ref::is_digest;

/// What starts a result line (the version is part of it).
pub const PREFIX: &str = "sbomjob.result/v1 ";
/// The longest result line, prefix included; longer ones are not read.
pub const MAX_LINE_BYTES: usize = 4096;
/// The most artifacts one result may name.
pub const MAX_ARTIFACTS: usize = 4;

/// One image's result, as printed and as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReport {
    /// The element's index in `image-config.json`.
    pub index: usize,
    /// The element's digest (`algorithm:hex`), as the config names it.
    pub digest: String,
    pub outcome: ReportOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<Tool>,
    /// The number of packages in the SBOM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<Findings>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// The platforms the image offers, `os/architecture[/variant]` (`linux/arm64/v8`): one for
    /// a single-platform image, each of an index's. At most [`MAX_PLATFORMS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
}

/// The most platforms one result may name.
pub const MAX_PLATFORMS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReportOutcome {
    Succeeded,
    Failed,
}

/// The tool that made the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The vulnerability database it used (its version or build time), when it used one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// Vulnerabilities found, by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Findings {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub unknown: u64,
}

impl Findings {
    /// Adds one finding of a severity as tools name it (`CRITICAL`, `High`, `moderate`, ...).
    pub fn count(&mut self, severity: &str) {
        match severity.to_ascii_lowercase().as_str() {
            "critical" => self.critical += 1,
            "high" => self.high += 1,
            "medium" | "moderate" => self.medium += 1,
            "low" | "negligible" | "info" | "none" => self.low += 1,
            _ => self.unknown += 1,
        }
    }
}

/// Something the job produced for the image: an OCI artifact in a registry, or a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// `registry/repository` of an OCI artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The artifact manifest's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The media type of its content (`application/spdx+json`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The OCI `artifactType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// A file the job wrote (a path or URL) instead of an OCI artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl Artifact {
    /// `repository@digest`, else the file, else nothing.
    pub fn reference(&self) -> Option<String> {
        match (&self.repository, &self.digest, &self.file) {
            (Some(r), Some(d), _) => Some(format!("{r}@{d}")),
            (_, _, Some(f)) => Some(f.clone()),
            _ => None,
        }
    }
}

/// Why a line that starts with [`PREFIX`] is not a result.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("the line has {0} bytes, more than {MAX_LINE_BYTES}")]
    TooLong(usize),
    #[error("not a result object: {0}")]
    Json(String),
    #[error("field {field}: {problem}")]
    Field { field: &'static str, problem: String },
}

/// Bounds of the string fields: (field, most bytes).
const BOUNDS: &[(&str, usize)] = &[
    ("tool.name", 64),
    ("tool.version", 64),
    ("tool.database", 128),
    ("artifacts[].repository", 255),
    ("artifacts[].mediaType", 255),
    ("artifacts[].artifactType", 255),
    ("artifacts[].file", 512),
    ("platforms[]", 64),
];

fn bounded(field: &'static str, value: &str) -> Result<(), ReportError> {
    let most = BOUNDS
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, n)| *n)
        .expect("every bounded field is in BOUNDS");
    let problem = if value.is_empty() {
        "is empty".to_string()
    } else if value.len() > most {
        format!("has {} bytes, more than {most}", value.len())
    } else if value.chars().any(char::is_control) {
        "contains a control character".to_string()
    } else {
        return Ok(());
    };
    Err(ReportError::Field { field, problem })
}

/// `os/architecture[/variant]`, each part lower-case letters, digits, `.`, `_` or `-`.
pub fn is_platform(value: &str) -> bool {
    let parts: Vec<&str> = value.split('/').collect();
    (2..=3).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        })
}

fn digest_field(field: &'static str, digest: &str) -> Result<(), ReportError> {
    if is_digest(digest) {
        Ok(())
    } else {
        Err(ReportError::Field {
            field,
            problem: "is not `algorithm:hex` (sha256: 64 lowercase hex digits)".into(),
        })
    }
}

impl ImageReport {
    /// The line a job image prints (no newline). `None` if it would be longer than
    /// [`MAX_LINE_BYTES`] or a field is out of bounds.
    pub fn line(&self) -> Option<String> {
        self.validate().ok()?;
        let line = format!(
            "{PREFIX}{}",
            serde_json::to_string(self).expect("a result serialises")
        );
        (line.len() <= MAX_LINE_BYTES).then_some(line)
    }

    /// Reads one log line: `None` if it is no result line (no [`PREFIX`]), else the result or
    /// why it is not one. A trailing `\r` is ignored.
    pub fn parse_line(line: &str) -> Option<Result<ImageReport, ReportError>> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let json = line.strip_prefix(PREFIX)?;
        if line.len() > MAX_LINE_BYTES {
            return Some(Err(ReportError::TooLong(line.len())));
        }
        Some(
            serde_json::from_str::<ImageReport>(json)
                .map_err(|e| ReportError::Json(e.to_string()))
                .and_then(|r| r.validate().map(|()| r)),
        )
    }

    /// Every field within its bounds.
    pub fn validate(&self) -> Result<(), ReportError> {
        digest_field("digest", &self.digest)?;
        if let Some(tool) = &self.tool {
            bounded("tool.name", &tool.name)?;
            if let Some(v) = &tool.version {
                bounded("tool.version", v)?;
            }
            if let Some(d) = &tool.database {
                bounded("tool.database", d)?;
            }
        }
        if self.artifacts.len() > MAX_ARTIFACTS {
            return Err(ReportError::Field {
                field: "artifacts",
                problem: format!("has {} entries, more than {MAX_ARTIFACTS}", self.artifacts.len()),
            });
        }
        for a in &self.artifacts {
            if let Some(r) = &a.repository {
                bounded("artifacts[].repository", r)?;
            }
            if let Some(d) = &a.digest {
                digest_field("artifacts[].digest", d)?;
            }
            if let Some(m) = &a.media_type {
                bounded("artifacts[].mediaType", m)?;
            }
            if let Some(t) = &a.artifact_type {
                bounded("artifacts[].artifactType", t)?;
            }
            if let Some(f) = &a.file {
                bounded("artifacts[].file", f)?;
            }
            if a.reference().is_none() {
                return Err(ReportError::Field {
                    field: "artifacts[]",
                    problem: "names neither `repository` and `digest` nor `file`".into(),
                });
            }
        }
        if self.platforms.len() > MAX_PLATFORMS {
            return Err(ReportError::Field {
                field: "platforms",
                problem: format!("has {} entries, more than {MAX_PLATFORMS}", self.platforms.len()),
            });
        }
        for p in &self.platforms {
            bounded("platforms[]", p)?;
            if !is_platform(p) {
                return Err(ReportError::Field {
                    field: "platforms[]",
                    problem: "is not `os/architecture[/variant]` (lower-case letters, digits, `._-`)".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn report() -> ImageReport {
        ImageReport {
            index: 2,
            digest: D.into(),
            outcome: ReportOutcome::Succeeded,
            tool: Some(Tool {
                name: "syft".into(),
                version: Some("1.20.0".into()),
                database: None,
            }),
            packages: Some(93),
            findings: None,
            artifacts: vec![Artifact {
                repository: Some("registry.example/app".into()),
                digest: Some(D.into()),
                media_type: Some("application/spdx+json".into()),
                artifact_type: Some("application/spdx+json".into()),
                file: None,
            }],
            platforms: vec!["linux/amd64".into(), "linux/arm64/v8".into()],
        }
    }

    #[test]
    fn platforms_are_bounded_and_shaped() {
        let mut r = report();
        assert!(r.validate().is_ok());
        r.platforms = vec!["linux".into()];
        assert!(matches!(
            r.validate(),
            Err(ReportError::Field {
                field: "platforms[]",
                ..
            })
        ));
        r.platforms = vec!["Linux/AMD64".into()];
        assert!(r.validate().is_err());
        r.platforms = vec!["linux/amd64".into(); MAX_PLATFORMS + 1];
        assert!(matches!(
            r.validate(),
            Err(ReportError::Field {
                field: "platforms",
                ..
            })
        ));
    }

    #[test]
    fn what_is_printed_reads_back() {
        let line = report().line().unwrap();
        assert!(
            line.starts_with(r#"sbomjob.result/v1 {"index":2,"digest":"sha256:0123"#),
            "{line}"
        );
        assert_eq!(ImageReport::parse_line(&line), Some(Ok(report())));
        assert_eq!(ImageReport::parse_line(&format!("{line}\r")), Some(Ok(report())));
    }

    #[test]
    fn a_shell_job_image_line_reads() {
        // What the contract page's jq example prints.
        let line = format!(r#"sbomjob.result/v1 {{"index":0,"digest":"{D}","outcome":"failed"}}"#);
        let r = ImageReport::parse_line(&line).unwrap().unwrap();
        assert_eq!(r.outcome, ReportOutcome::Failed);
        assert_eq!((r.index, r.tool, r.packages), (0, None, None));
        // Unknown keys are for later versions: ignored.
        let line =
            format!(r#"sbomjob.result/v1 {{"index":0,"digest":"{D}","outcome":"succeeded","later":1}}"#);
        assert!(ImageReport::parse_line(&line).unwrap().is_ok());
    }

    #[test]
    fn other_lines_are_no_results() {
        for line in [
            "",
            "hello",
            "sbomjob.result/v2 {}",
            " sbomjob.result/v1 {}",
            "sbomjob.result/v1",
        ] {
            assert_eq!(ImageReport::parse_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn bad_results_name_what_is_wrong() {
        let err = |line: String| ImageReport::parse_line(&line).unwrap().unwrap_err();
        assert!(matches!(err(format!("{PREFIX}{{")), ReportError::Json(_)));
        assert!(matches!(
            err(format!("{PREFIX}{{\"index\":0}}")),
            ReportError::Json(_)
        ));
        assert!(matches!(
            err(format!("{PREFIX}{}", "x".repeat(MAX_LINE_BYTES))),
            ReportError::TooLong(_)
        ));
        let with = |f: &dyn Fn(&mut ImageReport)| {
            let mut r = report();
            f(&mut r);
            format!("{PREFIX}{}", serde_json::to_string(&r).unwrap())
        };
        let field = |line: String| match err(line) {
            ReportError::Field { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(with(&|r| r.digest = "sha256:ABC".into())), "digest");
        assert_eq!(
            field(with(&|r| r.tool.as_mut().unwrap().name = "x".repeat(65))),
            "tool.name"
        );
        assert_eq!(
            field(with(&|r| r.tool.as_mut().unwrap().name = "a\u{1b}b".into())),
            "tool.name"
        );
        assert_eq!(
            field(with(&|r| r.artifacts = vec![report().artifacts[0].clone(); 5])),
            "artifacts"
        );
        assert_eq!(
            field(with(&|r| r.artifacts[0].digest = Some("nope".into()))),
            "artifacts[].digest"
        );
        assert_eq!(
            field(with(&|r| r.artifacts = vec![Artifact::default()])),
            "artifacts[]"
        );
        // And the writer refuses what the reader would.
        let mut r = report();
        r.tool.as_mut().unwrap().version = Some("v".repeat(65));
        assert_eq!(r.line(), None);
    }

    #[test]
    fn severities_as_tools_spell_them() {
        let mut f = Findings::default();
        for s in [
            "CRITICAL",
            "High",
            "moderate",
            "MEDIUM",
            "low",
            "Negligible",
            "whatever",
        ] {
            f.count(s);
        }
        assert_eq!(
            f,
            Findings {
                critical: 1,
                high: 1,
                medium: 2,
                low: 2,
                unknown: 1
            }
        );
    }
}
