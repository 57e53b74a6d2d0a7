//! The packages an SBOM lists, and `find`'s query: `NAME[@CONSTRAINT]` (pure).
//!
//! SPDX JSON (`packages[].name`, `versionInfo`), CycloneDX JSON (`components[].name`,
//! `version`, nested components too) and syft JSON (`artifacts[].name`, `version`). Names match
//! case-insensitively; a constraint is a semver requirement (`<2.17`, `>=3.0, <3.1`, `=1.2.3`),
//! checked against the version read leniently (`2.14.1-r0` → 2.14.1, `1:3.0.2-0ubuntu1` → 3.0.2,
//! `v1.2` → 1.2.0); a version that reads as none matches only a query without a constraint.
//! Maven packages also match as `GROUP:ARTIFACT` (`org.apache.logging.log4j:log4j-core`), the
//! group read from CycloneDX's `group` or from the package URL (`pkg:maven/<group>/<artifact>`).

use serde::Deserialize;

/// One package of an SBOM.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// A Maven package's group id; empty when none is known.
    pub group: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Doc {
    packages: Vec<SpdxPackage>,
    components: Vec<CdxComponent>,
    artifacts: Vec<Named>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SpdxPackage {
    name: String,
    #[serde(rename = "versionInfo")]
    version_info: String,
    #[serde(rename = "externalRefs")]
    external_refs: Vec<SpdxRef>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SpdxRef {
    #[serde(rename = "referenceType")]
    reference_type: String,
    #[serde(rename = "referenceLocator")]
    reference_locator: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CdxComponent {
    name: String,
    version: String,
    group: String,
    purl: String,
    components: Vec<CdxComponent>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named {
    name: String,
    version: String,
    purl: String,
}

/// The group of a Maven package URL: `pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1` →
/// `org.apache.logging.log4j`; empty for any other.
pub fn maven_group(purl: &str) -> String {
    purl.strip_prefix("pkg:maven/")
        .and_then(|rest| rest.split(['@', '?', '#']).next())
        .and_then(|path| path.rsplit_once('/'))
        .map(|(group, _)| group.replace("%2F", "/").replace("%2f", "/"))
        .unwrap_or_default()
}

/// Every package of an SBOM document; an error for one that is no JSON object.
pub fn of_sbom(bytes: &[u8]) -> Result<Vec<Package>, serde_json::Error> {
    let doc: Doc = serde_json::from_slice(bytes)?;
    let mut out = Vec::new();
    for p in doc.packages {
        let group = p
            .external_refs
            .iter()
            .filter(|r| r.reference_type == "purl")
            .map(|r| maven_group(&r.reference_locator))
            .find(|g| !g.is_empty())
            .unwrap_or_default();
        out.push(Package {
            name: p.name,
            version: p.version_info,
            group,
        });
    }
    let mut stack = doc.components;
    while let Some(c) = stack.pop() {
        stack.extend(c.components);
        let group = if c.group.is_empty() {
            maven_group(&c.purl)
        } else {
            c.group
        };
        out.push(Package {
            name: c.name,
            version: c.version,
            group,
        });
    }
    for a in doc.artifacts {
        out.push(Package {
            group: maven_group(&a.purl),
            name: a.name,
            version: a.version,
        });
    }
    out.retain(|p| !p.name.is_empty());
    out.sort();
    out.dedup();
    Ok(out)
}

/// `find`'s query.
#[derive(Debug, Clone)]
pub struct Query {
    name: String,
    constraint: Option<semver::VersionReq>,
}

impl Query {
    /// `NAME` or `NAME@CONSTRAINT`.
    pub fn parse(text: &str) -> Result<Query, String> {
        let (name, constraint) = match text.split_once('@') {
            Some((n, c)) => (n, Some(c)),
            None => (text, None),
        };
        if name.trim().is_empty() {
            return Err(format!("{text:?}: no package name (NAME or NAME@CONSTRAINT)"));
        }
        let constraint = constraint
            .map(|c| {
                semver::VersionReq::parse(c.trim())
                    .map_err(|e| format!("{text:?}: the version constraint {c:?} is not valid ({e})"))
            })
            .transpose()?;
        Ok(Query {
            name: name.trim().to_lowercase(),
            constraint,
        })
    }

    pub fn matches(&self, p: &Package) -> bool {
        let name = p.name.to_lowercase();
        let named = name == self.name
            || (!p.group.is_empty() && format!("{}:{name}", p.group.to_lowercase()) == self.name);
        if !named {
            return false;
        }
        match &self.constraint {
            None => true,
            Some(req) => lenient_version(&p.version).is_some_and(|v| req.matches(&v)),
        }
    }
}

/// The first `major[.minor[.patch]]` in a version string, after an epoch (`1:`) and a `v`.
pub fn lenient_version(text: &str) -> Option<semver::Version> {
    let text = text.split_once(':').map_or(text, |(epoch, rest)| {
        if epoch.bytes().all(|b| b.is_ascii_digit()) {
            rest
        } else {
            text
        }
    });
    let text = text.trim_start_matches(['v', 'V']);
    let numeric: String = text
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().transpose().ok()?.unwrap_or(0);
    let patch = parts.next().transpose().ok()?.unwrap_or(0);
    Some(semver::Version::new(major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            group: String::new(),
        }
    }

    /// log4j-core as syft and trivy write it for a jar: a package URL in SPDX, `group` in
    /// CycloneDX, `purl` in syft JSON. Found by artifact id and by `group:artifact`.
    #[test]
    fn maven_packages_match_by_group_and_artifact() {
        const PURL: &str = "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1";
        let spdx = format!(
            r#"{{"spdxVersion":"SPDX-2.3","packages":[{{"name":"log4j-core","versionInfo":"2.14.1","externalRefs":[{{"referenceCategory":"SECURITY","referenceType":"cpe23Type","referenceLocator":"cpe:2.3:a:apache:log4j:2.14.1"}},{{"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl","referenceLocator":"{PURL}"}}]}}]}}"#
        );
        let cdx = r#"{"bomFormat":"CycloneDX","components":[{"group":"org.apache.logging.log4j","name":"log4j-core","version":"2.14.1"}]}"#;
        let syft = format!(r#"{{"artifacts":[{{"name":"log4j-core","version":"2.14.1","purl":"{PURL}"}}]}}"#);
        let q = Query::parse("org.apache.logging.log4j:log4j-core@<2.17").unwrap();
        let by_artifact = Query::parse("log4j-core@<2.17").unwrap();
        let other_group = Query::parse("org.example:log4j-core").unwrap();
        for doc in [spdx.as_bytes(), cdx.as_bytes(), syft.as_bytes()] {
            let packages = of_sbom(doc).unwrap();
            assert_eq!(packages.len(), 1);
            assert_eq!(packages[0].group, "org.apache.logging.log4j");
            assert!(q.matches(&packages[0]) && by_artifact.matches(&packages[0]));
            assert!(!other_group.matches(&packages[0]));
        }
        assert!(!q.matches(&Package {
            version: "2.17.1".into(),
            ..of_sbom(cdx.as_bytes()).unwrap().remove(0)
        }));
        assert_eq!(maven_group("pkg:npm/%40scope/x@1"), "");
        assert_eq!(maven_group("pkg:maven/a.b/c?type=jar"), "a.b");
    }

    #[test]
    fn packages_of_each_format() {
        let spdx = br#"{"spdxVersion":"SPDX-2.3","packages":[{"name":"openssl","versionInfo":"3.0.11-1"},{"name":"zlib","versionInfo":"1.2.13"}]}"#;
        assert_eq!(
            of_sbom(spdx).unwrap(),
            [p("openssl", "3.0.11-1"), p("zlib", "1.2.13")]
        );
        let cdx = br#"{"bomFormat":"CycloneDX","components":[{"name":"log4j-core","version":"2.14.1","components":[{"name":"inner","version":"1"}]}]}"#;
        assert_eq!(
            of_sbom(cdx).unwrap(),
            [p("inner", "1"), p("log4j-core", "2.14.1")]
        );
        let syft = br#"{"artifacts":[{"name":"pip","version":"23.0.1"}],"descriptor":{"name":"syft"}}"#;
        assert_eq!(of_sbom(syft).unwrap(), [p("pip", "23.0.1")]);
        assert!(of_sbom(b"[1, 2]").is_err());
    }

    #[test]
    fn queries() {
        let q = Query::parse("Log4j-Core@<2.17").unwrap();
        assert!(q.matches(&p("log4j-core", "2.14.1")));
        assert!(!q.matches(&p("log4j-core", "2.17.0")));
        assert!(!q.matches(&p("log4j-api", "2.14.1")));
        assert!(!q.matches(&p("log4j-core", "unknown")));
        let q = Query::parse("openssl@>=3.0, <3.1").unwrap();
        assert!(q.matches(&p("openssl", "1:3.0.11-1~deb12u2")));
        assert!(!q.matches(&p("openssl", "3.1.0")));
        assert!(Query::parse("pip").unwrap().matches(&p("PIP", "anything")));
        assert!(Query::parse("@1").is_err());
        assert!(
            Query::parse("pip@not a version")
                .unwrap_err()
                .contains("constraint")
        );
    }

    #[test]
    fn lenient_versions() {
        let v = |s| lenient_version(s).map(|v| v.to_string());
        assert_eq!(v("2.14.1-r0").as_deref(), Some("2.14.1"));
        assert_eq!(v("1:3.0.2-0ubuntu1").as_deref(), Some("3.0.2"));
        assert_eq!(v("v1.2").as_deref(), Some("1.2.0"));
        assert_eq!(v("7").as_deref(), Some("7.0.0"));
        assert_eq!(v("").as_deref(), None);
        assert_eq!(v("abc").as_deref(), None);
    }
}
