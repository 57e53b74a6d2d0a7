//! The life of a Job: launch (the Job suspended, its Secret owned by it, then the resume),
//! follow its conditions by a watch, and finish it (delete the Secret, annotate on success, mark
//! it done). Finishing is idempotent, so a restarted operator can finish Jobs that ended while
//! it was down, and a launch cut short is settled at adoption.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Pod, Secret},
};
use kube::{
    Api, Resource,
    api::{DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams},
    runtime::{
        events::{Event, EventType},
        wait::await_condition,
    },
};
use serde_json::json;
use tracing::{info, warn};

use crate::{
    Context as _, Result, annotate,
    cache::{self, JobIdentity},
    cycle::Context,
    image_id::ImageId,
    is_not_found,
    metrics::JobResult,
    objects::{
        self, CREATED_BY_ANNOTATION, DIGESTS_ANNOTATION, JobPlan, SETTINGS_HASH_ANNOTATION, STATE_DONE,
        STATE_LABEL,
    },
    pod::CachedPod,
    pod_events,
    replan::{Evidence, JobReport},
    worklist,
};

/// The label the job controller puts on a Job's pods.
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// How often a running Job's config Secret is checked for.
const CONFIG_CHECK: Duration = Duration::from_secs(10);
/// The reason of a Job ended because its config Secret was gone.
pub const CONFIG_GONE: &str = "ConfigSecretGone";

/// Where a Job stands, from its conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Running,
    Complete,
    Failed { reason: String, message: String },
}

/// Reads the terminal conditions the job controller sets: `Complete`, or `Failed` with a reason
/// such as `DeadlineExceeded` or `BackoffLimitExceeded`. A Job whose pod never started still gets
/// `Failed`/`DeadlineExceeded` at its deadline.
pub fn outcome(job: &Job) -> Outcome {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    for c in conditions.into_iter().flatten() {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" => return Outcome::Complete,
            "Failed" => {
                return Outcome::Failed {
                    reason: c.reason.clone().unwrap_or_else(|| "Failed".into()),
                    message: c.message.clone().unwrap_or_default(),
                };
            }
            _ => {}
        }
    }
    Outcome::Running
}

/// True once the operator finished the Job's bookkeeping.
pub fn is_done(job: &Job) -> bool {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(STATE_LABEL))
        .is_some_and(|v| v == STATE_DONE)
}

/// The digests a Job processed, from its annotation.
pub fn digests(job: &Job) -> HashSet<&str> {
    elements(job).into_iter().collect()
}

/// The digest of each element of the Job's `image-config.json`, in order.
pub fn elements(job: &Job) -> Vec<&str> {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DIGESTS_ANNOTATION))
        .map(|v| v.lines().map(str::trim).filter(|l| !l.is_empty()).collect())
        .unwrap_or_default()
}

/// The identity the Job ran with: the job image and settings hash stored on it when it was
/// created (not the operator's current ones: settings may have changed while it ran), and the
/// job image's digest its pod reported.
pub fn identity(job: &Job, current: &JobIdentity, image_digest: Option<String>) -> JobIdentity {
    let image = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == objects::CONTAINER))
        .and_then(|c| c.image.clone());
    let hash = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SETTINGS_HASH_ANNOTATION))
        .cloned();
    JobIdentity {
        image: image.unwrap_or_else(|| current.image.clone()),
        image_digest,
        settings_hash: hash.unwrap_or_else(|| current.settings_hash.clone()),
    }
}

