//! `sbomjob-entrypoint`: loops a CLI over the images of `image-config.json` (the format is
//! [`sbomjob_contract`]'s).

pub mod app;
pub mod attach;
pub mod auth;
pub mod batch;
pub mod facts;
pub mod preset;
pub mod reaper;
pub mod redact;
pub mod report;
pub mod runner;
pub mod settings;
pub mod summary;
pub mod template;
pub mod termination;
pub mod work;
