//! Harness of the end-to-end suites: the local cluster started by `e2e/cluster/cluster.sh up`,
//! one set of namespaces per scenario, the operator run as a process, waits with timeouts, and
//! a dump of pods, Jobs, events and the operator's log when a scenario fails.

pub mod bench;
pub mod registry;
pub mod reliability_support;
pub mod sim;

use std::{
    collections::BTreeMap,
    future::Future,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Container, Namespace, Pod, PodSpec, Secret},
    events::v1::Event,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, LogParams, ObjectMeta, PostParams},
};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The running local cluster, as `e2e/cluster/cluster.sh env` describes it.
pub struct Cluster {
    pub client: Client,
    /// `images.env`: every image the build pushed (`WORKLOAD_ALPHA_IMAGE`, ..., `*_DIGEST`),
    /// plus the registries' addresses and the test registry's user and password.
    pub vars: BTreeMap<String, String>,
}

impl Cluster {
    /// Connects with `KUBECONFIG` and reads `SBOMJOB_IMAGES_ENV`. Panics with a hint when the
    /// cluster is not up: the e2e suite is run by `e2e/run.sh`, not by plain `cargo test`.
    pub async fn connect() -> Arc<Cluster> {
        let hint = "run the e2e suite with e2e/run.sh (it starts the cluster and sets KUBECONFIG)";
        let path = std::env::var("SBOMJOB_IMAGES_ENV")
            .unwrap_or_else(|_| panic!("SBOMJOB_IMAGES_ENV unset: {hint}"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}: {hint}"));
        let vars = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let client = Client::try_default()
            .await
            .unwrap_or_else(|e| panic!("connecting to the cluster: {e}: {hint}"));
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

/// Path of a binary of this workspace, built by e2e/run.sh before the suite.
pub fn workspace_bin(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target.join("debug").join(name);
    assert!(
        bin.exists(),
        "{} is missing: cargo build -p sbomjob-operator first",
        bin.display()
    );
    bin
}

/// A job command that runs skopeo against the registry: a real pull of the image's manifest
/// and config.
pub const SKOPEO_INSPECT: &str = "skopeo inspect --tls-verify=false docker://{reference}";

/// Label on the workload namespaces of a scenario; the scenario's operator selects them by it.
pub const SCENARIO_LABEL: &str = "sbomjob-e2e/scenario";

/// One scenario: its namespaces, its operators, its diagnostics.
pub struct Scenario {
    pub name: String,
    pub cluster: Arc<Cluster>,
    pub client: Client,
    /// Where the operator creates Jobs and Secrets; enforces the `restricted` standard.
    pub job_ns: String,
    /// Workload namespaces, labelled for the scenario.
    pub namespaces: Vec<String>,
    operators: Vec<Operator>,
    started: Instant,
    /// A kubeconfig authenticating as the chart's ServiceAccount (made on first use).
    identity: Option<PathBuf>,
    /// Helm releases to uninstall at the end (their ClusterRoles outlive the namespace).
    releases: Vec<(String, String)>,
    /// The chart identity gets the digest cache's permissions.
    cache: bool,
}

impl Scenario {
    pub async fn new(cluster: &Arc<Cluster>, name: &str, workload_namespaces: usize) -> Scenario {
        let client = cluster.client.clone();
        let job_ns = format!("e2e-{name}");
        let namespaces: Vec<String> = (0..workload_namespaces)
            .map(|i| format!("e2e-{name}-w{i}"))
            .collect();
        let api: Api<Namespace> = Api::all(client.clone());
        for ns in std::iter::once(&job_ns).chain(&namespaces) {
            // A namespace left by an earlier run is removed first, so counts start at zero.
            if api.get_opt(ns).await.expect("reading namespace").is_some() {
                let _ = api.delete(ns, &DeleteParams::default()).await;
                wait_for(
                    &format!("old namespace {ns} to go"),
                    Duration::from_secs(120),
                    || async { api.get_opt(ns).await.ok().flatten().is_none() },
                )
                .await;
            }
            let mut labels = BTreeMap::new();
            if *ns == job_ns {
                for mode in ["enforce", "warn", "audit"] {
                    labels.insert(
                        format!("pod-security.kubernetes.io/{mode}"),
                        "restricted".to_string(),
                    );
                }
                labels.insert(
                    "pod-security.kubernetes.io/enforce-version".into(),
                    "latest".into(),
                );
            } else {
                labels.insert(SCENARIO_LABEL.to_string(), name.to_string());
            }
            let obj = Namespace {
                metadata: ObjectMeta {
                    name: Some(ns.clone()),
                    labels: Some(labels),
                    ..Default::default()
                },
                ..Default::default()
            };
            api.create(&PostParams::default(), &obj)
                .await
                .unwrap_or_else(|e| panic!("creating namespace {ns}: {e}"));
        }
        // Pods are admitted only once the namespace's default service account exists.
        for ns in std::iter::once(&job_ns).chain(&namespaces) {
            let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
            wait_for(
                &format!("service account default in {ns}"),
                Duration::from_secs(60),
                || async { sa.get_opt("default").await.ok().flatten().is_some() },
            )
            .await;
        }
        Scenario {
            name: name.to_string(),
            cluster: cluster.clone(),
            client,
            job_ns,
            namespaces,
            operators: Vec::new(),
            started: Instant::now(),
            identity: None,
            releases: Vec::new(),
            cache: false,
        }
    }

    /// Settings every operator of this scenario gets: its namespaces, its job namespace, a
    /// short interval so follow-up cycles come quickly.
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
            // Several operators may run at once: no fixed admin port.
            ("SBOM_ADMIN_ADDR", "127.0.0.1:0"),
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

    /// Installs the chart into the job namespace: its ServiceAccount, Role, ClusterRole and
    /// bindings, and with `replicas` > 0 the operator's Deployment. `--set` pairs go on top.
    pub fn helm_install(&mut self, release: &str, replicas: u32, set: &[(&str, &str)]) {
        let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/sbomjob");
        let mut cmd = std::process::Command::new("helm");
        cmd.args(["upgrade", "--install", release])
            .arg(&chart)
            .args([
                "--namespace",
                &self.job_ns,
                "--wait",
                "--timeout",
                "3m",
                "--skip-crds",
            ])
            .args(["--set", &format!("replicaCount={replicas}")])
            .args([
                "--set",
                &format!("namespaceLabelSelector={SCENARIO_LABEL}={}", self.name),
            ])
            .args(["--set", "cache.ttl=0"]);
        for (k, v) in set {
            cmd.args(["--set", &format!("{k}={v}")]);
        }
        let out = cmd.output().expect("running helm");
        assert!(
            out.status.success(),
            "helm install {release} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.releases.push((release.to_string(), self.job_ns.clone()));
    }

    /// A kubeconfig that authenticates as the chart's ServiceAccount (installed RBAC-only on
    /// first use), so the operator runs with exactly the chart's permissions.
    pub fn chart_identity(&mut self) -> PathBuf {
        if let Some(p) = &self.identity {
            return p.clone();
        }
        let release = format!("e2e-{}", self.name);
        let ttl = if self.cache { "72h" } else { "0" };
        self.helm_install(&release, 0, &[("jobImage", "unused"), ("cache.ttl", ttl)]);
        let sa = kubectl(&[
            "get",
            "serviceaccount",
            "-n",
            &self.job_ns,
            "-l",
            &format!("app.kubernetes.io/instance={release}"),
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ]);
        let token = kubectl(&["create", "token", &sa, "-n", &self.job_ns, "--duration", "3h"]);
        let server = kubectl(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ]);
        let ca = kubectl(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        ]);
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {sa}\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: {sa}, namespace: {ns}}}\ncurrent-context: e2e\n",
            ns = self.job_ns
        );
        let path = std::env::temp_dir().join(format!("sbomjob-e2e-{}-kubeconfig", self.name));
        std::fs::write(&path, config).expect("writing the operator's kubeconfig");
        self.identity = Some(path.clone());
        path
    }

    /// Installs the ImageRecord CRD (from the chart) and gives this scenario's operators the
    /// cache's permissions. Call before the first operator starts.
    pub fn enable_cache(&mut self) {
        assert!(
            self.identity.is_none(),
            "enable_cache must come before the first operator"
        );
        self.cache = true;
        let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/sbomjob/crds/imagerecords.yaml");
        for args in [
            vec![
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                crd.to_str().unwrap(),
            ],
            vec![
                "wait",
                "--for",
                "condition=established",
                "--timeout=60s",
                "crd/imagerecords.sbomjob.io",
            ],
        ] {
            kubectl(&args);
        }
    }

    /// The admin endpoint's address of operator `n`, from its log.
    pub async fn admin_addr(&self, n: usize) -> String {
        let mut addr = None;
        wait_for("the operator's admin endpoint", Duration::from_secs(30), || {
            addr = self.operator_log(n).lines().find_map(|l| {
                l.contains("serving /metrics")
                    .then(|| l.split("addr=").nth(1))
                    .flatten()
                    .map(|a| a.trim().to_string())
            });
            std::future::ready(addr.is_some())
        })
        .await;
        addr.unwrap()
    }

    /// Starts `sbomjob-operator` as a process, authenticated as the chart's ServiceAccount,
    /// with these settings on top of [`Self::base_env`].
    pub fn start_operator(&mut self, env: &[(&str, &str)]) -> usize {
        let kubeconfig = self.chart_identity();
        let mut all = self.base_env();
        all.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let n = self.operators.len();
        let log = std::env::temp_dir().join(format!("sbomjob-e2e-{}-operator-{n}.log", self.name));
        self.operators
            .push(Operator::start(&workspace_bin("sbomjob-operator"), &all, &log));
        n
    }

    /// SIGKILL, as a node failure or OOM would.
    pub fn kill_operator(&mut self, n: usize) {
        self.operators[n].kill();
    }

    pub fn operator_log(&self, n: usize) -> String {
        std::fs::read_to_string(&self.operators[n].log).unwrap_or_default()
    }

    /// Creates a long-running pod with one container per image, in a workload namespace.
    pub async fn pod(&self, ns: &str, name: &str, containers: &[(&str, &str)], pull_secrets: &[&str]) {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: containers
                    .iter()
                    .map(|(c, image)| Container {
                        name: c.to_string(),
                        image: Some(image.to_string()),
                        ..Default::default()
                    })
                    .collect(),
                image_pull_secrets: (!pull_secrets.is_empty()).then(|| {
                    pull_secrets
                        .iter()
                        .map(|n| k8s_openapi::api::core::v1::LocalObjectReference { name: n.to_string() })
                        .collect()
                }),
                termination_grace_period_seconds: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        api.create(&PostParams::default(), &pod)
            .await
            .unwrap_or_else(|e| panic!("creating pod {ns}/{name}: {e}"));
    }

    /// Creates pod `name` in `ns` with one container `app` running images.env's `image_var`,
    /// then waits until every workload pod runs: how most scenarios set up their workload.
    pub async fn run_app_pod(&self, ns: &str, name: &str, image_var: &str, pull_secrets: &[&str]) {
        self.pod(ns, name, &[("app", self.cluster.var(image_var))], pull_secrets)
            .await;
        self.wait_pods_running().await;
    }

    /// Waits until every container of every workload pod runs and reports its imageID.
    pub async fn wait_pods_running(&self) {
        for ns in &self.namespaces {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            wait_for(
                &format!("pods in {ns} running with image IDs"),
                Duration::from_secs(120),
                || async {
                    let Ok(list) = api.list(&ListParams::default()).await else {
                        return false;
                    };
                    list.items.iter().all(|p| {
                        let s = p.status.as_ref();
                        s.and_then(|s| s.phase.as_deref()) == Some("Running")
                            && s.and_then(|s| s.container_statuses.as_ref())
                                .is_some_and(|cs| cs.iter().all(|c| c.image_id.contains("@sha256:")))
                    })
                },
            )
            .await;
        }
    }

    /// All workload pods.
    pub async fn pods(&self) -> Vec<Pod> {
        self.in_workload_namespaces().await
    }

    /// Every object of a kind in the workload namespaces.
    async fn in_workload_namespaces<K>(&self) -> Vec<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let mut out = Vec::new();
        for ns in &self.namespaces {
            let api: Api<K> = Api::namespaced(self.client.clone(), ns);
            out.extend(
                api.list(&ListParams::default())
                    .await
                    .unwrap_or_else(|e| panic!("listing {} in {ns}: {e}", K::plural(&())))
                    .items,
            );
        }
        out
    }

    /// Pods' containers and their annotation under `prefix` (None = not annotated).
    pub async fn annotations(&self, prefix: &str) -> Vec<(String, String, String, Option<String>)> {
        let mut out = Vec::new();
        for pod in self.pods().await {
            let meta = &pod.metadata;
            for c in pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default()
            {
                let value = meta
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(&format!("{prefix}/{}", c.name)))
                    .cloned();
                out.push((
                    meta.namespace.clone().unwrap(),
                    meta.name.clone().unwrap(),
                    c.image_id.clone(),
                    value,
                ));
            }
        }
        out.sort();
        out
    }

    /// Waits until every container of every workload pod is annotated with its imageID.
    pub async fn wait_all_annotated(&self, prefix: &str, timeout: Duration) {
        wait_for(
            "every workload container annotated with its imageID",
            timeout,
            || async {
                let a = self.annotations(prefix).await;
                !a.is_empty() && a.iter().all(|(_, _, id, v)| v.as_deref() == Some(id.as_str()))
            },
        )
        .await;
    }

    /// Each workload pod with the Events (events.k8s.io/v1) the operator published about it,
    /// matched by the pod's uid as `kubectl describe pod` matches them.
    pub async fn pod_events(&self) -> Vec<(Pod, Vec<Event>)> {
        let mut events: Vec<Event> = self.in_workload_namespaces().await;
        events.retain(|e| e.reporting_controller.as_deref() == Some("sbomjob"));
        self.pods()
            .await
            .into_iter()
            .map(|pod| {
                let uid = pod.metadata.uid.clone();
                let mine = events
                    .iter()
                    .filter(|e| {
                        let regarding = e.regarding.as_ref();
                        uid.is_some()
                            && regarding.and_then(|r| r.uid.clone()) == uid
                            && regarding.and_then(|r| r.kind.as_deref()) == Some("Pod")
                    })
                    .cloned()
                    .collect();
                (pod, mine)
            })
            .collect()
    }

    /// Waits until every workload pod has an Event of the operator of this type (`Normal`,
    /// `Warning`) and reason; returns [`Self::pod_events`] as it then was.
    pub async fn wait_pod_events(
        &self,
        type_: &str,
        reason: &str,
        timeout: Duration,
    ) -> Vec<(Pod, Vec<Event>)> {
        let wanted = |e: &Event| e.type_.as_deref() == Some(type_) && e.reason.as_deref() == Some(reason);
        wait_for(
            &format!("a {type_} {reason} Event on every workload pod"),
            timeout,
            || async {
                let all = self.pod_events().await;
                !all.is_empty() && all.iter().all(|(_, events)| events.iter().any(wanted))
            },
        )
        .await;
        self.pod_events().await
    }

    pub async fn jobs(&self) -> Vec<Job> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.job_ns);
        let mut jobs = api
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=sbomjob"))
            .await
            .expect("listing jobs")
            .items;
        jobs.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
        jobs
    }

    pub async fn secrets(&self) -> Vec<Secret> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.job_ns);
        api.list(&ListParams::default().labels("app.kubernetes.io/managed-by=sbomjob"))
            .await
            .expect("listing secrets")
            .items
    }

    /// Waits for at least `n` Jobs and returns them.
    pub async fn wait_jobs(&self, n: usize, timeout: Duration) -> Vec<Job> {
        wait_for(&format!("{n} Job(s) in {}", self.job_ns), timeout, || async {
            self.jobs().await.len() >= n
        })
        .await;
        self.jobs().await
    }

    /// Waits for the Job's terminal condition and returns (type, reason).
    pub async fn wait_job_end(&self, name: &str, timeout: Duration) -> (String, String) {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.job_ns);
        wait_for(&format!("Job {name} to end"), timeout, || async {
            job_end(&api.get(name).await.expect("reading job")).is_some()
        })
        .await;
        job_end(&api.get(name).await.expect("reading job")).expect("the Job ended")
    }

    /// Logs of the Job's pod (the entrypoint's output).
    pub async fn job_logs(&self, job: &str) -> String {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.job_ns);
        let pods = api
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .expect("listing job pods");
        let mut out = String::new();
        for p in pods.items {
            let name = p.metadata.name.unwrap();
            out += &api
                .logs(&name, &LogParams::default())
                .await
                .unwrap_or_else(|e| format!("<no logs: {e}>"));
        }
        out
    }

    /// A dockerconfigjson pull secret for `registry`.
    pub async fn pull_secret(&self, ns: &str, name: &str, registry: &str, user: &str, password: &str) {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let body = serde_json::json!({ "auths": { registry: { "auth": auth } } }).to_string();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            string_data: Some([(".dockerconfigjson".to_string(), body)].into()),
            ..Default::default()
        };
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        api.create(&PostParams::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("creating secret {ns}/{name}: {e}"));
    }

    /// Prints what a person would look at when the scenario failed.
    fn dump(&self) {
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

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
        }
        for op in &mut self.operators {
            op.kill();
        }
        for (release, ns) in &self.releases {
            let _ = std::process::Command::new("helm")
                .args(["uninstall", release, "--namespace", ns, "--wait=false"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // Leave nothing behind for the next scenario; deletion finishes in the background.
        let names: Vec<&str> = std::iter::once(&self.job_ns)
            .chain(&self.namespaces)
            .map(String::as_str)
            .collect();
        let _ = std::process::Command::new("kubectl")
            .args(["delete", "namespace", "--wait=false", "--ignore-not-found"])
            .args(&names)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs kubectl for the harness's own setup, which must succeed: panics with its stderr
/// otherwise; returns its trimmed stdout.
fn kubectl(args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
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

/// A plain HTTP GET on loopback; returns the body.
/// The digests a Job processes (its `sbomjob.io/digests` annotation, one per element).
pub fn job_digests(job: &Job) -> Vec<String> {
    job.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("sbomjob.io/digests"))
        .map(|v| v.lines().map(String::from).collect())
        .unwrap_or_default()
}

/// A job image with skopeo: the skopeo preset's, else the e2e image (which has it too).
pub fn skopeo_job_image(cluster: &Cluster) -> &str {
    ["JOB_SKOPEO_IMAGE", "JOB_E2E_IMAGE"]
        .iter()
        .find_map(|v| cluster.vars.get(*v))
        .map(String::as_str)
        .expect("neither JOB_SKOPEO_IMAGE nor JOB_E2E_IMAGE is in images.env (run e2e/images/build.sh)")
}

/// The ImageRecords of a digest (one per job identity that processed it), newest first, as
/// JSON, read with kubectl as a person would.
pub fn image_records(digest: &str) -> Vec<serde_json::Value> {
    let out = std::process::Command::new("kubectl")
        .args(["get", "imagerecords", "-o", "json"])
        .output()
        .expect("running kubectl");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut records: Vec<serde_json::Value> = list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|r| r["spec"]["digest"] == digest)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    records.sort_by(|a, b| {
        let at = |r: &serde_json::Value| r["spec"]["processedAt"].as_str().unwrap_or_default().to_string();
        at(b).cmp(&at(a))
    });
    records
}

pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or(response)
}

/// A Job's name.
pub fn job_name(job: &Job) -> String {
    job.metadata.name.clone().unwrap_or_default()
}

/// (condition type, reason) of a Job's terminal condition, if it has one.
pub fn job_end(job: &Job) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
        .map(|c| (c.type_.clone(), c.reason.clone().unwrap_or_default()))
}

/// The operator as a child process, killed when dropped.
pub struct Operator {
    child: Option<std::process::Child>,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(bin: &Path, env: &[(String, String)], log: &Path) -> Operator {
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
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
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
