//! Retention: which records are past the policy's retention periods at an instant. Storage
//! (`db::retention`) deletes them; this module only computes the cut-offs and the report.
//!
//! The rules, per kind of record:
//! - transactions older than `transactions_days` (by `occurred_at`) are deleted;
//! - consent events older than `consent_events_days` (by `recorded_at`) are deleted, **except
//!   the latest event of each customer × purpose**: it is the proof of the current consent state
//!   (a withdrawal must stay provable, and so must the grant a processing relies on), so it is
//!   kept for as long as the customer is;
//! - customers with no transaction and no consent event since `inactive_customers_days` ago,
//!   and created before then, are erased exactly as by a data-subject erasure (register of
//!   erased pseudonyms, trail entry by pseudonym);
//! - segment memberships of runs that finished more than `segment_memberships_days` ago are
//!   deleted, except those of the published run (dashboards and exports are served from it);
//!   the runs' settings, counts and profiles stay as the record of what was done;
//! - KPI evaluations made (`evaluated_at`) before `kpi_evaluations_days` ago are deleted.
//!
//! The trail is never deleted: it proves what was done.

use chrono::{NaiveDateTime, TimeDelta};
use serde::Serialize;

use crate::policy::RetentionSpec;

/// Records strictly older than these instants are past retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Cutoffs {
    #[schema(value_type = String, format = DateTime)]
    pub transactions: NaiveDateTime,
    #[schema(value_type = String, format = DateTime)]
    pub consent_events: NaiveDateTime,
    #[schema(value_type = String, format = DateTime)]
    pub inactive_customers: NaiveDateTime,
    #[schema(value_type = String, format = DateTime)]
    pub segment_memberships: NaiveDateTime,
    #[schema(value_type = String, format = DateTime)]
    pub kpi_evaluations: NaiveDateTime,
}

pub fn cutoffs(spec: &RetentionSpec, now: NaiveDateTime) -> Cutoffs {
    let back = |days: u32| now - TimeDelta::days(i64::from(days));
    Cutoffs {
        transactions: back(spec.transactions_days),
        consent_events: back(spec.consent_events_days),
        inactive_customers: back(spec.inactive_customers_days),
        segment_memberships: back(spec.segment_memberships_days),
        kpi_evaluations: back(spec.kpi_evaluations_days),
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Removed {
    /// Transactions past their retention period.
    pub transactions: u64,
    /// Consent events past their period (the latest per customer × purpose is always kept).
    pub consent_events: u64,
    /// Inactive customers erased, with whatever they still had.
    pub customers: u64,
    pub segment_memberships: u64,
    pub kpi_evaluations: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RetentionReport {
    /// When true nothing was deleted: the counts say what would be.
    pub dry_run: bool,
    #[schema(value_type = String, format = DateTime)]
    pub applied_at: NaiveDateTime,
    pub cutoffs: Cutoffs,
    pub removed: Removed,
    pub notes: Vec<String>,
}

/// Notes that every report carries.
pub fn standing_notes() -> Vec<String> {
    vec![
        "the published segmentation's memberships are kept whatever their age: dashboards and exports use them".into(),
        "the latest consent event of each customer and purpose is kept as proof of the current state"
            .into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_count_back_whole_days_from_now() {
        let spec = RetentionSpec {
            transactions_days: 10,
            consent_events_days: 20,
            segment_memberships_days: 30,
            kpi_evaluations_days: 40,
            inactive_customers_days: 5,
        };
        let now =
            NaiveDateTime::parse_from_str("2026-03-31 12:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        let c = cutoffs(&spec, now);
        assert_eq!(c.transactions.to_string(), "2026-03-21 12:00:00");
        assert_eq!(c.consent_events.to_string(), "2026-03-11 12:00:00");
        assert_eq!(c.inactive_customers.to_string(), "2026-03-26 12:00:00");
        assert_eq!(c.segment_memberships.to_string(), "2026-03-01 12:00:00");
        assert_eq!(c.kpi_evaluations.to_string(), "2026-02-19 12:00:00");
    }
}
