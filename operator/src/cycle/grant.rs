//! Step 5, grant: what a cycle tells the cluster. Digests that are done (a Job completed, or the
//! digest cache covers them) get their annotations, Events, records and metrics here, in one
//! place; failed images get their back-off and Warnings.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Pod, Secret},
};
use kube::{
    Api, Resource,
    api::{DeleteParams, Patch, PatchParams},
    runtime::events::EventType,
};
use sbomjob_contract::result::ImageReport;
use serde_json::json;
use tracing::{info, warn};

use crate::{
    Result, ResultExt as _, annotate,
    backoff::{self},
    cache::{self, JobIdentity},
    is_not_found, lookup,
    metrics::JobResult,
    objects::{STATE_DONE, STATE_LABEL},
    pod::WatchedPod,
    pod_events,
    replan::{Evidence, Unit},
    results::{self, Found},
    worklist::{self, CredentialIndex, WorkItem},
};

use super::{
    context::Context,
    follow,
    job_state::{self, Finished, JobOutcome},
};

/// Cache records built and written at a time after a Job ([`remember`]).
const RECORDS_AT_ONCE: usize = 256;

/// The reason of the Warning on a pod whose annotation the API server refused for good.
pub const ANNOTATION_REFUSED: &str = "AnnotationRefused";

/// The reason of the Warning on a pod whose pull secret's credential for its image is larger
/// than `SBOM_MAX_CREDENTIAL_SIZE`.
pub const CREDENTIAL_TOO_LARGE: &str = "CredentialTooLarge";

/// The reason of the Warning on a pod one of whose pull secrets cannot be used.
pub const PULL_SECRET_UNUSABLE: &str = "PullSecretUnusable";

/// The reason of the Warning on a pod whose container's imageID cannot be processed.
pub const IMAGE_SKIPPED: &str = "ImageSkipped";

/// The reason of the Warning on the pods of an image that failed alone.
pub const IMAGE_FAILED: &str = "ImageFailed";

/// Where the catalogue of digests that are done comes from, as the pods' Events and the
/// Warnings about refused annotations name it.
pub struct Source {
    pub events: String,
    pub refused: String,
}

/// These digests are done (a Job completed them, or the digest cache covers them): every pod
/// of `pods` running them is annotated, then gets its `Processed` Event (after every patch, so
/// Events never delay an annotation), and a pod whose patch the API server refused for good a
/// Warning. The one place that grants; the caller adds what is particular to its source.
pub async fn done(
    ctx: &Context,
    pods: &[Arc<WatchedPod>],
    digests: &HashSet<&str>,
    source: &Source,
) -> annotate::Patched {
    let prefix = &ctx.settings.annotation_prefix;
    let report = annotate::annotate(&ctx.client, pods, prefix, digests, &ctx.refused).await;
    ctx.metrics.annotated(report.patched.len());
    if ctx.settings.pod_events.processed() {
        pod_events::processed(&ctx.client, &ctx.instance, &report.patched, &source.events).await;
    }
    ctx.refused_annotations(&report.refused, &source.refused).await;
    report
}

