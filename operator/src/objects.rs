//! The Secret and Job of a cycle, built from the work list and the settings (pure).

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
use sbomjob_contract::{
    ImageConfig,
    image_config::{CONFIG_FILE_NAME, MOUNT_DIR},
};

use crate::{
    replan::Unit,
    settings::{ForwardedEnv, JobSettings},
};

/// The field manager of every write the operator makes (pods, Jobs, Secrets, records, Lease).
pub const FIELD_MANAGER: &str = "sbomjob";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "sbomjob";
/// Selects every object the operator made.
/// The release (`SBOM_RELEASE`) an object belongs to: Jobs, Secrets, Leases and the job pods.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// The label selector of one release's Jobs and Secrets: by manager and by release, so two
/// releases in one namespace never select each other's.
pub fn selector(release: &str) -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY},{INSTANCE_LABEL}={release}")
}

/// The labels of everything a release creates in its namespace besides Jobs and Secrets.
pub fn release_labels(release: &str) -> BTreeMap<String, String> {
    [
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (INSTANCE_LABEL.to_string(), release.to_string()),
    ]
    .into()
}
pub const CYCLE_LABEL: &str = "sbomjob.io/cycle";
/// Set on a Job once its Secret is gone and its pods are annotated: nothing left to do.
pub const STATE_LABEL: &str = "sbomjob.io/state";
pub const STATE_DONE: &str = "done";
/// The digest of each element of a Job's `image-config.json`, one per line, in order: what its
/// success grants annotations for and what its report's indices point at, readable after an
/// operator restart without the (deleted) Secret.
pub const DIGESTS_ANNOTATION: &str = "sbomjob.io/digests";
/// The settings hash ([`crate::cache::settings_hash`]) a Job was created with: what its records
/// are credited to, whatever the operator's settings are when it ends.
pub const SETTINGS_HASH_ANNOTATION: &str = "sbomjob.io/settings-hash";
/// On Jobs: the replica (Lease holder identity, `POD_NAME`) that created the Job.
pub const CREATED_BY_ANNOTATION: &str = "sbomjob.io/created-by";
pub const CONTAINER: &str = "sbom";
pub const CONFIG_VOLUME: &str = "config";
/// The user the job container runs as unless the image or settings say otherwise: non-root,
/// so images written for sbom-operator (USER root) still start under `restricted`.
pub const JOB_UID: i64 = 65532;
/// Budget for one Secret's `image-config.json`: well under the 1 MiB object limit, leaving room
/// for base64 in requests and metadata.
pub const SECRET_BUDGET: usize = 512 * 1024;

/// One Job of a cycle: its name and the images it processes.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    pub cycle: String,
    pub name: String,
    pub images: Vec<ImageConfig>,
    /// The digest of each element of `images`, in order: what a job's report points at.
    pub elements: Vec<String>,
    /// Unique, in element order.
    pub digests: Vec<String>,
    /// The units the elements come from, for re-planning should the Job fail.
    pub units: Vec<Unit>,
}

/// A cycle id that names its release, is a valid name part and label value, and sorts by time
/// within a release: `<release>-YYYYMMDD-HHMMSS-xxxx`. The cycle's Jobs are `<cycle id>-<n>`:
/// the release is cut to 36 characters so that a Job name stays within 63 (a label value on
/// its pods) for up to 100,000 Jobs per cycle.
pub fn cycle_id(release: &str, now: chrono::DateTime<chrono::Utc>, random: u16) -> String {
    let release = release.get(..36).unwrap_or(release).trim_end_matches('-');
    format!("{release}-{}-{random:04x}", now.format("%Y%m%d-%H%M%S"))
}

/// Splits the images into Jobs of at most `max_images` elements and [`SECRET_BUDGET`] bytes,
/// one element per digest. An element that alone is over the budget (one image in thousands of
/// pods) lists as many pods as fit and counts the others in `pods-omitted` ([`fit_element`]):
/// the job processes the image once, and success annotates every pod running the digest (the
/// pods to annotate come from the cluster, not from the config).
pub fn plan_jobs(cycle: &str, images: Vec<(String, ImageConfig)>, max_images: usize) -> Vec<JobPlan> {
    plan_jobs_with_budget(cycle, images, max_images, SECRET_BUDGET)
}

fn json_len<T: serde::Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX)
}

