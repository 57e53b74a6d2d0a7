//! One cycle: finish or wait for earlier Jobs, snapshot, work list, credentials, Jobs.

use std::{
    collections::{BTreeSet, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{StreamExt, stream, stream::FuturesUnordered};
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Namespace, Secret, ServiceAccount},
};
use kube::{
    Api, Client,
    runtime::{
        events::{EventType, Recorder},
        reflector::Store,
    },
};
use tracing::{info, warn};

use crate::{
    Result, annotate,
    backoff::{self, Gate},
    cache::{self, CacheDecision, JobIdentity, MissReason},
    credentials,
    jobs::{self, Finished, Outcome},
    metrics::Metrics,
    objects::{self, JobPlan},
    pod::CachedPod,
    pod_events,
    replan::{self, Evidence, Unit},
    settings::Settings,
    trigger::NewDigests,
    worklist::{self, CredentialIndex, Snapshot, WorkItem},
};

/// What every step of a cycle needs.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    /// Where Jobs and Secrets live (`POD_NAMESPACE`).
    pub namespace: String,
    /// Pods matching the pod label selector, kept current by a reflector.
    pub pods: Store<CachedPod>,
    /// Namespaces matching the namespace label selector; `None` when there is no selector.
    pub namespaces: Option<Store<Namespace>>,
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
}

/// The reason of the Warning on a pod whose annotation the API server refused for good.
pub const ANNOTATION_REFUSED: &str = "AnnotationRefused";

/// How a cycle ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Jobs of earlier cycles this one waited for or finished.
    pub adopted: usize,
    pub images: usize,
    pub jobs: Vec<(String, Outcome)>,
}

/// Splits our unfinished Jobs into those still running (they block the cycle) and those that
/// ended but were never finished.
pub fn blocking(unfinished: Vec<Job>) -> (Vec<Job>, Vec<Job>) {
    unfinished
        .into_iter()
        .partition(|j| jobs::outcome(j) == Outcome::Running)
}

pub async fn run(ctx: &Context, cycle: &str) -> Result<Report> {
    let mut report = Report::default();

    // 1. Never overlap: Jobs of ours still running (an earlier cycle, or one from before a
    //    restart) are waited for and finished first; ended ones are finished now.
    //    A Job left suspended by a launch cut short is resumed or deleted first.
    let mut unfinished = Vec::new();
    for job in jobs::unfinished(ctx).await? {
        unfinished.extend(jobs::adopt(ctx, job).await?);
    }
    let (running, ended) = blocking(unfinished);
    report.adopted = running.len() + ended.len();
    if !running.is_empty() {
        let names: Vec<_> = running.iter().filter_map(|j| j.metadata.name.clone()).collect();
        info!(jobs = ?names, "blocked: waiting for running Jobs before creating any");
    }
    let waited = stream::iter(running)
        .map(|j| async move { jobs::wait(ctx, &j).await })
        .buffer_unordered(16);
    let to_finish: Vec<Job> = ended
        .into_iter()
        .chain(waited.collect::<Vec<_>>().await)
        .collect();
    // What those Jobs completed is done, even before the pod cache shows the annotations just
    // written: without this, a cycle that adopted a Job would make a second Job for its images.
    let mut just_done: HashSet<String> = HashSet::new();
    for job in &to_finish {
        if jobs::finish(ctx, job).await?.outcome == Outcome::Complete {
            just_done.extend(jobs::digests(job).into_iter().map(String::from));
        }
    }
    jobs::delete_orphan_secrets(ctx).await?;

    // 2. What is left to do; with the cache, what a fresh record covers is annotated at once;
    //    images backing off after failing alone wait for their next attempt.
    let pods = ctx.snapshot();
    ctx.refused.retain_pods(&pods);
    // Every digest the snapshot runs, worked out once for the trigger, the sweep and the book.
    let running = running_digests(&pods);
    let items = without(work_list(ctx, &pods, &running).await, &just_done);
    let items = match ctx.cache_ttl {
        Some(_) => apply_cache(ctx, &pods, &running, items).await,
        None => items,
    };
    let (items, due) = gate(ctx, &running, items);
    report.images = items.len();
    if items.is_empty() {
        info!("nothing to process; no Job created");
        return Ok(report);
    }

    // 3. Credentials, then Jobs until every image succeeded, backed off or waits.
    let index = credential_index(ctx, &items).await;
    let mut too_large = Vec::new();
    let units = items
        .iter()
        .map(|i| {
            let (candidates, large) = index.candidates(i);
            if !large.is_empty() {
                too_large.push((i, large));
            }
            Unit {
                solo: due.contains(&i.digest),
                ..Unit::new(i.digest.clone(), candidates)
            }
        })
        .collect();
    ctx.warn_too_large(&pods, &index, &too_large).await;
    report.jobs = follow(ctx, cycle, units).await;
    info!(outcome = ?jobs::summary(&report.jobs), "cycle done");
    Ok(report)
}