/// Bookkeeping of an ended Job: Secret deleted at once, pods annotated on success, Events on
/// the Job and its pods, records written, then the Job marked done. Safe to repeat. Pods whose
/// annotation the API server refuses for good get one Warning and do not keep the Job open.
pub async fn finish(ctx: &Context, job: &Job) -> Result<Finished> {
    let job_name = job_state::name(job);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    match secrets.delete(&job_name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e).context(|| format!("deleting Secret {}/{job_name}", ctx.namespace)),
    }
    let outcome = job_state::outcome(job);
    if outcome == JobOutcome::Running {
        return Ok(Finished {
            outcome,
            evidence: Evidence::ExitOnly,
            detail: String::new(),
        });
    }
    let pod = follow::job_pod(ctx, &job_name).await;
    let (mut evidence, detail, image_digest) = job_state::read_pod(pod.as_ref());
    if matches!(&outcome, JobOutcome::Failed { reason, .. } if reason == job_state::CONFIG_GONE) {
        evidence = Evidence::ConfigGone;
    }
    let identity = job_state::identity(job, &ctx.identity, image_digest);
    ctx.learn_job_image(&identity);
    let reference = job.object_ref(&());
    match &outcome {
        JobOutcome::Complete => {
            let digests = job_state::digests(job);
            let pods = ctx.snapshot();
            let source = Source {
                events: format!("image(s) catalogued by Job {}/{job_name}", ctx.namespace),
                refused: format!("Job {}/{job_name}", ctx.namespace),
            };
            let report = done(ctx, &pods, &digests, &source).await;
            // After the annotations: reading a long log never delays them.
            let found = read_results(ctx, job, pod.as_ref()).await;
            let patched = report.patched.len();
            ctx.metrics.job_done(JobResult::Complete, job_state::age(job));
            ctx.metrics.images(digests.len());
            for d in &digests {
                ctx.failures.clear(d);
            }
            if let Some(ttl) = ctx.cache_ttl {
                let now = chrono::Utc::now();
                let status_of = |d: &str| {
                    let report = found.get(d)?;
                    Some(cache::ImageRecordStatus::from_report(report, &job_name, now))
                };
                remember(ctx, &pods, &digests, &job_name, &identity, ttl, &status_of).await;
            }
            info!(job = %job_name, images = digests.len(), patched, gone = report.gone, failed = report.failed, refused = report.refused.len(), "Job complete; pods annotated");
            ctx.event(
                &reference,
                EventType::Normal,
                pod_events::PROCESSED,
                format!("{} images processed, {patched} pods annotated", digests.len()),
            )
            .await;
            if report.failed > 0 {
                // Not marked done: the next finish (or cycle) annotates what is missing.
                return Ok(Finished {
                    outcome,
                    evidence,
                    detail,
                });
            }
        }
        JobOutcome::Failed { reason, message } => {
            warn!(job = %job_name, %reason, %message, %detail, "Job failed; nothing annotated");
            ctx.metrics.job_done(JobResult::Failed, job_state::age(job));
            ctx.event(
                &reference,
                EventType::Warning,
                reason,
                format!("Job failed, no pod annotated: {message} ({detail})"),
            )
            .await;
        }
        JobOutcome::Running => unreachable!("returned above"),
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let patch = Patch::Merge(json!({ "metadata": { "labels": { STATE_LABEL: STATE_DONE } } }));
    match jobs.patch(&job_name, &PatchParams::default(), &patch).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e).context(|| format!("marking Job {}/{job_name} done", ctx.namespace)),
    }
    Ok(Finished {
        outcome,
        evidence,
        detail,
    })
}

/// What a Complete Job reported per digest ([`results`]), read from its pod's log; the
/// metrics learn it at once. Nothing when the pod is gone.
async fn read_results(ctx: &Context, job: &Job, pod: Option<&Pod>) -> HashMap<String, ImageReport> {
    let Some(pod) = pod else {
        return HashMap::new();
    };
    let elements = job_state::elements(job).into_iter().map(String::from).collect();
    let (reports, rejected) = results::read(&ctx.client, &ctx.namespace, pod, elements).await;
    let found = results::by_digest(reports);
    let first_time = {
        let mut counted = ctx.results_counted.lock().expect("lock");
        if counted.len() >= super::context::RESULTS_COUNTED_MAX {
            counted.clear();
        }
        counted.insert(job.metadata.uid.clone().unwrap_or_else(|| job_state::name(job)))
    };
    if first_time {
        ctx.metrics.result_lines(found.len(), &rejected);
    }
    if first_time && rejected.total() > 0 {
        warn!(
            job = %job_state::name(job),
            malformed = rejected.malformed,
            too_long = rejected.too_long,
            foreign = rejected.foreign,
            first = rejected.first.as_deref().unwrap_or_default(),
            "result lines of the job container ignored"
        );
    }
    let mut memory = ctx.found.lock().expect("lock");
    for (digest, report) in &found {
        memory.insert(digest.clone(), results::Found::of_report(report));
    }
    found
}

