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

use crate::{image_id::ImageId, is_not_found, pod::CachedPod, worklist::annotation_key};

/// Patches in flight at once: enough to keep the API server busy, few enough not to flood it.
const CONCURRENCY: usize = 16;
const ATTEMPTS: u32 = 5;
pub const FIELD_MANAGER: &str = "sbomjob";

/// The annotations a pod still needs for the processed digests (empty: nothing to write).
pub fn annotations_for(pod: &CachedPod, prefix: &str, digests: &HashSet<&str>) -> BTreeMap<String, String> {
    pod.statuses()
        .filter_map(|s| {
            let id = ImageId::parse(&s.image_id).ok()?;
            let key = annotation_key(prefix, &s.name);
            (digests.contains(id.digest.as_str()) && pod.annotation(&key) != Some(id.raw.as_str()))
                .then_some((key, id.raw))
        })
        .collect()
}

/// What annotating did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// The pods annotated (the snapshot's own, shared) and the keys written, for their Events.
    pub patched: Vec<(Arc<CachedPod>, Vec<String>)>,
    /// Pods deleted since the snapshot.
    pub gone: usize,
    pub failed: usize,
}

/// Annotates every pod of the snapshot that runs one of the digests.
pub async fn annotate(
    client: &Client,
    pods: &[Arc<CachedPod>],
    prefix: &str,
    digests: &HashSet<&str>,
) -> Report {
    // Lazily: a patch is built only when one of the CONCURRENCY slots frees, so 10,000 pods
    // never hold 10,000 patches in memory at once.
    let work = pods.iter().filter_map(|pod| {
        let wanted = annotations_for(pod, prefix, digests);
        (!wanted.is_empty()).then_some(async move {
            let keys: Vec<String> = wanted.keys().cloned().collect();
            (
                patch_pod(client, pod.namespace(), pod.name(), wanted).await,
                pod,
                keys,
            )
        })
    });
    stream::iter(work)
        .buffer_unordered(CONCURRENCY)
        .fold(Report::default(), |mut report, (outcome, pod, keys)| {
            match outcome {
                Outcome::Patched => report.patched.push((Arc::clone(pod), keys)),
                Outcome::Gone => report.gone += 1,
                Outcome::Failed => report.failed += 1,
            }
            ready(report)
        })
        .await
}

enum Outcome {
    Patched,
    Gone,
    Failed,
}

async fn patch_pod(client: &Client, ns: &str, name: &str, annotations: BTreeMap<String, String>) -> Outcome {
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
                return Outcome::Patched;
            }
            Err(e) if is_not_found(&e) => {
                debug!(namespace = %ns, pod = %name, "pod is gone; nothing to annotate");
                return Outcome::Gone;
            }
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                debug!(namespace = %ns, pod = %name, error = %e, attempt, "annotating failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                warn!(namespace = %ns, pod = %name, error = %e, "could not annotate pod");
                return Outcome::Failed;
            }
        }
    }
    Outcome::Failed
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
