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
//! | `sbomjob_last_successful_cycle_timestamp_seconds` | gauge | (Unix time the last cycle without error ended) |
//! | `sbomjob_result_lines_total` | counter | `result`: accepted, malformed, too_long, foreign |
//! | `sbomjob_running_images` | gauge | `sbom`: yes, no (digests running now, by whether a job reported an SBOM for them) |
//! | `sbomjob_running_findings` | gauge | `severity`: critical, high, medium, low, unknown (summed over the digests running now) |
//! | `sbomjob_build_info` | gauge | `version`: always 1 |
//! | `sbomjob_jobs_in_flight` | gauge | (Jobs created or adopted and not ended yet) |
//! | `sbomjob_kube_requests_total` | counter | `verb`: get, list, watch, create, update, patch, delete, other; `result`: 2xx, 4xx, 5xx, error, ... |
//! | `sbomjob_source_scans_total` | counter | `result`: ok, errors (some tags or repositories failed), failed |
//! | `sbomjob_source_scan_retries_total` | counter | (tag listings retried while a registry was unreachable) |
//! | `sbomjob_drift_containers` | gauge | `status`: latest, behind-patch, behind-minor, behind-major, unknown |

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
    registry_lookups: Family<ResultLabel, Counter>,
    annotated: Counter,
    backed_off: Counter,
    deferred: Counter,
    refused: Counter,
    backing_off: Gauge,
    leader: Gauge,
    last_success: Gauge,
    result_lines: Family<ResultLabel, Counter>,
    running_images: Family<SbomLabel, Gauge>,
    running_findings: Family<SeverityLabel, Gauge>,
    jobs_in_flight: Gauge,
    kube_requests: Family<RequestLabels, Counter>,
    source_scans: Family<ResultLabel, Counter>,
    source_retries: Counter,
    drift: Family<StatusLabel, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SbomLabel {
    sbom: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabel {
    severity: &'static str,
}

const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "unknown"];

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
            registry_lookups: Family::default(),
            annotated: Counter::default(),
            backed_off: Counter::default(),
            deferred: Counter::default(),
            refused: Counter::default(),
            backing_off: Gauge::default(),
            leader: Gauge::default(),
            last_success: Gauge::default(),
            result_lines: Family::default(),
            running_images: Family::default(),
            running_findings: Family::default(),
            jobs_in_flight: Gauge::default(),
            kube_requests: Family::default(),
            source_scans: Family::default(),
            source_retries: Counter::default(),
            drift: Family::default(),
            registry: Registry::default(),
        };
        registry.register("cycles", "Cycles run, by result", m.cycles.clone());
        let build: Family<VersionLabel, Gauge> = Family::default();
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The operator's version (always 1)", build);
        registry.register(
            "jobs_in_flight",
            "Jobs created or adopted that have not ended yet",
            m.jobs_in_flight.clone(),
        );
        registry.register(
            "kube_requests",
            "Requests to the Kubernetes API, by verb and result (2xx, 4xx, 5xx; error: no response)",
            m.kube_requests.clone(),
        );
        registry.register(
            "source_scans",
            "ImageSource scans, by result (ok, errors: some tags or repositories failed, failed)",
            m.source_scans.clone(),
        );
        registry.register(
            "source_scan_retries",
            "Tag listings of ImageSource scans retried while a registry was unreachable",
            m.source_retries.clone(),
        );
        registry.register(
            "drift_containers",
            "Running tagged containers by drift status (latest, behind-patch, behind-minor, behind-major, unknown)",
            m.drift.clone(),
        );
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
            "registry_lookups",
            "Looks for an SBOM among an image's referrers before its Job, by result (found, absent, error, skipped)",
            m.registry_lookups.clone(),
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
        registry.register(
            "last_successful_cycle_timestamp_seconds",
            "Unix time at which the last cycle that ended without an error ended (0: none yet)",
            m.last_success.clone(),
        );
        registry.register(
            "result_lines",
            "Result lines read from Complete Jobs' logs: accepted, or why not (malformed, too_long, foreign: another Job's digest)",
            m.result_lines.clone(),
        );
        registry.register(
            "running_images",
            "Digests running in watched pods, by whether a job reported an SBOM for them (sbom: yes, no)",
            m.running_images.clone(),
        );
        registry.register(
            "running_findings",
            "Vulnerabilities the jobs reported, summed over the digests running now, by severity",
            m.running_findings.clone(),
        );
        // Every series exists from the start at 0, so `rate()` sees the first increment.
        for result in ["accepted", "malformed", "too_long", "foreign"] {
            let _ = m.result_lines.get_or_create(&ResultLabel { result });
        }
        for sbom in ["yes", "no"] {
            let _ = m.running_images.get_or_create(&SbomLabel { sbom });
        }
        for severity in SEVERITIES {
            let _ = m.running_findings.get_or_create(&SeverityLabel { severity });
        }
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
        if result == CycleResult::Ok {
            self.last_success.set(chrono::Utc::now().timestamp());
        }
    }

    /// A Job's log gave `accepted` results and rejected these lines.
    pub fn result_lines(&self, accepted: usize, rejected: &crate::results::Rejected) {
        for (result, n) in [
            ("accepted", accepted as u64),
            ("malformed", rejected.malformed),
            ("too_long", rejected.too_long),
            ("foreign", rejected.foreign),
        ] {
            self.result_lines.get_or_create(&ResultLabel { result }).inc_by(n);
        }
    }

    /// What was found for the digests running now.
    pub fn found(&self, t: &crate::results::Totals) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.running_images
            .get_or_create(&SbomLabel { sbom: "yes" })
            .set(gauge(t.with_sbom as u64));
        self.running_images
            .get_or_create(&SbomLabel { sbom: "no" })
            .set(gauge(t.without_sbom as u64));
        let f = &t.findings;
        for (severity, n) in SEVERITIES
            .into_iter()
            .zip([f.critical, f.high, f.medium, f.low, f.unknown])
        {
            self.running_findings
                .get_or_create(&SeverityLabel { severity })
                .set(gauge(n));
        }
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

    /// One registry lookup ended: `found`, `absent`, `error` or `skipped` (its registry failed
    /// earlier in the cycle, or the step's time was up).
    pub fn registry_lookup(&self, result: &'static str) {
        self.registry_lookups.get_or_create(&ResultLabel { result }).inc();
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

    /// An ImageSource scan ended (`ok`, `errors` or `failed`) after `retries` retried listings.
    pub fn source_scan(&self, result: &'static str, retries: usize) {
        self.source_scans.get_or_create(&ResultLabel { result }).inc();
        self.source_retries.inc_by(retries as u64);
    }

    /// Running tagged containers by drift status: every status is set, absent ones to 0.
    pub fn drift(&self, counts: &[(&'static str, usize)]) {
        for status in crate::drift::STATUSES {
            let n = counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
            self.drift
                .get_or_create(&StatusLabel { status })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// A Job is followed from now on (`true`) or ended (`false`).
    pub fn job_in_flight(&self, started: bool) {
        if started {
            self.jobs_in_flight.inc();
        } else {
            self.jobs_in_flight.dec();
        }
    }

    /// One request to the Kubernetes API ended ([`crate::api_metrics`]).
    pub fn kube_request(&self, verb: &'static str, result: &'static str) {
        self.kube_requests
            .get_or_create(&RequestLabels { verb, result })
            .inc();
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
    fn what_was_found_shows_up() {
        let m = Metrics::new();
        let text = m.encode();
        // Every series from the start, the last success at 0 (none yet).
        for series in [
            "sbomjob_result_lines_total{result=\"too_long\"} 0",
            "sbomjob_running_images{sbom=\"no\"} 0",
            "sbomjob_running_findings{severity=\"critical\"} 0",
            "sbomjob_last_successful_cycle_timestamp_seconds 0",
        ] {
            assert!(text.lines().any(|l| l == series), "{series} in:\n{text}");
        }
        let rejected = crate::results::Rejected {
            malformed: 5,
            too_long: 1,
            foreign: 2,
            first: None,
        };
        m.result_lines(3, &rejected);
        m.result_lines(1, &crate::results::Rejected::default());
        let totals = crate::results::Totals {
            with_sbom: 4,
            without_sbom: 1,
            findings: crate::cache::FindingCounts {
                high: 7,
                ..Default::default()
            },
        };
        m.found(&totals);
        m.cycle_done(CycleResult::Error, Duration::from_secs(1));
        let text = m.encode();
        assert_eq!(
            line(&text, "sbomjob_last_successful_cycle_timestamp_seconds"),
            Some("sbomjob_last_successful_cycle_timestamp_seconds 0"),
            "an error is no success"
        );
        m.cycle_done(CycleResult::Ok, Duration::from_secs(1));
        let text = m.encode();
        for series in [
            "sbomjob_result_lines_total{result=\"accepted\"} 4",
            "sbomjob_result_lines_total{result=\"malformed\"} 5",
            "sbomjob_result_lines_total{result=\"foreign\"} 2",
            "sbomjob_running_images{sbom=\"yes\"} 4",
            "sbomjob_running_images{sbom=\"no\"} 1",
            "sbomjob_running_findings{severity=\"high\"} 7",
        ] {
            assert!(text.lines().any(|l| l == series), "{series} in:\n{text}");
        }
        let last = line(&text, "sbomjob_last_successful_cycle_timestamp_seconds").unwrap();
        let at: i64 = last.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - at).abs() < 60, "{last}");
    }

    /// Every metric the chart's Grafana dashboard queries is one the operator exports, so a
    /// renamed metric fails here. Each fact is recorded once first: a labelled family has no
    /// series until it is used.
    #[test]
    fn the_dashboard_queries_only_exported_metrics() {
        let m = Metrics::new();
        m.cycle_done(CycleResult::Ok, Duration::from_secs(1));
        m.job_done(JobResult::Complete, Duration::from_secs(1));
        m.images(1);
        m.cache(true);
        m.registry_lookup("found");
        m.annotated(1);
        m.backed_off();
        m.backing_off(1);
        m.deferred(1);
        m.refused(1);
        m.source_scan("ok", 1);
        m.drift(&[("latest", 1)]);
        m.job_in_flight(true);
        m.kube_request("get", "2xx");
        m.set_leader(true);
        m.result_lines(1, &crate::results::Rejected::default());
        m.found(&crate::results::Totals {
            with_sbom: 1,
            without_sbom: 0,
            findings: Default::default(),
        });
        let text = m.encode();
        let exported: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let dashboard = include_str!("../../charts/sbomjob/dashboards/sbomjob.json");
        let queried: std::collections::BTreeSet<&str> = dashboard
            .match_indices("sbomjob_")
            .map(|(at, _)| {
                let rest = &dashboard[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect();
        assert!(queried.len() >= 15, "{queried:?}");
        let unknown: Vec<_> = queried.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "the dashboard queries {unknown:?}, not among:\n{text}"
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
