//! The per-image result line ([`sbomjob_contract::result`]) the entrypoint prints when an image
//! is done: the outcome, the tool, what the SBOM or scan report it wrote holds, and the artifact
//! it pushed or the files it wrote.
//!
//! Only the entrypoint writes to its standard output directly: the tools' output goes to the log
//! through `tracing` (on stderr, after a timestamp), so no tool can print a line that reads as a
//! result.

use std::io::Write;
use std::path::{Path, PathBuf};

use sbomjob_contract::result::{Artifact, ImageReport, MAX_ARTIFACTS, ReportOutcome, Tool};
use tracing::warn;

use crate::attach::{Attached, media_type_for};
use crate::facts::{DocumentFacts, document_facts, inspection_platforms, trivy_database};
use crate::summary::Outcome;
use crate::work::Job;

/// The result of element `index`, or `None` when there is none to give: the image never ran,
/// or the element names no digest (a hand-written config with a tag).
pub fn build(
    index: usize,
    job: &Job,
    outcome: &Outcome,
    attempts: u32,
    argv: &[String],
    files: &[PathBuf],
    attached: Option<&Attached>,
) -> Option<ImageReport> {
    let digest = job.reference.digest.clone()?;
    let outcome = match outcome {
        Outcome::Succeeded => ReportOutcome::Succeeded,
        Outcome::Failed(_) | Outcome::TimedOut(_) => ReportOutcome::Failed,
        Outcome::Cancelled if attempts > 0 => ReportOutcome::Failed,
        Outcome::Cancelled | Outcome::Skipped => return None,
    };
    // Read once: what the attach step read already, else the files.
    let facts = attached
        .and_then(|a| a.facts.clone())
        .or_else(|| files.iter().find_map(|f| facts_of(f)))
        .unwrap_or_default();
    let program = argv.first().map(String::as_str).unwrap_or_default();
    let mut tool = facts.tool.clone().or_else(|| {
        let name = Path::new(program).file_name()?.to_str()?.to_string();
        Some(Tool {
            name,
            version: None,
            database: None,
        })
    });
    // A vulnerability scan by trivy: the database it used, from its cache directory.
    if let Some(t) = tool.as_mut()
        && t.name == "trivy"
        && t.database.is_none()
        && facts.findings.is_some()
    {
        t.database = trivy_database(argv, |k| std::env::var(k).ok());
    }
    // The platforms an inspection (skopeo's, captured in `{output}.stdout`, or a file) names.
    let captured = PathBuf::from(format!("{}.stdout", job.output.display()));
    let platforms = files
        .iter()
        .chain(std::iter::once(&captured))
        .find_map(|f| inspection_of(f))
        .unwrap_or_default();
    let artifacts = match attached {
        Some(a) => vec![Artifact {
            repository: Some(a.repository.clone()),
            digest: Some(a.digest.clone()),
            media_type: Some(a.media_type.clone()),
            artifact_type: Some(a.artifact_type.clone()),
            file: None,
        }],
        None => files
            .iter()
            .take(MAX_ARTIFACTS)
            .map(|f| Artifact {
                media_type: f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(|n| media_type_for(n).to_string()),
                file: Some(f.display().to_string()),
                ..Artifact::default()
            })
            .collect(),
    };
    let mut report = ImageReport {
        index,
        digest,
        outcome,
        tool,
        packages: facts.packages,
        findings: facts.findings,
        artifacts,
        platforms,
    };
    // A value out of bounds (a tool name of 100 bytes, a path of 600) costs that field, not the
    // line.
    if report.validate().is_err() {
        report.tool = None;
    }
    if report.validate().is_err() {
        report.artifacts.clear();
    }
    if report.validate().is_err() {
        report.platforms.clear();
    }
    report.validate().ok().map(|()| report)
}

/// What a JSON output file holds; other files (XML, text) give nothing.
pub fn facts_of(path: &Path) -> Option<DocumentFacts> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    if !name.ends_with(".json") {
        return None;
    }
    document_facts(std::fs::File::open(path).ok()?)
}

/// The platforms of an inspection document of at most 1 MiB (skopeo's JSON is a few KiB).
fn inspection_of(path: &Path) -> Option<Vec<String>> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > 1024 * 1024 {
        return None;
    }
    inspection_platforms(std::fs::File::open(path).ok()?).filter(|p| !p.is_empty())
}

