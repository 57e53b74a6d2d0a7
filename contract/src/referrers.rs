//! The registry as a cache shared by clusters: what an artifact attached by our entrypoint says
//! about itself, so that any sbomjob (another release, another cluster) finds it among the
//! image's referrers and counts the digest as done without a Job.
//!
//! The operator sets [`SETTINGS_IDENTITY_ENV`] on every Job container: the hash of what changes a
//! job's results (job image and forwarded settings). The entrypoint writes it into the
//! artifact's manifest annotations as [`SETTINGS_IDENTITY_ANNOTATION`], with the package count
//! and tool it read from the SBOM. Registries list manifest annotations in the referrers API's
//! index (and the referrers tag schema's index carries them too), so the operator decides from
//! one request per image, without reading the artifact.
//!
//! Everything here is pure: the decision [`choose`] over an index's descriptors.

use std::collections::BTreeMap;

use serde::Deserialize;

/// On Job containers: the settings identity (lower-case hex SHA-256) of the Job's settings.
pub const SETTINGS_IDENTITY_ENV: &str = "SBOMJOB_SETTINGS_IDENTITY";
/// On attached artifacts: the settings identity of the Job that made them.
pub const SETTINGS_IDENTITY_ANNOTATION: &str = "io.sbomjob.settings-identity";
/// On attached artifacts: the package count of the SBOM, when known.
pub const PACKAGES_ANNOTATION: &str = "io.sbomjob.packages";
/// On attached artifacts: the tool that made it, `name` or `name version`.
pub const TOOL_ANNOTATION: &str = "io.sbomjob.tool";
/// Standard: when the artifact was made (RFC 3339).
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
/// The image-spec's empty config media type: some registries report it as a referrer's
/// `artifactType` when they read it from the config instead of the manifest's field.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// Referrers read from one index at most (an index written by anyone may be huge).
pub const MAX_REFERRERS: usize = 1000;
/// Longest annotation value taken from a referrer.
pub const MAX_ANNOTATION: usize = 256;

/// One descriptor of a referrers index (API or tag schema), the fields the decision needs.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Referrer {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// What makes a referrer count as this digest's SBOM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted<'a> {
    /// Ours under the same settings: [`SETTINGS_IDENTITY_ANNOTATION`] equals this.
    pub settings_identity: &'a str,
    /// Any referrer whose artifact type is one of these counts as well (e.g. an SBOM attached
    /// in CI). Empty: only ours.
    pub accepted_types: &'a [String],
}

/// Why a referrer was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Made by a Job with the same settings identity.
    SameSettings,
    /// Of an accepted artifact type.
    AcceptedType,
}

/// The decision over one index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Found(Referrer, Match),
    /// A referrer of an accepted type may be among these, but the index did not say its artifact
    /// type (it gave the empty config type, or none): the caller reads their manifests.
    Unsure(Vec<Referrer>),
    None,
}

