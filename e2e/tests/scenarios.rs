//! The end-to-end scenarios of the job-image contract, against the real local cluster.
//! Run by hack/test.sh (`make test`), one scenario at a time; this file alone:
//! `cargo test -p sbomjob-e2e --test scenarios -- --test-threads=1`.

use std::time::Duration;

use e2e::{CYCLES_OK, Cluster, SKOPEO_INSPECT, Scenario, job_digests, job_end, job_name, wait_for};
use k8s_openapi::api::batch::v1::Job;
use sbomjob_contract::termination::Report;

const PREFIX: &str = "sbomjob.io";
const MIN: Duration = Duration::from_secs(60);

fn env_of(job: &Job) -> Vec<(String, Option<String>)> {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect()
}

/// 1. Two namespaces share one image and use two more: one Secret, one Job, a real CLI run,
/// every pod annotated, the Secret gone, and a second cycle that does nothing.
#[tokio::test]
async fn s1_happy_path() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "happy", 2).await;
    let (w0, w1) = (s.namespaces[0].clone(), s.namespaces[1].clone());
    let (alpha, beta, gamma) = (
        cluster.var("WORKLOAD_ALPHA_IMAGE"),
        cluster.var("WORKLOAD_BETA_IMAGE"),
        cluster.var("WORKLOAD_GAMMA_IMAGE"),
    );
    s.pod(&w0, "web", &[("app", alpha), ("sidecar", beta)], &[]).await;
    s.pod(&w1, "web", &[("app", alpha)], &[]).await;
    s.pod(&w1, "db", &[("db", gamma)], &[]).await;
    s.wait_pods_running().await;

    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_SKOPEO_IMAGE")),
        ("SBOM_JOB_ENTRYPOINT_COMMAND", SKOPEO_INSPECT),
        // Per-pod Normal Events are opt-in (the default is failures only).
        ("SBOM_POD_EVENTS", "all"),
    ]);
    let jobs = s.wait_jobs(1, 2 * MIN).await;
    assert_eq!(jobs.len(), 1, "one Job for the whole cycle");
    let job = job_name(&jobs[0]);
    // The Job mounts a Secret of the same name holding image-config.json.
    let volume = &jobs[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        volume.secret.as_ref().unwrap().secret_name.as_deref(),
        Some(job.as_str())
    );

    assert_eq!(s.wait_job_end(&job, 3 * MIN).await.0, "Complete");
    s.wait_all_annotated(PREFIX, MIN).await;
    // Every pod tells `kubectl describe pod` it was processed, by which Job, and what was written.
    for (pod, events) in s.wait_pod_events("Normal", "Processed", MIN).await {
        let name = pod.metadata.name.unwrap();
        assert!(
            events.iter().any(|e| e.reason.as_deref() == Some("Processed")
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.contains(&job) && n.contains(PREFIX))
                && e.action.as_deref() == Some("Catalogue")),
            "{name}: no Processed event naming {job}: {events:?}"
        );
        assert!(
            events.iter().all(|e| e.type_.as_deref() == Some("Normal")),
            "{name}: a Warning on the happy path: {events:?}"
        );
    }

    // The job really ran skopeo against the registry for each of the three digests.
    let logs = s.job_logs(&job).await;
    for var in [
        "WORKLOAD_ALPHA_IMAGE",
        "WORKLOAD_BETA_IMAGE",
        "WORKLOAD_GAMMA_IMAGE",
    ] {
        let digest = cluster.var(&format!("{var}_DIGEST"));
        assert!(
            logs.contains(&format!("\"Digest\": \"{digest}\"")),
            "skopeo output for {var} missing:\n{logs}"
        );
    }
    // The entrypoint's per-image report, in the job pod's status: three images, all ok.
    assert_eq!(
        s.job_report(&job).await,
        Report {
            n: 3,
            ok: vec![0, 1, 2],
            failed: vec![]
        }
    );

    wait_for("the Secret to be deleted", MIN, || async {
        s.secrets().await.is_empty()
    })
    .await;
    // The next cycles (10 s interval) end without an error and create nothing.
    let cycles = s.metric(0, CYCLES_OK).await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(s.jobs().await.len(), 1, "no Job when there is nothing to do");
    let after = s.metric(0, CYCLES_OK).await;
    assert!(
        after > cycles,
        "no cycle ended in 25 s (sbomjob_cycles_total ok: {cycles} then {after})"
    );
}

