//! What a Job found, read back from its job container's log once it is Complete: the result
//! lines of [`sbomjob_contract::result`]. The pure core is [`Collector`]; [`read`] is the shell
//! that streams the log.
//!
//! Whatever the job prints, at most one result per element of its `image-config.json` is kept
//! (the last valid line whose `index` and `digest` name that element), each at most
//! [`MAX_LINE_BYTES`]; lines longer than that are never buffered beyond it. Lines that start
//! with the prefix but are malformed, too long, or name another digest are counted, and the
//! first problem is kept for the log. A job image that prints no result line gives no results.

use std::collections::{HashMap, HashSet};

use futures::{AsyncBufReadExt as _, io::AsyncBufRead};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, api::LogParams};
use sbomjob_contract::result::{ImageReport, MAX_LINE_BYTES, PREFIX, ReportOutcome};
use tracing::{debug, warn};

use crate::{
    cache::{FindingCounts, ImageRecordStatus},
    objects::CONTAINER,
};

/// How much of a job container's log is read: a job printing more loses only the results
/// after this.
pub const LOG_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// Lines that looked like results and were not used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejected {
    /// Not JSON, a field out of bounds, not UTF-8.
    pub malformed: u64,
    /// Longer than [`MAX_LINE_BYTES`].
    pub too_long: u64,
    /// An index outside the Job's config, or a digest that is not that element's.
    pub foreign: u64,
    /// The first problem, for the log.
    pub first: Option<String>,
}

impl Rejected {
    pub fn total(&self) -> u64 {
        self.malformed + self.too_long + self.foreign
    }

    fn note(&mut self, problem: impl FnOnce() -> String) {
        if self.first.is_none() {
            self.first = Some(problem());
        }
    }
}

/// Collects the results of one Job from its log, fed in chunks of any size.
#[derive(Debug)]
pub struct Collector {
    /// The digest of each element, in config order.
    elements: Vec<String>,
    results: Vec<Option<ImageReport>>,
    /// The current line, at most `MAX_LINE_BYTES + 1` bytes of it.
    line: Vec<u8>,
    /// The current line is longer than what `line` holds.
    overlong: bool,
    pub rejected: Rejected,
}

impl Collector {
    pub fn new(elements: Vec<String>) -> Collector {
        let results = vec![None; elements.len()];
        Collector {
            elements,
            results,
            line: Vec::new(),
            overlong: false,
            rejected: Rejected::default(),
        }
    }

    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (piece, end) = match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => (&bytes[..i], true),
                None => (bytes, false),
            };
            let room = (MAX_LINE_BYTES + 1).saturating_sub(self.line.len());
            if piece.len() > room {
                self.overlong = true;
            }
            self.line.extend_from_slice(&piece[..piece.len().min(room)]);
            bytes = &bytes[(piece.len() + usize::from(end)).min(bytes.len())..];
            if end {
                self.end_line();
            }
        }
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let overlong = std::mem::replace(&mut self.overlong, false);
        if !line.starts_with(PREFIX.as_bytes()) {
            return;
        }
        if overlong || line.len() > MAX_LINE_BYTES {
            self.rejected.too_long += 1;
            self.rejected
                .note(|| format!("a result line longer than {MAX_LINE_BYTES} bytes"));
            return;
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            self.rejected.malformed += 1;
            self.rejected.note(|| "a result line that is not UTF-8".into());
            return;
        };
        match ImageReport::parse_line(text) {
            None => {}
            Some(Err(e)) => {
                self.rejected.malformed += 1;
                self.rejected.note(|| e.to_string());
            }
            Some(Ok(report)) => match self.elements.get(report.index) {
                Some(digest) if *digest == report.digest => {
                    let index = report.index;
                    self.results[index] = Some(report);
                }
                other => {
                    self.rejected.foreign += 1;
                    let index = report.index;
                    let found = report.digest;
                    self.rejected.note(|| match other {
                        Some(want) => format!("element {index} is {want}, the line names {found}"),
                        None => format!("index {index}, and the Job has {} elements", self.elements.len()),
                    });
                }
            },
        }
    }

    /// The results by element (a last line without a newline counts too).
    pub fn finish(mut self) -> (Vec<Option<ImageReport>>, Rejected) {
        if !self.line.is_empty() || self.overlong {
            self.end_line();
        }
        (self.results, self.rejected)
    }
}

