//! `helm upgrade` from the previous chart version, against the real local cluster: the chart
//! 0.1.0 as it was at [`PREVIOUS`] (taken from git), whose ImageRecord CRD lacks the fields of
//! issue 13 (status.provenance, status.drift) and which had no ImageSource or TrustPolicy CRD,
//! catalogues two pods; the upgrade to this chart keeps every record and annotation, its CRD
//! hook brings the new schemas, and the new operator makes no Job for what is recorded.
//!
//! The ImageRecord CRD is cluster-wide: the old schema is in force from the old install to the
//! upgrade, so hack/e2e.sh runs this file alone. Run by hack/test.sh (`make test`); this file
//! alone: `cargo test -p sbomjob-e2e --test upgrade -- --test-threads=1`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use e2e::{
    Cluster, Metrics, Scenario, cluster::kubectl, cluster::workspace_root, image_records, job_name,
    registry::copy_image, wait_for,
};
use serde_json::{Value, json};

const PREFIX: &str = "sbomjob.io";
const MIN: Duration = Duration::from_secs(60);
/// The last commit before issue 13 changed the chart (ec9e73d added imagesources.yaml): chart
/// 0.1.0, one CRD (imagerecords.yaml) without status.provenance or status.drift.
const PREVIOUS: &str = "23e4339b7f9280e6e428aa33f981f73134fe1988";
const CRDS: [&str; 3] = [
    "imagerecords.sbomjob.io",
    "imagesources.sbomjob.io",
    "trustpolicies.sbomjob.io",
];
/// The CRD hook's field manager (operator/src/crds.rs).
const HOOK_MANAGER: &str = "sbomjob-crds";

