//! Runs the template over all images: bounded concurrency, retries with backoff, fail-fast,
//! a private work directory per image, and a result per image in config order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

use crate::attach::{Attached, Attacher, OutputsBefore};
use crate::auth::WorkDir;
use crate::redact::Redactor;
use crate::report;
use crate::runner::{self, Attempt, AttemptOutcome, cancelled};
use crate::settings::Settings;
use crate::summary::{ImageResult, Outcome};
use crate::template::Template;
use crate::work::Job;
use sbomjob_contract::image_config::InvalidElement;

/// Runs every job and returns their results in the order given.
///
/// The loop below is the launcher: it takes a concurrency permit, then starts the next image in
/// config order; after a failure with fail-fast, or once cancelled, it starts nothing more and
/// records the rest as skipped or cancelled. An invalid element is recorded as failed where it
/// stands (and counts as a failure for fail-fast). Running images always finish (or are stopped
/// by the cancel) before this returns. `redact` masks the whole config's credentials in what
/// the tools print and in error texts.
pub async fn run_all(
    settings: Arc<Settings>,
    template: Arc<Template>,
    attacher: Option<Arc<Attacher>>,
    jobs: Vec<Result<Job, InvalidElement>>,
    redact: Arc<Redactor>,
    mut cancel: watch::Receiver<bool>,
) -> Vec<ImageResult> {
    let semaphore = Arc::new(Semaphore::new(settings.concurrency));
    let stop = Arc::new(AtomicBool::new(false));
    let mut running = JoinSet::new();
    let mut results: Vec<Option<ImageResult>> = vec![None; jobs.len()];
    for (index, job) in jobs.into_iter().enumerate() {
        let job = match job {
            Ok(job) => job,
            Err(invalid) => {
                results[index] = Some(invalid_result(&invalid));
                if settings.fail_fast {
                    stop.store(true, Ordering::SeqCst);
                }
                continue;
            }
        };
        let span = info_span!("image", image = %job.config.image);
        let permit = tokio::select! {
            permit = semaphore.clone().acquire_owned() => Some(permit.expect("semaphore is never closed")),
            () = cancelled(&mut cancel) => None,
        };
        let not_started = match permit {
            _ if *cancel.borrow() => Some(Outcome::Cancelled),
            None => Some(Outcome::Cancelled),
            Some(_) if stop.load(Ordering::SeqCst) => Some(Outcome::Skipped),
            Some(_) => None,
        };
        if let Some(outcome) = not_started {
            span.in_scope(|| info!("not started: {}", outcome.label()));
            results[index] = Some(result(&job, outcome, 0, Instant::now()));
            continue;
        }
        let (settings, template, attacher, redact, stop, mut cancel) = (
            settings.clone(),
            template.clone(),
            attacher.clone(),
            redact.clone(),
            stop.clone(),
            cancel.clone(),
        );
        running.spawn(
            async move {
                let _permit = permit;
                let r = run_one(
                    index,
                    &settings,
                    &template,
                    attacher.as_deref(),
                    &redact,
                    &job,
                    &mut cancel,
                )
                .await;
                if settings.fail_fast && matches!(r.outcome, Outcome::Failed(_) | Outcome::TimedOut(_)) {
                    stop.store(true, Ordering::SeqCst);
                }
                (index, r)
            }
            .instrument(span),
        );
    }
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok((index, r)) => results[index] = Some(r),
            // A panic in one image's task: its guard has killed its processes; report it failed.
            Err(e) => error!("an image task ended abnormally: {e}"),
        }
    }
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| ImageResult {
                image: format!("#{i}"),
                outcome: Outcome::Failed("internal error".into()),
                attempts: 0,
                duration: Default::default(),
            })
        })
        .collect()
}

/// An element that was never run because it is invalid: FAILED, with the problem.
pub fn invalid_result(invalid: &InvalidElement) -> ImageResult {
    ImageResult {
        image: if invalid.image.is_empty() {
            format!("#{}", invalid.index)
        } else {
            invalid.image.clone()
        },
        outcome: Outcome::Failed(format!("invalid config element: {}", invalid.problem)),
        attempts: 0,
        duration: Default::default(),
    }
}

fn result(job: &Job, outcome: Outcome, attempts: u32, started: Instant) -> ImageResult {
    ImageResult {
        image: job.config.image.clone(),
        outcome,
        attempts,
        duration: started.elapsed(),
    }
}

