//! Caps a tenant cannot get around (issue 10), against the real local cluster: a pull secret with
//! a huge password neither reaches a Job's config nor multiplies the Jobs of its image, and
//! another tenant's images are catalogued in the same cycle; a cycle makes at most
//! `SBOM_MAX_JOBS_PER_CYCLE` Jobs. Run one at a time (`--test-threads=1`).

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use e2e::{
    Cluster, SKOPEO_INSPECT, Scenario, job_digests, job_end, job_name,
    sim::{self, SimContainer, SimNode},
    skopeo_job_image,
};
use k8s_openapi::api::{batch::v1::Job, core::v1::Secret};
use kube::{Api, api::ListParams};

const PREFIX: &str = "sbomjob.io";
const MIN: Duration = Duration::from_secs(60);
/// What the test allows any Secret of the operator to hold (image-config.json and all).
const SECRET_LIMIT: usize = 64 * 1024;

/// The cycle a Job belongs to (its `sbomjob.io/cycle` label).
fn job_cycle(job: &Job) -> String {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("sbomjob.io/cycle"))
        .cloned()
        .unwrap_or_default()
}

/// Polls the operator's Secrets in `ns` (they live only while their Job runs) until stopped:
/// how many were seen, and the largest data size (bytes of all keys).
struct SecretWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
    largest: Arc<AtomicUsize>,
}

impl SecretWatch {
    fn start(s: &Scenario) -> SecretWatch {
        let api: Api<Secret> = Api::namespaced(s.client.clone(), &s.job_ns);
        let watch = SecretWatch {
            stop: Arc::default(),
            seen: Arc::default(),
            largest: Arc::default(),
        };
        let (stop, seen, largest) = (watch.stop.clone(), watch.seen.clone(), watch.largest.clone());
        tokio::spawn(async move {
            let params = ListParams::default().labels("app.kubernetes.io/managed-by=sbomjob");
            while !stop.load(Ordering::Relaxed) {
                if let Ok(list) = api.list(&params).await {
                    for secret in list.items {
                        let size: usize = secret
                            .data
                            .iter()
                            .flatten()
                            .map(|(k, v)| k.len() + v.0.len())
                            .sum();
                        largest.fetch_max(size, Ordering::Relaxed);
                        let name = secret.metadata.name.unwrap_or_default();
                        seen.lock().unwrap().insert(name, size);
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        watch
    }

    /// (Secrets seen by name with their size, the largest size); stops the polling.
    fn finish(self) -> (BTreeMap<String, usize>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.seen.lock().unwrap().clone();
        (seen, self.largest.load(Ordering::Relaxed))
    }
}

/// Tenant A's pull secret for the authenticated registry carries a ~600 KB password and six
/// (simulated) pods of one image use it; tenant B runs two healthy images. In one cycle: at most
/// one Job for A's digest (never one per pod share), the huge credential in no Secret (every
/// Secret of the operator stays under 64 KiB), the image pulled with the fallback pull secret
/// instead, one Warning `CredentialTooLarge` on each of A's pods naming the secret, and B's pods
/// annotated in that same cycle.
#[tokio::test]
async fn a_huge_pull_secret_stays_out_of_the_jobs_and_holds_back_no_other_tenant() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "tenants", 2).await;
    let (tenant_a, tenant_b) = (s.namespaces[0].clone(), s.namespaces[1].clone());
    let node = SimNode::create(&s.client, "tenants").await;
    let (registry, user, password) = (
        cluster.var("REGISTRY_AUTH"),
        cluster.var("REGISTRY_AUTH_USER"),
        cluster.var("REGISTRY_AUTH_PASSWORD"),
    );
    // The kubelet never pulls for simulated pods, so the huge password need not work; the
    // fallback secret (the operator's own) has the registry's real credentials.
    let huge = format!("{password}{}", "h".repeat(600 * 1024));
    s.pull_secret(&tenant_a, "huge-pull", registry, user, &huge).await;
    let job_ns = s.job_ns.clone();
    s.pull_secret(&job_ns, "fallback-pull", registry, user, password)
        .await;

    let delta_id = cluster.pinned("WORKLOAD_DELTA_IMAGE");
    let delta_digest = cluster.var("WORKLOAD_DELTA_IMAGE_DIGEST").to_string();
    for i in 0..6 {
        let c = SimContainer::new("app", cluster.var("WORKLOAD_DELTA_IMAGE"), &delta_id);
        let pod = sim::pod(
            &tenant_a,
            &format!("shared-{i}"),
            &node.name,
            std::slice::from_ref(&c),
            &["huge-pull"],
        );
        sim::start_pod(&s.client, &pod, &[c])
            .await
            .expect("starting a simulated pod");
    }
    s.pod(
        &tenant_b,
        "alpha",
        &[("app", cluster.var("WORKLOAD_ALPHA_IMAGE"))],
        &[],
    )
    .await;
    s.pod(
        &tenant_b,
        "beta",
        &[("app", cluster.var("WORKLOAD_BETA_IMAGE"))],
        &[],
    )
    .await;
    s.wait_pods_running().await;

    let watch = SecretWatch::start(&s);
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", skopeo_job_image(&cluster)),
        ("SBOM_JOB_ENTRYPOINT_COMMAND", SKOPEO_INSPECT),
        ("SBOM_FALLBACK_PULL_SECRET", "fallback-pull"),
    ]);
    s.wait_all_annotated(PREFIX, 4 * MIN).await;
    // A few more cycles (10 s apart): nothing is left to do, nothing repeats.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (secrets, largest) = watch.finish();

    let jobs = s.jobs().await;
    assert!(
        jobs.iter()
            .all(|j| job_end(j).is_some_and(|(end, _)| end == "Complete")),
        "{:?}",
        jobs.iter().map(|j| (job_name(j), job_end(j))).collect::<Vec<_>>()
    );
    // At most one Job per cycle for tenant A's digest; here, one in all (it succeeded).
    let mut per_cycle: BTreeMap<String, usize> = BTreeMap::new();
    for job in jobs.iter().filter(|j| job_digests(j).contains(&delta_digest)) {
        *per_cycle.entry(job_cycle(job)).or_default() += 1;
    }
    assert_eq!(per_cycle.values().sum::<usize>(), 1, "{per_cycle:?}");
    // Tenant B's images were catalogued by Jobs of that same cycle.
    let first_cycle = per_cycle.keys().next().unwrap().clone();
    let b_digests = [
        cluster.var("WORKLOAD_ALPHA_IMAGE_DIGEST"),
        cluster.var("WORKLOAD_BETA_IMAGE_DIGEST"),
    ];
    for digest in b_digests {
        let cycles: Vec<String> = jobs
            .iter()
            .filter(|j| job_digests(j).iter().any(|d| d == digest))
            .map(job_cycle)
            .collect();
        assert_eq!(cycles, std::slice::from_ref(&first_cycle), "the Jobs of {digest}");
    }

    // The huge credential was in no Secret.
    assert!(!secrets.is_empty(), "the Secrets of the Jobs were seen");
    assert!(
        largest <= SECRET_LIMIT,
        "a Secret of the operator held {largest} bytes: {secrets:?}"
    );

    // One Warning on each of tenant A's pods, naming the secret and its namespace, never the
    // password; none on tenant B's.
    let events = s.pod_events().await;
    let named = format!("{tenant_a}/huge-pull");
    for (pod, events) in &events {
        let warned: Vec<_> = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("CredentialTooLarge"))
            .collect();
        let name = pod.metadata.name.clone().unwrap_or_default();
        if pod.metadata.namespace.as_deref() == Some(tenant_a.as_str()) {
            assert_eq!(warned.len(), 1, "{name}: {events:?}");
            assert_eq!(warned[0].type_.as_deref(), Some("Warning"));
            let note = warned[0].note.as_deref().unwrap_or_default();
            assert!(note.contains(&named), "{name}: {note}");
            assert!(!note.contains("hhhhhhhh"), "{name}: the note quotes the password");
        } else {
            assert!(warned.is_empty(), "{name}: {events:?}");
        }
    }
    assert_eq!(
        events
            .iter()
            .filter(|(p, _)| p.metadata.namespace.as_deref() == Some(tenant_a.as_str()))
            .count(),
        6
    );
    assert!(
        !s.operator_log(0).contains("hhhhhhhh"),
        "the huge password appeared in the operator's log"
    );
}

