//! The use cases: each reads storage, calls the domain, writes and appends to the trail in
//! one transaction. The only layer that imports both `crate::db` and a domain module.

pub mod explain;
pub mod jobs;
pub mod runs;
