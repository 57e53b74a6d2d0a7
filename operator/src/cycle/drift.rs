//! Step 6, drift: each running container named by a tag against the newest version tag of its
//! repository ([`crate::drift`]), written where users look: the `<prefix>/drift-<container>`
//! pod annotation and the `drift` of the digest's ImageRecord (each written only when it
//! changes), and the `sbomjob_drift_containers` metric.
//!
//! Tags come from an ImageSource naming the repository (its selector is the policy, its last
//! scan the tags), else from the registry, listed at most once per `SBOM_DRIFT_INTERVAL` per
//! repository with the first pod's pull credential. A repository that cannot be listed makes its
//! containers' drift unknown without an annotation (nothing known is written), and is tried
//! again an interval later.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use tracing::{debug, info, warn};

use kube::{
    Api,
    api::{Patch, PatchParams},
};

use super::{context::Context, plan};
use crate::{
    annotate::{self, PatchOutcome},
    cache::{self, ImageRecord, MAX_DRIFT, TagDrift},
    drift::{self, Drift},
    pod::WatchedPod,
    registry::Repository,
    sources::spec::ImageSource,
    tags::{TagPolicy, TagPolicySpec},
    worklist::{self, WorkItem},
};

/// Repositories listed at once.
const CONCURRENCY: usize = 4;
/// Repositories listed in one cycle, at most (the rest wait for the next cycle).
const MAX_LISTINGS: usize = 100;
/// Tags read per repository.
const MAX_TAGS: usize = 10_000;
/// One repository's listing, at most.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// `(registry, repository)`.
pub type Repo = (String, String);

/// What a repository's listing gave, and when.
#[derive(Debug, Clone)]
pub struct Listed {
    pub at: Instant,
    pub tags: Result<Vec<String>, String>,
}

/// A running container named by a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub pod: usize,
    pub container: String,
    /// The image as the spec names it.
    pub image: String,
    pub repo: Repo,
    pub tag: String,
    /// What it runs (its status's imageID), once pulled.
    pub digest: Option<String>,
}

/// The annotation a container's drift is written under: `<prefix>/drift-<container>`, or
/// `None` when that is no valid annotation name (a container name of more than 57 characters).
pub fn annotation_key(prefix: &str, container: &str) -> Option<String> {
    let name = format!("drift-{container}");
    (name.len() <= 63).then(|| format!("{prefix}/{name}"))
}

/// The running containers of `pods` that name their image by a tag (pure).
pub fn tagged(pods: &[Arc<WatchedPod>]) -> Vec<Tagged> {
    let mut out = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        if pod.phase() != Some("Running") {
            continue;
        }
        for c in &pod.spec.containers {
            let Ok(r) = sbomjob_contract::ImageRef::parse(&c.image) else {
                continue;
            };
            if let Some(tag) = r.tag
                && !r.repository.is_empty()
            {
                let digest = pod
                    .statuses()
                    .find(|s| s.name == c.name)
                    .and_then(|s| crate::image_id::ImageId::parse(&s.image_id).ok())
                    .map(|id| id.digest);
                out.push(Tagged {
                    pod: i,
                    container: c.name.to_string(),
                    image: c.image.to_string(),
                    repo: (r.registry, r.repository),
                    tag,
                    digest,
                });
            }
        }
    }
    out
}

/// The policy and tags of the repositories ImageSources name (their last good scan).
pub fn from_sources(
    sources: &[Arc<ImageSource>],
    allowed: &crate::sources::spec::AllowedRegistries,
) -> HashMap<Repo, (TagPolicy, Vec<String>)> {
    let mut out = HashMap::new();
    for s in sources {
        let Ok(valid) = s.spec.validate(allowed) else {
            continue;
        };
        let Some(status) = s.status.as_ref().filter(|st| st.last_scan_time.is_some()) else {
            continue;
        };
        for repo in &valid.repositories {
            let full = format!("{}/{repo}", valid.registry);
            let tags = status
                .images
                .iter()
                .filter(|i| i.repository == full)
                .map(|i| i.tag.clone())
                .collect();
            out.entry((valid.registry.clone(), repo.clone()))
                .or_insert_with(|| (valid.policy.clone(), tags));
        }
    }
    out
}

