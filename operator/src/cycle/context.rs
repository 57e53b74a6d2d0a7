//! What every step of a cycle needs: the [`Context`], and the helpers on it that any step uses.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Client,
    runtime::{
        events::{Event, EventType, Recorder},
        reflector::Store,
    },
};
use tracing::warn;

use crate::{
    annotate,
    backoff::{self},
    cache::JobIdentity,
    metrics::Metrics,
    pod::WatchedPod,
    pod_store::PodStore,
    results::{self, Found},
    settings::Settings,
    trigger::NewDigests,
    worklist::{self},
};

/// What every step of a cycle needs.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    /// Where Jobs and Secrets live (`POD_NAMESPACE`).
    pub namespace: String,
    /// Pods matching the pod label selector, kept current by the pod watch.
    pub pods: PodStore,
    /// Namespaces matching the namespace label selector; `None` when there is no selector.
    pub namespaces: Option<Store<Namespace>>,
    /// ImageSources, kept current by a reflector; `None` when sources are off (no digest cache,
    /// or the CRD is not installed). Their digests are work like running images'.
    pub sources: Option<Store<crate::sources::spec::ImageSource>>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The job image and settings results depend on: what cache records are keyed by.
    pub identity: JobIdentity,
    /// The cache's TTL; `None` when it is off (disabled, or the CRD is not installed).
    pub cache_ttl: Option<Duration>,
    /// Told which digests a cycle saw, so only later ones trigger the next.
    pub new_digests: NewDigests,
    /// `reportingInstance` of the operator's Events: this replica's identity ([`crate::leader::identity`]).
    pub instance: String,
    /// Digests that failed alone, backing off ([`backoff`]).
    pub failures: backoff::Book,
    /// Annotations the API server refused for good.
    pub refused: annotate::Refused,
    /// The digest the job image last ran as (from a finished job pod's imageID): a re-pushed
    /// mutable tag makes earlier records another job image's.
    pub job_image_digest: Mutex<Option<String>>,
    /// Warnings given once per pod, by pod uid and what they were about: skipped containers
    /// (container + reason) and pull secrets whose credential is too large.
    pub skip_warned: Mutex<HashSet<(String, String)>>,
    /// What the jobs found, by digest (their result lines, or the records' status), for the
    /// metrics; digests that no longer run are forgotten.
    pub found: Mutex<HashMap<String, Found>>,
    /// Jobs (by uid) whose result lines the metrics counted: a Job finished again (its first
    /// finish could not annotate every pod) is not counted twice. Cleared past
    /// [`RESULTS_COUNTED_MAX`] entries (Jobs expire by TTL; a rare double count beats a leak).
    pub results_counted: Mutex<HashSet<String>>,
    /// The tags of each repository drift listed, and when ([`super::drift`]); repositories no
    /// container runs any more are forgotten.
    pub drift_tags: Mutex<HashMap<super::drift::Repo, super::drift::Listed>>,
    /// The TrustPolicies, kept current by a reflector; `None` without the CRD or the cache.
    pub trust: Option<super::provenance::Policies>,
    /// Provenance verdicts of digests whose records are not written yet ([`super::provenance`]).
    pub provenance: Mutex<HashMap<String, crate::cache::ProvenanceStatus>>,
    /// The drift each record of ours says, by digest (as last loaded or written): drift
    /// writes a record only when it changes.
    pub recorded_drift: Mutex<HashMap<String, Vec<crate::cache::TagDrift>>>,
    /// Told of the cycle's progress, for `/healthz` ([`crate::health`]).
    pub health: crate::health::Health,
}

/// See [`Context::results_counted`].
pub const RESULTS_COUNTED_MAX: usize = 4096;

impl Context {
    /// This release in the records it uses: `<namespace>/<release>`.
    pub fn release_key(&self) -> String {
        format!("{}/{}", self.namespace, self.settings.ops.release)
    }

    /// The identity of Jobs made now, with the job image's digest once a job pod showed it.
    pub fn current_identity(&self) -> JobIdentity {
        let digest = self.job_image_digest.lock().expect("lock").clone();
        self.identity.clone().with_image_digest(digest)
    }

    /// Remembers the job image's digest a finished Job ran, when it ran today's job image.
    pub fn learn_job_image(&self, ran: &JobIdentity) {
        if ran.image == self.identity.image
            && let Some(d) = &ran.image_digest
        {
            *self.job_image_digest.lock().expect("lock") = Some(d.clone());
        }
    }

    /// The pods cycles work on: the pod store, less the pods of namespaces the namespace
    /// selector does not match. Their images are neither processed, annotated nor remembered.
    pub fn snapshot(&self) -> Vec<Arc<WatchedPod>> {
        let mut pods = self.pods.state();
        if self.namespaces.is_some() {
            pods.retain(|p| worklist::selected(self.namespaces.as_ref(), p.namespace()));
        }
        pods
    }
}

impl Context {
    /// The work items of the ImageSources' last scans ([`crate::sources::feed`]); none when
    /// sources are off.
    pub fn source_items(&self) -> Vec<worklist::WorkItem> {
        crate::sources::feed::items(&self.selected_sources(), &self.settings.ops.source_registries)
    }

    /// The ImageSources of the namespaces the namespace selector matches; none when sources
    /// are off.
    pub fn selected_sources(&self) -> Vec<Arc<crate::sources::spec::ImageSource>> {
        let Some(store) = &self.sources else {
            return Vec::new();
        };
        let mut sources = store.state();
        sources.retain(|s| {
            worklist::selected(
                self.namespaces.as_ref(),
                s.metadata.namespace.as_deref().unwrap_or_default(),
            )
        });
        sources
    }

    /// Sets the metrics of what was found over the digests running now.
    pub fn report_found(&self, pods: &[Arc<WatchedPod>]) {
        let running = worklist::running_digests(pods);
        let totals = results::totals(
            &mut self.found.lock().expect("lock"),
            running.iter().map(String::as_str),
        );
        self.metrics.found(&totals);
    }

    /// Publishes an Event; a failure to do so is logged, never fatal.
    pub async fn event(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: "Catalogue".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            warn!(reason, error = %e, "could not publish event");
        }
    }
}
