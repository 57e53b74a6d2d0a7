//! The part of a pod that cycles read, as the pod store holds it.
//!
//! A k8s-openapi `Pod` is over 2 KiB inline, plus about 750 B per container status, nearly all
//! of it fields sbomjob never reads. The watch deserializes a [`WirePod`] straight from the API's
//! JSON (serde skips every other field, so no whole Pod is ever built) and the store keeps the
//! [`WatchedPod`] made from it: no `ObjectMeta` (about 400 B inline, most of it options cycles
//! never read), and its strings shared with every other pod naming the same namespace, image or
//! digest (see [`crate::pod_store`]).

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

/// A pod as cycles read it; built from a [`WirePod`] by [`WirePod::into_watched`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WatchedPod {
    pub metadata: PodMeta,
    pub spec: PodSpec,
    pub status: PodStatus,
    /// Our annotations (`<prefix>/...`), the only ones kept: a one-entry `BTreeMap` allocates
    /// a node of eleven slots (over 500 B) per annotated pod.
    pub ours: Box<[(Arc<str>, Arc<str>)]>,
}

/// The pod's identity. The uid stays: pod Events refer to it (`kubectl describe pod` matches
/// Events by uid).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMeta {
    pub name: Option<String>,
    pub namespace: Option<Arc<str>>,
    pub uid: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub image_pull_secrets: Box<[SecretName]>,
    #[serde(default)]
    pub service_account_name: Option<Arc<str>>,
    /// The images as the pod names them (drift reads their tags: a container's status may name
    /// another tag of the same digest).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub containers: Box<[SpecContainer]>,
}

/// A container of the spec: its name and image, nothing else.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct SpecContainer {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: Arc<str>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub image: Arc<str>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct SecretName {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: Arc<str>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default)]
    pub phase: Option<Arc<str>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub container_statuses: Box<[ContainerStatus]>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub init_container_statuses: Box<[ContainerStatus]>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub ephemeral_container_statuses: Box<[ContainerStatus]>,
}

/// A container's name, the image it asked for and the image it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ContainerStatus {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: Arc<str>,
    /// `status.image`: the reference the pod asked for (often a tag).
    #[serde(default, deserialize_with = "null_as_default")]
    pub image: Arc<str>,
    /// Empty until the image is pulled.
    #[serde(rename = "imageID", default, deserialize_with = "null_as_default")]
    pub image_id: Arc<str>,
}

/// The API may send `null` where a list or string is absent.
fn null_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A list, `null` as empty, in a slice of its exact length: a `Vec` grown while parsing keeps
/// room for four (measured at 10,000 pods: 4.9 MB of the lists' 1.2 MB was spare room).
fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Box<[T]>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?
        .unwrap_or_default()
        .into_boxed_slice())
}

/// A pod as the watch receives it: to kube, a pod (the same API path, kind and metadata), so
/// kube's watcher can list and watch it. Lives only until [`WirePod::into_watched`].
#[derive(Clone, Debug, Default, Deserialize)]
pub struct WirePod {
    #[serde(default, deserialize_with = "crate::objects::meta::without_managed_fields")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: PodSpec,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: PodStatus,
}

