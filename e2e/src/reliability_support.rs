//! Helpers of the reliability and security suite (tests/reliability.rs): a simulated node per
//! scenario, simulated workload pods, an API server restart, a recorder of annotation changes,
//! and the "no credential left behind" checks.

use std::{
    collections::HashMap,
    ffi::OsString,
    os::unix::ffi::OsStringExt,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Event, Namespace, Pod},
};
use kube::{
    Api, Client,
    api::{ListParams, LogParams},
    runtime::{WatchStreamExt, watcher},
};

use crate::{
    Scenario, job_name,
    sim::{self, SimContainer},
    wait_for,
};

/// A simulated node for one scenario, deleted when dropped.
pub struct SimNode {
    pub name: String,
}

impl SimNode {
    pub async fn create(client: &Client, scenario: &str) -> SimNode {
        let name = format!("sbomjob-e2e-sim-{scenario}");
        sim::ensure_node(client, &name)
            .await
            .unwrap_or_else(|e| panic!("creating node {name}: {e}"));
        SimNode { name }
    }

    /// Operator settings that put its Job pods on this node, where only the test ends them.
    pub fn operator_env(&self) -> Vec<(String, String)> {
        let (tolerations, selector) = sim::job_settings(&self.name);
        vec![
            ("SBOM_JOB_NODE_SELECTOR".into(), selector),
            ("SBOM_JOB_TOLERATIONS".into(), tolerations),
        ]
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .args(["delete", "node", "--wait=false", "--ignore-not-found", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A well-formed imageID of a simulated image `k` (nothing pulls it).
pub fn sim_image_id(repo: &str, k: usize) -> String {
    format!("10.244.0.1:5000/{repo}@sha256:{}", sim::fake_digest(k))
}

/// `count` Running pods `app-<i>` in `ns` on `node`, container `app`, `digests` distinct
/// imageIDs; returns (pod name, imageID).
pub async fn sim_pods(
    client: &Client,
    ns: &str,
    node: &str,
    repo: &str,
    count: usize,
    digests: usize,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pods = Vec::new();
    for i in 0..count {
        let id = sim_image_id(repo, i % digests);
        let image = format!("{}:1.0", id.split('@').next().unwrap_or_default());
        let c = SimContainer::new("app", &image, &id);
        let name = format!("app-{i:04}");
        pods.push((sim::pod(ns, &name, node, std::slice::from_ref(&c), &[]), vec![c]));
        out.push((name, id));
    }
    sim::start_pods(client, pods, 8)
        .await
        .unwrap_or_else(|e| panic!("starting simulated pods in {ns}: {e}"));
    out
}

fn state_dir() -> PathBuf {
    PathBuf::from(std::env::var("SBOMJOB_CLUSTER_DIR").unwrap_or_else(|_| "/tmp/sbomjob-cluster".into()))
}

fn proc_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            rest.split_whitespace().next().map(|st| st != "Z" && st != "X")
        })
        .unwrap_or(false)
}

fn split_nul(bytes: Vec<u8>) -> Vec<OsString> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| OsString::from_vec(s.to_vec()))
        .collect()
}