/// What the job pod tells about how the tool ran (pure): the evidence for re-planning, a short
/// description for logs, Events and records, and the job image's digest.
pub fn read_pod(pod: Option<&Pod>) -> (Evidence, String, Option<String>) {
    let Some(pod) = pod else {
        return (Evidence::ExitOnly, "the job pod is gone".into(), None);
    };
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|l| l.iter().find(|c| c.name == objects::CONTAINER));
    let Some(status) = status else {
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        return (
            Evidence::NotRun,
            format!("the job container never started (pod {phase})"),
            None,
        );
    };
    let image_digest = ImageId::parse(&status.image_id).ok().map(|id| id.digest);
    let state = status.state.as_ref();
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        let detail = match &t.reason {
            Some(r) => format!("exit code {} ({r})", t.exit_code),
            None => format!("exit code {}", t.exit_code),
        };
        let evidence = t
            .message
            .as_deref()
            .and_then(JobReport::parse)
            .map_or(Evidence::ExitOnly, Evidence::Report);
        return (evidence, detail, image_digest);
    }
    if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
        let reason = w.reason.clone().unwrap_or_else(|| "Waiting".into());
        let message = w.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        return (
            Evidence::NotRun,
            format!("the job container never ran ({reason}{message})"),
            image_digest,
        );
    }
    // Running when the Job ended: killed at the deadline.
    (Evidence::ExitOnly, "stopped while running".into(), image_digest)
}

/// The newest pod of a Job, if any is left.
async fn job_pod(ctx: &Context, job_name: &str) -> Option<Pod> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let selector = format!("{JOB_NAME_LABEL}={job_name}");
    match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list
            .items
            .into_iter()
            .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0)),
        Err(e) => {
            warn!(job = %job_name, error = %e, "could not read the job's pod");
            None
        }
    }
}

/// True when the pod has not started the job container and cannot any more: its config Secret
/// is gone (deleted by hand or by a namespace clean-up), so it would wait for the volume until
/// the deadline.
async fn config_lost(ctx: &Context, job_name: &str) -> bool {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    if !matches!(secrets.get_metadata_opt(job_name).await, Ok(None)) {
        return false;
    }
    let pod = job_pod(ctx, job_name).await;
    let started = pod
        .as_ref()
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .any(|c| {
            c.state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        });
    !started
}

fn name(job: &Job) -> String {
    job.metadata.name.clone().unwrap_or_default()
}

/// Creates the Job suspended, then its config Secret owned by it, then resumes it. At no instant
/// is there a credential Secret without an owner: whatever fails in between, deleting the Job
/// takes the Secret with it (garbage collection), and a suspended Job starts no pod that could
/// wait for its volume. A Job left suspended by a crash is settled by [`adopt`].
pub async fn launch(ctx: &Context, plan: &JobPlan) -> Result<Job> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let pp = PostParams {
        field_manager: Some(annotate::FIELD_MANAGER.into()),
        ..Default::default()
    };
    let mut manifest = objects::job(plan, &ctx.namespace, &ctx.settings.ops.release, &ctx.settings.job);
    let annotations = manifest.metadata.annotations.get_or_insert_with(Default::default);
    annotations.insert(
        SETTINGS_HASH_ANNOTATION.into(),
        ctx.identity.settings_hash.clone(),
    );
    // Which replica (the Lease holder) made it: two holders at once would show here.
    annotations.insert(CREATED_BY_ANNOTATION.into(), ctx.instance.clone());
    let job = match jobs.create(&pp, &manifest).await {
        Ok(job) => job,
        Err(e) => match jobs.get_opt(&plan.name).await {
            // The create went through although its answer was lost (a timeout, a broken
            // connection): go on with it.
            Ok(Some(job)) if job.metadata.labels == manifest.metadata.labels => {
                warn!(job = %plan.name, error = %e, "creating the Job reported an error, but it exists; going on with it");
                job
            }
            // No Secret exists yet: nothing to clean up. A suspended Job whose creation did go
            // through is settled by the next cycle's adoption.
            _ => return Err(e).context(|| format!("creating Job {}/{}", ctx.namespace, plan.name)),
        },
    };
    let owner = objects::owned_by_job(&name(&job), job.metadata.uid.as_deref().unwrap_or_default());
    if let Err(e) = secrets
        .create(
            &pp,
            &objects::secret(plan, &ctx.namespace, &ctx.settings.ops.release, owner),
        )
        .await
    {
        // Should the Secret exist after all (a lost answer), it goes with its Job.
        abandon(ctx, &plan.name).await;
        return Err(e).context(|| format!("creating Secret {}/{}", ctx.namespace, plan.name));
    }
    let job = match resume(ctx, &plan.name).await {
        Ok(job) => job,
        Err(e) => {
            abandon(ctx, &plan.name).await;
            return Err(e).context(|| format!("resuming Job {}/{}", ctx.namespace, plan.name));
        }
    };
    info!(job = %plan.name, images = plan.images.len(), "Job created");
    Ok(job)
}

