//! Step 3a, provenance: before a digest is catalogued, what cosign attached to it in its
//! registry is read and checked against the TrustPolicies that cover its repository
//! ([`crate::provenance`]); the verdict goes into its record with what the Job found. Digests no
//! policy covers are not looked at (no request).

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, stream};
use kube::runtime::reflector::Store;
use tracing::{debug, info, warn};

use super::context::Context;
use crate::{
    cache::ProvenanceStatus,
    lookup,
    provenance::{
        self, find,
        policy::{self, TrustPolicy},
    },
    registry::Repository,
    replan::Unit,
};

/// Digests checked at once.
const CONCURRENCY: usize = 4;
/// One digest's reads, at most (a signature and an attestation manifest and their layers).
const TIMEOUT: Duration = Duration::from_secs(30);
/// Verdicts held for records not written yet, at most (cleared beyond: checked again).
const MAX_HELD: usize = 4096;

/// The TrustPolicies' store, when the CRD is installed.
pub type Policies = Store<TrustPolicy>;

/// Checks the units' digests that a policy covers and no verdict is held for yet.
pub async fn check(ctx: &Context, units: &[Unit]) {
    let Some(store) = &ctx.trust else {
        return;
    };
    let policies: Vec<Arc<TrustPolicy>> = store.state();
    if policies.is_empty() {
        return;
    }
    let policies: Vec<&TrustPolicy> = policies.iter().map(Arc::as_ref).collect();
    let held = ctx.provenance.lock().expect("lock").clone();
    let mut todo = Vec::new();
    for unit in units.iter().filter(|u| !held.contains_key(&u.digest)) {
        let Some(target) = lookup::target(unit, None) else {
            continue;
        };
        let repository = format!("{}/{}", target.registry, target.repository);
        let Some((keys, errors)) = policy::keys_for(&policies, &repository) else {
            continue;
        };
        for e in errors {
            warn!(%repository, error = %e, "trust policy key left out");
        }
        todo.push((target, keys));
    }
    if todo.is_empty() {
        return;
    }
    let http = match crate::registry::http_client() {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "no HTTP client: provenance not checked");
            return;
        }
    };
    let insecure = &ctx.settings.ops.lookup.insecure;
    let checked: Vec<(String, ProvenanceStatus)> = stream::iter(todo)
        .map(|(t, keys)| {
            let plain = insecure.iter().any(|h| h.eq_ignore_ascii_case(&t.registry));
            let http = &http;
            async move {
                let repo = Repository::new(http, &t.registry, &t.repository, t.auth.clone(), plain);
                let now = chrono::Utc::now();
                let status = match tokio::time::timeout(TIMEOUT, find::attached(&repo, &t.digest)).await {
                    Ok(Ok(attached)) => provenance::assess(&t.digest, &attached, &keys).status(now),
                    Ok(Err(e)) => provenance::unchecked(format!("{}/{}: {e}", t.registry, t.repository), now),
                    Err(_) => provenance::unchecked(format!("no answer in {TIMEOUT:?}"), now),
                };
                debug!(digest = %t.digest, signature = %status.signature, reason = %status.signature_reason, "provenance checked");
                ctx.health.beat();
                (t.digest.clone(), status)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    info!(images = checked.len(), "provenance checked");
    let mut held = ctx.provenance.lock().expect("lock");
    if held.len() + checked.len() > MAX_HELD {
        held.clear();
    }
    held.extend(checked);
}

/// The verdict for `digest`, taken: its record is being written.
pub fn take(ctx: &Context, digest: &str) -> Option<ProvenanceStatus> {
    ctx.provenance.lock().expect("lock").remove(digest)
}
