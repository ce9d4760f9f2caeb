//! fairseg: a governed customer-segmentation analytics server.
//!
//! Areas, each in its own module: `policy` (governance as code), `db` (storage on SQLite or
//! PostgreSQL), `auth` (accounts, tokens, permissions), `trail` (tamper-evident log), `web`
//! (routes, pages, API); the domain areas `segmentation`, `fairness` and `kpi` compute on plain
//! Rust types and know nothing of HTTP or SQL.

pub mod app;
pub mod auth;
pub mod config;
pub mod consent;
pub mod customers;
pub mod db;
pub mod demo;
pub mod fairness;
pub mod format;
pub mod imports;
pub mod kpi;
pub mod policy;
pub mod retention;
pub mod segmentation;
pub mod spreadsheet;
pub mod startup;
pub mod telemetry;
pub mod time;
pub mod trail;
pub mod web;

/// jemalloc instead of the system allocator: a million-row import allocates and frees tens of
/// millions of small values across two threads, where glibc's malloc spent a fifth of the
/// time (most of it in the first large import of a process).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
