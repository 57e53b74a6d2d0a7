//! Real-cluster conditions (issue 9), against the real local cluster: a bad image never holds
//! back the rest, images failing alone back off, imageIDs the job cannot use are skipped, and
//! the bookkeeping of every Job ends. Run one at a time (`--test-threads=1`).

use std::time::Duration;

use e2e::{
    Cluster, SKOPEO_INSPECT, Scenario, image_records, job_digests, job_end, job_name,
    registry::{Image, copy_image, delete_manifest},
    sim::{self, SimContainer},
    unique_identity, wait_for,
};
use k8s_openapi::{
    api::{
        batch::v1::Job,
        core::v1::{Container, Pod, PodSpec, Secret},
    },
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{DeleteParams, ObjectMeta, PostParams},
};
use serde_json::Value;

const PREFIX: &str = "sbomjob.io";
const MIN: Duration = Duration::from_secs(60);

/// The newest ImageRecord of a digest, as JSON (`None` while there is none).
fn record(digest: &str) -> Option<Value> {
    image_records(digest).into_iter().next()
}

/// Waits for the digest's record to say it failed alone `attempts` times; returns the record.
async fn wait_failure(digest: &str, attempts: u64, timeout: Duration) -> Value {
    wait_for(
        &format!("the record of {digest} to show {attempts} failed attempt(s)"),
        timeout,
        || async {
            record(digest).is_some_and(|r| {
                r["spec"]["result"] == "Failed" && r["spec"]["failure"]["attempts"] == attempts
            })
        },
    )
    .await;
    record(digest).unwrap()
}

/// Containers annotated with their imageID, by pod name.
async fn annotated_pods(s: &Scenario) -> Vec<String> {
    s.annotations(PREFIX)
        .await
        .into_iter()
        .filter(|(_, _, id, v)| v.as_deref() == Some(id.as_str()))
        .map(|(_, pod, _, _)| pod)
        .collect()
}

/// Four fresh images in four pods; the manifest of the third is deleted afterwards (its pod
/// keeps running from the node's copy). Returns the images.
async fn four_pods_one_doomed(s: &Scenario, cluster: &Cluster) -> Vec<Image> {
    let ns = s.namespaces[0].clone();
    let mut images = Vec::new();
    for _ in 0..4 {
        images.push(copy_image(cluster, "WORKLOAD_GAMMA_IMAGE", "e2e/isolate").await);
    }
    for (i, image) in images.iter().enumerate() {
        s.pod(&ns, &format!("p{i}"), &[("app", &image.tagged)], &[]).await;
    }
    s.wait_pods_running().await;
    delete_manifest(cluster, &images[2]).await;
    images
}

/// Every Job has ended and `n` exist.
async fn wait_jobs_ended(s: &Scenario, n: usize, timeout: Duration) -> Vec<Job> {
    wait_for(&format!("{n} Jobs, all ended"), timeout, || async {
        let jobs = s.jobs().await;
        jobs.len() == n && jobs.iter().all(|j| job_end(j).is_some())
    })
    .await;
    s.jobs().await
}

