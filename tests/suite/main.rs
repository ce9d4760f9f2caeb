//! The integration suite: one binary (one build, one link) that drives the real server over
//! HTTP and the real `fairseg` binary, on SQLite by default or on PostgreSQL with
//! `FAIRSEG_TEST_BACKEND=postgres` and `FAIRSEG_TEST_PG_URL`.

mod access;
mod audits;
mod auth;
mod browser;
mod cli;
mod cluster;
mod consent;
mod consent_selection;
mod consent_state;
mod dsr;
mod helpers;
mod imports;
mod kpi;
mod migration;
mod migrations;
mod objections;
mod ops;
mod proxy;
mod security;
mod segmentation;
mod segmentation_explain;
mod signoffs;
mod trail;
mod users;
