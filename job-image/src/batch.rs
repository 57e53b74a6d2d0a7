//! Runs the template over all images: bounded concurrency, retries with backoff, fail-fast,
//! a private work directory per image, and a result per image in config order.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

use crate::attach::{Attacher, Snapshot};
use crate::auth::WorkDir;
use crate::redact::Redactor;
use crate::runner::{self, Attempt, AttemptOutcome, cancelled};
use crate::settings::Settings;
use crate::summary::{ImageResult, Outcome};
use crate::template::{Placeholder, Template};
use sbomjob_contract::ImageRef;
use sbomjob_contract::image_config::{self as config, Element, ImageConfig, InvalidElement};

/// One image with everything derived from it before anything runs.
#[derive(Debug, Clone)]
pub struct Job {
    pub config: ImageConfig,
    pub reference: ImageRef,
    /// `{output}`: the per-image path (no extension) under the output directory.
    pub output: PathBuf,
    /// Output stems of other images that extend this one with a dot (`app_1` and `app_1.0`):
    /// their `<stem>.*` files also match `{output}.*` and are not this image's.
    pub other_stems: Vec<String>,
}

impl Job {
    /// The text for each placeholder.
    pub fn value(&self, p: Placeholder) -> String {
        let r = &self.reference;
        match p {
            Placeholder::Image => self.config.image.clone(),
            Placeholder::Reference => r.pullable(),
            Placeholder::Digest => r.digest.clone().unwrap_or_default(),
            Placeholder::Registry => r.registry.clone(),
            Placeholder::Repository => r.repository.clone(),
            Placeholder::Tag => r.tag.clone().unwrap_or_default(),
            Placeholder::Pods => self.config.pod_names().join(","),
            Placeholder::Namespaces => self.config.namespaces().join(","),
            Placeholder::Cluster => self.config.clusters().join(","),
            Placeholder::Output => self.output.to_string_lossy().into_owned(),
        }
    }
}

/// Pairs each valid element with its parsed reference and a unique `{output}` path: the stem
/// from [`ImageRef::output_stem`], and `_2`, `_3`, ... for later images whose stem is already
/// taken. Invalid elements stay in their place, as they are.
pub fn plan(elements: Vec<Element>, output_dir: &Path) -> Vec<Result<Job, InvalidElement>> {
    let mut used = HashSet::new();
    let mut jobs: Vec<Result<Job, InvalidElement>> = elements
        .into_iter()
        .enumerate()
        .map(|(i, element)| {
            let config = element?;
            let reference = config::check_image(i, &config)?;
            let stem = reference.output_stem();
            let name = (1..)
                .map(|n| {
                    if n == 1 {
                        stem.clone()
                    } else {
                        format!("{stem}_{n}")
                    }
                })
                .find(|name| !used.contains(name))
                .expect("an unused name exists");
            used.insert(name.clone());
            Ok(Job {
                config,
                reference,
                output: output_dir.join(name),
                other_stems: Vec::new(),
            })
        })
        .collect();
    for job in jobs.iter_mut().flatten() {
        let stem = job
            .output
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        job.other_stems = used
            .iter()
            .filter(|other| other.starts_with(&format!("{stem}.")))
            .cloned()
            .collect();
        job.other_stems.sort();
    }
    jobs
}

/// [`plan`] for configs that must all be valid (tests).
#[cfg(test)]
pub(crate) fn plan_valid(images: Vec<ImageConfig>, output_dir: &Path) -> Vec<Job> {
    plan(images.into_iter().map(Ok).collect(), output_dir)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("valid images")
}

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
    // What `{output}.*` held before: only files this run writes are attached.
    let before = attacher.map(|_| Snapshot::take(job));
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
            outcome = attach(attacher, job, before, redact, cancel).await;
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
    r
}