/// `type/subtype` with RFC 6838 restricted-name characters, each part 1 to 127 of them: what OCI
/// requires of an `artifactType` (the entrypoint's and the operator's settings check it).
pub fn is_media_type(value: &str) -> bool {
    let part = |s: &str| {
        (1..=127).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    matches!(value.split_once('/'), Some((t, sub)) if part(t) && part(sub))
}

/// A referrer's artifact type as far as the index tells it: `None` when missing or the empty
/// config type.
pub fn told_type(r: &Referrer) -> Option<&str> {
    r.artifact_type
        .as_deref()
        .filter(|t| !t.is_empty() && *t != EMPTY_MEDIA_TYPE)
}

/// Picks the referrer that spares the digest a Job: ours under the same settings first (the
/// newest by [`CREATED_ANNOTATION`] when several), else one of an accepted type. Only the first
/// [`MAX_REFERRERS`] descriptors are considered.
pub fn choose(referrers: &[Referrer], wanted: &Wanted) -> Choice {
    let considered = &referrers[..referrers.len().min(MAX_REFERRERS)];
    let ours = considered
        .iter()
        .filter(|r| {
            r.annotations
                .get(SETTINGS_IDENTITY_ANNOTATION)
                .map(String::as_str)
                == Some(wanted.settings_identity)
                && !wanted.settings_identity.is_empty()
        })
        .max_by(|a, b| created(a).cmp(created(b)));
    if let Some(r) = ours {
        return Choice::Found(r.clone(), Match::SameSettings);
    }
    if wanted.accepted_types.is_empty() {
        return Choice::None;
    }
    let accepted = |t: &str| wanted.accepted_types.iter().any(|a| a == t);
    if let Some(r) = considered.iter().find(|r| told_type(r).is_some_and(accepted)) {
        return Choice::Found(r.clone(), Match::AcceptedType);
    }
    let unsure: Vec<Referrer> = considered
        .iter()
        .filter(|r| told_type(r).is_none())
        .cloned()
        .collect();
    if unsure.is_empty() {
        Choice::None
    } else {
        Choice::Unsure(unsure)
    }
}

fn created(r: &Referrer) -> &str {
    r.annotations
        .get(CREATED_ANNOTATION)
        .map(String::as_str)
        .unwrap_or_default()
}

/// The package count an artifact's annotations give, when valid.
pub fn packages(r: &Referrer) -> Option<u64> {
    r.annotations.get(PACKAGES_ANNOTATION)?.parse().ok()
}

/// The tool an artifact's annotations name: `(name, version)`, each within [`MAX_ANNOTATION`].
pub fn tool(r: &Referrer) -> Option<(String, Option<String>)> {
    let text = r.annotations.get(TOOL_ANNOTATION)?.trim();
    if text.is_empty() || text.len() > MAX_ANNOTATION {
        return None;
    }
    let (name, version) = match text.split_once(' ') {
        Some((n, v)) => (n, Some(v.trim().to_owned())),
        None => (text, None),
    };
    Some((name.to_owned(), version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(digest: &str, kind: Option<&str>, annotations: &[(&str, &str)]) -> Referrer {
        Referrer {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: digest.into(),
            size: 1,
            artifact_type: kind.map(Into::into),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    const SPDX: &str = "application/spdx+json";

    fn wanted<'a>(settings_identity: &'a str, accepted_types: &'a [String]) -> Wanted<'a> {
        Wanted {
            settings_identity,
            accepted_types,
        }
    }

    #[test]
    fn ours_under_the_same_settings_wins_and_the_newest_of_them() {
        let list = [
            r("sha256:ci", Some(SPDX), &[]),
            r(
                "sha256:old",
                Some(SPDX),
                &[
                    (SETTINGS_IDENTITY_ANNOTATION, "abc"),
                    (CREATED_ANNOTATION, "2026-01-01T00:00:00Z"),
                ],
            ),
            r(
                "sha256:new",
                Some(SPDX),
                &[
                    (SETTINGS_IDENTITY_ANNOTATION, "abc"),
                    (CREATED_ANNOTATION, "2026-02-01T00:00:00Z"),
                ],
            ),
            r(
                "sha256:other",
                Some(SPDX),
                &[(SETTINGS_IDENTITY_ANNOTATION, "def")],
            ),
        ];
        let types = [SPDX.to_string()];
        let wanted = wanted("abc", &types);
        match choose(&list, &wanted) {
            Choice::Found(found, Match::SameSettings) => assert_eq!(found.digest, "sha256:new"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_settings_or_types_count_only_when_accepted() {
        let list = [
            r(
                "sha256:other",
                Some(SPDX),
                &[(SETTINGS_IDENTITY_ANNOTATION, "def")],
            ),
            r(
                "sha256:sig",
                Some("application/vnd.dev.cosign.artifact.sig.v1+json"),
                &[],
            ),
        ];
        let none: [String; 0] = [];
        assert_eq!(choose(&list, &wanted("abc", &none)), Choice::None);
        let types = [SPDX.to_string()];
        match choose(&list, &wanted("abc", &types)) {
            Choice::Found(found, Match::AcceptedType) => assert_eq!(found.digest, "sha256:other"),
            other => panic!("{other:?}"),
        }
        // An empty identity (an old operator's Job) never matches an artifact without one.
        let blank = [r(
            "sha256:blank",
            Some(SPDX),
            &[(SETTINGS_IDENTITY_ANNOTATION, "")],
        )];
        assert_eq!(choose(&blank, &wanted("", &none)), Choice::None);
    }

    #[test]
    fn an_index_that_hides_the_type_asks_for_the_manifests() {
        let list = [
            r("sha256:a", Some(EMPTY_MEDIA_TYPE), &[]),
            r("sha256:b", None, &[]),
            r("sha256:c", Some("text/plain"), &[]),
        ];
        let types = [SPDX.to_string()];
        match choose(&list, &wanted("abc", &types)) {
            Choice::Unsure(u) => {
                assert_eq!(
                    u.iter().map(|r| r.digest.as_str()).collect::<Vec<_>>(),
                    ["sha256:a", "sha256:b"]
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_huge_index_is_read_only_to_its_bound() {
        let mut list: Vec<Referrer> = (0..MAX_REFERRERS)
            .map(|i| r(&format!("sha256:{i}"), Some("x/y"), &[]))
            .collect();
        list.push(r(
            "sha256:late",
            Some(SPDX),
            &[(SETTINGS_IDENTITY_ANNOTATION, "abc")],
        ));
        let none: [String; 0] = [];
        assert_eq!(choose(&list, &wanted("abc", &none)), Choice::None);
    }

    #[test]
    fn annotations_give_packages_and_tool_when_valid() {
        let a = r(
            "d",
            None,
            &[(PACKAGES_ANNOTATION, "42"), (TOOL_ANNOTATION, "syft 1.18.1")],
        );
        assert_eq!(packages(&a), Some(42));
        assert_eq!(tool(&a), Some(("syft".into(), Some("1.18.1".into()))));
        let bad = r(
            "d",
            None,
            &[(PACKAGES_ANNOTATION, "-1"), (TOOL_ANNOTATION, &"x".repeat(300))],
        );
        assert_eq!(packages(&bad), None);
        assert_eq!(tool(&bad), None);
    }
}
