//! The contract between the sbomjob operator and a job image, defined once and used by both
//! binaries and the tests.
//!
//! `image-config.json` is a JSON array with one element per unique image digest. Its shape is
//! fixed by the external job-image specification of ckotzbauer/sbom-operator: keys may be added,
//! never renamed or removed, and credentials are empty strings (never null) when there are none.
//! Everything here is pure: no I/O but reading a config file, no Kubernetes, no registry client.

pub mod docker_config;
pub mod image_config;
pub mod image_ref;
pub mod referrers;
pub mod result;
pub mod termination;
pub mod units;

pub use image_config::{ImageConfig, PodRef};
pub use image_ref::{ImageRef, normalize_registry};