/// 2. The CLI fails for one image: the Job fails and annotates nothing; its images are
/// re-planned at once, the healthy one is annotated by a Job of its own and the failing one,
/// failing alone too, backs off with a Warning on its pod.
#[tokio::test]
async fn s2_failure_annotates_nothing_and_isolates_the_bad_image() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "failure", 1).await;
    let ns = s.namespaces[0].clone();
    // An image that the node has but the registry no longer serves: skopeo fails for it.
    let doomed = e2e::registry::copy_image(&cluster, "WORKLOAD_GAMMA_IMAGE", "e2e/doomed").await;
    s.pod(&ns, "ok", &[("app", cluster.var("WORKLOAD_ALPHA_IMAGE"))], &[])
        .await;
    s.pod(&ns, "doomed", &[("app", &doomed.tagged)], &[]).await;
    s.wait_pods_running().await;
    e2e::registry::delete_manifest(&cluster, &doomed).await;

    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_SKOPEO_IMAGE")),
        ("SBOM_JOB_ENTRYPOINT_COMMAND", SKOPEO_INSPECT),
        ("SBOM_POD_EVENTS", "all"),
    ]);
    let first = job_name(&s.wait_jobs(1, 2 * MIN).await[0]);
    let (end, reason) = s.wait_job_end(&first, 3 * MIN).await;
    assert_eq!(end, "Failed");
    // The entrypoint's per-image report: of the two images, the doomed one failed, the other
    // ran ok (the Job's digests are its config's elements, in order).
    let report = s.job_report(&first).await;
    let digests = job_digests(&s.jobs().await[0]);
    assert_eq!(
        (report.n, report.ok.len(), report.failed.len()),
        (2, 1, 1),
        "{report:?}"
    );
    assert_eq!(digests.len(), 2, "{digests:?}");
    assert_eq!(digests[report.failed[0]], doomed.digest, "{report:?} {digests:?}");
    // Re-planned in the same cycle: each image in a Job of its own.
    let jobs = s.wait_jobs(3, 2 * MIN).await;
    for job in &jobs[1..] {
        s.wait_job_end(&job_name(job), 3 * MIN).await;
    }
    wait_for("the healthy pod annotated", MIN, || async {
        s.annotations(PREFIX)
            .await
            .iter()
            .any(|(_, pod, id, v)| pod == "ok" && v.as_deref() == Some(id.as_str()))
    })
    .await;
    let annotations = s.annotations(PREFIX).await;
    assert!(
        annotations
            .iter()
            .any(|(_, pod, _, v)| pod == "doomed" && v.is_none()),
        "the failing image must not be annotated: {annotations:?}"
    );
    // The failing image's pod gets an ImageFailed Warning naming its Job's reason; the healthy
    // pod no Warning, and a Processed.
    let events = s.pod_events().await;
    for (pod, events) in &events {
        let name = pod.metadata.name.clone().unwrap();
        if name == "doomed" {
            assert!(
                events.iter().any(|e| e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("ImageFailed")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains(&reason) && n.contains("not annotated"))),
                "{name}: no ImageFailed Warning with {reason}: {events:?}"
            );
            assert!(events.iter().all(|e| e.reason.as_deref() != Some("Processed")));
        } else {
            assert!(
                events.iter().any(|e| e.reason.as_deref() == Some("Processed")),
                "{name}: {events:?}"
            );
        }
    }
    // Backing off (10 min by default): the next cycles make no Job.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(s.jobs().await.len(), 3, "no Job while the image backs off");
    wait_for("no Secret left after the failed Jobs", MIN, || async {
        s.secrets().await.is_empty()
    })
    .await;
}