async fn run_one(
    index: usize,
    settings: &Settings,
    template: &Template,
    attacher: Option<&Attacher>,
    redact: &Arc<Redactor>,
    job: &Job,
    cancel: &mut watch::Receiver<bool>,
) -> ImageResult {
    let started = Instant::now();
    let argv = template.expand(|p| job.value(p));
    let work = match WorkDir::create(&job.config, &job.reference.registry) {
        Ok(work) => work,
        Err(e) => {
            let outcome = Outcome::Failed(format!("cannot create its private work directory: {e}"));
            error!("{}", outcome.label());
            return result(job, outcome, 0, started);
        }
    };
    // What `{output}.*` held before: only files this run writes are attached and reported.
    let before = (attacher.is_some() || settings.output_dir.is_some()).then(|| OutputsBefore::take(job));
    let mut attached = None;
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        info!(attempt = attempts, program = %argv[0], "running");
        let attempt = Attempt {
            argv: &argv,
            tool_env: &settings.tool_env,
            env: work.env(),
            timeout: settings.timeout,
            kill_grace: settings.kill_grace,
            capture: settings.output_dir.as_ref().map(|_| job.output.clone()),
            redact: redact.clone(),
        };
        let mut outcome = runner::run(attempt, cancel).await;
        if let (AttemptOutcome::Succeeded, Some(attacher), Some(before)) = (&outcome, attacher, &before) {
            (outcome, attached) = attach(attacher, job, before, redact, cancel).await;
        }
        match &outcome {
            AttemptOutcome::Succeeded => info!(attempt = attempts, "succeeded"),
            other => warn!(attempt = attempts, "{other}"),
        }
        let retryable = matches!(outcome, AttemptOutcome::Failed(_) | AttemptOutcome::TimedOut(_));
        if !retryable || attempts > settings.retries {
            break outcome;
        }
        let wait = settings.backoff(attempts);
        info!("retrying in {}", humantime::format_duration(wait));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancelled(cancel) => break AttemptOutcome::Cancelled,
        }
    };
    if let Err(e) = work.remove() {
        warn!("cannot remove its private work directory: {e}");
    }
    let outcome = match outcome {
        AttemptOutcome::Succeeded => Outcome::Succeeded,
        AttemptOutcome::Failed(why) => Outcome::Failed(why),
        AttemptOutcome::SpawnFailed(why) => Outcome::Failed(format!("could not start: {why}")),
        AttemptOutcome::TimedOut(after) => Outcome::TimedOut(after),
        AttemptOutcome::Cancelled => Outcome::Cancelled,
    };
    let r = result(job, outcome, attempts, started);
    info!(
        result = r.outcome.label(),
        attempts,
        duration_ms = r.duration.as_millis() as u64,
        "done"
    );
    let files = before.and_then(|b| b.written(job).ok()).unwrap_or_default();
    if let Some(line) = report::build(index, job, &r.outcome, attempts, &argv, &files, attached.as_ref()) {
        report::print(&line);
    }
    r
}

/// The attach step after a successful tool run; a failure fails the attempt (and is retried
/// like one, with the tool run again).
async fn attach(
    attacher: &Attacher,
    job: &Job,
    before: &OutputsBefore,
    redact: &Redactor,
    cancel: &mut watch::Receiver<bool>,
) -> (AttemptOutcome, Option<Attached>) {
    let files = match before.written(job) {
        Ok(files) => files,
        Err(e) => {
            let why = format!("attach: cannot list the {{output}}.* files: {e}");
            return (AttemptOutcome::Failed(why), None);
        }
    };
    let work = attacher.attach(job, &files, redact);
    let limited = async {
        match attacher.timeout {
            Some(limit) => tokio::time::timeout(limit, work)
                .await
                .unwrap_or_else(|_| Err(format!("timed out after {}", humantime::format_duration(limit)))),
            None => work.await,
        }
    };
    tokio::select! {
        r = limited => match r {
            Ok(attached) => (AttemptOutcome::Succeeded, Some(attached)),
            Err(why) => (AttemptOutcome::Failed(format!("attach: {why}")), None),
        },
        () = cancelled(cancel) => (AttemptOutcome::Cancelled, None),
    }
}
