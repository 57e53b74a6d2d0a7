//! The part of a pod that cycles read, as the pod store holds it.
//!
//! A k8s-openapi `Pod` is over 2 KiB inline, plus about 750 B per container status, nearly all
//! of it fields sbomjob never reads. This type is deserialized straight from the API's JSON
//! (serde skips every other field), so no whole Pod is ever built and 10,000 cached pods take a
//! few MiB. It is still a pod to kube: the same API path, kind and metadata.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct WatchedPod {
    #[serde(default, deserialize_with = "crate::objects::meta::without_managed_fields")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: PodSpec,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: PodStatus,
    /// Our annotations (`<prefix>/...`) once [`WatchedPod::slim`] moved them out of `metadata`:
    /// a one-entry `BTreeMap` allocates a node of eleven slots (over 500 B) per annotated pod.
    #[serde(skip)]
    pub ours: Box<[(Box<str>, Box<str>)]>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default, deserialize_with = "null_as_default")]
    pub image_pull_secrets: Vec<SecretName>,
    #[serde(default)]
    pub service_account_name: Option<String>,
    /// The images as the pod names them (drift reads their tags: a container's status may name
    /// another tag of the same digest).
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<SpecContainer>,
}

/// A container of the spec: its name and image, nothing else.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct SpecContainer {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub image: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct SecretName {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub container_statuses: Vec<ContainerStatus>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub init_container_statuses: Vec<ContainerStatus>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub ephemeral_container_statuses: Vec<ContainerStatus>,
}

/// A container's name, the image it asked for and the image it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ContainerStatus {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// `status.image`: the reference the pod asked for (often a tag).
    #[serde(default, deserialize_with = "null_as_default")]
    pub image: String,
    /// Empty until the image is pulled.
    #[serde(rename = "imageID", default, deserialize_with = "null_as_default")]
    pub image_id: String,
}