/// (a) Our entrypoint's report: a Job of four images, one of them deleted from the registry,
/// fails; in the same cycle the bad image runs alone and the three others together, and those
/// are annotated. The bad one is recorded as failed with its next attempt; no cycle makes a
/// Job for it before then; after it, exactly one Job retries it alone.
#[tokio::test]
async fn a_bad_image_is_isolated_in_the_same_cycle_and_backs_off() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "isolate", 1).await;
    s.enable_cache();
    let images = four_pods_one_doomed(&s, &cluster).await;
    let doomed = &images[2];
    let (k, v) = unique_identity();
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_SKOPEO_IMAGE")),
        ("SBOM_JOB_ENTRYPOINT_COMMAND", SKOPEO_INSPECT),
        ("SBOM_RETRY_BACKOFF", "60s"),
        ("SBOM_CACHE_TTL", "72h"),
        (k, &v),
    ]);
    let jobs = wait_jobs_ended(&s, 3, 4 * MIN).await;
    let mut healthy = annotated_pods(&s).await;
    healthy.sort();
    assert_eq!(
        healthy,
        ["p0", "p1", "p3"],
        "the healthy pods annotated in the first cycle"
    );
    let failed = wait_failure(&doomed.digest, 1, MIN).await;
    let (first, solo) = (&jobs[0], &jobs[1..]);
    assert_eq!(job_digests(first).len(), 4, "the first Job held all four images");
    assert_eq!(job_end(first).unwrap().0, "Failed");
    let alone: Vec<&Job> = solo
        .iter()
        .filter(|j| job_digests(j) == [doomed.digest.clone()])
        .collect();
    assert_eq!(
        alone.len(),
        1,
        "the bad image ran alone once: {:?}",
        solo.iter().map(job_digests).collect::<Vec<_>>()
    );
    assert_eq!(job_end(alone[0]).unwrap().0, "Failed");
    let together: Vec<&Job> = solo.iter().filter(|j| job_digests(j).len() == 3).collect();
    assert_eq!(together.len(), 1);
    assert_eq!(job_end(together[0]).unwrap().0, "Complete");
    assert!(!job_digests(together[0]).contains(&doomed.digest));

    // The record says why and when next; the pod got a Warning naming it.
    let spec = &failed["spec"];
    assert_eq!(spec["job"], job_name(alone[0]));
    assert!(
        spec["failure"]["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{spec}"
    );
    let next: Timestamp = spec["failure"]["nextAttempt"]
        .as_str()
        .expect("nextAttempt")
        .parse()
        .expect("an RFC 3339 time");
    let events = s.pod_events().await;
    for (pod, events) in &events {
        let warned = events.iter().any(|e| e.reason.as_deref() == Some("ImageFailed"));
        assert_eq!(
            warned,
            pod.metadata.name.as_deref() == Some("p2"),
            "{:?}: {events:?}",
            pod.metadata.name
        );
    }

    // Until its next attempt, cycles (every 10 s) make no Job for it.
    let until_next = Duration::try_from(next.duration_since(Timestamp::now())).unwrap_or_default();
    assert!(
        until_next > Duration::from_secs(20),
        "the back-off is the configured 60 s: {until_next:?}"
    );
    tokio::time::sleep(until_next - Duration::from_secs(5)).await;
    assert_eq!(s.jobs().await.len(), 3, "no Job while the image backs off");
    // Then exactly one Job retries it, alone; it fails again and backs off twice as long.
    let jobs = wait_jobs_ended(&s, 4, 2 * MIN).await;
    assert_eq!(job_digests(&jobs[3]), std::slice::from_ref(&doomed.digest));
    let again = wait_failure(&doomed.digest, 2, MIN).await;
    let next2: Timestamp = again["spec"]["failure"]["nextAttempt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        next2.duration_since(next).as_secs() >= 110,
        "the second back-off is twice the first: {next} then {next2}"
    );
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(s.jobs().await.len(), 4);
    assert_eq!(annotated_pods(&s).await.len(), 3);
}

/// (b) A job image that only gives an exit code (sh + jq + skopeo, no entrypoint of ours):
/// the failed Job's images are halved until the bad one is alone, in the same cycle.
#[tokio::test]
async fn b_an_exit_code_only_job_image_is_isolated_by_halving() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "halving", 1).await;
    s.enable_cache();
    let images = four_pods_one_doomed(&s, &cluster).await;
    let doomed = &images[2];
    let (k, v) = unique_identity();
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_COMPAT_IMAGE")),
        ("SBOM_CACHE_TTL", "72h"),
        (k, &v),
    ]);
    // 4 -> 2 + 2 -> (the bad half) 1 + 1: five Jobs, three of them failed.
    let jobs = wait_jobs_ended(&s, 5, 5 * MIN).await;
    let mut healthy = annotated_pods(&s).await;
    healthy.sort();
    assert_eq!(healthy, ["p0", "p1", "p3"]);
    let sizes: Vec<usize> = jobs.iter().map(|j| job_digests(j).len()).collect();
    assert_eq!(sizes[0], 4, "{sizes:?}");
    let mut rest = sizes[1..].to_vec();
    rest.sort();
    assert_eq!(rest, [1, 1, 2, 2], "{sizes:?}");
    let failed: Vec<Vec<String>> = jobs
        .iter()
        .filter(|j| job_end(j).unwrap().0 == "Failed")
        .map(job_digests)
        .collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(
        failed.iter().all(|d| d.contains(&doomed.digest)),
        "only Jobs holding the bad image fail: {failed:?}"
    );
    wait_failure(&doomed.digest, 1, MIN).await;
    // It backs off (10 min by default): the next cycles make no Job.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(s.jobs().await.len(), 5);
}

