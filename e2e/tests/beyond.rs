//! Beyond the spec, against the real local cluster: the digest cache, sharded Jobs,
//! event-driven cycles, leader election and metrics. Run by hack/test.sh (`make test`); this
//! file alone: `cargo test -p sbomjob-e2e --test beyond -- --test-threads=1`.

use std::time::{Duration, Instant};

use e2e::{
    CYCLES_ERROR, CYCLES_OK, Cluster, LEADER, Scenario, image_records, job_end, job_name,
    registry::copy_image, unique_identity, wait_for,
};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

const PREFIX: &str = "sbomjob.io";
const MIN: Duration = Duration::from_secs(60);

/// (a) + (f): a second namespace deployed after the first was processed is annotated from the
/// cache with no new Job; the record is visible with kubectl; /metrics counts the hit.
#[tokio::test]
async fn cache_annotates_known_digests_without_a_job() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "cache", 2).await;
    s.enable_cache();
    let (w0, w1) = (s.namespaces[0].clone(), s.namespaces[1].clone());
    s.run_app_pod(&w0, "first", "WORKLOAD_ALPHA_IMAGE", &[]).await;
    let (k, v) = unique_identity();
    let op = s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        ("SBOM_CACHE_TTL", "72h"),
        ("SBOM_POD_EVENTS", "all"),
        (k, &v),
    ]);
    let job = job_name(&s.wait_jobs(1, 2 * MIN).await[0]);
    assert_eq!(s.wait_job_end(&job, 3 * MIN).await.0, "Complete");
    s.wait_all_annotated(PREFIX, MIN).await;

    // The record, as a person would look for it.
    let digest = cluster.var("WORKLOAD_ALPHA_IMAGE_DIGEST");
    wait_for("the cache record", MIN, || async {
        !image_records(digest).is_empty()
    })
    .await;
    let record = image_records(digest)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        record.starts_with(&format!("sha256-{}-", digest.trim_start_matches("sha256:"))),
        "named by digest and identity: {record}"
    );
    wait_for("the cache record by name", MIN, || async {
        let out = std::process::Command::new("kubectl")
            .args(["get", "imagerecords", &record])
            .output()
            .unwrap();
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&record)
    })
    .await;
    let json = std::process::Command::new("kubectl")
        .args(["get", "imagerecord", &record, "-o", "json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["spec"]["digest"], digest);
    assert_eq!(json["spec"]["job"], job.as_str());

    // The second namespace, later: annotated at once, no Job.
    s.run_app_pod(&w1, "second", "WORKLOAD_ALPHA_IMAGE", &[]).await;
    s.wait_all_annotated(PREFIX, MIN).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(s.jobs().await.len(), 1, "a cache hit must not create a Job");
    let metrics = s.metrics(op).await;
    assert!(
        metrics.value("sbomjob_cache_lookups_total{result=\"hit\"}") >= 1.0,
        "{metrics:?}"
    );
    // One image catalogued (by the one Job), two pods annotated: the second from the cache.
    assert_eq!(
        metrics.value("sbomjob_images_processed_total"),
        1.0,
        "{metrics:?}"
    );
    assert!(
        metrics.value("sbomjob_pods_annotated_total") >= 2.0,
        "{metrics:?}"
    );
    // The real scrape, after a Job, a cache hit and the API requests of a cycle, passes
    // promtool's lint (names, help texts, units, types).
    assert!(
        metrics
            .get("sbomjob_kube_requests_total{verb=\"list\",result=\"2xx\"}")
            .is_some()
            && metrics.get("sbomjob_job_duration_seconds_count{result=\"complete\"}") == Some(1.0),
        "{metrics:?}"
    );
    metrics.assert_promtool_clean();
    // The second pod's Processed Event says where its catalogue came from: the digest cache,
    // not a Job.
    let events = s.events_of("second").await;
    assert!(
        events.iter().any(|e| e.reason.as_deref() == Some("Processed")
            && e.note
                .as_deref()
                .is_some_and(|n| n.contains("digest cache") && !n.contains(&job))),
        "second: no Processed Event from the digest cache: {events:?}"
    );
}

/// (b): once the record expired, the same digest in a new pod makes one new Job.
#[tokio::test]
async fn expired_cache_record_means_a_new_job() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "expiry", 2).await;
    s.enable_cache();
    let (w0, w1) = (s.namespaces[0].clone(), s.namespaces[1].clone());
    s.run_app_pod(&w0, "first", "WORKLOAD_BETA_IMAGE", &[]).await;
    let (k, v) = unique_identity();
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        ("SBOM_CACHE_TTL", "15s"),
        (k, &v),
    ]);
    let first = job_name(&s.wait_jobs(1, 2 * MIN).await[0]);
    assert_eq!(s.wait_job_end(&first, 3 * MIN).await.0, "Complete");
    s.wait_all_annotated(PREFIX, MIN).await;
    tokio::time::sleep(Duration::from_secs(16)).await;
    s.pod(&w1, "second", &[("app", cluster.var("WORKLOAD_BETA_IMAGE"))], &[])
        .await;
    let jobs = s.wait_jobs(2, 2 * MIN).await;
    assert_eq!(jobs.len(), 2);
    assert_eq!(s.wait_job_end(&job_name(&jobs[1]), 3 * MIN).await.0, "Complete");
    s.wait_all_annotated(PREFIX, MIN).await;
}

