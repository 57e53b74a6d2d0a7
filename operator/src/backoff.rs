//! Images that failed on their own: how long they wait before the next attempt (pure), and the
//! in-memory book of them (the shell keeps it in step with the ImageRecords when the digest cache
//! is on, so a restart keeps the schedule; without the CRD the book alone holds it).

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::Duration,
};

use chrono::{DateTime, SubsecRound, Utc};

/// A digest that failed alone: how often in a row, why the last time, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub attempts: u32,
    pub reason: String,
    pub next_attempt: DateTime<Utc>,
    /// The settings hash of the job identity it failed under: another job image or settings
    /// may well succeed, so a failure only holds back Jobs of the same identity.
    pub settings_hash: String,
}

/// Longest reason kept (bytes): records and Events stay small whatever a Job reported.
pub const REASON_MAX: usize = 512;

/// The wait after `attempts` failures in a row: `initial` doubled per attempt after the first,
/// capped at `max`. Never overflows.
pub fn delay(attempts: u32, initial: Duration, max: Duration) -> Duration {
    let doublings = attempts.saturating_sub(1).min(31);
    initial.saturating_mul(1u32 << doublings).min(max)
}

/// The failure recorded after one more failed attempt (`previous` under the same identity counts).
pub fn failed_again(
    previous: Option<&Failure>,
    reason: &str,
    settings_hash: &str,
    now: DateTime<Utc>,
    initial: Duration,
    max: Duration,
) -> Failure {
    let attempts = previous
        .filter(|f| f.settings_hash == settings_hash)
        .map_or(1, |f| f.attempts.saturating_add(1));
    let wait = chrono::Duration::from_std(delay(attempts, initial, max)).unwrap_or(chrono::Duration::MAX);
    let now = now.trunc_subsecs(0);
    Failure {
        attempts,
        reason: clip(reason, REASON_MAX).to_string(),
        next_attempt: now.checked_add_signed(wait).unwrap_or(DateTime::<Utc>::MAX_UTC),
        settings_hash: settings_hash.to_string(),
    }
}

/// What a recorded failure means for a digest now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// No failure under this identity: planned as usual.
    Open,
    /// Backed off and due again: retried, alone in its Job.
    Retry,
    /// Backed off until then: no Job.
    Wait(DateTime<Utc>),
}

pub fn gate(failure: Option<&Failure>, settings_hash: &str, now: DateTime<Utc>) -> Gate {
    match failure.filter(|f| f.settings_hash == settings_hash) {
        None => Gate::Open,
        Some(f) if now >= f.next_attempt => Gate::Retry,
        Some(f) => Gate::Wait(f.next_attempt),
    }
}

/// The failures the operator knows of, by digest.
#[derive(Debug, Default)]
pub struct Book(Mutex<HashMap<String, Failure>>);

impl Book {
    pub fn get(&self, digest: &str) -> Option<Failure> {
        self.0.lock().expect("lock").get(digest).cloned()
    }

    pub fn insert(&self, digest: &str, failure: Failure) {
        self.0.lock().expect("lock").insert(digest.to_string(), failure);
    }

    /// The digest succeeded (or its record is gone): nothing holds it back any more.
    pub fn clear(&self, digest: &str) {
        self.0.lock().expect("lock").remove(digest);
    }

    /// Forgets digests no watched pod runs any more, so the book never outgrows the cluster.
    pub fn retain_running(&self, running: &HashSet<&str>) {
        self.0
            .lock()
            .expect("lock")
            .retain(|d, _| running.contains(d.as_str()));
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn delay_doubles_from_the_initial_and_stops_at_the_cap() {
        let (initial, max) = (10 * MIN, 24 * 60 * MIN);
        let delays: Vec<u64> = (1..=10).map(|n| delay(n, initial, max).as_secs() / 60).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1280, 1440, 1440]);
        assert_eq!(delay(0, initial, max), initial);
        // Huge attempt counts and durations saturate instead of overflowing.
        assert_eq!(delay(u32::MAX, initial, max), max);
        assert_eq!(delay(40, Duration::MAX, Duration::MAX), Duration::MAX);
    }

    #[test]
    fn failures_count_up_under_one_identity_and_restart_under_another() {
        let (initial, max) = (10 * MIN, 60 * MIN);
        let first = failed_again(None, "exit code 1", "h1", t(0), initial, max);
        assert_eq!((first.attempts, first.next_attempt), (1, t(600)));
        let second = failed_again(Some(&first), "exit code 1", "h1", t(700), initial, max);
        assert_eq!((second.attempts, second.next_attempt), (2, t(700 + 1200)));
        let other = failed_again(Some(&second), "x", "h2", t(800), initial, max);
        assert_eq!(other.attempts, 1);
        let far = failed_again(None, "x", "h1", t(0), Duration::MAX, Duration::MAX);
        assert_eq!(far.next_attempt, DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn reasons_are_clipped_on_a_character_boundary() {
        let long = "é".repeat(REASON_MAX);
        let f = failed_again(None, &long, "h", t(0), MIN, MIN);
        assert!(f.reason.len() <= REASON_MAX && f.reason.len() >= REASON_MAX - 1);
    }

    #[test]
    fn the_gate_holds_until_the_next_attempt_for_the_same_identity() {
        let f = failed_again(None, "r", "h1", t(0), MIN, MIN);
        assert_eq!(gate(None, "h1", t(0)), Gate::Open);
        assert_eq!(gate(Some(&f), "h1", t(59)), Gate::Wait(t(60)));
        assert_eq!(gate(Some(&f), "h1", t(60)), Gate::Retry);
        assert_eq!(gate(Some(&f), "h2", t(0)), Gate::Open);
    }

    #[test]
    fn the_book_forgets_what_no_longer_runs() {
        let book = Book::default();
        book.insert("a", failed_again(None, "r", "h", t(0), MIN, MIN));
        book.insert("b", failed_again(None, "r", "h", t(0), MIN, MIN));
        book.retain_running(&["a"].into());
        assert!(book.get("a").is_some() && book.get("b").is_none());
        book.clear("a");
        assert!(book.is_empty());
    }
}