pub fn plan_jobs_with_budget(
    cycle: &str,
    images: Vec<(String, ImageConfig)>,
    max_images: usize,
    budget: usize,
) -> Vec<JobPlan> {
    let mut shards: Vec<Vec<(String, ImageConfig)>> = Vec::new();
    let (mut current, mut current_bytes) = (Vec::new(), 2usize); // `[` and `]`
    for (digest, image) in images.into_iter().map(|(d, i)| (d, fit_element(i, budget))) {
        let len = json_len(&image) + 1; // the `,`
        if !current.is_empty() && (current.len() >= max_images || current_bytes + len > budget) {
            shards.push(std::mem::take(&mut current));
            current_bytes = 2;
        }
        current_bytes += len;
        current.push((digest, image));
    }
    if !current.is_empty() {
        shards.push(current);
    }
    shards
        .into_iter()
        .enumerate()
        .map(|(n, shard)| {
            let elements: Vec<String> = shard.iter().map(|(d, _)| d.clone()).collect();
            let mut digests = elements.clone();
            digests.dedup();
            JobPlan {
                cycle: cycle.to_string(),
                name: format!("{cycle}-{n}"),
                images: shard.into_iter().map(|(_, i)| i).collect(),
                elements,
                digests,
                units: Vec::new(),
            }
        })
        .collect()
}

/// Plans the Jobs of some units: each solo unit in Jobs of its own, the others together as
/// [`plan_jobs`] does. Jobs are numbered from `*next` on, so the Jobs a cycle re-plans after a
/// failure never take the name of an earlier one.
pub fn plan_units(cycle: &str, units: Vec<Unit>, max_images: usize, next: &mut usize) -> Vec<JobPlan> {
    let (solo, shared): (Vec<Unit>, Vec<Unit>) = units.into_iter().partition(|u| u.solo);
    let groups = solo
        .into_iter()
        .map(|u| vec![u])
        .chain((!shared.is_empty()).then_some(shared));
    let mut plans = Vec::new();
    for group in groups {
        let images = group
            .iter()
            .map(|u| (u.digest.clone(), u.config().clone()))
            .collect();
        for mut plan in plan_jobs(cycle, images, max_images) {
            plan.name = format!("{cycle}-{next}");
            *next += 1;
            plan.units = group
                .iter()
                .filter(|u| plan.digests.contains(&u.digest))
                .cloned()
                .collect();
            plans.push(plan);
        }
    }
    plans
}

/// The element, with only the first pods that fit in `budget` (their order is the work list's:
/// by namespace and name) and the number left out in `pods_omitted`.
fn fit_element(mut image: ImageConfig, budget: usize) -> ImageConfig {
    // Room for the brackets and the separator next to this element.
    let budget = budget.saturating_sub(4);
    if json_len(&image) <= budget {
        return image;
    }
    let pods = std::mem::take(&mut image.pods);
    // Sized with the largest count it can get, so the count never pushes it over.
    image.pods_omitted = pods.len() as u64;
    let mut bytes = json_len(&image);
    let mut kept = 0;
    for pod in &pods {
        let len = json_len(pod) + 1; // the `,`
        if bytes + len > budget {
            break;
        }
        bytes += len;
        kept += 1;
    }
    image.pods_omitted = (pods.len() - kept) as u64;
    image.pods = pods.into_iter().take(kept).collect();
    image
}