/// The attach step after a successful tool run; a failure fails the attempt (and is retried
/// like one, with the tool run again).
async fn attach(
    attacher: &Attacher,
    job: &Job,
    before: &Snapshot,
    redact: &Redactor,
    cancel: &mut watch::Receiver<bool>,
) -> AttemptOutcome {
    let files = match before.written(job) {
        Ok(files) => files,
        Err(e) => {
            return AttemptOutcome::Failed(format!("attach: cannot list the {{output}}.* files: {e}"));
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
            Ok(_) => AttemptOutcome::Succeeded,
            Err(why) => AttemptOutcome::Failed(format!("attach: {why}")),
        },
        () = cancelled(cancel) => AttemptOutcome::Cancelled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sbomjob_contract::PodRef;

    fn plan_ok(images: Vec<ImageConfig>, dir: &str) -> Vec<Job> {
        plan_valid(images, Path::new(dir))
    }

    fn image(image: &str, pods: &[(&str, &str, &str)]) -> ImageConfig {
        ImageConfig {
            image: image.into(),
            pods: pods
                .iter()
                .map(|(p, n, c)| PodRef {
                    pod: (*p).into(),
                    namespace: (*n).into(),
                    cluster: (*c).into(),
                })
                .collect(),
            ..Default::default()
        }
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn values_for_placeholders() {
        let jobs = plan_ok(
            vec![image(
                &format!("nginx:1.27@{D}"),
                &[
                    ("a", "x", "c1"),
                    ("b", "y", "c1"),
                    ("a", "x", "c1"),
                    ("c", "x", "c2"),
                ],
            )],
            "/out",
        );
        let job = &jobs[0];
        let v = |p| job.value(p);
        assert_eq!(v(Placeholder::Image), format!("nginx:1.27@{D}"));
        assert_eq!(v(Placeholder::Reference), format!("docker.io/library/nginx@{D}"));
        assert_eq!(v(Placeholder::Digest), D);
        assert_eq!(v(Placeholder::Registry), "docker.io");
        assert_eq!(v(Placeholder::Repository), "library/nginx");
        assert_eq!(v(Placeholder::Tag), "1.27");
        assert_eq!(v(Placeholder::Pods), "a,b,c");
        assert_eq!(v(Placeholder::Namespaces), "x,y");
        assert_eq!(v(Placeholder::Cluster), "c1,c2");
        assert_eq!(
            v(Placeholder::Output),
            "/out/docker.io_library_nginx_1.27_sha256-0123456789ab"
        );
    }

    #[test]
    fn output_paths_are_unique() {
        // `/` and `_` both become `_`, so these two collide; so do two equal references.
        let images = vec![
            image("a/b_c:1", &[]),
            image("a_b/c:1", &[]),
            image("a/b_c:1", &[]),
            image("x:1", &[]),
        ];
        let jobs = plan_ok(images, "/o");
        let outputs: Vec<_> = jobs
            .iter()
            .map(|j| j.output.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            outputs,
            [
                "/o/docker.io_a_b_c_1",
                "/o/docker.io_a_b_c_1_2",
                "/o/docker.io_a_b_c_1_3",
                "/o/docker.io_library_x_1"
            ]
        );
    }

    #[test]
    fn invalid_elements_keep_their_place() {
        let bad = InvalidElement {
            index: 1,
            image: String::new(),
            problem: "missing key `image`".into(),
        };
        let elements = vec![
            Ok(image("a:1", &[])),
            Err(bad.clone()),
            // Reaches plan unchecked (hand-built): plan checks the reference itself.
            Ok(image(&D.to_uppercase(), &[])),
            Ok(image("b:1", &[])),
        ];
        let jobs = plan(elements, Path::new("/o"));
        assert_eq!(jobs.len(), 4);
        assert_eq!(jobs[0].as_ref().unwrap().config.image, "a:1");
        assert_eq!(jobs[1].as_ref().unwrap_err(), &bad);
        let e = jobs[2].as_ref().unwrap_err();
        assert_eq!(e.index, 2);
        assert_eq!(e.image, D.to_uppercase());
        assert!(e.problem.starts_with("key `image` (\"SHA256:"), "{e}");
        assert_eq!(
            jobs[3].as_ref().unwrap().output,
            Path::new("/o/docker.io_library_b_1")
        );

        let r = invalid_result(&bad);
        assert_eq!((r.image.as_str(), r.attempts), ("#1", 0));
        assert_eq!(
            r.outcome,
            Outcome::Failed("invalid config element: missing key `image`".into())
        );
    }
}
