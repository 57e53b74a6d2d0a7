//! Registry sources and drift (issue 13), against the real local cluster: an ImageSource's tags
//! are catalogued by a Job before anything runs them, a pod started later on one of them is
//! annotated from the cache (no new Job) and told its drift; a registry stopped during a scan
//! makes the source Failed with retries while the operator's cycles go on, and the scan resumes
//! when it returns. Run one at a time (`--test-threads=1`).

use std::{
    collections::BTreeSet,
    process::{Child, Command},
    time::Duration,
};

use e2e::{Cluster, Scenario, cluster::kubectl, image_records, registry::copy_image, wait_for};
use serde_json::{Value, json};

const MIN: Duration = Duration::from_secs(60);

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `skopeo copy` from the host-side reference `from` to `to` (both over plain HTTP).
fn push(from: &str, to: &str) {
    run(Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{from}"))
        .arg(format!("docker://{to}")));
}

fn digest_of(reference: &str) -> String {
    run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{reference}"),
    ]))
}

/// Creates or changes an ImageSource (kubectl apply of its JSON).
fn apply_source(ns: &str, name: &str, spec: Value) {
    let source = json!({"apiVersion": "sbomjob.io/v1alpha1", "kind": "ImageSource",
        "metadata": {"name": name, "namespace": ns}, "spec": spec});
    let path = std::env::temp_dir().join(format!("sbomjob-e2e-source-{ns}-{name}.json"));
    std::fs::write(&path, source.to_string()).expect("writing the source");
    kubectl(&["apply", "-f", path.to_str().unwrap()]);
}

fn source(ns: &str, name: &str) -> Value {
    serde_json::from_str(&kubectl(&["get", "imagesource", name, "-n", ns, "-o", "json"])).unwrap()
}

