//! Results flow back (issue 12), against the real local cluster: what a Complete Job's result
//! lines say lands in the status of its digest's ImageRecord, bounded and validated; per-pod
//! Normal Events are opt-in; drift of running tags (issue 13) as the plugin shows it. Run one at a
//! time (`--test-threads=1`).

use std::time::Duration;

use e2e::{
    Cluster, Scenario, image_records, job_end, job_name,
    registry::{copy_image, copy_image_to},
    unique_identity, wait_for, workspace_bin,
};
use serde_json::Value;

const MIN: Duration = Duration::from_secs(60);

/// The record of `digest` made by the Job `job`, once it has a status.
async fn record_with_status(digest: &str, job: &str) -> Value {
    wait_for(
        &format!("the record of {digest} with a status from {job}"),
        2 * MIN,
        || async { image_records(digest).iter().any(|r| r["status"]["job"] == job) },
    )
    .await;
    image_records(digest)
        .into_iter()
        .find(|r| r["status"]["job"] == job)
        .unwrap()
}

/// A job image that prints 10 MB of result lines, malformed ones, ones for a digest and an
/// index not in its Job and ones over the bounds, then one valid line: only that line is kept,
/// in the record of its own digest; the others are counted by kind; the record stays small; no
/// record is written for the foreign digest. With the default podEvents, the annotated pod gets
/// no Normal Event (its Job sums it up).
#[tokio::test]
async fn r1_a_hostile_job_image_cannot_write_more_than_its_results() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "hostile", 1).await;
    s.enable_cache();
    let ns = s.namespaces[0].clone();
    let image = copy_image(&cluster, "WORKLOAD_ALPHA_IMAGE", "e2e/hostile").await;
    s.pod(&ns, "app", &[("app", &image.tagged)], &[]).await;
    s.wait_pods_running().await;
    let (k, v) = unique_identity();
    let op = s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_HOSTILE_IMAGE")),
        ("SBOM_CACHE_TTL", "72h"),
        (k, &v),
    ]);
    let job = s.wait_jobs(1, 2 * MIN).await.remove(0);
    let name = job_name(&job);
    assert_eq!(s.wait_job_end(&name, 3 * MIN).await.0, "Complete");
    s.wait_all_annotated("sbomjob.io", MIN).await;

    let record = record_with_status(&image.digest, &name).await;
    let status = &record["status"];
    assert_eq!(status["packages"], 7, "{status}");
    assert_eq!(status["tool"]["name"], "hostile", "{status}");
    assert_eq!(status["findings"]["critical"], 1, "{status}");
    assert_eq!(status["findings"]["high"], 2, "{status}");
    assert_eq!(status["conditions"][0]["type"], "Catalogued", "{status}");
    assert_eq!(status["conditions"][0]["status"], "True", "{status}");
    let size = serde_json::to_string(&record).unwrap().len();
    assert!(size < 8 * 1024, "the record is {size} bytes: {record}");
    // The foreign digest got no record.
    let other = format!("sha256:{}", "e".repeat(64));
    assert!(
        image_records(&other).is_empty(),
        "a record for a digest not in the Job"
    );

    let m = s.metrics(op).await;
    assert_eq!(m.value("sbomjob_result_lines_total{result=\"accepted\"}"), 1.0);
    assert_eq!(
        m.value("sbomjob_result_lines_total{result=\"malformed\"}"),
        2401.0
    );
    assert_eq!(m.value("sbomjob_result_lines_total{result=\"too_long\"}"), 2.0);
    assert_eq!(m.value("sbomjob_result_lines_total{result=\"foreign\"}"), 2.0);
    assert_eq!(m.value("sbomjob_running_images{sbom=\"yes\"}"), 1.0);
    assert_eq!(m.value("sbomjob_running_findings{severity=\"high\"}"), 2.0);
    assert!(m.value("sbomjob_last_successful_cycle_timestamp_seconds") > 0.0);

    // podEvents defaults to failures: the pod has no Normal Event; the Job's Event sums it up.
    let events = s.pod_events().await;
    for (pod, events) in &events {
        assert!(
            events.iter().all(|e| e.type_.as_deref() != Some("Normal")),
            "{:?}: {events:?}",
            pod.metadata.name
        );
    }
    let job_events = s.events_of_job(&name).await;
    assert!(
        job_events.iter().any(|e| e.reason.as_deref() == Some("Processed")
            && e.note.as_deref().is_some_and(|n| n.contains("1 pods annotated"))),
        "{job_events:?}"
    );
    assert!(job_end(&s.jobs().await[0]).is_some());
}

