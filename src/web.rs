//! HTTP: the route table with each route's required permission, the access middleware that
//! enforces it, and the handlers of each area (HTML pages and the JSON API side by side).

pub mod access;
pub mod admission;
pub mod audits;
pub mod auth;
pub mod charts;
pub mod consent;
pub mod customer_page;
pub mod customer_view;
pub mod dsr;
pub mod error;
pub use crate::format;
pub mod hardening;
pub mod home;
pub mod imports;
pub mod kpi;
pub mod layout;
pub mod metrics;
pub mod objections;
pub mod openapi;
pub mod ops;
pub mod policy;
pub mod record;
pub mod routes;
pub mod segmentation;
pub mod signoffs;
pub mod state;
pub mod trail;
pub mod users;

pub use error::AppError;