/// Stops the shared cluster's kube-apiserver (SIGTERM) for `down`, then starts it again with the
/// same command line and environment, detached (its own session) and logging to the same file,
/// and records the new pid where e2e/cluster/cluster.sh looks for it. Returns when the API
/// answers again.
pub async fn restart_apiserver(client: &Client, down: Duration) {
    let state = state_dir();
    let pid_file = state.join("pids/kube-apiserver.pid");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", pid_file.display()))
        .trim()
        .parse()
        .expect("a pid");
    let argv = split_nul(std::fs::read(format!("/proc/{pid}/cmdline")).expect("apiserver cmdline"));
    assert!(
        argv.first()
            .is_some_and(|a| a.to_string_lossy().ends_with("kube-apiserver")),
        "pid {pid} is not the kube-apiserver: {argv:?}"
    );
    let env: Vec<(OsString, OsString)> =
        split_nul(std::fs::read(format!("/proc/{pid}/environ")).expect("environ"))
            .into_iter()
            .filter_map(|kv| {
                let bytes = kv.into_vec();
                let eq = bytes.iter().position(|b| *b == b'=')?;
                Some((
                    OsString::from_vec(bytes[..eq].to_vec()),
                    OsString::from_vec(bytes[eq + 1..].to_vec()),
                ))
            })
            .collect();
    eprintln!("stopping kube-apiserver (pid {pid}) for {down:?}");
    let stopped_at = Instant::now();
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    // A graceful stop waits up to 60 s for open watch streams to end (seen in CI: "Failed to
    // shutdown server: context deadline exceeded"); after 10 s the server is killed, as a
    // crash would end it.
    let mut killed = false;
    while proc_running(pid) {
        if !killed && stopped_at.elapsed() > Duration::from_secs(10) {
            eprintln!("kube-apiserver still running 10 s after SIGTERM: SIGKILL");
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            killed = true;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(40),
            "kube-apiserver (pid {pid}) did not stop even after SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(down.saturating_sub(stopped_at.elapsed())).await;
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(state.join("logs/kube-apiserver.log"))
        .expect("apiserver log");
    // setsid(1) execs in place (the child is no process-group leader): the child's pid is the
    // server's. Never waited for: the server outlives the test, as cluster.sh's daemons do.
    #[allow(clippy::zombie_processes)]
    let child = Command::new("setsid")
        .args(&argv)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("starting kube-apiserver");
    let new_pid = child.id();
    std::fs::write(&pid_file, format!("{new_pid}\n")).expect("writing the pid file");
    eprintln!("kube-apiserver started again (pid {new_pid})");
    let api: Api<Namespace> = Api::all(client.clone());
    wait_for(
        "kube-apiserver to answer again",
        Duration::from_secs(120),
        || async { api.list_metadata(&ListParams::default().limit(1)).await.is_ok() },
    )
    .await;
    let ready = || {
        Command::new("kubectl")
            .args(["get", "--raw", "/readyz"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    wait_for("kube-apiserver /readyz", Duration::from_secs(120), || async {
        ready()
    })
    .await;
}

/// Every value the annotation `key` took on each pod of `namespaces`, in order, as a watch saw
/// them (`None`: absent). Runs until dropped.
pub struct AnnotationRecorder {
    pub values: Arc<Mutex<HashMap<String, Vec<Option<String>>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl AnnotationRecorder {
    pub fn start(client: &Client, namespaces: &[String], key: &str) -> AnnotationRecorder {
        let values: Arc<Mutex<HashMap<String, Vec<Option<String>>>>> = Arc::default();
        let tasks = namespaces
            .iter()
            .map(|ns| {
                let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                let (values, key, ns) = (values.clone(), key.to_string(), ns.clone());
                tokio::spawn(async move {
                    let mut events = std::pin::pin!(
                        watcher(api, watcher::Config::default())
                            .default_backoff()
                            .applied_objects()
                    );
                    while let Some(ev) = events.next().await {
                        let Ok(pod) = ev else { continue };
                        let value = pod
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(&key))
                            .cloned();
                        let name = format!("{ns}/{}", pod.metadata.name.unwrap_or_default());
                        let mut map = values.lock().expect("lock");
                        let seen = map.entry(name).or_default();
                        if seen.last() != Some(&value) {
                            seen.push(value);
                        }
                    }
                })
            })
            .collect();
        AnnotationRecorder { values, tasks }
    }

    /// Pods whose annotation is set now.
    pub fn annotated(&self) -> usize {
        self.values
            .lock()
            .expect("lock")
            .values()
            .filter(|v| v.last().is_some_and(Option::is_some))
            .count()
    }

    /// Pods whose annotation was set (or changed) more than once.
    pub fn set_more_than_once(&self) -> Vec<(String, Vec<Option<String>>)> {
        self.values
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, v)| v.iter().filter(|x| x.is_some()).count() > 1)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Drop for AnnotationRecorder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Waits until the operator's log contains `needle` `times` times.
pub async fn wait_log(s: &Scenario, operator: usize, needle: &str, times: usize, timeout: Duration) {
    wait_for(
        &format!("operator {operator} to log {needle:?} {times} time(s)"),
        timeout,
        || async { s.operator_log(operator).matches(needle).count() >= times },
    )
    .await;
}

/// The checks after every scenario: no Secret of ours left in the job namespace, Job pods
/// without a service-account token, and none of `secrets` in the operators' logs, the Job pods'
/// logs, the Jobs' and pods' specs, or the events of the scenario's namespaces.
pub async fn assert_no_credentials_left(s: &Scenario, operators: usize, secrets: &[&str]) {
    wait_for(
        &format!("no Secret of ours left in {}", s.job_ns),
        Duration::from_secs(90),
        || async { s.secrets().await.is_empty() },
    )
    .await;

    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.job_ns);
    let job_pods = pods
        .list(&ListParams::default().labels("job-name"))
        .await
        .expect("listing job pods")
        .items;
    for p in &job_pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        let spec = p.spec.as_ref().expect("pod spec");
        assert_eq!(
            spec.automount_service_account_token,
            Some(false),
            "job pod {name} mounts a service-account token"
        );
        for v in spec.volumes.iter().flatten() {
            let projected_token = v.projected.as_ref().is_some_and(|pr| {
                pr.sources
                    .iter()
                    .flatten()
                    .any(|src| src.service_account_token.is_some())
            });
            assert!(
                !projected_token && !v.name.starts_with("kube-api-access"),
                "job pod {name} has a service-account token volume {}",
                v.name
            );
        }
        for c in &spec.containers {
            for m in c.volume_mounts.iter().flatten() {
                assert!(
                    !m.mount_path.starts_with("/var/run/secrets/kubernetes.io"),
                    "job pod {name} mounts {}",
                    m.mount_path
                );
            }
        }
    }

    let mut texts: Vec<(String, String)> = Vec::new();
    for n in 0..operators {
        texts.push((format!("operator {n} log"), s.operator_log(n)));
    }
    for p in &job_pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        texts.push((
            format!("job pod {name} spec"),
            serde_json::to_string(p).expect("pod json"),
        ));
        if let Ok(logs) = pods.logs(&name, &LogParams::default()).await {
            texts.push((format!("job pod {name} log"), logs));
        }
    }
    let jobs: Api<Job> = Api::namespaced(s.client.clone(), &s.job_ns);
    for j in jobs
        .list(&ListParams::default())
        .await
        .expect("listing jobs")
        .items
    {
        texts.push((
            format!("Job {}", job_name(&j)),
            serde_json::to_string(&j).expect("job json"),
        ));
    }
    for ns in std::iter::once(&s.job_ns).chain(&s.namespaces) {
        let events: Api<Event> = Api::namespaced(s.client.clone(), ns);
        let list = events.list(&ListParams::default()).await.expect("listing events");
        texts.push((
            format!("events of {ns}"),
            serde_json::to_string(&list.items).expect("events json"),
        ));
    }
    for (what, text) in &texts {
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "a credential ({} chars) appears in the {what}",
                secret.len()
            );
        }
    }
}
