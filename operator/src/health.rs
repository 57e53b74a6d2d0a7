//! Liveness beyond "the process answers HTTP": `/healthz` fails when the main loop has shown no
//! progress for `SBOM_HEALTH_TIMEOUT`, or a watch the cycles depend on (pods, namespaces) has
//! been failing that long, so the kubelet restarts an operator that is stuck rather than one
//! that is merely idle.
//!
//! The main loop beats while it waits (for the schedule, an ask or the Lease) and at every step
//! of a cycle, and a Job being followed beats at each of its checks: a long Job is progress, a
//! hung request is not.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};

/// Shared by the loop, the watches and the admin endpoint; cheap to clone.
#[derive(Debug, Clone)]
pub struct Health(Arc<State>);

#[derive(Debug)]
struct State {
    /// `SBOM_HEALTH_TIMEOUT`.
    timeout: Duration,
    /// Unix milliseconds of the main loop's last beat.
    beat: AtomicI64,
    /// Since when each failing watch fails (a watch that delivers again is removed).
    failing: Mutex<Vec<(&'static str, DateTime<Utc>)>>,
}

impl Health {
    pub fn new(timeout: Duration) -> Self {
        Health(Arc::new(State {
            timeout,
            beat: AtomicI64::new(Utc::now().timestamp_millis()),
            failing: Mutex::new(Vec::new()),
        }))
    }

    /// How often the loop beats while it waits: well inside the timeout.
    pub fn beat_every(&self) -> Duration {
        (self.0.timeout / 3).clamp(Duration::from_millis(100), Duration::from_secs(30))
    }

    /// The main loop made progress.
    pub fn beat(&self) {
        self.0
            .beat
            .store(Utc::now().timestamp_millis(), Ordering::Release);
    }

    /// The watch `what` failed (it retries); it counts as failing from its first failure on.
    pub fn watch_failed(&self, what: &'static str) {
        let mut failing = self.0.failing.lock().expect("lock");
        if !failing.iter().any(|(w, _)| *w == what) {
            failing.push((what, Utc::now()));
        }
    }

    /// The watch `what` delivered: it works.
    pub fn watch_ok(&self, what: &'static str) {
        let mut failing = self.0.failing.lock().expect("lock");
        failing.retain(|(w, _)| *w != what);
    }

    /// Healthy at `now`, or why not.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), String> {
        let timeout = chrono::TimeDelta::from_std(self.0.timeout).unwrap_or(chrono::TimeDelta::MAX);
        let beat = DateTime::from_timestamp_millis(self.0.beat.load(Ordering::Acquire)).unwrap_or(now);
        if now - beat > timeout {
            return Err(format!(
                "the main loop has made no progress for {}s (SBOM_HEALTH_TIMEOUT {}s)",
                (now - beat).num_seconds(),
                self.0.timeout.as_secs()
            ));
        }
        let failing = self.0.failing.lock().expect("lock");
        if let Some((what, since)) = failing.iter().find(|(_, since)| now - *since > timeout) {
            return Err(format!(
                "the {what} watch has been failing for {}s (SBOM_HEALTH_TIMEOUT {}s)",
                (now - *since).num_seconds(),
                self.0.timeout.as_secs()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn unhealthy_after_the_timeout_without_a_beat_or_with_a_failing_watch() {
        let h = Health::new(Duration::from_secs(60));
        let now = Utc::now();
        assert_eq!(h.check(now), Ok(()));
        let later = now + TimeDelta::seconds(61);
        let e = h.check(later).unwrap_err();
        assert!(e.starts_with("the main loop has made no progress for 6"), "{e}");
        h.beat();
        assert_eq!(h.check(Utc::now()), Ok(()));

        h.watch_failed("pod");
        // Failing again does not move its start.
        h.watch_failed("pod");
        assert_eq!(
            h.check(Utc::now() + TimeDelta::seconds(30)),
            Ok(()),
            "not failing long yet"
        );
        h.beat_at_least_until(Utc::now() + TimeDelta::seconds(120));
        let e = h.check(Utc::now() + TimeDelta::seconds(90)).unwrap_err();
        assert!(e.starts_with("the pod watch has been failing for"), "{e}");
        h.watch_ok("pod");
        assert_eq!(h.check(Utc::now() + TimeDelta::seconds(90)), Ok(()));
    }

    #[test]
    fn the_loop_beats_well_inside_the_timeout() {
        assert_eq!(
            Health::new(Duration::from_secs(600)).beat_every(),
            Duration::from_secs(30)
        );
        assert_eq!(
            Health::new(Duration::from_secs(9)).beat_every(),
            Duration::from_secs(3)
        );
    }

    impl Health {
        /// A beat in the future, so a test can look later without the loop going stale.
        fn beat_at_least_until(&self, at: DateTime<Utc>) {
            self.0.beat.store(at.timestamp_millis(), Ordering::Release);
        }
    }
}
