//! Reliability and security scenarios, against the real local cluster (e2e/cluster), one at a
//! time; run by hack/test.sh (`make test`), this file alone:
//! `cargo test -p sbomjob-e2e --test reliability -- --test-threads=1`.
//!
//! Most use simulated pods (e2e/src/sim.rs): real pod objects on a node object of the test's
//! own, whose status the test writes, so a pod can report an imageID no kubelet would, and a
//! Job's pod ends exactly when the test says. The last one runs a real job image against the
//! registry with basic auth. Every cluster scenario ends with the no-credential-left checks.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use e2e::{
    AnnotationRecorder, CYCLES_ERROR, CYCLES_OK, Cluster, SKOPEO_INSPECT, Scenario,
    assert_no_credentials_left, job_end, job_name, restart_apiserver,
    sim::{self, SimContainer, SimNode, sim_pods},
    skopeo_job_image, wait_for, workspace_bin,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use sbomjob_contract::termination::Report;

const PREFIX: &str = "sbomjob.io";
const MIN: Duration = Duration::from_secs(60);
/// The job image of scenarios whose Job pods the test ends itself (on a simulated node): no
/// kubelet ever pulls it.
const NEVER_PULLED: &str = "10.244.0.1:5000/sbomjob/never-pulled:1.0";

fn env<'a>(node: &'a [(String, String)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    node.iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(more.iter().copied())
        .collect()
}

/// Waits for the scenario's Jobs to end Complete (their pods ended by the test).
async fn wait_complete(s: &Scenario, n: usize) {
    wait_for(&format!("{n} Job(s) Complete"), 2 * MIN, || async {
        let jobs = s.jobs().await;
        jobs.len() >= n
            && jobs
                .iter()
                .all(|j| job_end(j).is_some_and(|(t, _)| t == "Complete"))
    })
    .await;
}

/// Pods (name, imageID) whose annotation is not their imageID.
async fn unannotated(s: &Scenario) -> Vec<(String, String, String, Option<String>)> {
    s.annotations(PREFIX)
        .await
        .into_iter()
        .filter(|(_, _, id, v)| v.as_deref() != Some(id.as_str()))
        .collect()
}

/// 1. The API server stops for 15 s while a cycle waits for its Job: the cycle completes after
/// it, there is no second Job, and every pod is annotated once the next cycle ran.
#[tokio::test]
async fn r1_apiserver_restart_mid_cycle() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "rel-apirestart", 1).await;
    let node = SimNode::create(&s.client, &s.name).await;
    let ns = s.namespaces[0].clone();
    sim_pods(&s.client, &ns, &node.name, "e2e/rel-restart", 20, 5).await;
    let node_env = node.operator_env();
    s.start_operator(&env(&node_env, &[("SBOM_JOB_IMAGE", NEVER_PULLED)]));
    let jobs = s.wait_jobs(1, 2 * MIN).await;
    let job = job_name(&jobs[0]);
    // The cycle now waits for the Job, whose pod only the test can end.
    sim::wait_job_pod(&s.client, &s.job_ns, MIN).await;

    restart_apiserver(&s.client, Duration::from_secs(15)).await;

    let ended = sim::finish_job_pods(&s.client, &s.job_ns, &node.name)
        .await
        .expect("ending the job pod");
    assert_eq!(ended, 1);
    assert_eq!(s.wait_job_end(&job, 2 * MIN).await.0, "Complete");
    s.wait_all_annotated(PREFIX, 2 * MIN).await;
    // The next cycle (10 s interval; one retried after an error comes within 30 s) ends
    // without an error, and makes no Job.
    let before = s.metric(0, CYCLES_OK).await;
    s.wait_metric(0, CYCLES_OK, before + 1.0, 2 * MIN).await;
    let jobs = s.jobs().await;
    assert_eq!(
        jobs.len(),
        1,
        "a second Job was created: {:?}",
        jobs.iter().map(|j| &j.metadata.name).collect::<Vec<_>>()
    );
    assert!(unannotated(&s).await.is_empty());
    assert_no_credentials_left(&s, 1, &[]).await;
}

