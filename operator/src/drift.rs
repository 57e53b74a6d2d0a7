//! Drift: how far a running container's tag is behind the newest tag of its repository that the
//! policy admits. Pure: the shell lists the repository's tags and writes the verdict where users
//! look (record, pod annotation, metric).

use std::fmt;

use crate::tags::{TagPolicy, version_of};

/// Which part of the version the newest tag is ahead in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Patch,
    Minor,
    Major,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// No admitted tag is newer than the running one.
    Latest,
    Behind {
        level: Level,
        newest: String,
    },
    /// The running tag is no version, or the repository has no admitted version tag.
    Unknown {
        reason: &'static str,
    },
}

/// Every [`Drift::status`], in the metric's order.
pub const STATUSES: [&str; 5] = [
    "latest",
    "behind-patch",
    "behind-minor",
    "behind-major",
    "unknown",
];

impl Drift {
    /// The low-cardinality word for the annotation and the metric's label.
    pub fn status(&self) -> &'static str {
        match self {
            Drift::Latest => "latest",
            Drift::Behind {
                level: Level::Patch, ..
            } => "behind-patch",
            Drift::Behind {
                level: Level::Minor, ..
            } => "behind-minor",
            Drift::Behind {
                level: Level::Major, ..
            } => "behind-major",
            Drift::Unknown { .. } => "unknown",
        }
    }

    pub fn newest(&self) -> Option<&str> {
        match self {
            Drift::Behind { newest, .. } => Some(newest),
            _ => None,
        }
    }
}

impl fmt::Display for Drift {
    /// What `kubectl` shows: "behind minor, newest 1.3.0", "latest", "unknown: ...".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Latest => f.write_str("latest"),
            Drift::Behind { level, newest } => {
                let level = match level {
                    Level::Patch => "patch",
                    Level::Minor => "minor",
                    Level::Major => "major",
                };
                write!(f, "behind {level}, newest {newest}")
            }
            Drift::Unknown { reason } => write!(f, "unknown: {reason}"),
        }
    }
}

/// The drift of `running` (a tag) against `tags` (the repository's), under `policy`.
pub fn drift<'t>(running: &str, tags: impl IntoIterator<Item = &'t str>, policy: &TagPolicy) -> Drift {
    let Some(current) = version_of(running) else {
        return Drift::Unknown {
            reason: "the running tag is not a semantic version",
        };
    };
    // The policy's own order puts the highest version first; only versions count here.
    let newest = tags
        .into_iter()
        .filter(|t| policy.admits(t))
        .filter_map(|t| version_of(t).map(|v| (t, v)))
        .max_by(|a, b| a.1.cmp_precedence(&b.1).then_with(|| a.0.len().cmp(&b.0.len())));
    let Some((tag, newest)) = newest else {
        return Drift::Unknown {
            reason: "the repository has no tag the policy admits that is a semantic version",
        };
    };
    if newest.cmp_precedence(&current).is_le() {
        return Drift::Latest;
    }
    let level = if newest.major != current.major {
        Level::Major
    } else if newest.minor != current.minor {
        Level::Minor
    } else {
        // Same major.minor: a higher patch, or the release of the pre-release that runs.
        Level::Patch
    };
    Drift::Behind {
        level,
        newest: tag.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::TagPolicySpec;

    fn default_policy() -> TagPolicy {
        TagPolicy::new(&TagPolicySpec::default()).unwrap()
    }

    const REPO: &[&str] = &["1.2.0", "1.2.3", "1.3.0", "latest", "1.4.0-rc.1", "2.0.0-beta.1"];

    #[test]
    fn behind_minor_and_latest() {
        let p = default_policy();
        let d = drift("1.2.0", REPO.iter().copied(), &p);
        assert_eq!(
            d,
            Drift::Behind {
                level: Level::Minor,
                newest: "1.3.0".into()
            }
        );
        assert_eq!(d.to_string(), "behind minor, newest 1.3.0");
        assert_eq!(d.status(), "behind-minor");
        assert_eq!(drift("1.3.0", REPO.iter().copied(), &p), Drift::Latest);
        // A running tag newer than every listed one (pushed since, or a pre-release) is latest.
        assert_eq!(drift("1.5.0", REPO.iter().copied(), &p), Drift::Latest);
    }

    #[test]
    fn patch_and_major() {
        let p = default_policy();
        assert_eq!(
            drift("1.3.0", ["1.3.0", "1.3.2", "1.3.10"], &p).newest(),
            Some("1.3.10")
        );
        assert_eq!(drift("1.3.0", ["1.3.0", "1.3.10"], &p).status(), "behind-patch");
        assert_eq!(drift("v1.9.9", ["2.0.0", "v1.9.9"], &p).status(), "behind-major");
        // The release of the pre-release that runs.
        assert_eq!(drift("1.4.0-rc.1", REPO.iter().copied(), &p).status(), "latest");
        assert_eq!(
            drift("1.3.0-rc.1", REPO.iter().copied(), &p).status(),
            "behind-patch"
        );
    }

    #[test]
    fn prereleases_only_when_asked() {
        let p = TagPolicy::new(&TagPolicySpec {
            prereleases: true,
            ..Default::default()
        })
        .unwrap();
        let d = drift("1.3.0", REPO.iter().copied(), &p);
        assert_eq!(
            d,
            Drift::Behind {
                level: Level::Major,
                newest: "2.0.0-beta.1".into()
            }
        );
    }

    #[test]
    fn the_policy_bounds_the_candidates() {
        let p = TagPolicy::new(&TagPolicySpec {
            semver: Some("<1.3"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(drift("1.2.0", REPO.iter().copied(), &p).newest(), Some("1.2.3"));
    }

    #[test]
    fn build_metadata_is_not_newer() {
        let p = default_policy();
        assert_eq!(drift("1.3.0", ["1.3.0+build.2", "1.3.0"], &p), Drift::Latest);
    }

    #[test]
    fn unknown_for_non_semver() {
        let p = default_policy();
        assert_eq!(drift("latest", REPO.iter().copied(), &p).status(), "unknown");
        assert_eq!(drift("1.2.0", ["latest", "main"], &p).status(), "unknown");
        assert!(drift("main", ["1.0.0"], &p).to_string().starts_with("unknown: "));
    }
}