/// A registry blob over plain HTTP, from the host (`REGISTRY_HOST`), with curl as a person would.
fn registry_get(cluster: &Cluster, path: &str, accept: &str) -> Vec<u8> {
    let url = format!("http://{}/v2/{path}", cluster.var("REGISTRY_HOST"));
    let out = std::process::Command::new("curl")
        .args(["-fsS", "-H", &format!("Accept: {accept}"), &url])
        .output()
        .expect("running curl");
    assert!(
        out.status.success(),
        "GET {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The plugin with the admin kubeconfig; its stdout, after asserting it succeeded.
fn plugin(cluster: &Cluster, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(workspace_bin("kubectl-sbomjob"))
        .args(args)
        .args(["--insecure-registry", cluster.var("REGISTRY")])
        .env(
            "XDG_CACHE_HOME",
            std::env::temp_dir().join("sbomjob-e2e-plugin-cache"),
        )
        .output()
        .expect("running kubectl-sbomjob");
    assert!(
        out.status.success(),
        "kubectl sbomjob {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// syft (the preset's job image, attaching its SBOMs) over images like real ones: a dpkg
/// database of Debian packages, a Python venv from PyPI, a Go binary with its modules. Each
/// record's package count is the package count of the SBOM in the registry (read there with
/// curl, not through the operator); `kubectl sbomjob sbom` gives the blob's bytes; `kubectl
/// sbomjob find pip` (in exactly two of the images) lists exactly their pods.
#[tokio::test]
async fn r2_syft_results_match_the_sboms_in_the_registry() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "found", 1).await;
    s.enable_cache();
    let ns = s.namespaces[0].clone();
    let images = [
        ("debian", "WORKLOAD_DEBIAN_IMAGE"),
        ("python", "WORKLOAD_PYTHON_IMAGE"),
        ("go", "WORKLOAD_GO_IMAGE"),
    ];
    for (pod, var) in images {
        s.pod(&ns, pod, &[("app", cluster.var(var))], &[]).await;
    }
    s.wait_pods_running().await;
    let (k, v) = unique_identity();
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_SYFT_IMAGE")),
        ("SBOM_JOB_ENTRYPOINT_ATTACH", "true"),
        (
            "SBOM_JOB_ENTRYPOINT_ATTACH_INSECURE_REGISTRIES",
            cluster.var("REGISTRY"),
        ),
        ("SBOM_JOB_SYFT_REGISTRY_INSECURE_USE_HTTP", "true"),
        ("SBOM_CACHE_TTL", "72h"),
        (k, &v),
    ]);
    let job = job_name(&s.wait_jobs(1, 2 * MIN).await[0]);
    assert_eq!(s.wait_job_end(&job, 5 * MIN).await.0, "Complete");
    s.wait_all_annotated("sbomjob.io", MIN).await;

    let registry = cluster.var("REGISTRY").to_string();
    let mut blobs = Vec::new();
    for (pod, var) in images {
        let digest = cluster.var(&format!("{var}_DIGEST")).to_string();
        let record = record_with_status(&digest, &job).await;
        let status = &record["status"];
        assert_eq!(status["tool"]["name"], "syft", "{pod}: {status}");
        let artifact = status["artifacts"][0]["reference"]
            .as_str()
            .unwrap_or_else(|| panic!("{pod}: no artifact: {status}"));
        // registry/repository@sha256:… → the manifest, its first layer, the SBOM.
        let (repo, manifest_digest) = artifact
            .strip_prefix(&format!("{registry}/"))
            .unwrap()
            .split_once('@')
            .unwrap();
        let manifest: Value = serde_json::from_slice(&registry_get(
            &cluster,
            &format!("{repo}/manifests/{manifest_digest}"),
            "application/vnd.oci.image.manifest.v1+json",
        ))
        .unwrap();
        assert_eq!(
            manifest["subject"]["digest"],
            digest.as_str(),
            "{pod}: {manifest}"
        );
        let layer = manifest["layers"][0]["digest"].as_str().unwrap();
        let blob = registry_get(&cluster, &format!("{repo}/blobs/{layer}"), "*/*");
        let sbom: Value = serde_json::from_slice(&blob).unwrap();
        let packages = sbom["packages"].as_array().map_or(0, Vec::len);
        assert!(packages > 0, "{pod}: an empty SBOM");
        assert_eq!(
            status["packages"], packages,
            "{pod}: the record's count is not the SBOM's"
        );
        blobs.push((pod, blob));
    }
    // The Debian image's SBOM lists its dpkg packages (40 of them), the Python application's
    // its 28 pinned PyPI packages and pip (names compared as PyPI normalises them), the Go
    // binary its modules.
    let normal = |name: &str| name.to_lowercase().replace(['_', '.'], "-");
    let debian: Value = serde_json::from_slice(&blobs[0].1).unwrap();
    assert!(debian["packages"].as_array().unwrap().len() >= 40);
    let python: Value = serde_json::from_slice(&blobs[1].1).unwrap();
    let names: std::collections::BTreeSet<String> = python["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str().map(normal))
        .collect();
    for pinned in std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/images/python-app-requirements.txt"
    ))
    .unwrap()
    .lines()
    .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = normal(pinned.split("==").next().unwrap());
        assert!(
            names.contains(&name),
            "python: {name} is not in the SBOM: {names:?}"
        );
    }
    assert!(names.contains("pip"), "python: {names:?}");

    // The plugin: the SBOM as the registry has it, and which pods contain pip.
    for (pod, blob) in &blobs {
        assert_eq!(
            &plugin(&cluster, &["sbom", &format!("{ns}/{pod}")]),
            blob,
            "{pod}"
        );
    }
    let found: Value =
        serde_json::from_slice(&plugin(&cluster, &["find", "pip", "-n", &ns, "-o", "json"])).unwrap();
    let pods: std::collections::BTreeSet<&str> = found["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["pod"].as_str().unwrap())
        .collect();
    assert_eq!(pods, ["debian", "python"].into(), "{found}");
    assert_eq!(found["unsearched"], serde_json::json!([]), "{found}");
    // With a constraint that no version meets: nothing.
    let none: Value =
        serde_json::from_slice(&plugin(&cluster, &["find", "pip@<1", "-n", &ns, "-o", "json"])).unwrap();
    assert_eq!(none["matches"], serde_json::json!([]), "{none}");
}

