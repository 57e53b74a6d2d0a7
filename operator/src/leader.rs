//! Leader election on a `coordination.k8s.io/v1` Lease in the operator's namespace, so that two
//! replicas (or the old and new pod of a rolling update) never both create Jobs.
//!
//! The scheme is client-go's: every write is a create or a replace carrying the resourceVersion
//! that was read, so of two replicas racing for the Lease exactly one wins (the other gets 409).
//! The holder renews every `duration / 3`. Others take over once the Lease has not changed for
//! `duration` by their own clock, counted from when they first saw its current version (the
//! holder's `renewTime` may bring that earlier by at most a poll period, never later: a dead
//! holder whose clock ran ahead does not delay the failover by its skew).
//!
//! Every Lease request times out after [`request_timeout`], a fraction of the renew deadline, and
//! the Lease client does not retry. A leader that could not renew for [`renew_deadline`]
//! (`2/3 · duration` from when its last successful renewal was sent) steps down at that moment,
//! even while a request hangs, and the [`Fence`] it keeps refuses the operator's writes from
//! then on. On shutdown the holder clears the Lease, so the next replica takes over at once.
//!
//! No crate fit: kube-runtime 5 has no leader election, kube-leader-election and kube-coordinate
//! target older kube majors, and kube-lease-manager (kube 5) takes over expired Leases and renews
//! with patches that carry no resourceVersion, so two replicas can both believe they lead until
//! the next renewal, and it keeps reporting leadership while renewals fail.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use sbomjob::{fence::Fence, leader, metrics::Metrics, settings::Settings};
//! # async fn example(lease_client: kube::Client, namespace: String, settings: Settings, metrics: Arc<Metrics>) {
//! // The operator's own client carries `FenceLayer(fence.clone())`: its writes pass while leading.
//! let fence = Fence::closed();
//! let config = leader::Config::new(&namespace, &settings.ops, &leader::identity(settings.pod_name.as_deref()));
//! let leadership = leader::Leadership::start(lease_client, config, metrics.clone(), fence);
//! let mut is_leader = leadership.subscribe();
//! is_leader.wait_for(|l| *l).await.ok(); // before the first cycle
//! // ... on shutdown:
//! leadership.release().await;
//! # }
//! ```

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
    time::Instant,
};
use tracing::{debug, info, warn};

use crate::{
    fence::Fence,
    metrics::Metrics,
    objects::{self, FIELD_MANAGER},
    settings::OpsSettings,
};

/// How long [`Leadership::release`] waits for the Lease to be cleared.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who competes for which Lease, and for how long a holder keeps it without renewing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub namespace: String,
    pub lease_name: String,
    /// `SBOM_RELEASE`, for the Lease's labels.
    pub release: String,
    /// This replica's holder identity: unique among the replicas.
    pub identity: String,
    /// `SBOM_LEASE_DURATION` (whole seconds; the Lease stores seconds).
    pub duration: Duration,
}

impl Config {
    /// The Lease `settings.lease_name` in `namespace`, held as `identity` ([`identity`]).
    pub fn new(namespace: &str, settings: &OpsSettings, identity: &str) -> Self {
        Config {
            namespace: namespace.to_string(),
            lease_name: settings.lease_name.clone(),
            release: settings.release.clone(),
            identity: identity.to_string(),
            duration: settings.lease_duration,
        }
    }
}

/// `POD_NAME` (unique among the pods of a Deployment), else the host name with a random suffix.
pub fn identity(pod_name: Option<&str>) -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match pod_name {
        Some(pod) => pod.to_string(),
        None => format!(
            "{}-{:08x}",
            var("HOSTNAME").unwrap_or_else(|| "sbomjob".into()),
            rand::random::<u32>()
        ),
    }
}

/// What this replica does next with the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Take the Lease: it does not exist, has no holder, or its holder stopped renewing.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Another replica holds it until this time (unless it renews).
    Wait(Timestamp),
}

