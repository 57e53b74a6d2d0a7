//! sbomjob's three CRDs, one definition each (the Rust types), and `sbomjob-operator
//! --apply-crds`: the chart's pre-install/pre-upgrade hook, because Helm creates what `crds/`
//! holds on the first install only and never updates it.
//!
//! Each CRD is written by server-side apply under [`FIELD_MANAGER`], forced: Helm's own install
//! of `crds/` owns every field (manager `helm`), so an unforced apply would conflict on every
//! changed description. Where CRDs are managed by something else (GitOps, another chart), the
//! chart's `crds.upgrade.enabled: false` turns the hook off. Two guards keep the apply from
//! breaking what is there:
//! - a CRD written by a newer sbomjob ([`VERSION_ANNOTATION`]) is left as it is: another release
//!   of a newer chart uses it, and an older schema would prune its new fields;
//! - a version still listed in `status.storedVersions` that ours no longer serves stops the
//!   apply with an error naming it (the API server would refuse it too): the stored objects
//!   must be migrated first.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, CustomResourceExt,
    api::{Patch, PatchParams},
};

use crate::{cache::ImageRecord, provenance::policy::TrustPolicy, sources::spec::ImageSource};

/// The field manager of the hook's apply.
pub const FIELD_MANAGER: &str = "sbomjob-crds";
/// The sbomjob version whose types generated a CRD (on every CRD, also in `crds/`).
pub const VERSION_ANNOTATION: &str = "sbomjob.io/version";
const OUR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The ImageRecord, ImageSource and TrustPolicy CRDs as `crdgen` prints them.
pub fn definitions() -> [CustomResourceDefinition; 3] {
    [
        annotated(ImageRecord::crd()),
        annotated(ImageSource::crd()),
        annotated(TrustPolicy::crd()),
    ]
}

/// `crd` with [`VERSION_ANNOTATION`] set to this build's version.
pub fn annotated(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    crd.metadata
        .annotations
        .get_or_insert_default()
        .insert(VERSION_ANNOTATION.into(), OUR_VERSION.into());
    crd
}

/// A CRD as the committed YAML: a header naming how it was made, then the object.
pub fn yaml(crd: &CustomResourceDefinition, header: &str) -> String {
    let yaml = serde_saphyr::to_string(crd).expect("the CRD serializes");
    format!("# {header}\n{yaml}")
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{crd}: {action}: {source}")]
    Kube {
        crd: String,
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error(
        "{crd}: version {version} is in status.storedVersions but this sbomjob ({OUR_VERSION}) serves only {served}: \
         migrate the stored objects and remove it from storedVersions first"
    )]
    StoredVersion {
        crd: String,
        version: String,
        served: String,
    },
    #[error("{crd}: not Established after {0:?}: {conditions}", APPLY_WAIT)]
    NotEstablished { crd: String, conditions: String },
}

/// What [`apply`] did with one CRD.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (created, updated, or already identical), and Established; `previous` says what
    /// was there: `absent`, its version, or `unversioned` (a chart before 0.2.0).
    Applied { previous: String },
    /// Left as it is: written by this newer sbomjob version.
    KeptNewer(String),
}

const APPLY_WAIT: Duration = Duration::from_secs(60);

/// The decision for one CRD from what the cluster has: `None` to apply, or why not.
fn check(
    ours: &CustomResourceDefinition,
    theirs: &CustomResourceDefinition,
) -> Result<Option<Outcome>, ApplyError> {
    let name = ours.metadata.name.clone().unwrap_or_default();
    let version = theirs
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(VERSION_ANNOTATION));
    let newer = version
        .and_then(|v| semver::Version::parse(v).ok())
        .is_some_and(|v| v > semver::Version::parse(OUR_VERSION).expect("the crate version is semver"));
    if newer {
        return Ok(Some(Outcome::KeptNewer(version.cloned().unwrap_or_default())));
    }
    let served: Vec<&str> = ours.spec.versions.iter().map(|v| v.name.as_str()).collect();
    let stored = theirs.status.as_ref().and_then(|s| s.stored_versions.as_ref());
    if let Some(v) = stored
        .into_iter()
        .flatten()
        .find(|v| !served.contains(&v.as_str()))
    {
        return Err(ApplyError::StoredVersion {
            crd: name,
            version: v.clone(),
            served: served.join(", "),
        });
    }
    Ok(None)
}

