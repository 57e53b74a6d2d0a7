//! Registry sources: repositories whose tags are catalogued before anything runs them
//! ([`spec`]: the ImageSource resource and the check of what a tenant wrote; [`scan`]: one scan
//! of a source against its registry).

pub mod scan;
pub mod spec;