fn labels(cycle: &str, release: &str) -> BTreeMap<String, String> {
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

fn env_var(e: &ForwardedEnv) -> EnvVar {
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

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use sbomjob_contract::PodRef;

    use super::*;
    use crate::settings::Settings;

    fn image(n: usize, pods: usize) -> (String, ImageConfig) {
        let digest = format!("sha256:{n:064x}");
        (
            digest.clone(),
            ImageConfig {
                image: format!("10.244.0.1:5000/app{n}@{digest}"),
                pods: (0..pods)
                    .map(|p| PodRef {
                        pod: format!("pod-{n}-{p}"),
                        namespace: format!("ns-{}", p % 200),
                        cluster: "default".into(),
                    })
                    .collect(),
                ..Default::default()
            },
        )
    }

    fn plan() -> JobPlan {
        let images = vec![image(1, 2), image(2, 1)];
        plan_jobs("sbomjob-20261121-101500-00ff", images, 200).remove(0)
    }

    fn settings(extra: &[(&str, &str)]) -> JobSettings {
        let mut vars = vec![(
            "SBOM_JOB_IMAGE".to_string(),
            "10.244.0.1:5000/sbomjob/job:dev".to_string(),
        )];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::from_vars(vars).unwrap().job
    }

    #[test]
    fn cycle_ids_are_names_that_sort_by_time() {
        use chrono::TimeZone;
        let t = chrono::Utc.with_ymd_and_hms(2026, 11, 21, 9, 5, 7).unwrap();
        assert_eq!(cycle_id("sbomjob", t, 0xab), "sbomjob-20261121-090507-00ab");
        // A long release is cut so that `<cycle>-<n>` fits a name and a label value.
        let long = "a".repeat(35) + "-bcdefghijklmnop";
        let id = cycle_id(&long, t, 0xffff);
        assert_eq!(id, format!("{}-20261121-090507-ffff", "a".repeat(35)));
        assert!(format!("{id}-99999").len() <= 63);
    }

    #[test]
    fn each_release_selects_only_its_own_objects() {
        assert_eq!(
            selector("syft"),
            "app.kubernetes.io/managed-by=sbomjob,app.kubernetes.io/instance=syft"
        );
        let plan = plan();
        for labels in [
            secret(&plan, "ns", "syft", owned_by_job(&plan.name, "u"))
                .metadata
                .labels
                .unwrap(),
            job(&plan, "ns", "syft", &settings(&[])).metadata.labels.unwrap(),
            job(&plan, "ns", "syft", &settings(&[]))
                .spec
                .unwrap()
                .template
                .metadata
                .unwrap()
                .labels
                .unwrap(),
            release_labels("syft"),
        ] {
            assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
            assert_eq!(labels[INSTANCE_LABEL], "syft");
        }
    }

    #[test]
    fn secret_holds_the_config_and_nothing_else() {
        let plan = plan();
        let s = secret(&plan, "sbomjob", "sbomjob", owned_by_job(&plan.name, "uid-1"));
        assert_eq!(s.metadata.name.as_deref(), Some("sbomjob-20261121-101500-00ff-0"));
        // Owned by its Job from its first version, without blockOwnerDeletion (extra RBAC).
        let owners = s.metadata.owner_references.clone().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(
            (
                owners[0].api_version.as_str(),
                owners[0].kind.as_str(),
                owners[0].name.as_str(),
                owners[0].uid.as_str()
            ),
            ("batch/v1", "Job", plan.name.as_str(), "uid-1")
        );
        assert_eq!(owners[0].block_owner_deletion, None);
        assert!(owned_by_a_job(&s.metadata));
        assert!(!owned_by_a_job(&ObjectMeta::default()));
        assert_eq!(s.metadata.namespace.as_deref(), Some("sbomjob"));
        assert_eq!(s.metadata.labels.as_ref().unwrap()[MANAGED_BY_LABEL], "sbomjob");
        assert_eq!(
            s.metadata.labels.as_ref().unwrap()[CYCLE_LABEL],
            "sbomjob-20261121-101500-00ff"
        );
        assert_eq!(s.immutable, Some(true));
        let data = s.data.unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["image-config.json"]);
        let parsed: Vec<ImageConfig> = serde_json::from_slice(&data["image-config.json"].0).unwrap();
        assert_eq!(parsed, plan.images);
        // The wire format keeps sbom-operator's key order.
        let text = String::from_utf8(data["image-config.json"].0.clone()).unwrap();
        assert!(
            text.starts_with(r#"[{"registry-host":"","registry-user":"","registry-password":"","image":"#),
            "{text}"
        );
    }

    #[test]
    fn job_follows_the_contract() {
        let plan = plan();
        let job = job(
            &plan,
            "sbomjob",
            "sbomjob",
            &settings(&[
                ("SBOM_JOB_IMAGE_PULL_SECRET", "job-pull"),
                ("SBOM_JOB_TIMEOUT", "600"),
            ]),
        );
        assert_eq!(job.metadata.name.as_deref(), Some(plan.name.as_str()));
        assert_eq!(
            job.metadata.annotations.as_ref().unwrap()[DIGESTS_ANNOTATION],
            plan.elements.join("\n")
        );
        let spec = job.spec.unwrap();
        // Created suspended: resumed once its Secret exists.
        assert_eq!(spec.suspend, Some(true));
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(600));
        assert_eq!(spec.ttl_seconds_after_finished, Some(3600));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "job-pull");
        assert_eq!(pod.containers.len(), 1);
        let c = &pod.containers[0];
        assert_eq!(c.name, "sbom");
        assert_eq!(c.image.as_deref(), Some("10.244.0.1:5000/sbomjob/job:dev"));
        assert!(
            c.command.is_none() && c.args.is_none(),
            "the spec forbids arguments"
        );
        let mounts = c.volume_mounts.as_ref().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m.name == "config" && m.mount_path == "/sbom" && m.read_only == Some(true))
        );
        assert!(mounts.iter().any(|m| m.mount_path == "/tmp"));
        let volumes = pod.volumes.unwrap();
        let config = volumes.iter().find(|v| v.name == "config").unwrap();
        assert_eq!(
            config.secret.as_ref().unwrap().secret_name.as_deref(),
            Some(plan.name.as_str())
        );
        let tmp = volumes.iter().find(|v| v.name == "tmp").unwrap();
        let size = tmp.empty_dir.as_ref().unwrap().size_limit.as_ref();
        assert_eq!(
            size.map(|q| q.0.as_str()),
            crate::settings::table::get("SBOM_JOB_TMP_SIZE").default
        );
    }

    /// Without SBOM_JOB_RESOURCES the job container still has requests and a memory limit, and
    /// `/tmp` a size limit; both follow their settings.
    /// The job pod's spec with these settings.
    fn pod_spec(vars: &[(&str, &str)]) -> PodSpec {
        job(&plan(), "ns", "sbomjob", &settings(vars))
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
    }

    #[test]
    fn job_pod_is_bounded_by_default_and_by_settings() {
        let quantity = |m: &Option<BTreeMap<String, Quantity>>, k: &str| {
            m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone())
        };
        let pod = pod_spec;
        let default = pod(&[]);
        let r = default.containers[0].resources.clone().unwrap();
        assert_eq!(quantity(&r.requests, "cpu").as_deref(), Some("100m"));
        assert_eq!(quantity(&r.requests, "memory").as_deref(), Some("256Mi"));
        assert_eq!(quantity(&r.limits, "memory").as_deref(), Some("2Gi"));
        assert_eq!(quantity(&r.limits, "cpu"), None);

        let custom = pod(&[
            ("SBOM_JOB_TMP_SIZE", "10Gi"),
            (
                "SBOM_JOB_RESOURCES",
                r#"{"requests":{"memory":"1Gi"},"limits":{"memory":"4Gi"}}"#,
            ),
        ]);
        let r = custom.containers[0].resources.clone().unwrap();
        assert_eq!(quantity(&r.requests, "memory").as_deref(), Some("1Gi"));
        assert_eq!(
            quantity(&r.requests, "cpu"),
            None,
            "the setting replaces the defaults"
        );
        assert_eq!(quantity(&r.limits, "memory").as_deref(), Some("4Gi"));
        let tmp = custom
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "tmp")
            .unwrap();
        assert_eq!(tmp.empty_dir.unwrap().size_limit.unwrap().0, "10Gi");

        // `{}`: no requests or limits at all (the namespace's LimitRange, if any, decides).
        let none = pod(&[("SBOM_JOB_RESOURCES", "{}")]);
        let r = none.containers[0].resources.clone().unwrap();
        assert!(r.requests.is_none() && r.limits.is_none());
    }

    /// Every field the `restricted` Pod Security Standard checks (v1.33).
    #[test]
    fn job_pod_passes_restricted() {
        let job = job(&plan(), "ns", "sbomjob", &settings(&[]));
        let template = job.spec.unwrap().template;
        assert_eq!(
            template.metadata.unwrap().labels.unwrap()[CYCLE_LABEL],
            "sbomjob-20261121-101500-00ff"
        );
        let pod = template.spec.unwrap();
        assert!(pod.host_network.is_none() && pod.host_pid.is_none() && pod.host_ipc.is_none());
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_ne!(psc.run_as_user, Some(0));
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        for v in pod.volumes.unwrap() {
            assert!(
                v.secret.is_some() || v.empty_dir.is_some(),
                "restricted allows only safe volume types"
            );
        }
        let sc = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.privileged, None);
        assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert!(pod.containers[0].ports.is_none());
    }

    #[test]
    fn privileged_only_on_request() {
        let job = job(
            &plan(),
            "ns",
            "sbomjob",
            &settings(&[("SBOM_JOB_PRIVILEGED", "true")]),
        );
        let c = &job.spec.unwrap().template.spec.unwrap().containers[0];
        assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(true));
    }

    #[test]
    fn env_is_forwarded_and_own_settings_are_not() {
        let job = job(
            &plan(),
            "ns",
            "sbomjob",
            &settings(&[
                ("SBOM_JOB_FOO", "https://x:443/a b=c"),
                ("SBOM_JOB_TIMEOUT", "60"),
                ("SBOM_JOB_IMAGE_PULL_SECRET", "s"),
                ("SBOM_JOBSECRET_API_KEY", "creds/key"),
            ]),
        );
        let env = job.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["API_KEY", "FOO", DEADLINE_ENV, "HOME"]);
        assert_eq!(env[1].value.as_deref(), Some("https://x:443/a b=c"));
        let dollars = super::job(
            &plan(),
            "ns",
            "sbomjob",
            &settings(&[("SBOM_JOB_D", "a$(HOME)b$$c$")]),
        );
        let env_d = dollars.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        // What the kubelet turns back into `a$(HOME)b$$c$`.
        assert_eq!(env_d[0].value.as_deref(), Some("a$$(HOME)b$$$$c$$"));
        let secret_ref = env[0]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (secret_ref.name.as_str(), secret_ref.key.as_str()),
            ("creds", "key")
        );
        assert!(env[0].value.is_none());
        for own in ["IMAGE", "IMAGE_PULL_SECRET", "TIMEOUT"] {
            assert!(!names.contains(&own));
        }
    }

    #[test]
    fn job_pod_shape_comes_from_settings() {
        let s = settings(&[
            ("SBOM_JOB_NODE_SELECTOR", "kubernetes.io/arch=amd64"),
            ("SBOM_JOB_SERVICE_ACCOUNT", "scanner"),
            ("SBOM_JOB_PRIORITY_CLASS", "low"),
            ("SBOM_JOB_TTL", "10m"),
            ("SBOM_JOB_RESOURCES", r#"{"limits":{"memory":"512Mi"}}"#),
        ]);
        let spec = job(&plan(), "ns", "sbomjob", &s).spec.unwrap();
        assert_eq!(spec.ttl_seconds_after_finished, Some(600));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.node_selector.unwrap()["kubernetes.io/arch"], "amd64");
        assert_eq!(pod.service_account_name.as_deref(), Some("scanner"));
        assert_eq!(pod.priority_class_name.as_deref(), Some("low"));
        assert!(
            pod.containers[0]
                .resources
                .as_ref()
                .unwrap()
                .limits
                .as_ref()
                .unwrap()
                .contains_key("memory")
        );
    }

    #[test]
    fn shards_by_count() {
        let images: Vec<_> = (0..25).map(|n| image(n, 1)).collect();
        let plans = plan_jobs("sbomjob-c", images, 10);
        let sizes: Vec<usize> = plans.iter().map(|p| p.images.len()).collect();
        assert_eq!(sizes, [10, 10, 5]);
        assert_eq!(plans[2].name, "sbomjob-c-2");
        assert_eq!(plans.iter().map(|p| p.digests.len()).sum::<usize>(), 25);
    }

    #[test]
    fn empty_work_list_makes_no_job() {
        assert!(plan_jobs("sbomjob-c", Vec::new(), 10).is_empty());
    }

    /// 20,000 pods of one image plus 500 images: every Secret stays under the budget (measured),
    /// every digest is one element of one Job, and every pod occurrence is either listed or
    /// counted as omitted.
    #[test]
    fn shards_by_measured_size() {
        let mut images = vec![image(0, 20_000)];
        images.extend((1..=500).map(|n| image(n, 40)));
        let plans = plan_jobs("sbomjob-c", images, 200);
        assert!(plans.len() > 2);
        for p in &plans {
            let bytes = secret(p, "sbomjob", "sbomjob", owned_by_job(&p.name, "u"))
                .data
                .unwrap()["image-config.json"]
                .0
                .len();
            assert!(bytes <= SECRET_BUDGET, "{} is {bytes} bytes", p.name);
            assert!(p.images.len() <= 200);
            assert_eq!(p.elements, p.digests, "one element per digest");
        }
        let elements: Vec<&ImageConfig> = plans.iter().flat_map(|p| &p.images).collect();
        assert_eq!(elements.len(), 501);
        let listed: usize = elements.iter().map(|i| i.pods.len()).sum();
        let omitted: u64 = elements.iter().map(|i| i.pods_omitted).sum();
        assert_eq!(listed as u64 + omitted, 20_000 + 500 * 40);
        let big: Vec<_> = plans
            .iter()
            .filter(|p| p.digests.contains(&format!("sha256:{:064x}", 0)))
            .collect();
        assert_eq!(big.len(), 1, "the big image is in one Job");
        let big = &big[0].images[0];
        assert!(big.pods_omitted > 0 && !big.pods.is_empty());
        // The first pods in the work list's order, not a random sample.
        let (_, whole) = image(0, 20_000);
        assert_eq!(big.pods[..], whole.pods[..big.pods.len()]);
    }

    /// Whatever its pods, a digest is one element: at, just over and far over the budget.
    #[test]
    fn one_element_per_digest_whatever_its_pods() {
        let budget = 4096;
        for pods in [0, 1, 10, 40, 41, 200, 5_000] {
            let (digest, config) = image(9, pods);
            let plans = plan_jobs_with_budget("c", vec![(digest.clone(), config.clone())], 10, budget);
            assert_eq!(plans.len(), 1, "{pods} pods");
            assert_eq!(plans[0].elements, std::slice::from_ref(&digest));
            let element = &plans[0].images[0];
            let bytes = serde_json::to_vec(&plans[0].images).unwrap().len();
            assert!(bytes <= budget, "{pods} pods: {bytes} bytes");
            assert_eq!(element.pods.len() as u64 + element.pods_omitted, pods as u64);
            assert_eq!(element.pods[..], config.pods[..element.pods.len()]);
            // Only cut when it does not fit.
            let whole = json_len(&config) + 4 <= budget;
            assert_eq!(element.pods_omitted == 0, whole, "{pods} pods");
        }
    }

    #[test]
    fn job_deadline_and_ttl_saturate() {
        // Past the settings' bounds (JobSettings built by hand): never negative, never wrapped.
        let mut s = settings(&[]);
        s.timeout = std::time::Duration::MAX;
        s.ttl = std::time::Duration::MAX;
        let spec = job(&plan(), "sbomjob", "sbomjob", &s).spec.unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(i64::MAX));
        assert_eq!(spec.ttl_seconds_after_finished, Some(i32::MAX));
    }

    #[test]
    fn units_plan_solo_ones_alone_and_number_jobs_on() {
        use crate::replan::Unit;
        let unit = |n: usize, solo: bool| {
            let (digest, config) = image(n, 1);
            Unit {
                solo,
                ..Unit::new(digest, vec![config])
            }
        };
        let mut next = 3;
        let plans = plan_units(
            "sbomjob-c",
            vec![unit(1, false), unit(2, true), unit(3, false), unit(4, true)],
            10,
            &mut next,
        );
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["sbomjob-c-3", "sbomjob-c-4", "sbomjob-c-5"]);
        assert_eq!(next, 6);
        let sizes: Vec<usize> = plans.iter().map(|p| p.images.len()).collect();
        assert_eq!(sizes, [1, 1, 2]);
        for plan in &plans {
            assert_eq!(
                plan.elements,
                plan.units.iter().map(|u| u.digest.clone()).collect::<Vec<_>>()
            );
            assert_eq!(plan.digests, plan.elements);
        }
        assert!(plans[0].units[0].solo && plans[1].units[0].solo);
        // The annotation lists every element in order: what a report's indices point at.
        let job = job(&plans[2], "ns", "sbomjob", &settings(&[]));
        assert_eq!(
            job.metadata.annotations.unwrap()[DIGESTS_ANNOTATION],
            format!("{}\n{}", plans[2].elements[0], plans[2].elements[1])
        );
    }

    #[test]
    fn the_entrypoint_stops_a_margin_before_the_job_deadline() {
        let secs = |s: u64| entrypoint_deadline(Duration::from_secs(s)).as_secs();
        assert_eq!(secs(3600), 3240);
        assert_eq!(secs(20), 10);
        assert_eq!(secs(60), 50);
        assert_eq!(secs(7 * 86400), 7 * 86400 - 600);
        assert_eq!(secs(1), 1);
        let env_with = |vars: &[(&str, &str)]| pod_spec(vars).containers[0].env.clone().unwrap();
        let env = env_with(&[("SBOM_JOB_TIMEOUT", "600")]);
        assert!(
            env.iter()
                .any(|e| e.name == DEADLINE_ENV && e.value.as_deref() == Some("540s"))
        );
        // A value the user forwards wins.
        let env = env_with(&[("SBOM_JOB_ENTRYPOINT_DEADLINE", "1m")]);
        let ours: Vec<_> = env.iter().filter(|e| e.name == DEADLINE_ENV).collect();
        assert_eq!(ours.len(), 1);
        assert_eq!(ours[0].value.as_deref(), Some("1m"));
    }
}
