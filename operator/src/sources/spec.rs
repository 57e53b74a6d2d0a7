//! The ImageSource custom resource: a registry and repositories whose tags a namespace wants
//! catalogued before anything runs them, and the check of what a tenant wrote in it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::tags::{PolicyError, Sort, TagPolicy, TagPolicySpec};

/// Repositories of one source, at most.
pub const MAX_REPOSITORIES: usize = 50;
/// Platforms named, at most.
pub const MAX_PLATFORMS: usize = 16;
/// The scan interval: at least (a registry is not polled harder), by default.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// Images (tag and digest) kept in the status, at most: the list is the hand-off to the cycle.
pub const MAX_STATUS_IMAGES: usize = 1000;
/// Errors kept in the status, at most, each cut to [`MAX_ERROR_LEN`] characters.
pub const MAX_STATUS_ERRORS: usize = 20;
pub const MAX_ERROR_LEN: usize = 512;

// NOTE: the repeated `type_ = ...` of the `printcolumn(...)` lists are separate columns, not
// duplicated attributes (as on ImageRecord).
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "sbomjob.io",
    version = "v1alpha1",
    kind = "ImageSource",
    plural = "imagesources",
    shortname = "imgsrc",
    category = "sbomjob",
    namespaced,
    derive = "PartialEq",
    doc = "Repositories of a registry whose tags sbomjob catalogues before they run, on a schedule.",
    printcolumn(name = "Registry", type_ = "string", json_path = ".spec.registry"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Tags", type_ = "integer", json_path = ".status.tags"),
    printcolumn(name = "Digests", type_ = "integer", json_path = ".status.digests"),
    printcolumn(name = "Last-Scan", type_ = "date", json_path = ".status.lastScanTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    status = "ImageSourceStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct ImageSourceSpec {
    /// The registry as images name it: `host[:port]` (`docker.io` for Docker Hub).
    pub registry: String,
    /// Repositories in it (`team/app`), at most 50.
    pub repositories: Vec<String>,
    /// A `kubernetes.io/dockerconfigjson` Secret in the source's namespace with the pull
    /// credential for the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Which tags: patterns, a semver constraint, order and limit.
    #[serde(default)]
    pub tags: TagSelector,
    /// For an index, the platforms whose manifests are catalogued (`linux/amd64`, `linux/arm`
    /// for every variant); empty: every platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// How often the tags are listed again (`30m`, `6h`; at least `1m`, default `6h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagSelector {
    /// Regular expressions; a tag must match one in whole. Empty: every tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Regular expressions; a tag matching one in whole is left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// A semantic-version constraint (`>=1.2, <2`); tags that are no versions are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// Keep pre-release versions (`1.3.0-rc.1`).
    #[serde(default)]
    pub prereleases: bool,
    /// `semver` (highest first, the default), `alphabetical` (descending) or `alphabeticalAscending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<TagSort>,
    /// Keep the first this many tags per repository after sorting (1 to 1000; default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TagSort {
    Semver,
    Alphabetical,
    AlphabeticalAscending,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSourceStatus {
    /// `Ready`, `Scanning`, `Failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<SourceCondition>,
    /// The generation of the spec the last scan read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_time: Option<DateTime<Utc>>,
    /// Tags selected over every repository, and the distinct digests they resolved to.
    #[serde(default)]
    pub tags: u32,
    #[serde(default)]
    pub digests: u32,
    /// What the last scan found, at most 1000: the cycle catalogues these digests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ScannedImage>,
    /// What went wrong in the last scan, at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScannedImage {
    /// `registry/repository`.
    pub repository: String,
    pub tag: String,
    /// What the tag resolved to (an index's digest for a multi-platform image).
    pub digest: String,
    /// An index's platform manifests the spec admits: `os/arch[/variant]=sha256:...`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
}

/// A condition in the Kubernetes style: the records' own type.
pub use crate::cache::RecordCondition as SourceCondition;

/// What is wrong with a source, naming the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("spec.registry: {0}")]
    Registry(String),
    #[error(
        "spec.registry: {0:?} is not among the registries this operator may scan (SBOM_SOURCE_REGISTRIES)"
    )]
    RegistryNotAllowed(String),
    #[error("spec.repositories: {0}")]
    Repositories(String),
    #[error("spec.repositories[{index}]: {value:?} is not a repository name")]
    Repository { index: usize, value: String },
    #[error("spec.tags.{0}")]
    Tags(PolicyError),
    #[error("spec.platforms[{index}]: {value:?} is not os/architecture[/variant]")]
    Platform { index: usize, value: String },
    #[error("spec.platforms: at most {MAX_PLATFORMS}")]
    TooManyPlatforms,
    #[error("spec.interval: {0}")]
    Interval(String),
}

