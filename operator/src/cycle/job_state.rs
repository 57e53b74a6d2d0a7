//! What a Job object says (pure): its outcome, its digests, the identity it ran with, how its
//! pod ended. Every step reads Jobs through these.

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};

use crate::{
    cache::JobIdentity,
    image_id::ImageId,
    objects::{self, DIGESTS_ANNOTATION, SETTINGS_HASH_ANNOTATION, STATE_DONE, STATE_LABEL},
    replan::{Evidence, JobReport},
};

/// The reason of a Job ended because its config Secret was gone.
pub const CONFIG_GONE: &str = "ConfigSecretGone";

/// Where a Job stands, from its conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Running,
    Complete,
    Failed { reason: String, message: String },
}

/// Reads the terminal conditions the job controller sets: `Complete`, or `Failed` with a reason
/// such as `DeadlineExceeded` or `BackoffLimitExceeded`. A Job whose pod never started still gets
/// `Failed`/`DeadlineExceeded` at its deadline.
pub fn outcome(job: &Job) -> JobOutcome {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    for c in conditions.into_iter().flatten() {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" => return JobOutcome::Complete,
            "Failed" => {
                return JobOutcome::Failed {
                    reason: c.reason.clone().unwrap_or_else(|| "Failed".into()),
                    message: c.message.clone().unwrap_or_default(),
                };
            }
            _ => {}
        }
    }
    JobOutcome::Running
}

/// True once the operator finished the Job's bookkeeping.
pub fn is_done(job: &Job) -> bool {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(STATE_LABEL))
        .is_some_and(|v| v == STATE_DONE)
}

/// The digests a Job processed, from its annotation.
pub fn digests(job: &Job) -> HashSet<&str> {
    elements(job).into_iter().collect()
}

/// The digest of each element of the Job's `image-config.json`, in order.
pub fn elements(job: &Job) -> Vec<&str> {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DIGESTS_ANNOTATION))
        .map(|v| v.lines().map(str::trim).filter(|l| !l.is_empty()).collect())
        .unwrap_or_default()
}

/// The identity the Job ran with: the job image and settings hash stored on it when it was
/// created (not the operator's current ones: settings may have changed while it ran), and the
/// job image's digest its pod reported.
pub fn identity(job: &Job, current: &JobIdentity, image_digest: Option<String>) -> JobIdentity {
    let image = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == objects::CONTAINER))
        .and_then(|c| c.image.clone());
    let hash = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SETTINGS_HASH_ANNOTATION))
        .cloned();
    JobIdentity {
        image: image.unwrap_or_else(|| current.image.clone()),
        image_digest,
        settings_hash: hash.unwrap_or_else(|| current.settings_hash.clone()),
    }
}

/// What the job pod tells about how the tool ran (pure): the evidence for re-planning, a short
/// description for logs, Events and records, and the job image's digest.
pub fn read_pod(pod: Option<&Pod>) -> (Evidence, String, Option<String>) {
    let Some(pod) = pod else {
        return (Evidence::ExitOnly, "the job pod is gone".into(), None);
    };
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|l| l.iter().find(|c| c.name == objects::CONTAINER));
    let Some(status) = status else {
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        return (
            Evidence::NotRun,
            format!("the job container never started (pod {phase})"),
            None,
        );
    };
    let image_digest = ImageId::parse(&status.image_id).ok().map(|id| id.digest);
    let state = status.state.as_ref();
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        let detail = match &t.reason {
            Some(r) => format!("exit code {} ({r})", t.exit_code),
            None => format!("exit code {}", t.exit_code),
        };
        let evidence = t
            .message
            .as_deref()
            .and_then(JobReport::parse)
            .map_or(Evidence::ExitOnly, Evidence::Report);
        return (evidence, detail, image_digest);
    }
    if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
        let reason = w.reason.clone().unwrap_or_else(|| "Waiting".into());
        let message = w.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        return (
            Evidence::NotRun,
            format!("the job container never ran ({reason}{message})"),
            image_digest,
        );
    }
    // Running when the Job ended: killed at the deadline.
    (Evidence::ExitOnly, "stopped while running".into(), image_digest)
}

pub fn name(job: &Job) -> String {
    job.metadata.name.clone().unwrap_or_default()
}

