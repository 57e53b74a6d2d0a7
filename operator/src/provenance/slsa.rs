//! SLSA provenance read from a verified in-toto statement: who built the image and from which
//! source. Both predicate versions in use: v0.2 (`invocation.configSource`, `materials`) and
//! v1 (`runDetails.builder`, `buildDefinition.resolvedDependencies`). Pure.

use serde::Deserialize;
use serde_json::Value;

pub const PREDICATE_V02: &str = "https://slsa.dev/provenance/v0.2";
pub const PREDICATE_V1: &str = "https://slsa.dev/provenance/v1";
/// Each field the record keeps is cut to this many characters: the statement is the signer's,
/// the record is ours and small.
pub const MAX_FIELD: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Provenance {
    /// "v0.2" or "v1".
    pub slsa_version: &'static str,
    pub builder_id: String,
    /// The source repository (`git+https://github.com/org/repo` and similar, without `@ref`).
    pub source_repository: Option<String>,
    pub source_commit: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlsaError {
    #[error("the statement is not JSON in-toto: {0}")]
    Json(String),
    #[error("predicateType {0:?} is not SLSA provenance v0.2 or v1")]
    NotProvenance(String),
    #[error("the provenance has no {0}")]
    Missing(&'static str),
}

#[derive(Deserialize)]
struct Statement {
    #[serde(rename = "predicateType")]
    predicate_type: String,
    #[serde(default)]
    predicate: Value,
}

/// Whether a statement's predicate type is SLSA provenance (to pick the attestation to read).
pub fn is_provenance(predicate_type: &str) -> bool {
    matches!(predicate_type, PREDICATE_V02 | PREDICATE_V1)
}

pub fn parse(statement: &[u8]) -> Result<Provenance, SlsaError> {
    let st: Statement = serde_json::from_slice(statement).map_err(|e| SlsaError::Json(e.to_string()))?;
    let p = &st.predicate;
    match st.predicate_type.as_str() {
        PREDICATE_V02 => {
            let builder_id = text(&p["builder"]["id"]).ok_or(SlsaError::Missing("predicate.builder.id"))?;
            let config = &p["invocation"]["configSource"];
            // The config source is where the build was defined; without it, the first git
            // material is the best statement of the source.
            let (repository, commit) = match text(&config["uri"]) {
                Some(uri) => (Some(uri), commit_of(&config["digest"])),
                None => git_dependency(&p["materials"]),
            };
            Ok(Provenance {
                slsa_version: "v0.2",
                builder_id,
                source_repository: repository.map(|u| strip_ref(&u)),
                source_commit: commit,
            })
        }
        PREDICATE_V1 => {
            let builder_id = text(&p["runDetails"]["builder"]["id"])
                .ok_or(SlsaError::Missing("predicate.runDetails.builder.id"))?;
            let def = &p["buildDefinition"];
            let (mut repository, mut commit) = git_dependency(&def["resolvedDependencies"]);
            // GitHub's generators name the repository in the external parameters.
            if repository.is_none() {
                let ext = &def["externalParameters"];
                repository = text(&ext["workflow"]["repository"]).or_else(|| text(&ext["source"]["uri"]));
                commit = commit.or_else(|| commit_of(&ext["source"]["digest"]));
            }
            Ok(Provenance {
                slsa_version: "v1",
                builder_id,
                source_repository: repository.map(|u| strip_ref(&u)),
                source_commit: commit,
            })
        }
        other => Err(SlsaError::NotProvenance(cut(other))),
    }
}

/// The first dependency (or material) whose URI is a git one: (repository, commit).
fn git_dependency(list: &Value) -> (Option<String>, Option<String>) {
    let Some(items) = list.as_array() else {
        return (None, None);
    };
    items
        .iter()
        .find(|m| text(&m["uri"]).is_some_and(|u| u.starts_with("git+")))
        .map_or((None, None), |m| (text(&m["uri"]), commit_of(&m["digest"])))
}

/// A commit from a DigestSet: `gitCommit` (v1's name) or `sha1`; hex only.
fn commit_of(digest: &Value) -> Option<String> {
    ["gitCommit", "sha1"]
        .iter()
        .filter_map(|k| text(&digest[*k]))
        .find(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `git+https://github.com/org/repo@refs/heads/main` → `git+https://github.com/org/repo`.
fn strip_ref(uri: &str) -> String {
    // The ref follows the last '@' after the host: user@host forms keep theirs.
    match uri.rsplit_once('@') {
        Some((repo, _))
            if repo.contains("://") && repo.rsplit("://").next().is_some_and(|r| r.contains('/')) =>
        {
            repo.to_string()
        }
        _ => uri.to_string(),
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(cut)
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_FIELD).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn statement(predicate_type: &str, predicate: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "subject": [{"name": "x", "digest": {"sha256": "11"}}],
            "predicateType": predicate_type,
            "predicate": predicate,
        }))
        .unwrap()
    }

    #[test]
    fn v02_config_source() {
        let p = parse(&statement(
            PREDICATE_V02,
            json!({
                "builder": {"id": "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v1.9.0"},
                "buildType": "https://github.com/slsa-framework/slsa-github-generator/container@v1",
                "invocation": {"configSource": {
                    "uri": "git+https://github.com/example/app@refs/heads/main",
                    "digest": {"sha1": COMMIT},
                    "entryPoint": ".github/workflows/release.yml"
                }},
                "materials": [{"uri": "git+https://github.com/other/lib", "digest": {"sha1": "ff"}}]
            }),
        ))
        .unwrap();
        assert_eq!(p.slsa_version, "v0.2");
        assert!(p.builder_id.starts_with("https://github.com/slsa-framework/"));
        assert_eq!(
            p.source_repository.as_deref(),
            Some("git+https://github.com/example/app")
        );
        assert_eq!(p.source_commit.as_deref(), Some(COMMIT));
    }

    #[test]
    fn v02_materials_when_no_config_source() {
        let p = parse(&statement(
            PREDICATE_V02,
            json!({
                "builder": {"id": "local-ci"},
                "materials": [
                    {"uri": "pkg:deb/debian/bash@5.2", "digest": {"sha256": "aa"}},
                    {"uri": "git+ssh://git@example.org/team/app.git@v1.2.0", "digest": {"sha1": COMMIT}}
                ]
            }),
        ))
        .unwrap();
        assert_eq!(
            p.source_repository.as_deref(),
            Some("git+ssh://git@example.org/team/app.git")
        );
        assert_eq!(p.source_commit.as_deref(), Some(COMMIT));
    }

    #[test]
    fn v1_resolved_dependencies() {
        let p = parse(&statement(
            PREDICATE_V1,
            json!({
                "buildDefinition": {
                    "buildType": "https://actions.github.io/buildtypes/workflow/v1",
                    "externalParameters": {"workflow": {"ref": "refs/heads/main", "repository": "https://github.com/example/ignored", "path": ".github/workflows/build.yml"}},
                    "resolvedDependencies": [{"uri": "git+https://github.com/example/app@refs/heads/main", "digest": {"gitCommit": COMMIT}}]
                },
                "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}, "metadata": {"invocationId": "1"}}
            }),
        ))
        .unwrap();
        assert_eq!(
            p,
            Provenance {
                slsa_version: "v1",
                builder_id: "https://github.com/actions/runner/github-hosted".into(),
                source_repository: Some("git+https://github.com/example/app".into()),
                source_commit: Some(COMMIT.into()),
            }
        );
    }

    #[test]
    fn v1_external_parameters_when_no_git_dependency() {
        let p = parse(&statement(
            PREDICATE_V1,
            json!({
                "buildDefinition": {"externalParameters": {"workflow": {"repository": "https://github.com/example/app"}}},
                "runDetails": {"builder": {"id": "b"}}
            }),
        ))
        .unwrap();
        assert_eq!(
            p.source_repository.as_deref(),
            Some("https://github.com/example/app")
        );
        assert_eq!(p.source_commit, None);
    }

    #[test]
    fn not_provenance_or_incomplete() {
        assert_eq!(
            parse(&statement("https://spdx.dev/Document", json!({}))),
            Err(SlsaError::NotProvenance("https://spdx.dev/Document".into()))
        );
        assert_eq!(
            parse(&statement(PREDICATE_V1, json!({}))),
            Err(SlsaError::Missing("predicate.runDetails.builder.id"))
        );
        assert_eq!(
            parse(&statement(PREDICATE_V02, json!({"builder": {"id": ""}}))),
            Err(SlsaError::Missing("predicate.builder.id"))
        );
        assert!(matches!(parse(b"not json"), Err(SlsaError::Json(_))));
    }

    /// The statements of cosign's own attestations (fixtures/), as verification hands them over.
    #[test]
    fn real_cosign_provenance() {
        use crate::provenance::{fixtures as f, verify::verify_envelope};
        let read = |envelope: &[u8]| {
            let statement = verify_envelope(f::X, envelope, &[f::key_a()]).statement.unwrap();
            parse(&statement).unwrap()
        };
        assert_eq!(
            read(f::A_ATTESTS_X_SLSA02),
            Provenance {
                slsa_version: "v0.2",
                builder_id: f::V02_BUILDER.into(),
                source_repository: Some(f::SOURCE_REPOSITORY.into()),
                source_commit: Some(f::V02_COMMIT.into()),
            }
        );
        assert_eq!(
            read(f::A_ATTESTS_X_SLSA1),
            Provenance {
                slsa_version: "v1",
                builder_id: f::V1_BUILDER.into(),
                source_repository: Some(f::SOURCE_REPOSITORY.into()),
                source_commit: Some(f::V1_COMMIT.into()),
            }
        );
    }

    #[test]
    fn fields_are_bounded_and_commits_are_hex() {
        let long = "x".repeat(10_000);
        let p = parse(&statement(
            PREDICATE_V02,
            json!({"builder": {"id": long}, "invocation": {"configSource": {"uri": "git+https://h/r", "digest": {"sha1": "not hex!"}}}}),
        ))
        .unwrap();
        assert_eq!(p.builder_id.chars().count(), MAX_FIELD);
        assert_eq!(p.source_commit, None);
    }
}