fn established(crd: &CustomResourceDefinition) -> bool {
    let conditions = crd.status.as_ref().and_then(|s| s.conditions.as_ref());
    let is_true = |t: &str| {
        conditions
            .into_iter()
            .flatten()
            .any(|c| c.type_ == t && c.status == "True")
    };
    is_true("Established") && is_true("NamesAccepted")
}

/// Applies [`definitions`] (see the module doc) and waits until each is Established.
pub async fn apply(client: Client) -> Result<Vec<(String, Outcome)>, ApplyError> {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let mut done = Vec::new();
    for ours in definitions() {
        let name = ours.metadata.name.clone().expect("a CRD has a name");
        let kube_err = |action| {
            let crd = name.clone();
            move |source| ApplyError::Kube { crd, action, source }
        };
        let theirs = api.get_opt(&name).await.map_err(kube_err("reading it"))?;
        if let Some(theirs) = &theirs
            && let Some(outcome) = check(&ours, theirs)?
        {
            done.push((name, outcome));
            continue;
        }
        let previous = match theirs {
            None => "absent".to_string(),
            Some(t) => t
                .metadata
                .annotations
                .and_then(|mut a| a.remove(VERSION_ANNOTATION))
                .unwrap_or_else(|| "unversioned".into()),
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&name, &params, &Patch::Apply(&ours))
            .await
            .map_err(kube_err("applying it"))?;
        let deadline = tokio::time::Instant::now() + APPLY_WAIT;
        loop {
            let now = api.get(&name).await.map_err(kube_err("reading it back"))?;
            if established(&now) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let conditions = now.status.and_then(|s| s.conditions).unwrap_or_default();
                let conditions = conditions
                    .iter()
                    .map(|c| {
                        format!(
                            "{}={} ({})",
                            c.type_,
                            c.status,
                            c.message.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(ApplyError::NotEstablished {
                    crd: name,
                    conditions,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        done.push((name, Outcome::Applied { previous }));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionStatus;

    fn cluster_copy(version: Option<&str>, stored: &[&str]) -> CustomResourceDefinition {
        let mut crd = ImageRecord::crd();
        if let Some(v) = version {
            crd.metadata.annotations = Some([(VERSION_ANNOTATION.to_string(), v.to_string())].into());
        }
        crd.status = Some(CustomResourceDefinitionStatus {
            stored_versions: Some(stored.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        });
        crd
    }

    #[test]
    fn every_definition_names_our_version_and_group() {
        for crd in definitions() {
            assert_eq!(crd.spec.group, "sbomjob.io");
            assert_eq!(crd.metadata.annotations.unwrap()[VERSION_ANNOTATION], OUR_VERSION);
        }
    }

    #[test]
    fn older_unannotated_or_same_version_is_applied() {
        let ours = &definitions()[0];
        let served = &ours.spec.versions[0].name;
        for v in [None, Some("0.0.1"), Some(OUR_VERSION), Some("not a version")] {
            assert_eq!(check(ours, &cluster_copy(v, &[served])).unwrap(), None, "{v:?}");
        }
    }

    #[test]
    fn a_newer_sbomjob_s_crd_is_kept() {
        let ours = &definitions()[0];
        let got = check(ours, &cluster_copy(Some("999.0.0"), &[])).unwrap();
        assert_eq!(got, Some(Outcome::KeptNewer("999.0.0".into())));
    }

    #[test]
    fn a_stored_version_we_do_not_serve_is_refused_by_name() {
        let ours = &definitions()[0];
        let err = check(ours, &cluster_copy(None, &["v0old"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("imagerecords.sbomjob.io: version v0old is in status.storedVersions"),
            "{err}"
        );
    }
}