/// (c) An image slower than the deadline, next to fast ones: our entrypoint stops itself
/// before the Job's deadline and names the slow one; the fast ones are annotated.
#[tokio::test]
async fn c_a_slow_image_past_the_deadline_holds_back_only_itself() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "slow", 1).await;
    let ns = s.namespaces[0].clone();
    let fast1 = copy_image(&cluster, "WORKLOAD_ALPHA_IMAGE", "e2e/fast").await;
    let slow = copy_image(&cluster, "WORKLOAD_ALPHA_IMAGE", "e2e/slow").await;
    let fast2 = copy_image(&cluster, "WORKLOAD_BETA_IMAGE", "e2e/fast").await;
    for (name, image) in [("fast1", &fast1), ("slow", &slow), ("fast2", &fast2)] {
        s.pod(&ns, name, &[("app", &image.tagged)], &[]).await;
    }
    s.wait_pods_running().await;
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        (
            "SBOM_JOB_ENTRYPOINT_COMMAND",
            r#"busybox sh -c 'case "$0" in *e2e/slow*) exec busybox sleep 600;; esac; exec skopeo inspect --tls-verify=false "docker://$0"' {reference}"#,
        ),
        ("SBOM_JOB_ENTRYPOINT_CONCURRENCY", "3"),
        ("SBOM_JOB_TIMEOUT", "40"),
        ("SBOM_INTERVAL", "1h"),
    ]);
    wait_for("the fast pods annotated", 4 * MIN, || async {
        let mut a = annotated_pods(&s).await;
        a.sort();
        a == ["fast1", "fast2"]
    })
    .await;
    let jobs = wait_jobs_ended(&s, 3, 3 * MIN).await;
    let first = &jobs[0];
    assert_eq!(job_digests(first).len(), 3);
    assert_eq!(job_end(first).unwrap().0, "Failed");
    let ends: Vec<(Vec<String>, String)> = jobs[1..]
        .iter()
        .map(|j| (job_digests(j), job_end(j).unwrap().0))
        .collect();
    assert!(
        ends.contains(&(vec![slow.digest.clone()], "Failed".to_string())),
        "{ends:?}"
    );
    assert!(
        ends.iter().any(|(d, end)| d.len() == 2 && end == "Complete"),
        "{ends:?}"
    );
    assert!(!annotated_pods(&s).await.contains(&"slow".to_string()));
}