/// 3. The CLI hangs: the Job fails with DeadlineExceeded at SBOM_JOB_TIMEOUT, nothing is
/// annotated, and the operator unblocks for the next cycle.
#[tokio::test]
async fn s3_deadline() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "deadline", 1).await;
    let ns = s.namespaces[0].clone();
    s.run_app_pod(&ns, "app", "WORKLOAD_ALPHA_IMAGE", &[]).await;
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        ("SBOM_JOB_ENTRYPOINT_COMMAND", "busybox sleep 3600"),
        ("SBOM_JOB_TIMEOUT", "20"),
        // As a job image that ignores the entrypoint's own deadline: Kubernetes' must hold.
        ("SBOM_JOB_ENTRYPOINT_DEADLINE", "0"),
        // The image failed alone: retried by the next cycle, not ten minutes later.
        ("SBOM_RETRY_BACKOFF", "1s"),
    ]);
    let job = s.wait_jobs(1, 2 * MIN).await.remove(0);
    assert_eq!(job.spec.as_ref().unwrap().active_deadline_seconds, Some(20));
    let end = s.wait_job_end(&job_name(&job), 2 * MIN).await;
    assert_eq!(end, ("Failed".to_string(), "DeadlineExceeded".to_string()));
    let jobs = s.wait_jobs(2, MIN).await;
    assert!(job_end(&jobs[1]).is_none_or(|(t, _)| t == "Failed"));
    assert!(s.annotations(PREFIX).await.iter().all(|(_, _, _, v)| v.is_none()));
}

/// 4. Triggers while a Job runs create no second Job; they collapse into one cycle after it.
#[tokio::test]
async fn s4_blocking() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "blocking", 1).await;
    let ns = s.namespaces[0].clone();
    s.run_app_pod(&ns, "app", "WORKLOAD_BETA_IMAGE", &[]).await;
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        ("SBOM_JOB_ENTRYPOINT_COMMAND", "busybox sleep 30"),
        ("SBOM_INTERVAL", "2s"),
    ]);
    let job = job_name(&s.wait_jobs(1, 2 * MIN).await[0]);
    // Fifteen 2-second ticks pass while the Job runs.
    let mut polls = 0;
    while job_end(&s.jobs().await[0]).is_none() {
        assert_eq!(
            s.jobs().await.len(),
            1,
            "a second Job was created while {job} ran"
        );
        polls += 1;
        assert!(polls < 120, "Job {job} did not end");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(polls >= 10, "the Job ended too soon ({polls} s) to show blocking");
    s.wait_all_annotated(PREFIX, MIN).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(s.jobs().await.len(), 1);
    // Two cycles ended: the one that waited for the Job, and the coalesced one after it, which
    // made no Job.
    let cycles = s.metric(0, CYCLES_OK).await;
    assert!(
        cycles >= 2.0,
        "the coalesced cycle after the Job did not run (sbomjob_cycles_total ok: {cycles})"
    );
}

