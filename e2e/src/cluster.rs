//! The running local cluster (`e2e/cluster/cluster.sh up`): the client from `KUBECONFIG`, the
//! images the build pushed (`images.env`), kubectl for the harness's own setup, waits with a
//! timeout, the workspace's binaries, and the one fault the suite injects into the cluster
//! itself (an API server restart).

use std::{
    collections::BTreeMap,
    ffi::OsString,
    future::Future,
    os::unix::ffi::OsStringExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client, api::ListParams};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How the suite is run, for the panics that find no cluster.
pub const HOW_TO_RUN: &str = "the e2e suite runs from hack/test.sh (`make test`), which starts the cluster; \
     by hand: `e2e/cluster/cluster.sh up`, `eval \"$(e2e/cluster/cluster.sh env)\"`, `e2e/images/build.sh`, \
     then `cargo test -p sbomjob-e2e --test <file> -- --test-threads=1`";

/// The running local cluster, as `e2e/cluster/cluster.sh env` describes it.
pub struct Cluster {
    pub client: Client,
    /// `images.env`: every image the build pushed (`WORKLOAD_ALPHA_IMAGE`, ..., `*_DIGEST`),
    /// plus the registries' addresses and the test registry's user and password.
    pub vars: BTreeMap<String, String>,
}

impl Cluster {
    /// Connects with `KUBECONFIG` and reads `SBOMJOB_IMAGES_ENV`. Panics with a hint when the
    /// cluster is not up ([`HOW_TO_RUN`]): plain `cargo test` does not start it.
    pub async fn connect() -> Arc<Cluster> {
        let path = std::env::var("SBOMJOB_IMAGES_ENV")
            .unwrap_or_else(|_| panic!("SBOMJOB_IMAGES_ENV unset: {HOW_TO_RUN}"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}: {HOW_TO_RUN}"));
        let vars = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let client = Client::try_default()
            .await
            .unwrap_or_else(|e| panic!("connecting to the cluster: {e}: {HOW_TO_RUN}"));
        Arc::new(Cluster { client, vars })
    }

    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in images.env (was e2e/images/build.sh run?)"))
    }

    /// `repo@sha256:...` of a pushed image, as a container's imageID reports it.
    pub fn pinned(&self, image_var: &str) -> String {
        let image = self.var(image_var);
        let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
        format!("{repo}@{}", self.var(&format!("{image_var}_DIGEST")))
    }
}

/// A job command that runs skopeo against the registry: a real pull of the image's manifest
/// and config.
pub const SKOPEO_INSPECT: &str = "skopeo inspect --tls-verify=false docker://{reference}";

/// A job image with skopeo: the skopeo preset's, else the e2e image (which has it too).
pub fn skopeo_job_image(cluster: &Cluster) -> &str {
    ["JOB_SKOPEO_IMAGE", "JOB_E2E_IMAGE"]
        .iter()
        .find_map(|v| cluster.vars.get(*v))
        .map(String::as_str)
        .expect("neither JOB_SKOPEO_IMAGE nor JOB_E2E_IMAGE is in images.env (run e2e/images/build.sh)")
}

/// The workspace root (the parent of `e2e/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Path of a binary of this workspace; hack/test.sh builds them (`cargo build`, `cargo test`)
/// before the suite.
pub fn workspace_bin(name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    let bin = target.join("debug").join(name);
    assert!(
        bin.exists(),
        "{} is missing: cargo build -p sbomjob-operator -p sbomjob-job-image first",
        bin.display()
    );
    bin
}

/// Polls `check` every second until it holds; panics (and so dumps diagnostics) on timeout.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs kubectl for the harness's own setup, which must succeed: panics with its stderr
/// otherwise; returns its trimmed stdout.
pub fn kubectl(args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .args(args)
        .output()
        .expect("running kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

/// Runs kubectl for cleanup: its outcome and output do not matter.
pub(crate) fn kubectl_quiet(args: &[&str]) {
    let _ = Command::new("kubectl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
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

/// A settings value only this run's operators have (`SBOM_JOB_E2E_RUN`, forwarded to the job,
/// so part of the settings hash): records of other runs and files never count for them.
pub fn unique_identity() -> (&'static str, String) {
    ("SBOM_JOB_E2E_RUN", format!("{:08x}", rand::random::<u32>()))
}