/// Writes a cache record per processed digest, with the repositories the snapshot runs it
/// under, and its status from the Job's result line when it gave one. A failure is logged: the
/// pods are annotated already, only the cache misses out.
pub async fn remember(
    ctx: &Context,
    pods: &[Arc<WatchedPod>],
    digests: &HashSet<&str>,
    job_name: &str,
    identity: &JobIdentity,
    ttl: Duration,
    status_of: &dyn Fn(&str) -> Option<cache::ImageRecordStatus>,
) {
    let mut repositories: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in pods.iter().flat_map(|p| worklist::container_images(p).0) {
        if digests.contains(c.id.digest.as_str())
            && let Some(repo) = cache::repository_of(&c.id.reference)
        {
            repositories.entry(c.id.digest.clone()).or_default().insert(repo);
        }
    }
    // Where the ImageSources found them (a digest no pod runs yet has only these).
    for (digest, repos) in crate::sources::feed::repositories(&ctx.source_items()) {
        if digests.contains(digest.as_str()) {
            repositories.entry(digest).or_default().extend(repos);
        }
    }
    let now = chrono::Utc::now();
    let mut digests: Vec<&str> = digests.iter().copied().collect();
    digests.sort_unstable();
    // A few hundred records at a time: an ImageRecord is about 1 KB before its strings, and a
    // Job of 2,000 digests built them all at once (measured: 4.8 MB of the peak at 10,000 pods).
    for chunk in digests.chunks(RECORDS_AT_ONCE) {
        let records: Vec<_> = chunk
            .iter()
            .filter_map(|d| {
                let repos = repositories.remove(*d).unwrap_or_default().into_iter().collect();
                cache::record_for(
                    d,
                    repos,
                    identity,
                    job_name,
                    cache::RecordResult::Succeeded,
                    now,
                    ttl,
                )
            })
            .collect();
        // What the Job found, with where the image came from when a trust policy covers it.
        let statuses: Vec<_> = records
            .iter()
            .filter_map(|r| {
                let name = r.metadata.name.clone()?;
                let provenance = super::provenance::take(ctx, &r.spec.digest);
                let status = match (status_of(&r.spec.digest), provenance) {
                    (Some(s), provenance) => cache::ImageRecordStatus { provenance, ..s },
                    (None, Some(p)) => cache::ImageRecordStatus {
                        provenance: Some(p),
                        ..Default::default()
                    },
                    (None, None) => return None,
                };
                Some((name, status))
            })
            .collect();
        let updates = records.into_iter().filter_map(cache::Update::processed).collect();
        if let Err(e) = cache::save(&ctx.client, &ctx.release_key(), updates).await {
            warn!(job = %job_name, error = %e, "could not write cache records");
        }
        if !statuses.is_empty()
            && let Err(e) = cache::save_status(&ctx.client, statuses).await
        {
            warn!(job = %job_name, error = %e, "could not write what the Job found to its records");
        }
    }
}

/// An image that failed alone with every candidate: recorded with its next attempt (in its
/// ImageRecord when the cache is on), and a Warning on each pod still waiting for it.
/// Grants the digests whose SBOM the registry holds ([`crate::lookup`]): their pods are
/// annotated and, with the cache on, their records written from the artifacts (no Job made them:
/// their `job` is empty, their condition says `FoundInRegistry`).
pub async fn found_in_registry(ctx: &Context, pods: &[Arc<WatchedPod>], hits: &[lookup::Hit]) {
    let digests: HashSet<&str> = hits.iter().map(|h| h.digest.as_str()).collect();
    let source = Source {
        events: "image(s) catalogued earlier, SBOM found in the registry (no Job)".into(),
        refused: "the registry lookup".into(),
    };
    let report = done(ctx, pods, &digests, &source).await;
    let now = chrono::Utc::now();
    {
        let mut found = ctx.found.lock().expect("lock");
        for hit in hits {
            found.insert(hit.digest.clone(), Found::of_report(&hit.report()));
        }
    }
    for d in &digests {
        ctx.failures.clear(d);
    }
    if let Some(ttl) = ctx.cache_ttl {
        let by_digest: HashMap<&str, &lookup::Hit> = hits.iter().map(|h| (h.digest.as_str(), h)).collect();
        let status_of = |d: &str| {
            let hit = by_digest.get(d)?;
            let mut status = cache::ImageRecordStatus::from_report(&hit.report(), "", now);
            status.job = None;
            if let Some(c) = status.conditions.first_mut() {
                c.reason = "FoundInRegistry".into();
                let artifact = status
                    .artifacts
                    .first()
                    .map(|a| a.reference.as_str())
                    .unwrap_or_default();
                c.message = if c.message.is_empty() {
                    format!("SBOM {artifact}")
                } else {
                    format!("SBOM {artifact}; {}", c.message)
                };
            }
            Some(status)
        };
        remember(ctx, pods, &digests, "", &ctx.current_identity(), ttl, &status_of).await;
    }
    info!(
        images = hits.len(),
        patched = report.patched.len(),
        "SBOMs found in the registry: pods annotated without a Job"
    );
}