/// What the metrics keep of a digest's result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Found {
    /// An SBOM was made: the result gives a package count or an artifact.
    pub sbom: bool,
    pub findings: Option<FindingCounts>,
}

impl Found {
    pub fn of_report(report: &ImageReport) -> Found {
        Found {
            sbom: report.packages.is_some() || !report.artifacts.is_empty(),
            findings: report.findings.map(FindingCounts::from),
        }
    }

    pub fn of_status(status: &ImageRecordStatus) -> Found {
        Found {
            sbom: status.packages.is_some() || !status.artifacts.is_empty(),
            findings: status.findings,
        }
    }
}

/// Totals over the digests running now, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub with_sbom: usize,
    pub without_sbom: usize,
    pub findings: FindingCounts,
}

/// Sums what was found for the `running` digests (each counted once) and forgets the digests
/// that no longer run.
pub fn totals<'a>(found: &mut HashMap<String, Found>, running: impl IntoIterator<Item = &'a str>) -> Totals {
    let running: HashSet<&str> = running.into_iter().collect();
    found.retain(|d, _| running.contains(d.as_str()));
    let mut t = Totals::default();
    for d in running {
        let f = found.get(d).copied().unwrap_or_default();
        if f.sbom {
            t.with_sbom += 1;
        } else {
            t.without_sbom += 1;
        }
        if let Some(x) = f.findings {
            t.findings.critical += x.critical;
            t.findings.high += x.high;
            t.findings.medium += x.medium;
            t.findings.low += x.low;
            t.findings.unknown += x.unknown;
        }
    }
    t
}

/// One result per digest (a digest may fill several elements, one per candidate reference): a
/// succeeded one before a failed one.
pub fn by_digest(results: Vec<Option<ImageReport>>) -> HashMap<String, ImageReport> {
    let mut out: HashMap<String, ImageReport> = HashMap::new();
    for r in results.into_iter().flatten() {
        match out.get(&r.digest) {
            Some(have) if have.outcome == ReportOutcome::Succeeded => {}
            _ => {
                out.insert(r.digest.clone(), r);
            }
        }
    }
    out
}

/// Reads the results of a Complete Job from its pod's job container log (at most
/// [`LOG_LIMIT_BYTES`]). A log that cannot be read gives no results, with a warning: the pods
/// are annotated all the same, only the records lack a summary.
pub async fn read(
    client: &Client,
    namespace: &str,
    pod: &Pod,
    elements: Vec<String>,
) -> (Vec<Option<ImageReport>>, Rejected) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut collector = Collector::new(elements);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = LogParams {
        container: Some(CONTAINER.to_string()),
        limit_bytes: Some(LOG_LIMIT_BYTES),
        ..LogParams::default()
    };
    match pods.log_stream(&name, &params).await {
        Ok(stream) => {
            if let Err(e) = pump(stream, &mut collector).await {
                warn!(pod = %format!("{namespace}/{name}"), error = %e, "the job container's log broke off; results read up to there");
            }
        }
        Err(e) => {
            warn!(pod = %format!("{namespace}/{name}"), error = %e, "cannot read the job container's log: no results for this Job");
        }
    }
    let (results, rejected) = collector.finish();
    debug!(pod = %name, results = results.iter().flatten().count(), rejected = rejected.total(), "read the Job's results");
    (results, rejected)
}