/// Decides from the Lease as read. `seen` is when this replica first saw this version of the
/// Lease (its resourceVersion); `duration` applies when the Lease has no duration of its own.
pub fn decide(
    lease: Option<&Lease>,
    me: &str,
    now: Timestamp,
    seen: Timestamp,
    duration: Duration,
) -> Action {
    let spec = lease.and_then(|l| l.spec.as_ref());
    let Some(spec) = spec.filter(|s| s.holder_identity.as_deref().is_some_and(|h| !h.is_empty())) else {
        return Action::Acquire;
    };
    if spec.holder_identity.as_deref() == Some(me) {
        return Action::Renew;
    }
    let held_for = spec
        .lease_duration_seconds
        .filter(|s| *s > 0)
        .map_or(duration, |s| Duration::from_secs(s as u64));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    // Our own sighting of this version of the Lease is what counts, as in client-go. The
    // holder's renewTime may bring it earlier by up to one polling period (we notice a renewal
    // up to that late), never later: a holder whose clock runs ahead (or a dead one that wrote a
    // renewTime in the future) cannot delay a takeover. A clock running behind ours can bring it
    // forward by at most that period, while a live holder renews three times per duration.
    let floor = sub(seen, poll_period(held_for));
    let base = renewed.map_or(seen, |r| r.clamp(floor, seen));
    let until = add(base, held_for);
    if now >= until {
        Action::Acquire
    } else {
        Action::Wait(until)
    }
}

/// How often a follower reads the Lease.
pub fn poll_period(duration: Duration) -> Duration {
    (duration / 6).max(Duration::from_millis(100))
}

/// How long one Lease request may take: a sixth of the duration (at least half a second), well
/// inside the renew deadline, so a hung connection costs a try, not the Lease.
pub fn request_timeout(duration: Duration) -> Duration {
    (duration / 6).max(Duration::from_millis(500))
}

/// How often the holder renews: every third of the duration.
pub fn renew_period(duration: Duration) -> Duration {
    duration / 3
}

/// A holder that could not renew for this long steps down: two thirds of the duration.
/// Divided first: `duration * 2` overflows (and panicked the election task) near
/// `Duration::MAX`.
pub fn renew_deadline(duration: Duration) -> Duration {
    duration / 3 * 2
}

fn sub(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn seconds(d: Duration) -> i32 {
    d.as_secs().clamp(1, i32::MAX as u64) as i32
}

/// The Lease after `me` takes it (keeps the read metadata, resourceVersion included, so the
/// replace fails if anyone wrote in between).
pub fn claimed(
    lease: Option<&Lease>,
    name: &str,
    release: &str,
    me: &str,
    now: Timestamp,
    duration: Duration,
) -> Lease {
    let old = lease.and_then(|l| l.spec.clone()).unwrap_or_default();
    let transitions = match (lease, old.holder_identity.as_deref()) {
        (None, _) => 0,
        (Some(_), Some(holder)) if holder == me => old.lease_transitions.unwrap_or(0),
        (Some(_), _) => old.lease_transitions.unwrap_or(0).saturating_add(1),
    };
    let metadata = lease.map(|l| l.metadata.clone()).unwrap_or_else(|| ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(objects::release_labels(release)),
        ..Default::default()
    });
    Lease {
        metadata,
        spec: Some(LeaseSpec {
            holder_identity: Some(me.to_string()),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(seconds(duration)),
            lease_transitions: Some(transitions),
            ..old
        }),
    }
}

/// The Lease renewed by its holder.
pub fn renewed(lease: &Lease, now: Timestamp, duration: Duration) -> Lease {
    let mut lease = lease.clone();
    let spec = lease.spec.get_or_insert_with(Default::default);
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(seconds(duration));
    lease
}

/// The Lease given up by its holder: no holder, so the next replica acquires it at once.
pub fn released(lease: &Lease) -> Lease {
    let mut lease = lease.clone();
    let spec = lease.spec.get_or_insert_with(Default::default);
    spec.holder_identity = None;
    spec.acquire_time = None;
    spec.renew_time = None;
    lease
}

