//! Object metadata as the operator keeps it: everything but `managedFields`.
//!
//! `managedFields` is the API server's record of which manager set which field: a JSON tree of
//! field paths per manager, several KiB on an object written by a few managers (a record the
//! operator created and then wrote the status of, a pod the kubelet updates). The operator never
//! reads it, yet deserializing a `ObjectMeta` builds all of it: measured at 10,000 pods (issue 14),
//! most of the memory of the loaded ImageRecords was theirs. Skipped while parsing, it is never
//! allocated at all.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Deserializer};

/// `ObjectMeta` without `managedFields` (serde passes over that key without building it).
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct MetaWithoutManagedFields {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

/// For `#[serde(deserialize_with = "...")]` on a `metadata: ObjectMeta` field; `null` is empty.
pub fn without_managed_fields<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = Option::<MetaWithoutManagedFields>::deserialize(d)?.unwrap_or_default();
    Ok(ObjectMeta {
        annotations: m.annotations,
        creation_timestamp: m.creation_timestamp,
        deletion_grace_period_seconds: m.deletion_grace_period_seconds,
        deletion_timestamp: m.deletion_timestamp,
        finalizers: m.finalizers,
        generate_name: m.generate_name,
        generation: m.generation,
        labels: m.labels,
        managed_fields: None,
        name: m.name,
        namespace: m.namespace,
        owner_references: m.owner_references,
        resource_version: m.resource_version,
        self_link: m.self_link,
        uid: m.uid,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Deserialize)]
    struct Object {
        #[serde(deserialize_with = "without_managed_fields")]
        metadata: ObjectMeta,
    }

    #[test]
    fn every_field_but_managed_fields_is_kept() {
        let meta = json!({
            "name": "a", "namespace": "ns", "uid": "u-1", "resourceVersion": "7", "generation": 3,
            "generateName": "a-", "selfLink": "/x", "finalizers": ["f"],
            "labels": {"l": "1"}, "annotations": {"k": "v"},
            "creationTimestamp": "2026-12-02T10:00:00Z", "deletionTimestamp": "2026-12-02T11:00:00Z",
            "deletionGracePeriodSeconds": 30,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u-2"}],
            "managedFields": [{"manager": "kubelet", "operation": "Update", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:status": {"f:phase": {}}}}],
        });
        let full: ObjectMeta = serde_json::from_value(meta.clone()).unwrap();
        let slim = serde_json::from_value::<Object>(json!({ "metadata": meta }))
            .unwrap()
            .metadata;
        assert!(full.managed_fields.is_some());
        assert_eq!(
            slim,
            ObjectMeta {
                managed_fields: None,
                ..full
            }
        );
    }

    #[test]
    fn null_or_absent_metadata_is_empty() {
        let o: Object = serde_json::from_value(json!({ "metadata": null })).unwrap();
        assert_eq!(o.metadata, ObjectMeta::default());
    }
}