/// (d) A pod whose imageID has upper-case hex (normalised: processed and annotated) and one
/// whose digest is sha512 (skipped with a Warning), next to a healthy pod: no Job fails.
#[tokio::test]
async fn d_unusual_image_ids_never_fail_a_job_of_other_images() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "imageids", 1).await;
    let ns = s.namespaces[0].clone();
    let node = e2e::sim::SimNode::create(&s.client, "imageids").await;
    let healthy = copy_image(&cluster, "WORKLOAD_ALPHA_IMAGE", "e2e/ids").await;
    let upper = copy_image(&cluster, "WORKLOAD_BETA_IMAGE", "e2e/ids").await;
    s.pod(&ns, "healthy", &[("app", &healthy.tagged)], &[]).await;
    s.wait_pods_running().await;
    let registry = cluster.var("REGISTRY");
    let hex = upper.digest.trim_start_matches("sha256:").to_ascii_uppercase();
    let upper_id = format!("{registry}/e2e/ids@sha256:{hex}");
    let sha512_id = format!("{registry}/e2e/ids@sha512:{}", "ab".repeat(64));
    for (name, id) in [("upper", &upper_id), ("sha512", &sha512_id)] {
        let c = SimContainer::new("app", &upper.tagged, id);
        let pod = sim::pod(&ns, name, &node.name, std::slice::from_ref(&c), &[]);
        sim::start_pod(&s.client, &pod, &[c])
            .await
            .expect("starting the simulated pod");
    }
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_SKOPEO_IMAGE")),
        ("SBOM_JOB_ENTRYPOINT_COMMAND", SKOPEO_INSPECT),
    ]);
    let jobs = wait_jobs_ended(&s, 1, 3 * MIN).await;
    assert_eq!(job_end(&jobs[0]).unwrap().0, "Complete");
    let mut digests = job_digests(&jobs[0]);
    digests.sort();
    let mut want = vec![healthy.digest.clone(), upper.digest.clone()];
    want.sort();
    assert_eq!(
        digests, want,
        "the upper-case digest is processed lower-cased; sha512 is not"
    );
    wait_for("the healthy and the upper-case pod annotated", MIN, || async {
        let mut a = annotated_pods(&s).await;
        a.sort();
        a == ["healthy", "upper"]
    })
    .await;
    // The upper-case pod carries its imageID as reported.
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &ns);
    let annotations = pods
        .get("upper")
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default();
    assert_eq!(annotations.get("sbomjob.io/app"), Some(&upper_id));
    // One ImageSkipped Warning on the sha512 pod, however many cycles run.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let events = s.pod_events().await;
    let (_, on_sha512) = events
        .iter()
        .find(|(p, _)| p.metadata.name.as_deref() == Some("sha512"))
        .unwrap();
    let skipped: Vec<_> = on_sha512
        .iter()
        .filter(|e| e.reason.as_deref() == Some("ImageSkipped"))
        .collect();
    assert_eq!(skipped.len(), 1, "{on_sha512:?}");
    assert!(
        skipped[0].note.as_deref().is_some_and(|n| n.contains("sha512")),
        "{skipped:?}"
    );
    assert_eq!(s.jobs().await.len(), 1, "nothing left to do");
}

/// (e) A pod whose annotations are near the 256 KiB limit: the Job completes, the patch is
/// refused (422); the Job is marked done once with one Warning, and nothing repeats.
#[tokio::test]
async fn e_an_annotation_refused_for_good_ends_the_bookkeeping() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "bigpod", 1).await;
    let ns = s.namespaces[0].clone();
    // 256 KiB is the limit of all annotations together (keys and values): leave too little
    // room for ours.
    let big = "x".repeat(256 * 1024 - "big".len() - 16);
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("big".into()),
            namespace: Some(ns.clone()),
            annotations: Some([("big".to_string(), big)].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some(cluster.var("WORKLOAD_ALPHA_IMAGE").into()),
                ..Default::default()
            }],
            termination_grace_period_seconds: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &ns);
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("creating the big pod");
    s.wait_pods_running().await;
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_SKOPEO_IMAGE")),
        ("SBOM_JOB_ENTRYPOINT_COMMAND", SKOPEO_INSPECT),
    ]);
    let jobs = wait_jobs_ended(&s, 1, 3 * MIN).await;
    assert_eq!(job_end(&jobs[0]).unwrap().0, "Complete");
    let name = job_name(&jobs[0]);
    let api: Api<Job> = Api::namespaced(s.client.clone(), &s.job_ns);
    wait_for("the Job marked done", MIN, || async {
        api.get(&name)
            .await
            .ok()
            .and_then(|j| j.metadata.labels)
            .is_some_and(|l| l.get("sbomjob.io/state").map(String::as_str) == Some("done"))
    })
    .await;
    let refused = || async {
        let events = s.pod_events().await;
        events
            .into_iter()
            .flat_map(|(_, e)| e)
            .filter(|e| e.reason.as_deref() == Some("AnnotationRefused"))
            .collect::<Vec<_>>()
    };
    wait_for("one AnnotationRefused Warning", MIN, || async {
        refused().await.len() == 1
    })
    .await;
    // Three more cycles (10 s interval): no Job, no second Event, still not annotated.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(s.jobs().await.len(), 1, "no Job repeats");
    let events = refused().await;
    assert_eq!(events.len(), 1, "no Event repeats: {events:?}");
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    assert!(
        events[0]
            .note
            .as_deref()
            .is_some_and(|n| n.contains("422") || n.contains("Invalid")),
        "{events:?}"
    );
    assert!(annotated_pods(&s).await.is_empty());
}