/// Jobs one cycle may add to re-plan failed ones (or as many as it first planned, if more): enough to
/// isolate a few bad images by halving, few enough that a registry that fails every image does
/// not turn one cycle into hundreds of Jobs (what is left waits for the next cycle). Within
/// `SBOM_MAX_JOBS_PER_CYCLE`, which counts every Job of the cycle ([`JobBudget`]).
pub const REPLAN_BUDGET: usize = 32;

/// The Jobs a cycle may still make: `SBOM_MAX_JOBS_PER_CYCLE` in all, first planned and
/// re-planned together, and of those at most [`REPLAN_BUDGET`] (or as many as first planned)
/// re-planned. A cycle that first plans its whole limit has no room left to re-plan: the images
/// of its failed Jobs wait for the next cycle, as the images over the limit do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobBudget {
    cycle: usize,
    replan: usize,
}

/// Which limit held Jobs back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `SBOM_MAX_JOBS_PER_CYCLE`.
    Cycle,
    /// [`REPLAN_BUDGET`].
    Replan,
}

impl JobBudget {
    /// Keeps the first plans of a cycle that may make `max_per_cycle` Jobs; returns the others
    /// (they wait for the next cycle).
    pub fn first<T>(max_per_cycle: usize, plans: &mut Vec<T>) -> (JobBudget, Vec<T>) {
        let over = plans.split_off(plans.len().min(max_per_cycle));
        let budget = JobBudget {
            cycle: max_per_cycle - plans.len(),
            replan: REPLAN_BUDGET.max(plans.len()),
        };
        (budget, over)
    }

    /// Keeps the re-planned Jobs the budget still allows; returns the others and the limit that
    /// held them back.
    pub fn again<T>(&mut self, plans: &mut Vec<T>) -> Option<(Vec<T>, Limit)> {
        let limit = if self.cycle <= self.replan {
            Limit::Cycle
        } else {
            Limit::Replan
        };
        let over = plans.split_off(plans.len().min(self.cycle.min(self.replan)));
        self.cycle -= plans.len();
        self.replan -= plans.len();
        (!over.is_empty()).then_some((over, limit))
    }
}

/// Runs the units' Jobs, at most `max_parallel` at once and `max_per_cycle` in all. A failed
/// Job's images are re-planned at once ([`replan::after_failure`]): failing ones alone, the rest
/// together, so the healthy images of a Job that also held a bad one are annotated in this cycle.
async fn follow(ctx: &Context, cycle: &str, units: Vec<Unit>) -> Vec<(String, Outcome)> {
    let max_images = ctx.settings.job.max_images;
    let mut next = 0;
    let mut first = objects::plan_units(cycle, units, max_images, &mut next);
    let (mut budget, over) = JobBudget::first(ctx.settings.job.max_per_cycle, &mut first);
    // Images left for the next cycle by SBOM_MAX_JOBS_PER_CYCLE: logged once, at the end.
    let mut deferred: usize = over.iter().map(|p| p.units.len()).sum();
    let mut queue: VecDeque<JobPlan> = first.into();
    info!(jobs = queue.len(), "processing");
    let mut running = FuturesUnordered::new();
    let mut ended = Vec::new();
    loop {
        while running.len() < ctx.settings.job.max_parallel
            && let Some(plan) = queue.pop_front()
        {
            running.push(run_plan(ctx, plan));
        }
        let Some((plan, finished)) = running.next().await else {
            break;
        };
        if let Outcome::Failed { reason, .. } = &finished.outcome {
            let replan = replan::after_failure(plan.units.clone(), &plan.elements, &finished.evidence);
            let why = format!("{reason}: {}", finished.detail);
            for unit in &replan.exhausted {
                back_off(ctx, unit, &plan.name, &why).await;
            }
            if !replan.wait.is_empty() {
                waits(ctx, &plan.name, &replan.wait, reason, &why).await;
            }
            let mut again = Vec::new();
            for group in replan.together.into_iter().filter(|g| !g.is_empty()) {
                again.extend(objects::plan_units(cycle, group, max_images, &mut next));
            }
            for unit in replan.alone {
                again.extend(objects::plan_units(cycle, vec![unit], max_images, &mut next));
            }
            if let Some((over, limit)) = budget.again(&mut again) {
                let left: Vec<Unit> = over.into_iter().flat_map(|p| p.units).collect();
                match limit {
                    Limit::Cycle => deferred += left.len(),
                    Limit::Replan => {
                        warn!(job = %plan.name, images = left.len(), "re-planning budget of this cycle spent; these images wait for the next cycle")
                    }
                }
                waits(ctx, &plan.name, &left, reason, &why).await;
            }
            if !again.is_empty() {
                info!(job = %plan.name, jobs = again.len(), "re-planned the images of a failed Job");
            }
            queue.extend(again);
        }
        ended.push((plan.name, finished.outcome));
    }
    if deferred > 0 {
        ctx.metrics.deferred(deferred);
        warn!(
            images = deferred,
            max_jobs_per_cycle = ctx.settings.job.max_per_cycle,
            "this cycle made as many Jobs as SBOM_MAX_JOBS_PER_CYCLE allows; these images wait for the next cycle"
        );
    }
    ended
}