impl k8s_openapi::Resource for WirePod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for WirePod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl WirePod {
    /// The pod as the store keeps it: its identity, spec and status, and of its annotations only
    /// ours (`<prefix>/...`). Labels, owners and every other annotation (kubectl's last-applied
    /// copy of the pod among them) are dropped here.
    pub fn into_watched(self, prefix: &str) -> WatchedPod {
        let meta = self.metadata;
        let mine = format!("{prefix}/");
        let ours = meta
            .annotations
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with(&mine))
            .map(|(k, v)| (Arc::from(k), Arc::from(v)))
            .collect();
        WatchedPod {
            metadata: PodMeta {
                name: meta.name,
                namespace: meta.namespace.map(Arc::from),
                uid: meta.uid,
            },
            spec: self.spec,
            status: self.status,
            ours,
        }
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
        self.ours.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }

    /// Every status of the pod's containers: regular, init and ephemeral.
    pub fn statuses(&self) -> impl Iterator<Item = &ContainerStatus> {
        let s = &self.status;
        s.container_statuses
            .iter()
            .chain(&s.init_container_statuses)
            .chain(&s.ephemeral_container_statuses)
    }

    /// Every string of the pod that other pods may share, for [`crate::pod_store`] to replace
    /// with one shared copy.
    pub fn shared_strings(&mut self) -> impl Iterator<Item = &mut Arc<str>> {
        let WatchedPod {
            metadata,
            spec,
            status,
            ours,
        } = self;
        let statuses = status
            .container_statuses
            .iter_mut()
            .chain(&mut status.init_container_statuses)
            .chain(&mut status.ephemeral_container_statuses)
            .flat_map(|c| [&mut c.name, &mut c.image, &mut c.image_id]);
        metadata
            .namespace
            .iter_mut()
            .chain(status.phase.iter_mut())
            .chain(spec.service_account_name.iter_mut())
            .chain(spec.image_pull_secrets.iter_mut().map(|s| &mut s.name))
            .chain(
                spec.containers
                    .iter_mut()
                    .flat_map(|c| [&mut c.name, &mut c.image]),
            )
            .chain(statuses)
            .chain(ours.iter_mut().flat_map(|(k, v)| [k, v]))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1 as core;
    use serde_json::json;

    use super::*;

    /// A pod as the API sends it: many more fields than are read.
    fn full_pod() -> serde_json::Value {
        let pod: core::Pod = serde_json::from_value(json!({
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
        .expect("a valid pod");
        serde_json::to_value(pod).unwrap()
    }

    fn watched(json: serde_json::Value, prefix: &str) -> WatchedPod {
        serde_json::from_value::<WirePod>(json)
            .unwrap()
            .into_watched(prefix)
    }

    #[test]
    fn reads_what_cycles_use_from_a_whole_pod() {
        let pod = watched(full_pod(), "sbomjob.io");
        assert_eq!(
            (pod.namespace(), pod.name(), pod.phase()),
            ("ns", "p", Some("Running"))
        );
        assert_eq!(*pod.spec.image_pull_secrets, [SecretName { name: "pull".into() }]);
        assert_eq!(pod.spec.service_account_name.as_deref(), Some("runner"));
        assert_eq!(
            *pod.spec.containers,
            [SpecContainer {
                name: "app".into(),
                image: "r.io/a:1".into()
            }]
        );
        let ids: Vec<(&str, &str, &str)> = pod
            .statuses()
            .map(|c| (&*c.name, &*c.image, &*c.image_id))
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
    fn keeps_only_our_annotations_and_the_identity() {
        let pod = watched(full_pod(), "sbomjob.io");
        assert_eq!(pod.annotation("sbomjob.io/app"), Some("r.io/a@sha256:00"));
        assert_eq!(
            pod.annotation("kubectl.kubernetes.io/last-applied-configuration"),
            None
        );
        assert_eq!(pod.metadata.uid.as_deref(), Some("u-1"));
        assert_eq!(pod.ours.len(), 1);
        // No annotation of ours: none kept at all.
        assert!(watched(full_pod(), "example.com").ours.is_empty());
    }

    #[test]
    fn nulls_and_missing_fields_read_as_empty() {
        let pod = watched(
            json!({
                "metadata": {"name": "p", "namespace": "ns", "annotations": null},
                "spec": {"imagePullSecrets": null},
                "status": {"containerStatuses": null, "initContainerStatuses": [{"name": "i", "imageID": null}]}
            }),
            "sbomjob.io",
        );
        assert!(pod.spec.image_pull_secrets.is_empty());
        assert_eq!(pod.statuses().count(), 1);
        assert_eq!(&*pod.statuses().next().unwrap().image_id, "");
        let bare = watched(json!({"metadata": {"name": "p"}, "status": null}), "sbomjob.io");
        assert_eq!(bare.statuses().count(), 0);
        assert_eq!((bare.phase(), bare.namespace()), (None, ""));
    }

    #[test]
    fn shared_strings_are_every_string_pods_repeat() {
        let mut pod = watched(full_pod(), "sbomjob.io");
        let mut seen: Vec<String> = pod.shared_strings().map(|s| s.to_string()).collect();
        seen.sort();
        let mut want = vec![
            "ns",
            "Running",
            "runner",
            "pull",
            "app",
            "r.io/a:1",
            "app",
            "r.io/a:1",
            "r.io/a@sha256:00",
            "init",
            "r.io/i:1",
            "docker-pullable://r.io/i@sha256:11",
            "sbomjob.io/app",
            "r.io/a@sha256:00",
        ];
        want.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn is_much_smaller_than_a_k8s_openapi_pod() {
        // What the store pays per pod before any heap data (a guard against growing it back).
        assert!(
            std::mem::size_of::<WatchedPod>() * 8 < std::mem::size_of::<core::Pod>(),
            "WatchedPod {} B vs Pod {} B",
            std::mem::size_of::<WatchedPod>(),
            std::mem::size_of::<core::Pod>()
        );
        assert!(std::mem::size_of::<ContainerStatus>() * 10 < std::mem::size_of::<core::ContainerStatus>());
    }
}