/// 5. `SBOM_JOB_FOO` reaches the job as `FOO` byte for byte; the operator's own settings do not.
#[tokio::test]
async fn s5_env_forwarding() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "env", 1).await;
    let ns = s.namespaces[0].clone();
    s.run_app_pod(&ns, "app", "WORKLOAD_ALPHA_IMAGE", &[]).await;
    let tricky = "https://x:443/a b=c";
    let b64 = "aGk+Pz8/+/w==";
    // The kubelet expands `$(VAR)` and folds `$$`: the job must still see the value verbatim.
    let dollars = "a$(HOME)b$$c$";
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        ("SBOM_JOB_IMAGE_PULL_POLICY", "IfNotPresent"),
        ("SBOM_JOB_TIMEOUT", "300"),
        // The job's CLI prints its environment; the entrypoint logs it line by line.
        ("SBOM_JOB_ENTRYPOINT_COMMAND", "busybox env"),
        ("SBOM_JOB_FOO", tricky),
        ("SBOM_JOB_B64", b64),
        ("SBOM_JOB_DOLLARS", dollars),
        ("MY_SBOM_JOB_NOT_OURS", "x"),
    ]);
    let job = s.wait_jobs(1, 2 * MIN).await.remove(0);
    let env = env_of(&job);
    assert!(env.contains(&("FOO".into(), Some(tricky.into()))), "{env:?}");
    assert!(env.contains(&("B64".into(), Some(b64.into()))), "{env:?}");
    for own in [
        "IMAGE",
        "IMAGE_PULL_POLICY",
        "TIMEOUT",
        "NOT_OURS",
        "SBOM_JOB_IMAGE",
    ] {
        assert!(
            env.iter().all(|(n, _)| n != own),
            "{own} must not be forwarded: {env:?}"
        );
    }
    assert_eq!(s.wait_job_end(&job_name(&job), 2 * MIN).await.0, "Complete");
    // What `env` printed, whatever the entrypoint puts before each line of the tool's output:
    // the rest of the line after `NAME=` (not part of a longer name).
    let logs = s.job_logs(&job_name(&job)).await;
    let printed = |name: &str| {
        let key = format!("{name}=");
        logs.lines().find_map(|l| {
            l.match_indices(&key)
                .find(|(i, _)| {
                    l[..*i]
                        .chars()
                        .next_back()
                        .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
                })
                .map(|(i, _)| l[i + key.len()..].to_string())
        })
    };
    assert_eq!(printed("FOO").as_deref(), Some(tricky), "{logs}");
    assert_eq!(printed("B64").as_deref(), Some(b64), "{logs}");
    assert_eq!(printed("DOLLARS").as_deref(), Some(dollars), "{logs}");
    assert_eq!(printed("TIMEOUT"), None);
    assert_eq!(printed("IMAGE"), None);
}

/// 6. A private registry: the workload pulls with an imagePullSecret, the job gets the matching
/// credentials in image-config.json and its CLI pulls with them; the job image itself comes
/// from that registry with SBOM_JOB_IMAGE_PULL_SECRET.
#[tokio::test]
async fn s6_private_registry() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "private", 1).await;
    let ns = s.namespaces[0].clone();
    let (registry, user, password) = (
        cluster.var("REGISTRY_AUTH"),
        cluster.var("REGISTRY_AUTH_USER"),
        cluster.var("REGISTRY_AUTH_PASSWORD"),
    );
    s.pull_secret(&ns, "regcred", registry, user, password).await;
    s.pull_secret(&s.job_ns.clone(), "jobcred", registry, user, password)
        .await;
    s.run_app_pod(&ns, "private", "WORKLOAD_DELTA_IMAGE", &["regcred"])
        .await;
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_PRIVATE_IMAGE")),
        ("SBOM_JOB_IMAGE_PULL_SECRET", "jobcred"),
        ("SBOM_JOB_IMAGE_PULL_POLICY", "Always"),
        ("SBOM_JOB_ENTRYPOINT_COMMAND", SKOPEO_INSPECT),
    ]);
    let job = s.wait_jobs(1, 2 * MIN).await.remove(0);
    let pod_spec = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod_spec.image_pull_secrets.as_ref().unwrap()[0].name, "jobcred");
    assert_eq!(s.wait_job_end(&job_name(&job), 3 * MIN).await.0, "Complete");
    s.wait_all_annotated(PREFIX, MIN).await;
    let logs = s.job_logs(&job_name(&job)).await;
    assert!(
        logs.contains(cluster.var("WORKLOAD_DELTA_IMAGE_DIGEST")),
        "{logs}"
    );
    assert!(
        !logs.contains(password),
        "the registry password appeared in the job's log"
    );
    assert!(
        !s.operator_log(0).contains(password),
        "the registry password appeared in the operator's log"
    );
}

