//! The job-image contract shared by the operator and the entrypoint, and the entrypoint itself.
//!
//! `image-config.json` is a JSON array with one element per unique image digest. Its shape is
//! fixed by the external job-image specification of ckotzbauer/sbom-operator: keys may be added,
//! never renamed or removed, and credentials are empty strings (never null) when there are none.

pub mod app;
pub mod attach;
pub mod auth;
pub mod batch;
pub mod config;
pub mod image_ref;
pub mod preset;
pub mod reaper;
pub mod redact;
pub mod runner;
pub mod settings;
pub mod summary;
pub mod template;
pub mod termination;

pub use config::{ImageConfig, PodRef};
