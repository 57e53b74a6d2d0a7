//! Runs one attempt of the CLI for one image: spawn, stream its output, enforce the timeout,
//! and make sure nothing it started outlives it.
//!
//! Each child leads its own process group, so stopping it (timeout, SIGTERM to the entrypoint)
//! reaches whatever it spawned too: the group gets SIGTERM, then SIGKILL after a grace period,
//! and a guard SIGKILLs the group once more when the attempt ends, for anything the tool left
//! running in the background.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::fs::File;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;
use tracing::{Instrument, Span, debug, info, warn};

use crate::reaper;
use crate::redact::{Redactor, StreamRedactor};

/// Longest log line kept from the tool; the rest of a longer line is cut (files get it all).
const MAX_LOG_LINE: usize = 8 * 1024;
/// How long to wait for the output pipes to drain after the process group is gone.
const DRAIN: Duration = Duration::from_secs(2);

/// One attempt to run.
#[derive(Debug)]
pub struct Attempt<'a> {
    pub argv: &'a [String],
    /// The preset's defaults for the tool (under `env`).
    pub tool_env: &'a [(String, String)],
    /// Extra environment on top of the entrypoint's own.
    pub env: Vec<(&'static str, PathBuf)>,
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
    /// When set, stdout and stderr are also written, redacted, to `<capture>.stdout`/`.stderr`.
    pub capture: Option<PathBuf>,
    /// The credentials of the whole config, masked in the log and the captured copies.
    pub redact: Arc<Redactor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded,
    /// Exited non-zero or was killed by a signal it did not get from us.
    Failed(String),
    TimedOut(Duration),
    /// The entrypoint is shutting down (SIGTERM/SIGINT).
    Cancelled,
    /// Could not start at all (not retried: it will not start next time either).
    SpawnFailed(String),
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptOutcome::Succeeded => write!(f, "succeeded"),
            AttemptOutcome::Failed(why) => write!(f, "failed: {why}"),
            AttemptOutcome::TimedOut(after) => {
                write!(f, "timed out after {}", humantime::format_duration(*after))
            }
            AttemptOutcome::Cancelled => write!(f, "cancelled"),
            AttemptOutcome::SpawnFailed(why) => write!(f, "could not start: {why}"),
        }
    }
}

/// Resolves until `cancel` turns true; never resolves if its sender is gone without cancelling.
pub async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// SIGKILLs the whole process group when dropped: covers early returns, panics and aborted
/// tasks as well as the normal end of an attempt.
struct GroupGuard(Pid);

