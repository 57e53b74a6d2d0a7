//! What the entrypoint reads from the SBOM or scan report a tool wrote, for the image's result
//! line ([`sbomjob_contract::result`]): the package count, findings by severity, the tool.
//!
//! The document is read as a stream into the few fields needed; lists are counted, not kept
//! (`IgnoredAny` takes no memory), so a 100 MB SBOM costs no more than its largest string.

use std::io::Read;

use serde::Deserialize;
use serde::de::IgnoredAny;

use sbomjob_contract::result::{Findings, Tool};

/// Package counts and findings read from an SBOM or scan report, whatever its format: SPDX JSON
/// (`packages`), CycloneDX JSON (`components`, `vulnerabilities`), syft JSON (`artifacts`),
/// trivy JSON (`Results[].Packages`, `Results[].Vulnerabilities`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentFacts {
    pub packages: Option<u64>,
    pub findings: Option<Findings>,
    pub tool: Option<Tool>,
    /// The media type the format is known by.
    pub media_type: &'static str,
    /// Platforms the image offers (`os/architecture[/variant]`).
    pub platforms: Vec<String>,
}

/// The union of the fields of the formats read; everything else is skipped.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Doc {
    #[serde(rename = "spdxVersion")]
    spdx_version: Option<IgnoredAny>,
    packages: Option<Vec<IgnoredAny>>,
    #[serde(rename = "creationInfo")]
    creation_info: Option<CreationInfo>,
    #[serde(rename = "bomFormat")]
    bom_format: Option<String>,
    metadata: Option<CdxMetadata>,
    components: Option<Vec<IgnoredAny>>,
    vulnerabilities: Option<Vec<CdxVulnerability>>,
    artifacts: Option<Vec<IgnoredAny>>,
    descriptor: Option<Named>,
    #[serde(rename = "SchemaVersion")]
    schema_version: Option<IgnoredAny>,
    #[serde(rename = "Results")]
    results: Option<Vec<TrivyResult>>,
    #[serde(rename = "Trivy")]
    trivy: Option<TrivyInfo>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CreationInfo {
    creators: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CdxMetadata {
    /// CycloneDX 1.4 lists tools; 1.5 and later nest them under `components` (small: kept).
    tools: Option<serde_json::Value>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct Named {
    name: Option<String>,
    version: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CdxVulnerability {
    ratings: Vec<CdxRating>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CdxRating {
    severity: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TrivyResult {
    #[serde(rename = "Packages")]
    packages: Option<Vec<IgnoredAny>>,
    #[serde(rename = "Vulnerabilities")]
    vulnerabilities: Option<Vec<TrivyVulnerability>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TrivyVulnerability {
    #[serde(rename = "Severity")]
    severity: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TrivyInfo {
    #[serde(rename = "Version")]
    version: Option<String>,
}

fn tool(name: Option<String>, version: Option<String>) -> Option<Tool> {
    Some(Tool {
        name: name.filter(|n| !n.is_empty())?,
        version: version.filter(|v| !v.is_empty()),
        database: None,
    })
}

/// Reads a JSON document; `None` for one that is no JSON or of a format it does not know.
pub fn document_facts(reader: impl Read) -> Option<DocumentFacts> {
    let doc: Doc = serde_json::from_reader(std::io::BufReader::new(reader)).ok()?;
    let count = |list: &Option<Vec<IgnoredAny>>| list.as_ref().map(|l| l.len() as u64);
    if doc.spdx_version.is_some() {
        // creationInfo.creators: ["Organization: ...", "Tool: syft-1.20.0"]
        let creator = doc
            .creation_info
            .iter()
            .flat_map(|c| &c.creators)
            .find_map(|c| c.strip_prefix("Tool: "));
        let tool = creator.and_then(|t| match t.rsplit_once('-') {
            Some((name, version)) if version.starts_with(|c: char| c.is_ascii_digit()) => {
                tool(Some(name.into()), Some(version.into()))
            }
            _ => tool(Some(t.into()), None),
        });
        return Some(DocumentFacts {
            packages: Some(count(&doc.packages).unwrap_or(0)),
            findings: None,
            tool,
            media_type: "application/spdx+json",
            platforms: Vec::new(),
        });
    }
    if doc.bom_format.as_deref() == Some("CycloneDX") {
        let tools = doc.metadata.and_then(|m| m.tools).unwrap_or_default();
        let list = tools.as_array().or_else(|| tools["components"].as_array());
        let first = list.and_then(|l| l.first()).map(|t| Named {
            name: t["name"].as_str().map(str::to_string),
            version: t["version"].as_str().map(str::to_string),
        });
        let findings = doc.vulnerabilities.map(|vulnerabilities| {
            let mut f = Findings::default();
            for v in vulnerabilities {
                f.count(
                    v.ratings
                        .iter()
                        .find_map(|r| r.severity.as_deref())
                        .unwrap_or("unknown"),
                );
            }
            f
        });
        return Some(DocumentFacts {
            packages: Some(count(&doc.components).unwrap_or(0)),
            findings,
            tool: first.and_then(|t| tool(t.name, t.version)),
            media_type: "application/vnd.cyclonedx+json",
            platforms: Vec::new(),
        });
    }
    if let (Some(artifacts), Some(descriptor)) = (&doc.artifacts, doc.descriptor) {
        return Some(DocumentFacts {
            packages: Some(artifacts.len() as u64),
            findings: None,
            tool: tool(descriptor.name.or(Some("syft".into())), descriptor.version),
            media_type: "application/vnd.syft+json",
            platforms: Vec::new(),
        });
    }
    if doc.schema_version.is_some()
        && let Some(results) = doc.results
    {
        let mut packages = None::<u64>;
        // A scan report says what it found: no vulnerability is a count of zero.
        let mut findings = Findings::default();
        for r in results {
            if let Some(n) = count(&r.packages) {
                *packages.get_or_insert(0) += n;
            }
            for v in r.vulnerabilities.into_iter().flatten() {
                findings.count(v.severity.as_deref().unwrap_or("unknown"));
            }
        }
        return Some(DocumentFacts {
            packages,
            findings: Some(findings),
            tool: tool(Some("trivy".into()), doc.trivy.and_then(|t| t.version)),
            media_type: "application/json",
            platforms: Vec::new(),
        });
    }
    None
}

/// What `skopeo inspect` prints (`Os`, `Architecture`, `Variant`), or a raw manifest
/// (`skopeo inspect --raw`, `crane manifest`): an index's `manifests[].platform`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Inspected {
    #[serde(rename = "Digest")]
    digest: Option<String>,
    #[serde(rename = "Os")]
    os: Option<String>,
    #[serde(rename = "Architecture")]
    architecture: Option<String>,
    #[serde(rename = "Variant")]
    variant: Option<String>,
    manifests: Option<Vec<IndexEntry>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct IndexEntry {
    platform: Option<Platform>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

fn platform(os: &str, architecture: &str, variant: Option<&str>) -> Option<String> {
    let p = match variant.filter(|v| !v.is_empty()) {
        Some(v) => format!("{os}/{architecture}/{v}"),
        None => format!("{os}/{architecture}"),
    };
    // `unknown/unknown`: an index's attestation manifests (buildx), no platform of the image.
    (sbomjob_contract::result::is_platform(&p) && os != "unknown").then_some(p)
}

/// The platforms an image inspection names: `None` when the document is no inspection.
pub fn inspection_platforms(reader: impl Read) -> Option<Vec<String>> {
    let doc: Inspected = serde_json::from_reader(std::io::BufReader::new(reader)).ok()?;
    let mut out = Vec::new();
    if let Some(entries) = doc.manifests {
        for e in entries.into_iter().filter_map(|e| e.platform) {
            if let Some(p) = platform(&e.os, &e.architecture, e.variant.as_deref())
                && !out.contains(&p)
                && out.len() < sbomjob_contract::result::MAX_PLATFORMS
            {
                out.push(p);
            }
        }
        return Some(out);
    }
    let (Some(_), Some(os), Some(arch)) = (doc.digest, doc.os, doc.architecture) else {
        return None;
    };
    Some(platform(&os, &arch, doc.variant.as_deref()).into_iter().collect())
}

/// trivy's vulnerability database, as its `db/metadata.json` in the cache directory describes it
/// (`{"Version": 2, "UpdatedAt": "2026-11-30T06:23:45Z", ...}`): `trivy-db v2 2026-11-30T06:23:45Z`.
/// The cache directory is the command's `--cache-dir`, else `TRIVY_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/trivy` or `$HOME/.cache/trivy`, as trivy picks it.
pub fn trivy_database(argv: &[String], env: impl Fn(&str) -> Option<String>) -> Option<String> {
    let from_args = argv.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--cache-dir=")
            .map(str::to_owned)
            .or_else(|| (a == "--cache-dir").then(|| argv.get(i + 1).cloned()).flatten())
    });
    let dir = from_args
        .or_else(|| env("TRIVY_CACHE_DIR"))
        .or_else(|| env("XDG_CACHE_HOME").map(|x| format!("{x}/trivy")))
        .or_else(|| env("HOME").map(|h| format!("{h}/.cache/trivy")))?;
    #[derive(Deserialize)]
    struct Metadata {
        #[serde(rename = "Version")]
        version: u32,
        #[serde(rename = "UpdatedAt")]
        updated_at: Option<String>,
    }
    let file = std::fs::File::open(std::path::Path::new(&dir).join("db/metadata.json")).ok()?;
    let meta: Metadata = serde_json::from_reader(file.take(64 * 1024)).ok()?;
    let text = match meta.updated_at {
        Some(at) if !at.is_empty() => format!("trivy-db v{} {at}", meta.version),
        _ => format!("trivy-db v{}", meta.version),
    };
    (text.len() <= 128 && !text.chars().any(char::is_control)).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn platforms_from_skopeo_inspect_and_from_an_index() {
        let inspect = json!({"Name": "r/app", "Digest": "sha256:ab", "Os": "linux", "Architecture": "arm64", "Variant": "v8", "Layers": []});
        assert_eq!(
            inspection_platforms(inspect.to_string().as_bytes()),
            Some(vec!["linux/arm64/v8".to_string()])
        );
        let index = json!({"schemaVersion": 2, "manifests": [
            {"platform": {"os": "linux", "architecture": "amd64"}},
            {"platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
            {"platform": {"os": "unknown", "architecture": "unknown"}},
            {"platform": {"os": "linux", "architecture": "amd64"}},
            {"platform": {"os": "Linux Bad", "architecture": "x"}}
        ]});
        assert_eq!(
            inspection_platforms(index.to_string().as_bytes()),
            Some(vec!["linux/amd64".to_string(), "linux/arm/v7".to_string()])
        );
        // Anything else is no inspection.
        assert_eq!(
            inspection_platforms(&b"{\"spdxVersion\": \"SPDX-2.3\"}"[..]),
            None
        );
        assert_eq!(inspection_platforms(&b"not json"[..]), None);
    }

    #[test]
    fn trivys_database_from_its_cache_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("db")).unwrap();
        std::fs::write(
            dir.path().join("db/metadata.json"),
            r#"{"Version":2,"NextUpdate":"2026-12-01T00:00:00Z","UpdatedAt":"2026-11-30T06:23:45Z","DownloadedAt":"x"}"#,
        )
        .unwrap();
        let d = dir.path().display().to_string();
        let none = |_: &str| None;
        let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let want = Some("trivy-db v2 2026-11-30T06:23:45Z".to_string());
        assert_eq!(
            trivy_database(&argv(&["trivy", "image", "--cache-dir", &d, "x"]), none),
            want
        );
        assert_eq!(
            trivy_database(&argv(&["trivy", &format!("--cache-dir={d}")]), none),
            want
        );
        assert_eq!(
            trivy_database(&argv(&["trivy"]), |k| (k == "TRIVY_CACHE_DIR").then(|| d.clone())),
            want
        );
        // No database (an SBOM-only run): nothing.
        let empty = tempfile::tempdir().unwrap();
        let e = empty.path().display().to_string();
        assert_eq!(trivy_database(&argv(&["trivy", "--cache-dir", &e]), none), None);
    }

    fn facts(doc: &serde_json::Value) -> Option<DocumentFacts> {
        document_facts(doc.to_string().as_bytes())
    }

    #[test]
    fn facts_of_each_format() {
        let spdx = json!({"spdxVersion": "SPDX-2.3", "creationInfo": {"creators": ["Organization: Anchore, Inc", "Tool: syft-1.20.0"]}, "packages": [{}, {}, {}]});
        let f = facts(&spdx).unwrap();
        assert_eq!(f.packages, Some(3));
        assert_eq!(
            f.tool.unwrap(),
            Tool {
                name: "syft".into(),
                version: Some("1.20.0".into()),
                database: None
            }
        );
        assert_eq!(f.media_type, "application/spdx+json");

        let cdx = json!({"bomFormat": "CycloneDX", "metadata": {"tools": {"components": [{"name": "trivy", "version": "0.76.0"}]}},
            "components": [{}, {}], "vulnerabilities": [{"ratings": [{"severity": "high"}]}, {"ratings": []}]});
        let f = facts(&cdx).unwrap();
        assert_eq!(f.packages, Some(2));
        assert_eq!(
            f.findings.unwrap(),
            Findings {
                high: 1,
                unknown: 1,
                ..Default::default()
            }
        );
        assert_eq!(f.tool.unwrap().version.as_deref(), Some("0.76.0"));
        // CycloneDX 1.4's list of tools, and no vulnerabilities key: no findings (not zero).
        let cdx = json!({"bomFormat": "CycloneDX", "metadata": {"tools": [{"name": "syft", "version": "1.0"}]}, "components": []});
        let f = facts(&cdx).unwrap();
        assert_eq!((f.packages, f.findings), (Some(0), None));
        assert_eq!(f.tool.unwrap().name, "syft");

        let syft = json!({"artifacts": [{}], "descriptor": {"name": "syft", "version": "1.2.3"}});
        assert_eq!(facts(&syft).unwrap().packages, Some(1));

        let trivy = json!({"SchemaVersion": 2, "Trivy": {"Version": "0.76.0"}, "Results": [
            {"Packages": [{}, {}], "Vulnerabilities": [{"Severity": "CRITICAL"}, {"Severity": "LOW"}]},
            {"Packages": [{}]}]});
        let f = facts(&trivy).unwrap();
        assert_eq!(f.packages, Some(3));
        assert_eq!(
            f.findings.unwrap(),
            Findings {
                critical: 1,
                low: 1,
                ..Default::default()
            }
        );
        let clean = json!({"SchemaVersion": 2, "Results": []});
        assert_eq!(facts(&clean).unwrap().findings, Some(Findings::default()));

        assert_eq!(f.tool.unwrap().version.as_deref(), Some("0.76.0"));
        assert_eq!(facts(&json!({"some": "thing"})), None);
        assert_eq!(document_facts(&b"not json"[..]), None);
    }
}