/// True while the Job is suspended: its launch was interrupted before the resume.
pub fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// How an ended Job was finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub outcome: JobOutcome,
    /// What the job pod told about the run (for re-planning a failed Job).
    pub evidence: Evidence,
    /// A short description of how the tool ended, for logs, Events and records.
    pub detail: String,
}

/// How long ago the Job was created: its duration once it ended.
pub fn age(job: &Job) -> Duration {
    job.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| {
            k8s_openapi::jiff::Timestamp::now()
                .duration_since(t.0)
                .unsigned_abs()
        })
        .unwrap_or_default()
}

/// Labels for logs: the Job's digests count by outcome (used in tests and logs).
pub fn summary(jobs: &[(String, JobOutcome)]) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for (_, o) in jobs {
        *out.entry(match o {
            JobOutcome::Complete => "complete",
            JobOutcome::Failed { .. } => "failed",
            JobOutcome::Running => "running",
        })
        .or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use kube::api::ObjectMeta;

    use super::*;
    use crate::cycle::{
        follow::{give_up_at, gone},
        settle::{Adoption, adoption, orphans},
    };
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::PartialObjectMeta;

    fn job_with(conditions: &[(&str, &str, &str)]) -> Job {
        Job {
            status: Some(JobStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s, r)| JobCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            reason: Some(r.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn outcomes_from_conditions() {
        assert_eq!(outcome(&Job::default()), JobOutcome::Running);
        assert_eq!(
            outcome(&job_with(&[("SuccessCriteriaMet", "True", "")])),
            JobOutcome::Running
        );
        assert_eq!(
            outcome(&job_with(&[
                ("SuccessCriteriaMet", "True", ""),
                ("Complete", "True", "")
            ])),
            JobOutcome::Complete
        );
        assert_eq!(
            outcome(&job_with(&[
                ("FailureTarget", "True", "DeadlineExceeded"),
                ("Failed", "True", "DeadlineExceeded")
            ])),
            JobOutcome::Failed {
                reason: "DeadlineExceeded".into(),
                message: String::new()
            }
        );
        assert_eq!(
            outcome(&job_with(&[("Failed", "False", "x")])),
            JobOutcome::Running
        );
    }

    #[test]
    fn digests_and_done_marker() {
        let job = Job {
            metadata: ObjectMeta {
                annotations: Some(
                    [(DIGESTS_ANNOTATION.to_string(), "sha256:a\nsha256:b\n".to_string())].into(),
                ),
                labels: Some([(STATE_LABEL.to_string(), STATE_DONE.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(digests(&job), ["sha256:a", "sha256:b"].into());
        assert!(is_done(&job));
        assert!(!is_done(&Job::default()));
    }

    #[test]
    fn gone_jobs_count_as_failed() {
        let j = gone(&Job::default(), "Deleted", "x");
        assert_eq!(
            outcome(&j),
            JobOutcome::Failed {
                reason: "Deleted".into(),
                message: "x".into()
            }
        );
        assert_eq!(
            summary(&[("a".into(), JobOutcome::Complete), ("b".into(), outcome(&j))])["failed"],
            1
        );
    }

    fn suspended(suspend: Option<bool>, condition: Option<&str>) -> Job {
        let mut job = match condition {
            Some(c) => job_with(&[(c, "True", "")]),
            None => Job::default(),
        };
        job.spec = Some(k8s_openapi::api::batch::v1::JobSpec {
            suspend,
            ..Default::default()
        });
        job
    }

    #[test]
    fn a_suspended_job_is_resumed_with_its_secret_and_deleted_without() {
        let cut_short = suspended(Some(true), None);
        assert!(is_suspended(&cut_short));
        assert_eq!(adoption(&cut_short, true), Adoption::Resume);
        assert_eq!(adoption(&cut_short, false), Adoption::Delete);
        // Running (resumed, or made by a version that never suspended) and ended Jobs are kept.
        for job in [
            suspended(Some(false), None),
            suspended(None, None),
            Job::default(),
            suspended(Some(true), Some("Failed")),
            suspended(Some(true), Some("Complete")),
        ] {
            for secret in [true, false] {
                assert_eq!(adoption(&job, secret), Adoption::Keep, "{:?}", job.spec);
            }
        }
    }

    #[test]
    fn only_secrets_without_an_owning_job_are_orphans() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let secret = |name: &str, owners: Option<Vec<OwnerReference>>| PartialObjectMeta::<Secret> {
            metadata: ObjectMeta {
                name: Some(name.into()),
                owner_references: owners,
                ..Default::default()
            },
            ..Default::default()
        };
        let other = OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "x".into(),
            uid: "u".into(),
            ..Default::default()
        };
        let list = [
            secret("owned", Some(vec![objects::owned_by_job("owned", "u1")])),
            secret("old", None),
            secret("empty", Some(vec![])),
            secret("elsewhere", Some(vec![other])),
        ];
        assert_eq!(orphans(&list), ["old", "empty", "elsewhere"]);
    }

    #[test]
    fn give_up_time_does_not_overflow() {
        let now = tokio::time::Instant::now();
        assert_eq!(
            give_up_at(now, Duration::from_secs(600)),
            now + Duration::from_secs(900)
        );
        // activeDeadlineSeconds = i64::MAX (a Job made elsewhere), and beyond.
        for d in [Duration::from_secs(i64::MAX as u64), Duration::MAX] {
            assert!(
                give_up_at(now, d) > now + Duration::from_secs(365 * 86400),
                "{d:?}"
            );
        }
    }

    fn job_pod(state: Option<k8s_openapi::api::core::v1::ContainerState>, image_id: &str) -> Pod {
        use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};
        Pod {
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: state.map(|state| {
                    vec![ContainerStatus {
                        name: "sbom".into(),
                        image_id: image_id.into(),
                        state: Some(state),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_job_pod_tells_how_the_tool_ran() {
        use k8s_openapi::api::core::v1::{
            ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        };
        let id = format!("r.io/job@sha256:{}", "ab".repeat(32));
        let terminated = |message: Option<&str>| ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 1,
                reason: Some("Error".into()),
                message: message.map(String::from),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (evidence, detail, digest) = read_pod(Some(&job_pod(
            Some(terminated(Some(r#"{"v":1,"n":2,"ok":[0],"failed":[1]}"#))),
            &id,
        )));
        assert_eq!(
            evidence,
            Evidence::Report(JobReport {
                n: 2,
                ok: vec![0],
                failed: vec![1]
            })
        );
        assert_eq!(detail, "exit code 1 (Error)");
        assert_eq!(digest, Some(format!("sha256:{}", "ab".repeat(32))));
        // A shell job image leaves nothing, or its log's tail: halving.
        let (evidence, ..) = read_pod(Some(&job_pod(Some(terminated(Some("jq: error"))), &id)));
        assert_eq!(evidence, Evidence::ExitOnly);
        let waiting = ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ImagePullBackOff".into()),
                message: Some("not found".into()),
            }),
            ..Default::default()
        };
        let (evidence, detail, _) = read_pod(Some(&job_pod(Some(waiting), "")));
        assert_eq!(evidence, Evidence::NotRun);
        assert!(detail.contains("ImagePullBackOff: not found"), "{detail}");
        assert_eq!(read_pod(Some(&job_pod(None, ""))).0, Evidence::NotRun);
        let running = ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        };
        assert_eq!(read_pod(Some(&job_pod(Some(running), &id))).0, Evidence::ExitOnly);
        assert_eq!(read_pod(None).0, Evidence::ExitOnly);
    }

    #[test]
    fn a_job_is_credited_to_the_identity_it_was_created_with() {
        let current = JobIdentity {
            image: "r.io/job:2".into(),
            image_digest: None,
            settings_hash: "new".into(),
        };
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"annotations": {SETTINGS_HASH_ANNOTATION: "old"}},
            "spec": {"template": {"spec": {"containers": [{"name": "sbom", "image": "r.io/job:1"}]}}}
        }))
        .unwrap();
        let ran = identity(&job, &current, Some("sha256:j".into()));
        assert_eq!(
            ran,
            JobIdentity {
                image: "r.io/job:1".into(),
                image_digest: Some("sha256:j".into()),
                settings_hash: "old".into()
            }
        );
        // A Job from before the annotation existed: today's settings.
        job.metadata.annotations = None;
        assert_eq!(identity(&job, &current, None).settings_hash, "new");
    }
}
