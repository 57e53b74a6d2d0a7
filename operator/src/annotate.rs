//! Pod annotations after a successful Job: `<prefix>/<container>: <imageID>`.
//!
//! Only containers whose digest the Job processed are annotated, with the imageID they run; a
//! container re-created with another image since then keeps no stale mark, because its imageID
//! no longer matches (the next cycle processes it). Writes are merge patches of the annotations
//! alone, so they never conflict with the kubelet's status updates.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::{StreamExt, future::ready, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tracing::{debug, warn};

use crate::{
    image_id::ImageId,
    is_not_found,
    objects::{FIELD_MANAGER, annotation_key},
    pod::WatchedPod,
};

/// Patches in flight at once: enough to keep the API server busy, few enough not to flood it.
const CONCURRENCY: usize = 16;
const ATTEMPTS: u32 = 5;

/// The annotations a pod still needs for the processed digests (empty: nothing to write).
pub fn annotations_for(pod: &WatchedPod, prefix: &str, digests: &HashSet<&str>) -> BTreeMap<String, String> {
    pod.statuses()
        .filter_map(|s| {
            let id = ImageId::parse(&s.image_id).ok()?;
            let key = annotation_key(prefix, &s.name);
            (digests.contains(id.digest.as_str()) && pod.annotation(&key) != Some(id.raw.as_str()))
                .then_some((key, id.raw))
        })
        .collect()
}

/// Annotations the API server refused for good, by pod uid, key and value: not asked for again
/// (no Job, patch or Event repeats every cycle) while the pod runs that image. Held in memory:
/// after a restart one more attempt is made, and refused once more.
#[derive(Debug, Default)]
pub struct Refused(std::sync::Mutex<HashSet<(String, String, String)>>);

impl Refused {
    pub fn contains(&self, pod: &WatchedPod, key: &str, value: &str) -> bool {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.0
            .lock()
            .expect("lock")
            .contains(&(uid, key.to_string(), value.to_string()))
    }

    /// Remembers the annotations a refused patch asked for.
    pub fn insert(&self, pod: &WatchedPod, wanted: &[(String, String)]) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut set = self.0.lock().expect("lock");
        for (k, v) in wanted {
            set.insert((uid.clone(), k.clone(), v.clone()));
        }
    }

    /// Forgets the pods that are gone.
    pub fn retain_pods(&self, pods: &[Arc<WatchedPod>]) {
        let uids: HashSet<&str> = pods.iter().filter_map(|p| p.metadata.uid.as_deref()).collect();
        self.0
            .lock()
            .expect("lock")
            .retain(|(uid, _, _)| uids.contains(uid.as_str()));
    }
}

/// What annotating did.
#[derive(Debug, Default, Clone)]
pub struct Patched {
    /// The pods annotated (the snapshot's own, shared) and the keys written, for their Events.
    pub patched: Vec<(Arc<WatchedPod>, Vec<String>)>,
    /// Pods deleted since the snapshot.
    pub gone: usize,
    /// Patches that failed for now (throttling, server errors, lost connections): worth
    /// another finish.
    pub failed: usize,
    /// Patches the API server refused for good (422: the annotations would exceed 256 KiB; 403:
    /// an admission policy), with the keys asked for and the server's message: retrying
    /// changes nothing.
    pub refused: Vec<RefusedPatch>,
}

/// A pod, the annotations (key, value) a refused patch asked for, and the server's message.
pub type RefusedPatch = (Arc<WatchedPod>, Vec<(String, String)>, String);

