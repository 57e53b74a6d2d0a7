//! The operator's main loop: caches of pods (and namespaces), then cycles on the schedule.
//!
//! One cycle runs at a time. A cycle waits for its Jobs, so schedule ticks that pass meanwhile
//! are coalesced into one cycle right after it. A cycle runs at start-up too, after the caches
//! are filled and any Job left by an earlier operator is adopted.

use std::{future::ready, sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    client::ClientBuilder,
    runtime::{
        WatchStreamExt,
        events::{Recorder, Reporter},
        reflector::{self, Store},
        watcher,
    },
};
use tokio::sync::watch;
use tracing::{Instrument, error, info, info_span, warn};

use crate::{
    Error, Result, ResultExt as _,
    admin::{AdminServer, Ready},
    api_metrics::CountLayer,
    cache::{self, JobIdentity},
    cycle,
    fence::{Fence, FenceLayer},
    health::Health,
    leader::{self, Leadership},
    metrics::{CycleResult, Metrics},
    pod::WirePod,
    pod_events,
    pod_store::{self, PodStore},
    schedule::Schedule,
    settings::Settings,
    sources,
    trigger::{self, NewDigests},
};

/// After a failed cycle (API unreachable, ...), try again this soon rather than at the next tick.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(30);

pub async fn run(settings: Settings) -> Result<()> {
    let kube_config = kube::Config::infer()
        .await
        .map_err(|e| Error::KubeConfig(e.to_string()))?;
    // Every write of the operator passes the fence: only while this replica holds the Lease.
    let fence = if settings.ops.leader_election {
        Fence::closed()
    } else {
        Fence::always()
    };
    let metrics = Arc::new(Metrics::new());
    let client = ClientBuilder::try_from(kube_config.clone())
        .context(|| "connecting to the Kubernetes API".into())?
        .with_layer(&FenceLayer(fence.clone()))
        .with_layer(&CountLayer(metrics.clone()))
        .build();
    // The Lease has a client of its own: not fenced, and without kube's retries of 429/503/504
    // (each Lease request has a timeout well inside the renew deadline instead).
    let mut lease_config = kube_config;
    lease_config.default_retry = false;
    let lease_client =
        Client::try_from(lease_config).context(|| "connecting to the Kubernetes API".into())?;
    let namespace = settings
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    info!(
        version = env!("CARGO_PKG_VERSION"),
        namespace = %namespace,
        job_image = %settings.job.image,
        schedule = ?settings.schedule,
        pod_label_selector = ?settings.pod_label_selector,
        namespace_label_selector = ?settings.namespace_label_selector,
        annotation_prefix = %settings.annotation_prefix,
        forwarded_env = ?settings.job.env.iter().map(|e| e.name()).collect::<Vec<_>>(),
        "sbomjob-operator starting"
    );

    let ready = Ready::default();
    let health = Health::new(settings.ops.health_timeout);
    let admin = AdminServer::bind(
        settings.ops.admin_addr,
        metrics.clone(),
        ready.clone(),
        health.clone(),
    )
    .await?;
    if let Ok(addr) = admin.local_addr() {
        info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    tokio::spawn(admin.run());

    let namespaces = settings
        .namespace_label_selector
        .as_deref()
        .map(|sel| namespace_cache(&client, sel, health.clone()));
    let (new_digests, asks) = trigger::channel(&settings.annotation_prefix, namespaces.clone());
    let pods = pod_cache(
        &client,
        settings.pod_label_selector.as_deref(),
        &settings.annotation_prefix,
        new_digests.clone(),
        health.clone(),
    );
    pods.wait_until_ready()
        .await
        .map_err(|_| Error::CacheNotReady("pod"))?;
    if let Some(ns) = &namespaces {
        ns.wait_until_ready()
            .await
            .map_err(|_| Error::CacheNotReady("namespace"))?;
    }
    info!(pods = pods.len(), "pod store filled");
    ready.set();

    let cache_ttl = match settings.ops.cache_ttl {
        Some(ttl)
            if crd_installed::<cache::ImageRecord>(&client, "running without the digest cache").await =>
        {
            Some(ttl)
        }
        _ => None,
    };
    // This replica: the Lease holder identity, the Events' reporting instance, the creator named
    // on its Jobs.
    let identity = leader::identity(settings.pod_name.as_deref());
    let leadership = if settings.ops.leader_election {
        Leadership::start(
            lease_client,
            leader::Config::new(&namespace, &settings.ops, &identity),
            metrics.clone(),
            fence,
        )
    } else {
        Leadership::always(&metrics)
    };
    let sources = match (cache_ttl, &settings.ops.source_registries) {
        (_, sources::spec::AllowedRegistries::None) => None,
        (None, _) => {
            warn!("SBOM_SOURCE_REGISTRIES is set but the digest cache is off: no registry sources");
            None
        }
        (Some(_), _) => crd_installed::<sources::spec::ImageSource>(&client, "no registry sources")
            .await
            .then(|| watched::<sources::spec::ImageSource>(&client)),
    };
    if let Some(store) = &sources {
        let task = sources::task::Sources {
            client: client.clone(),
            store: store.clone(),
            namespaces: namespaces.clone(),
            allowed: settings.ops.source_registries.clone(),
            insecure: settings.ops.lookup.insecure.clone(),
            metrics: metrics.clone(),
            new_digests: new_digests.clone(),
            limits: Default::default(),
        };
        tokio::spawn(task.run(leadership.subscribe()));
    }
    type Trust = crate::provenance::policy::TrustPolicy;
    let trust = match cache_ttl {
        Some(_) if crd_installed::<Trust>(&client, "provenance is not checked").await => {
            let store = watched::<Trust>(&client);
            // The first cycle must see the policies (a watch that never lists is logged).
            let _ = tokio::time::timeout(Duration::from_secs(30), store.wait_until_ready()).await;
            Some(store)
        }
        _ => None,
    };
    let instance = identity;
    let reporter = Reporter {
        controller: pod_events::CONTROLLER.into(),
        instance: Some(instance.clone()),
    };
    let ctx = cycle::Context {
        recorder: Recorder::new(client.clone(), reporter),
        identity: JobIdentity::from_settings(&settings.job),
        client,
        settings,
        namespace,
        pods,
        namespaces,
        sources,
        metrics,
        cache_ttl,
        new_digests,
        instance,
        failures: Default::default(),
        refused: Default::default(),
        job_image_digest: Default::default(),
        skip_warned: Default::default(),
        found: Default::default(),
        results_counted: Default::default(),
        health,
        drift_tags: Default::default(),
        trust,
        provenance: Default::default(),
        recorded_drift: Default::default(),
    };
    run_loop(&ctx, leadership.subscribe(), asks).await;
    ready.clear();
    leadership.release().await;
    info!("sbomjob-operator stopped; running Jobs are adopted by the next leader or start");
    Ok(())
}

/// Whether the CRD of `K` is installed (a list of at most one object answers); when it is not,
/// or cannot be read, says so with what that means (`without`): the operator runs on without it.
async fn crd_installed<K>(client: &Client, without: &str) -> bool
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let kind = K::kind(&());
    match api
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(e)) if e.code == 404 => {
            warn!("the {kind} CRD is not installed: {without}");
            false
        }
        Err(e) => {
            warn!(error = %e, "cannot read {kind} objects: {without}");
            false
        }
    }
}

