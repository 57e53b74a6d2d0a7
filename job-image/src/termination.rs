//! Writes the per-image outcomes to the container's termination message, in the format of
//! [`sbomjob_contract::termination`].

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use sbomjob_contract::termination::{MAX_BYTES, message};
use tracing::{debug, warn};

use crate::settings::TerminationLog;
use crate::summary::{ImageResult, Outcome};

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
