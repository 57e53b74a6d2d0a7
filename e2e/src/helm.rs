//! The chart in the scenarios: `helm upgrade --install` into the job namespace, the chart's
//! ServiceAccount as the identity test operators run with, and the chart's ImageRecord CRD.

use std::path::{Path, PathBuf};

use crate::{
    cluster::{kubectl, workspace_root},
    scenario::{SCENARIO_LABEL, Scenario},
};

/// `charts/sbomjob`.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/sbomjob")
}

impl Scenario {
    /// Installs the chart into the job namespace: its ServiceAccount, Role, ClusterRole and
    /// bindings, and with `replicas` > 0 the operator's Deployment. `--set` pairs go on top.
    /// The scenarios manage the CRDs themselves ([`Scenario::enable_cache`]): `--skip-crds`, and
    /// no CRD hook (`crds.upgrade.enabled=false`; e2e/tests/upgrade.rs tests it).
    /// Uninstalled when the scenario ends (its ClusterRoles outlive the namespace).
    pub fn helm_install(&mut self, release: &str, replicas: u32, set: &[(&str, &str)]) {
        let replicas = replicas.to_string();
        let selector = format!("{SCENARIO_LABEL}={}", self.name);
        let mut all = vec![
            ("replicaCount", replicas.as_str()),
            ("namespaceLabelSelector", selector.as_str()),
            ("cache.ttl", "0"),
            ("crds.upgrade.enabled", "false"),
        ];
        all.extend_from_slice(set);
        self.helm_upgrade_install(release, &chart_dir(), &["--skip-crds"], &all);
    }

    /// `helm upgrade --install --wait` of the chart at `chart` (this one or an older version)
    /// into the job namespace, with `flags` and `--set` pairs (later ones win). Uninstalled when
    /// the scenario ends.
    pub fn helm_upgrade_install(
        &mut self,
        release: &str,
        chart: &Path,
        flags: &[&str],
        set: &[(&str, &str)],
    ) {
        let mut cmd = std::process::Command::new("helm");
        cmd.args(["upgrade", "--install", release])
            .arg(chart)
            .args(["--namespace", &self.job_ns, "--wait", "--timeout", "3m"])
            .args(flags);
        for (k, v) in set {
            cmd.args(["--set", &format!("{k}={v}")]);
        }
        let out = cmd.output().expect("running helm");
        assert!(
            out.status.success(),
            "helm upgrade --install {release} ({}) failed: {}",
            chart.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        if !self
            .releases
            .iter()
            .any(|(r, ns)| r == release && *ns == self.job_ns)
        {
            self.releases.push((release.to_string(), self.job_ns.clone()));
        }
    }

    /// A kubeconfig that authenticates as the chart's ServiceAccount (installed RBAC-only on
    /// first use), so the operator runs with exactly the chart's permissions.
    pub fn chart_identity(&mut self) -> PathBuf {
        if let Some(p) = &self.identity {
            return p.clone();
        }
        let release = format!("e2e-{}", self.name);
        let ttl = if self.cache { "72h" } else { "0" };
        let mut set = vec![("jobImage", "unused"), ("cache.ttl", ttl)];
        let sources = self.sources.clone();
        if let Some(registries) = &sources {
            set.push(("sources.registries", registries));
        }
        self.helm_install(&release, 0, &set);
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

    /// Installs the ImageRecord and TrustPolicy CRDs (from the chart) and gives this scenario's
    /// operators the cache's permissions. Call before the first operator starts.
    pub fn enable_cache(&mut self) {
        assert!(
            self.identity.is_none(),
            "enable_cache must come before the first operator"
        );
        self.cache = true;
        let crd = chart_dir().join("crds/imagerecords.yaml");
        install_crd(&crd, "crd/imagerecords.sbomjob.io");
        // The chart's RBAC with the cache watches TrustPolicies: their CRD comes with it.
        let crd = chart_dir().join("crds/trustpolicies.yaml");
        install_crd(&crd, "crd/trustpolicies.sbomjob.io");
    }
}

impl Scenario {
    /// [`Scenario::enable_cache`], the ImageSource CRD installed, and the chart's permissions
    /// for sources that may name `registries` (`sources.registries`). Call before the first
    /// operator starts (which gets `SBOM_SOURCE_REGISTRIES` from the test).
    pub fn enable_sources(&mut self, registries: &str) {
        self.enable_cache();
        self.sources = Some(registries.to_string());
        let crd = chart_dir().join("crds/imagesources.yaml");
        install_crd(&crd, "crd/imagesources.sbomjob.io");
    }
}

/// `kubectl apply --server-side` of a CRD manifest, then waits until it is established.
fn install_crd(manifest: &Path, name: &str) {
    let file = manifest.to_str().expect("a UTF-8 path");
    kubectl(&["apply", "--server-side", "--force-conflicts", "-f", file]);
    kubectl(&["wait", "--for", "condition=established", "--timeout=60s", name]);
}
