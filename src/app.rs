//! The application layer: one file per area, each use case one function that reads storage,
//! calls the domain, writes and appends to the trail in one transaction. The only layer that
//! imports both `crate::db` and a domain module.

pub mod accounts;
pub mod activation;
pub mod audits;
pub mod consent;
pub mod customers;
pub mod demo;
pub mod dsr;
pub mod explain;
pub mod home;
pub mod imports;
pub mod jobs;
pub mod kept;
pub mod kpi_compare;
pub mod kpis;
pub mod objections;
pub mod parsed;
pub mod record;
pub mod retention;
pub mod run_form;
pub mod runs;
pub mod side_by_side;
pub mod signoffs;
pub mod throttle;