/// A source checked: what the scanner uses.
#[derive(Debug, Clone)]
pub struct ValidSource {
    pub registry: String,
    pub repositories: Vec<String>,
    pub policy: TagPolicy,
    pub platforms: Vec<String>,
    pub interval: Duration,
}

/// Which registries sources may name (`SBOM_SOURCE_REGISTRIES`): the operator reaches out to
/// what a tenant writes, so an admin says where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowedRegistries {
    /// None: ImageSources are refused.
    #[default]
    None,
    Any,
    Only(Vec<String>),
}

impl AllowedRegistries {
    pub fn allows(&self, registry: &str) -> bool {
        match self {
            AllowedRegistries::None => false,
            AllowedRegistries::Any => true,
            AllowedRegistries::Only(list) => list.iter().any(|r| r.eq_ignore_ascii_case(registry)),
        }
    }
}

impl ImageSourceSpec {
    pub fn validate(&self, allowed: &AllowedRegistries) -> Result<ValidSource, SourceError> {
        let registry = self.registry.trim();
        check_registry(registry)?;
        if !allowed.allows(registry) {
            return Err(SourceError::RegistryNotAllowed(registry.into()));
        }
        if self.repositories.is_empty() {
            return Err(SourceError::Repositories("at least one repository".into()));
        }
        if self.repositories.len() > MAX_REPOSITORIES {
            return Err(SourceError::Repositories(format!(
                "at most {MAX_REPOSITORIES}, got {}",
                self.repositories.len()
            )));
        }
        let mut repositories = Vec::new();
        for (index, r) in self.repositories.iter().enumerate() {
            let Some(name) = repository_name(registry, r) else {
                return Err(SourceError::Repository {
                    index,
                    value: r.chars().take(128).collect(),
                });
            };
            if !repositories.contains(&name) {
                repositories.push(name);
            }
        }
        let t = &self.tags;
        let policy = TagPolicy::new(&TagPolicySpec {
            include: &t.include,
            exclude: &t.exclude,
            semver: t.semver.as_deref(),
            prereleases: t.prereleases,
            sort: match t.sort {
                None | Some(TagSort::Semver) => Sort::SemverDescending,
                Some(TagSort::Alphabetical) => Sort::AlphabeticalDescending,
                Some(TagSort::AlphabeticalAscending) => Sort::AlphabeticalAscending,
            },
            limit: t.limit.map(|l| l as usize),
        })
        .map_err(SourceError::Tags)?;
        if self.platforms.len() > MAX_PLATFORMS {
            return Err(SourceError::TooManyPlatforms);
        }
        for (index, p) in self.platforms.iter().enumerate() {
            let parts: Vec<&str> = p.split('/').collect();
            let ok = (2..=3).contains(&parts.len())
                && parts.iter().all(|s| {
                    !s.is_empty()
                        && s.len() <= 32
                        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                });
            if !ok {
                return Err(SourceError::Platform {
                    index,
                    value: p.chars().take(64).collect(),
                });
            }
        }
        let interval = match self.interval.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_INTERVAL,
            Some(s) => {
                let d =
                    humantime::parse_duration(s).map_err(|e| SourceError::Interval(format!("{s:?}: {e}")))?;
                if d < MIN_INTERVAL {
                    return Err(SourceError::Interval(format!("{s:?} is shorter than 1m")));
                }
                d
            }
        };
        Ok(ValidSource {
            registry: registry.to_string(),
            repositories,
            policy,
            platforms: self.platforms.clone(),
            interval,
        })
    }
}