/// Lets a suspended Job start its pod.
async fn resume(ctx: &Context, job_name: &str) -> kube::Result<Job> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let patch = Patch::Merge(json!({ "spec": { "suspend": false } }));
    jobs.patch(job_name, &PatchParams::default(), &patch).await
}

/// Deletes a Job that never ran; its Secret, if any, is collected with it. A failure is only
/// logged: the Job stays suspended and the next cycle's [`adopt`] deletes it.
async fn abandon(ctx: &Context, job_name: &str) {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    match jobs.delete(job_name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => {
            warn!(job = %job_name, error = %e, "could not delete the unstarted Job; the next cycle does")
        }
    }
}

/// True while the Job is suspended: its launch was interrupted before the resume.
pub fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// What to do with an unfinished Job of ours found at the start of a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adoption {
    /// Running or ended: wait for it or finish it, as it is.
    Keep,
    /// Suspended with its Secret: its launch was cut short after the Secret; let it run.
    Resume,
    /// Suspended without its Secret: it can never run; delete it (its images are planned again).
    Delete,
}

/// The decision for one unfinished Job (pure); `secret_exists` only matters when it is
/// suspended.
pub fn adoption(job: &Job, secret_exists: bool) -> Adoption {
    match (
        is_suspended(job) && outcome(job) == Outcome::Running,
        secret_exists,
    ) {
        (false, _) => Adoption::Keep,
        (true, true) => Adoption::Resume,
        (true, false) => Adoption::Delete,
    }
}

/// Settles an unfinished Job found at the start of a cycle (after a restart, or a launch cut
/// short): a suspended one is resumed when its Secret exists and deleted otherwise. Returns the
/// Job to wait for or finish, `None` when it was deleted. An API error fails the cycle (retried
/// soon): a suspended Job must not be waited for, it would never end.
pub async fn adopt(ctx: &Context, job: Job) -> Result<Option<Job>> {
    if !is_suspended(&job) {
        return Ok(Some(job));
    }
    let job_name = name(&job);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let exists = secrets
        .get_metadata_opt(&job_name)
        .await
        .context(|| format!("looking for Secret {}/{job_name}", ctx.namespace))?
        .is_some();
    match adoption(&job, exists) {
        Adoption::Keep => Ok(Some(job)),
        Adoption::Resume => {
            let resumed = resume(ctx, &job_name)
                .await
                .context(|| format!("resuming Job {}/{job_name}", ctx.namespace))?;
            info!(job = %job_name, "resumed a Job whose launch was cut short");
            Ok(Some(resumed))
        }
        Adoption::Delete => {
            info!(job = %job_name, "deleting a suspended Job without its config Secret; its images are planned again");
            abandon(ctx, &job_name).await;
            Ok(None)
        }
    }
}

/// When [`wait`] stops waiting for a Job whose deadline is `deadline` from `now`: five minutes
/// after it. Checked: `now + deadline` panics for an `activeDeadlineSeconds` near i64::MAX;
/// such a Job is waited for about 30 years (tokio's own "far future").
fn give_up_at(now: tokio::time::Instant, deadline: Duration) -> tokio::time::Instant {
    now.checked_add(deadline.saturating_add(Duration::from_secs(300)))
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86400))
}