/// 2. The operator is killed while it annotates after its Job completed: the next operator
/// finishes the Job's bookkeeping, annotates every pod exactly once and makes no new Job.
#[tokio::test]
async fn r2_operator_killed_between_complete_and_annotated() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "rel-kill", 2).await;
    let node = SimNode::create(&s.client, &s.name).await;
    let mut total = 0;
    for ns in s.namespaces.clone() {
        total += sim_pods(&s.client, &ns, &node.name, "e2e/rel-kill", 150, 30)
            .await
            .len();
    }
    let recorder = AnnotationRecorder::start(&s.client, &s.namespaces, &format!("{PREFIX}/app"));
    let node_env = node.operator_env();
    let settings = env(&node_env, &[("SBOM_JOB_IMAGE", NEVER_PULLED)]);
    s.start_operator(&settings);
    let job = job_name(&s.wait_jobs(1, 2 * MIN).await[0]);
    sim::wait_job_pod(&s.client, &s.job_ns, MIN).await;
    sim::finish_job_pods(&s.client, &s.job_ns, &node.name)
        .await
        .expect("ending the job pod");
    // Kill at the first annotation seen: the Job is Complete, the annotating has begun.
    let start = Instant::now();
    while recorder.annotated() == 0 {
        assert!(
            start.elapsed() < 2 * MIN,
            "no pod was annotated after the Job completed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.kill_operator(0);
    let at_kill = recorder.annotated();
    eprintln!("operator killed with {at_kill} of {total} pods annotated");
    assert!(
        at_kill < total,
        "the kill came after the annotating: all {total} pods were annotated when it landed"
    );
    // The watch may lag; the API server's state after the kill (the process is gone) must also
    // leave pods for the next operator, or the scenario tests nothing.
    let left = unannotated(&s).await.len();
    assert!(
        left > 0,
        "the kill came after the annotating: no pod was left unannotated ({at_kill} of {total} seen by the watch)"
    );
    assert_eq!(s.wait_job_end(&job, MIN).await.0, "Complete");

    s.start_operator(&settings);
    s.wait_all_annotated(PREFIX, 2 * MIN).await;
    // A cycle of the restarted operator ended (the one that finished the adopted Job), and it
    // made no Job.
    s.wait_metric(1, CYCLES_OK, 1.0, 2 * MIN).await;
    assert_eq!(s.jobs().await.len(), 1, "the restarted operator made a new Job");
    let jobs = s.jobs().await;
    let labels = jobs[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("sbomjob.io/state").map(String::as_str),
        Some("done"),
        "the adopted Job was not marked done"
    );
    // Exactly once: each pod's annotation went from absent to its imageID, and never changed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let twice = recorder.set_more_than_once();
    assert!(twice.is_empty(), "annotated more than once: {twice:?}");
    assert_eq!(recorder.annotated(), total);
    assert!(unannotated(&s).await.is_empty());
    assert_no_credentials_left(&s, 2, &[]).await;
}

async fn secret(s: &Scenario, ns: &str, name: &str, type_: &str, key: &str, value: &str) {
    let api: Api<Secret> = Api::namespaced(s.client.clone(), ns);
    let obj = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some(type_.into()),
        string_data: Some([(key.to_string(), value.to_string())].into()),
        ..Default::default()
    };
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("creating secret {ns}/{name}: {e}"));
}

