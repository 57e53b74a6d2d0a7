//! Tags of a repository: which of them a policy selects (registry sources) and what version a tag
//! names (drift). Pure: the shell lists the tags, this decides.
//!
//! Versions are semantic versions (the `semver` crate) with what registries really hold
//! tolerated: a leading `v`, and `1` or `1.2` read as `1.0.0` or `1.2.0` (so `v1.2` sorts with
//! `1.2.3`). Anything else (`latest`, `main`, `2024-05-01`, `1.2.3.4`) is not a version: it is
//! kept or dropped by the patterns only, and drift calls it unknown.

use std::cmp::Ordering;

use regex::{Regex, RegexBuilder};
use semver::{Version, VersionReq};

/// At most this many include or exclude patterns, each at most this long: they come from a
/// tenant's custom resource, and every tag of every scan runs through them.
pub const MAX_PATTERNS: usize = 32;
pub const MAX_PATTERN_LEN: usize = 256;
/// The compiled size of one pattern (regex's own bound; its default is 10 MiB).
const PATTERN_SIZE_LIMIT: usize = 256 * 1024;
/// `limit` at most this (and the default): a source scans a bounded number of tags per repository.
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("{field}: at most {MAX_PATTERNS} patterns, got {got}")]
    TooManyPatterns { field: &'static str, got: usize },
    #[error("{field}[{index}]: longer than {MAX_PATTERN_LEN} characters")]
    PatternTooLong { field: &'static str, index: usize },
    #[error("{field}[{index}]: not a regular expression: {message}")]
    Pattern {
        field: &'static str,
        index: usize,
        message: String,
    },
    #[error("semver: not a version constraint ({value:?}): {message}")]
    Semver { value: String, message: String },
    #[error("limit: must be from 1 to {MAX_LIMIT}, got {0}")]
    Limit(usize),
}

/// How the selected tags are ordered before `limit` keeps the first ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Highest version first; tags that are no versions after every version, by name.
    #[default]
    SemverDescending,
    /// By name, descending (date-stamped tags: newest first).
    AlphabeticalDescending,
    /// By name, ascending.
    AlphabeticalAscending,
}

/// A validated tag policy: what `ImageSource.spec` (or drift's settings) asks for.
#[derive(Debug, Clone)]
pub struct TagPolicy {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    constraint: Option<VersionReq>,
    prereleases: bool,
    sort: Sort,
    limit: usize,
}

/// The policy as written, before validation.
#[derive(Debug, Clone, Default)]
pub struct TagPolicySpec<'a> {
    /// Regular expressions a tag must match in whole (one of them); empty: every tag.
    pub include: &'a [String],
    /// Regular expressions that drop a tag matching one of them in whole.
    pub exclude: &'a [String],
    /// A semver constraint (`>=1.2, <2`); a tag that is no version never satisfies one.
    pub semver: Option<&'a str>,
    /// Keep pre-release versions (`1.3.0-rc.1`); off by default, as drift's "newest" is.
    pub prereleases: bool,
    pub sort: Sort,
    /// Keep the first this many after sorting; `None`: [`MAX_LIMIT`].
    pub limit: Option<usize>,
}

impl TagPolicy {
    pub fn new(spec: &TagPolicySpec<'_>) -> Result<Self, PolicyError> {
        let limit = spec.limit.unwrap_or(MAX_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(PolicyError::Limit(limit));
        }
        let constraint = spec
            .semver
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                VersionReq::parse(s).map_err(|e| PolicyError::Semver {
                    value: s.to_string(),
                    message: e.to_string(),
                })
            })
            .transpose()?;
        Ok(Self {
            include: compile("include", spec.include)?,
            exclude: compile("exclude", spec.exclude)?,
            constraint,
            prereleases: spec.prereleases,
            sort: spec.sort,
            limit,
        })
    }

    /// Whether one tag passes the patterns, the pre-release rule and the constraint.
    pub fn admits(&self, tag: &str) -> bool {
        if !self.include.is_empty() && !self.include.iter().any(|r| r.is_match(tag)) {
            return false;
        }
        if self.exclude.iter().any(|r| r.is_match(tag)) {
            return false;
        }
        let version = version_of(tag);
        if let Some(v) = &version
            && !v.pre.is_empty()
            && !self.prereleases
        {
            return false;
        }
        match (&self.constraint, &version) {
            (None, _) => true,
            (Some(_), None) => false,
            // `VersionReq` alone refuses every pre-release unless the constraint names one of
            // the same major.minor.patch; a policy that asks for pre-releases wants them ranked.
            (Some(req), Some(v)) => {
                req.matches(v) || (self.prereleases && !v.pre.is_empty() && req.matches(&release_of(v)))
            }
        }
    }

    /// The tags this policy selects, in its order, at most `limit`; duplicates once.
    pub fn select<'t>(&self, tags: impl IntoIterator<Item = &'t str>) -> Vec<&'t str> {
        let mut kept: Vec<(&str, Option<Version>)> = tags
            .into_iter()
            .filter(|t| self.admits(t))
            .map(|t| (t, version_of(t)))
            .collect();
        kept.sort_by(|a, b| match self.sort {
            Sort::SemverDescending => by_version_descending(a, b),
            Sort::AlphabeticalDescending => b.0.cmp(a.0),
            Sort::AlphabeticalAscending => a.0.cmp(b.0),
        });
        kept.dedup_by(|a, b| a.0 == b.0);
        kept.truncate(self.limit);
        kept.into_iter().map(|(t, _)| t).collect()
    }
}

