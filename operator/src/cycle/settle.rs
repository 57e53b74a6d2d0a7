//! Step 1, settle earlier Jobs: ours still running (an earlier cycle, or one from before a
//! restart) are waited for and finished, ended ones finished now, a launch cut short resumed or
//! deleted, and Secrets no Job owns removed. A cycle never overlaps another.

use std::collections::HashSet;

use futures::{StreamExt, stream};
use k8s_openapi::api::{batch::v1::Job, core::v1::Secret};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PartialObjectMeta},
};
use tracing::{info, warn};

use crate::{Result, ResultExt as _, is_not_found, objects};

use super::{
    context::Context,
    follow, grant,
    job_state::{self, JobOutcome},
    launch,
};

/// What settling found.
pub struct Settled {
    /// Jobs of earlier cycles waited for or finished.
    pub adopted: usize,
    /// What those Jobs completed: done, even before the pod store shows the annotations just
    /// written (without this, a cycle that adopted a Job would make a second Job for its images).
    pub completed: HashSet<String>,
}

/// Jobs of ours still running (an earlier cycle, or one from before a restart) are waited for
/// and finished; ended ones are finished now; a Job left suspended by a launch cut short is
/// resumed or deleted first; then Secrets no Job owns are deleted.
pub async fn earlier_jobs(ctx: &Context) -> Result<Settled> {
    let mut unfinished = Vec::new();
    for job in self::unfinished(ctx).await? {
        unfinished.extend(adopt(ctx, job).await?);
    }
    let (running, ended) = blocking(unfinished);
    let adopted = running.len() + ended.len();
    if !running.is_empty() {
        let names: Vec<_> = running.iter().filter_map(|j| j.metadata.name.clone()).collect();
        info!(jobs = ?names, "blocked: waiting for running Jobs before creating any");
    }
    let waited = stream::iter(running)
        .map(|j| async move { follow::wait(ctx, &j).await })
        .buffer_unordered(16);
    let to_finish: Vec<Job> = ended
        .into_iter()
        .chain(waited.collect::<Vec<_>>().await)
        .collect();
    let mut completed = HashSet::new();
    for job in &to_finish {
        if grant::finish(ctx, job).await?.outcome == JobOutcome::Complete {
            completed.extend(job_state::digests(job).into_iter().map(String::from));
        }
    }
    delete_orphan_secrets(ctx).await?;
    Ok(Settled { adopted, completed })
}

/// Splits our unfinished Jobs into those still running (they block the cycle) and those that
/// ended but were never finished.
pub fn blocking(unfinished: Vec<Job>) -> (Vec<Job>, Vec<Job>) {
    unfinished
        .into_iter()
        .partition(|j| job_state::outcome(j) == JobOutcome::Running)
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
        .filter(|j| !job_state::is_done(j) && j.metadata.deletion_timestamp.is_none())
        .collect();
    list.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
    Ok(list)
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
        job_state::is_suspended(job) && job_state::outcome(job) == JobOutcome::Running,
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
    if !job_state::is_suspended(&job) {
        return Ok(Some(job));
    }
    let job_name = job_state::name(&job);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let exists = secrets
        .get_metadata_opt(&job_name)
        .await
        .context(|| format!("looking for Secret {}/{job_name}", ctx.namespace))?
        .is_some();
    match adoption(&job, exists) {
        Adoption::Keep => Ok(Some(job)),
        Adoption::Resume => {
            let resumed = launch::resume(ctx, &job_name)
                .await
                .context(|| format!("resuming Job {}/{job_name}", ctx.namespace))?;
            info!(job = %job_name, "resumed a Job whose launch was cut short");
            Ok(Some(resumed))
        }
        Adoption::Delete => {
            info!(job = %job_name, "deleting a suspended Job without its config Secret; its images are planned again");
            launch::abandon(ctx, &job_name).await;
            Ok(None)
        }
    }
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