/// `charts/sbomjob` at [`PREVIOUS`], extracted under a temporary directory. A clone without
/// that commit (a shallow one) fails here, saying how to get it: this test never skips.
fn previous_chart() -> PathBuf {
    let root = workspace_root();
    let has = Command::new("git")
        .args(["-C"])
        .arg(&root)
        .args(["cat-file", "-e", &format!("{PREVIOUS}^{{commit}}")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has,
        "the previous chart version is taken from git commit {PREVIOUS}, which {} does not have \
         (not a git clone, or a shallow one): run `git fetch --unshallow` (or clone without --depth)",
        root.display()
    );
    let dir = std::env::temp_dir().join(format!("sbomjob-e2e-chart-{}", &PREVIOUS[..12]));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"git -C "$1" archive "$2" charts/sbomjob | tar -x -C "$3""#)
        .args(["sh"])
        .arg(&root)
        .arg(PREVIOUS)
        .arg(&dir)
        .status()
        .expect("running git archive | tar");
    assert!(status.success(), "extracting charts/sbomjob at {PREVIOUS}");
    dir.join("charts/sbomjob")
}

fn crd(name: &str) -> Value {
    serde_json::from_str(&kubectl(&[
        "get",
        "crd",
        name,
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .unwrap()
}

/// The properties of `status` in the CRD's storage version's schema.
fn status_properties(crd: &Value) -> Vec<String> {
    let versions = crd["spec"]["versions"].as_array().unwrap();
    let v = versions.iter().find(|v| v["storage"] == true).unwrap();
    let props = &v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    props
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn established(crd: &Value) -> bool {
    crd["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    })
}

fn managers(crd: &Value) -> Vec<String> {
    crd["metadata"]["managedFields"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|e| e["manager"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A merge patch of a record's status with a provenance verdict (a field of the new schema
/// only); returns the record's status as read back.
fn write_provenance(record: &str) -> Value {
    let patch = json!({"status": {"provenance": {
        "signature": "unchecked",
        "signatureReason": "e2e upgrade: a field of the new schema",
        "checkedAt": "2025-01-01T00:00:00Z",
    }}});
    kubectl(&[
        "patch",
        "imagerecord",
        record,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
    let read = kubectl(&["get", "imagerecord", record, "-o", "json"]);
    serde_json::from_str::<Value>(&read).unwrap()["status"].clone()
}

/// What must survive the upgrade of a record: the object itself (uid), what was processed,
/// when and by which Job, and what the Job found (the status).
fn record_key(r: &Value) -> Value {
    json!({
        "uid": r["metadata"]["uid"],
        "digest": r["spec"]["digest"],
        "result": r["spec"]["result"],
        "processedAt": r["spec"]["processedAt"],
        "job": r["spec"]["job"],
        "jobImage": r["spec"]["jobImage"],
        "settingsHash": r["spec"]["settingsHash"],
        "status": r["status"],
    })
}

/// Every annotation of every workload pod, by namespace/name.
async fn pod_annotations(s: &Scenario) -> BTreeMap<String, BTreeMap<String, String>> {
    s.pods()
        .await
        .into_iter()
        .map(|p| {
            let m = p.metadata;
            (
                format!("{}/{}", m.namespace.unwrap(), m.name.unwrap()),
                m.annotations.unwrap_or_default().into_iter().collect(),
            )
        })
        .collect()
}

/// The release's ready operator pod (not a Job's pod), and the chart version its Deployment
/// was made by (its `helm.sh/chart` label).
fn operator_pod(ns: &str) -> Option<(String, String)> {
    let list = |kind: &str| -> Value {
        let selector = "app.kubernetes.io/instance=sbomjob,app.kubernetes.io/component=operator";
        serde_json::from_str(&kubectl(&["get", kind, "-n", ns, "-l", selector, "-o", "json"])).unwrap()
    };
    let chart = list("deployments")["items"][0]["metadata"]["labels"]["helm.sh/chart"]
        .as_str()?
        .to_string();
    let pods = list("pods");
    let pod = pods["items"].as_array()?.iter().find_map(|p| {
        let ready = p["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        (ready && p["metadata"]["deletionTimestamp"].is_null())
            .then(|| p["metadata"]["name"].as_str().unwrap().to_string())
    })?;
    Some((pod, chart))
}

fn pod_metrics(ns: &str, pod: &str) -> Metrics {
    Metrics(kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/{ns}/pods/{pod}:8080/proxy/metrics"),
    ]))
}

fn values(cluster: &Cluster, run: &str) -> Vec<(&'static str, String)> {
    let operator = cluster.var("OPERATOR_IMAGE");
    let (repo, tag) = operator.rsplit_once(':').unwrap();
    vec![
        ("image.repository", repo.to_string()),
        ("image.tag", tag.to_string()),
        // Images are rebuilt under the same tag, and the old chart has no image.digest.
        ("image.pullPolicy", "Always".to_string()),
        ("jobImage", cluster.var("JOB_E2E_IMAGE").to_string()),
        ("interval", "10s".to_string()),
        ("debounce", "2s".to_string()),
        ("cache.ttl", "72h".to_string()),
        ("leaderElection.leaseDuration", "3s".to_string()),
        // This run's own settings identity: records of other runs never count.
        ("jobEnv[0].name", "E2E_RUN".to_string()),
        ("jobEnv[0].value", run.to_string()),
    ]
}

fn install(s: &mut Scenario, chart: &Path, set: &[(&str, String)]) {
    let selector = format!("{}={}", e2e::SCENARIO_LABEL, s.name);
    let mut all: Vec<(&str, &str)> = vec![("namespaceLabelSelector", &selector)];
    all.extend(set.iter().map(|(k, v)| (*k, v.as_str())));
    // Drift off through extraEnv (the old chart has no value for it); one --set-string, so the
    // entry keeps its name and its value stays a string.
    s.helm_upgrade_install(
        "sbomjob",
        chart,
        &[
            "--set-string",
            "extraEnv[0].name=SBOM_DRIFT_INTERVAL,extraEnv[0].value=0",
        ],
        &all,
    );
}

#[tokio::test]
async fn upgrade_from_the_previous_chart_keeps_records_and_annotations() {
    let old_chart = previous_chart();
    let old_crd = old_chart.join("crds/imagerecords.yaml");
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "upgrade", 2).await;
    let (w0, w1) = (s.namespaces[0].clone(), s.namespaces[1].clone());
    let alpha = copy_image(&cluster, "WORKLOAD_ALPHA_IMAGE", "e2e/upgrade-alpha").await;
    let gamma = copy_image(&cluster, "WORKLOAD_GAMMA_IMAGE", "e2e/upgrade-gamma").await;
    s.pod(&w0, "web", &[("app", &alpha.tagged)], &[]).await;
    s.pod(&w1, "web", &[("app", &alpha.tagged), ("db", &gamma.tagged)], &[])
        .await;
    s.wait_pods_running().await;

    // The cluster as chart 0.1.0 left it: its ImageRecord CRD, created whole as Helm's install
    // made it (no newer field stays behind under another manager), and no ImageSource or
    // TrustPolicy CRD: the upgrade's hook must create them. Deleted first, whatever an earlier
    // test left (on a fresh cluster none exists); the test runs alone, so no other scenario's
    // objects of these kinds go with them.
    for name in CRDS {
        kubectl(&[
            "delete",
            "crd",
            name,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=60s",
        ]);
    }
    kubectl(&["create", "-f", old_crd.to_str().unwrap()]);
    kubectl(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "crd/imagerecords.sbomjob.io",
    ]);
    let before = status_properties(&crd(CRDS[0]));
    assert!(
        before.contains(&"packages".to_string()) && !before.iter().any(|p| p == "provenance" || p == "drift"),
        "the old ImageRecord schema is in force: {before:?}"
    );

    // 1. The previous chart (its crds/ exist already: Helm leaves them), the current operator.
    let run = format!("{:08x}", rand::random::<u32>());
    // Drift is off in both installs (`install`): no tag listing writes records or pods meanwhile.
    let set = values(&cluster, &run);
    install(&mut s, &old_chart, &set);
    let (old_pod, chart) = operator_pod(&s.job_ns).expect("the old chart's operator pod is ready");
    assert_eq!(chart, "sbomjob-0.1.0", "{old_pod} runs from the previous chart");
    let jobs = s.wait_jobs(1, 3 * MIN).await;
    assert_eq!(s.wait_job_end(&job_name(&jobs[0]), 3 * MIN).await.0, "Complete");
    s.wait_all_annotated(PREFIX, 2 * MIN).await;
    // This release's records: another release on the cluster (the demo's, watching every
    // namespace) may record the same digests under its own identity.
    let release = format!("{}/sbomjob", s.job_ns);
    let records_of = |digest: &str| -> Vec<Value> {
        image_records(digest)
            .into_iter()
            .filter(|r| {
                r["spec"]["releases"]
                    .as_array()
                    .is_some_and(|us| us.iter().any(|u| u["release"] == release.as_str()))
            })
            .collect()
    };
    wait_for(
        "a record of each digest, with what its Job found",
        2 * MIN,
        || async {
            [&alpha.digest, &gamma.digest]
                .iter()
                .all(|d| records_of(d).iter().any(|r| r["status"].is_object()))
        },
    )
    .await;
    let mut records: BTreeMap<String, Value> = BTreeMap::new();
    for d in [&alpha.digest, &gamma.digest] {
        let rs = records_of(d);
        assert_eq!(rs.len(), 1, "one record of {d} (this run's identity): {rs:?}");
        records.insert(
            rs[0]["metadata"]["name"].as_str().unwrap().to_string(),
            record_key(&rs[0]),
        );
    }
    let name = records.keys().next().unwrap().clone();
    // The old schema drops what it does not know: the same write after the upgrade is kept.
    let status = write_provenance(&name);
    assert!(
        status["provenance"].is_null(),
        "pruned by the old schema: {status}"
    );
    let now: Value = serde_json::from_str(&kubectl(&["get", "imagerecord", &name, "-o", "json"])).unwrap();
    assert_eq!(
        &record_key(&now),
        &records[&name],
        "a pruned write changes nothing"
    );
    let annotations = pod_annotations(&s).await;
    let jobs_before = s.jobs().await.len();

    // 2. helm upgrade to this chart: the CRD hook (on by default), then the new Deployment.
    let mut set = values(&cluster, &run);
    set.push(("image.digest", cluster.var("OPERATOR_IMAGE_DIGEST").to_string()));
    set.push(("drift.interval", "0".to_string()));
    install(&mut s, &workspace_root().join("charts/sbomjob"), &set);

    // 3. The CRDs: the new ImageRecord schema, ImageSource and TrustPolicy there, each applied
    // by the hook (its field manager, our version) and Established.
    let version = env!("CARGO_PKG_VERSION");
    for name in CRDS {
        let c = crd(name);
        assert!(established(&c), "{name} Established: {}", c["status"]);
        assert!(
            managers(&c).iter().any(|m| m == HOOK_MANAGER),
            "{name} applied by the hook: {:?}",
            managers(&c)
        );
        assert_eq!(
            c["metadata"]["annotations"]["sbomjob.io/version"], version,
            "{name}"
        );
    }
    let after = status_properties(&crd(CRDS[0]));
    assert!(
        after.iter().any(|p| p == "provenance") && after.iter().any(|p| p == "drift"),
        "the new ImageRecord schema: {after:?}"
    );
    // The hook's Job, ServiceAccount and ClusterRole are gone once it succeeded.
    let left = kubectl(&[
        "get",
        "jobs,serviceaccounts",
        "-n",
        &s.job_ns,
        "-l",
        "app.kubernetes.io/component=crds",
        "-o",
        "name",
    ]);
    assert_eq!(left, "", "the hook's objects are deleted after it succeeded");

    // Every record as it was, every annotation kept.
    for (name, key) in &records {
        let now: Value = serde_json::from_str(&kubectl(&["get", "imagerecord", name, "-o", "json"])).unwrap();
        assert_eq!(&record_key(&now), key, "record {name} unchanged by the upgrade");
    }
    assert_eq!(
        pod_annotations(&s).await,
        annotations,
        "pod annotations unchanged by the upgrade"
    );

    // The new operator reuses the records: cycles, no Job.
    let chart_yaml = std::fs::read_to_string(workspace_root().join("charts/sbomjob/Chart.yaml")).unwrap();
    let chart_version = chart_yaml
        .lines()
        .find_map(|l| l.strip_prefix("version: "))
        .unwrap();
    let (pod, chart) = operator_pod(&s.job_ns).expect("the new chart's operator pod is ready");
    assert_eq!(
        chart,
        format!("sbomjob-{chart_version}"),
        "{pod} runs from this chart"
    );
    assert_ne!(pod, old_pod, "a new operator pod");
    wait_for("two cycles of the upgraded operator", 2 * MIN, || async {
        pod_metrics(&s.job_ns, &pod).get(e2e::CYCLES_OK).unwrap_or(0.0) >= 2.0
    })
    .await;
    let m = pod_metrics(&s.job_ns, &pod);
    assert_eq!(m.get(e2e::CYCLES_ERROR).unwrap_or(0.0), 0.0, "{}", m.0);
    assert_eq!(
        s.jobs().await.len(),
        jobs_before,
        "no Job after the upgrade for recorded digests"
    );
    for (name, key) in &records {
        let now: Value = serde_json::from_str(&kubectl(&["get", "imagerecord", name, "-o", "json"])).unwrap();
        assert_eq!(
            &record_key(&now),
            key,
            "record {name} unchanged by the new operator's cycles"
        );
    }
    assert_eq!(
        pod_annotations(&s).await,
        annotations,
        "pod annotations unchanged by the new operator"
    );

    // A field only the new schema has is kept.
    let status = write_provenance(&name);
    assert_eq!(
        status["provenance"]["signature"], "unchecked",
        "kept by the new schema: {status}"
    );
}
