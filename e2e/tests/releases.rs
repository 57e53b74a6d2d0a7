//! Several releases side by side, installed with Helm on the real local cluster (issue 10):
//! A and B with the same release name in two namespaces and different job images, C next to A
//! in A's namespace with A's job settings and a Lease of its own.
//!
//! Each release processes each digest once and only in its own Jobs; C shares A's records and
//! makes no Job; a pod scaled up on a known image makes no Job in any release; none finishes or
//! deletes another's Jobs; uninstalling B leaves A's cache hits working.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use e2e::{Cluster, SKOPEO_INSPECT, Scenario, image_records, job_end, wait_for};
use k8s_openapi::api::{
    batch::v1::Job,
    coordination::v1::Lease,
    core::v1::{Namespace, Pod},
};
use kube::{
    Api,
    api::{DeleteParams, ListParams},
};

const MIN: Duration = Duration::from_secs(60);
const PREFIX_A: &str = "sbomjob.io";
/// Releases with other job settings catalogue other things: they need a prefix of their own,
/// or each would take the other's annotations for its own work.
const PREFIX_B: &str = "inspect.sbomjob.io";

fn helm(args: &[&str]) {
    let out = std::process::Command::new("helm")
        .args(args)
        .output()
        .expect("running helm");
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Jobs of `release` in `ns`, oldest first.
async fn jobs_of(s: &Scenario, ns: &str, release: &str) -> Vec<Job> {
    let api: Api<Job> = Api::namespaced(s.client.clone(), ns);
    let mut jobs = api
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/managed-by=sbomjob,app.kubernetes.io/instance={release}"
        )))
        .await
        .expect("listing Jobs")
        .items;
    jobs.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
    jobs
}

