//! After a failed Job: which of its images run again in the same cycle, alone or together, and
//! which wait (pure). A failed Job annotates nothing, so the healthy images of a Job that also
//! held a bad one must run again without it, now rather than a schedule period later.
//!
//! What the Job can tell decides how:
//! - our entrypoint's report (termination message) names the elements that failed: each of
//!   those runs alone, the rest together;
//! - a job image that only gives an exit code: the images are split in halves, and the halves
//!   that fail again are split again, until the failing images are alone;
//! - the tool never ran (the job image could not be pulled, the pod never started): not the
//!   images' fault, they wait for the next cycle; a config Secret lost before the pod mounted
//!   it: the same images run again together.
//!
//! An image that fails alone moves on to its next candidate (another reference or credential
//! seen for the digest); when none is left it is exhausted and backs off.

use std::collections::HashSet;

use sbomjob_contract::ImageConfig;

/// One digest to process and the ways to get it: the configs the job may try, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub digest: String,
    /// Never empty: the first is the reference and credential of the first pod.
    pub candidates: Vec<ImageConfig>,
    /// The candidate in use.
    pub tried: usize,
    /// Runs in a Job of its own (it failed before, alone or in this cycle).
    pub solo: bool,
}

impl Unit {
    pub fn new(digest: String, candidates: Vec<ImageConfig>) -> Self {
        assert!(!candidates.is_empty(), "a unit has at least one candidate");
        Unit {
            digest,
            candidates,
            tried: 0,
            solo: false,
        }
    }

    /// The config element the Job gets for this digest.
    pub fn config(&self) -> &ImageConfig {
        &self.candidates[self.tried.min(self.candidates.len() - 1)]
    }
}

/// The per-image report of a job's entrypoint: indices into its `image-config.json`.
pub use sbomjob_contract::termination::Report as JobReport;

/// What is known about how a failed Job's tool ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// The entrypoint said which elements failed.
    Report(JobReport),
    /// The tool ran, or may have (the pod is gone), and left no report.
    ExitOnly,
    /// The tool never ran: the job image, not the images, is at fault.
    NotRun,
    /// The config Secret was gone before the pod could mount it.
    ConfigGone,
}

/// Where each unit of a failed Job goes.
#[derive(Debug, Default, PartialEq)]
pub struct Replan {
    /// Groups that run again together (each planned into Jobs of its own).
    pub together: Vec<Vec<Unit>>,
    /// Units that run again alone.
    pub alone: Vec<Unit>,
    /// Units that failed alone with every candidate: they back off.
    pub exhausted: Vec<Unit>,
    /// Units left for the next cycle.
    pub wait: Vec<Unit>,
}

/// Re-plans the units of a failed Job. `elements` is the digest of each element of its
/// `image-config.json`, in order (what the report's indices point at).
pub fn after_failure(units: Vec<Unit>, elements: &[String], evidence: &Evidence) -> Replan {
    let mut out = Replan::default();
    match evidence {
        Evidence::NotRun => out.wait = units,
        Evidence::ConfigGone => out.together.push(units),
        _ if units.len() == 1 => {
            let mut unit = units.into_iter().next().expect("one unit");
            unit.solo = true;
            if unit.tried + 1 < unit.candidates.len() {
                unit.tried += 1;
                out.alone.push(unit);
            } else {
                out.exhausted.push(unit);
            }
        }
        _ => match failed_digests(elements, evidence) {
            Some(failed) => {
                let (bad, rest): (Vec<Unit>, Vec<Unit>) = units
                    .into_iter()
                    .partition(|u| failed.contains(u.digest.as_str()));
                out.alone = bad.into_iter().map(|u| Unit { solo: true, ..u }).collect();
                if !rest.is_empty() {
                    out.together.push(rest);
                }
            }
            None => {
                let mut first = units;
                let second = first.split_off(first.len() / 2);
                out.together = vec![first, second];
            }
        },
    }
    out
}