/// Splits off the items backing off (no Job before their next attempt) and names those due
/// again (each runs alone). Forgets failures of digests that no longer run.
fn gate(ctx: &Context, running: &BTreeSet<String>, items: Vec<WorkItem>) -> (Vec<WorkItem>, HashSet<String>) {
    ctx.failures
        .retain_running(&running.iter().map(String::as_str).collect());
    let now = chrono::Utc::now();
    let mut due = HashSet::new();
    let mut waiting = 0;
    let items = items
        .into_iter()
        .filter(|i| {
            match backoff::gate(
                ctx.failures.get(&i.digest).as_ref(),
                &ctx.identity.settings_hash,
                now,
            ) {
                Gate::Open => true,
                Gate::Retry => {
                    due.insert(i.digest.clone());
                    true
                }
                Gate::Wait(until) => {
                    waiting += 1;
                    tracing::debug!(digest = %i.digest, %until, "backing off after failing alone");
                    false
                }
            }
        })
        .collect();
    ctx.metrics.backing_off(waiting);
    if waiting > 0 {
        info!(
            images = waiting,
            "images backing off after failing alone: no Job for them yet"
        );
    }
    (items, due)
}

/// An image that failed alone with every candidate: recorded with its next attempt (in its
/// ImageRecord when the cache is on), and a Warning on each pod still waiting for it.
async fn back_off(ctx: &Context, unit: &Unit, job_name: &str, why: &str) {
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
            .filter_map(|c| cache::repository_of(&c.image).map(String::from))
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

/// The reason of the Warning on a pod whose pull secret's credential for its image is larger
/// than `SBOM_MAX_CREDENTIAL_SIZE`.
pub const CREDENTIAL_TOO_LARGE: &str = "CredentialTooLarge";

/// The reason of the Warning on a pod whose container's imageID cannot be processed.
pub const IMAGE_SKIPPED: &str = "ImageSkipped";

/// The reason of the Warning on the pods of an image that failed alone.
pub const IMAGE_FAILED: &str = "ImageFailed";

/// Images of a failed Job left for the next cycle (its tool never ran, or the re-planning
/// budget is spent): a Warning with the Job's reason on each pod still waiting for them.
async fn waits(ctx: &Context, job_name: &str, units: &[Unit], reason: &str, why: &str) {
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
    async fn warn_skipped(&self, pods: &[Arc<CachedPod>], skipped: Vec<worklist::Skipped>) {
        if skipped.is_empty() && self.skip_warned.lock().expect("lock").is_empty() {
            return;
        }
        if !self.settings.pod_events.failures() {
            return;
        }
        let by_name: std::collections::HashMap<(&str, &str), &Arc<CachedPod>> =
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
    async fn warn_too_large(
        &self,
        pods: &[Arc<CachedPod>],
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
        let by_name: std::collections::HashMap<(&str, &str), &Arc<CachedPod>> =
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

    /// A Warning on each pod that still waits for one of the digests (none is annotated).
    async fn warn_waiting(&self, digests: &HashSet<&str>, reason: &str, note: &str) {
        let prefix = &self.settings.annotation_prefix;
        let pods = self.snapshot();
        let waiting = pods
            .iter()
            .filter(|p| !annotate::annotations_for(p, prefix, digests).is_empty())
            .map(|p| (p.as_ref(), note.to_string()));
        pod_events::publish(&self.client, &self.instance, EventType::Warning, reason, waiting).await;
    }

    /// The pods cycles work on: the pod cache, less the pods of namespaces the namespace
    /// selector does not match. Their images are neither processed, annotated nor remembered.
    pub fn snapshot(&self) -> Vec<Arc<CachedPod>> {
        let mut pods = self.pods.state();
        if self.namespaces.is_some() {
            pods.retain(|p| worklist::selected(self.namespaces.as_ref(), p.namespace()));
        }
        pods
    }
}

async fn work_list(ctx: &Context, pods: &[Arc<CachedPod>], running: &BTreeSet<String>) -> Vec<WorkItem> {
    ctx.new_digests.remember(running.iter().cloned());
    let (items, skipped) = worklist::build(&Snapshot {
        pods,
        annotation_prefix: &ctx.settings.annotation_prefix,
        ignore_annotations: ctx.settings.ignore_annotations,
        keep_annotated: ctx.cache_ttl.is_some(),
        cluster_id: &ctx.settings.cluster_id,
        refused: &ctx.refused,
    });
    for s in &skipped {
        warn!(namespace = %s.namespace, pod = %s.pod, container = %s.container, reason = %s.reason, "container skipped");
    }
    ctx.warn_skipped(pods, skipped).await;
    items
}

/// The work items whose digest is not in `done`.
pub fn without(items: Vec<WorkItem>, done: &HashSet<String>) -> Vec<WorkItem> {
    items.into_iter().filter(|i| !done.contains(&i.digest)).collect()
}

/// Every digest the snapshot's pods run.
pub fn running_digests(pods: &[Arc<CachedPod>]) -> BTreeSet<String> {
    pods.iter()
        .flat_map(|p| worklist::container_images(p).0)
        .map(|c| c.id.digest)
        .collect()
}

/// Splits off the items a fresh cache record covers and annotates their pods without a Job;
/// then collects records of images that stopped running. Items whose pods are all annotated
/// already stay only when their record was made by another job image or other settings (they
/// are processed again under today's). A cache that cannot be read is logged and skipped: the
/// cycle goes on as if it were empty.
async fn apply_cache(
    ctx: &Context,
    pods: &[Arc<CachedPod>],
    running: &BTreeSet<String>,
    items: Vec<WorkItem>,
) -> Vec<WorkItem> {
    let loaded = match cache::load(&ctx.client, &ctx.identity.settings_hash, &ctx.release_key()).await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "could not read the digest cache; processing every image");
            return items.into_iter().filter(|i| !i.annotated).collect();
        }
    };
    let now = chrono::Utc::now();
    let identity = ctx.current_identity();
    let mut hits = Vec::new();
    let mut misses = Vec::new();
    let mut again = 0;
    for item in items {
        let decision = match loaded.own.get(item.digest.as_str()) {
            // Processed by this release under other settings, none yet under today's.
            None if loaded.ours_before.contains(&item.digest) => {
                CacheDecision::Miss(MissReason::SettingsChanged)
            }
            own => cache::lookup(own, &identity, now),
        };
        match (item.annotated, decision) {
            (false, CacheDecision::Hit) => hits.push(item),
            (false, CacheDecision::Miss(_)) => misses.push(item),
            (true, CacheDecision::Miss(MissReason::OtherJobImage | MissReason::SettingsChanged)) => {
                again += 1;
                misses.push(item);
            }
            (true, _) => continue,
        }
        ctx.metrics.cache(decision == CacheDecision::Hit);
    }
    if again > 0 {
        info!(
            images = again,
            "annotated images processed by another job image or other settings: processing them again"
        );
    }
    if !hits.is_empty() {
        let digests: HashSet<&str> = hits.iter().map(|i| i.digest.as_str()).collect();
        let prefix = &ctx.settings.annotation_prefix;
        let report = annotate::annotate(&ctx.client, pods, prefix, &digests, &ctx.refused).await;
        ctx.metrics.annotated(report.patched.len());
        info!(
            images = hits.len(),
            patched = report.patched.len(),
            "cache hits: annotated without a Job"
        );
        if ctx.settings.pod_events.processed() {
            let source = "image(s) catalogued earlier, found in the digest cache (no Job)";
            pod_events::processed(&ctx.client, &ctx.instance, &report.patched, source).await;
        }
        ctx.refused_annotations(&report.refused, "the digest cache").await;
    }
    // Failures recorded by an earlier run (or another replica, or another release of the same
    // identity) hold as they do in memory.
    for record in loaded.own.values() {
        if let Some(f) = record.failure()
            && ctx
                .failures
                .get(&record.spec.digest)
                .is_none_or(|m| m.attempts < f.attempts)
        {
            ctx.failures.insert(&record.spec.digest, f);
        }
    }
    let running: HashSet<&str> = running.iter().map(String::as_str).collect();
    let release = ctx.release_key();
    let sweep = cache::sweep(&loaded, &release, &running, now, ctx.settings.ops.cache_grace);
    if let Err(e) = cache::delete(&ctx.client, &sweep.delete).await {
        warn!(error = %e, "could not delete stale cache records");
    }
    let marks = sweep
        .mark
        .iter()
        .filter_map(|(record, since)| cache::Update::mark(record, *since))
        .collect();
    if let Err(e) = cache::save(&ctx.client, &release, marks).await {
        warn!(error = %e, "could not update cache records");
    }
    misses
}

