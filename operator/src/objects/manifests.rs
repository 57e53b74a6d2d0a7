//! The Secret and Job of a planned shard (pure builders): labels, owner, the hardened job pod,
//! the forwarded environment.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    ByteString,
    api::{
        batch::v1::{Job, JobSpec},
        core::v1::{
            Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, LocalObjectReference,
            PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, Secret, SecretKeySelector,
            SecretVolumeSource, SecurityContext, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::api::ObjectMeta;
use sbomjob_contract::image_config::{CONFIG_FILE_NAME, MOUNT_DIR};

use crate::settings::{ForwardedEnv, JobSettings};

use super::labels::*;
use super::shards::*;

pub const CONTAINER: &str = "sbom";

pub const CONFIG_VOLUME: &str = "config";

/// The user the job container runs as unless the image or settings say otherwise: non-root,
/// so images written for sbom-operator (USER root) still start under `restricted`.
pub const JOB_UID: i64 = 65532;

pub fn labels(cycle: &str, release: &str) -> BTreeMap<String, String> {
    [
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (INSTANCE_LABEL.to_string(), release.to_string()),
        ("app.kubernetes.io/name".into(), "sbomjob".into()),
        ("app.kubernetes.io/component".into(), "job".into()),
        (CYCLE_LABEL.into(), cycle.to_string()),
    ]
    .into()
}

/// The Secret holding `image-config.json`, owned by its Job from its first version: the
/// credentials never exist without an owner the garbage collector removes them with.
/// Immutable: nothing ever edits a job's input.
pub fn secret(plan: &JobPlan, namespace: &str, release: &str, owner: OwnerReference) -> Secret {
    let json = serde_json::to_vec(&plan.images).expect("image configs serialize");
    Secret {
        metadata: ObjectMeta {
            name: Some(plan.name.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels(&plan.cycle, release)),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        immutable: Some(true),
        data: Some([(CONFIG_FILE_NAME.to_string(), ByteString(json))].into()),
        ..Default::default()
    }
}

/// The ownerReference that lets the garbage collector remove the Secret with its Job.
pub fn owned_by_job(job_name: &str, job_uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job_name.to_string(),
        uid: job_uid.to_string(),
        // No blockOwnerDeletion: with the OwnerReferencesPermissionEnforcement admission plugin
        // it needs `update` on jobs/finalizers, and nothing is gained by making the Job wait for
        // its Secret. Without it, setting an ownerReference needs no permission beyond `create`.
        ..Default::default()
    }
}

/// True when the object is owned by a Job (a config Secret of this version, or one whose
/// ownerReference an older version patched in): the garbage collector removes it with its Job.
pub fn owned_by_a_job(meta: &ObjectMeta) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Job" && o.api_version == "batch/v1")
}

pub fn env_var(e: &ForwardedEnv) -> EnvVar {
    match e {
        // The kubelet expands `$(VAR)` and folds `$$` in env values; doubling every `$` makes it
        // hand the job the value byte for byte.
        ForwardedEnv::Literal { name, value } => EnvVar {
            name: name.clone(),
            value: Some(value.replace('$', "$$")),
            ..Default::default()
        },
        ForwardedEnv::SecretRef { name, secret, key } => EnvVar {
            name: name.clone(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.clone(),
                    key: key.clone(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// The variable our entrypoint reads its own deadline from; other job images ignore it.
pub use sbomjob_contract::referrers::SETTINGS_IDENTITY_ENV;

pub const DEADLINE_ENV: &str = "ENTRYPOINT_DEADLINE";

/// The entrypoint's own deadline for a Job timeout: a tenth less (at least 10 s, or half the
/// timeout if it is shorter, at most 10 min), leaving the pod time to start and to report.
pub fn entrypoint_deadline(timeout: Duration) -> Duration {
    let margin = (timeout / 10)
        .max(Duration::from_secs(10).min(timeout / 2))
        .min(Duration::from_secs(600));
    timeout.saturating_sub(margin).max(Duration::from_secs(1))
}

/// The Job of a plan. Hardened to pass the `restricted` Pod Security Standard unless
/// `privileged` was asked for.
pub fn job(plan: &JobPlan, namespace: &str, release: &str, settings: &JobSettings) -> Job {
    let mut env: Vec<EnvVar> = settings.env.iter().map(env_var).collect();
    // Our entrypoint stops itself a margin before activeDeadlineSeconds, so the images still
    // running are named as failed in its report instead of the pod being killed with it.
    if !env.iter().any(|e| e.name == DEADLINE_ENV) {
        env.push(EnvVar {
            name: DEADLINE_ENV.into(),
            value: Some(format!("{}s", entrypoint_deadline(settings.timeout).as_secs())),
            ..Default::default()
        });
    }
    // What the entrypoint writes on the artifacts it attaches: other releases and clusters with
    // the same settings find them in the registry and need no Job for those digests.
    env.retain(|e| e.name != SETTINGS_IDENTITY_ENV);
    env.push(EnvVar {
        name: SETTINGS_IDENTITY_ENV.into(),
        value: Some(crate::cache::settings_hash(settings)),
        ..Default::default()
    });
    // Tools keep caches under $HOME; the root filesystem is read-only, /tmp is not.
    if !env.iter().any(|e| e.name == "HOME") {
        env.push(EnvVar {
            name: "HOME".into(),
            value: Some("/tmp".into()),
            ..Default::default()
        });
    }
    let (pod_security, container_security) = if settings.privileged {
        (
            PodSecurityContext {
                seccomp_profile: Some(runtime_default()),
                ..Default::default()
            },
            SecurityContext {
                privileged: Some(true),
                run_as_user: Some(0),
                ..Default::default()
            },
        )
    } else {
        (
            PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(JOB_UID),
                run_as_group: Some(JOB_UID),
                fs_group: Some(JOB_UID),
                seccomp_profile: Some(runtime_default()),
                ..Default::default()
            },
            SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
    };
    let labels = labels(&plan.cycle, release);
    Job {
        metadata: ObjectMeta {
            name: Some(plan.name.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels.clone()),
            annotations: Some([(DIGESTS_ANNOTATION.to_string(), plan.elements.join("\n"))].into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            // Created suspended: no pod starts (and nothing waits for the config volume) until
            // the Secret exists, owned by this Job, and the operator resumes it.
            suspend: Some(true),
            backoff_limit: Some(0),
            // Saturating: `as i64` would turn a timeout above i64::MAX seconds negative.
            // Counted from the resume, not the creation: the job controller resets the Job's
            // status.startTime when it resumes a suspended Job, and activeDeadlineSeconds runs
            // from startTime (the time spent suspended does not count).
            active_deadline_seconds: Some(i64::try_from(settings.timeout.as_secs()).unwrap_or(i64::MAX)),
            ttl_seconds_after_finished: Some(settings.ttl.as_secs().min(i32::MAX as u64) as i32),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    // Service links would put every Service of the namespace into the env.
                    enable_service_links: Some(false),
                    service_account_name: settings.service_account.clone(),
                    image_pull_secrets: settings
                        .image_pull_secret
                        .as_ref()
                        .map(|name| vec![LocalObjectReference { name: name.clone() }]),
                    security_context: Some(pod_security),
                    node_selector: (!settings.node_selector.is_empty())
                        .then(|| settings.node_selector.clone()),
                    tolerations: (!settings.tolerations.is_empty()).then(|| settings.tolerations.clone()),
                    affinity: settings.affinity.clone(),
                    priority_class_name: settings.priority_class.clone(),
                    containers: vec![Container {
                        name: CONTAINER.into(),
                        image: Some(settings.image.clone()),
                        image_pull_policy: settings.image_pull_policy.clone(),
                        env: Some(env),
                        resources: Some(settings.resources.clone()),
                        security_context: Some(container_security),
                        volume_mounts: Some(vec![
                            VolumeMount {
                                name: CONFIG_VOLUME.into(),
                                mount_path: MOUNT_DIR.into(),
                                read_only: Some(true),
                                ..Default::default()
                            },
                            VolumeMount {
                                name: "tmp".into(),
                                mount_path: "/tmp".into(),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![
                        Volume {
                            name: CONFIG_VOLUME.into(),
                            secret: Some(SecretVolumeSource {
                                secret_name: Some(plan.name.clone()),
                                // Readable by the job's group (fsGroup) only.
                                default_mode: Some(0o440),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        // Bounded: without a sizeLimit one job pod could fill the node's disk.
                        Volume {
                            name: "tmp".into(),
                            empty_dir: Some(EmptyDirVolumeSource {
                                size_limit: Some(settings.tmp_size.clone()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    }
}
