//! sbomjob: finds the images running in a cluster and hands their cataloguing to a job image.
//!
//! The pure core builds what a cycle needs from a snapshot ([`worklist`], [`credentials`],
//! [`objects`], [`annotate::annotations_for`], [`cycle::job_state`]); the shell ([`controller`],
//! [`cycle`] (settle, plan, launch, follow, grant), [`annotate`], [`pod_events`]) reads the cluster and
//! writes the results.

pub mod admin;
pub mod annotate;
pub mod api_metrics;
pub mod backoff;
pub mod cache;
pub mod controller;
pub mod crds;
pub mod credentials;
pub mod cycle;
pub mod drift;
#[cfg(test)]
pub mod fake_api;
pub mod fence;
pub mod health;
pub mod image_id;
pub mod leader;
pub mod lookup;
pub mod metrics;
pub mod objects;
pub mod pod;
pub mod pod_events;
pub mod pod_store;
pub mod provenance;
pub mod registry;
pub mod replan;
pub mod results;
pub mod schedule;
pub mod settings;
pub mod sources;
pub mod tags;
pub mod telemetry;
pub mod trigger;
pub mod worklist;

/// A failure that ends a cycle (the operator logs it and tries again later) or start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
    #[error("no Kubernetes client configuration (in-cluster service account or kubeconfig): {0}")]
    KubeConfig(String),
    #[error("the {0} cache stopped before it was filled")]
    CacheNotReady(&'static str),
    #[error(transparent)]
    Admin(#[from] admin::BindError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Names what was being done when a Kubernetes call failed.
pub trait ResultExt<T> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T, kube::Error> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Kube {
            action: action(),
            source,
        })
    }
}

/// True for a 404 from the API server, also when the body is not a `Status` (an unknown
/// resource type answers with a plain-text "404 page not found").
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found() || s.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: reason.into(),
            ..Default::default()
        }))
    }

    #[test]
    fn not_found_also_without_a_status_body() {
        assert!(is_not_found(&api(404, "NotFound")));
        // What the API server answers for a resource type it does not serve.
        assert!(is_not_found(&api(404, "Failed to parse error data")));
        assert!(!is_not_found(&api(403, "Forbidden")));
        assert!(!is_not_found(&api(409, "AlreadyExists")));
    }
}