/// Whether this replica leads, kept current by a background task.
#[derive(Debug)]
pub struct Leadership {
    leader: watch::Receiver<bool>,
    /// Kept for [`Leadership::always`], whose channel must stay open.
    _always: Option<watch::Sender<bool>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Leadership {
    /// Starts competing for the Lease in the background, opening `fence` while leading.
    /// `client` is for the Lease alone: without the fence layer, and best without retries (the
    /// requests have their own timeout). Dropping the returned value also stops and releases,
    /// but without waiting: prefer [`Leadership::release`].
    pub fn start(client: Client, config: Config, metrics: Arc<Metrics>, fence: Fence) -> Self {
        let (tx, rx) = watch::channel(false);
        let (stop_tx, stop_rx) = oneshot::channel();
        metrics.set_leader(false);
        info!(lease = %config.lease_name, identity = %config.identity, duration = ?config.duration, "leader election: competing for the Lease");
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let task = tokio::spawn(elect(api, config, tx, metrics, fence, stop_rx));
        Leadership {
            leader: rx,
            _always: None,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// Leader election turned off (`SBOM_LEADER_ELECTION=false`): always the leader.
    pub fn always(metrics: &Metrics) -> Self {
        let (tx, rx) = watch::channel(true);
        metrics.set_leader(true);
        Leadership {
            leader: rx,
            _always: Some(tx),
            stop: None,
            task: None,
        }
    }

    /// A receiver of the leader flag: `wait_for(|l| *l)` before a cycle, `wait_for(|l| !*l)`
    /// to abort one. The channel closes (`Err`) only after [`Leadership::release`]: not leader.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Leads right now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Stops renewing and clears the Lease if this replica holds it, so another replica takes
    /// over at once. Gives up after a few seconds (the Lease then expires by itself).
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && tokio::time::timeout(RELEASE_TIMEOUT + Duration::from_secs(1), task)
                .await
                .is_err()
        {
            warn!("leader election: the Lease was not released in time; it expires by itself");
        }
    }
}

/// How one round ended.
enum Round {
    /// We wrote the Lease as its holder.
    Leading,
    /// Someone else holds it until then.
    Following(Timestamp),
    /// Someone wrote the Lease between our read and our write: read again now.
    Raced,
}

/// What this replica last saw of the Lease: its resourceVersion and when it first saw it.
type Seen = Option<(Option<String>, Timestamp)>;

async fn elect(
    api: Api<Lease>,
    config: Config,
    leader: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    fence: Fence,
    mut stop: oneshot::Receiver<()>,
) {
    let period = renew_period(config.duration);
    let renew_deadline = renew_deadline(config.duration);
    let request_timeout = request_timeout(config.duration);
    let poll = poll_period(config.duration);
    let set = |value: bool| {
        leader.send_if_modified(|current| {
            let changed = *current != value;
            *current = value;
            changed
        })
    };
    let step_down = |why: &str| {
        fence.close();
        if set(false) {
            metrics.set_leader(false);
            warn!(lease = %config.lease_name, why, "leader election: stepping down");
        }
    };
    let mut seen: Seen = None;
    // Leading until then: the renew deadline counted from when the last successful renewal was
    // sent. A follower takes over no earlier than the duration after it saw that renewal.
    let mut lead_until: Option<Instant> = None;
    'rounds: loop {
        let started = Instant::now();
        let attempt = tokio::time::timeout(request_timeout, round(&api, &config, &mut seen));
        tokio::pin!(attempt);
        // The round runs while the lead may run out: step down at that instant, not after it.
        let outcome = loop {
            tokio::select! {
                r = &mut attempt => break r,
                _ = tokio::time::sleep_until(lead_until.unwrap_or(started)), if lead_until.is_some() => {
                    lead_until = None;
                    step_down("could not renew within the renew deadline");
                }
                _ = &mut stop => break 'rounds,
            }
        };
        let pause = match outcome {
            Ok(Ok(Round::Leading)) => {
                let until = started + renew_deadline;
                lead_until = Some(until);
                fence.hold_until(until);
                if set(true) {
                    metrics.set_leader(true);
                    info!(lease = %config.lease_name, identity = %config.identity, "leader election: leading");
                }
                period
            }
            Ok(Ok(Round::Following(until))) => {
                if lead_until.take().is_some() || *leader.borrow() {
                    step_down("another replica holds the Lease");
                }
                let left = Timestamp::now().duration_until(until);
                Duration::try_from(left).unwrap_or_default().min(poll)
            }
            Ok(Ok(Round::Raced)) => Duration::ZERO,
            Ok(Err(e)) => {
                warn!(lease = %config.lease_name, error = %e, "leader election: reading or writing the Lease failed");
                poll
            }
            Err(_) => {
                warn!(lease = %config.lease_name, timeout = ?request_timeout, "leader election: a Lease request timed out");
                poll
            }
        };
        // Never sleep past the end of the lead: the step-down happens on time.
        let wake = Instant::now() + pause;
        let wake = lead_until.map_or(wake, |until| wake.min(until));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            // Sent, or the Leadership was dropped: stop either way.
            _ = &mut stop => break,
        }
        if lead_until.is_some_and(|until| Instant::now() >= until) {
            lead_until = None;
            step_down("could not renew within the renew deadline");
        }
    }
    let was_leader = *leader.borrow();
    fence.close();
    set(false);
    metrics.set_leader(false);
    if was_leader {
        match tokio::time::timeout(RELEASE_TIMEOUT, release(&api, &config)).await {
            Ok(Ok(())) => info!(lease = %config.lease_name, "leader election: Lease released"),
            Ok(Err(e)) => {
                warn!(lease = %config.lease_name, error = %e, "leader election: could not release the Lease; it expires by itself")
            }
            Err(_) => {
                warn!(lease = %config.lease_name, "leader election: releasing the Lease timed out; it expires by itself")
            }
        }
    }
}

