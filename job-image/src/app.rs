//! The entrypoint from start to exit code: signals, settings, template, config, the batch,
//! the summary.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use crate::attach::Attacher;
use crate::redact::{self, Credentials, Redactor};
use crate::settings::{LogFormat, PREFIX, Settings};
use crate::summary::{self, EXIT_USAGE};
use crate::template::{Placeholder, Template};
use sbomjob_contract::image_config as config;

use crate::batch;

/// Runs the entrypoint and returns its exit code. Everything it created (work directories,
/// scratch output, child processes) is gone by the time this returns.
pub fn main() -> u8 {
    // The job-image spec passes no arguments; this one is for people and the docs' test.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args == ["--print-settings"] {
        let printed = crate::settings::table::printed();
        println!(
            "{}",
            serde_json::to_string_pretty(&printed).expect("settings serialise")
        );
        return summary::EXIT_OK;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return summary::EXIT_FAILED;
        }
    };
    runtime.block_on(run())
}

async fn run() -> u8 {
    // Signal handlers first: from here on SIGTERM no longer kills us before we clean up.
    let (cancel_tx, cancel) = watch::channel(false);
    let cancel_tx = Arc::new(cancel_tx);
    let got_signal = Arc::new(AtomicI32::new(0));
    if let Err(e) = watch_signals(cancel_tx.clone(), got_signal.clone()) {
        eprintln!("error: cannot install signal handlers: {e}");
        return summary::EXIT_FAILED;
    }
    init_logging();
    if let Err(e) = crate::reaper::become_subreaper() {
        warn!("cannot become a child subreaper ({e}); processes that detach from a tool may outlive it");
    }

    let (settings, unknown) = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => return usage(format_args!("{e}")),
    };
    if let Some(deadline) = settings.deadline {
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            warn!(
                "{PREFIX}DEADLINE of {} reached; stopping all tools (images still running count as failed)",
                humantime::format_duration(deadline)
            );
            let _ = cancel_tx.send(true);
        });
    }
    for name in unknown {
        warn!(
            "{name} is not a setting of this entrypoint; ignored (known: {})",
            known_names()
        );
    }
    let template = match Template::parse(&settings.command) {
        Ok(t) => t,
        Err(e) => return usage(format_args!("{PREFIX}COMMAND: {e}")),
    };
    if let Some(program) = template.literal_program()
        && let Err(e) = find_program(program)
    {
        return usage(format_args!("{PREFIX}COMMAND: {e}"));
    }
    for name in &settings.attach_ignored {
        warn!("{name} is set but {PREFIX}ATTACH is not true; ignored");
    }
    let attacher = match &settings.attach {
        None => None,
        Some(_) if !template.uses(Placeholder::Output) => {
            return usage(format_args!(
                "{PREFIX}ATTACH=true attaches the {{output}}.* files the tool writes, but {PREFIX}COMMAND has no {{output}}"
            ));
        }
        Some(attach) => match Attacher::new(attach.clone(), settings.timeout) {
            Ok(a) => Some(Arc::new(a)),
            Err(e) => return usage(format_args!("{e}")),
        },
    };
    let document = match config::read(&settings.config) {
        Ok(bytes) => bytes,
        Err(e) => return usage(format_args!("{e}")),
    };
    // Before anything is said about the config: from here on the log, the summary and the
    // captured output mask every credential of the whole config.
    let mut credentials = Credentials::from_config(&document);
    credentials.extend(&Credentials::from_env(std::env::vars_os()));
    if let Some(attacher) = &attacher {
        credentials.extend(attacher.credentials());
    }
    let redactor = Arc::new(Redactor::new(&credentials));
    redact::install(redactor.clone());
    let elements = match config::parse_elements(&document) {
        Ok(elements) => elements,
        Err(e) => return usage(format_args!("{e}")),
    };
    info!(images = elements.len(), config = %settings.config.display(), "loaded the image config");
    // From here on every exit reports which elements ran ok and which failed.
    let (n, termination_log) = (elements.len(), settings.termination_log.clone());
    let (code, results) = run_config(
        settings,
        template,
        attacher,
        elements,
        redactor,
        cancel,
        &got_signal,
    )
    .await;
    crate::termination::write(&termination_log, n, &results);
    code
}

