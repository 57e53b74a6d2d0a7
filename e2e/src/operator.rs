//! The operator as a process of the test: its settings, its start and its kill, its log file
//! (kept for the diagnostics and for the "no credential in any log" checks, never parsed for
//! what happened), and its admin endpoint, on a loopback port the harness picks: `/readyz`
//! and the `/metrics` counters that the checks read.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use crate::{
    cluster::{wait_for, workspace_bin},
    scenario::{SCENARIO_LABEL, Scenario},
};

/// The operator as a child process, killed when dropped.
pub struct Operator {
    child: Option<std::process::Child>,
    pub log: PathBuf,
    /// Its `SBOM_ADMIN_ADDR`.
    pub admin: SocketAddr,
}

impl Operator {
    /// Starts `bin` with exactly `env` (plus PATH, HOME and KUBECONFIG of the test), stdout and
    /// stderr to `log`; `admin` is the `SBOM_ADMIN_ADDR` that `env` sets.
    pub fn start(bin: &Path, env: &[(String, String)], log: &Path, admin: SocketAddr) -> Operator {
        let file = std::fs::File::create(log).expect("operator log file");
        let mut cmd = std::process::Command::new(bin);
        // Only what the test sets: no SBOM_* of the calling shell leaks in.
        cmd.env_clear();
        for keep in ["PATH", "HOME", "KUBECONFIG"] {
            if let Ok(v) = std::env::var(keep) {
                cmd.env(keep, v);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd.stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Operator {
            child: Some(child),
            log: log.to_path_buf(),
            admin,
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback address with a port free at the time of the call (the kernel picks it; the
/// operator binds it a moment later). Several operators may run at once: each gets its own.
pub fn free_loopback_addr() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a loopback port");
    listener.local_addr().expect("the bound address")
}

/// A plain HTTP GET on loopback: (status code, body).
pub fn try_http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response.as_str(), ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    Ok((code, body.to_string()))
}

/// The body of a GET on loopback; panics when nothing answers.
pub fn http_get(addr: &str, path: &str) -> String {
    try_http_get(addr, path)
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
        .1
}

/// One `/metrics` scrape (OpenMetrics text).
#[derive(Debug, Clone)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of one series, named as the text has it: `sbomjob_leader`,
    /// `sbomjob_cycles_total{result="ok"}`. `None` when the scrape has no such series.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|l| {
            let rest = l.strip_prefix(series)?;
            // `sbomjob_jobs_total` must not match `sbomjob_jobs_total_x` or a labelled series.
            let value = rest.strip_prefix(' ')?;
            value.split_whitespace().next()?.parse().ok()
        })
    }

    /// [`Self::get`], panicking with the whole scrape when the series is missing.
    pub fn value(&self, series: &str) -> f64 {
        self.get(series)
            .unwrap_or_else(|| panic!("no series {series} in /metrics:\n{}", self.0))
    }

