//! The one home of the names on what the operator creates: labels, annotation keys, the field
//! manager of every write.

use std::collections::BTreeMap;

/// The pod annotation that says container `container` was processed: `<prefix>/<container>`.
pub fn annotation_key(prefix: &str, container: &str) -> String {
    format!("{prefix}/{container}")
}

/// The field manager of every write the operator makes (pods, Jobs, Secrets, records, Lease).
pub const FIELD_MANAGER: &str = "sbomjob";

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

pub const MANAGED_BY: &str = "sbomjob";

/// Selects every object the operator made.
/// The release (`SBOM_RELEASE`) an object belongs to: Jobs, Secrets, Leases and the job pods.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// The label selector of one release's Jobs and Secrets: by manager and by release, so two
/// releases in one namespace never select each other's.
pub fn selector(release: &str) -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY},{INSTANCE_LABEL}={release}")
}

/// The labels of everything a release creates in its namespace besides Jobs and Secrets.
pub fn release_labels(release: &str) -> BTreeMap<String, String> {
    [
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (INSTANCE_LABEL.to_string(), release.to_string()),
    ]
    .into()
}

pub const CYCLE_LABEL: &str = "sbomjob.io/cycle";

/// Set on a Job once its Secret is gone and its pods are annotated: nothing left to do.
pub const STATE_LABEL: &str = "sbomjob.io/state";

pub const STATE_DONE: &str = "done";

/// The digest of each element of a Job's `image-config.json`, one per line, in order: what its
/// success grants annotations for and what its report's indices point at, readable after an
/// operator restart without the (deleted) Secret.
pub const DIGESTS_ANNOTATION: &str = "sbomjob.io/digests";

/// The settings hash ([`crate::cache::settings_hash`]) a Job was created with: what its records
/// are credited to, whatever the operator's settings are when it ends.
pub const SETTINGS_HASH_ANNOTATION: &str = "sbomjob.io/settings-hash";

/// On Jobs: the replica (Lease holder identity, `POD_NAME`) that created the Job.
pub const CREATED_BY_ANNOTATION: &str = "sbomjob.io/created-by";
