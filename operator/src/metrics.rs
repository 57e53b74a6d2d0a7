//! Prometheus metrics (prometheus-client, OpenMetrics text on the admin port's `/metrics`).
//!
//! One [`Metrics`] per process, shared as `Arc<Metrics>`; the cycle reports what happened with
//! one method call per fact. Every name starts with `sbomjob_`:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sbomjob_cycles_total` | counter | `result`: ok, error |
//! | `sbomjob_cycle_duration_seconds` | histogram | |
//! | `sbomjob_jobs_total` | counter | `result`: complete, failed |
//! | `sbomjob_job_duration_seconds` | histogram | `result` |
//! | `sbomjob_images_processed_total` | counter | |
//! | `sbomjob_cache_lookups_total` | counter | `result`: hit, miss |
//! | `sbomjob_pods_annotated_total` | counter | |
//! | `sbomjob_images_deferred_total` | counter | (images left for the next cycle by `SBOM_MAX_JOBS_PER_CYCLE`) |
//! | `sbomjob_leader` | gauge | (1 while this replica holds the Lease) |

use std::{fmt::Write as _, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a cycle ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleResult {
    Ok,
    Error,
}

/// How a Job ended (`cycle::job_state::JobOutcome::Complete` is `Complete`; every failure, including a Job that
/// could not be created, is `Failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobResult {
    Complete,
    Failed,
}

/// The `result` label: lower-case values, as Prometheus conventions have them.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

impl From<CycleResult> for ResultLabel {
    fn from(r: CycleResult) -> Self {
        let result = match r {
            CycleResult::Ok => "ok",
            CycleResult::Error => "error",
        };
        ResultLabel { result }
    }
}

impl From<JobResult> for ResultLabel {
    fn from(r: JobResult) -> Self {
        let result = match r {
            JobResult::Complete => "complete",
            JobResult::Failed => "failed",
        };
        ResultLabel { result }
    }
}

/// The operator's metrics and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    cycles: Family<ResultLabel, Counter>,
    cycle_duration: Histogram,
    jobs: Family<ResultLabel, Counter>,
    job_duration: Family<ResultLabel, Histogram, fn() -> Histogram>,
    images: Counter,
    cache: Family<ResultLabel, Counter>,
    annotated: Counter,
    backed_off: Counter,
    deferred: Counter,
    refused: Counter,
    backing_off: Gauge,
    leader: Gauge,
}