pub async fn back_off(ctx: &Context, unit: &Unit, job_name: &str, why: &str) {
    let ops = &ctx.settings.ops;
    let failure = backoff::failed_again(
        ctx.failures.get(&unit.digest).as_ref(),
        why,
        &ctx.identity.settings_hash,
        chrono::Utc::now(),
        ops.backoff_initial,
        ops.backoff_max,
    );
    ctx.failures.insert(&unit.digest, failure.clone());
    ctx.metrics.backed_off();
    warn!(digest = %unit.digest, image = %unit.config().image, job = %job_name, attempts = failure.attempts, next_attempt = %failure.next_attempt, reason = %why, "image failed alone; backing off");
    if let Some(ttl) = ctx.cache_ttl {
        let repos = unit
            .candidates
            .iter()
            .filter_map(|c| cache::repository_of(&c.image))
            .collect();
        let identity = ctx.current_identity();
        let record = cache::failure_record(&unit.digest, repos, &identity, job_name, &failure, ttl);
        let update = record.and_then(cache::Update::processed);
        if let Err(e) = cache::save(&ctx.client, &ctx.release_key(), update.into_iter().collect()).await {
            warn!(digest = %unit.digest, error = %e, "could not record the failure; it is kept in memory");
        }
    }
    if ctx.settings.pod_events.failures() {
        let note = format!(
            "image {} failed alone in Job {}/{job_name} ({why}); attempt {}, next attempt at {}; not annotated",
            unit.config().image,
            ctx.namespace,
            failure.attempts,
            failure.next_attempt.to_rfc3339(),
        );
        let digests: HashSet<&str> = [unit.digest.as_str()].into();
        ctx.warn_waiting(&digests, IMAGE_FAILED, &note).await;
    }
}

/// Images of a failed Job left for the next cycle (its tool never ran, or the re-planning
/// budget is spent): a Warning with the Job's reason on each pod still waiting for them.
pub async fn waits(ctx: &Context, job_name: &str, units: &[Unit], reason: &str, why: &str) {
    if !ctx.settings.pod_events.failures() {
        return;
    }
    let note = format!(
        "Job {}/{job_name} failed ({why}); not annotated, retried next cycle",
        ctx.namespace
    );
    let digests: HashSet<&str> = units.iter().map(|u| u.digest.as_str()).collect();
    ctx.warn_waiting(&digests, reason, &note).await;
}

impl Context {
    /// One Warning on each pod whose annotation was refused for good (they are not asked for
    /// again, see [`annotate::Refused`]).
    pub async fn refused_annotations(&self, refused: &[annotate::RefusedPatch], source: &str) {
        if refused.is_empty() {
            return;
        }
        self.metrics.refused(refused.len());
        if !self.settings.pod_events.failures() {
            return;
        }
        let events = refused.iter().map(|(pod, asked, why)| {
            let keys: Vec<&str> = asked.iter().map(|(k, _)| k.as_str()).collect();
            let note = format!(
                "catalogued by {source}, but the API server refused the annotation(s) {}: {why}; not retried while the pod runs this image",
                keys.join(", ")
            );
            (pod.as_ref(), note)
        });
        pod_events::publish(
            &self.client,
            &self.instance,
            EventType::Warning,
            ANNOTATION_REFUSED,
            events,
        )
        .await;
    }

    /// One Warning Event per pod, container and reason skipped (a Warning each cycle would
    /// bury the pod's other Events).
    pub async fn warn_skipped(&self, pods: &[Arc<WatchedPod>], skipped: Vec<worklist::Skipped>) {
        if skipped.is_empty() && self.skip_warned.lock().expect("lock").is_empty() {
            return;
        }
        if !self.settings.pod_events.failures() {
            return;
        }
        let by_name: std::collections::HashMap<(&str, &str), &Arc<WatchedPod>> =
            pods.iter().map(|p| ((p.namespace(), p.name()), p)).collect();
        let events = {
            let mut warned = self.skip_warned.lock().expect("lock");
            let uids: HashSet<&str> = pods.iter().filter_map(|p| p.metadata.uid.as_deref()).collect();
            warned.retain(|(uid, _)| uids.contains(uid.as_str()));
            let mut events = Vec::new();
            for s in &skipped {
                let Some(&pod) = by_name.get(&(s.namespace.as_str(), s.pod.as_str())) else {
                    continue;
                };
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if warned.insert((uid, format!("{}\n{}", s.container, s.reason))) {
                    let note = format!("container {} skipped, not catalogued: {}", s.container, s.reason);
                    events.push((pod.as_ref(), note));
                }
            }
            events
        };
        if !events.is_empty() {
            pod_events::publish(
                &self.client,
                &self.instance,
                EventType::Warning,
                IMAGE_SKIPPED,
                events,
            )
            .await;
        }
    }