/// (c): 30 images, at most 10 per Job, 2 Jobs at once: 3 Jobs, never more than 2 running; the
/// shard with the image the registry no longer serves fails and is re-planned in the same
/// cycle: only that image is held back.
#[tokio::test]
async fn shards_run_in_parallel_and_fail_alone() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "shards", 1).await;
    let ns = s.namespaces[0].clone();
    let mut images = Vec::new();
    for _ in 0..30 {
        images.push(copy_image(&cluster, "WORKLOAD_GAMMA_IMAGE", "e2e/shard").await);
    }
    for (p, chunk) in images.chunks(10).enumerate() {
        let containers: Vec<(String, String)> = chunk
            .iter()
            .enumerate()
            .map(|(c, i)| (format!("c{c}"), i.tagged.clone()))
            .collect();
        let refs: Vec<(&str, &str)> = containers.iter().map(|(c, i)| (c.as_str(), i.as_str())).collect();
        s.pod(&ns, &format!("p{p}"), &refs, &[]).await;
    }
    s.wait_pods_running().await;
    let doomed = &images[17];
    e2e::registry::delete_manifest(&cluster, doomed).await;

    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        ("SBOM_JOB_MAX_IMAGES", "10"),
        ("SBOM_JOB_MAX_PARALLEL", "2"),
        ("SBOM_INTERVAL", "1h"),
    ]);
    let most_running = std::cell::Cell::new(0);
    let (most, sc) = (&most_running, &s);
    // Three shards; the one with the bad image fails and is re-planned at once: the bad image
    // alone, its nine neighbours together. Five Jobs in all.
    wait_for("five Jobs to end", 5 * MIN, || async move {
        let jobs = sc.jobs().await;
        most.set(
            most.get()
                .max(jobs.iter().filter(|j| job_end(j).is_none()).count()),
        );
        jobs.len() == 5 && jobs.iter().all(|j| job_end(j).is_some())
    })
    .await;
    assert!(most_running.get() <= 2, "{} Jobs ran at once", most_running.get());
    // From the timestamps as well: never three at once.
    let jobs = s.jobs().await;
    let spans: Vec<(i64, i64)> = jobs
        .iter()
        .map(|j| {
            let start = j.metadata.creation_timestamp.as_ref().unwrap().0.as_second();
            let end = j
                .status
                .as_ref()
                .unwrap()
                .conditions
                .as_ref()
                .unwrap()
                .iter()
                .filter(|c| c.status == "True")
                .filter_map(|c| c.last_transition_time.as_ref())
                .map(|t| t.0.as_second())
                .max()
                .unwrap();
            (start, end)
        })
        .collect();
    let mut most_overlap = 0;
    for (start, _) in &spans {
        let running = spans.iter().filter(|(s2, e2)| s2 <= start && e2 > start).count();
        assert!(running <= 2, "three Jobs overlapped: {spans:?}");
        most_overlap = most_overlap.max(running);
    }
    // And two did run at once: the cycle starts its first two Jobs together, and a Job (pod
    // start, ten images inspected) outlasts the second of the timestamps' resolution.
    assert_eq!(
        most_overlap, 2,
        "the Jobs never ran two at once (SBOM_JOB_MAX_PARALLEL=2): {spans:?}"
    );
    let outcomes: Vec<String> = jobs.iter().map(|j| job_end(j).unwrap().0).collect();
    assert_eq!(
        outcomes.iter().filter(|o| *o == "Failed").count(),
        2,
        "the shard holding the bad image and the bad image alone: {outcomes:?}"
    );
    wait_for("every healthy image annotated", MIN, || async {
        s.annotations(PREFIX)
            .await
            .iter()
            .filter(|(_, _, id, v)| v.as_deref() == Some(id.as_str()))
            .count()
            == 29
    })
    .await;
    let missing: Vec<String> = s
        .annotations(PREFIX)
        .await
        .into_iter()
        .filter(|(_, _, _, v)| v.is_none())
        .map(|(_, _, id, _)| id)
        .collect();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].ends_with(&doomed.digest),
        "only the failing image is held back: {missing:?}"
    );
    // No sixth Job: the bad image backs off (default 10 min).
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(s.jobs().await.len(), 5);
}