/// Why the next cycle runs.
enum Wake {
    Schedule,
    NewImage,
}

async fn run_loop(ctx: &cycle::Context, mut leader: watch::Receiver<bool>, mut asks: trigger::Asks) {
    let mut shutdown = std::pin::pin!(shutdown_signal());
    // `None`: the schedule fires no more; only new images start cycles.
    let mut due = Some(Utc::now());
    let debounce = ctx.settings.ops.debounce;
    // While it waits, the loop shows it is alive ([`crate::health`]).
    let mut beat = tokio::time::interval(ctx.health.beat_every());
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wake = loop {
            tokio::select! {
                _ = sleep_until(due) => break Wake::Schedule,
                Some(()) = asks.next(debounce) => break Wake::NewImage,
                _ = beat.tick() => ctx.health.beat(),
                _ = &mut shutdown => return,
            }
        };
        if !*leader.borrow() {
            info!("not the leader: waiting for the Lease before any cycle");
            loop {
                tokio::select! {
                    _ = leader.wait_for(|l| *l) => break,
                    _ = beat.tick() => ctx.health.beat(),
                    _ = &mut shutdown => return,
                }
            }
        }
        ctx.health.beat();
        let id = crate::objects::cycle_id(&ctx.settings.ops.release, Utc::now(), rand::random());
        let span = info_span!("cycle", id = %id);
        span.in_scope(|| match wake {
            Wake::Schedule => info!("cycle starts (schedule)"),
            Wake::NewImage => info!("cycle starts (new image running)"),
        });
        let started = std::time::Instant::now();
        let result = tokio::select! {
            r = cycle::run(ctx, &id).instrument(span.clone()) => Some(r),
            // Another replica leads now: it adopts the Jobs of this cycle.
            _ = leader.wait_for(|l| !*l) => None,
            _ = &mut shutdown => return,
        };
        // Ticks missed while the cycle ran collapse into the next one.
        let ended = match result {
            Some(Ok(_)) => {
                ctx.metrics.cycle_done(CycleResult::Ok, started.elapsed());
                Ended::Ok
            }
            Some(Err(e)) => {
                ctx.metrics.cycle_done(CycleResult::Error, started.elapsed());
                span.in_scope(|| error!(error = %e, "cycle failed; retrying soon"));
                Ended::Failed
            }
            None => {
                span.in_scope(|| warn!("leadership lost during the cycle; stopped"));
                Ended::LostLease
            }
        };
        due = due_after(&ctx.settings.schedule, Utc::now(), ended);
        match due {
            Some(due) => info!(next = %due, "next scheduled cycle"),
            None => warn!("the schedule fires no more: only new images start cycles"),
        }
    }
}