    /// Pull secrets whose credential was left out of the configs for its size: logged each cycle
    /// (one line per secret), and one Warning on each pod that uses them, once per pod.
    pub async fn warn_too_large(
        &self,
        pods: &[Arc<WatchedPod>],
        index: &CredentialIndex,
        found: &[(&WorkItem, BTreeSet<worklist::SecretKey>)],
    ) {
        let max = index.max_credential_size;
        let mut secrets: std::collections::BTreeMap<&worklist::SecretKey, usize> = Default::default();
        for secret in found.iter().flat_map(|(_, s)| s) {
            *secrets.entry(secret).or_default() += 1;
        }
        for ((namespace, secret), images) in &secrets {
            warn!(%namespace, %secret, images, max_credential_size = max, "pull secret {namespace}/{secret} has a credential larger than SBOM_MAX_CREDENTIAL_SIZE; not handed to the job");
        }
        if secrets.is_empty() || !self.settings.pod_events.failures() {
            return;
        }
        let by_name: std::collections::HashMap<(&str, &str), &Arc<WatchedPod>> =
            pods.iter().map(|p| ((p.namespace(), p.name()), p)).collect();
        let events = {
            let mut warned = self.skip_warned.lock().expect("lock");
            let mut events = Vec::new();
            for (item, large) in found {
                let names: BTreeSet<(&str, &str)> = item
                    .pods
                    .iter()
                    .map(|p| (p.namespace.as_str(), p.pod.as_str()))
                    .collect();
                for pod in names.into_iter().filter_map(|n| by_name.get(&n)) {
                    let sources = worklist::credential_sources(pod);
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    for secret in large.iter().filter(|s| index.uses(&sources, s)) {
                        let about = format!("credential\n{}/{}", secret.0, secret.1);
                        if warned.insert((uid.clone(), about)) {
                            events.push((pod.as_ref(), worklist::too_large_note(secret, max)));
                        }
                    }
                }
            }
            events
        };
        pod_events::publish(
            &self.client,
            &self.instance,
            EventType::Warning,
            CREDENTIAL_TOO_LARGE,
            events,
        )
        .await;
    }

    /// A Warning `PullSecretUnusable` on each pod, once, that names a pull secret (itself or
    /// through its service account) that could not be used for its images: the images are
    /// processed without it, and a private one then fails, so the pod's owner is told why.
    pub async fn warn_unusable(
        &self,
        pods: &[Arc<WatchedPod>],
        items: &[WorkItem],
        index: &CredentialIndex,
        unusable: &super::plan::Unusable,
    ) {
        if unusable.is_empty() || !self.settings.pod_events.failures() {
            return;
        }
        let by_name: std::collections::HashMap<(&str, &str), &Arc<WatchedPod>> =
            pods.iter().map(|p| ((p.namespace(), p.name()), p)).collect();
        let names: BTreeSet<(&str, &str)> = items
            .iter()
            .flat_map(|i| &i.pods)
            .map(|p| (p.namespace.as_str(), p.pod.as_str()))
            .collect();
        let events = {
            let mut warned = self.skip_warned.lock().expect("lock");
            let mut events = Vec::new();
            for pod in names.into_iter().filter_map(|n| by_name.get(&n)) {
                let sources = worklist::credential_sources(pod);
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                for (secret, why) in unusable.iter().filter(|(s, _)| index.uses(&sources, s)) {
                    let about = format!("unusable\n{}/{}", secret.0, secret.1);
                    if warned.insert((uid.clone(), about)) {
                        let note = format!(
                            "pull secret {}/{} is not used for this pod's images: {why}; they are pulled without it",
                            secret.0, secret.1
                        );
                        events.push((pod.as_ref(), note));
                    }
                }
            }
            events
        };
        pod_events::publish(
            &self.client,
            &self.instance,
            EventType::Warning,
            PULL_SECRET_UNUSABLE,
            events,
        )
        .await;
    }

    /// A Warning on each pod that still waits for one of the digests (none is annotated).
    pub async fn warn_waiting(&self, digests: &HashSet<&str>, reason: &str, note: &str) {
        let prefix = &self.settings.annotation_prefix;
        let pods = self.snapshot();
        let waiting = pods
            .iter()
            .filter(|p| !annotate::annotations_for(p, prefix, digests).is_empty())
            .map(|p| (p.as_ref(), note.to_string()));
        pod_events::publish(&self.client, &self.instance, EventType::Warning, reason, waiting).await;
    }
}