/// Annotates every pod of the snapshot that runs one of the digests, except for annotations
/// refused for good before; newly refused ones are added to `refused`.
pub async fn annotate(
    client: &Client,
    pods: &[Arc<WatchedPod>],
    prefix: &str,
    digests: &HashSet<&str>,
    refused: &Refused,
) -> Patched {
    // Lazily: a patch is built only when one of the CONCURRENCY slots frees, so 10,000 pods
    // never hold 10,000 patches in memory at once.
    let work = pods.iter().filter_map(|pod| {
        let mut wanted = annotations_for(pod, prefix, digests);
        wanted.retain(|k, v| !refused.contains(pod, k, v));
        (!wanted.is_empty()).then_some(async move {
            let asked: Vec<(String, String)> = wanted.clone().into_iter().collect();
            (
                patch_pod(client, pod.namespace(), pod.name(), wanted).await,
                pod,
                asked,
            )
        })
    });
    stream::iter(work)
        .buffer_unordered(CONCURRENCY)
        .fold(Patched::default(), |mut report, (outcome, pod, asked)| {
            match outcome {
                PatchOutcome::Patched => {
                    let keys = asked.into_iter().map(|(k, _)| k).collect();
                    report.patched.push((Arc::clone(pod), keys));
                }
                PatchOutcome::Gone => report.gone += 1,
                PatchOutcome::Failed => report.failed += 1,
                PatchOutcome::Refused(why) => {
                    refused.insert(pod, &asked);
                    report.refused.push((Arc::clone(pod), asked, why));
                }
            }
            ready(report)
        })
        .await
}

pub(crate) enum PatchOutcome {
    Patched,
    Gone,
    Failed,
    Refused(String),
}

pub(crate) async fn patch_pod(
    client: &Client,
    ns: &str,
    name: &str,
    annotations: BTreeMap<String, String>,
) -> PatchOutcome {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let patch = Patch::Merge(json!({ "metadata": { "annotations": annotations } }));
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=ATTEMPTS {
        // The metadata endpoint answers with metadata only: less for the API server to encode and
        // for us to decode than the whole Pod, for each of thousands of patches.
        match api.patch_metadata(name, &params, &patch).await {
            Ok(_) => {
                debug!(namespace = %ns, pod = %name, "annotated");
                return PatchOutcome::Patched;
            }
            Err(e) if is_not_found(&e) => {
                debug!(namespace = %ns, pod = %name, "pod is gone; nothing to annotate");
                return PatchOutcome::Gone;
            }
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                debug!(namespace = %ns, pod = %name, error = %e, attempt, "annotating failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) if is_transient(&e) => {
                warn!(namespace = %ns, pod = %name, error = %e, "could not annotate pod");
                return PatchOutcome::Failed;
            }
            Err(e) => {
                warn!(namespace = %ns, pod = %name, error = %e, "the API server refused the pod's annotations");
                return PatchOutcome::Refused(refusal(&e));
            }
        }
    }
    PatchOutcome::Failed
}

/// What a refusal says: the status code and the server's message (never our request body).
fn refusal(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

/// Conflicts, throttling, server errors and broken connections are worth another try.
pub fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.is_conflict() || s.code == 429 || s.code >= 500,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worklist::fixtures::{annotated, digest, pod, status};

    #[test]
    fn only_processed_digests_and_only_when_missing_or_different() {
        let done = format!("r.io/a@{}", digest(1));
        let processed = format!("docker-pullable://r.io/b@{}", digest(2));
        let other = format!("r.io/c@{}", digest(3));
        let p = annotated(
            pod(
                "ns",
                "p",
                vec![
                    status("a", &done),
                    status("b", &processed),
                    status("c", &other),
                    status("d", ""),
                ],
            ),
            "sbomjob.io/a",
            &done,
        );
        let d1 = digest(1);
        let d2 = digest(2);
        let digests: HashSet<&str> = [d1.as_str(), d2.as_str()].into();
        let wanted = annotations_for(&p, "sbomjob.io", &digests);
        // Raw imageID, scheme included, as sbom-operator writes it.
        assert_eq!(
            wanted,
            BTreeMap::from([("sbomjob.io/b".to_string(), processed.clone())])
        );
        let custom = annotations_for(&p, "ckotzbauer.sbom-operator.io", &digests);
        assert_eq!(custom.len(), 2);
    }

    #[test]
    fn transient_errors() {
        let api = |code: u16, reason: &str| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                reason: reason.into(),
                ..Default::default()
            }))
        };
        assert!(is_transient(&api(409, "Conflict")));
        assert!(is_transient(&api(503, "ServiceUnavailable")));
        assert!(!is_transient(&api(403, "Forbidden")));
        assert!(!is_transient(&api(422, "Invalid")));
    }
}