/// (f) The config Secret deleted while the job pod waits (here: it cannot be scheduled): the
/// Job is ended within a minute and its images go into a new Job; the cycle goes on.
#[tokio::test]
async fn f_a_lost_config_secret_ends_the_job_at_once() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "lostsecret", 1).await;
    let ns = s.namespaces[0].clone();
    s.run_app_pod(&ns, "app", "WORKLOAD_ALPHA_IMAGE", &[]).await;
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_SKOPEO_IMAGE")),
        ("SBOM_JOB_NODE_SELECTOR", "sbomjob-e2e/no-such-node=true"),
        ("SBOM_JOB_TIMEOUT", "600"),
    ]);
    let first = job_name(&s.wait_jobs(1, 2 * MIN).await[0]);
    // The job pod exists and is Pending.
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.job_ns);
    wait_for("the job pod, Pending", MIN, || async {
        pods.list(&kube::api::ListParams::default().labels(&format!("job-name={first}")))
            .await
            .is_ok_and(|l| {
                l.items
                    .iter()
                    .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending"))
            })
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), &s.job_ns);
    secrets
        .delete(&first, &DeleteParams::default())
        .await
        .expect("deleting the config Secret");
    let deleted = std::time::Instant::now();
    let jobs: Api<Job> = Api::namespaced(s.client.clone(), &s.job_ns);
    wait_for("the Job ended (deleted) after its Secret went", MIN, || async {
        jobs.get_opt(&first)
            .await
            .ok()
            .flatten()
            .is_none_or(|j| j.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert!(deleted.elapsed() < MIN);
    // Its image went into a new Job with a new Secret: the cycle went on.
    wait_for("a new Job for the image, with its Secret", MIN, || async {
        let all = s.jobs().await;
        let secrets = s.secrets().await;
        all.iter().any(|j| {
            job_name(j) != first
                && job_digests(j).len() == 1
                && secrets
                    .iter()
                    .any(|sec| sec.metadata.name.as_deref() == Some(job_name(j).as_str()))
        })
    })
    .await;
}

/// (g) Job settings change while a Job runs (the operator is replaced with other settings):
/// the adopted Job's records carry the settings it ran with, and the digests are processed
/// again under the new ones.
#[tokio::test]
async fn g_a_job_is_credited_to_the_settings_it_ran_with() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "upgrade", 1).await;
    s.enable_cache();
    let ns = s.namespaces[0].clone();
    let image = copy_image(&cluster, "WORKLOAD_ALPHA_IMAGE", "e2e/upgrade").await;
    s.pod(&ns, "app", &[("app", &image.tagged)], &[]).await;
    s.wait_pods_running().await;
    let (k, old) = unique_identity();
    let common = [
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        ("SBOM_JOB_ENTRYPOINT_COMMAND", "busybox sleep 20"),
        ("SBOM_LEADER_ELECTION", "false"),
        ("SBOM_CACHE_TTL", "72h"),
    ];
    let mut first_env = common.to_vec();
    first_env.push((k, &old));
    let op = s.start_operator(&first_env);
    let first = s.wait_jobs(1, 2 * MIN).await.remove(0);
    let old_hash = first.metadata.annotations.as_ref().unwrap()["sbomjob.io/settings-hash"].clone();
    // The Job runs; the operator is replaced by one with other settings.
    s.kill_operator(op);
    let new = format!("{old}-upgraded");
    let mut second_env = common.to_vec();
    second_env.push((k, &new));
    s.start_operator(&second_env);
    credited_then_processed_again(&s, &image, &first, &old_hash).await;
}

