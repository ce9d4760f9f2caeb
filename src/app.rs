//! Use cases: each reads storage, asks the domain, writes and appends to the trail in one
//! transaction. The only layer that knows both `crate::db` and the domain modules.

pub mod accounts;
pub mod consent;
pub mod customers;
pub mod demo;
pub mod dsr;
pub mod objections;
pub mod retention;
