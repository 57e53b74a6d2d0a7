//! What a person would look at when a scenario failed, printed when its [`Scenario`] is
//! dropped while the test panics: the namespaces' pods, Jobs, Secrets and Events, the Job
//! pods' logs, each operator's `/metrics` and the tail of its log.

use crate::{operator::try_http_get, scenario::Scenario};

impl Scenario {
    /// Prints the diagnostics of this scenario to stderr.
    pub fn dump(&self) {
        eprintln!(
            "\n===== diagnostics of scenario {} (after {:?}) =====",
            self.name,
            self.started.elapsed()
        );
        let kubectl = |args: &[&str]| {
            let out = std::process::Command::new("kubectl").args(args).output();
            match out {
                Ok(o) => eprintln!(
                    "$ kubectl {}\n{}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => eprintln!("$ kubectl {}: {e}", args.join(" ")),
            }
        };
        for ns in std::iter::once(&self.job_ns).chain(&self.namespaces) {
            kubectl(&[
                "get",
                "pods,jobs,secrets",
                "-n",
                ns,
                "-o",
                "wide",
                "--show-labels",
            ]);
            kubectl(&["get", "events", "-n", ns, "--sort-by=.lastTimestamp"]);
        }
        kubectl(&["get", "jobs", "-n", &self.job_ns, "-o", "yaml"]);
        kubectl(&[
            "logs",
            "-n",
            &self.job_ns,
            "-l",
            "app.kubernetes.io/managed-by=sbomjob",
            "--tail=50",
            "--prefix",
        ]);
        for (n, op) in self.operators.iter().enumerate() {
            if op.running() {
                match try_http_get(&op.admin.to_string(), "/metrics") {
                    Ok((_, body)) => {
                        eprintln!("--- operator {n} /metrics ({}), sbomjob_ series:", op.admin);
                        for l in body.lines().filter(|l| l.starts_with("sbomjob_")) {
                            eprintln!("{l}");
                        }
                    }
                    Err(e) => eprintln!("--- operator {n} /metrics ({}): {e}", op.admin),
                }
            }
            let log = std::fs::read_to_string(&op.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- operator {n} log ({}), last lines:", op.log.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        eprintln!("===== end of diagnostics =====\n");
    }
}
