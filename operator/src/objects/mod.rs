//! The Secret and Job of a cycle, built from the work list and the settings (pure).

mod labels;
mod manifests;
pub mod meta;
mod shards;

pub use labels::*;
pub use manifests::*;
pub use shards::*;

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use sbomjob_contract::PodRef;

    use super::*;
    use std::{collections::BTreeMap, time::Duration};

    use k8s_openapi::api::core::v1::PodSpec;
    use kube::api::ObjectMeta;
    use sbomjob_contract::ImageConfig;

    use crate::settings::JobSettings;
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
        assert_eq!(
            names,
            ["API_KEY", "FOO", DEADLINE_ENV, SETTINGS_IDENTITY_ENV, "HOME"]
        );
        assert_eq!(
            env[3].value.as_deref().map(str::len),
            Some(64),
            "the settings hash"
        );
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
