//! KPIs per period, drift of the population since segmentation, and the alerts that say when
//! to re-segment.
//!
//! Pure computation on plain Rust types: the application layer (`app::kpis`) loads
//! transactions and segment memberships, this module computes; the database and the web
//! translate at the edges.
//!
//! - [`period`]: ISO weeks, months and quarters as half-open date ranges, back-fill ranges.
//! - [`catalogue`]: the KPI catalogue, exact formulas, definition versions, undefined values.
//! - [`evaluate`]: every KPI for `all` and each segment for a period, from columnar
//!   transactions.
//! - [`status`]: a KPI's status against its target and alert threshold, direction-aware.
//! - [`drift`]: population stability index and two-sample Kolmogorov–Smirnov per feature, the
//!   shift in segment shares.
//! - [`ks`]: the Kolmogorov–Smirnov test itself, matching `scipy.stats.ks_2samp`.
//! - [`targets`]: which target applies to a KPI in a segment, the policy's alert rules, the
//!   customers a figure rests on.
//! - [`series`]: what the log says of a stored figure: its series, status, suppression and
//!   coverage.
//! - [`population`]: every customer by dense index, the live members in their segments.
//! - [`schedule`]: which periods the server's own schedule evaluates on a day.
//! - [`alert`]: alerts (persistent KPI alerts, drift, low stability) and the re-segmentation
//!   advice.

use chrono::NaiveDate;
use thiserror::Error;

pub mod alert;
pub mod catalogue;
pub mod drift;
pub mod evaluate;
pub mod ks;
pub mod period;
pub mod population;
pub mod schedule;
pub mod series;
pub mod status;
pub mod targets;
#[cfg(test)]
mod tests_cdnow;

pub use alert::{Alert, AlertRules, Assessment, KpiSeries, ResegmentationAdvice, Severity, assess};
pub use catalogue::{Aggregates, ClvParams, Direction, Kpi, KpiValue, Undefined};
pub use drift::{
    DriftLevel, DriftThresholds, FeatureDrift, PsiBins, SegmentShift, feature_drift, psi,
    psi_from_shares, segment_shift,
};
pub use evaluate::{
    ALL_SEGMENT, Evaluation, EvaluationRow, Evaluator, SegmentKpis, Segmentation, Transactions,
};
pub use ks::{KsMethod, KsResult, ks_2samp};
pub use period::{Coverage, Period, PeriodKind, date_of_day, day_number};
pub use status::{Objective, Status};

/// Everything that can go wrong in KPI, drift and alert computation.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum KpiError {
    /// A period kind other than week, month or quarter.
    #[error("unknown period kind {0:?}: expected week, month or quarter")]
    UnknownPeriodKind(String),
    /// A KPI name not in the catalogue.
    #[error("unknown KPI {0:?}")]
    UnknownKpi(String),
    /// A period would start or end outside the supported calendar.
    #[error("date {0} is outside the supported calendar range")]
    DateOutOfRange(NaiveDate),
    /// `from` is after `to`.
    #[error("empty date range: {from} is after {to}")]
    EmptyDateRange {
        /// Start of the requested range.
        from: NaiveDate,
        /// End of the requested range.
        to: NaiveDate,
    },
    /// Two input columns that must be parallel have different lengths.
    #[error("column {column} has {found} entries, expected {expected}")]
    LengthMismatch {
        /// The offending column.
        column: &'static str,
        /// Length it should have.
        expected: usize,
        /// Length it has.
        found: usize,
    },
    /// A transaction refers to a customer index outside the population.
    #[error(
        "transaction row {row} refers to customer {customer}, but there are {n_customers} customers"
    )]
    CustomerOutOfRange {
        /// Row index.
        row: usize,
        /// The customer index found.
        customer: u32,
        /// Population size.
        n_customers: u32,
    },
    /// An amount is NaN or infinite.
    #[error("transaction row {row} has a non-finite amount")]
    NonFiniteAmount {
        /// Row index.
        row: usize,
    },
    /// One order id appears under two customers.
    #[error("order {order} belongs to two customers ({} and {})", customers.0, customers.1)]
    OrderSharedByCustomers {
        /// The order id.
        order: u64,
        /// Two customers that share it.
        customers: (u32, u32),
    },
    /// A segment name is empty, duplicated or the reserved `all`.
    #[error("invalid segment name {0:?}: names must be non-empty, unique and not \"all\"")]
    InvalidSegmentName(String),
    /// A customer is assigned to a segment index that does not exist.
    #[error(
        "customer {customer} is assigned to segment {segment}, but there are {n_segments} segments"
    )]
    SegmentOutOfRange {
        /// Customer index.
        customer: usize,
        /// Segment index found.
        segment: u32,
        /// Number of segments.
        n_segments: u32,
    },
    /// A sample for a statistical test or drift measure is empty.
    #[error("sample {0} is empty")]
    EmptySample(&'static str),
    /// A sample contains NaN or infinity.
    #[error("sample {0} contains a non-finite value")]
    NonFiniteSample(&'static str),
    /// A parameter (threshold, margin, …) is out of its valid range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
}