/// The digests a report names as failed; `None` when there is no usable report (none, one for
/// another config, or one that names no failure although the Job failed): split instead.
fn failed_digests<'a>(elements: &'a [String], evidence: &Evidence) -> Option<HashSet<&'a str>> {
    let Evidence::Report(report) = evidence else {
        return None;
    };
    if report.n != elements.len() {
        return None;
    }
    let failed: HashSet<&str> = report
        .failed
        .iter()
        .filter_map(|&i| elements.get(i).map(String::as_str))
        .collect();
    (!failed.is_empty()).then_some(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(n: u8, candidates: usize) -> Unit {
        let digest = format!("sha256:{}", format!("{n:02x}").repeat(32));
        let candidates = (0..candidates)
            .map(|c| ImageConfig {
                image: format!("r{c}.io/x@{digest}"),
                ..Default::default()
            })
            .collect();
        Unit::new(digest, candidates)
    }

    fn digests(units: &[Unit]) -> Vec<String> {
        units.iter().map(|u| u.digest.clone()).collect()
    }

    fn elements(units: &[Unit]) -> Vec<String> {
        digests(units)
    }

    fn report(n: usize, ok: &[usize], failed: &[usize]) -> Evidence {
        Evidence::Report(JobReport {
            n,
            ok: ok.to_vec(),
            failed: failed.to_vec(),
        })
    }

    #[test]
    fn reported_failures_run_alone_and_the_rest_together() {
        let units: Vec<Unit> = (0..4).map(|n| unit(n, 1)).collect();
        let els = elements(&units);
        let r = after_failure(units.clone(), &els, &report(4, &[0, 2], &[1, 3]));
        assert_eq!(digests(&r.alone), [els[1].clone(), els[3].clone()]);
        assert!(r.alone.iter().all(|u| u.solo && u.tried == 0));
        assert_eq!(r.together.len(), 1);
        assert_eq!(digests(&r.together[0]), [els[0].clone(), els[2].clone()]);
        assert!(r.exhausted.is_empty() && r.wait.is_empty());
    }

    #[test]
    fn elements_not_run_go_with_the_healthy_ones() {
        let units: Vec<Unit> = (0..3).map(|n| unit(n, 1)).collect();
        let els = elements(&units);
        // Element 2 never started (a deadline or fail-fast): not named, not isolated.
        let r = after_failure(units, &els, &report(3, &[0], &[1]));
        assert_eq!(digests(&r.alone), [els[1].clone()]);
        assert_eq!(digests(&r.together[0]), [els[0].clone(), els[2].clone()]);
    }

    #[test]
    fn without_a_usable_report_the_images_are_halved() {
        let units: Vec<Unit> = (0..5).map(|n| unit(n, 1)).collect();
        let els = elements(&units);
        for evidence in [
            Evidence::ExitOnly,
            report(4, &[], &[0]),    // another config's report
            report(5, &[0, 1], &[]), // no failure named although the Job failed
            report(5, &[], &[9]),    // an index out of range names nothing
        ] {
            let r = after_failure(units.clone(), &els, &evidence);
            assert_eq!(r.together.len(), 2, "{evidence:?}");
            assert_eq!(digests(&r.together[0]), els[..2]);
            assert_eq!(digests(&r.together[1]), els[2..]);
            assert!(r.alone.is_empty() && r.exhausted.is_empty());
        }
    }

    #[test]
    fn halving_isolates_one_bad_image_in_log2_rounds() {
        // Simulates the exit-code-only path over 16 images, one bad: every Job that holds it
        // fails, the others succeed; the bad one ends up alone and exhausted.
        let units: Vec<Unit> = (0..16).map(|n| unit(n, 1)).collect();
        let bad = units[11].digest.clone();
        let (mut queue, mut jobs, mut succeeded, mut exhausted) = (vec![units], 0, 0, Vec::new());
        while let Some(group) = queue.pop() {
            jobs += 1;
            if !group.iter().any(|u| u.digest == bad) {
                succeeded += group.len();
                continue;
            }
            let els = elements(&group);
            let r = after_failure(group, &els, &Evidence::ExitOnly);
            queue.extend(r.together);
            queue.extend(r.alone.into_iter().map(|u| vec![u]));
            exhausted.extend(r.exhausted);
        }
        assert_eq!(succeeded, 15);
        assert_eq!(digests(&exhausted), [bad]);
        // 1 + 2 per level below the top (4 levels) + the lone retry: 9 Jobs, not 16.
        assert_eq!(jobs, 9);
    }

    #[test]
    fn a_unit_failing_alone_tries_its_other_candidates_then_is_exhausted() {
        let u = unit(7, 2);
        let els = elements(std::slice::from_ref(&u));
        let r = after_failure(vec![u], &els, &Evidence::ExitOnly);
        assert_eq!(r.alone.len(), 1);
        let next = r.alone.into_iter().next().unwrap();
        assert_eq!((next.tried, next.solo), (1, true));
        assert!(next.config().image.starts_with("r1.io/"));
        let r = after_failure(vec![next], &els, &report(1, &[], &[0]));
        assert_eq!(r.exhausted.len(), 1);
        assert!(r.alone.is_empty() && r.together.is_empty());
    }

    #[test]
    fn a_job_that_never_ran_its_tool_blames_no_image() {
        let units: Vec<Unit> = (0..3).map(|n| unit(n, 1)).collect();
        let els = elements(&units);
        let r = after_failure(units.clone(), &els, &Evidence::NotRun);
        assert_eq!(r.wait, units);
        let r = after_failure(units.clone(), &els, &Evidence::ConfigGone);
        assert_eq!(r.together, vec![units]);
        // Alone, too: nothing is exhausted by a job image that cannot start.
        let one = vec![unit(9, 1)];
        let r = after_failure(one.clone(), &elements(&one), &Evidence::NotRun);
        assert_eq!(r.wait, one);
    }

    #[test]
    fn termination_messages_are_read_strictly() {
        assert_eq!(
            JobReport::parse(r#"{"v":1,"n":3,"ok":[0],"failed":[2]}"#),
            Some(JobReport {
                n: 3,
                ok: vec![0],
                failed: vec![2]
            })
        );
        assert_eq!(
            JobReport::parse(r#"{"v":1,"n":2,"failed":[1]}"#).unwrap().ok,
            Vec::<usize>::new()
        );
        for junk in [
            "",
            "exit 1",
            r#"{"v":2,"n":1}"#,
            r#"{"n":1}"#,
            "[1,2]",
            r#"{"v":1,"n":-1}"#,
        ] {
            assert_eq!(JobReport::parse(junk), None, "{junk}");
        }
    }
}