/// Waits for the Job's terminal condition by a watch. Ends it at once when its pod can never
/// start (the config Secret is gone), and gives up (deleting the Job) only well after its own
/// deadline, should the job controller never report one.
pub async fn wait(ctx: &Context, job: &Job) -> Job {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let job_name = name(job);
    let deadline = job
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .map_or(ctx.settings.job.timeout, |s| Duration::from_secs(s.max(0) as u64));
    let give_up = give_up_at(tokio::time::Instant::now(), deadline);
    let finished = |j: Option<&Job>| j.is_none_or(|j| outcome(j) != Outcome::Running);
    let watch = await_condition(jobs.clone(), &job_name, finished);
    tokio::pin!(watch);
    let mut check = tokio::time::interval(CONFIG_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    loop {
        tokio::select! {
            result = &mut watch => match result {
                Ok(Some(job)) => return job,
                Ok(None) => return gone(job, "Deleted", "the Job was deleted before it finished"),
                Err(e) => {
                    // The watch broke (API server restart, network): watch again.
                    warn!(job = %job_name, error = %e, "watch of Job failed; watching again");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    watch.set(await_condition(jobs.clone(), &job_name, finished));
                }
            },
            _ = check.tick() => {
                if config_lost(ctx, &job_name).await {
                    warn!(job = %job_name, "the Job's config Secret is gone before its pod started; ending the Job");
                    let _ = jobs.delete(&job_name, &DeleteParams::background()).await;
                    return gone(job, CONFIG_GONE, "the config Secret was deleted before the job pod could mount it");
                }
            }
            _ = tokio::time::sleep_until(give_up) => {
                warn!(job = %job_name, "Job has no terminal condition long after its deadline; deleting it");
                let _ = jobs.delete(&job_name, &DeleteParams::background()).await;
                return gone(job, "OperatorTimeout", "no terminal condition after the deadline");
            }
        }
    }
}

/// A Job that ended without conditions: treated as failed.
fn gone(job: &Job, reason: &str, message: &str) -> Job {
    let mut job = job.clone();
    let status = job.status.get_or_insert_with(Default::default);
    status.conditions = Some(vec![k8s_openapi::api::batch::v1::JobCondition {
        type_: "Failed".into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..Default::default()
    }]);
    job
}

/// How an ended Job was finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub outcome: Outcome,
    /// What the job pod told about the run (for re-planning a failed Job).
    pub evidence: Evidence,
    /// A short description of how the tool ended, for logs, Events and records.
    pub detail: String,
}