/// (d): a new Deployment with a new image is processed without waiting for the schedule.
#[tokio::test]
async fn new_image_triggers_a_cycle() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "event", 1).await;
    let ns = s.namespaces[0].clone();
    let fresh = copy_image(&cluster, "WORKLOAD_BETA_IMAGE", "e2e/fresh").await;
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        // Yearly: only the start-up cycle and new images can start cycles here.
        ("SBOM_CRON", "0 0 0 1 1 *"),
        ("SBOM_INTERVAL", ""),
        ("SBOM_DEBOUNCE", "3s"),
    ]);
    // The start-up cycle ends without a Job: nothing runs yet.
    s.wait_metric(0, CYCLES_OK, 1.0, MIN).await;
    assert!(s.jobs().await.is_empty());
    let created = Instant::now();
    s.pod(&ns, "new", &[("app", &fresh.tagged)], &[]).await;
    let job = job_name(&s.wait_jobs(1, 2 * MIN).await[0]);
    eprintln!("new image to Job: {:?}", created.elapsed());
    assert!(
        created.elapsed() < MIN,
        "the Job came too late to be event-driven"
    );
    // The Job came from a second cycle, after the start-up one had ended with no Job; with a
    // yearly schedule and no failed cycle to retry, only the new image could have started it.
    let metrics = s.metrics(0).await;
    assert_eq!(metrics.value(CYCLES_ERROR), 0.0, "{metrics:?}");
    assert_eq!(s.wait_job_end(&job, 3 * MIN).await.0, "Complete");
    s.wait_all_annotated(PREFIX, MIN).await;
}

/// (e): two replicas: one leads and creates Jobs; killed, the other takes over within the
/// lease duration and processes what comes next.
#[tokio::test]
async fn leader_election_failover() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "leader", 1).await;
    let ns = s.namespaces[0].clone();
    s.run_app_pod(&ns, "a", "WORKLOAD_ALPHA_IMAGE", &[]).await;
    let lease = Duration::from_secs(6);
    let env = [
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        ("SBOM_LEASE_DURATION", "6s"),
        ("SBOM_INTERVAL", "5s"),
    ];
    let a = s.start_operator(&[env.as_slice(), &[("POD_NAME", "replica-a")]].concat());
    let b = s.start_operator(&[env.as_slice(), &[("POD_NAME", "replica-b")]].concat());
    let identity = |n: usize| if n == a { "replica-a" } else { "replica-b" };
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), &s.job_ns);
    let lease_name = format!("e2e-{}-leader", s.name);
    let holder = || async {
        leases
            .get_opt(&lease_name)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let job = job_name(&s.wait_jobs(1, 2 * MIN).await[0]);
    assert_eq!(s.wait_job_end(&job, 3 * MIN).await.0, "Complete");
    s.wait_all_annotated(PREFIX, MIN).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(s.jobs().await.len(), 1, "two replicas must not both create Jobs");
    // Exactly one replica leads: its sbomjob_leader is 1, the other's 0, and the Lease names it.
    let (leader_a, leader_b) = (s.metric(a, LEADER).await, s.metric(b, LEADER).await);
    assert_eq!(
        leader_a + leader_b,
        1.0,
        "exactly one replica leads: sbomjob_leader {leader_a} and {leader_b}"
    );
    let (leader, follower) = if leader_a == 1.0 { (a, b) } else { (b, a) };
    assert_eq!(holder().await.as_deref(), Some(identity(leader)));

    s.kill_operator(leader);
    let killed = Instant::now();
    s.wait_metric(follower, LEADER, 1.0, lease + Duration::from_secs(5))
        .await;
    let takeover = killed.elapsed();
    assert_eq!(holder().await.as_deref(), Some(identity(follower)));
    eprintln!("takeover after {takeover:?} (lease {lease:?})");
    assert!(
        takeover <= lease + Duration::from_secs(1),
        "takeover took {takeover:?}"
    );
    let fresh = copy_image(&cluster, "WORKLOAD_GAMMA_IMAGE", "e2e/after-failover").await;
    s.pod(&ns, "b", &[("app", &fresh.tagged)], &[]).await;
    let jobs = s.wait_jobs(2, 2 * MIN).await;
    assert_eq!(s.wait_job_end(&job_name(&jobs[1]), 3 * MIN).await.0, "Complete");
    s.wait_all_annotated(PREFIX, MIN).await;
}