/// The API may send `null` where a list or string is absent.
fn null_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl k8s_openapi::Resource for WatchedPod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for WatchedPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl WatchedPod {
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn phase(&self) -> Option<&str> {
        self.status.phase.as_deref()
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        match self.ours.iter().find(|(k, _)| &**k == key) {
            Some((_, v)) => Some(v),
            // A pod not slimmed (built by hand, in tests) still has them in its metadata.
            None => self.metadata.annotations.as_ref()?.get(key).map(String::as_str),
        }
    }

    /// Every status of the pod's containers: regular, init and ephemeral.
    pub fn statuses(&self) -> impl Iterator<Item = &ContainerStatus> {
        let s = &self.status;
        s.container_statuses
            .iter()
            .chain(&s.init_container_statuses)
            .chain(&s.ephemeral_container_statuses)
    }

    /// Drops the metadata cycles never read: labels, owners and every annotation outside
    /// `<prefix>/` (kubectl's last-applied copy of the pod among them); ours move to
    /// [`WatchedPod::ours`]. The uid stays: pod Events refer to it (`kubectl describe pod`
    /// matches Events by uid). Measured at 10,000 pods, what is left is most of the operator's
    /// memory: keep it to what cycles read.
    pub fn slim(&mut self, prefix: &str) {
        let meta = std::mem::take(&mut self.metadata);
        let mine = format!("{prefix}/");
        let mut ours = self.ours.to_vec();
        ours.extend(
            meta.annotations
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.starts_with(&mine))
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str())),
        );
        self.ours = ours.into_boxed_slice();
        self.metadata = ObjectMeta {
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
            resource_version: meta.resource_version,
            ..Default::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1 as core;
    use serde_json::json;

    use super::*;

    /// A pod as the API sends it: many more fields than are read.
    fn full_pod() -> core::Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "p", "namespace": "ns", "uid": "u-1", "resourceVersion": "42",
                "labels": {"app": "x"},
                "annotations": {
                    "sbomjob.io/app": "r.io/a@sha256:00",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u-2"}]
            },
            "spec": {
                "containers": [{"name": "app", "image": "r.io/a:1", "env": [{"name": "A", "value": "1"}]}],
                "initContainers": [{"name": "init", "image": "r.io/i:1"}],
                "imagePullSecrets": [{"name": "pull"}],
                "serviceAccountName": "runner",
                "nodeName": "node-1"
            },
            "status": {
                "phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.1.0.1",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{
                    "name": "app", "image": "r.io/a:1", "imageID": "r.io/a@sha256:00",
                    "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-11-22T00:00:00Z"}}
                }],
                "initContainerStatuses": [{
                    "name": "init", "image": "r.io/i:1", "imageID": "docker-pullable://r.io/i@sha256:11",
                    "ready": false, "restartCount": 0
                }]
            }
        }))
        .expect("a valid pod")
    }

    #[test]
    fn reads_what_cycles_use_from_a_whole_pod() {
        let pod: WatchedPod = serde_json::from_value(serde_json::to_value(full_pod()).unwrap()).unwrap();
        assert_eq!(
            (pod.namespace(), pod.name(), pod.phase()),
            ("ns", "p", Some("Running"))
        );
        assert_eq!(pod.spec.image_pull_secrets, [SecretName { name: "pull".into() }]);
        assert_eq!(pod.spec.service_account_name.as_deref(), Some("runner"));
        let ids: Vec<(&str, &str, &str)> = pod
            .statuses()
            .map(|c| (c.name.as_str(), c.image.as_str(), c.image_id.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("app", "r.io/a:1", "r.io/a@sha256:00"),
                ("init", "r.io/i:1", "docker-pullable://r.io/i@sha256:11")
            ]
        );
    }

    #[test]
    fn slim_keeps_only_our_annotations_and_the_identity() {
        let mut pod: WatchedPod = serde_json::from_value(serde_json::to_value(full_pod()).unwrap()).unwrap();
        let before = pod.clone();
        pod.slim("sbomjob.io");
        assert_eq!(pod.annotation("sbomjob.io/app"), Some("r.io/a@sha256:00"));
        assert_eq!(
            pod.annotation("kubectl.kubernetes.io/last-applied-configuration"),
            None
        );
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(pod.metadata.uid.as_deref(), Some("u-1"));
        assert!(pod.metadata.labels.is_none() && pod.metadata.managed_fields.is_none());
        assert!(pod.metadata.owner_references.is_none());
        assert_eq!((&pod.spec, &pod.status), (&before.spec, &before.status));
        assert!(
            pod.metadata.annotations.is_none(),
            "ours moved out of the metadata"
        );
        assert_eq!(pod.ours.len(), 1);
        // No annotation of ours: none kept at all.
        let mut other = before;
        other.slim("example.com");
        assert!(other.metadata.annotations.is_none() && other.ours.is_empty());
    }

    #[test]
    fn nulls_and_missing_fields_read_as_empty() {
        let pod: WatchedPod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"imagePullSecrets": null},
            "status": {"containerStatuses": null, "initContainerStatuses": [{"name": "i", "imageID": null}]}
        }))
        .unwrap();
        assert!(pod.spec.image_pull_secrets.is_empty());
        assert_eq!(pod.statuses().count(), 1);
        assert_eq!(pod.statuses().next().unwrap().image_id, "");
        let bare: WatchedPod =
            serde_json::from_value(json!({"metadata": {"name": "p"}, "status": null})).unwrap();
        assert_eq!(bare.statuses().count(), 0);
        assert_eq!(bare.phase(), None);
    }

    #[test]
    fn is_much_smaller_than_a_k8s_openapi_pod() {
        // What the cache pays per pod before any heap data (a guard against growing it back).
        assert!(
            std::mem::size_of::<WatchedPod>() * 3 < std::mem::size_of::<core::Pod>(),
            "WatchedPod {} B vs Pod {} B",
            std::mem::size_of::<WatchedPod>(),
            std::mem::size_of::<core::Pod>()
        );
        assert!(std::mem::size_of::<ContainerStatus>() * 8 < std::mem::size_of::<core::ContainerStatus>());
    }
}