/// Bookkeeping of an ended Job: Secret deleted at once, pods annotated on success, Events on
/// the Job and its pods, records written, then the Job marked done. Safe to repeat. Pods whose
/// annotation the API server refuses for good get one Warning and do not keep the Job open.
pub async fn finish(ctx: &Context, job: &Job) -> Result<Finished> {
    let job_name = name(job);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    match secrets.delete(&job_name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e).context(|| format!("deleting Secret {}/{job_name}", ctx.namespace)),
    }
    let outcome = outcome(job);
    if outcome == Outcome::Running {
        return Ok(Finished {
            outcome,
            evidence: Evidence::ExitOnly,
            detail: String::new(),
        });
    }
    let (mut evidence, detail, image_digest) = read_pod(job_pod(ctx, &job_name).await.as_ref());
    if matches!(&outcome, Outcome::Failed { reason, .. } if reason == CONFIG_GONE) {
        evidence = Evidence::ConfigGone;
    }
    let identity = identity(job, &ctx.identity, image_digest);
    ctx.learn_job_image(&identity);
    let reference = job.object_ref(&());
    match &outcome {
        Outcome::Complete => {
            let digests = digests(job);
            let pods = ctx.snapshot();
            let prefix = &ctx.settings.annotation_prefix;
            let report = annotate::annotate(&ctx.client, &pods, prefix, &digests, &ctx.refused).await;
            let patched = report.patched.len();
            ctx.metrics.job_done(JobResult::Complete, age(job));
            ctx.metrics.images(digests.len());
            ctx.metrics.annotated(patched);
            for d in &digests {
                ctx.failures.clear(d);
            }
            if let Some(ttl) = ctx.cache_ttl {
                remember(ctx, &pods, &digests, &job_name, &identity, ttl).await;
            }
            info!(job = %job_name, images = digests.len(), patched, gone = report.gone, failed = report.failed, refused = report.refused.len(), "Job complete; pods annotated");
            ctx.event(
                &reference,
                EventType::Normal,
                pod_events::PROCESSED,
                format!("{} images processed, {patched} pods annotated", digests.len()),
            )
            .await;
            if ctx.settings.pod_events.processed() {
                // After every patch: the events never delay an annotation.
                let source = format!("image(s) catalogued by Job {}/{job_name}", ctx.namespace);
                pod_events::processed(&ctx.client, &ctx.instance, &report.patched, &source).await;
            }
            ctx.refused_annotations(&report.refused, &format!("Job {}/{job_name}", ctx.namespace))
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
        Outcome::Failed { reason, message } => {
            warn!(job = %job_name, %reason, %message, %detail, "Job failed; nothing annotated");
            ctx.metrics.job_done(JobResult::Failed, age(job));
            ctx.event(
                &reference,
                EventType::Warning,
                reason,
                format!("Job failed, no pod annotated: {message} ({detail})"),
            )
            .await;
        }
        Outcome::Running => unreachable!("returned above"),
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

/// How long ago the Job was created: its duration once it ended.
fn age(job: &Job) -> Duration {
    job.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| {
            k8s_openapi::jiff::Timestamp::now()
                .duration_since(t.0)
                .unsigned_abs()
        })
        .unwrap_or_default()
}

/// Writes a cache record per processed digest, with the repositories the snapshot runs it
/// under. A failure is logged: the pods are annotated already, only the cache misses out.
async fn remember(
    ctx: &Context,
    pods: &[Arc<CachedPod>],
    digests: &HashSet<&str>,
    job_name: &str,
    identity: &JobIdentity,
    ttl: Duration,
) {
    let mut repositories: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in pods.iter().flat_map(|p| worklist::container_images(p).0) {
        if digests.contains(c.id.digest.as_str())
            && let Some(repo) = cache::repository_of(&c.id.reference)
        {
            repositories
                .entry(c.id.digest.clone())
                .or_default()
                .insert(repo.to_string());
        }
    }
    let now = chrono::Utc::now();
    let records: Vec<_> = digests
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
    let updates = records.into_iter().filter_map(cache::Update::processed).collect();
    if let Err(e) = cache::save(&ctx.client, &ctx.release_key(), updates).await {
        warn!(job = %job_name, error = %e, "could not write cache records");
    }
}

/// Our Jobs whose bookkeeping is not done, oldest first: running ones (another cycle, maybe from
/// before a restart) and ended ones nobody finished.
pub async fn unfinished(ctx: &Context) -> Result<Vec<Job>> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut list: Vec<Job> = jobs
        .list(&ListParams::default().labels(&objects::selector(&ctx.settings.ops.release)))
        .await
        .context(|| format!("listing Jobs in {}", ctx.namespace))?
        .items
        .into_iter()
        .filter(|j| !is_done(j) && j.metadata.deletion_timestamp.is_none())
        .collect();
    list.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
    Ok(list)
}

/// The Secrets of ours nothing collects (pure): those without a Job as owner, left by versions
/// that created the Secret before its Job (a crash or a cancel in between). Owned ones go with
/// their Job by garbage collection, and belong to a running Job of this or another release.
pub fn orphans(secrets: &[PartialObjectMeta<Secret>]) -> Vec<String> {
    secrets
        .iter()
        .filter(|s| !objects::owned_by_a_job(&s.metadata))
        .filter_map(|s| s.metadata.name.clone())
        .collect()
}

/// Deletes the Secrets of ours without an owner ([`orphans`]): called once all our Jobs have
/// ended.
pub async fn delete_orphan_secrets(ctx: &Context) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let list = secrets
        .list_metadata(&ListParams::default().labels(&objects::selector(&ctx.settings.ops.release)))
        .await
        .context(|| format!("listing Secrets in {}", ctx.namespace))?;
    for secret_name in orphans(&list.items) {
        info!(secret = %secret_name, "deleting a Secret without an owning Job (left by an older version)");
        match secrets.delete(&secret_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => warn!(secret = %secret_name, error = %e, "could not delete Secret"),
        }
    }
    Ok(())
}

