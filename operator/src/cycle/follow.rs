//! Step 4, follow: a launched (or adopted) Job is watched until it ends, its config Secret
//! checked, and a Job that outlives its deadline given up.

use std::time::Duration;

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Pod, Secret},
};
use kube::{
    Api,
    api::{DeleteParams, ListParams},
    runtime::wait::await_condition,
};
use tracing::warn;

use super::{
    context::Context,
    job_state::{self, JobOutcome},
};

/// The label the job controller puts on a Job's pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// How often a running Job's config Secret is checked for.
pub const CONFIG_CHECK: Duration = Duration::from_secs(10);

/// The newest pod of a Job, if any is left.
pub async fn job_pod(ctx: &Context, job_name: &str) -> Option<Pod> {
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
pub async fn config_lost(ctx: &Context, job_name: &str) -> bool {
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

/// When [`wait`] stops waiting for a Job whose deadline is `deadline` from `now`: five minutes
/// after it. Checked: `now + deadline` panics for an `activeDeadlineSeconds` near i64::MAX;
/// such a Job is waited for about 30 years (tokio's own "far future").
pub fn give_up_at(now: tokio::time::Instant, deadline: Duration) -> tokio::time::Instant {
    now.checked_add(deadline.saturating_add(Duration::from_secs(300)))
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86400))
}

/// Waits for the Job's terminal condition by a watch. Ends it at once when its pod can never
/// start (the config Secret is gone), and gives up (deleting the Job) only well after its own
/// deadline, should the job controller never report one.
pub async fn wait(ctx: &Context, job: &Job) -> Job {
    /// `sbomjob_jobs_in_flight` counts the Job while it is followed, also when the cycle is
    /// dropped mid-wait (lost Lease, shutdown).
    struct InFlight<'a>(&'a crate::metrics::Metrics);
    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            self.0.job_in_flight(false);
        }
    }
    ctx.metrics.job_in_flight(true);
    let _in_flight = InFlight(&ctx.metrics);
    until_ended(ctx, job).await
}

async fn until_ended(ctx: &Context, job: &Job) -> Job {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let job_name = job_state::name(job);
    let deadline = job
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .map_or(ctx.settings.job.timeout, |s| Duration::from_secs(s.max(0) as u64));
    let give_up = give_up_at(tokio::time::Instant::now(), deadline);
    let finished = |j: Option<&Job>| j.is_none_or(|j| job_state::outcome(j) != JobOutcome::Running);
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
                // Following a Job that runs is progress (a hung request below is not).
                ctx.health.beat();
                if config_lost(ctx, &job_name).await {
                    warn!(job = %job_name, "the Job's config Secret is gone before its pod started; ending the Job");
                    let _ = jobs.delete(&job_name, &DeleteParams::background()).await;
                    return gone(job, job_state::CONFIG_GONE, "the config Secret was deleted before the job pod could mount it");
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
pub fn gone(job: &Job, reason: &str, message: &str) -> Job {
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