async fn run_plan(ctx: &Context, plan: JobPlan) -> (JobPlan, Finished) {
    let job = match jobs::launch(ctx, &plan).await {
        Ok(job) => job,
        Err(e) => {
            warn!(job = %plan.name, error = %e, "could not create Job; its images wait for the next cycle");
            let finished = Finished {
                outcome: Outcome::Failed {
                    reason: "CreateFailed".into(),
                    message: e.to_string(),
                },
                evidence: Evidence::NotRun,
                detail: "the Job could not be created".into(),
            };
            return (plan, finished);
        }
    };
    let ended = jobs::wait(ctx, &job).await;
    let finished = match jobs::finish(ctx, &ended).await {
        Ok(f) => f,
        Err(e) => {
            warn!(job = %plan.name, error = %e, "could not finish Job; the next cycle does");
            // Not re-planned: until its bookkeeping is done, its images are not known to be
            // anything but in progress.
            Finished {
                outcome: jobs::outcome(&ended),
                evidence: Evidence::NotRun,
                detail: "its bookkeeping failed".into(),
            }
        }
    };
    (plan, finished)
}

/// Reads the service accounts and pull secrets the work list refers to. Anything missing or
/// malformed is a warning naming it; the image is then processed without those credentials.
async fn credential_index(ctx: &Context, items: &[WorkItem]) -> CredentialIndex {
    let mut index = CredentialIndex {
        max_credential_size: ctx.settings.max_credential_size,
        ..Default::default()
    };
    let accounts: BTreeSet<(String, String)> = items
        .iter()
        .flat_map(|i| &i.sources)
        .map(|s| (s.namespace.clone(), s.service_account.clone()))
        .collect();
    for (ns, name) in accounts {
        let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
        match api.get_opt(&name).await {
            Ok(Some(sa)) => {
                let names = sa
                    .image_pull_secrets
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| r.name)
                    .collect();
                index.service_accounts.insert((ns, name), names);
            }
            Ok(None) => {}
            Err(e) => {
                warn!(namespace = %ns, service_account = %name, error = %e, "could not read service account")
            }
        }
    }
    for (ns, name) in index.wanted_secrets(items) {
        if let Some(entries) = pull_secret(ctx, &ns, &name).await {
            index.secrets.insert((ns, name), entries);
        }
    }
    if let Some(name) = &ctx.settings.fallback_pull_secret {
        let key = (ctx.namespace.clone(), name.clone());
        if !index.secrets.contains_key(&key)
            && let Some(entries) = pull_secret(ctx, &key.0, &key.1).await
        {
            index.secrets.insert(key.clone(), entries);
        }
        index.fallback = Some(key);
    }
    index
}