fn condition(source: &Value, type_: &str) -> (String, String) {
    let c = source["status"]["conditions"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or(Value::Null);
    (
        c["status"].as_str().unwrap_or_default().to_string(),
        c["reason"].as_str().unwrap_or_default().to_string(),
    )
}

async fn wait_condition(ns: &str, name: &str, type_: &str, want: (&str, &str), timeout: Duration) -> Value {
    wait_for(
        &format!("ImageSource {ns}/{name}: {type_}={want:?}"),
        timeout,
        || async { condition(&source(ns, name), type_) == (want.0.to_string(), want.1.to_string()) },
    )
    .await;
    source(ns, name)
}

fn annotation(ns: &str, pod: &str, key: &str) -> Option<String> {
    let pod: Value = serde_json::from_str(&kubectl(&["get", "pod", pod, "-n", ns, "-o", "json"])).unwrap();
    pod["metadata"]["annotations"][key].as_str().map(String::from)
}

/// Tags 1.2.0, 1.2.3, 1.3.0, 1.3.0-rc.1 and latest of one repository (four distinct digests;
/// latest is 1.3.0's); a source including `1.*` and excluding `1.2.3` selects exactly 1.2.0
/// and 1.3.0 (the pre-release is left out by default). A Job catalogues both digests before
/// anything runs them (their records name the repository); pods started on 1.2.0 and 1.3.0
/// afterwards are annotated with no new Job, and their drift annotations say "behind minor,
/// newest 1.3.0" and "latest".
#[tokio::test]
async fn s1_a_source_catalogues_its_tags_before_they_run() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "sources", 1).await;
    let registry = cluster.var("REGISTRY").to_string();
    s.enable_sources(&registry);
    let ns = s.namespaces[0].clone();
    let repo = format!("e2e/source-{:08x}", rand::random::<u32>());
    let host = cluster.var("REGISTRY_HOST").to_string();
    let mut digests = std::collections::BTreeMap::new();
    for tag in ["1.2.0", "1.2.3", "1.3.0", "1.3.0-rc.1", "latest"] {
        // Each copy has a file of its own: a digest of its own.
        let image = copy_image(&cluster, "WORKLOAD_ALPHA_IMAGE", &format!("{repo}-src")).await;
        // latest is the very image of 1.3.0.
        let from = if tag == "latest" {
            format!("{host}/{repo}:1.3.0")
        } else {
            image.host_ref.clone()
        };
        push(&from, &format!("{host}/{repo}:{tag}"));
        digests.insert(tag, digest_of(&format!("{host}/{repo}:{tag}")));
    }
    assert_eq!(digests["latest"], digests["1.3.0"]);
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        ("SBOM_CACHE_TTL", "72h"),
        ("SBOM_SOURCE_REGISTRIES", &registry),
        ("SBOM_REGISTRY_LOOKUP", "false"),
        ("SBOM_REGISTRY_LOOKUP_INSECURE", &registry),
    ]);
    apply_source(
        &ns,
        "app",
        json!({"registry": registry, "repositories": [repo],
               "tags": {"include": ["1\\..*"], "exclude": ["1\\.2\\.3"]}, "interval": "1h"}),
    );
    let scanned = wait_condition(&ns, "app", "Ready", ("True", "Scanned"), 2 * MIN).await;
    let status = &scanned["status"];
    let tags: BTreeSet<&str> = status["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["1.2.0", "1.3.0"].into(), "{status}");
    assert_eq!(
        (status["tags"].as_u64(), status["digests"].as_u64()),
        (Some(2), Some(2)),
        "{status}"
    );
    assert_eq!(condition(&scanned, "Scanning"), ("False".into(), "Idle".into()));
    for i in status["images"].as_array().unwrap() {
        let tag = i["tag"].as_str().unwrap();
        assert_eq!(i["digest"], digests[tag].as_str(), "{tag}: {i}");
    }

    // Catalogued with no pod: one Job, a record per digest naming the repository.
    let jobs = s.wait_jobs(1, 2 * MIN).await;
    let job = e2e::job_name(&jobs[0]);
    assert_eq!(s.wait_job_end(&job, 3 * MIN).await.0, "Complete");
    for tag in ["1.2.0", "1.3.0"] {
        let d = &digests[tag];
        wait_for(&format!("the record of {tag} ({d})"), MIN, || async {
            !image_records(d).is_empty()
        })
        .await;
        let record = &image_records(d)[0];
        let repos = record["spec"]["repositories"].as_array().unwrap();
        assert!(
            repos.iter().any(|r| r == &json!(format!("{registry}/{repo}"))),
            "{tag}: {record}"
        );
    }
    assert!(
        image_records(&digests["1.2.3"]).is_empty(),
        "an excluded tag was catalogued"
    );
    assert!(
        image_records(&digests["1.3.0-rc.1"]).is_empty(),
        "a pre-release was catalogued"
    );
    let before = s.jobs().await.len();

    // Deployed afterwards: annotated from the records, no new Job; drift under the source.
    s.pod(&ns, "old", &[("app", &format!("{registry}/{repo}:1.2.0"))], &[])
        .await;
    s.pod(&ns, "new", &[("app", &format!("{registry}/{repo}:1.3.0"))], &[])
        .await;
    s.wait_pods_running().await;
    s.wait_all_annotated("sbomjob.io", MIN).await;
    wait_for("the drift annotations", MIN, || async {
        annotation(&ns, "old", "sbomjob.io/drift-app").is_some()
            && annotation(&ns, "new", "sbomjob.io/drift-app").is_some()
    })
    .await;
    assert_eq!(
        annotation(&ns, "old", "sbomjob.io/drift-app").as_deref(),
        Some("behind minor, newest 1.3.0")
    );
    assert_eq!(
        annotation(&ns, "new", "sbomjob.io/drift-app").as_deref(),
        Some("latest")
    );
    // And in the digest's record.
    let d = &digests["1.2.0"];
    wait_for("the drift in the record of 1.2.0", MIN, || async {
        image_records(d).iter().any(|r| r["status"]["drift"].is_array())
    })
    .await;
    let record = image_records(d)
        .into_iter()
        .find(|r| r["status"]["drift"].is_array())
        .unwrap();
    assert_eq!(
        record["status"]["drift"],
        json!([{"image": format!("{registry}/{repo}:1.2.0"), "status": "behind-minor",
                "detail": "behind minor, newest 1.3.0"}]),
        "{record}"
    );
    assert_eq!(
        s.jobs().await.len(),
        before,
        "a pod on a catalogued tag made a Job"
    );
    let m = s.metrics(0).await;
    assert_eq!(m.value(r#"sbomjob_drift_containers{status="behind-minor"}"#), 1.0);
    assert_eq!(m.value(r#"sbomjob_drift_containers{status="latest"}"#), 1.0);
    assert!(m.value(r#"sbomjob_source_scans_total{result="ok"}"#) >= 1.0);
}

/// A registry of this test's own (Debian's registry on the cluster's bridge), stopped and
/// started again on the same port and data.
struct OwnRegistry {
    addr: String,
    config: std::path::PathBuf,
    child: Option<Child>,
}

impl OwnRegistry {
    fn start(bridge_ip: &str) -> OwnRegistry {
        let port = std::net::TcpListener::bind((bridge_ip, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port on the bridge")
            .port();
        let addr = format!("{bridge_ip}:{port}");
        let dir = std::env::temp_dir().join(format!("sbomjob-e2e-registry-{port}"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: e2e\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let mut r = OwnRegistry {
            addr,
            config,
            child: None,
        };
        r.resume();
        r
    }

    fn resume(&mut self) {
        let child = Command::new("docker-registry")
            .args(["serve", self.config.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the registry on {} did not start", self.addr);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The registry stops, and the source's spec changes (a scan at once): the scan retries with
/// backoff, then the source says Failed/RegistryUnreachable, keeping what it found; the
/// operator's cycles go on (a pod started meanwhile is annotated). The registry back, the next
/// retry scans again and the source is Ready.
#[tokio::test]
async fn s2_a_registry_stopped_during_a_scan_fails_the_source_and_it_resumes() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "unreachable", 1).await;
    let bridge_ip = cluster.var("REGISTRY").split(':').next().unwrap().to_string();
    let mut own = OwnRegistry::start(&bridge_ip);
    s.enable_sources(&own.addr);
    let ns = s.namespaces[0].clone();
    let image = copy_image(&cluster, "WORKLOAD_ALPHA_IMAGE", "e2e/unreachable").await;
    for tag in ["1.0.0", "1.1.0"] {
        push(&image.host_ref, &format!("{}/team/app:{tag}", own.addr));
    }
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", cluster.var("JOB_E2E_IMAGE")),
        ("SBOM_CACHE_TTL", "72h"),
        ("SBOM_SOURCE_REGISTRIES", &own.addr),
        ("SBOM_REGISTRY_LOOKUP", "false"),
        ("SBOM_REGISTRY_LOOKUP_INSECURE", &own.addr),
    ]);
    let addr = own.addr.clone();
    let spec = |interval: &str| json!({"registry": addr, "repositories": ["team/app"], "interval": interval});
    apply_source(&ns, "own", spec("1h"));
    wait_condition(&ns, "own", "Ready", ("True", "Scanned"), 2 * MIN).await;
    let scanned_at = source(&ns, "own")["status"]["lastScanTime"].clone();

    own.stop();
    apply_source(&ns, "own", spec("2h"));
    let failed = wait_condition(&ns, "own", "Failed", ("True", "RegistryUnreachable"), 2 * MIN).await;
    let status = &failed["status"];
    assert_eq!(condition(&failed, "Ready").0, "False");
    assert_eq!(status["tags"], 2, "the last good scan is kept: {status}");
    assert_eq!(status["lastScanTime"], scanned_at, "{status}");
    let message = status["conditions"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&addr) && message.contains("attempts"),
        "{message}"
    );
    let m = s.metrics(0).await;
    assert!(
        m.value("sbomjob_source_scan_retries_total") >= 1.0,
        "no retry counted"
    );
    assert!(m.value(r#"sbomjob_source_scans_total{result="failed"}"#) >= 1.0);

    // The operator goes on: a pod started now (another image: the source's digest backs off,
    // its Job could not pull it from the stopped registry) is catalogued and annotated.
    let other = copy_image(&cluster, "WORKLOAD_ALPHA_IMAGE", "e2e/unreachable").await;
    s.pod(&ns, "meanwhile", &[("app", &other.tagged)], &[]).await;
    s.wait_pods_running().await;
    s.wait_all_annotated("sbomjob.io", 3 * MIN).await;

    own.resume();
    let back = wait_condition(&ns, "own", "Ready", ("True", "Scanned"), 3 * MIN).await;
    assert_eq!(condition(&back, "Failed").0, "False");
    assert_ne!(back["status"]["lastScanTime"], scanned_at);
}
