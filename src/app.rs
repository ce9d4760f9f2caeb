//! The application layer: one file per area, each use case one function that reads storage,
//! calls the domain, writes and appends to the trail in one transaction.

pub mod audits;
pub mod kpis;
