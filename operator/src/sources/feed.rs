//! From the ImageSources' status to work of the cycle (pure): each digest a source found is a
//! work item with no pods, so it is catalogued by a Job and recorded like a running image's, and
//! a pod that runs it later is annotated from its record.
//!
//! Only what the spec still names is fed: a status is the operator's own, but a digest of a
//! repository the spec no longer lists (or a registry no longer allowed) is left out.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use super::spec::{AllowedRegistries, ImageSource};
use crate::worklist::{CredentialSources, WorkItem};

/// The work items of every source's last good scan, by digest. An index's platform manifests
/// are items of their own when the source names platforms (each platform is then catalogued).
pub fn items(sources: &[Arc<ImageSource>], allowed: &AllowedRegistries) -> Vec<WorkItem> {
    let mut out: BTreeMap<String, WorkItem> = BTreeMap::new();
    for source in sources {
        let Ok(valid) = source.spec.validate(allowed) else {
            continue;
        };
        let Some(status) = &source.status else {
            continue;
        };
        let namespace = source.metadata.namespace.clone().unwrap_or_default();
        let credentials = CredentialSources {
            namespace,
            pull_secrets: source.spec.credentials_secret.iter().cloned().collect(),
            // No pod, so no service account whose pull secrets apply.
            service_account: String::new(),
        };
        let named: BTreeSet<String> = valid
            .repositories
            .iter()
            .map(|r| format!("{}/{r}", valid.registry))
            .collect();
        for image in status.images.iter().filter(|i| named.contains(&i.repository)) {
            let platforms = image
                .platforms
                .iter()
                .filter(|_| !valid.platforms.is_empty())
                .filter_map(|p| p.split_once('=').map(|(_, d)| d));
            for digest in std::iter::once(image.digest.as_str()).chain(platforms) {
                let reference = format!("{}@{digest}", image.repository);
                if sbomjob_contract::image_ref::validate_config_image(&reference).is_err()
                    || !is_digest(digest)
                {
                    continue;
                }
                add(&mut out, digest, reference, &credentials);
            }
        }
    }
    out.into_values().collect()
}

/// `sha256:<64 hex>`, as the cycle keys digests.
fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

fn add(
    out: &mut BTreeMap<String, WorkItem>,
    digest: &str,
    reference: String,
    credentials: &CredentialSources,
) {
    let item = out.entry(digest.to_string()).or_insert_with(|| WorkItem {
        digest: digest.to_string(),
        image: reference.clone(),
        alternatives: Vec::new(),
        pods: Vec::new(),
        sources: Vec::new(),
        annotated: false,
    });
    if item.image != reference && !item.alternatives.contains(&reference) {
        item.alternatives.push(reference);
    }
    if !item.sources.contains(credentials) {
        item.sources.push(credentials.clone());
    }
}

/// The pods' work items with the sources' added: a digest both run and found keeps its pods and
/// first reference, and gains the source's reference and credential as alternatives. Sorted by
/// digest, as the work list is.
pub fn merge(pods: Vec<WorkItem>, sources: Vec<WorkItem>) -> Vec<WorkItem> {
    let mut by_digest: BTreeMap<String, WorkItem> = pods.into_iter().map(|i| (i.digest.clone(), i)).collect();
    for s in sources {
        match by_digest.get_mut(&s.digest) {
            Some(item) => {
                for r in std::iter::once(s.image).chain(s.alternatives) {
                    if item.image != r && !item.alternatives.contains(&r) {
                        item.alternatives.push(r);
                    }
                }
                for c in s.sources {
                    if !item.sources.contains(&c) {
                        item.sources.push(c);
                    }
                }
            }
            None => {
                by_digest.insert(s.digest.clone(), s);
            }
        }
    }
    by_digest.into_values().collect()
}