/// Three images, one per Job (`SBOM_JOB_MAX_IMAGES=1`), and at most two Jobs per cycle: the
/// first cycle makes two Jobs, the third image waits for a later cycle (counted in
/// `sbomjob_images_deferred_total`), and every pod ends up annotated.
#[tokio::test]
async fn a_cycle_makes_at_most_max_jobs_per_cycle() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "jobcap", 1).await;
    let ns = s.namespaces[0].clone();
    for (name, var) in [
        ("alpha", "WORKLOAD_ALPHA_IMAGE"),
        ("beta", "WORKLOAD_BETA_IMAGE"),
        ("gamma", "WORKLOAD_GAMMA_IMAGE"),
    ] {
        s.pod(&ns, name, &[("app", cluster.var(var))], &[]).await;
    }
    s.wait_pods_running().await;
    let op = s.start_operator(&[
        ("SBOM_JOB_IMAGE", skopeo_job_image(&cluster)),
        ("SBOM_JOB_ENTRYPOINT_COMMAND", SKOPEO_INSPECT),
        ("SBOM_JOB_MAX_IMAGES", "1"),
        ("SBOM_MAX_JOBS_PER_CYCLE", "2"),
    ]);
    s.wait_all_annotated(PREFIX, 4 * MIN).await;
    let jobs = s.jobs().await;
    let mut per_cycle: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for job in &jobs {
        per_cycle.entry(job_cycle(job)).or_default().push(job_name(job));
    }
    assert_eq!(jobs.len(), 3, "{per_cycle:?}");
    assert!(per_cycle.values().all(|j| j.len() <= 2), "{per_cycle:?}");
    let first = per_cycle.values().next().unwrap();
    assert_eq!(first.len(), 2, "the first cycle made its two Jobs: {per_cycle:?}");
    let metrics = s.metrics(op).await;
    assert!(
        metrics.value("sbomjob_images_deferred_total") >= 1.0,
        "{metrics:?}"
    );
    // Nothing left: no fourth Job in the next cycles.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(s.jobs().await.len(), 3);
}
