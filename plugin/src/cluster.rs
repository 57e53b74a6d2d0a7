//! What the cluster says, read with the user's kubeconfig: the running containers and their
//! digests, the ImageRecords, and the pull credentials the pods have for a registry.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{Api, Client, api::ListParams};
use oci_client::secrets::RegistryAuth;
use sbomjob::cache::{ImageRecord, RecordResult};
use sbomjob_contract::{
    docker_config::{DockerConfig, key_host},
    normalize_registry,
};

/// A container of a running pod, with the digest its imageID names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub image: String,
    /// The image as the pod's spec names it. The status's `image` may name another tag of the
    /// same digest (the runtime reports a name it has for the image ID), so tags are read here.
    pub spec_image: String,
    pub digest: String,
    pub pull_secrets: Vec<String>,
}

/// `docker-pullable://repo@sha256:…` or `repo@sha256:…` → `sha256:…`.
pub fn digest_of(image_id: &str) -> Option<String> {
    let (_, digest) = image_id.rsplit_once('@')?;
    sbomjob_contract::image_ref::is_digest(digest).then(|| digest.to_string())
}

/// Every container of every Running pod (in `namespace`, or all), page by page.
pub async fn running(client: &Client, namespace: Option<&str>) -> kube::Result<Vec<Running>> {
    let api: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(500).fields("status.phase=Running");
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = api.list(&params).await?;
        for pod in page.items {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let secrets: Vec<String> = pod
                .spec
                .iter()
                .flat_map(|s| s.image_pull_secrets.iter().flatten())
                .map(|r| r.name.clone())
                .collect();
            let spec_images: BTreeMap<String, String> = pod
                .spec
                .iter()
                .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
                .filter_map(|c| Some((c.name.clone(), c.image.clone()?)))
                .collect();
            let statuses = pod.status.iter().flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .chain(s.container_statuses.iter().flatten())
            });
            for c in statuses {
                if let Some(digest) = digest_of(&c.image_id) {
                    out.push(Running {
                        namespace: namespace.clone(),
                        pod: name.clone(),
                        container: c.name.clone(),
                        image: c.image.clone(),
                        spec_image: spec_images
                            .get(&c.name)
                            .cloned()
                            .unwrap_or_else(|| c.image.clone()),
                        digest,
                        pull_secrets: secrets.clone(),
                    });
                }
            }
        }
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    Ok(out)
}

/// The ImageRecords by digest, newest processing first. An empty map when the CRD is not
/// installed.
pub async fn records(client: &Client) -> kube::Result<BTreeMap<String, Vec<ImageRecord>>> {
    let api: Api<ImageRecord> = Api::all(client.clone());
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut by: BTreeMap<String, Vec<ImageRecord>> = BTreeMap::new();
    for r in list.items {
        by.entry(r.spec.digest.clone()).or_default().push(r);
    }
    for records in by.values_mut() {
        records.sort_by_key(|r| std::cmp::Reverse(r.spec.processed_at));
    }
    Ok(by)
}

/// The SBOM artifact of the newest succeeded record that names one.
pub fn artifact(records: &[ImageRecord]) -> Option<String> {
    records
        .iter()
        .filter(|r| r.spec.result == RecordResult::Succeeded)
        .filter_map(|r| r.status.as_ref())
        .flat_map(|s| &s.artifacts)
        .map(|a| a.reference.clone())
        .find(|r| r.contains('@'))
}

/// The credentials one of `secrets` (docker configs in `namespace`) holds for `host`; anonymous
/// when none does or they cannot be read (the user may not read Secrets: public registries
/// still work).
pub async fn credentials(client: &Client, namespace: &str, secrets: &[String], host: &str) -> RegistryAuth {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let host = normalize_registry(host);
    for name in secrets {
        let Ok(secret) = api.get(name).await else { continue };
        let data = secret.data.unwrap_or_default();
        let config = match (data.get(".dockerconfigjson"), data.get(".dockercfg")) {
            (Some(b), _) => DockerConfig::parse(&b.0),
            (None, Some(b)) => DockerConfig::parse_legacy(&b.0),
            _ => continue,
        };
        let Ok(config) = config else { continue };
        for (key, entry) in &config.auths {
            if normalize_registry(&key_host(key)) == host
                && let Ok(Some((user, password))) = entry.basic(key)
            {
                return RegistryAuth::Basic(user, password);
            }
        }
    }
    RegistryAuth::Anonymous
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_image_ids() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            digest_of(&format!("docker-pullable://nginx@{d}")),
            Some(d.clone())
        );
        assert_eq!(digest_of(&format!("10.0.0.1:5000/x/y@{d}")), Some(d.clone()));
        assert_eq!(digest_of("nginx:1.0"), None);
        assert_eq!(digest_of("x@sha256:short"), None);
    }
}