/// The `registry/repository` of each item's references, by digest: what its record lists.
pub fn repositories(items: &[WorkItem]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for i in items {
        for r in std::iter::once(&i.image).chain(&i.alternatives) {
            if let Some(repo) = crate::cache::repository_of(r) {
                out.entry(i.digest.clone()).or_default().insert(repo);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::spec::{ImageSourceSpec, ImageSourceStatus, ScannedImage};
    use crate::worklist::fixtures::digest;
    use kube::api::ObjectMeta;

    fn source(ns: &str, repos: &[&str], images: Vec<ScannedImage>, platforms: &[&str]) -> Arc<ImageSource> {
        Arc::new(ImageSource {
            metadata: ObjectMeta {
                name: Some("s".into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: ImageSourceSpec {
                registry: "reg.example:5000".into(),
                repositories: repos.iter().map(|r| r.to_string()).collect(),
                credentials_secret: Some("pull".into()),
                tags: Default::default(),
                platforms: platforms.iter().map(|p| p.to_string()).collect(),
                interval: None,
            },
            status: Some(ImageSourceStatus {
                images,
                ..Default::default()
            }),
        })
    }

    fn scanned(repo: &str, tag: &str, d: String, platforms: Vec<String>) -> ScannedImage {
        ScannedImage {
            repository: format!("reg.example:5000/{repo}"),
            tag: tag.into(),
            digest: d,
            platforms,
        }
    }

    #[test]
    fn each_digest_found_is_an_item_without_pods_with_the_sources_credential() {
        let allowed = AllowedRegistries::Any;
        let s = source(
            "team",
            &["app"],
            vec![
                scanned("app", "1.2.0", digest(1), vec![]),
                // Two tags of one digest: one item.
                scanned("app", "1.2.3", digest(1), vec![]),
                scanned(
                    "app",
                    "1.3.0",
                    digest(2),
                    vec![format!("linux/amd64={}", digest(3))],
                ),
            ],
            &[],
        );
        let items = items(&[s], &allowed);
        let got: Vec<(&str, &str, usize)> = items
            .iter()
            .map(|i| (i.digest.as_str(), i.image.as_str(), i.pods.len()))
            .collect();
        let (d1, d2) = (digest(1), digest(2));
        let (r1, r2) = (
            format!("reg.example:5000/app@{d1}"),
            format!("reg.example:5000/app@{d2}"),
        );
        // No platforms named: an index is catalogued as its digest (what a pod's imageID names).
        assert_eq!(
            got,
            [(d1.as_str(), r1.as_str(), 0), (d2.as_str(), r2.as_str(), 0)]
        );
        assert_eq!(
            items[0].sources,
            [CredentialSources {
                namespace: "team".into(),
                pull_secrets: vec!["pull".into()],
                service_account: String::new(),
            }]
        );
        assert!(!items[0].annotated);
    }

    #[test]
    fn platforms_named_make_their_manifests_items_too() {
        let s = source(
            "team",
            &["app"],
            vec![scanned(
                "app",
                "1.3.0",
                digest(2),
                vec![format!("linux/amd64={}", digest(3)), "garbage".into()],
            )],
            &["linux/amd64"],
        );
        let digests: Vec<String> = items(&[s], &AllowedRegistries::Any)
            .into_iter()
            .map(|i| i.digest)
            .collect();
        assert_eq!(digests, [digest(2), digest(3)]);
    }

    #[test]
    fn only_what_the_spec_still_names_and_may_name_is_fed() {
        let s = source(
            "team",
            &["app"],
            vec![
                scanned("gone", "1", digest(1), vec![]),
                scanned("app", "1", "sha256:NOTHEX".into(), vec![]),
                ScannedImage {
                    repository: "other.example/app".into(),
                    tag: "1".into(),
                    digest: digest(4),
                    platforms: vec![],
                },
                scanned("app", "2", digest(2), vec![]),
            ],
            &[],
        );
        let fed: Vec<String> = items(std::slice::from_ref(&s), &AllowedRegistries::Any)
            .into_iter()
            .map(|i| i.digest)
            .collect();
        assert_eq!(fed, [digest(2)]);
        // A registry no longer allowed: nothing.
        assert!(items(&[s], &AllowedRegistries::None).is_empty());
    }

    #[test]
    fn a_digest_running_and_found_keeps_its_pods_and_gains_the_source() {
        use crate::worklist::{
            self, Snapshot,
            fixtures::{pod, status},
        };
        let pods: Vec<Arc<crate::pod::WatchedPod>> = vec![
            pod(
                "run",
                "p",
                vec![status("c", &format!("reg.example:5000/app@{}", digest(1)))],
            )
            .into(),
        ];
        let (from_pods, _) = worklist::build(&Snapshot {
            pods: &pods,
            annotation_prefix: "sbomjob.io",
            ignore_annotations: false,
            keep_annotated: true,
            cluster_id: "c",
            refused: &Default::default(),
        });
        let s = source(
            "team",
            &["app", "mirror"],
            vec![
                scanned("app", "1", digest(1), vec![]),
                scanned("mirror", "1", digest(1), vec![]),
                scanned("app", "2", digest(2), vec![]),
            ],
            &[],
        );
        let merged = merge(from_pods, items(&[s], &AllowedRegistries::Any));
        assert_eq!(merged.len(), 2);
        let both = &merged[0];
        assert_eq!(both.pods.len(), 1);
        assert_eq!(both.image, format!("reg.example:5000/app@{}", digest(1)));
        assert_eq!(
            both.alternatives,
            [format!("reg.example:5000/mirror@{}", digest(1))]
        );
        assert_eq!(both.sources.len(), 2, "the pod's and the source's credentials");
        assert!(merged[1].pods.is_empty());
        let repos = repositories(&merged);
        assert_eq!(
            repos[&digest(1)].iter().collect::<Vec<_>>(),
            ["reg.example:5000/app", "reg.example:5000/mirror"]
        );
    }
}
