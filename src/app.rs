//! Use cases: each reads storage, calls the domain, writes the result and appends to the trail
//! in one transaction. The only layer that imports both `db` and a domain module; handlers call
//! one function here.

pub mod record;
pub mod signoffs;