/// How a cycle ended, for when the next is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Ok,
    Failed,
    /// Stopped because this replica lost the Lease.
    LostLease,
}

/// When the next cycle is due after one that `ended`: a cycle stopped by a lost Lease left Jobs
/// to adopt and images unprocessed, so the next is due at once; the loop waits for the Lease
/// first, and runs it the moment this replica leads again (a brief stall of the API server
/// must not leave everything to the next tick, maybe hours away). Otherwise [`next_due`].
fn due_after(schedule: &Schedule, now: DateTime<Utc>, ended: Ended) -> Option<DateTime<Utc>> {
    match ended {
        Ended::LostLease => Some(now),
        Ended::Ok => next_due(schedule, now, false),
        Ended::Failed => next_due(schedule, now, true),
    }
}

/// When the next cycle is due: the schedule's next time after `now`, or sooner after a failed
/// cycle. `None` when the schedule has no next time (it was checked at start-up to have one,
/// but a cron expression with a year can run out).
fn next_due(schedule: &Schedule, now: DateTime<Utc>, failed: bool) -> Option<DateTime<Utc>> {
    let next = schedule.next_after(now);
    if !failed {
        return next;
    }
    let retry = TimeDelta::from_std(RETRY_AFTER_ERROR)
        .ok()
        .and_then(|d| now.checked_add_signed(d));
    match (next, retry) {
        (Some(next), Some(retry)) => Some(next.min(retry)),
        (next, retry) => next.or(retry),
    }
}

/// Sleeps until `due` (at once if it is past); never returns for `None`.
async fn sleep_until(due: Option<DateTime<Utc>>) {
    match due {
        // No overflow: tokio caps a sleep at about 30 years.
        Some(due) => tokio::time::sleep((due - Utc::now()).to_std().unwrap_or_default()).await,
        None => std::future::pending().await,
    }
}