/// `GET http://<host>/v2/<path>` from the host with curl: the body, or `None` on a 404.
fn registry_try(host: &str, path: &str, accept: &str) -> Option<Value> {
    let url = format!("http://{host}/v2/{path}");
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("Accept: {accept}"),
            &url,
        ])
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    match code {
        "200" => Some(serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))),
        "404" => None,
        other => panic!("GET {url}: HTTP {other}: {body}"),
    }
}

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const IDENTITY: &str = "io.sbomjob.settings-identity";

/// The registry as a cache shared by clusters. Release A (syft, attaching) processes an image in
/// Debian's registry 2.8 (no referrers API: its artifact joins the referrers tag schema's index)
/// and one in the registry with the referrers API (go-containerregistry's: the API lists it, no
/// tag is written). Then a second release B, with another cluster id and the same job settings,
/// and none of A's records (as a second cluster has none), watches new pods of the same two
/// images: it makes no Job; its pods are annotated and the records rewritten from the registry,
/// with A's package counts and artifacts. A third release with other settings does make a Job.
#[tokio::test]
async fn r3_a_second_release_reuses_the_sboms_in_the_registry_without_a_job() {
    let cluster = Cluster::connect().await;
    let mut a = Scenario::new(&cluster, "share-a", 1).await;
    a.enable_cache();
    let tags = copy_image(&cluster, "WORKLOAD_ALPHA_IMAGE", "e2e/share-tags").await;
    let api = copy_image_to(
        &cluster,
        "WORKLOAD_ALPHA_IMAGE",
        "e2e/share-api",
        "REGISTRY_REFERRERS",
    )
    .await;
    let ns = a.namespaces[0].clone();
    a.pod(&ns, "tags", &[("app", &tags.tagged)], &[]).await;
    a.pod(&ns, "api", &[("app", &api.tagged)], &[]).await;
    a.wait_pods_running().await;
    let insecure = format!(
        "{},{}",
        cluster.var("REGISTRY"),
        cluster.var("REGISTRY_REFERRERS")
    );
    let (k, v) = unique_identity();
    let job_settings = [
        ("SBOM_JOB_IMAGE", cluster.var("JOB_SYFT_IMAGE")),
        ("SBOM_JOB_ENTRYPOINT_ATTACH", "true"),
        (
            "SBOM_JOB_ENTRYPOINT_ATTACH_INSECURE_REGISTRIES",
            insecure.as_str(),
        ),
        ("SBOM_JOB_SYFT_REGISTRY_INSECURE_USE_HTTP", "true"),
        (k, v.as_str()),
    ];
    let operator_settings = [
        ("SBOM_CACHE_TTL", "72h"),
        ("SBOM_REGISTRY_LOOKUP_INSECURE", insecure.as_str()),
    ];
    let op_a = a.start_operator(&[&job_settings[..], &operator_settings[..]].concat());
    let job = a.wait_jobs(1, 2 * MIN).await.remove(0);
    let name = job_name(&job);
    let identity = job.metadata.annotations.as_ref().unwrap()["sbomjob.io/settings-hash"].clone();
    assert_eq!(a.wait_job_end(&name, 5 * MIN).await.0, "Complete");
    a.wait_all_annotated("sbomjob.io", MIN).await;
    let mut made = Vec::new();
    for image in [&tags, &api] {
        let status = record_with_status(&image.digest, &name).await["status"].clone();
        assert!(status["packages"].as_u64().is_some(), "{status}");
        made.push(status);
    }
    // A found nothing in the registries before its Job.
    let m = a.metrics(op_a).await;
    assert_eq!(m.value("sbomjob_registry_lookups_total{result=\"absent\"}"), 2.0);

    // Debian's registry: the tag schema's index lists the artifact with A's settings identity.
    let hex = |d: &str| d.replacen(':', "-", 1);
    let index = registry_try(
        cluster.var("REGISTRY_HOST"),
        &format!("e2e/share-tags/manifests/{}", hex(&tags.digest)),
        INDEX,
    )
    .expect("no referrers tag schema index in Debian's registry");
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{index}");
    assert_eq!(listed[0]["annotations"][IDENTITY], identity.as_str(), "{index}");
    assert_eq!(
        made[0]["artifacts"][0]["reference"],
        format!(
            "{}/e2e/share-tags@{}",
            cluster.var("REGISTRY"),
            listed[0]["digest"].as_str().unwrap()
        ),
    );
    // The registry with the API lists it there, and no tag was written.
    let host = cluster.var("REGISTRY_REFERRERS_HOST");
    let referrers =
        registry_try(host, &format!("e2e/share-api/referrers/{}", api.digest), INDEX).expect("referrers API");
    let listed = referrers["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{referrers}");
    assert_eq!(
        listed[0]["annotations"][IDENTITY],
        identity.as_str(),
        "{referrers}"
    );
    assert_eq!(
        registry_try(
            host,
            &format!("e2e/share-api/manifests/{}", hex(&api.digest)),
            INDEX
        ),
        None,
        "a tag schema index on a registry with the referrers API"
    );

    // Another cluster: A gone, none of its records, new pods of the same images.
    a.kill_operator(op_a);
    for image in [&tags, &api] {
        for r in image_records(&image.digest) {
            let name = r["metadata"]["name"].as_str().unwrap();
            let out = std::process::Command::new("kubectl")
                .args(["delete", "imagerecord", name, "--wait=true"])
                .output()
                .expect("running kubectl");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let mut b = Scenario::new(&cluster, "share-b", 1).await;
    b.enable_cache();
    let ns_b = b.namespaces[0].clone();
    b.pod(&ns_b, "tags", &[("app", &tags.tagged)], &[]).await;
    b.pod(&ns_b, "api", &[("app", &api.tagged)], &[]).await;
    b.wait_pods_running().await;
    let op_b = b.start_operator(
        &[
            &job_settings[..],
            &operator_settings[..],
            &[("SBOM_KUBERNETES_CLUSTER_ID", "e2e-second")][..],
        ]
        .concat(),
    );
    b.wait_all_annotated("sbomjob.io", 2 * MIN).await;
    let m = b
        .wait_metric(op_b, "sbomjob_registry_lookups_total{result=\"found\"}", 2.0, MIN)
        .await;
    assert_eq!(m.value("sbomjob_registry_lookups_total{result=\"found\"}"), 2.0);
    for (image, status_a) in [&tags, &api].into_iter().zip(&made) {
        wait_for(
            &format!("the record of {} from the registry", image.digest),
            MIN,
            || async {
                image_records(&image.digest)
                    .iter()
                    .any(|r| r["status"]["conditions"][0]["reason"] == "FoundInRegistry")
            },
        )
        .await;
        let record = image_records(&image.digest).remove(0);
        let status = &record["status"];
        assert_eq!(status["packages"], status_a["packages"], "{status}");
        assert_eq!(
            status["artifacts"][0]["reference"], status_a["artifacts"][0]["reference"],
            "{status}"
        );
        assert_eq!(status["tool"]["name"], "syft", "{status}");
        assert_eq!(record["spec"]["settingsHash"], identity.as_str());
    }
    // No Job, now or in the next cycles.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert!(b.jobs().await.is_empty(), "release B made a Job");

    // Other settings: the registry's SBOMs are not theirs, so a Job runs.
    b.kill_operator(op_b);
    let mut c = Scenario::new(&cluster, "share-c", 1).await;
    c.enable_cache();
    let ns_c = c.namespaces[0].clone();
    c.pod(&ns_c, "tags", &[("app", &tags.tagged)], &[]).await;
    c.wait_pods_running().await;
    let (k2, v2) = unique_identity();
    let mut other = job_settings.to_vec();
    other.retain(|(name, _)| *name != k);
    other.push((k2, v2.as_str()));
    let op_c = c.start_operator(&[&other[..], &operator_settings[..]].concat());
    let job = job_name(&c.wait_jobs(1, 2 * MIN).await[0]);
    assert_eq!(c.wait_job_end(&job, 5 * MIN).await.0, "Complete");
    let m = c.metrics(op_c).await;
    assert_eq!(m.get("sbomjob_registry_lookups_total{result=\"found\"}"), None);
    assert_eq!(m.value("sbomjob_registry_lookups_total{result=\"absent\"}"), 1.0);
    // Now two artifacts of two identities in the tag schema's index: A's kept, C's added.
    let index = registry_try(
        cluster.var("REGISTRY_HOST"),
        &format!("e2e/share-tags/manifests/{}", hex(&tags.digest)),
        INDEX,
    )
    .unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
}

/// Drift (issue 13), as `kubectl sbomjob drift` shows it: tags 1.2.0, 1.2.3, 1.3.0 and latest
/// of one repository, pushed with skopeo; a pod on 1.2.0 is behind minor with 1.3.0 named, one on
/// 1.3.0 is latest, one on `latest` is unknown (not a version). Read from the registry's tag
/// list by the plugin, with no operator involved.
#[tokio::test]
async fn r4_drift_against_the_newest_semver_tag() {
    let cluster = Cluster::connect().await;
    let s = Scenario::new(&cluster, "drift", 1).await;
    let ns = s.namespaces[0].clone();
    let repo = format!("e2e/drift-{:08x}", rand::random::<u32>());
    let image = copy_image(&cluster, "WORKLOAD_ALPHA_IMAGE", &repo).await;
    for tag in ["1.2.0", "1.2.3", "1.3.0", "latest"] {
        let out = std::process::Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg(format!("docker://{}", image.host_ref))
            .arg(format!("docker://{}/{repo}:{tag}", cluster.var("REGISTRY_HOST")))
            .output()
            .expect("running skopeo");
        assert!(
            out.status.success(),
            "skopeo copy to {tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let registry = cluster.var("REGISTRY");
    for (pod, tag) in [("old", "1.2.0"), ("new", "1.3.0"), ("floating", "latest")] {
        s.pod(&ns, pod, &[("app", &format!("{registry}/{repo}:{tag}"))], &[])
            .await;
    }
    s.wait_pods_running().await;
    let rows: Vec<Value> = serde_json::from_slice(&plugin(&cluster, &["drift", "-n", &ns, "-o", "json"]))
        .expect("drift -o json is a JSON list");
    let of = |pod: &str| {
        rows.iter()
            .find(|r| r["pod"] == pod)
            .unwrap_or_else(|| panic!("no row for {pod}: {rows:?}"))
            .clone()
    };
    assert_eq!(rows.len(), 3, "{rows:?}");
    let old = of("old");
    assert_eq!(
        (old["status"].as_str(), old["newest"].as_str()),
        (Some("behind-minor"), Some("1.3.0")),
        "{old}"
    );
    assert_eq!(old["detail"], "behind minor, newest 1.3.0");
    assert_eq!(of("new")["status"], "latest");
    assert_eq!(of("floating")["status"], "unknown");
}