/// 3. Bad input does not stop the cycle: an unparsable imageID (skipped, with a Warning on its
/// pod naming it), a pull secret that does not exist, one of the wrong type, one whose JSON is
/// not a docker config (each named by a Warning on its pod). The other images are processed (without those credentials: the Job's
/// config holds none) and annotated.
#[tokio::test]
async fn r3_bad_input_is_logged_and_the_cycle_goes_on() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "rel-badinput", 1).await;
    let node = SimNode::create(&s.client, &s.name).await;
    let ns = s.namespaces[0].clone();
    let password = "bad-input-pw-7Qx93kd";
    // For the images' own registry: were these secrets used, their credentials would be in the
    // Job's config.
    let auth =
        format!("{{\"auths\":{{\"10.244.0.1:5000\":{{\"username\":\"u\",\"password\":\"{password}\"}}}}}}");
    secret(&s, &ns, "opaque-secret", "Opaque", ".dockerconfigjson", &auth).await;
    // Valid JSON (the API server checks that much), but no docker config: the registry maps to
    // the base64 `user:password` string instead of an object with an `auth` key.
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("u:{password}"));
    secret(
        &s,
        &ns,
        "broken-json",
        "kubernetes.io/dockerconfigjson",
        ".dockerconfigjson",
        &format!("{{\"auths\": {{\"10.244.0.1:5000\": \"{encoded}\"}}}}"),
    )
    .await;
    let id = |k| e2e::sim::sim_image_id("e2e/rel-bad", k);
    let pods: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "bad-imageid",
            "10.244.0.1:5000/e2e/rel-bad@sha256:not-a-digest".to_string(),
            vec![],
        ),
        ("missing-secret", id(1), vec!["does-not-exist"]),
        ("wrong-type", id(2), vec!["opaque-secret"]),
        ("bad-json", id(3), vec!["broken-json"]),
        ("good", id(4), vec![]),
    ];
    for (name, image_id, secrets) in &pods {
        let c = SimContainer::new("app", "10.244.0.1:5000/e2e/rel-bad:1.0", image_id);
        let pod = sim::pod(&ns, name, &node.name, std::slice::from_ref(&c), secrets);
        sim::start_pod(&s.client, &pod, &[c]).await.expect("starting pod");
    }
    let node_env = node.operator_env();
    s.start_operator(&env(&node_env, &[("SBOM_JOB_IMAGE", NEVER_PULLED)]));
    let job = job_name(&s.wait_jobs(1, 2 * MIN).await[0]);
    sim::wait_job_pod(&s.client, &s.job_ns, MIN).await;
    // While the Job's pod waits for the test: its config has the four well-formed images, one
    // per pod, none with a credential (the three bad pull secrets gave none).
    let config = s.job_config(&job).await;
    let mut pods: Vec<&str> = config
        .iter()
        .flat_map(|e| e.pods.iter().map(|p| p.pod.as_str()))
        .collect();
    pods.sort();
    assert_eq!(
        pods,
        ["bad-json", "good", "missing-secret", "wrong-type"],
        "{config:?}"
    );
    for e in &config {
        assert!(
            e.registry_host.is_empty() && e.registry_user.is_empty() && e.registry_password.is_empty(),
            "a credential in the config for {}: {e:?}",
            e.image
        );
    }
    sim::finish_job_pods(&s.client, &s.job_ns, &node.name)
        .await
        .expect("ending the job pod");
    wait_complete(&s, 1).await;
    wait_for("the four good images annotated", 2 * MIN, || async {
        let a = s.annotations(PREFIX).await;
        a.iter()
            .filter(|(_, _, id, v)| v.as_deref() == Some(id.as_str()))
            .count()
            == 4
    })
    .await;
    // The cycle went on to the next one, which again skips the bad pod and creates no Job: two
    // cycles ended (the one that waited for the Job, then one with nothing to do).
    s.wait_metric(0, CYCLES_OK, 2.0, 2 * MIN).await;
    // The bad imageID is named where `kubectl describe pod` shows it: one Warning.
    let events = s.events_of("bad-imageid").await;
    let skipped: Vec<_> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("ImageSkipped"))
        .collect();
    assert_eq!(skipped.len(), 1, "{events:?}");
    assert_eq!(skipped[0].type_.as_deref(), Some("Warning"));
    assert!(
        skipped[0]
            .note
            .as_deref()
            .is_some_and(|n| n.contains("not-a-digest")),
        "{skipped:?}"
    );
    // Each unusable pull secret is named on the pod that uses it, once, with why, never a value.
    for (pod, secret, why) in [
        ("missing-secret", "does-not-exist", "does not exist"),
        ("wrong-type", "opaque-secret", "has type \"Opaque\""),
        ("bad-json", "broken-json", "is not an object"),
    ] {
        let events = s.events_of(pod).await;
        let unusable: Vec<_> = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("PullSecretUnusable"))
            .collect();
        assert_eq!(unusable.len(), 1, "{pod}: {events:?}");
        let note = unusable[0].note.as_deref().unwrap_or_default();
        assert!(
            note.contains(&format!("{ns}/{secret}")) && note.contains(why),
            "{pod}: {note}"
        );
        assert!(
            !note.contains(password) && !note.contains(&encoded),
            "{pod}: {note}"
        );
    }
    let bad = s
        .annotations(PREFIX)
        .await
        .into_iter()
        .find(|(_, pod, _, _)| pod == "bad-imageid")
        .expect("the bad pod");
    assert_eq!(bad.3, None, "the pod with an unparsable imageID was annotated");
    assert_eq!(s.jobs().await.len(), 1);
    assert_no_credentials_left(&s, 1, &[password, &encoded]).await;
}

/// 4. A namespace selector that matches nothing: cycle after cycle ends without an error and
/// creates nothing, though a pod runs in a namespace labelled for the scenario (which the
/// default selector of the scenario's operators would pick).
#[tokio::test]
async fn r4_namespace_selector_matching_nothing() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "rel-nomatch", 1).await;
    let ns = s.namespaces[0].clone();
    s.run_app_pod(&ns, "unselected", "WORKLOAD_ALPHA_IMAGE", &[])
        .await;
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", NEVER_PULLED),
        (
            "SBOM_NAMESPACE_LABEL_SELECTOR",
            "sbomjob-e2e/nothing=matches-this",
        ),
        ("SBOM_INTERVAL", "3s"),
    ]);
    let metrics = s.wait_metric(0, CYCLES_OK, 3.0, MIN).await;
    assert_eq!(metrics.value(CYCLES_ERROR), 0.0, "{metrics:?}");
    assert!(s.jobs().await.is_empty());
    assert_eq!(
        s.annotations(PREFIX)
            .await
            .iter()
            .filter(|a| a.3.is_some())
            .count(),
        0,
        "a pod of an unselected namespace was annotated"
    );
    assert_no_credentials_left(&s, 1, &[]).await;
}