/// The CRD as YAML, as committed at `charts/sbomjob/crds/imagesources.yaml`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt as _;
    crate::crds::yaml(
        &crate::crds::annotated(ImageSource::crd()),
        "Generated by `cargo run -p sbomjob-operator --bin crdgen imagesources` from operator/src/sources/spec.rs: do not edit.",
    )
}

/// `host[:port]` as images name registries ([`sbomjob_contract::image_ref::is_host`]), with
/// no scheme, path or credentials.
fn check_registry(r: &str) -> Result<(), SourceError> {
    let bad = |why: &str| {
        Err(SourceError::Registry(format!(
            "{:?}: {why}",
            r.chars().take(128).collect::<String>()
        )))
    };
    if r.is_empty() {
        return bad("empty");
    }
    if r.contains("://") || r.contains('/') || r.contains('@') {
        return bad("a host[:port], without scheme, path or user");
    }
    if !sbomjob_contract::image_ref::is_host(r) {
        return bad("not a host[:port]");
    }
    // is_host admits any five digits.
    if let Some((_, port)) = r.rsplit_once(':')
        && !r.ends_with(']')
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return bad("the port is not a number from 1 to 65535");
    }
    Ok(())
}

/// A repository path as image references allow it (the contract's parser is the one
/// definition: lowercase components, no tag or digest), as the registry names it (Docker Hub's
/// `nginx` is `library/nginx`).
fn repository_name(registry: &str, r: &str) -> Option<String> {
    if r.len() > 255 || r.contains([':', '@']) {
        return None;
    }
    let parsed = sbomjob_contract::ImageRef::parse(&format!("{registry}/{r}")).ok()?;
    (parsed.tag.is_none() && parsed.digest.is_none() && parsed.repository.ends_with(r))
        .then_some(parsed.repository)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed CRD must be what `cargo run --bin crdgen imagesources` prints today.
    #[test]
    fn committed_crd_is_current() {
        let committed = include_str!("../../../charts/sbomjob/crds/imagesources.yaml");
        assert!(
            committed == crd_yaml(),
            "charts/sbomjob/crds/imagesources.yaml is stale: regenerate it with \
             `cargo run -p sbomjob-operator --bin crdgen imagesources > charts/sbomjob/crds/imagesources.yaml`"
        );
    }

    fn spec() -> ImageSourceSpec {
        ImageSourceSpec {
            registry: "127.0.0.1:5000".into(),
            repositories: vec!["team/app".into()],
            credentials_secret: None,
            tags: TagSelector::default(),
            platforms: vec![],
            interval: None,
        }
    }

    fn any() -> AllowedRegistries {
        AllowedRegistries::Any
    }

    #[test]
    fn a_plain_source_gets_the_defaults() {
        let v = spec().validate(&any()).unwrap();
        assert_eq!(
            (v.registry.as_str(), v.interval),
            ("127.0.0.1:5000", DEFAULT_INTERVAL)
        );
        assert_eq!(v.policy.select(["1.0.0", "1.0.0-rc.1"]), ["1.0.0"]);
    }

    #[test]
    fn registries_only_where_the_admin_allows() {
        assert_eq!(
            spec().validate(&AllowedRegistries::None).unwrap_err(),
            SourceError::RegistryNotAllowed("127.0.0.1:5000".into())
        );
        let only = AllowedRegistries::Only(vec!["registry.example".into()]);
        assert!(spec().validate(&only).is_err());
        let s = ImageSourceSpec {
            registry: "Registry.Example".into(),
            ..spec()
        };
        assert!(s.validate(&only).is_ok());
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases: Vec<(ImageSourceSpec, &str)> = vec![
            (
                ImageSourceSpec {
                    registry: "https://r.example".into(),
                    ..spec()
                },
                "spec.registry:",
            ),
            (
                ImageSourceSpec {
                    registry: "r.example:99999".into(),
                    ..spec()
                },
                "spec.registry:",
            ),
            (
                ImageSourceSpec {
                    registry: "user@r.example".into(),
                    ..spec()
                },
                "spec.registry:",
            ),
            (
                ImageSourceSpec {
                    registry: "".into(),
                    ..spec()
                },
                "spec.registry:",
            ),
            (
                ImageSourceSpec {
                    repositories: vec![],
                    ..spec()
                },
                "spec.repositories:",
            ),
            (
                ImageSourceSpec {
                    repositories: vec!["ok".into(), "Team/App".into()],
                    ..spec()
                },
                "spec.repositories[1]:",
            ),
            (
                ImageSourceSpec {
                    repositories: vec!["a//b".into()],
                    ..spec()
                },
                "spec.repositories[0]:",
            ),
            (
                ImageSourceSpec {
                    repositories: vec!["r".into(); MAX_REPOSITORIES + 1],
                    ..spec()
                },
                "spec.repositories:",
            ),
            (
                ImageSourceSpec {
                    tags: TagSelector {
                        include: vec!["(".into()],
                        ..Default::default()
                    },
                    ..spec()
                },
                "spec.tags.include[0]:",
            ),
            (
                ImageSourceSpec {
                    tags: TagSelector {
                        semver: Some("not a range".into()),
                        ..Default::default()
                    },
                    ..spec()
                },
                "spec.tags.semver:",
            ),
            (
                ImageSourceSpec {
                    tags: TagSelector {
                        limit: Some(0),
                        ..Default::default()
                    },
                    ..spec()
                },
                "spec.tags.limit:",
            ),
            (
                ImageSourceSpec {
                    platforms: vec!["linux".into()],
                    ..spec()
                },
                "spec.platforms[0]:",
            ),
            (
                ImageSourceSpec {
                    platforms: vec!["linux/amd64/v1/x".into()],
                    ..spec()
                },
                "spec.platforms[0]:",
            ),
            (
                ImageSourceSpec {
                    interval: Some("5s".into()),
                    ..spec()
                },
                "spec.interval:",
            ),
            (
                ImageSourceSpec {
                    interval: Some("soon".into()),
                    ..spec()
                },
                "spec.interval:",
            ),
        ];
        for (s, field) in cases {
            let e = s.validate(&any()).unwrap_err().to_string();
            assert!(e.starts_with(field), "{field}: {e}");
        }
    }

    #[test]
    fn repositories_are_kept_once_and_platforms_checked() {
        let s = ImageSourceSpec {
            repositories: vec!["a".into(), "b/c".into(), "a".into()],
            platforms: vec!["linux/amd64".into(), "linux/arm/v7".into()],
            interval: Some("30m".into()),
            ..spec()
        };
        let v = s.validate(&any()).unwrap();
        assert_eq!(v.repositories, ["a", "b/c"]);
        let hub = ImageSourceSpec {
            registry: "docker.io".into(),
            repositories: vec!["nginx".into(), "library/nginx".into(), "bitnami/redis".into()],
            ..spec()
        };
        assert_eq!(
            hub.validate(&any()).unwrap().repositories,
            ["library/nginx", "bitnami/redis"]
        );
        let tagged = ImageSourceSpec {
            repositories: vec!["app:1.0".into()],
            ..spec()
        };
        assert!(tagged.validate(&any()).is_err());
        assert_eq!(v.interval, Duration::from_secs(1800));
    }
}