impl Context {
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

/// Labels for logs: the Job's digests count by outcome (used in tests and logs).
pub fn summary(jobs: &[(String, Outcome)]) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for (_, o) in jobs {
        *out.entry(match o {
            Outcome::Complete => "complete",
            Outcome::Failed { .. } => "failed",
            Outcome::Running => "running",
        })
        .or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use kube::api::ObjectMeta;

    use super::*;

    fn job_with(conditions: &[(&str, &str, &str)]) -> Job {
        Job {
            status: Some(JobStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s, r)| JobCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            reason: Some(r.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn outcomes_from_conditions() {
        assert_eq!(outcome(&Job::default()), Outcome::Running);
        assert_eq!(
            outcome(&job_with(&[("SuccessCriteriaMet", "True", "")])),
            Outcome::Running
        );
        assert_eq!(
            outcome(&job_with(&[
                ("SuccessCriteriaMet", "True", ""),
                ("Complete", "True", "")
            ])),
            Outcome::Complete
        );
        assert_eq!(
            outcome(&job_with(&[
                ("FailureTarget", "True", "DeadlineExceeded"),
                ("Failed", "True", "DeadlineExceeded")
            ])),
            Outcome::Failed {
                reason: "DeadlineExceeded".into(),
                message: String::new()
            }
        );
        assert_eq!(outcome(&job_with(&[("Failed", "False", "x")])), Outcome::Running);
    }

    #[test]
    fn digests_and_done_marker() {
        let job = Job {
            metadata: ObjectMeta {
                annotations: Some(
                    [(DIGESTS_ANNOTATION.to_string(), "sha256:a\nsha256:b\n".to_string())].into(),
                ),
                labels: Some([(STATE_LABEL.to_string(), STATE_DONE.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(digests(&job), ["sha256:a", "sha256:b"].into());
        assert!(is_done(&job));
        assert!(!is_done(&Job::default()));
    }

    #[test]
    fn gone_jobs_count_as_failed() {
        let j = gone(&Job::default(), "Deleted", "x");
        assert_eq!(
            outcome(&j),
            Outcome::Failed {
                reason: "Deleted".into(),
                message: "x".into()
            }
        );
        assert_eq!(
            summary(&[("a".into(), Outcome::Complete), ("b".into(), outcome(&j))])["failed"],
            1
        );
    }

    fn suspended(suspend: Option<bool>, condition: Option<&str>) -> Job {
        let mut job = match condition {
            Some(c) => job_with(&[(c, "True", "")]),
            None => Job::default(),
        };
        job.spec = Some(k8s_openapi::api::batch::v1::JobSpec {
            suspend,
            ..Default::default()
        });
        job
    }

    #[test]
    fn a_suspended_job_is_resumed_with_its_secret_and_deleted_without() {
        let cut_short = suspended(Some(true), None);
        assert!(is_suspended(&cut_short));
        assert_eq!(adoption(&cut_short, true), Adoption::Resume);
        assert_eq!(adoption(&cut_short, false), Adoption::Delete);
        // Running (resumed, or made by a version that never suspended) and ended Jobs are kept.
        for job in [
            suspended(Some(false), None),
            suspended(None, None),
            Job::default(),
            suspended(Some(true), Some("Failed")),
            suspended(Some(true), Some("Complete")),
        ] {
            for secret in [true, false] {
                assert_eq!(adoption(&job, secret), Adoption::Keep, "{:?}", job.spec);
            }
        }
    }

    #[test]
    fn only_secrets_without_an_owning_job_are_orphans() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let secret = |name: &str, owners: Option<Vec<OwnerReference>>| PartialObjectMeta::<Secret> {
            metadata: ObjectMeta {
                name: Some(name.into()),
                owner_references: owners,
                ..Default::default()
            },
            ..Default::default()
        };
        let other = OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "x".into(),
            uid: "u".into(),
            ..Default::default()
        };
        let list = [
            secret("owned", Some(vec![objects::owned_by_job("owned", "u1")])),
            secret("old", None),
            secret("empty", Some(vec![])),
            secret("elsewhere", Some(vec![other])),
        ];
        assert_eq!(orphans(&list), ["old", "empty", "elsewhere"]);
    }

    #[test]
    fn give_up_time_does_not_overflow() {
        let now = tokio::time::Instant::now();
        assert_eq!(
            give_up_at(now, Duration::from_secs(600)),
            now + Duration::from_secs(900)
        );
        // activeDeadlineSeconds = i64::MAX (a Job made elsewhere), and beyond.
        for d in [Duration::from_secs(i64::MAX as u64), Duration::MAX] {
            assert!(
                give_up_at(now, d) > now + Duration::from_secs(365 * 86400),
                "{d:?}"
            );
        }
    }

    fn job_pod(state: Option<k8s_openapi::api::core::v1::ContainerState>, image_id: &str) -> Pod {
        use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};
        Pod {
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: state.map(|state| {
                    vec![ContainerStatus {
                        name: "sbom".into(),
                        image_id: image_id.into(),
                        state: Some(state),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_job_pod_tells_how_the_tool_ran() {
        use k8s_openapi::api::core::v1::{
            ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        };
        let id = format!("r.io/job@sha256:{}", "ab".repeat(32));
        let terminated = |message: Option<&str>| ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 1,
                reason: Some("Error".into()),
                message: message.map(String::from),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (evidence, detail, digest) = read_pod(Some(&job_pod(
            Some(terminated(Some(r#"{"v":1,"n":2,"ok":[0],"failed":[1]}"#))),
            &id,
        )));
        assert_eq!(
            evidence,
            Evidence::Report(JobReport {
                n: 2,
                ok: vec![0],
                failed: vec![1]
            })
        );
        assert_eq!(detail, "exit code 1 (Error)");
        assert_eq!(digest, Some(format!("sha256:{}", "ab".repeat(32))));
        // A shell job image leaves nothing, or its log's tail: halving.
        let (evidence, ..) = read_pod(Some(&job_pod(Some(terminated(Some("jq: error"))), &id)));
        assert_eq!(evidence, Evidence::ExitOnly);
        let waiting = ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ImagePullBackOff".into()),
                message: Some("not found".into()),
            }),
            ..Default::default()
        };
        let (evidence, detail, _) = read_pod(Some(&job_pod(Some(waiting), "")));
        assert_eq!(evidence, Evidence::NotRun);
        assert!(detail.contains("ImagePullBackOff: not found"), "{detail}");
        assert_eq!(read_pod(Some(&job_pod(None, ""))).0, Evidence::NotRun);
        let running = ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        };
        assert_eq!(read_pod(Some(&job_pod(Some(running), &id))).0, Evidence::ExitOnly);
        assert_eq!(read_pod(None).0, Evidence::ExitOnly);
    }

    #[test]
    fn a_job_is_credited_to_the_identity_it_was_created_with() {
        let current = JobIdentity {
            image: "r.io/job:2".into(),
            image_digest: None,
            settings_hash: "new".into(),
        };
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"annotations": {SETTINGS_HASH_ANNOTATION: "old"}},
            "spec": {"template": {"spec": {"containers": [{"name": "sbom", "image": "r.io/job:1"}]}}}
        }))
        .unwrap();
        let ran = identity(&job, &current, Some("sha256:j".into()));
        assert_eq!(
            ran,
            JobIdentity {
                image: "r.io/job:1".into(),
                image_digest: Some("sha256:j".into()),
                settings_hash: "old".into()
            }
        );
        // A Job from before the annotation existed: today's settings.
        job.metadata.annotations = None;
        assert_eq!(identity(&job, &current, None).settings_hash, "new");
    }
}