fn compile(field: &'static str, patterns: &[String]) -> Result<Vec<Regex>, PolicyError> {
    if patterns.len() > MAX_PATTERNS {
        return Err(PolicyError::TooManyPatterns {
            field,
            got: patterns.len(),
        });
    }
    patterns
        .iter()
        .enumerate()
        .map(|(index, p)| {
            if p.len() > MAX_PATTERN_LEN {
                return Err(PolicyError::PatternTooLong { field, index });
            }
            // Anchored: `1\.2\..*` means tags that start with 1.2., not tags that contain it.
            RegexBuilder::new(&format!("^(?:{p})$"))
                .size_limit(PATTERN_SIZE_LIMIT)
                .build()
                .map_err(|e| PolicyError::Pattern {
                    field,
                    index,
                    message: e.to_string(),
                })
        })
        .collect()
}

/// Versions descending (for equal versions, such as `1.2` and `1.2.0`, the longer tag first, so
/// the order does not depend on the registry's); then the tags that are no versions, by name.
fn by_version_descending(a: &(&str, Option<Version>), b: &(&str, Option<Version>)) -> Ordering {
    match (&a.1, &b.1) {
        (Some(x), Some(y)) => y
            .cmp_precedence(x)
            .then_with(|| b.0.len().cmp(&a.0.len()))
            .then_with(|| a.0.cmp(b.0)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.0.cmp(b.0),
    }
}

/// The version a tag names, if it names one (see the module's head for what is tolerated).
/// Build metadata is kept but never orders versions (`cmp_precedence`), as semver says.
pub fn version_of(tag: &str) -> Option<Version> {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    if let Ok(v) = Version::parse(t) {
        return Some(v);
    }
    // `1` and `1.2`, with nothing after them: no pre-release or build on a short form, which
    // would make `1.2-rc` (ambiguous) a version.
    let parts: Vec<&str> = t.split('.').collect();
    if parts.is_empty() || parts.len() > 2 {
        return None;
    }
    let numbers: Option<Vec<u64>> = parts
        .iter()
        .map(|p| {
            let numeric = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
            // Semver forbids leading zeros; `01` is a date part, not a version.
            let canonical = *p == "0" || !p.starts_with('0');
            (numeric && canonical).then(|| p.parse().ok()).flatten()
        })
        .collect();
    let n = numbers?;
    Some(Version::new(n[0], n.get(1).copied().unwrap_or(0), 0))
}

fn release_of(v: &Version) -> Version {
    Version::new(v.major, v.minor, v.patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn policy(include: &[&str], exclude: &[&str], semver: Option<&str>) -> TagPolicy {
        let (include, exclude) = (strings(include), strings(exclude));
        TagPolicy::new(&TagPolicySpec {
            include: &include,
            exclude: &exclude,
            semver,
            ..Default::default()
        })
        .unwrap()
    }

    const TAGS: &[&str] = &[
        "1.2.0",
        "1.2.3",
        "1.3.0",
        "latest",
        "1.3.0-rc.1",
        "v1.1",
        "2.0.0+build.7",
        "main",
        "1.2.3-debug",
    ];

    #[test]
    fn versions_with_a_v_and_short_forms() {
        assert_eq!(version_of("1.2.3"), Some(Version::new(1, 2, 3)));
        assert_eq!(version_of("v1.2.3"), Some(Version::new(1, 2, 3)));
        assert_eq!(version_of("v1.2"), Some(Version::new(1, 2, 0)));
        assert_eq!(version_of("3"), Some(Version::new(3, 0, 0)));
        assert_eq!(version_of("1.3.0-rc.1").unwrap().pre.as_str(), "rc.1");
        assert_eq!(version_of("2.0.0+build.7").unwrap().build.as_str(), "build.7");
    }

    #[test]
    fn not_versions() {
        for t in [
            "latest",
            "main",
            "",
            "v",
            "1.2.3.4",
            "2024-05-01",
            "01.2",
            "1.02",
            "1.2-rc",
            "1.2.",
            "x1.2.3",
            "1..2",
        ] {
            assert_eq!(version_of(t), None, "{t:?}");
        }
    }

    #[test]
    fn build_metadata_does_not_order() {
        let p = policy(&[], &[], None);
        // Same precedence: the longer tag first, then by name; never by build metadata alone.
        assert_eq!(
            p.select(["1.0.0+b", "1.0.0+a", "1.0.0"]),
            ["1.0.0+a", "1.0.0+b", "1.0.0"]
        );
    }

    #[test]
    fn default_policy_sorts_versions_first_and_drops_prereleases() {
        let p = policy(&[], &[], None);
        assert_eq!(
            p.select(TAGS.iter().copied()),
            [
                "2.0.0+build.7",
                "1.3.0",
                "1.2.3",
                "1.2.0",
                "v1.1",
                "latest",
                "main"
            ]
        );
    }

    #[test]
    fn include_and_exclude_match_whole_tags() {
        let p = policy(&[r"1\.2\..*", "latest"], &[r".*-debug", "1.2.0"], None);
        assert_eq!(p.select(TAGS.iter().copied()), ["1.2.3", "latest"]);
        // Anchored: "2" does not match "1.2.3" as a substring.
        let p = policy(&["2"], &[], None);
        assert!(p.select(TAGS.iter().copied()).is_empty());
    }

    #[test]
    fn semver_constraint_drops_non_versions() {
        let p = policy(&[], &[], Some(">=1.2, <2"));
        assert_eq!(p.select(TAGS.iter().copied()), ["1.3.0", "1.2.3", "1.2.0"]);
    }

    #[test]
    fn prereleases_when_asked_ranked_below_their_release() {
        let spec = TagPolicySpec {
            semver: Some(">=1.2"),
            prereleases: true,
            ..Default::default()
        };
        let p = TagPolicy::new(&spec).unwrap();
        assert_eq!(
            p.select(TAGS.iter().copied()),
            [
                "2.0.0+build.7",
                "1.3.0",
                "1.3.0-rc.1",
                "1.2.3",
                "1.2.3-debug",
                "1.2.0"
            ]
        );
    }

    #[test]
    fn sort_and_limit() {
        let spec = |sort, limit| TagPolicySpec {
            sort,
            limit,
            ..Default::default()
        };
        let tags = ["2024-05-01", "2024-06-11", "2023-12-31"];
        let p = TagPolicy::new(&spec(Sort::AlphabeticalDescending, Some(2))).unwrap();
        assert_eq!(p.select(tags), ["2024-06-11", "2024-05-01"]);
        let p = TagPolicy::new(&spec(Sort::AlphabeticalAscending, Some(1))).unwrap();
        assert_eq!(p.select(tags), ["2023-12-31"]);
        let p = TagPolicy::new(&spec(Sort::SemverDescending, Some(2))).unwrap();
        assert_eq!(p.select(["1.0.0", "1.0.0", "0.9.0"]), ["1.0.0", "0.9.0"]);
    }

    #[test]
    fn bad_policies_name_the_field() {
        let bad = strings(&["(unclosed"]);
        let e = TagPolicy::new(&TagPolicySpec {
            exclude: &bad,
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                PolicyError::Pattern {
                    field: "exclude",
                    index: 0,
                    ..
                }
            ),
            "{e}"
        );
        let long = vec!["a".repeat(MAX_PATTERN_LEN + 1)];
        let e = TagPolicy::new(&TagPolicySpec {
            include: &long,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            e,
            PolicyError::PatternTooLong {
                field: "include",
                index: 0
            }
        );
        let many = vec!["a".to_string(); MAX_PATTERNS + 1];
        assert!(matches!(
            TagPolicy::new(&TagPolicySpec {
                include: &many,
                ..Default::default()
            }),
            Err(PolicyError::TooManyPatterns { field: "include", .. })
        ));
        assert!(matches!(
            TagPolicy::new(&TagPolicySpec {
                semver: Some(">=1.x.y"),
                ..Default::default()
            }),
            Err(PolicyError::Semver { .. })
        ));
        for limit in [0, MAX_LIMIT + 1] {
            assert_eq!(
                TagPolicy::new(&TagPolicySpec {
                    limit: Some(limit),
                    ..Default::default()
                })
                .unwrap_err(),
                PolicyError::Limit(limit)
            );
        }
        // A pattern that compiles to more than the size limit is refused, not built.
        let huge = vec![r"(\w{1,100}){1,100}".to_string()];
        assert!(matches!(
            TagPolicy::new(&TagPolicySpec {
                include: &huge,
                ..Default::default()
            }),
            Err(PolicyError::Pattern { field: "include", .. })
        ));
    }
}
