//! Step 2, plan: what is left to do (the work list), what the digest cache already covers,
//! which images back off, their credentials, and how many Jobs the cycle may make.

use std::{
    collections::{BTreeSet, HashSet},
    sync::Arc,
};

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;
use tracing::{info, warn};

use crate::{
    backoff::{self, Gate},
    cache::{self, CacheDecision, MissReason},
    credentials,
    pod::WatchedPod,
    replan::Unit,
    results::Found,
    worklist::{self, CredentialIndex, Snapshot, WorkItem},
};

use super::{context::Context, grant};

/// The images a cycle has left to process, and those of them due for a retry alone.
pub struct Planned {
    pub items: Vec<WorkItem>,
    pub due: HashSet<String>,
}

/// What is left to do in `pods` and the ImageSources: the work list without what `completed`
/// just did; with the cache, what a fresh record covers is granted at once; images backing off
/// after failing alone wait for their next attempt.
pub async fn images(ctx: &Context, pods: &[Arc<WatchedPod>], completed: &HashSet<String>) -> Planned {
    ctx.refused.retain_pods(pods);
    // Every digest the snapshot runs, worked out once for the trigger, the sweep and the book.
    let running = worklist::running_digests(pods);
    let items = work_list(ctx, pods, &running).await;
    if ctx.cache_ttl.is_none() {
        return gated(ctx, &running, without(items, completed));
    }
    // The sources' digests too (they need the cache: without records each would make a Job
    // every cycle); the sweep and the back-off book keep them like running ones.
    let found = ctx.source_items();
    let mut listed = running;
    listed.extend(found.iter().map(|i| i.digest.clone()));
    let items = without(crate::sources::feed::merge(items, found), completed);
    let items = apply_cache(ctx, pods, &listed, items).await;
    gated(ctx, &listed, items)
}

fn gated(ctx: &Context, listed: &BTreeSet<String>, items: Vec<WorkItem>) -> Planned {
    let (items, due) = gate(ctx, listed, items);
    Planned { items, due }
}

/// The planned images with their candidate credentials, one unit each (pull secrets read now);
/// a Warning on the pods whose credential is too large.
pub async fn units(ctx: &Context, pods: &[Arc<WatchedPod>], planned: &Planned) -> Vec<Unit> {
    let (index, unusable) = credential_index(ctx, &planned.items).await;
    ctx.warn_unusable(pods, &planned.items, &index, &unusable).await;
    let mut too_large = Vec::new();
    let units = planned
        .items
        .iter()
        .map(|i| {
            let (candidates, large) = index.candidates(i);
            if !large.is_empty() {
                too_large.push((i, large));
            }
            Unit {
                solo: planned.due.contains(&i.digest),
                ..Unit::new(i.digest.clone(), candidates)
            }
        })
        .collect();
    ctx.warn_too_large(pods, &index, &too_large).await;
    units
}

pub async fn work_list(ctx: &Context, pods: &[Arc<WatchedPod>], running: &BTreeSet<String>) -> Vec<WorkItem> {
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
/// Splits off the items a fresh cache record covers and annotates their pods without a Job;
/// then collects records of images that stopped running. Items whose pods are all annotated
/// already stay only when their record was made by another job image or other settings (they
/// are processed again under today's). A cache that cannot be read is logged and skipped: the
/// cycle goes on as if it were empty.
pub async fn apply_cache(
    ctx: &Context,
    pods: &[Arc<WatchedPod>],
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
    {
        // What the records say was found: the metrics count it after a restart too.
        let mut found = ctx.found.lock().expect("lock");
        let mut drift = ctx.recorded_drift.lock().expect("lock");
        drift.clear();
        for (digest, record) in &loaded.own {
            // Every record of ours, with a status or not: drift writes only to these.
            drift.insert(
                digest.clone(),
                record
                    .status
                    .as_ref()
                    .map(|s| s.drift.clone())
                    .unwrap_or_default(),
            );
            if let Some(status) = &record.status {
                found.insert(digest.clone(), Found::of_status(status));
            }
        }
    }
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
        // A digest only a source lists has no pod to annotate: a hit is nothing to do.
        if item.pods.is_empty() {
            if decision != CacheDecision::Hit {
                ctx.metrics.cache(false);
                misses.push(item);
            }
            continue;
        }
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
        let source = grant::Source {
            events: "image(s) catalogued earlier, found in the digest cache (no Job)".into(),
            refused: "the digest cache".into(),
        };
        let report = grant::done(ctx, pods, &digests, &source).await;
        info!(
            images = hits.len(),
            patched = report.patched.len(),
            "cache hits: annotated without a Job"
        );
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

/// Splits off the items backing off (no Job before their next attempt) and names those due
/// again (each runs alone). Forgets failures of digests that no longer run.
pub fn gate(
    ctx: &Context,
    running: &BTreeSet<String>,
    items: Vec<WorkItem>,
) -> (Vec<WorkItem>, HashSet<String>) {
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

/// Reads the service accounts and pull secrets the work list refers to. Anything missing or
/// malformed is a warning naming it; the image is then processed without those credentials.
pub async fn credential_index(ctx: &Context, items: &[WorkItem]) -> (CredentialIndex, Unusable) {
    let mut unusable = Unusable::new();
    let mut index = CredentialIndex {
        max_credential_size: ctx.settings.max_credential_size,
        ..Default::default()
    };
    // An ImageSource's credential has no service account.
    let accounts: BTreeSet<(String, String)> = items
        .iter()
        .flat_map(|i| &i.sources)
        .filter(|s| !s.service_account.is_empty())
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
        match pull_secret(ctx, &ns, &name).await {
            Ok(entries) => {
                index.secrets.insert((ns, name), entries);
            }
            Err(why) => {
                unusable.insert((ns, name), why);
            }
        }
    }
    if let Some(name) = &ctx.settings.fallback_pull_secret {
        let key = (ctx.namespace.clone(), name.clone());
        if !index.secrets.contains_key(&key) {
            // Not told to pods: none of them named it.
            if let Ok(entries) = pull_secret(ctx, &key.0, &key.1).await {
                index.secrets.insert(key.clone(), entries);
            }
        }
        index.fallback = Some(key);
    }
    (index, unusable)
}

/// Pull secrets that could not be used, and why (never a value of theirs).
pub type Unusable = std::collections::BTreeMap<worklist::SecretKey, String>;

/// The credentials of a pull secret, or why it cannot be used: it does not exist, it is not a
/// docker config, or it could not be read (logged; the image is processed without it).
pub async fn pull_secret(ctx: &Context, ns: &str, name: &str) -> Result<Vec<credentials::AuthEntry>, String> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let why = match api.get_opt(name).await {
        Ok(Some(secret)) => match credentials::parse_pull_secret(&secret) {
            Ok(entries) => return Ok(entries),
            Err(e) => format!("it {e}"),
        },
        Ok(None) => "it does not exist".to_string(),
        Err(e) => {
            warn!(namespace = %ns, secret = %name, error = %e, "could not read pull secret");
            // The API server's message may be long; the pod's Event says only this.
            return Err("it could not be read".to_string());
        }
    };
    warn!(namespace = %ns, secret = %name, "pull secret {ns}/{name} skipped: {why}");
    Err(why)
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