/// Each tagged container's drift: under its repository's source, else under the default policy
/// with the listed tags; `None` when the repository's tags are not known (pure).
pub fn verdicts(
    containers: &[Tagged],
    sources: &HashMap<Repo, (TagPolicy, Vec<String>)>,
    listed: &HashMap<Repo, Listed>,
) -> Vec<Option<Drift>> {
    let default = TagPolicy::new(&TagPolicySpec::default()).expect("the default policy is valid");
    containers
        .iter()
        .map(|c| {
            if let Some((policy, tags)) = sources.get(&c.repo) {
                return Some(drift::drift(&c.tag, tags.iter().map(String::as_str), policy));
            }
            match listed.get(&c.repo).map(|l| &l.tags) {
                Some(Ok(tags)) => Some(drift::drift(&c.tag, tags.iter().map(String::as_str), &default)),
                // A tag that is no version is unknown whatever the repository holds.
                _ if crate::tags::version_of(&c.tag).is_none() => Some(drift::drift(&c.tag, [], &default)),
                _ => None,
            }
        })
        .collect()
}

/// Compares the running tags of `pods` with their repositories and writes what changed.
pub async fn refresh(ctx: &Context, pods: &[Arc<WatchedPod>]) {
    let Some(interval) = ctx.settings.ops.drift_interval else {
        return;
    };
    let containers = tagged(pods);
    let sources = from_sources(&ctx.selected_sources(), &ctx.settings.ops.source_registries);
    let wanted: BTreeSet<&Repo> = containers
        .iter()
        .map(|c| &c.repo)
        .filter(|r| !sources.contains_key(*r))
        .collect();
    let listed = {
        let mut memory = ctx.drift_tags.lock().expect("lock");
        memory.retain(|r, _| wanted.contains(r));
        memory.clone()
    };
    let due: Vec<&Repo> = wanted
        .into_iter()
        .filter(|r| listed.get(*r).is_none_or(|l| l.at.elapsed() >= interval))
        .take(MAX_LISTINGS)
        .collect();
    let fresh = list(ctx, pods, &containers, &due).await;
    let listed = {
        let mut memory = ctx.drift_tags.lock().expect("lock");
        memory.extend(fresh);
        memory.clone()
    };
    let verdicts = verdicts(&containers, &sources, &listed);
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut changes: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
    let prefix = &ctx.settings.annotation_prefix;
    for (c, d) in containers.iter().zip(&verdicts) {
        let Some(d) = d else {
            *counts.entry("unknown").or_default() += 1;
            continue;
        };
        *counts.entry(d.status()).or_default() += 1;
        let Some(key) = annotation_key(prefix, &c.container) else {
            debug!(container = %c.container, "container name too long for a drift annotation");
            continue;
        };
        let value = d.to_string();
        if pods[c.pod].annotation(&key) != Some(value.as_str()) {
            changes.entry(c.pod).or_default().insert(key, value);
        }
    }
    ctx.metrics.drift(&counts.into_iter().collect::<Vec<_>>());
    if ctx.cache_ttl.is_some() {
        record(ctx, by_digest(&containers, &verdicts)).await;
    }
    if changes.is_empty() {
        return;
    }
    let patched = stream::iter(changes)
        .map(|(i, annotations)| {
            let pod = &pods[i];
            annotate::patch_pod(&ctx.client, pod.namespace(), pod.name(), annotations)
        })
        .buffer_unordered(CONCURRENCY)
        .filter(|o| std::future::ready(matches!(o, PatchOutcome::Patched)))
        .count()
        .await;
    info!(pods = patched, "drift annotations written");
}

