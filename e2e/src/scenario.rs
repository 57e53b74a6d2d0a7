//! One scenario: its namespaces (a job namespace enforcing `restricted`, labelled workload
//! namespaces), the objects the test itself makes there (pods, pull secrets), and the cleanup
//! when it ends. What the operator makes is read in [`crate::observe`]; the operator processes
//! are in [`crate::operator`], the chart in [`crate::helm`], the failure dump in
//! [`crate::diagnostics`].

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{
    Container, LocalObjectReference, Namespace, Pod, PodSpec, Secret, ServiceAccount,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, ObjectMeta, PostParams},
};

use crate::{
    cluster::{Cluster, kubectl_quiet, wait_for},
    operator::Operator,
};

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
    pub(crate) operators: Vec<Operator>,
    pub(crate) started: Instant,
    /// A kubeconfig authenticating as the chart's ServiceAccount (made on first use).
    pub(crate) identity: Option<PathBuf>,
    /// Helm releases to uninstall at the end (their ClusterRoles outlive the namespace).
    pub(crate) releases: Vec<(String, String)>,
    /// The chart identity gets the digest cache's permissions.
    pub(crate) cache: bool,
    /// `sources.registries` of the chart identity ([`Scenario::enable_sources`]).
    pub(crate) sources: Option<String>,
}

impl Scenario {
    /// Makes the job namespace `e2e-<name>` and `workload_namespaces` namespaces
    /// `e2e-<name>-w<i>` (removing any left by an earlier run first), and waits until pods
    /// can be admitted in them.
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
            let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
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
            sources: None,
        }
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
                        .map(|n| LocalObjectReference { name: n.to_string() })
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
        let mut args = vec!["delete", "namespace", "--wait=false", "--ignore-not-found"];
        args.extend(
            std::iter::once(&self.job_ns)
                .chain(&self.namespaces)
                .map(String::as_str),
        );
        kubectl_quiet(&args);
    }
}