/// 7. The job namespace enforces Pod Security `restricted`: the job pod is admitted and runs.
#[tokio::test]
async fn s7_restricted() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "restricted", 1).await;
    let ns = s.namespaces[0].clone();
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(s.client.clone());
    let labels = api.get(&s.job_ns).await.unwrap().metadata.labels.unwrap();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    s.run_app_pod(&ns, "app", "WORKLOAD_GAMMA_IMAGE", &[]).await;
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_SKOPEO_IMAGE")),
        ("SBOM_JOB_ENTRYPOINT_COMMAND", SKOPEO_INSPECT),
    ]);
    let job = job_name(&s.wait_jobs(1, 2 * MIN).await[0]);
    assert_eq!(s.wait_job_end(&job, 3 * MIN).await.0, "Complete");
    // Admission created the pod (no FailedCreate); it ran to completion as non-root.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(s.client.clone(), &s.job_ns);
    let list = pods
        .list(&kube::api::ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let pod = &list.items[0];
    assert_eq!(pod.status.as_ref().unwrap().phase.as_deref(), Some("Succeeded"));
    assert_eq!(
        pod.spec.as_ref().unwrap().automount_service_account_token,
        Some(false)
    );
    let mounts = pod.spec.as_ref().unwrap().containers[0]
        .volume_mounts
        .clone()
        .unwrap_or_default();
    assert!(
        mounts.iter().all(|m| !m.mount_path.contains("serviceaccount")),
        "{mounts:?}"
    );
    s.wait_all_annotated(PREFIX, MIN).await;
}

/// 8. kill -9 of the operator while its Job runs: the restarted operator adopts the Job (still
/// exactly one) and annotates when it completes.
#[tokio::test]
async fn s8_restart_adopts_the_job() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "restart", 1).await;
    let ns = s.namespaces[0].clone();
    s.run_app_pod(&ns, "app", "WORKLOAD_BETA_IMAGE", &[]).await;
    let env = [
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        ("SBOM_JOB_ENTRYPOINT_COMMAND", "busybox sleep 25"),
    ];
    let first = s.start_operator(&env);
    let job = job_name(&s.wait_jobs(1, 2 * MIN).await[0]);
    s.kill_operator(first);
    assert!(
        job_end(&s.jobs().await[0]).is_none(),
        "the Job should still run when the operator dies"
    );
    let second = s.start_operator(&env);
    while job_end(&s.jobs().await[0]).is_none() {
        assert_eq!(
            s.jobs().await.len(),
            1,
            "the restarted operator created a second Job"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    s.wait_all_annotated(PREFIX, MIN).await;
    wait_for("the adopted Job's Secret to be deleted", MIN, || async {
        s.secrets().await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let jobs = s.jobs().await;
    assert_eq!(jobs.len(), 1);
    // The new operator did the adopted Job's bookkeeping: it counts the Job and its image, and
    // the Job is marked done.
    let metrics = s.metrics(second).await;
    assert_eq!(
        metrics.value("sbomjob_jobs_total{result=\"complete\"}"),
        1.0,
        "the new operator did not finish {job}: {metrics:?}"
    );
    assert_eq!(
        metrics.value("sbomjob_images_processed_total"),
        1.0,
        "{metrics:?}"
    );
    assert_eq!(
        jobs[0]
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("sbomjob.io/state"))
            .map(String::as_str),
        Some("done"),
        "the adopted Job {job} was not marked done"
    );
}

/// 9. A job image written to the spec without our entrypoint (sh + jq loop) processes the
/// operator's config correctly.
#[tokio::test]
async fn s9_compatible_shell_job_image() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "compat", 2).await;
    let (w0, w1) = (s.namespaces[0].clone(), s.namespaces[1].clone());
    s.pod(&w0, "a", &[("app", cluster.var("WORKLOAD_ALPHA_IMAGE"))], &[])
        .await;
    s.pod(
        &w1,
        "b",
        &[
            ("app", cluster.var("WORKLOAD_ALPHA_IMAGE")),
            ("db", cluster.var("WORKLOAD_GAMMA_IMAGE")),
        ],
        &[],
    )
    .await;
    s.wait_pods_running().await;
    s.start_operator(&[("SBOM_JOB_IMAGE", cluster.var("JOB_COMPAT_IMAGE"))]);
    let job = job_name(&s.wait_jobs(1, 2 * MIN).await[0]);
    assert_eq!(s.wait_job_end(&job, 3 * MIN).await.0, "Complete");
    s.wait_all_annotated(PREFIX, MIN).await;
    // docs/examples/jq-loop/entrypoint.sh prints each element it handles with its pods.
    let logs = s.job_logs(&job).await;
    let (alpha, gamma) = (
        cluster.pinned("WORKLOAD_ALPHA_IMAGE"),
        cluster.pinned("WORKLOAD_GAMMA_IMAGE"),
    );
    assert!(logs.contains(&format!("processing {alpha} (pods a,b)")), "{logs}");
    assert!(logs.contains(&format!("processing {gamma} (pods b)")), "{logs}");
    assert!(
        logs.contains(&format!("ok {alpha}")) && logs.contains(&format!("ok {gamma}")),
        "{logs}"
    );
    assert!(logs.contains("2 images, 0 failed"), "{logs}");
}