/// 1 s to about 4.5 h, doubling (cycles wait for their Jobs; the default job timeout is 1 h).
fn duration_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sbomjob");
        let m = Metrics {
            cycles: Family::default(),
            cycle_duration: duration_buckets(),
            jobs: Family::default(),
            job_duration: Family::new_with_constructor(duration_buckets),
            images: Counter::default(),
            cache: Family::default(),
            annotated: Counter::default(),
            backed_off: Counter::default(),
            deferred: Counter::default(),
            refused: Counter::default(),
            backing_off: Gauge::default(),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("cycles", "Cycles run, by result", m.cycles.clone());
        registry.register_with_unit(
            "cycle_duration",
            "How long cycles took, waiting for their Jobs included",
            Unit::Seconds,
            m.cycle_duration.clone(),
        );
        registry.register("jobs", "Jobs ended, by result", m.jobs.clone());
        registry.register_with_unit(
            "job_duration",
            "How long Jobs took from creation to their end, by result",
            Unit::Seconds,
            m.job_duration.clone(),
        );
        registry.register(
            "images_processed",
            "Images catalogued by Jobs that completed",
            m.images.clone(),
        );
        registry.register(
            "cache_lookups",
            "Digest cache lookups, by result",
            m.cache.clone(),
        );
        registry.register(
            "pods_annotated",
            "Pods annotated (a pod patched once for several containers counts once)",
            m.annotated.clone(),
        );
        registry.register(
            "images_backed_off",
            "Times an image failed alone in its Job and was put off to a later attempt",
            m.backed_off.clone(),
        );
        registry.register(
            "images_backing_off",
            "Images waiting for their next attempt after failing alone",
            m.backing_off.clone(),
        );
        registry.register(
            "images_deferred",
            "Images left for the next cycle because their cycle made SBOM_MAX_JOBS_PER_CYCLE Jobs",
            m.deferred.clone(),
        );
        registry.register(
            "annotations_refused",
            "Pods whose annotation patch the API server refused for good (counted once per pod and image)",
            m.refused.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease, else 0",
            m.leader.clone(),
        );
        // Every series exists from the start at 0, so `rate()` sees the first increment.
        for r in [CycleResult::Ok, CycleResult::Error] {
            let _ = m.cycles.get_or_create(&r.into());
        }
        for r in [JobResult::Complete, JobResult::Failed] {
            let _ = m.jobs.get_or_create(&r.into());
            let _ = m.job_duration.get_or_create(&r.into());
        }
        for result in ["hit", "miss"] {
            let _ = m.cache.get_or_create(&ResultLabel { result });
        }
        Metrics { registry, ..m }
    }

    /// A cycle ended after `duration`.
    pub fn cycle_done(&self, result: CycleResult, duration: Duration) {
        self.cycles.get_or_create(&result.into()).inc();
        self.cycle_duration.observe(duration.as_secs_f64());
    }

    /// A Job ended `duration` after it was created.
    pub fn job_done(&self, result: JobResult, duration: Duration) {
        let label = result.into();
        self.jobs.get_or_create(&label).inc();
        self.job_duration
            .get_or_create(&label)
            .observe(duration.as_secs_f64());
    }

    /// `n` more images were catalogued (their Job completed).
    pub fn images(&self, n: usize) {
        self.images.inc_by(n as u64);
    }

    /// One digest was looked up in the cache.
    pub fn cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache.get_or_create(&ResultLabel { result }).inc();
    }

    /// `n` more pods were annotated.
    pub fn annotated(&self, n: usize) {
        self.annotated.inc_by(n as u64);
    }

    /// An image failed alone and backs off.
    pub fn backed_off(&self) {
        self.backed_off.inc();
    }

    /// `n` more images wait for the next cycle: their cycle made all the Jobs it may.
    pub fn deferred(&self, n: usize) {
        self.deferred.inc_by(n as u64);
    }

    /// How many images back off now.
    pub fn backing_off(&self, n: usize) {
        self.backing_off.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// `n` more pods had their annotation refused for good.
    pub fn refused(&self, n: usize) {
        self.refused.inc_by(n as u64);
    }

    /// Whether this replica leads now.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            // Writing to a String cannot fail; keep the output well-formed regardless.
            out.clear();
            let _ = writeln!(out, "# EOF");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn empty_registry_encodes_every_family() {
        let text = Metrics::new().encode();
        for name in [
            "sbomjob_cycles",
            "sbomjob_cycle_duration_seconds",
            "sbomjob_jobs",
            "sbomjob_job_duration_seconds",
            "sbomjob_images_processed",
            "sbomjob_cache_lookups",
            "sbomjob_pods_annotated",
            "sbomjob_images_deferred",
            "sbomjob_leader",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("sbomjob_jobs_total{result=\"failed\"} 0"), "{text}");
        assert!(
            text.contains("sbomjob_cache_lookups_total{result=\"miss\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn recorded_facts_show_up() {
        let m = Metrics::new();
        m.cycle_done(CycleResult::Ok, Duration::from_secs(3));
        m.cycle_done(CycleResult::Ok, Duration::from_secs(5));
        m.cycle_done(CycleResult::Error, Duration::from_millis(10));
        m.job_done(JobResult::Complete, Duration::from_secs(90));
        m.job_done(JobResult::Failed, Duration::from_secs(3600));
        m.images(7);
        m.cache(true);
        m.cache(true);
        m.cache(false);
        m.annotated(12);
        m.deferred(40);
        m.deferred(2);
        m.set_leader(true);
        let text = m.encode();
        assert_eq!(
            line(&text, "sbomjob_cycles_total{result=\"ok\"}"),
            Some("sbomjob_cycles_total{result=\"ok\"} 2")
        );
        assert_eq!(
            line(&text, "sbomjob_cycles_total{result=\"error\"}"),
            Some("sbomjob_cycles_total{result=\"error\"} 1")
        );
        assert_eq!(
            line(&text, "sbomjob_cycle_duration_seconds_count"),
            Some("sbomjob_cycle_duration_seconds_count 3")
        );
        assert_eq!(
            line(&text, "sbomjob_job_duration_seconds_count{result=\"failed\"}"),
            Some("sbomjob_job_duration_seconds_count{result=\"failed\"} 1")
        );
        assert_eq!(
            line(&text, "sbomjob_images_processed_total"),
            Some("sbomjob_images_processed_total 7")
        );
        assert_eq!(
            line(&text, "sbomjob_cache_lookups_total{result=\"hit\"}"),
            Some("sbomjob_cache_lookups_total{result=\"hit\"} 2")
        );
        assert_eq!(
            line(&text, "sbomjob_pods_annotated_total"),
            Some("sbomjob_pods_annotated_total 12")
        );
        assert_eq!(
            line(&text, "sbomjob_images_deferred_total"),
            Some("sbomjob_images_deferred_total 42")
        );
        assert_eq!(line(&text, "sbomjob_leader "), Some("sbomjob_leader 1"));
    }
}