/// Every digest the Jobs processed, with how often.
fn digest_counts(jobs: &[Job]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for j in jobs {
        let digests = j
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("sbomjob.io/digests"))
            .cloned()
            .unwrap_or_default();
        for d in digests.lines().collect::<BTreeSet<_>>() {
            *counts.entry(d.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Whether every container of every workload pod carries an annotation under `prefix`.
async fn all_annotated(s: &Scenario, prefix: &str) -> bool {
    let pods = s.pods().await;
    !pods.is_empty()
        && pods.iter().all(|p: &Pod| {
            let containers = &p.spec.as_ref().unwrap().containers;
            containers.iter().all(|c| {
                p.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(&format!("{prefix}/{}", c.name)))
            })
        })
}

async fn wait_annotated(s: &Scenario, prefix: &str, timeout: Duration) {
    wait_for(
        &format!("every workload pod annotated under {prefix}"),
        timeout,
        || async { all_annotated(s, prefix).await },
    )
    .await;
}

async fn wait_all_jobs_ended(s: &Scenario, ns: &str, release: &str) -> Vec<Job> {
    wait_for(&format!("the Jobs of {ns}/{release} to end"), 3 * MIN, || async {
        jobs_of(s, ns, release).await.iter().all(|j| job_end(j).is_some())
    })
    .await;
    jobs_of(s, ns, release).await
}

#[tokio::test]
async fn three_releases_side_by_side() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "releases", 1).await;
    s.enable_cache();
    let w0 = s.namespaces[0].clone();
    let ns_a = s.job_ns.clone();
    let ns_b = format!("{ns_a}-b");
    // B's namespace is Helm's, not the scenario's: one left by an earlier, failed run goes first.
    let namespaces: Api<Namespace> = Api::all(s.client.clone());
    let _ = std::process::Command::new("helm")
        .args(["uninstall", "sbomjob", "--namespace", &ns_b, "--wait"])
        .output();
    if namespaces.get_opt(&ns_b).await.unwrap().is_some() {
        let _ = namespaces.delete(&ns_b, &DeleteParams::default()).await;
        wait_for(&format!("old namespace {ns_b} to go"), 2 * MIN, || async {
            namespaces.get_opt(&ns_b).await.ok().flatten().is_none()
        })
        .await;
    }
    let operator = cluster.var("OPERATOR_IMAGE").to_string();
    let (repo, tag) = operator.rsplit_once(':').unwrap();
    let selector = format!("namespaceLabelSelector=sbomjob-e2e/scenario={}", s.name);
    let run = format!("{:08x}", rand::random::<u32>());
    let job_env_a = format!(r#"jobEnv=[{{"name":"E2E_RUN","value":"{run}"}}]"#);

    s.run_app_pod(&w0, "web", "WORKLOAD_ALPHA_IMAGE", &[]).await;
    s.run_app_pod(&w0, "api", "WORKLOAD_BETA_IMAGE", &[]).await;
    let alpha = cluster.var("WORKLOAD_ALPHA_IMAGE_DIGEST").to_string();
    let beta = cluster.var("WORKLOAD_BETA_IMAGE_DIGEST").to_string();

    // A: release "sbomjob" in the scenario's namespace, the e2e job image.
    let common = |prefix: &str| {
        vec![
            format!("image.repository={repo}"),
            format!("image.tag={tag}"),
            "interval=10s".to_string(),
            "debounce=2s".to_string(),
            "cache.ttl=72h".to_string(),
            selector.clone(),
            format!("annotationPrefix={prefix}"),
            "leaderElection.leaseDuration=3s".to_string(),
            // The CRDs are the scenario's (--skip-crds); the CRD hook is tested in upgrade.rs.
            "crds.upgrade.enabled=false".to_string(),
        ]
    };
    let install = |release: &str, ns: &str, job_image: &str, prefix: &str, json: &str| {
        let mut args = vec![
            "upgrade".to_string(),
            "--install".into(),
            release.into(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/sbomjob").into(),
            "--namespace".into(),
            ns.into(),
            "--create-namespace".into(),
            "--wait".into(),
            "--timeout".into(),
            "3m".into(),
            "--skip-crds".into(),
            "--set".into(),
            format!("jobImage={job_image}"),
            "--set-json".into(),
            json.into(),
        ];
        for v in common(prefix) {
            args.push("--set".into());
            args.push(v);
        }
        helm(&args.iter().map(String::as_str).collect::<Vec<_>>());
    };
    install(
        "sbomjob",
        &ns_a,
        cluster.var("JOB_E2E_IMAGE"),
        PREFIX_A,
        &job_env_a,
    );
    // B: the same release name in a second namespace (its cluster-scoped objects must not
    // collide), another job image and command.
    let job_env_b = format!(
        r#"jobEnv=[{{"name":"ENTRYPOINT_COMMAND","value":"{SKOPEO_INSPECT}"}},{{"name":"E2E_RUN","value":"{run}"}}]"#
    );
    install(
        "sbomjob",
        &ns_b,
        cluster.var("JOB_SKOPEO_IMAGE"),
        PREFIX_B,
        &job_env_b,
    );

    wait_annotated(&s, PREFIX_A, 4 * MIN).await;
    wait_annotated(&s, PREFIX_B, 4 * MIN).await;
    let a_jobs = wait_all_jobs_ended(&s, &ns_a, "sbomjob").await;
    let b_jobs = wait_all_jobs_ended(&s, &ns_b, "sbomjob").await;
    let both: BTreeMap<String, usize> = [(alpha.clone(), 1), (beta.clone(), 1)].into();
    assert_eq!(digest_counts(&a_jobs), both, "A processed each digest once");
    assert_eq!(digest_counts(&b_jobs), both, "B processed each digest once");
    for j in a_jobs.iter().chain(&b_jobs) {
        assert_eq!(job_end(j).unwrap().0, "Complete", "{:?}", j.metadata.name);
    }
    // Two identities, two records per digest; neither overwrote the other. (Other scenarios run
    // the same workload images: only this run's identities count.)
    let hash =
        |jobs: &[Job]| jobs[0].metadata.annotations.as_ref().unwrap()["sbomjob.io/settings-hash"].clone();
    let (hash_a, hash_b) = (hash(&a_jobs), hash(&b_jobs));
    assert_ne!(hash_a, hash_b);
    for d in [&alpha, &beta] {
        let ours = || {
            image_records(d)
                .into_iter()
                .filter(|r| {
                    r["spec"]["settingsHash"] == hash_a.as_str()
                        || r["spec"]["settingsHash"] == hash_b.as_str()
                })
                .collect::<Vec<_>>()
        };
        wait_for(&format!("a record of {d} from each release"), MIN, || async {
            ours().len() == 2
        })
        .await;
        let jobs: BTreeSet<_> = ours()
            .iter()
            .map(|r| r["spec"]["job"].as_str().unwrap().to_string())
            .collect();
        assert!(
            jobs.iter()
                .any(|j| a_jobs.iter().any(|a| a.metadata.name.as_deref() == Some(j)))
                && jobs
                    .iter()
                    .any(|j| b_jobs.iter().any(|b| b.metadata.name.as_deref() == Some(j))),
            "one record from each release's Job: {jobs:?}"
        );
    }

    // C: next to A, with A's job settings and its own Lease: it shares A's records.
    install(
        "sbomjob-c",
        &ns_a,
        cluster.var("JOB_E2E_IMAGE"),
        PREFIX_A,
        &job_env_a,
    );
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), &ns_a);
    wait_for("C's own Lease to be held", MIN, || async {
        leases
            .get_opt("sbomjob-c-leader")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
            .is_some()
    })
    .await;
    let a_lease = leases.get("sbomjob-leader").await.expect("A's Lease");
    assert!(
        a_lease
            .spec
            .unwrap()
            .holder_identity
            .unwrap()
            .starts_with("sbomjob-")
    );
    // C lists itself on A's records once it has seen the digests running (its first cycles).
    let c_key = format!("{ns_a}/sbomjob-c");
    wait_for("C to use A's record of alpha", 2 * MIN, || async {
        image_records(&alpha).iter().any(|r| {
            r["spec"]["releases"]
                .as_array()
                .is_some_and(|u| u.iter().any(|u| u["release"] == c_key.as_str()))
        })
    })
    .await;
    assert!(
        jobs_of(&s, &ns_a, "sbomjob-c").await.is_empty(),
        "C made no Job: A did the work"
    );

    // A pod scaled up on a known image: annotated from the cache by every release, no Job.
    let before = (
        jobs_of(&s, &ns_a, "sbomjob").await.len(),
        jobs_of(&s, &ns_b, "sbomjob").await.len(),
    );
    s.run_app_pod(&w0, "web-2", "WORKLOAD_ALPHA_IMAGE", &[]).await;
    wait_annotated(&s, PREFIX_A, 2 * MIN).await;
    wait_annotated(&s, PREFIX_B, 2 * MIN).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        (
            jobs_of(&s, &ns_a, "sbomjob").await.len(),
            jobs_of(&s, &ns_b, "sbomjob").await.len(),
        ),
        before,
        "no Job in A or B for a known digest"
    );
    assert!(jobs_of(&s, &ns_a, "sbomjob-c").await.is_empty(), "nor in C");
    // Nobody deleted or took over A's Jobs: they are all still there, each marked done by A.
    let a_now = jobs_of(&s, &ns_a, "sbomjob").await;
    assert_eq!(a_now.len(), a_jobs.len());
    assert!(a_now.iter().all(|j| {
        j.metadata.annotations.as_ref().is_some_and(|a| {
            a.get("sbomjob.io/created-by")
                .is_some_and(|c| c.starts_with("sbomjob-"))
        })
    }));

    // B goes: A's cache hits keep working for a new pod of the other known image.
    helm(&["uninstall", "sbomjob", "--namespace", &ns_b, "--wait"]);
    s.run_app_pod(&w0, "api-2", "WORKLOAD_BETA_IMAGE", &[]).await;
    wait_annotated(&s, PREFIX_A, 2 * MIN).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        jobs_of(&s, &ns_a, "sbomjob").await.len(),
        a_jobs.len(),
        "a cache hit, no Job"
    );
    assert!(
        image_records(&beta).iter().any(|r| r["spec"]["job"]
            .as_str()
            .is_some_and(|j| a_jobs.iter().any(|a| a.metadata.name.as_deref() == Some(j)))),
        "A's record of beta is still there"
    );

    helm(&["uninstall", "sbomjob-c", "--namespace", &ns_a, "--wait"]);
    helm(&["uninstall", "sbomjob", "--namespace", &ns_a, "--wait"]);
    let _ = namespaces.delete(&ns_b, &DeleteParams::default()).await;
}
