//! The per-image results, the summary printed at the end, and the exit code they give.

use std::fmt::Write;
use std::time::Duration;

/// Everything went through.
pub const EXIT_OK: u8 = 0;
/// At least one image failed, timed out, was skipped or cancelled.
pub const EXIT_FAILED: u8 = 1;
/// Bad config file, settings or template: nothing was run.
pub const EXIT_USAGE: u8 = 2;
/// Stopped by SIGINT (128 + 2).
pub const EXIT_SIGINT: u8 = 130;
/// Stopped by SIGTERM, e.g. the Job's activeDeadlineSeconds (128 + 15).
pub const EXIT_SIGTERM: u8 = 143;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// The last attempt's failure (exit code, signal, could not start).
    Failed(String),
    TimedOut(Duration),
    /// Not started because an earlier image failed and fail-fast is on.
    Skipped,
    /// Stopped or never started because the entrypoint got SIGTERM/SIGINT.
    Cancelled,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "ok",
            Outcome::Failed(_) => "FAILED",
            Outcome::TimedOut(_) => "TIMEOUT",
            Outcome::Skipped => "SKIPPED",
            Outcome::Cancelled => "CANCELLED",
        }
    }

    fn detail(&self) -> String {
        match self {
            Outcome::Succeeded => String::new(),
            Outcome::Failed(why) => why.clone(),
            Outcome::TimedOut(after) => {
                format!("timed out after {}", humantime::format_duration(*after))
            }
            Outcome::Skipped => "not started: fail-fast after an earlier failure".into(),
            Outcome::Cancelled => "stopped by a signal".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageResult {
    pub image: String,
    pub outcome: Outcome,
    pub attempts: u32,
    pub duration: Duration,
}

/// The summary block: a count line, then one line per image in config order.
pub fn render(results: &[ImageResult]) -> String {
    let count = |label: &str| results.iter().filter(|r| r.outcome.label() == label).count();
    let mut out = format!(
        "summary: {} images: {} ok, {} failed, {} timed out, {} skipped, {} cancelled\n",
        results.len(),
        count("ok"),
        count("FAILED"),
        count("TIMEOUT"),
        count("SKIPPED"),
        count("CANCELLED"),
    );
    for r in results {
        let _ = write!(
            out,
            "{:<9} attempts={} duration={:.3}s image={}",
            r.outcome.label(),
            r.attempts,
            r.duration.as_secs_f64(),
            r.image
        );
        let detail = r.outcome.detail();
        if !detail.is_empty() {
            let _ = write!(out, " ({detail})");
        }
        out.push('\n');
    }
    out
}

/// 143/130 when a signal stopped the run, else 0 only if every image succeeded.
pub fn exit_code(results: &[ImageResult], signal: Option<i32>) -> u8 {
    match signal {
        Some(s) if s == nix::libc::SIGINT => EXIT_SIGINT,
        Some(_) => EXIT_SIGTERM,
        None if results.iter().all(|r| r.outcome == Outcome::Succeeded) => EXIT_OK,
        None => EXIT_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(image: &str, outcome: Outcome) -> ImageResult {
        ImageResult {
            image: image.into(),
            outcome,
            attempts: 2,
            duration: Duration::from_millis(1500),
        }
    }

    #[test]
    fn renders_one_line_per_image() {
        let text = render(&[
            result("a:1", Outcome::Succeeded),
            result("b:1", Outcome::Failed("exit code 3".into())),
            result("c:1", Outcome::Skipped),
        ]);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(
            lines[0],
            "summary: 3 images: 1 ok, 1 failed, 0 timed out, 1 skipped, 0 cancelled"
        );
        assert_eq!(lines[1], "ok        attempts=2 duration=1.500s image=a:1");
        assert_eq!(
            lines[2],
            "FAILED    attempts=2 duration=1.500s image=b:1 (exit code 3)"
        );
        assert!(lines[3].starts_with("SKIPPED   attempts=2"));
    }

    #[test]
    fn exit_codes() {
        let ok = [result("a", Outcome::Succeeded)];
        let bad = [
            result("a", Outcome::Succeeded),
            result("b", Outcome::TimedOut(Duration::from_secs(1))),
        ];
        assert_eq!(exit_code(&[], None), EXIT_OK);
        assert_eq!(exit_code(&ok, None), EXIT_OK);
        assert_eq!(exit_code(&bad, None), EXIT_FAILED);
        assert_eq!(exit_code(&ok, Some(nix::libc::SIGTERM)), EXIT_SIGTERM);
        assert_eq!(exit_code(&ok, Some(nix::libc::SIGINT)), EXIT_SIGINT);
    }
}