impl GroupGuard {
    fn signal(&self, signal: Signal) {
        // ESRCH (group already empty) is the normal case at the end of an attempt.
        let _ = killpg(self.0, signal);
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

pub async fn run(attempt: Attempt<'_>, cancel: &mut watch::Receiver<bool>) -> AttemptOutcome {
    let Some((program, args)) = attempt.argv.split_first() else {
        return AttemptOutcome::SpawnFailed("empty command".into());
    };
    // Before spawning, so that no early return can leave a started child behind.
    let (stdout_file, stderr_file) = match open_capture(attempt.capture.as_deref()).await {
        Ok(files) => files,
        Err(e) => return AttemptOutcome::SpawnFailed(format!("cannot write captured output: {e}")),
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(attempt.tool_env.iter().map(|(k, v)| (k, v)))
        .envs(attempt.env.iter().map(|(k, v)| (OsStr::new(k), v.as_os_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match reaper::spawn(&mut command) {
        Ok(child) => child,
        Err(e) => return AttemptOutcome::SpawnFailed(format!("{program}: {e}")),
    };
    let Some(pid) = child.id() else {
        return AttemptOutcome::SpawnFailed("child exited before its pid was read".into());
    };
    // process_group(0) makes the child's pid its group id.
    let group = GroupGuard(Pid::from_raw(pid as i32));
    debug!(pid, "started");

    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(
            pump(out, "stdout", stdout_file, attempt.redact.clone()).instrument(Span::current()),
        ));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(
            pump(err, "stderr", stderr_file, attempt.redact.clone()).instrument(Span::current()),
        ));
    }

    let timeout = async {
        match attempt.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        status = child.wait() => Some(status),
        () = timeout => None,
        () = cancelled(cancel) => None,
    };
    let outcome = match outcome {
        Some(Ok(status)) => describe(status),
        Some(Err(e)) => AttemptOutcome::Failed(format!("cannot wait for the process: {e}")),
        None => {
            let outcome = if *cancel.borrow() {
                AttemptOutcome::Cancelled
            } else {
                AttemptOutcome::TimedOut(attempt.timeout.unwrap_or_default())
            };
            stop(&mut child, &group, attempt.kill_grace).await;
            outcome
        }
    };
    reaper::untrack(pid);
    // Anything still in the group (background helpers, daemons) goes now, which also closes
    // the pipes so the pumps can finish.
    drop(group);
    let deadline = tokio::time::Instant::now() + DRAIN;
    for pump in pumps {
        let abort = pump.abort_handle();
        if tokio::time::timeout_at(deadline, pump).await.is_err() {
            // A process that left our group (setsid) still holds the pipe; stop reading it.
            warn!("output pipe still open after the process ended; no longer reading it");
            abort.abort();
        }
    }
    let reaped = reaper::reap_zombies();
    if reaped > 0 {
        debug!(reaped, "reaped processes the tool left behind");
    }
    outcome
}

/// SIGTERM to the group, SIGKILL after the grace period; returns once the child is reaped.
async fn stop(child: &mut tokio::process::Child, group: &GroupGuard, grace: Duration) {
    group.signal(Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        info!(
            "still running {} after SIGTERM; sending SIGKILL",
            humantime::format_duration(grace)
        );
        group.signal(Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

fn describe(status: ExitStatus) -> AttemptOutcome {
    match (status.code(), status.signal()) {
        (Some(0), _) => AttemptOutcome::Succeeded,
        (Some(code), _) => AttemptOutcome::Failed(format!("exit code {code}")),
        (None, Some(signal)) => {
            let name =
                Signal::try_from(signal).map_or_else(|_| signal.to_string(), |s| s.as_str().to_owned());
            AttemptOutcome::Failed(format!("killed by {name}"))
        }
        (None, None) => AttemptOutcome::Failed(format!("{status}")),
    }
}

async fn open_capture(stem: Option<&Path>) -> std::io::Result<(Option<File>, Option<File>)> {
    let Some(stem) = stem else {
        return Ok((None, None));
    };
    let open = |suffix: &str| {
        let mut path = stem.as_os_str().to_owned();
        path.push(suffix);
        File::create(PathBuf::from(path))
    };
    Ok((Some(open(".stdout").await?), Some(open(".stderr").await?)))
}

/// Copies one output stream, redacted, to the log (line by line, long lines cut) and to the
/// capture file. Reads in chunks so a huge line without newlines cannot exhaust memory; the
/// redaction holds back only what may begin a credential (see [`StreamRedactor`]).
async fn pump(
    stream: impl AsyncRead + Unpin,
    name: &'static str,
    mut file: Option<File>,
    redact: Arc<Redactor>,
) {
    let mut reader = BufReader::new(stream);
    let mut redactor = StreamRedactor::new(redact);
    let mut log = LogLines::new(name);
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) => {
                warn!("cannot read {name}: {e}");
                break;
            }
        };
        let take = chunk.len();
        let out = redactor.push(chunk);
        reader.consume(take);
        write_capture(&mut file, name, &out).await;
        log.feed(&out);
    }
    let out = redactor.finish();
    write_capture(&mut file, name, &out).await;
    log.feed(&out);
    log.finish();
    if let Some(mut f) = file
        && let Err(e) = f.flush().await
    {
        warn!("cannot write captured {name}: {e}");
    }
}

async fn write_capture(file: &mut Option<File>, name: &str, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    if let Some(f) = file.as_mut()
        && let Err(e) = f.write_all(bytes).await
    {
        warn!("cannot write captured {name}: {e}; no longer capturing it");
        *file = None;
    }
}

/// Splits (redacted) output into log lines of at most [`MAX_LOG_LINE`] bytes.
struct LogLines {
    name: &'static str,
    line: Vec<u8>,
    /// Bytes of the current line past the limit, dropped.
    cut: usize,
}

impl LogLines {
    fn new(name: &'static str) -> LogLines {
        LogLines {
            name,
            line: Vec::new(),
            cut: 0,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (piece, end_of_line) = match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => (&bytes[..=i], true),
                None => (bytes, false),
            };
            let room = MAX_LOG_LINE.saturating_sub(self.line.len());
            self.line.extend_from_slice(&piece[..piece.len().min(room)]);
            self.cut += piece.len().saturating_sub(room);
            bytes = &bytes[piece.len()..];
            if end_of_line {
                self.emit();
            }
        }
    }

    fn finish(&mut self) {
        if !self.line.is_empty() || self.cut > 0 {
            self.emit();
        }
    }

    fn emit(&mut self) {
        let name = self.name;
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches(['\n', '\r']);
        if self.cut > 0 {
            info!("{name}: {text} [... {} more bytes]", self.cut);
        } else {
            info!("{name}: {text}");
        }
        self.line.clear();
        self.cut = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_exit_statuses() {
        assert_eq!(describe(ExitStatus::from_raw(0)), AttemptOutcome::Succeeded);
        assert_eq!(
            describe(ExitStatus::from_raw(3 << 8)),
            AttemptOutcome::Failed("exit code 3".into())
        );
        assert_eq!(
            describe(ExitStatus::from_raw(9)),
            AttemptOutcome::Failed("killed by SIGKILL".into())
        );
    }

    fn attempt(argv: &[String], timeout: Option<Duration>) -> Attempt<'_> {
        Attempt {
            argv,
            tool_env: &[],
            env: vec![],
            timeout,
            kill_grace: Duration::from_secs(1),
            capture: None,
            redact: Arc::new(Redactor::NONE),
        }
    }

    #[tokio::test]
    async fn runs_real_processes() {
        let (_tx, mut rx) = watch::channel(false);
        let ok = ["true".to_owned()];
        assert_eq!(run(attempt(&ok, None), &mut rx).await, AttemptOutcome::Succeeded);
        let bad = ["false".to_owned()];
        assert_eq!(
            run(attempt(&bad, None), &mut rx).await,
            AttemptOutcome::Failed("exit code 1".into())
        );
        let missing = ["/nonexistent/tool".to_owned()];
        assert!(matches!(
            run(attempt(&missing, None), &mut rx).await,
            AttemptOutcome::SpawnFailed(_)
        ));
    }

    #[tokio::test]
    async fn timeout_kills_the_child() {
        let (_tx, mut rx) = watch::channel(false);
        let argv = ["sleep".to_owned(), "30".to_owned()];
        let started = std::time::Instant::now();
        let outcome = run(attempt(&argv, Some(Duration::from_millis(200))), &mut rx).await;
        assert_eq!(outcome, AttemptOutcome::TimedOut(Duration::from_millis(200)));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn cancel_stops_the_child() {
        let (tx, mut rx) = watch::channel(false);
        let argv = ["sleep".to_owned(), "30".to_owned()];
        let started = std::time::Instant::now();
        let run = tokio::spawn(async move { run(attempt(&argv, None), &mut rx).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(true).unwrap();
        assert_eq!(run.await.unwrap(), AttemptOutcome::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn captures_raw_output() {
        let (_tx, mut rx) = watch::channel(false);
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("img");
        let argv = ["echo".to_owned(), "a b  c".to_owned()];
        let mut a = attempt(&argv, None);
        a.capture = Some(stem.clone());
        assert_eq!(run(a, &mut rx).await, AttemptOutcome::Succeeded);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("img.stdout")).unwrap(),
            "a b  c\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("img.stderr")).unwrap(),
            ""
        );
    }

    /// What a tool prints of any image's credentials is masked in the copies it leaves, also
    /// when it writes a credential in pieces (here: byte by byte, with pauses).
    #[tokio::test]
    async fn captured_output_is_redacted() {
        use crate::redact::Credentials;
        let (_tx, mut rx) = watch::channel(false);
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("img");
        let script = r#"
            printf 'first: other-password\n'
            for c in h u n t e r 2 - s e c r e t; do printf %s "$c"; sleep 0.01; done
            printf ' end\n' >&2
            printf 'tail without newline: hunter2-secret'
        "#;
        let argv = ["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let mut credentials = Credentials::default();
        credentials.add_basic("user-a", "hunter2-secret");
        credentials.add_basic("user-b", "other-password");
        let mut a = attempt(&argv, None);
        a.capture = Some(stem.clone());
        a.redact = Arc::new(Redactor::new(&credentials));
        assert_eq!(run(a, &mut rx).await, AttemptOutcome::Succeeded);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("img.stdout")).unwrap(),
            "first: ***\n***tail without newline: ***"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("img.stderr")).unwrap(),
            " end\n"
        );
    }

    #[test]
    fn log_lines_are_cut_after_the_limit() {
        let mut lines = LogLines::new("stdout");
        let long = vec![b'x'; MAX_LOG_LINE + 10];
        lines.feed(&long);
        lines.feed(b"\nnext");
        assert!(lines.line.starts_with(b"next") && lines.cut == 0);
        lines.feed(b" line\n");
        assert!(lines.line.is_empty());
    }
}