/// Prints the line on standard output, in one write.
pub fn print(report: &ImageReport) {
    let Some(line) = report.line() else {
        warn!(
            index = report.index,
            "the result line would be too long; not printed"
        );
        return;
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = out
        .write_all(format!("{line}\n").as_bytes())
        .and_then(|()| out.flush())
    {
        warn!("cannot print the result line: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::plan;
    use sbomjob_contract::ImageConfig;

    fn argv(program: &str) -> Vec<String> {
        vec![program.to_string()]
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn job(image: &str, dir: &Path) -> Job {
        let config: ImageConfig = serde_json::from_value(serde_json::json!({
            "registry-host": "", "registry-user": "", "registry-password": "", "image": image,
            "pods": [{"pod": "p", "namespace": "n", "cluster": "c"}]
        }))
        .unwrap();
        plan(vec![Ok(config)], dir).remove(0).unwrap()
    }

    #[test]
    fn a_syft_sbom_gives_its_package_count_and_tool() {
        let dir = tempfile::tempdir().unwrap();
        let job = job(&format!("registry.example/app@{D}"), dir.path());
        let sbom = dir.path().join("app.spdx.json");
        std::fs::write(
            &sbom,
            r#"{"spdxVersion":"SPDX-2.3","creationInfo":{"creators":["Tool: syft-1.20.0"]},"packages":[{},{}]}"#,
        )
        .unwrap();
        let r = build(
            3,
            &job,
            &Outcome::Succeeded,
            1,
            &argv("/usr/bin/syft"),
            std::slice::from_ref(&sbom),
            None,
        )
        .unwrap();
        assert_eq!((r.index, r.digest.as_str(), r.packages), (3, D, Some(2)));
        assert_eq!(r.tool.unwrap().version.as_deref(), Some("1.20.0"));
        assert_eq!(r.artifacts[0].file.as_deref(), Some(sbom.to_str().unwrap()));
        assert_eq!(
            r.artifacts[0].media_type.as_deref(),
            Some("application/spdx+json")
        );
        // Attached: the artifact in the registry instead of the file.
        let attached = Attached {
            target: "registry.example/app:sha256-0123.sbom".into(),
            repository: "registry.example/app".into(),
            digest: D.into(),
            subject: D.into(),
            files: 1,
            media_type: "application/spdx+json".into(),
            artifact_type: "application/spdx+json".into(),
            facts: None,
        };
        let r = build(
            0,
            &job,
            &Outcome::Succeeded,
            1,
            &argv("syft"),
            &[sbom],
            Some(&attached),
        )
        .unwrap();
        assert_eq!(r.artifacts.len(), 1);
        assert_eq!(
            r.artifacts[0].reference().unwrap(),
            format!("registry.example/app@{D}")
        );
    }

    #[test]
    fn skopeos_captured_inspection_gives_the_platform() {
        let dir = tempfile::tempdir().unwrap();
        let job = job(&format!("registry.example/app@{D}"), dir.path());
        std::fs::write(
            format!("{}.stdout", job.output.display()),
            format!(r#"{{"Name":"registry.example/app","Digest":"{D}","Architecture":"arm64","Os":"linux","Variant":"v8"}}"#),
        )
        .unwrap();
        let r = build(0, &job, &Outcome::Succeeded, 1, &argv("skopeo"), &[], None).unwrap();
        assert_eq!(r.platforms, ["linux/arm64/v8"]);
        assert_eq!(r.tool.unwrap().name, "skopeo");
    }

    #[test]
    fn no_output_names_the_program_and_what_never_ran_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let job = job(&format!("registry.example/app@{D}"), dir.path());
        let r = build(
            0,
            &job,
            &Outcome::Failed("exit 1".into()),
            1,
            &argv("/bin/skopeo"),
            &[],
            None,
        )
        .unwrap();
        assert_eq!(r.outcome, ReportOutcome::Failed);
        assert_eq!(r.tool.unwrap().name, "skopeo");
        assert_eq!((r.packages, r.artifacts.len()), (None, 0));
        assert_eq!(build(0, &job, &Outcome::Skipped, 0, &argv("x"), &[], None), None);
        assert_eq!(
            build(0, &job, &Outcome::Cancelled, 0, &argv("x"), &[], None),
            None
        );
        assert!(build(0, &job, &Outcome::Cancelled, 1, &argv("x"), &[], None).is_some());
        // A tag reference has no digest to name.
        let tagged = self::job("registry.example/app:1.0", dir.path());
        assert_eq!(
            build(0, &tagged, &Outcome::Succeeded, 1, &argv("x"), &[], None),
            None
        );
    }

    #[test]
    fn a_field_out_of_bounds_costs_only_that_field() {
        let dir = tempfile::tempdir().unwrap();
        let job = job(&format!("registry.example/app@{D}"), dir.path());
        let long = "x".repeat(100);
        let r = build(0, &job, &Outcome::Succeeded, 1, &argv(&long), &[], None).unwrap();
        assert_eq!(r.tool, None);
        assert!(r.line().is_some());
    }
}