/// (g) as a user does it: the chart installed with one replica, and `helm upgrade` of the job
/// settings while its Job runs. The upgraded Deployment's operator adopts the Job; its record
/// carries the settings the Job ran with, and the digest is processed again under the new ones.
#[tokio::test]
async fn g_helm_upgrade_while_a_job_runs() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "helm-upgrade", 1).await;
    s.enable_cache();
    let ns = s.namespaces[0].clone();
    let image = copy_image(&cluster, "WORKLOAD_ALPHA_IMAGE", "e2e/helm-upgrade").await;
    s.pod(&ns, "app", &[("app", &image.tagged)], &[]).await;
    s.wait_pods_running().await;
    let operator = cluster.var("OPERATOR_IMAGE").to_string();
    let (repo, tag) = operator.rsplit_once(':').unwrap();
    let run = unique_identity().1;
    let values = |run: &str| {
        vec![
            ("image.repository", repo.to_string()),
            ("image.tag", tag.to_string()),
            ("jobImage", cluster.var("JOB_E2E_IMAGE").to_string()),
            ("interval", "10s".to_string()),
            ("debounce", "2s".to_string()),
            ("cache.ttl", "72h".to_string()),
            ("leaderElection.leaseDuration", "3s".to_string()),
            ("jobEnv[0].name", "ENTRYPOINT_COMMAND".to_string()),
            ("jobEnv[0].value", "busybox sleep 20".to_string()),
            ("jobEnv[1].name", "E2E_RUN".to_string()),
            ("jobEnv[1].value", run.to_string()),
        ]
    };
    let install = |s: &mut Scenario, run: &str| {
        let v = values(run);
        let set: Vec<(&str, &str)> = v.iter().map(|(k, v)| (*k, v.as_str())).collect();
        s.helm_install("sbomjob", 1, &set);
    };
    install(&mut s, &run);
    let first = s.wait_jobs(1, 3 * MIN).await.remove(0);
    let old_hash = first.metadata.annotations.as_ref().unwrap()["sbomjob.io/settings-hash"].clone();
    assert!(job_end(&first).is_none(), "the Job still runs when Helm upgrades");
    // helm upgrade --wait: the Deployment rolls to a pod with the new job settings.
    install(&mut s, &format!("{run}-upgraded"));
    credited_then_processed_again(&s, &image, &first, &old_hash).await;
}

/// The end of both (g) tests: `first` (made under `old_hash`) ends Complete and its record
/// carries the old settings; a second Job processes the digest under the new ones, the record
/// is credited to them, and no third Job follows.
async fn credited_then_processed_again(s: &Scenario, image: &Image, first: &Job, old_hash: &str) {
    assert_eq!(s.wait_job_end(&job_name(first), 2 * MIN).await.0, "Complete");
    wait_for(
        "the record of the Job that ran under the old settings",
        2 * MIN,
        || async { record(&image.digest).is_some_and(|r| r["spec"]["job"] == job_name(first)) },
    )
    .await;
    assert_eq!(record(&image.digest).unwrap()["spec"]["settingsHash"], old_hash);
    let jobs = wait_jobs_ended(s, 2, 3 * MIN).await;
    let new_hash = jobs[1].metadata.annotations.as_ref().unwrap()["sbomjob.io/settings-hash"].clone();
    assert_ne!(new_hash, old_hash);
    assert_eq!(job_digests(&jobs[1]), std::slice::from_ref(&image.digest));
    assert_eq!(job_end(&jobs[1]).unwrap().0, "Complete");
    wait_for("the record credited to the new settings", MIN, || async {
        record(&image.digest).is_some_and(|r| r["spec"]["settingsHash"] == new_hash.as_str())
    })
    .await;
    // Done under the new settings: no third Job.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(s.jobs().await.len(), 2);
}
