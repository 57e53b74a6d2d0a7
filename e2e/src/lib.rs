//! Harness of the end-to-end suites (e2e/tests/*.rs), against the local cluster started by
//! `e2e/cluster/cluster.sh up`. hack/test.sh (`make test`) runs them; one file by hand:
//! `cargo test -p sbomjob-e2e --test <file> -- --test-threads=1`.
//!
//! By concern:
//! - [`cluster`]: the connection (`KUBECONFIG`), images.env, kubectl, waits, the workspace's
//!   binaries, an API server restart.
//! - [`scenario`]: one scenario's namespaces and the objects the test makes there (pods, pull
//!   secrets); its cleanup.
//! - [`observe`]: what the operator made, read from the API: Jobs, their Secrets and per-image
//!   reports, annotations, Events, ImageRecords. Checks assert on these or on `/metrics`,
//!   never on log wording.
//! - [`operator`]: the operator as a process: settings, start and kill, its admin endpoint on a
//!   port the harness picks (`/readyz`, `/metrics`).
//! - [`helm`]: chart installs, the chart's ServiceAccount as the operators' identity, the CRD.
//! - [`diagnostics`]: the dump printed when a scenario fails.
//! - [`sim`]: simulated nodes and pods; [`registry`]: images made for one scenario.
//!
//! The names the tests use most are re-exported here.

pub mod bench;
pub mod cluster;
pub mod diagnostics;
pub mod helm;
pub mod observe;
pub mod operator;
pub mod registry;
pub mod scenario;
pub mod sim;

pub use cluster::{
    Cluster, Error, SKOPEO_INSPECT, restart_apiserver, skopeo_job_image, unique_identity, wait_for,
    workspace_bin,
};
pub use observe::{
    AnnotationRecorder, assert_no_credentials_left, image_records, job_digests, job_end, job_name,
};
pub use operator::{CYCLES_ERROR, CYCLES_OK, LEADER, Metrics, http_get};
pub use scenario::{SCENARIO_LABEL, Scenario};