async fn pump(mut stream: impl AsyncBufRead + Unpin, collector: &mut Collector) -> std::io::Result<()> {
    loop {
        let chunk = stream.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(());
        }
        let n = chunk.len();
        collector.feed(chunk);
        stream.consume_unpin(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn line(index: usize, digest: &str, packages: u64) -> String {
        ImageReport {
            index,
            digest: digest.into(),
            outcome: ReportOutcome::Succeeded,
            tool: None,
            packages: Some(packages),
            findings: None,
            artifacts: vec![],
            platforms: vec![],
        }
        .line()
        .unwrap()
    }

    #[test]
    fn results_by_element_in_any_chunking() {
        let (a, b) = (digest(1), digest(2));
        let log = format!(
            "tool noise\n{}\n2026 INFO {}\n{}\n{}",
            line(0, &a, 1),
            line(1, &b, 9),
            line(1, &b, 2),
            line(0, &a, 3)
        );
        for size in [1, 7, 4096, log.len()] {
            let mut c = Collector::new(vec![a.clone(), b.clone()]);
            for chunk in log.as_bytes().chunks(size) {
                c.feed(chunk);
            }
            let (results, rejected) = c.finish();
            // The last line per element wins (the one without a newline too); a result inside
            // another log line is none.
            assert_eq!(results[0].as_ref().unwrap().packages, Some(3), "chunks of {size}");
            assert_eq!(results[1].as_ref().unwrap().packages, Some(2));
            assert_eq!(rejected, Rejected::default());
        }
    }

    #[test]
    fn hostile_lines_are_counted_not_kept() {
        let (a, b) = (digest(1), digest(2));
        let mut c = Collector::new(vec![a.clone()]);
        let huge = format!("{PREFIX}{}\n", "x".repeat(10 * 1024 * 1024));
        for chunk in huge.as_bytes().chunks(65536) {
            c.feed(chunk);
        }
        assert!(
            c.line.capacity() <= 2 * (MAX_LINE_BYTES + 1),
            "{}",
            c.line.capacity()
        );
        c.feed(format!("{PREFIX}{{not json\n").as_bytes());
        c.feed(b"sb\xff\n");
        c.feed(format!("{}\n", line(0, &b, 1)).as_bytes());
        c.feed(format!("{}\n", line(5, &a, 1)).as_bytes());
        c.feed(b"sbomjob.result/v1 \xff\xfe\n");
        let (results, rejected) = c.finish();
        assert_eq!(results, vec![None]);
        assert_eq!(
            (rejected.too_long, rejected.malformed, rejected.foreign),
            (1, 2, 2),
            "{rejected:?}"
        );
        assert!(rejected.first.unwrap().contains("longer than"));
    }

    #[test]
    fn one_result_per_digest_and_totals_over_what_runs() {
        let (a, b) = (digest(1), digest(2));
        let parse = |l: String| ImageReport::parse_line(&l).unwrap().unwrap();
        let mut failed = parse(line(1, &a, 0));
        failed.outcome = ReportOutcome::Failed;
        let ok = parse(line(0, &a, 5));
        let by = by_digest(vec![Some(ok.clone()), Some(failed.clone()), None]);
        assert_eq!(by[&a], ok);
        assert_eq!(by_digest(vec![Some(failed.clone())])[&a], failed);

        let mut found = HashMap::new();
        let high = FindingCounts {
            high: 2,
            ..Default::default()
        };
        found.insert(
            a.clone(),
            Found {
                sbom: true,
                findings: Some(high),
            },
        );
        found.insert(
            b.clone(),
            Found {
                sbom: true,
                findings: Some(high),
            },
        );
        let c = digest(3);
        let t = totals(&mut found, [a.as_str(), c.as_str(), a.as_str()]);
        assert_eq!((t.with_sbom, t.without_sbom, t.findings.high), (1, 1, 2));
        // b no longer runs: forgotten.
        assert!(!found.contains_key(&b));
    }
}
