//! `kubectl sbomjob drift`: for each running container whose image has a tag, how far it is
//! behind the newest semantic-version tag of its repository (pre-releases left out). The tags are
//! listed with the pull credentials the pod has; the verdict is the operator's
//! ([`sbomjob::drift`]).

use std::collections::BTreeMap;

use sbomjob::{
    drift::drift,
    tags::{TagPolicy, TagPolicySpec},
};
use sbomjob_contract::ImageRef;
use serde::Serialize;

use crate::cluster::Running;

/// Tags read per repository, at most.
pub const MAX_TAGS: usize = 10_000;

/// One container's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub image: String,
    /// latest, behind-patch, behind-minor, behind-major, unknown.
    pub status: &'static str,
    pub newest: Option<String>,
    /// "behind minor, newest 1.3.0", or why it is unknown.
    pub detail: String,
}

/// (registry, repository) → the running tag, for each container; `None`: no tag to compare.
pub fn repository_of(image: &str) -> Option<((String, String), String)> {
    let r = ImageRef::parse(image).ok()?;
    let tag = r.tag?;
    (!r.repository.is_empty()).then_some(((r.registry, r.repository), tag))
}

/// The rows, from the tags listed per repository (an error: that repository's containers are
/// unknown, with it).
pub fn rows(
    running: &[Running],
    listed: &BTreeMap<(String, String), Result<Vec<String>, String>>,
) -> Vec<Row> {
    let policy = TagPolicy::new(&TagPolicySpec::default()).expect("the default policy is valid");
    let mut out: Vec<Row> = running
        .iter()
        .map(|c| {
            let (status, newest, detail) = match repository_of(&c.spec_image) {
                None => (
                    "unknown",
                    None,
                    "the image is named by digest, not by tag".to_string(),
                ),
                Some((repo, tag)) => match listed.get(&repo) {
                    Some(Ok(tags)) => {
                        let d = drift(&tag, tags.iter().map(String::as_str), &policy);
                        (d.status(), d.newest().map(str::to_owned), d.to_string())
                    }
                    Some(Err(e)) => ("unknown", None, format!("unknown: tags not listed: {e}")),
                    None => ("unknown", None, "unknown: tags not listed".to_string()),
                },
            };
            Row {
                namespace: c.namespace.clone(),
                pod: c.pod.clone(),
                container: c.container.clone(),
                image: c.spec_image.clone(),
                status,
                newest,
                detail,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container)));
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(ns: &str, pod: &str, image: &str) -> Running {
        Running {
            namespace: ns.into(),
            pod: pod.into(),
            container: "app".into(),
            // The status may name another tag of the same digest: the spec's counts.
            image: "10.0.0.1:5000/team/app:1.2.0".into(),
            spec_image: image.into(),
            digest: format!("sha256:{}", "1".repeat(64)),
            pull_secrets: vec![],
        }
    }

    #[test]
    fn rows_per_container() {
        let key = ("10.0.0.1:5000".to_string(), "team/app".to_string());
        let tags = ["1.2.0", "1.2.3", "1.3.0", "latest", "1.4.0-rc.1"]
            .map(String::from)
            .to_vec();
        let listed = BTreeMap::from([
            (key.clone(), Ok(tags)),
            (
                ("10.0.0.1:5000".into(), "team/gone".into()),
                Err("HTTP 404".to_string()),
            ),
        ]);
        let r = rows(
            &[
                running("a", "old", "10.0.0.1:5000/team/app:1.2.0"),
                running("a", "new", "10.0.0.1:5000/team/app:1.3.0"),
                running("a", "floating", "10.0.0.1:5000/team/app:latest"),
                running(
                    "a",
                    "pinned",
                    &format!("10.0.0.1:5000/team/app@sha256:{}", "2".repeat(64)),
                ),
                running("a", "missing", "10.0.0.1:5000/team/gone:1.0.0"),
            ],
            &listed,
        );
        let by: BTreeMap<&str, (&str, Option<&str>, &str)> = r
            .iter()
            .map(|r| (r.pod.as_str(), (r.status, r.newest.as_deref(), r.detail.as_str())))
            .collect();
        assert_eq!(
            by["old"],
            ("behind-minor", Some("1.3.0"), "behind minor, newest 1.3.0")
        );
        assert_eq!(by["new"], ("latest", None, "latest"));
        assert_eq!(by["floating"].0, "unknown");
        assert_eq!(by["pinned"].0, "unknown");
        assert!(by["missing"].2.contains("HTTP 404"), "{}", by["missing"].2);
        assert_eq!(
            repository_of("10.0.0.1:5000/team/app:1.2.0"),
            Some((key, "1.2.0".into()))
        );
    }
}