/// Runs the loaded config and returns the exit code and one result per element (none when a
/// usage error stops it before anything runs).
async fn run_config(
    settings: Settings,
    template: Template,
    attacher: Option<Arc<Attacher>>,
    elements: Vec<config::Element>,
    redactor: Arc<Redactor>,
    cancel: watch::Receiver<bool>,
    got_signal: &AtomicI32,
) -> (u8, Vec<summary::ImageResult>) {
    // The scratch directory (when no output dir is set) lives until the end of this function.
    let (output_dir, _scratch) = match output_dir(&settings, &template) {
        Ok(dirs) => dirs,
        Err(e) => return (usage(format_args!("{e}")), Vec::new()),
    };
    let jobs = crate::work::plan(elements, &output_dir);
    for invalid in jobs.iter().filter_map(|j| j.as_ref().err()) {
        error!("{invalid}; reported failed, the other images run");
    }
    let results = if jobs.is_empty() {
        info!("nothing to do: the config lists no images");
        Vec::new()
    } else {
        batch::run_all(
            Arc::new(settings),
            Arc::new(template),
            attacher,
            jobs,
            redactor.clone(),
            cancel,
        )
        .await
    };
    // No attempt runs any more: whatever detached from a tool and is still alive goes now.
    let killed = crate::reaper::kill_orphans();
    if !killed.is_empty() {
        warn!(pids = ?killed, "killed processes that detached from their tool");
    }

    let signal = Some(got_signal.load(Ordering::SeqCst)).filter(|s| *s != 0);
    let text = summary::render(&results);
    let text = redactor.redact(&text);
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
    let code = summary::exit_code(&results, signal);
    match signal {
        Some(s) => warn!(exit_code = code, "stopped by signal {s}"),
        None => info!(exit_code = code, "finished"),
    }
    (code, results)
}

fn usage(message: std::fmt::Arguments<'_>) -> u8 {
    error!("{message}");
    EXIT_USAGE
}

fn known_names() -> String {
    crate::settings::table::ALL
        .iter()
        .map(|s| format!("{PREFIX}{}", s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first SIGTERM/SIGINT records itself and cancels everything; the run then winds down
/// (children stopped, directories removed) and exits with 128 + the signal.
fn watch_signals(cancel: Arc<watch::Sender<bool>>, got: Arc<AtomicI32>) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let number = tokio::select! {
            _ = term.recv() => nix::libc::SIGTERM,
            _ = int.recv() => nix::libc::SIGINT,
        };
        got.store(number, Ordering::SeqCst);
        warn!("got signal {number}; stopping all tools and cleaning up");
        let _ = cancel.send(true);
        // Keep the handlers installed so further signals do not kill us mid-cleanup.
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
    });
    Ok(())
}

fn init_logging() {
    let level = std::env::var(format!("{PREFIX}LOG_LEVEL")).unwrap_or_default();
    let filter = EnvFilter::try_new(if level.trim().is_empty() {
        "info"
    } else {
        level.trim()
    })
    .unwrap_or_else(|_| EnvFilter::new("info"));
    // Every line through the redactor: also messages that quote a tool's error text.
    let builder = tracing_subscriber::fmt()
        .with_writer(redact::RedactedStderr)
        .with_ansi(false)
        .with_target(false)
        .with_env_filter(filter);
    match crate::settings::log_format_from_env() {
        LogFormat::Json => builder.json().init(),
        LogFormat::Plain => builder.init(),
    }
}

/// The directory `{output}` paths point into: the configured one (created if missing), or a
/// private scratch directory removed at exit when the template uses `{output}` without one.
fn output_dir(
    settings: &Settings,
    template: &Template,
) -> Result<(PathBuf, Option<tempfile::TempDir>), String> {
    if let Some(dir) = &settings.output_dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "{PREFIX}OUTPUT_DIR={:?}: expected a writable directory: {e}",
                dir.display().to_string()
            )
        })?;
        return Ok((dir.clone(), None));
    }
    if !template.uses(Placeholder::Output) {
        return Ok((std::env::temp_dir(), None));
    }
    let scratch = tempfile::Builder::new()
        .prefix("sbomjob-output-")
        .tempdir()
        .map_err(|e| {
            format!(
                "cannot create a scratch output directory in {}: {e}",
                std::env::temp_dir().display()
            )
        })?;
    warn!(
        "{PREFIX}OUTPUT_DIR is not set: {{output}} files go to a scratch directory that is removed at exit"
    );
    Ok((scratch.path().to_owned(), Some(scratch)))
}

/// Checks that the template's program exists and is executable, so a typo is a usage error
/// before anything runs instead of one failure per image.
pub fn find_program(program: &str) -> Result<PathBuf, String> {
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        return if executable(&path) {
            Ok(path)
        } else {
            Err(format!("program {program:?} is not an executable file"))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
        .ok_or_else(|| {
            format!(
                "program {program:?} not found in PATH ({})",
                path.to_string_lossy()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs() {
        assert!(find_program("sh").is_ok());
        assert!(find_program("/bin/sh").is_ok());
        assert!(
            find_program("no-such-tool-here")
                .unwrap_err()
                .contains("not found in PATH")
        );
        assert!(
            find_program("/etc/passwd")
                .unwrap_err()
                .contains("not an executable")
        );
    }
}