    /// `promtool check metrics` (hack/promtool-check-metrics.sh, promtool from
    /// `SBOMJOB_PROMTOOL` or e2e/cluster/promtool.sh) on this scrape: panics with promtool's
    /// lint problems, if any.
    pub fn assert_promtool_clean(&self) {
        use std::io::Write as _;
        let script = crate::cluster::workspace_root().join("hack/promtool-check-metrics.sh");
        let mut child = std::process::Command::new(&script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(self.0.as_bytes())
            .expect("writing the scrape to promtool");
        let out = child.wait_with_output().expect("promtool check metrics");
        assert!(
            out.status.success(),
            "promtool check metrics ({}): {}{}\nthe scrape:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.0
        );
    }
}

/// `sbomjob_cycles_total{result="ok"}`: cycles that ended without an error (one that created no
/// Job included).
pub const CYCLES_OK: &str = "sbomjob_cycles_total{result=\"ok\"}";
/// `sbomjob_cycles_total{result="error"}`.
pub const CYCLES_ERROR: &str = "sbomjob_cycles_total{result=\"error\"}";
/// `sbomjob_leader`: 1 while the replica holds the Lease.
pub const LEADER: &str = "sbomjob_leader";

impl Scenario {
    /// Settings every operator of this scenario gets: its namespaces, its job namespace, a
    /// short interval so follow-up cycles come quickly. The admin address is added by
    /// [`Self::start_operator`], one free port per operator.
    pub fn base_env(&self) -> Vec<(String, String)> {
        // The release of the chart identity (`chart_identity`): its Role names the Lease.
        let release = format!("e2e-{}", self.name);
        [
            ("POD_NAMESPACE", self.job_ns.as_str()),
            ("SBOM_RELEASE", release.as_str()),
            (
                "SBOM_NAMESPACE_LABEL_SELECTOR",
                &format!("{SCENARIO_LABEL}={}", self.name),
            ),
            ("SBOM_INTERVAL", "10s"),
            ("SBOM_KUBERNETES_CLUSTER_ID", "e2e"),
            ("SBOM_JOB_TTL", "1h"),
            ("RUST_LOG", "info,sbomjob=debug"),
            // A killed leader's Lease frees up quickly.
            ("SBOM_LEASE_DURATION", "3s"),
            ("SBOM_DEBOUNCE", "2s"),
            // Scenarios must not see each other's results: the digest cache is opt-in per scenario.
            ("SBOM_CACHE_TTL", "0"),
            // Images are rebuilt under the same tag while a cluster runs: never use a stale one.
            ("SBOM_JOB_IMAGE_PULL_POLICY", "Always"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Starts `sbomjob-operator` as a process, authenticated as the chart's ServiceAccount,
    /// with these settings on top of [`Self::base_env`] and an admin endpoint on a free
    /// loopback port ([`Self::admin_addr`]). Returns its number.
    pub fn start_operator(&mut self, env: &[(&str, &str)]) -> usize {
        let kubeconfig = self.chart_identity();
        let admin = free_loopback_addr();
        let mut all = self.base_env();
        all.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
        all.push(("SBOM_ADMIN_ADDR".into(), admin.to_string()));
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let n = self.operators.len();
        let log = std::env::temp_dir().join(format!("sbomjob-e2e-{}-operator-{n}.log", self.name));
        self.operators.push(Operator::start(
            &workspace_bin("sbomjob-operator"),
            &all,
            &log,
            admin,
        ));
        n
    }

    /// SIGKILL, as a node failure or OOM would.
    pub fn kill_operator(&mut self, n: usize) {
        self.operators[n].kill();
    }

    /// Operator `n`'s log: only for checks that something (a credential) is absent from it.
    pub fn operator_log(&self, n: usize) -> String {
        std::fs::read_to_string(&self.operators[n].log).unwrap_or_default()
    }

    /// The admin endpoint of operator `n`, once its `/readyz` answers 200 (its caches are
    /// filled). The address is the one the harness chose, not one read from the log.
    pub async fn admin_addr(&self, n: usize) -> String {
        let addr = self.operators[n].admin.to_string();
        wait_for(
            &format!("operator {n}'s /readyz on {addr}"),
            Duration::from_secs(60),
            || {
                let ready = try_http_get(&addr, "/readyz").is_ok_and(|(code, _)| code == 200);
                std::future::ready(ready)
            },
        )
        .await;
        addr
    }

    /// Operator `n`'s `/metrics` now (after waiting for `/readyz`).
    pub async fn metrics(&self, n: usize) -> Metrics {
        let addr = self.admin_addr(n).await;
        let (code, body) =
            try_http_get(&addr, "/metrics").unwrap_or_else(|e| panic!("GET http://{addr}/metrics: {e}"));
        assert_eq!(code, 200, "GET http://{addr}/metrics: {body}");
        Metrics(body)
    }

    /// Operator `n`'s value of `series` now (see [`Metrics::get`]).
    pub async fn metric(&self, n: usize, series: &str) -> f64 {
        self.metrics(n).await.value(series)
    }

    /// Waits until operator `n`'s `series` is at least `at_least`; returns the scrape then.
    /// Panics with the last scrape on timeout.
    pub async fn wait_metric(&self, n: usize, series: &str, at_least: f64, timeout: Duration) -> Metrics {
        let start = std::time::Instant::now();
        loop {
            let m = self.metrics(n).await;
            if m.get(series).is_some_and(|v| v >= at_least) {
                return m;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for operator {n}'s {series} to reach {at_least}:\n{}",
                    m.0
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_read_by_its_exact_name_and_labels() {
        let m = Metrics(
            "# TYPE sbomjob_cycles counter\n\
             sbomjob_cycles_total{result=\"ok\"} 3\n\
             sbomjob_cycles_total{result=\"error\"} 0\n\
             sbomjob_leader 1\n\
             sbomjob_leader_x 7\n\
             # EOF\n"
                .into(),
        );
        assert_eq!(m.get(CYCLES_OK), Some(3.0));
        assert_eq!(m.get(CYCLES_ERROR), Some(0.0));
        assert_eq!(m.get(LEADER), Some(1.0));
        assert_eq!(
            m.get("sbomjob_cycles_total"),
            None,
            "a labelled series is not the bare name"
        );
        assert_eq!(m.get("sbomjob_images_processed_total"), None);
    }

    #[test]
    fn free_addresses_are_loopback_with_a_port() {
        let addr = free_loopback_addr();
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0);
    }
}
