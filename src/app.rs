//! The application layer: one file per area, each use case one function that reads storage,
//! calls the domain, writes and appends to the trail in one transaction. The only layer that
//! imports both `crate::db` and a domain module.

pub mod audits;
pub mod jobs;
pub mod kpis;
pub mod runs;
