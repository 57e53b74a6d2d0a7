//! Registry sources: repositories whose tags are catalogued before anything runs them
//! ([`spec`]: the ImageSource resource and the check of what a tenant wrote; [`scan`]: one scan
//! of a source against its registry; [`task`]: the watch and the loop that scans sources when
//! due and writes their status; [`feed`]: their digests as work of the cycle).

pub mod feed;
pub mod scan;
pub mod spec;
pub mod task;