/// Each digest's known drift, by the tags it runs under (sorted, at most [`MAX_DRIFT`]) (pure).
pub fn by_digest(containers: &[Tagged], verdicts: &[Option<Drift>]) -> BTreeMap<String, Vec<TagDrift>> {
    let mut out: BTreeMap<String, BTreeSet<TagDrift>> = BTreeMap::new();
    for (c, d) in containers.iter().zip(verdicts) {
        if let (Some(digest), Some(d)) = (&c.digest, d) {
            out.entry(digest.clone()).or_default().insert(TagDrift {
                image: c.image.clone(),
                status: d.status().into(),
                detail: d.to_string(),
            });
        }
    }
    out.into_iter()
        .map(|(d, set)| (d, set.into_iter().take(MAX_DRIFT).collect()))
        .collect()
}

/// Writes the drift of each digest whose record says otherwise (a merge patch of its status's
/// `drift` alone). A digest without a record of ours yet is skipped: its record is written when
/// it is processed, and the next cycle (which loads it) adds the drift.
async fn record(ctx: &Context, drift: BTreeMap<String, Vec<TagDrift>>) {
    let known = ctx.recorded_drift.lock().expect("lock").clone();
    let changed: Vec<(String, Vec<TagDrift>)> = drift
        .into_iter()
        // Only records this cycle loaded (or drift wrote): no request for a digest without one.
        .filter(|(d, v)| known.get(d).is_some_and(|k| k != v))
        .collect();
    if changed.is_empty() {
        return;
    }
    let api: Api<ImageRecord> = Api::all(ctx.client.clone());
    let params = PatchParams {
        field_manager: Some(crate::objects::FIELD_MANAGER.into()),
        ..Default::default()
    };
    let hash = &ctx.identity.settings_hash;
    let written: Vec<(String, Vec<TagDrift>)> = stream::iter(changed)
        .filter_map(|(digest, v)| std::future::ready(cache::name_for(&digest, hash).map(|n| (n, digest, v))))
        .map(|(name, digest, v)| {
            let (api, params) = (&api, &params);
            async move {
                let patch = Patch::Merge(serde_json::json!({ "status": { "drift": v } }));
                match api.patch_status(&name, params, &patch).await {
                    Ok(_) => Some((digest, v)),
                    Err(e) => {
                        debug!(record = %name, error = %e, "drift not written to the record");
                        None
                    }
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(std::future::ready)
        .collect()
        .await;
    if !written.is_empty() {
        info!(records = written.len(), "drift written to records");
        ctx.recorded_drift.lock().expect("lock").extend(written);
    }
}

/// Lists the tags of `due` repositories, each with the pull credential of the first pod that
/// runs it.
async fn list(
    ctx: &Context,
    pods: &[Arc<WatchedPod>],
    containers: &[Tagged],
    due: &[&Repo],
) -> HashMap<Repo, Listed> {
    if due.is_empty() {
        return HashMap::new();
    }
    let http = match crate::registry::http_client() {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "no HTTP client: drift not compared");
            return HashMap::new();
        }
    };
    // A work item per repository, as the credentials of a cycle are found for one.
    let items: Vec<WorkItem> = due
        .iter()
        .filter_map(|repo| {
            let c = containers.iter().find(|c| &c.repo == *repo)?;
            Some(WorkItem {
                digest: String::new(),
                image: format!("{}/{}:{}", repo.0, repo.1, c.tag),
                alternatives: Vec::new(),
                pods: Vec::new(),
                sources: vec![worklist::credential_sources(&pods[c.pod])],
                annotated: false,
            })
        })
        .collect();
    let (index, _) = plan::credential_index(ctx, &items).await;
    let insecure = &ctx.settings.ops.lookup.insecure;
    stream::iter(due.iter().zip(&items))
        .map(|(repo, item)| {
            let config = index.image_config(item);
            let auth = (!config.registry_user.is_empty() || !config.registry_password.is_empty())
                .then(|| (config.registry_user.clone(), config.registry_password.clone()));
            let plain = insecure.iter().any(|h| h.eq_ignore_ascii_case(&repo.0));
            let http = &http;
            async move {
                let r = Repository::new(http, &repo.0, &repo.1, auth, plain);
                let tags = match tokio::time::timeout(LIST_TIMEOUT, r.tags(MAX_TAGS)).await {
                    Ok(Ok((tags, _))) => Ok(tags),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer in {LIST_TIMEOUT:?}")),
                };
                if let Err(e) = &tags {
                    debug!(registry = %repo.0, repository = %repo.1, error = %e, "tags not listed; drift unknown");
                }
                ctx.health.beat();
                ((*repo).clone(), Listed { at: Instant::now(), tags })
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::SpecContainer;
    use crate::worklist::fixtures::{digest, pod, status};

    fn running(name: &str, images: &[(&str, &str)]) -> Arc<WatchedPod> {
        let mut p = pod(
            "ns",
            name,
            images
                .iter()
                .map(|(c, _)| status(c, &format!("reg.example/app@{}", digest(1))))
                .collect(),
        );
        p.spec.containers = images
            .iter()
            .map(|(c, i)| SpecContainer {
                name: (*c).into(),
                image: (*i).into(),
            })
            .collect();
        Arc::new(p)
    }

    fn listed(tags: &[&str]) -> Listed {
        Listed {
            at: Instant::now(),
            tags: Ok(tags.iter().map(|t| t.to_string()).collect()),
        }
    }

    #[test]
    fn tagged_containers_are_read_from_the_spec_not_the_status() {
        let pods = vec![running(
            "p",
            &[
                ("a", "reg.example/app:1.2.0"),
                ("b", "reg.example/app@sha256:00"),
                ("c", "nginx:1.25"),
            ],
        )];
        let got: Vec<(String, Repo, String)> = tagged(&pods)
            .into_iter()
            .map(|t| (t.container, t.repo, t.tag))
            .collect();
        assert_eq!(
            got,
            [
                ("a".into(), ("reg.example".into(), "app".into()), "1.2.0".into()),
                (
                    "c".into(),
                    ("docker.io".into(), "library/nginx".into()),
                    "1.25".into()
                ),
            ]
        );
    }

    #[test]
    fn drift_under_the_source_else_the_listing_and_unknown_without_tags() {
        let pods = vec![running(
            "p",
            &[
                ("a", "reg.example/app:1.2.0"),
                ("b", "reg.example/other:1.3.0"),
                ("c", "reg.example/gone:1.0.0"),
                ("d", "reg.example/gone:latest"),
            ],
        )];
        let containers = tagged(&pods);
        let listings: HashMap<Repo, Listed> = [
            (
                ("reg.example".into(), "other".into()),
                listed(&["1.2.0", "1.3.0", "2.0.0-rc.1"]),
            ),
            (
                ("reg.example".into(), "gone".into()),
                Listed {
                    at: Instant::now(),
                    tags: Err("404".into()),
                },
            ),
        ]
        .into();
        // The source admits only 1.2.x: 1.2.3 is the newest for it.
        let policy = TagPolicy::new(&TagPolicySpec {
            include: &["1\\.2\\..*".to_string()],
            ..Default::default()
        })
        .unwrap();
        let sources: HashMap<Repo, (TagPolicy, Vec<String>)> = [(
            ("reg.example".into(), "app".into()),
            (policy, vec!["1.2.3".into(), "1.2.0".into()]),
        )]
        .into();
        let got: Vec<Option<String>> = verdicts(&containers, &sources, &listings)
            .into_iter()
            .map(|d| d.map(|d| d.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                Some("behind patch, newest 1.2.3".into()),
                // The pre-release is not newer.
                Some("latest".into()),
                // Not listed: nothing known, nothing written.
                None,
                Some("unknown: the running tag is not a semantic version".into()),
            ]
        );
    }

    #[test]
    fn the_annotation_name_stays_valid() {
        assert_eq!(
            annotation_key("sbomjob.io", "app").as_deref(),
            Some("sbomjob.io/drift-app")
        );
        assert_eq!(
            annotation_key("p", &"x".repeat(57)).map(|k| k.len()),
            Some(2 + 63)
        );
        assert_eq!(annotation_key("p", &"x".repeat(58)), None);
    }
}