/// 5. An invalid cron string is a start-up error: exit code 2 (a bad setting), where the same
/// settings with a valid cron string get past the settings (exit 1: no Kubernetes client
/// configuration here). Neither panics (101).
#[tokio::test]
async fn r5_invalid_cron_is_a_startup_error() {
    let dir = tempdir("cron");
    let run = |cron: &str| {
        Command::new(workspace_bin("sbomjob-operator"))
            .env_clear()
            .env("HOME", &dir)
            .env("KUBECONFIG", dir.join("no-kubeconfig"))
            .env("POD_NAMESPACE", "sbomjob")
            .env("SBOM_JOB_IMAGE", "registry.example/job:1")
            .env("SBOM_CRON", cron)
            .output()
            .expect("running the operator")
    };
    let good = run("0 30 2 * * *");
    assert_eq!(
        good.status.code(),
        Some(1),
        "a valid SBOM_CRON: {}",
        String::from_utf8_lossy(&good.stderr)
    );
    let bad = run("bad");
    assert_eq!(
        bad.status.code(),
        Some(2),
        "SBOM_CRON=bad: {}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn entrypoint() -> PathBuf {
    workspace_bin("sbomjob-entrypoint")
}

/// Runs the entrypoint on `config`; its per-image report goes to `dir/termination-log`, which
/// is removed first.
fn run_entrypoint(config: &Path, command: &str, dir: &Path) -> std::process::Output {
    let _ = std::fs::remove_file(termination_log(dir));
    Command::new(entrypoint())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TMPDIR", dir)
        .env("ENTRYPOINT_CONFIG", config)
        .env("ENTRYPOINT_COMMAND", command)
        .env("ENTRYPOINT_TERMINATION_LOG", termination_log(dir))
        .output()
        .expect("running the entrypoint")
}

fn termination_log(dir: &Path) -> PathBuf {
    dir.join("termination-log")
}

/// The per-image report of the last [`run_entrypoint`] in `dir` (`None`: none was written).
fn report(dir: &Path) -> Option<Report> {
    let text = std::fs::read_to_string(termination_log(dir)).ok()?;
    Some(Report::parse(&text).unwrap_or_else(|| panic!("not a per-image report: {text:?}")))
}

/// 6. A 5 MB image-config.json: the entrypoint succeeds (or fails cleanly), never crashes; a
/// 5 MB file that is not JSON is a usage error (exit 2).
#[tokio::test]
async fn r6_entrypoint_with_a_5_mb_config() {
    let dir = tempdir("5mb");
    let pods: Vec<serde_json::Value> = (0..8_000)
        .map(|i| serde_json::json!({"pod": format!("pod-{i:06}-abcdefghij"), "namespace": format!("namespace-{:04}", i % 500), "cluster": "e2e-reliability"}))
        .collect();
    let images: Vec<serde_json::Value> = (0..8)
        .map(|k| {
            serde_json::json!({
                "registry-host": "", "registry-user": "", "registry-password": "",
                "image": e2e::sim::sim_image_id("e2e/big", k),
                "pods": pods,
            })
        })
        .collect();
    let config = dir.join("image-config.json");
    std::fs::write(&config, serde_json::to_vec(&images).unwrap()).unwrap();
    let size = std::fs::metadata(&config).unwrap().len();
    assert!(size >= 5_000_000, "config is only {size} bytes");
    let out = run_entrypoint(&config, "true {digest}", &dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{}", &text[..text.len().min(4000)]);
    assert_eq!(
        report(&dir),
        Some(Report {
            n: 8,
            ok: (0..8).collect(),
            failed: vec![]
        })
    );

    // The same size, cut in the middle: not JSON, a usage error before any image runs (no
    // report), where the whole file ran above.
    let bytes = std::fs::read(&config).unwrap();
    std::fs::write(&config, &bytes[..bytes.len() - 100]).unwrap();
    let out = run_entrypoint(&config, "true", &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(report(&dir), None, "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// 7. A template with an unknown placeholder: exit 2 before anything runs.
#[tokio::test]
async fn r7_entrypoint_unknown_placeholder() {
    let dir = tempdir("placeholder");
    let config = dir.join("image-config.json");
    std::fs::write(
        &config,
        serde_json::json!([{"registry-host": "", "registry-user": "", "registry-password": "",
            "image": "10.244.0.1:5000/workload/alpha:1.0", "pods": []}])
        .to_string(),
    )
    .unwrap();
    let marker = dir.join("ran");
    let ran = || -> Vec<_> {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("ran"))
            .collect()
    };
    // The same command with a known placeholder runs: only `{nope}` makes the difference.
    let out = run_entrypoint(&config, &format!("touch {}-{{tag}}", marker.display()), &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(ran().len(), 1, "the command with {{tag}} did not run");
    std::fs::remove_file(ran()[0].path()).unwrap();

    let out = run_entrypoint(&config, &format!("touch {}-{{nope}}", marker.display()), &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(ran().is_empty(), "the command ran");
    assert_eq!(report(&dir), None, "a report, though no image ran: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sbomjob-reliability-{what}-{:08x}",
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// 8. A real job with registry credentials (the auth registry's image, an imagePullSecret):
/// the Secret is gone after the Job, the job pod has no service-account token, and the
/// password appears in no log line (operator at debug level, job pod), spec or event.
#[tokio::test]
async fn r8_no_credential_left_behind() {
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "rel-creds", 1).await;
    let ns = s.namespaces[0].clone();
    let (user, password) = (
        cluster.var("REGISTRY_AUTH_USER"),
        cluster.var("REGISTRY_AUTH_PASSWORD"),
    );
    s.pull_secret(&ns, "auth-registry", cluster.var("REGISTRY_AUTH"), user, password)
        .await;
    s.run_app_pod(&ns, "private", "WORKLOAD_DELTA_IMAGE", &["auth-registry"])
        .await;
    s.start_operator(&[
        ("SBOM_JOB_IMAGE", skopeo_job_image(&cluster)),
        ("SBOM_JOB_ENTRYPOINT_COMMAND", SKOPEO_INSPECT),
        ("SBOM_JOB_ENTRYPOINT_LOG_LEVEL", "debug"),
    ]);
    let job = job_name(&s.wait_jobs(1, 2 * MIN).await[0]);
    assert_eq!(
        s.wait_job_end(&job, 3 * MIN).await.0,
        "Complete",
        "{}",
        s.job_logs(&job).await
    );
    s.wait_all_annotated(PREFIX, MIN).await;
    assert_eq!(
        s.job_report(&job).await,
        Report {
            n: 1,
            ok: vec![0],
            failed: vec![]
        }
    );
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    assert_no_credentials_left(&s, 1, &[password, &auth]).await;
}

/// 9. The API server stops for longer than `SBOM_HEALTH_TIMEOUT`: the pod watch fails, and
/// `/healthz` answers 503 (the kubelet would restart the operator) while `/readyz` and the
/// process stay up; once the API server is back and the watch delivers, `/healthz` is 200 again.
#[tokio::test]
async fn r9_healthz_fails_while_the_watch_is_down_and_recovers() {
    use std::sync::{Arc, Mutex};
    let cluster = Cluster::connect().await;
    let mut s = Scenario::new(&cluster, "rel-health", 1).await;
    s.start_operator(&[("SBOM_JOB_IMAGE", NEVER_PULLED), ("SBOM_HEALTH_TIMEOUT", "10s")]);
    let addr = s.admin_addr(0).await;
    let status = |addr: &str| e2e::operator::try_http_get(addr, "/healthz");
    assert_eq!(status(&addr).map(|r| r.0).ok(), Some(200));
    // Watch /healthz from a thread while the API server is down.
    let seen: Arc<Mutex<Vec<(u16, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (seen, stop, addr) = (seen.clone(), stop.clone(), addr.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(r) = e2e::operator::try_http_get(&addr, "/healthz") {
                    seen.lock().unwrap().push(r);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    restart_apiserver(&s.client, Duration::from_secs(45)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    poller.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    let unhealthy: Vec<&(u16, String)> = seen.iter().filter(|(code, _)| *code == 503).collect();
    assert!(
        !unhealthy.is_empty(),
        "/healthz never failed while the API server was down: {seen:?}"
    );
    assert!(
        unhealthy[0].1.contains("watch has been failing"),
        "the reason names the failing watch: {:?}",
        unhealthy[0]
    );
    wait_for("/healthz 200 again", 2 * MIN, || {
        let ok = status(&addr).is_ok_and(|(code, _)| code == 200);
        std::future::ready(ok)
    })
    .await;
}