/// 10. The operator as the Helm-installed Deployment: its image pulled by the kubelet from the
/// local registry, in-cluster config through the `kubernetes` Service, the job image's preset
/// command: scenario 1's outcome with nothing but `helm install --set jobImage=...`.
#[tokio::test]
async fn s10_helm_installed_operator() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "helm", 2).await;
    let (w0, w1) = (s.namespaces[0].clone(), s.namespaces[1].clone());
    s.pod(&w0, "web", &[("app", cluster.var("WORKLOAD_ALPHA_IMAGE"))], &[])
        .await;
    s.pod(
        &w1,
        "web",
        &[
            ("app", cluster.var("WORKLOAD_ALPHA_IMAGE")),
            ("db", cluster.var("WORKLOAD_GAMMA_IMAGE")),
        ],
        &[],
    )
    .await;
    s.wait_pods_running().await;
    let operator = cluster.var("OPERATOR_IMAGE");
    let (repo, tag) = operator.rsplit_once(':').unwrap();
    s.helm_install(
        "sbomjob",
        1,
        &[
            ("image.repository", repo),
            ("image.tag", tag),
            // Images are rebuilt under the same tag: the digest pins this run's (and the
            // chart renders repository:tag@digest).
            ("image.digest", cluster.var("OPERATOR_IMAGE_DIGEST")),
            ("jobImage", cluster.var("JOB_E2E_IMAGE")),
            ("interval", "10s"),
        ],
    );
    let jobs = s.wait_jobs(1, 3 * MIN).await;
    assert_eq!(s.wait_job_end(&job_name(&jobs[0]), 3 * MIN).await.0, "Complete");
    s.wait_all_annotated(PREFIX, MIN).await;
    wait_for("the Secret to be deleted", MIN, || async {
        s.secrets().await.is_empty()
    })
    .await;
    assert_eq!(
        s.job_report(&job_name(&jobs[0])).await,
        Report {
            n: 2,
            ok: vec![0, 1],
            failed: vec![]
        }
    );
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(s.jobs().await.len(), 1, "no second Job for work already done");
    // The operator pod itself ran as the chart says: non-root, ready.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(s.client.clone(), &s.job_ns);
    let list = pods
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/instance=sbomjob"))
        .await
        .unwrap();
    let op = list
        .items
        .iter()
        .find(|p| {
            p.metadata
                .labels
                .as_ref()
                .is_some_and(|l| !l.contains_key("job-name"))
        })
        .unwrap();
    let ready = op
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    assert!(ready, "operator pod not ready: {:?}", op.status);
    // `helm test`: the chart's test pod probes /readyz through a Service of its own.
    let out = std::process::Command::new("helm")
        .args([
            "test",
            "sbomjob",
            "--namespace",
            &s.job_ns,
            "--timeout",
            "2m",
            "--logs",
        ])
        .output()
        .expect("running helm test");
    assert!(
        out.status.success(),
        "helm test failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Succeeded"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// 11. The chart's ServiceAccount may write only where it must: Secrets and Jobs in its own
/// namespace, new Events anywhere (the pod Events, `podEvents: all` by default); every other
/// write elsewhere is forbidden.
#[tokio::test]
async fn s11_rbac_least_privilege() {
    use k8s_openapi::api::{
        batch::v1::Job,
        core::v1::{Pod, Secret},
    };
    use kube::{
        Api,
        api::{DeleteParams, Patch, PatchParams, PostParams},
    };

    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "rbac", 1).await;
    let other = s.namespaces[0].clone();
    s.pod(
        &other,
        "app",
        &[("app", cluster.var("WORKLOAD_ALPHA_IMAGE"))],
        &[],
    )
    .await;
    let kubeconfig = s.chart_identity();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let sa = kube::Client::try_from(config).unwrap();
    let forbidden = |r: Result<(), kube::Error>, what: &str| match r {
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    };
    let secret = |name: &str| Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        string_data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    };
    let pp = PostParams::default();

    // Allowed: its own namespace.
    let own: Api<Secret> = Api::namespaced(sa.clone(), &s.job_ns);
    own.create(&pp, &secret("rbac-own"))
        .await
        .expect("a Secret in its own namespace");
    own.delete("rbac-own", &DeleteParams::default())
        .await
        .expect("deleting it again");

    // Forbidden: writes in another namespace.
    let elsewhere: Api<Secret> = Api::namespaced(sa.clone(), &other);
    forbidden(
        elsewhere.create(&pp, &secret("rbac-elsewhere")).await.map(|_| ()),
        "create Secret in another namespace",
    );
    let admin_secrets: Api<Secret> = Api::namespaced(s.client.clone(), &other);
    admin_secrets.create(&pp, &secret("victim")).await.unwrap();
    forbidden(
        elsewhere
            .delete("victim", &DeleteParams::default())
            .await
            .map(|_| ()),
        "delete Secret in another namespace",
    );
    let patch = Patch::Merge(serde_json::json!({"metadata": {"labels": {"x": "y"}}}));
    forbidden(
        elsewhere
            .patch("victim", &PatchParams::default(), &patch)
            .await
            .map(|_| ()),
        "patch Secret in another namespace",
    );
    forbidden(
        elsewhere.list(&Default::default()).await.map(|_| ()),
        "list Secrets in another namespace",
    );
    let jobs: Api<Job> = Api::namespaced(sa.clone(), &other);
    forbidden(
        jobs.list(&Default::default()).await.map(|_| ()),
        "list Jobs in another namespace",
    );
    let pods: Api<Pod> = Api::namespaced(sa.clone(), &other);
    let pod = Pod {
        metadata: kube::api::ObjectMeta {
            name: Some("intruder".into()),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::core::v1::PodSpec {
            containers: vec![k8s_openapi::api::core::v1::Container {
                name: "c".into(),
                image: Some("x".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    forbidden(pods.create(&pp, &pod).await.map(|_| ()), "create a Pod");
    forbidden(
        pods.delete("app", &DeleteParams::default()).await.map(|_| ()),
        "delete a Pod",
    );
    // Events elsewhere: create only (each pod Event is a new object); never read, change or
    // delete the Events of others.
    let event = k8s_openapi::api::events::v1::Event {
        metadata: kube::api::ObjectMeta {
            name: Some("rbac-test.1".into()),
            ..Default::default()
        },
        event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now(),
        )),
        action: Some("Catalogue".into()),
        reason: Some("RbacTest".into()),
        type_: Some("Normal".into()),
        reporting_controller: Some("sbomjob".into()),
        reporting_instance: Some("e2e".into()),
        regarding: Some(k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some("app".into()),
            namespace: Some(other.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(sa.clone(), &other);
    events
        .create(&pp, &event)
        .await
        .expect("an Event about a pod in another namespace");
    let (name, pa, dp) = ("rbac-test.1", PatchParams::default(), DeleteParams::default());
    for (what, result) in [
        ("list", events.list(&Default::default()).await.map(|_| ())),
        ("patch", events.patch(name, &pa, &patch).await.map(|_| ())),
        ("delete", events.delete(name, &dp).await.map(|_| ())),
    ] {
        forbidden(result, &format!("{what} Events in another namespace"));
    }
    // What it needs cluster-wide works: read pods, patch their annotations.
    let all: Api<Pod> = Api::all(sa.clone());
    assert!(
        !all.list(&Default::default())
            .await
            .expect("list pods cluster-wide")
            .items
            .is_empty()
    );
    let note = Patch::Merge(serde_json::json!({"metadata": {"annotations": {"sbomjob.io/rbac-test": "ok"}}}));
    pods.patch("app", &PatchParams::default(), &note)
        .await
        .expect("annotate a pod");
}