async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    info!("shutting down");
}

/// Pods, as much of them as cycles read (see [`crate::pod_store`]): 10,000 pods fit in a few MiB.
fn pod_cache(
    client: &Client,
    selector: Option<&str>,
    prefix: &str,
    new_digests: NewDigests,
    health: Health,
) -> PodStore {
    let api: Api<WirePod> = Api::all(client.clone());
    let mut config = watcher::Config::default();
    if let Some(sel) = selector {
        config = config.labels(sel);
    }
    let (reader, mut writer) = pod_store::store(prefix);
    let stream = watcher(api, config).default_backoff().for_each(move |event| {
        match event {
            Ok(event) => {
                health.watch_ok("pod");
                // Changes after the initial list; the start-up cycle covers what was listed.
                if let Some(pod) = writer.apply(event) {
                    new_digests.observe(&pod)
                }
            }
            Err(e) => {
                health.watch_failed("pod");
                warn!(error = %e, "pod watch failed; retrying")
            }
        }
        ready(())
    });
    tokio::spawn(stream);
    reader
}

/// A reflector of every object of a custom resource the operator reads (ImageSources,
/// TrustPolicies): kept current in the background, its watch errors logged and retried.
fn watched<K>(client: &Client) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + kube::ResourceExt
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o| o.meta_mut().managed_fields = None)
        .reflect(writer)
        .for_each(|event| {
            if let Err(e) = event {
                warn!(kind = K::kind(&()).as_ref(), error = %e, "watch failed; retrying");
            }
            ready(())
        });
    tokio::spawn(stream);
    reader
}

fn namespace_cache(client: &Client, selector: &str, health: Health) -> Store<Namespace> {
    let api: Api<Namespace> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().labels(selector))
        .default_backoff()
        .modify(|ns| ns.metadata.managed_fields = None)
        .reflect(writer)
        .for_each(move |event| {
            match event {
                Ok(_) => health.watch_ok("namespace"),
                Err(e) => {
                    health.watch_failed("namespace");
                    warn!(error = %e, "namespace watch failed; retrying")
                }
            }
            ready(())
        });
    tokio::spawn(stream);
    reader
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn next_due_follows_the_schedule_and_retries_a_failed_cycle_sooner() {
        let hourly = Schedule::Interval(Duration::from_secs(3600));
        assert_eq!(next_due(&hourly, now(), false), Some(now() + TimeDelta::hours(1)));
        assert_eq!(
            next_due(&hourly, now(), true),
            Some(now() + TimeDelta::seconds(30))
        );
        let often = Schedule::Interval(Duration::from_secs(10));
        assert_eq!(
            next_due(&often, now(), true),
            Some(now() + TimeDelta::seconds(10))
        );
    }

    #[test]
    fn a_cycle_stopped_by_a_lost_lease_is_due_again_at_once() {
        let hourly = Schedule::Interval(Duration::from_secs(3600));
        assert_eq!(due_after(&hourly, now(), Ended::LostLease), Some(now()));
        assert_eq!(
            due_after(&hourly, now(), Ended::Ok),
            Some(now() + TimeDelta::hours(1))
        );
        assert_eq!(
            due_after(&hourly, now(), Ended::Failed),
            Some(now() + TimeDelta::seconds(30))
        );
    }

    #[test]
    fn next_due_does_not_overflow_and_has_no_hourly_fallback() {
        for d in [Duration::from_secs(10_000_000_000_000), Duration::MAX] {
            let huge = Schedule::Interval(d);
            assert_eq!(next_due(&huge, now(), false), None, "{d:?}");
            assert_eq!(
                next_due(&huge, now(), true),
                Some(now() + TimeDelta::seconds(30)),
                "{d:?}"
            );
        }
        // At the end of chrono's time nothing is due, not even a retry, and nothing panics.
        assert_eq!(
            next_due(
                &Schedule::Interval(Duration::from_secs(1)),
                DateTime::<Utc>::MAX_UTC,
                true
            ),
            None
        );
    }
}