async fn round(api: &Api<Lease>, config: &Config, seen: &mut Seen) -> Result<Round, kube::Error> {
    let lease = api.get_opt(&config.lease_name).await?;
    let now = Timestamp::now();
    let version = lease.as_ref().and_then(|l| l.metadata.resource_version.clone());
    let seen_at = match seen {
        Some((v, at)) if *v == version => *at,
        _ => {
            *seen = Some((version, now));
            now
        }
    };
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let (me, name) = (config.identity.as_str(), config.lease_name.as_str());
    let written = match (decide(lease.as_ref(), me, now, seen_at, config.duration), &lease) {
        (Action::Wait(until), _) => return Ok(Round::Following(until)),
        (Action::Acquire, None) => {
            api.create(
                &pp,
                &claimed(None, name, &config.release, me, now, config.duration),
            )
            .await
        }
        (Action::Acquire, Some(l)) => {
            let holder = l.spec.as_ref().and_then(|s| s.holder_identity.clone());
            debug!(lease = %name, ?holder, "leader election: taking over the Lease");
            api.replace(
                name,
                &pp,
                &claimed(Some(l), name, &config.release, me, now, config.duration),
            )
            .await
        }
        (Action::Renew, Some(l)) => api.replace(name, &pp, &renewed(l, now, config.duration)).await,
        (Action::Renew, None) => unreachable!("no Lease has no holder"),
    };
    match written {
        Ok(_) => Ok(Round::Leading),
        // AlreadyExists on create, Conflict on a stale resourceVersion.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Round::Raced),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, config: &Config) -> Result<(), kube::Error> {
    let Some(lease) = api.get_opt(&config.lease_name).await? else {
        return Ok(());
    };
    let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref());
    if holder != Some(config.identity.as_str()) {
        return Ok(());
    }
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.replace(&config.lease_name, &pp, &released(&lease)).await {
        Ok(_) => Ok(()),
        // Someone took it meanwhile: nothing of ours to release.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn lease(holder: Option<&str>, renewed: Option<i64>, duration: Option<i32>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("sbomjob-leader".into()),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                renew_time: renewed.map(|s| MicroTime(ts(s))),
                acquire_time: renewed.map(|s| MicroTime(ts(s))),
                lease_duration_seconds: duration,
                lease_transitions: Some(3),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn absent_or_free_leases_are_acquired() {
        assert_eq!(decide(None, "me", ts(0), ts(0), D), Action::Acquire);
        assert_eq!(
            decide(Some(&lease(None, None, None)), "me", ts(0), ts(0), D),
            Action::Acquire
        );
        assert_eq!(
            decide(Some(&lease(Some(""), Some(0), Some(15))), "me", ts(0), ts(0), D),
            Action::Acquire
        );
        let no_spec = Lease {
            spec: None,
            ..lease(None, None, None)
        };
        assert_eq!(decide(Some(&no_spec), "me", ts(0), ts(0), D), Action::Acquire);
    }

    #[test]
    fn own_leases_are_renewed_even_late() {
        let mine = lease(Some("me"), Some(0), Some(15));
        assert_eq!(decide(Some(&mine), "me", ts(5), ts(0), D), Action::Renew);
        assert_eq!(decide(Some(&mine), "me", ts(500), ts(0), D), Action::Renew);
    }

    #[test]
    fn live_leases_of_others_are_waited_for_and_expired_ones_taken() {
        // Renewed at 0, noticed at 1: it expires at 15, counted from the renewal.
        let theirs = lease(Some("other"), Some(0), Some(15));
        assert_eq!(decide(Some(&theirs), "me", ts(5), ts(1), D), Action::Wait(ts(15)));
        assert_eq!(decide(Some(&theirs), "me", ts(15), ts(1), D), Action::Acquire);
        // The Lease's own duration wins over ours.
        let long = lease(Some("other"), Some(0), Some(60));
        assert_eq!(decide(Some(&long), "me", ts(30), ts(0), D), Action::Wait(ts(60)));
        // No renew time: counted from when we first saw it.
        let odd = lease(Some("other"), None, None);
        assert_eq!(decide(Some(&odd), "me", ts(3), ts(2), D), Action::Wait(ts(17)));
    }

    #[test]
    fn a_fast_local_clock_cannot_steal_a_live_lease() {
        // The holder renewed at its time 0; our clock says 100 when we first see that renewal.
        // We wait at least the duration less one poll period from our own sighting, while a
        // live holder renews every third of the duration.
        let theirs = lease(Some("other"), Some(0), Some(15));
        let earliest = sub(ts(115), poll_period(D));
        assert_eq!(
            decide(Some(&theirs), "me", ts(100), ts(100), D),
            Action::Wait(earliest)
        );
        assert!(
            earliest > add(ts(100), D / 3 * 2),
            "a live holder renews before we may take over"
        );
        assert_eq!(decide(Some(&theirs), "me", ts(115), ts(100), D), Action::Acquire);
    }

    #[test]
    fn a_holder_clock_far_ahead_does_not_delay_the_takeover() {
        // A dead holder whose clock ran an hour ahead wrote renewTime 3600; we first saw that
        // version at 100 by our clock: it expires a duration after our sighting, not its own.
        let theirs = lease(Some("other"), Some(3600), Some(15));
        assert_eq!(
            decide(Some(&theirs), "me", ts(101), ts(100), D),
            Action::Wait(ts(115))
        );
        assert_eq!(decide(Some(&theirs), "me", ts(115), ts(100), D), Action::Acquire);
        // A live holder renewing (a new version seen each time) is still waited for.
        assert_eq!(
            decide(Some(&theirs), "me", ts(116), ts(110), D),
            Action::Wait(ts(125))
        );
    }

    #[test]
    fn lease_requests_time_out_well_inside_the_renew_deadline() {
        for secs in [3, 15, 60, 3600] {
            let d = Duration::from_secs(secs);
            assert!(request_timeout(d) * 2 < renew_deadline(d), "{d:?}");
            assert!(request_timeout(d) >= Duration::from_millis(500), "{d:?}");
        }
    }

    #[test]
    fn claims_renewals_and_releases() {
        let theirs = lease(Some("other"), Some(0), Some(15));
        let c = claimed(Some(&theirs), "sbomjob-leader", "sbomjob", "me", ts(20), D);
        let spec = c.spec.as_ref().unwrap();
        assert_eq!(
            c.metadata.resource_version.as_deref(),
            Some("7"),
            "replace precondition"
        );
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.acquire_time, Some(MicroTime(ts(20))));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(4));

        let fresh = claimed(None, "sbomjob-leader", "sbomjob", "me", ts(0), D);
        assert_eq!(fresh.metadata.name.as_deref(), Some("sbomjob-leader"));
        assert_eq!(fresh.metadata.resource_version, None);
        assert_eq!(fresh.spec.unwrap().lease_transitions, Some(0));

        let r = renewed(&c, ts(25), D);
        assert_eq!(r.spec.as_ref().unwrap().renew_time, Some(MicroTime(ts(25))));
        assert_eq!(r.spec.as_ref().unwrap().acquire_time, Some(MicroTime(ts(20))));

        let gone = released(&r);
        assert_eq!(gone.spec.as_ref().unwrap().holder_identity, None);
        assert_eq!(decide(Some(&gone), "next", ts(26), ts(26), D), Action::Acquire);
        assert_eq!(gone.spec.unwrap().lease_transitions, Some(4));
    }

    #[test]
    fn extreme_durations_do_not_overflow() {
        for d in [
            Duration::ZERO,
            Duration::from_secs(u64::MAX),
            Duration::from_secs(u64::MAX - 1),
            Duration::MAX,
        ] {
            assert!(renew_period(d) <= d && renew_deadline(d) <= d, "{d:?}");
            assert!(poll_period(d) >= Duration::from_millis(100), "{d:?}");
            // A Lease of another holder is waited for until the end of time, not panicked on.
            let theirs = lease(Some("other"), Some(0), None);
            assert_eq!(
                decide(Some(&theirs), "me", ts(5), ts(1), d),
                if d.is_zero() {
                    Action::Acquire
                } else {
                    Action::Wait(Timestamp::MAX)
                },
                "{d:?}"
            );
            let c = claimed(None, "sbomjob-leader", "sbomjob", "me", ts(0), d);
            let stored = c.spec.as_ref().unwrap().lease_duration_seconds;
            assert!(stored.is_some_and(|s| s >= 1), "{d:?}: {stored:?}");
            assert_eq!(renewed(&c, ts(1), d).spec.unwrap().lease_duration_seconds, stored);
        }
        assert_eq!(renew_deadline(D), Duration::from_secs(10));
        assert_eq!(renew_period(D), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn always_leads_and_never_closes() {
        let metrics = Metrics::new();
        let l = Leadership::always(&metrics);
        assert!(l.is_leader());
        let mut rx = l.subscribe();
        let lost = tokio::time::timeout(Duration::from_millis(50), rx.wait_for(|v| !*v)).await;
        assert!(lost.is_err(), "never loses leadership");
        assert!(metrics.encode().contains("sbomjob_leader 1"));
        l.release().await;
    }

    /// Two electors against a small in-memory Lease endpoint that enforces resourceVersion
    /// preconditions as the API server does.
    mod against_fake_api {
        use std::{
            convert::Infallible,
            sync::{Arc, Mutex},
        };

        use http_body_util::{BodyExt, Full};
        use hyper::{
            Method, Request, Response, StatusCode,
            body::{Bytes, Incoming},
            server::conn::http1,
            service::service_fn,
        };
        use hyper_util::rt::TokioIo;
        use serde_json::json;

        use super::*;

        #[derive(Default)]
        struct Store {
            lease: Option<Lease>,
            version: u64,
            /// A hung connection: requests are read and never answered.
            hang: bool,
        }

        fn status(code: StatusCode, reason: &str) -> Response<Full<Bytes>> {
            let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": reason, "code": code.as_u16(), "message": reason});
            let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
            *r.status_mut() = code;
            r
        }

        fn ok(code: StatusCode, lease: &Lease) -> Response<Full<Bytes>> {
            let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec(lease).unwrap())));
            *r.status_mut() = code;
            r
        }

        async fn handle(store: Arc<Mutex<Store>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
            let (method, path) = (req.method().clone(), req.uri().path().to_string());
            let body = req.into_body().collect().await.unwrap().to_bytes();
            if store.lock().unwrap().hang {
                std::future::pending::<()>().await;
            }
            let mut s = store.lock().unwrap();
            let base = "/apis/coordination.k8s.io/v1/namespaces/ns/leases";
            let named = format!("{base}/sbomjob-leader");
            match (method, path.as_str()) {
                (Method::GET, p) if p == named => match &s.lease {
                    Some(l) => ok(StatusCode::OK, l),
                    None => status(StatusCode::NOT_FOUND, "NotFound"),
                },
                (Method::POST, p) if p == base => {
                    if s.lease.is_some() {
                        return status(StatusCode::CONFLICT, "AlreadyExists");
                    }
                    let mut l: Lease = serde_json::from_slice(&body).unwrap();
                    s.version += 1;
                    l.metadata.resource_version = Some(s.version.to_string());
                    s.lease = Some(l.clone());
                    ok(StatusCode::CREATED, &l)
                }
                (Method::PUT, p) if p == named => {
                    let mut l: Lease = serde_json::from_slice(&body).unwrap();
                    let current = s.lease.as_ref().and_then(|l| l.metadata.resource_version.clone());
                    if l.metadata.resource_version != current {
                        return status(StatusCode::CONFLICT, "Conflict");
                    }
                    s.version += 1;
                    l.metadata.resource_version = Some(s.version.to_string());
                    s.lease = Some(l.clone());
                    ok(StatusCode::OK, &l)
                }
                _ => status(StatusCode::NOT_FOUND, "NotFound"),
            }
        }

        async fn fake_api() -> (Client, Arc<Mutex<Store>>) {
            let store = Arc::new(Mutex::new(Store::default()));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let served = store.clone();
            tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let store = served.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            let store = store.clone();
                            async move { Ok::<_, Infallible>(handle(store, req).await) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            let mut config = kube::Config::new(format!("http://{addr}").parse().unwrap());
            config.default_namespace = "ns".into();
            (Client::try_from(config).unwrap(), store)
        }

        fn config(identity: &str) -> Config {
            Config {
                namespace: "ns".into(),
                lease_name: "sbomjob-leader".into(),
                release: "sbomjob".into(),
                identity: identity.into(),
                duration: Duration::from_secs(1),
            }
        }

        async fn leads(l: &Leadership, want: bool) {
            let mut rx = l.subscribe();
            tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|v| *v == want))
                .await
                .unwrap_or_else(|_| panic!("leadership never became {want}"))
                .unwrap();
        }

        fn holder(store: &Mutex<Store>) -> Option<String> {
            let s = store.lock().unwrap();
            s.lease.as_ref()?.spec.as_ref()?.holder_identity.clone()
        }

        #[tokio::test]
        async fn one_leader_then_fast_failover_on_release() {
            let (client, store) = fake_api().await;
            let metrics = Arc::new(Metrics::new());
            let a = Leadership::start(client.clone(), config("a"), metrics.clone(), Fence::closed());
            leads(&a, true).await;
            assert_eq!(holder(&store).as_deref(), Some("a"));
            assert!(metrics.encode().contains("sbomjob_leader 1"));

            let b = Leadership::start(
                client.clone(),
                config("b"),
                Arc::new(Metrics::new()),
                Fence::closed(),
            );
            // b reads a live Lease held by a: it waits through several of a's renewals.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert!(a.is_leader() && !b.is_leader());
            assert_eq!(holder(&store).as_deref(), Some("a"));

            a.release().await;
            assert!(metrics.encode().contains("sbomjob_leader 0"));
            leads(&b, true).await;
            assert_eq!(holder(&store).as_deref(), Some("b"));
            b.release().await;
            assert_eq!(holder(&store), None, "released on shutdown");
        }

        #[tokio::test]
        async fn a_leader_whose_requests_hang_steps_down_by_the_renew_deadline() {
            let (client, store) = fake_api().await;
            let fence = Fence::closed();
            let cfg = Config {
                duration: Duration::from_secs(3),
                ..config("a")
            };
            let a = Leadership::start(client.clone(), cfg, Arc::new(Metrics::new()), fence.clone());
            leads(&a, true).await;
            assert!(fence.open(), "writes pass while leading");
            store.lock().unwrap().hang = true;
            let hung = Instant::now();
            let mut rx = a.subscribe();
            tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|v| !*v))
                .await
                .expect("stepped down")
                .unwrap();
            // Within the renew deadline of the last renewal (sent at or before `hung`), give or
            // take the timer's resolution; a follower may take over only a third later.
            assert!(
                hung.elapsed() <= renew_deadline(Duration::from_secs(3)) + Duration::from_millis(100),
                "stepped down within the renew deadline of its last renewal: {:?}",
                hung.elapsed()
            );
            assert!(!fence.open(), "and the fence refuses writes");
            // Connection back: another replica took the Lease meanwhile; a stays a follower.
            {
                let mut s = store.lock().unwrap();
                s.hang = false;
                s.version += 1;
                let version = s.version.to_string();
                let l = s.lease.as_mut().unwrap();
                l.spec.as_mut().unwrap().holder_identity = Some("b".into());
                l.spec.as_mut().unwrap().renew_time = Some(MicroTime(Timestamp::now()));
                l.metadata.resource_version = Some(version);
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert!(!a.is_leader() && !fence.open());
            a.release().await;
            assert_eq!(holder(&store).as_deref(), Some("b"), "a released nothing of b's");
        }

        #[tokio::test]
        async fn a_crashed_leader_is_replaced_after_the_lease_duration() {
            let (client, store) = fake_api().await;
            let mut a = Leadership::start(
                client.clone(),
                config("a"),
                Arc::new(Metrics::new()),
                Fence::closed(),
            );
            leads(&a, true).await;
            // A crash: the task ends without releasing.
            a.task.take().unwrap().abort();
            let b = Leadership::start(
                client.clone(),
                config("b"),
                Arc::new(Metrics::new()),
                Fence::closed(),
            );
            let started = Instant::now();
            leads(&b, true).await;
            assert!(
                started.elapsed() >= Duration::from_millis(900),
                "waited for the Lease to expire"
            );
            assert_eq!(holder(&store).as_deref(), Some("b"));
            let transitions = store
                .lock()
                .unwrap()
                .lease
                .as_ref()
                .unwrap()
                .spec
                .as_ref()
                .unwrap()
                .lease_transitions;
            assert_eq!(transitions, Some(1));
            b.release().await;
        }
    }

    fn fake_round_config() -> Config {
        Config {
            namespace: "sbomjob".into(),
            lease_name: "sbomjob-leader".into(),
            release: "sbomjob".into(),
            identity: "me".into(),
            duration: D,
        }
    }

    /// One round against a fake API server: a Lease another replica renewed just now is left
    /// alone (no write: a follower never takes a live Lease); an absent one is created as ours;
    /// one whose holder stopped renewing (unchanged for longer than its duration, by our clock)
    /// is replaced as ours with the resourceVersion read, and a 409 there is a race, read again.
    #[tokio::test]
    async fn a_round_writes_only_what_it_may() {
        use crate::fake_api::{self, conflict, not_found};
        let now_lease = |holder: &str| {
            let mut l = lease(Some(holder), None, Some(15));
            let spec = l.spec.as_mut().unwrap();
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            serde_json::to_value(&l).unwrap()
        };
        let config = fake_round_config();

        let held = now_lease("other");
        let (client, log) = fake_api::client(move |_| (200, held.clone()));
        let api: Api<Lease> = Api::namespaced(client, "sbomjob");
        let r = round(&api, &config, &mut None).await.unwrap();
        assert!(matches!(r, Round::Following(_)));
        assert_eq!(
            log.lines(),
            ["GET /apis/coordination.k8s.io/v1/namespaces/sbomjob/leases/sbomjob-leader"]
        );

        let (client, log) = fake_api::client(|seen| match seen.method.as_str() {
            "GET" => not_found("lease", "sbomjob-leader"),
            _ => (201, seen.body.clone()),
        });
        let api: Api<Lease> = Api::namespaced(client, "sbomjob");
        assert!(matches!(
            round(&api, &config, &mut None).await.unwrap(),
            Round::Leading
        ));
        let created = log.all().pop().unwrap();
        assert_eq!(created.method, "POST");
        assert_eq!(created.body["spec"]["holderIdentity"], "me");

        // Seen unchanged (resourceVersion 7) for 20 s of our clock: its holder is gone.
        let stale = now_lease("gone");
        for (answer, want_leading) in [(200, true), (409, false)] {
            let body = stale.clone();
            let (client, log) = fake_api::client(move |seen| match (seen.method.as_str(), answer) {
                ("GET", _) => (200, body.clone()),
                (_, 409) => conflict("lease"),
                _ => (200, seen.body.clone()),
            });
            let api: Api<Lease> = Api::namespaced(client, "sbomjob");
            let mut seen = Some((
                Some("7".to_string()),
                Timestamp::now() - std::time::Duration::from_secs(20),
            ));
            let r = round(&api, &config, &mut seen).await.unwrap();
            assert_eq!(matches!(r, Round::Leading), want_leading);
            assert_eq!(matches!(r, Round::Raced), !want_leading);
            let put = log.all().pop().unwrap();
            assert_eq!(put.method, "PUT");
            assert_eq!(put.body["spec"]["holderIdentity"], "me");
            assert_eq!(put.body["metadata"]["resourceVersion"], "7");
        }
    }
}
