//! Per-image outcomes in the container's termination message, so that the operator can tell
//! which elements of a failed multi-image Job failed and re-plan only those.
//!
//! One line of compact JSON: `{"v":1,"n":<elements>,"ok":[<indices>],"failed":[<indices>]}`,
//! indices 0-based in the `image-config.json` array, ascending. An element in neither list was
//! not run (skipped by fail-fast, or not started before a signal).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use tracing::{debug, warn};

use crate::settings::TerminationLog;
use crate::summary::{ImageResult, Outcome};

/// What Kubernetes keeps of a termination message.
pub const MAX_BYTES: usize = 4096;

/// Field order as documented (`v`, `n`, `ok`, `failed`).
#[derive(Serialize)]
struct Message<'a> {
    v: u32,
    n: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<&'a [usize]>,
    failed: &'a [usize],
}

/// The message as the operator reads it back: the one definition both ends use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Report {
    /// The number of elements the job read.
    pub n: usize,
    /// Absent when the full message would not fit.
    #[serde(default)]
    pub ok: Vec<usize>,
    pub failed: Vec<usize>,
}

impl Report {
    /// Reads a termination message; `None` for anything else a job image may leave there (a
    /// shell job image's text, another version).
    pub fn parse(message: &str) -> Option<Self> {
        #[derive(serde::Deserialize)]
        struct Versioned {
            v: u32,
            #[serde(flatten)]
            report: Report,
        }
        let parsed: Versioned = serde_json::from_str(message.trim()).ok()?;
        (parsed.v == 1).then_some(parsed.report)
    }
}

/// The indices of the elements that succeeded and of those that failed, ascending.
pub fn outcomes(results: &[ImageResult]) -> (Vec<usize>, Vec<usize>) {
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for (index, r) in results.iter().enumerate() {
        match &r.outcome {
            Outcome::Succeeded => ok.push(index),
            Outcome::Failed(_) | Outcome::TimedOut(_) => failed.push(index),
            // Stopped by the signal while it ran (or waited for a retry): it failed. Cancelled
            // before its first attempt: it never ran.
            Outcome::Cancelled if r.attempts > 0 => failed.push(index),
            Outcome::Cancelled | Outcome::Skipped => {}
        }
    }
    (ok, failed)
}

/// The message for `n` elements, at most [`MAX_BYTES`]: without `ok` if the full one is too
/// big (`failed` is what the operator needs), `None` if even that is.
pub fn message(n: usize, ok: &[usize], failed: &[usize]) -> Option<String> {
    let render =
        |ok| serde_json::to_string(&Message { v: 1, n, ok, failed }).expect("a struct of numbers serialises");
    [render(Some(ok)), render(None)]
        .into_iter()
        .find(|m| m.len() <= MAX_BYTES)
}

/// Writes the message for `results` (one per element of the config, `n` in all) to the
/// configured file. Failing to write is only a warning: it must not change the exit code.
pub fn write(log: &TerminationLog, n: usize, results: &[ImageResult]) {
    let (path, create) = match log {
        TerminationLog::Off => return,
        TerminationLog::IfExists(path) => (path, false),
        TerminationLog::Path(path) => (path, true),
    };
    if !create && !path.exists() {
        debug!(path = %path.display(), "no termination-message file; outcomes not written");
        return;
    }
    let (ok, failed) = outcomes(results);
    let Some(line) = message(n, &ok, &failed) else {
        warn!(
            failed = failed.len(),
            "the per-image outcomes do not fit into {MAX_BYTES} bytes; no termination message written"
        );
        return;
    };
    if let Err(e) = write_file(path, create, &line) {
        warn!("cannot write the termination message to {}: {e}", path.display());
    }
}

fn write_file(path: &Path, create: bool, line: &str) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(create)
        .open(path)?;
    file.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_is_written_reads_back() {
        let line = super::message(5, &[0, 3], &[1, 4]).unwrap();
        assert_eq!(
            super::Report::parse(&line),
            Some(super::Report {
                n: 5,
                ok: vec![0, 3],
                failed: vec![1, 4]
            })
        );
    }

    use std::time::Duration;

    use super::*;

    fn r(outcome: Outcome, attempts: u32) -> ImageResult {
        ImageResult {
            image: "x".into(),
            outcome,
            attempts,
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn lists_by_outcome() {
        let results = [
            r(Outcome::Succeeded, 1),
            r(Outcome::Failed("exit code 1".into()), 2),
            r(Outcome::TimedOut(Duration::from_secs(1)), 1),
            r(Outcome::Skipped, 0),
            r(Outcome::Cancelled, 1),
            r(Outcome::Cancelled, 0),
            r(Outcome::Succeeded, 1),
            r(Outcome::Failed("invalid config element: x".into()), 0),
        ];
        let (ok, failed) = outcomes(&results);
        assert_eq!(ok, [0, 6]);
        assert_eq!(failed, [1, 2, 4, 7]);
        assert_eq!(
            message(results.len(), &ok, &failed).unwrap(),
            r#"{"v":1,"n":8,"ok":[0,6],"failed":[1,2,4,7]}"#
        );
        assert_eq!(
            message(0, &[], &[]).unwrap(),
            r#"{"v":1,"n":0,"ok":[],"failed":[]}"#
        );
    }

    #[test]
    fn too_big_drops_ok_then_everything() {
        // 1000 four-digit indices plus commas: ~5000 bytes each list.
        let ok: Vec<usize> = (1000..2000).collect();
        let failed = [3, 5];
        let m = message(2000, &ok, &failed).unwrap();
        assert_eq!(m, r#"{"v":1,"n":2000,"failed":[3,5]}"#);

        let failed: Vec<usize> = (1000..2000).collect();
        assert_eq!(message(2000, &[], &failed), None);

        // `{"v":1,"n":9,"ok":[],"failed":[1,...]}` is 32 + 2k bytes for k entries: exactly
        // 4096 still fits; 4098 loses `"ok":[],` (8 bytes).
        let m = message(9, &[], &[1; 2032]).unwrap();
        assert_eq!(m.len(), MAX_BYTES);
        assert!(m.contains(r#""ok":[]"#));
        let m = message(9, &[], &[1; 2033]).unwrap();
        assert_eq!(m.len(), MAX_BYTES + 2 - 8);
        assert!(m.starts_with(r#"{"v":1,"n":9,"failed":[1,"#), "{m}");
    }

    #[test]
    fn writes_only_where_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let results = [r(Outcome::Succeeded, 1), r(Outcome::Failed("x".into()), 1)];
        let absent = dir.path().join("absent");
        write(&TerminationLog::IfExists(absent.clone()), 2, &results);
        assert!(!absent.exists(), "the default path is never created");
        write(&TerminationLog::Off, 2, &results);
        assert!(!absent.exists());

        let explicit = dir.path().join("explicit");
        write(&TerminationLog::Path(explicit.clone()), 2, &results);
        let want = r#"{"v":1,"n":2,"ok":[0],"failed":[1]}"#;
        assert_eq!(std::fs::read_to_string(&explicit).unwrap(), want);

        // An existing file (as the kubelet provides) is overwritten, not appended to.
        let existing = dir.path().join("existing");
        std::fs::write(&existing, "old content that is longer than the message ...").unwrap();
        write(&TerminationLog::IfExists(existing.clone()), 2, &results);
        assert_eq!(std::fs::read_to_string(&existing).unwrap(), want);

        // Unwritable: a warning, no panic.
        write(&TerminationLog::Path(dir.path().join("no/such/dir")), 2, &results);
    }
}
