//! One cycle, as a pipeline: [`settle`] earlier Jobs -> [`plan`] (work list, cache, back-off,
//! credentials) -> [`launch`] each Job -> [`follow`] it until it ends -> [`grant`] what is done
//! (annotations, Events, records, metrics) -> [`drift`] of the running tags. Failed Jobs are
//! re-planned in the same cycle.
//! [`job_state`] reads Job objects for every step; [`context::Context`] is what every step needs.

pub mod context;
pub mod drift;
pub mod follow;
pub mod grant;
pub mod job_state;
pub mod launch;
pub mod plan;
pub mod provenance;
pub mod settle;

pub use context::Context;

#[cfg(test)]
mod shell_tests;

use std::collections::VecDeque;

use futures::{StreamExt, stream::FuturesUnordered};
use tracing::{info, warn};

use crate::{
    Result,
    objects::{self, JobPlan},
    replan::{self, Evidence, Unit},
};

use self::job_state::{Finished, JobOutcome};

/// How a cycle ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CycleReport {
    /// Jobs of earlier cycles this one waited for or finished.
    pub adopted: usize,
    pub images: usize,
    pub jobs: Vec<(String, JobOutcome)>,
}

pub async fn run(ctx: &Context, cycle: &str) -> Result<CycleReport> {
    // 1. Never overlap: earlier Jobs of ours are waited for and finished first.
    let settled = settle::earlier_jobs(ctx).await?;
    ctx.health.beat();
    // 2. What is left to do: the cache's hits are granted at once, images backing off wait.
    let pods = ctx.snapshot();
    let planned = plan::images(ctx, &pods, &settled.completed).await;
    ctx.health.beat();
    let mut report = CycleReport {
        adopted: settled.adopted,
        images: planned.items.len(),
        jobs: Vec::new(),
    };
    if planned.items.is_empty() {
        ctx.report_found(&pods);
        drift::refresh(ctx, &pods).await;
        info!("nothing to process; no Job created");
        return Ok(report);
    }
    // 3-5. Credentials, then Jobs (launched, followed, granted) until every image succeeded,
    //    backed off or waits.
    let units = plan::units(ctx, &pods, &planned).await;
    // 3a. Where the images came from, verified before anything else reads the registry.
    provenance::check(ctx, &units).await;
    // 3b. The registry as a shared cache: digests whose SBOM is attached already need no Job.
    let (units, hits) = crate::lookup::in_registries(
        &ctx.settings.ops.lookup,
        &ctx.settings.job,
        &ctx.identity.settings_hash,
        &ctx.metrics,
        units,
    )
    .await;
    ctx.health.beat();
    if !hits.is_empty() {
        grant::found_in_registry(ctx, &pods, &hits).await;
    }
    // The snapshot is let go while Jobs run: each annotation replaces a pod in the store, and
    // a snapshot kept alive would hold every replaced copy until the cycle ends (twice the pods).
    drop(pods);
    report.jobs = run_jobs(ctx, cycle, units).await;
    let pods = ctx.snapshot();
    ctx.report_found(&pods);
    // 6. Drift, after the Jobs: a slow registry never delays an SBOM.
    drift::refresh(ctx, &pods).await;
    info!(outcome = ?job_state::summary(&report.jobs), "cycle done");
    Ok(report)
}

/// Runs the units' Jobs, at most `max_parallel` at once and `max_per_cycle` in all. A failed
/// Job's images are re-planned at once ([`replan::after_failure`]): failing ones alone, the rest
/// together, so the healthy images of a Job that also held a bad one are annotated in this cycle.
async fn run_jobs(ctx: &Context, cycle: &str, units: Vec<Unit>) -> Vec<(String, JobOutcome)> {
    let max_images = ctx.settings.job.max_images;
    let mut next = 0;
    let mut first = objects::plan_units(cycle, units, max_images, &mut next);
    let (mut budget, over) = plan::JobBudget::first(ctx.settings.job.max_per_cycle, &mut first);
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
        ctx.health.beat();
        if let JobOutcome::Failed { reason, .. } = &finished.outcome {
            let replan = replan::after_failure(plan.units.clone(), &plan.elements, &finished.evidence);
            let why = format!("{reason}: {}", finished.detail);
            for unit in &replan.exhausted {
                grant::back_off(ctx, unit, &plan.name, &why).await;
            }
            if !replan.wait.is_empty() {
                grant::waits(ctx, &plan.name, &replan.wait, reason, &why).await;
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
                    plan::Limit::Cycle => deferred += left.len(),
                    plan::Limit::Replan => {
                        warn!(job = %plan.name, images = left.len(), "re-planning budget of this cycle spent; these images wait for the next cycle")
                    }
                }
                grant::waits(ctx, &plan.name, &left, reason, &why).await;
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

async fn run_plan(ctx: &Context, plan: JobPlan) -> (JobPlan, Finished) {
    let job = match launch::launch(ctx, &plan).await {
        Ok(job) => job,
        Err(e) => {
            warn!(job = %plan.name, error = %e, "could not create Job; its images wait for the next cycle");
            let finished = Finished {
                outcome: JobOutcome::Failed {
                    reason: "CreateFailed".into(),
                    message: e.to_string(),
                },
                evidence: Evidence::NotRun,
                detail: "the Job could not be created".into(),
            };
            return (plan, finished);
        }
    };
    let ended = follow::wait(ctx, &job).await;
    let finished = match grant::finish(ctx, &ended).await {
        Ok(f) => f,
        Err(e) => {
            warn!(job = %plan.name, error = %e, "could not finish Job; the next cycle does");
            // Not re-planned: until its bookkeeping is done, its images are not known to be
            // anything but in progress.
            Finished {
                outcome: job_state::outcome(&ended),
                evidence: Evidence::NotRun,
                detail: "its bookkeeping failed".into(),
            }
        }
    };
    (plan, finished)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use kube::api::ObjectMeta;

    use super::*;
    use std::{collections::HashSet, sync::Arc};

    use k8s_openapi::api::batch::v1::Job;

    use crate::{
        pod::WatchedPod,
        worklist::{self, Snapshot},
    };

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
        let pods: Vec<Arc<WatchedPod>> = vec![
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
        let left: Vec<String> = plan::without(items, &done)
            .into_iter()
            .map(|i| i.digest)
            .collect();
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
            let (mut budget, over) = plan::JobBudget::first(limit, &mut first);
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
        let (mut budget, over) = plan::JobBudget::first(100, &mut first);
        assert!(over.is_empty());
        // 10 left in the cycle, 90 in the re-planning budget: the cycle's limit holds.
        let (over, limit) = budget.again(&mut vec![(); 12]).unwrap();
        assert_eq!((over.len(), limit), (2, plan::Limit::Cycle));
        let mut first = vec![(); 2];
        let (mut budget, _) = plan::JobBudget::first(100, &mut first);
        // 98 left in the cycle, 32 to re-plan: the re-planning budget holds.
        let (over, limit) = budget.again(&mut vec![(); 40]).unwrap();
        assert_eq!((over.len(), limit), (8, plan::Limit::Replan));
        assert_eq!(budget.again(&mut Vec::<()>::new()), None);
    }

    #[test]
    fn running_jobs_block_and_ended_ones_are_finished() {
        let (running, ended) = settle::blocking(vec![
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
        assert_eq!(settle::blocking(vec![]), (vec![], vec![]));
    }
}
