//! One cycle: finish or wait for earlier Jobs, snapshot, work list, credentials, Jobs.

use std::{
    collections::{BTreeSet, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::{StreamExt, stream};
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Namespace, Secret, ServiceAccount},
};
use kube::{Api, Client, runtime::events::Recorder, runtime::reflector::Store};
use tracing::{info, warn};

use crate::{
    Result, annotate,
    cache::{self, CacheDecision, JobIdentity},
    credentials,
    jobs::{self, Outcome},
    metrics::Metrics,
    objects::{self, JobPlan},
    pod::CachedPod,
    pod_events,
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
    /// `reportingInstance` of the operator's Events ([`pod_events::reporting_instance`]).
    pub instance: String,
}

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
    let (running, ended) = blocking(jobs::unfinished(ctx).await?);
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
        if jobs::finish(ctx, job).await? == Outcome::Complete {
            just_done.extend(jobs::digests(job).into_iter().map(String::from));
        }
    }
    jobs::delete_orphan_secrets(ctx).await?;

    // 2. What is left to do; with the cache, what a fresh record covers is annotated at once.
    let pods = ctx.snapshot();
    let items = without(work_list(ctx, &pods), &just_done);
    let items = match ctx.cache_ttl {
        Some(_) => apply_cache(ctx, &pods, items).await,
        None => items,
    };
    report.images = items.len();
    if items.is_empty() {
        info!("nothing to process; no Job created");
        return Ok(report);
    }

    // 3. Credentials and Jobs.
    let index = credential_index(ctx, &items).await;
    let images = items
        .iter()
        .map(|i| (i.digest.clone(), index.image_config(i)))
        .collect();
    let plans = objects::plan_jobs(cycle, images, ctx.settings.job.max_images);
    info!(images = items.len(), jobs = plans.len(), "processing");
    report.jobs = stream::iter(plans)
        .map(|plan| run_plan(ctx, plan))
        .buffer_unordered(ctx.settings.job.max_parallel)
        .collect()
        .await;
    info!(outcome = ?jobs::summary(&report.jobs), "cycle done");
    Ok(report)
}

impl Context {
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

fn work_list(ctx: &Context, pods: &[Arc<CachedPod>]) -> Vec<WorkItem> {
    ctx.new_digests.remember(running_digests(pods));
    let (items, skipped) = worklist::build(&Snapshot {
        pods,
        annotation_prefix: &ctx.settings.annotation_prefix,
        ignore_annotations: ctx.settings.ignore_annotations,
        cluster_id: &ctx.settings.cluster_id,
    });
    for s in skipped {
        warn!(namespace = %s.namespace, pod = %s.pod, container = %s.container, reason = %s.reason, "container skipped");
    }
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
/// then collects records of images that stopped running. A cache that cannot be read is
/// logged and skipped: the cycle goes on as if it were empty.
async fn apply_cache(ctx: &Context, pods: &[Arc<CachedPod>], items: Vec<WorkItem>) -> Vec<WorkItem> {
    let records = match cache::load(&ctx.client).await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "could not read the digest cache; processing every image");
            return items;
        }
    };
    let now = chrono::Utc::now();
    let index = cache::by_digest(&records);
    let (hits, misses): (Vec<WorkItem>, Vec<WorkItem>) = items.into_iter().partition(|item| {
        let decision = cache::lookup(index.get(item.digest.as_str()).copied(), &ctx.identity, now);
        ctx.metrics.cache(decision == CacheDecision::Hit);
        decision == CacheDecision::Hit
    });
    if !hits.is_empty() {
        let digests: HashSet<&str> = hits.iter().map(|i| i.digest.as_str()).collect();
        let prefix = &ctx.settings.annotation_prefix;
        let report = annotate::annotate(&ctx.client, pods, prefix, &digests).await;
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
    }
    let running = running_digests(pods);
    let running: HashSet<&str> = running.iter().map(String::as_str).collect();
    let sweep = cache::sweep(&records, &running, now, ctx.settings.ops.cache_grace);
    if let Err(e) = cache::delete(&ctx.client, &sweep.delete).await {
        warn!(error = %e, "could not delete stale cache records");
    }
    if let Err(e) = cache::write(&ctx.client, &sweep.update).await {
        warn!(error = %e, "could not update cache records");
    }
    misses
}

async fn run_plan(ctx: &Context, plan: JobPlan) -> (String, Outcome) {
    let job = match jobs::launch(ctx, &plan).await {
        Ok(job) => job,
        Err(e) => {
            warn!(job = %plan.name, error = %e, "could not create Job; its images wait for the next cycle");
            return (
                plan.name,
                Outcome::Failed {
                    reason: "CreateFailed".into(),
                    message: e.to_string(),
                },
            );
        }
    };
    let ended = jobs::wait(ctx, &job).await;
    let outcome = match jobs::finish(ctx, &ended).await {
        Ok(o) => o,
        Err(e) => {
            warn!(job = %plan.name, error = %e, "could not finish Job; the next cycle does");
            jobs::outcome(&ended)
        }
    };
    (plan.name, outcome)
}

/// Reads the service accounts and pull secrets the work list refers to. Anything missing or
/// malformed is a warning naming it; the image is then processed without those credentials.
async fn credential_index(ctx: &Context, items: &[WorkItem]) -> CredentialIndex {
    let mut index = CredentialIndex::default();
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
        index.fallback = pull_secret(ctx, &ctx.namespace, name).await.unwrap_or_default();
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
            cluster_id: "c",
        });
        let done: HashSet<String> = [digest(1)].into();
        let left: Vec<String> = without(items, &done).into_iter().map(|i| i.digest).collect();
        assert_eq!(left, [digest(2)]);
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