async fn pull_secret(ctx: &Context, ns: &str, name: &str) -> Option<Vec<credentials::AuthEntry>> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(secret)) => match credentials::parse_pull_secret(&secret) {
            Ok(entries) => Some(entries),
            Err(e) => {
                warn!(namespace = %ns, secret = %name, "pull secret {ns}/{name} skipped: it {e}");
                None
            }
        },
        Ok(None) => {
            warn!(namespace = %ns, secret = %name, "pull secret {ns}/{name} does not exist");
            None
        }
        Err(e) => {
            warn!(namespace = %ns, secret = %name, error = %e, "could not read pull secret");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use kube::api::ObjectMeta;

    use super::*;

    fn job(name: &str, condition: Option<&str>) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: condition.map(|c| JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: c.into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn without_drops_the_digests_of_jobs_just_completed() {
        use crate::worklist::fixtures::{digest, pod, status};
        let pods: Vec<Arc<CachedPod>> = vec![
            pod("a", "p", vec![status("c", &format!("r.io/x@{}", digest(1)))]).into(),
            pod("a", "q", vec![status("c", &format!("r.io/y@{}", digest(2)))]).into(),
        ];
        let (items, _) = worklist::build(&Snapshot {
            pods: &pods,
            annotation_prefix: "sbomjob.io",
            ignore_annotations: false,
            keep_annotated: false,
            cluster_id: "c",
            refused: &Default::default(),
        });
        let done: HashSet<String> = [digest(1)].into();
        let left: Vec<String> = without(items, &done).into_iter().map(|i| i.digest).collect();
        assert_eq!(left, [digest(2)]);
    }

    #[test]
    fn a_cycle_never_makes_more_jobs_than_its_limit() {
        // (limit, first planned, re-planned batches) -> (first kept, re-planned kept, waiting)
        for (limit, planned, batches, want) in [
            // Far from the limit: the re-planning budget holds (32, or as many as first planned).
            (10_000, 10, vec![20, 20], (10, 32, 8)),
            (10_000, 50, vec![40, 40], (50, 50, 30)),
            // The cycle's limit holds first-planned and re-planned Jobs together.
            (100, 150, vec![5], (100, 0, 55)),
            (100, 80, vec![15, 15], (80, 20, 10)),
            (1, 1, vec![2], (1, 0, 2)),
            (100, 0, vec![], (0, 0, 0)),
        ] {
            let mut first: Vec<usize> = (0..planned).collect();
            let (mut budget, over) = JobBudget::first(limit, &mut first);
            let mut waiting = over.len();
            let mut replanned = 0;
            for n in batches {
                let mut again: Vec<usize> = (0..n).collect();
                if let Some((over, limit_hit)) = budget.again(&mut again) {
                    waiting += over.len();
                    assert!(!over.is_empty());
                    let _ = limit_hit;
                }
                replanned += again.len();
            }
            assert_eq!(
                (first.len(), replanned, waiting),
                want,
                "limit {limit}, {planned} planned"
            );
            assert!(first.len() + replanned <= limit);
        }
    }

    #[test]
    fn the_limit_that_held_jobs_back_is_named() {
        let mut first = vec![(); 90];
        let (mut budget, over) = JobBudget::first(100, &mut first);
        assert!(over.is_empty());
        // 10 left in the cycle, 90 in the re-planning budget: the cycle's limit holds.
        let (over, limit) = budget.again(&mut vec![(); 12]).unwrap();
        assert_eq!((over.len(), limit), (2, Limit::Cycle));
        let mut first = vec![(); 2];
        let (mut budget, _) = JobBudget::first(100, &mut first);
        // 98 left in the cycle, 32 to re-plan: the re-planning budget holds.
        let (over, limit) = budget.again(&mut vec![(); 40]).unwrap();
        assert_eq!((over.len(), limit), (8, Limit::Replan));
        assert_eq!(budget.again(&mut Vec::<()>::new()), None);
    }

    #[test]
    fn running_jobs_block_and_ended_ones_are_finished() {
        let (running, ended) = blocking(vec![
            job("a", None),
            job("b", Some("Complete")),
            job("c", Some("Failed")),
        ]);
        let names = |v: &[Job]| {
            v.iter()
                .map(|j| j.metadata.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&running), ["a"]);
        assert_eq!(names(&ended), ["b", "c"]);
        assert_eq!(blocking(vec![]), (vec![], vec![]));
    }
}
