//! Fairness audit of a segmentation: does segment membership depend on a protected attribute,
//! how strongly, how sure are we, and through which features?
//!
//! Everything here is a pure function on plain Rust types. The application layer
//! (`app::audits`) builds an [`AuditInput`], picks [`FairnessThresholds`] from the policy and
//! calls [`audit`]; the returned [`AuditReport`] is already safe to show (small cells
//! suppressed) and serialises to the JSON described in the fairness-audit issue.
//!
//! Layout:
//! - [`groups`]: protected attributes as interned group columns, age bands, intersections.
//! - [`table`]: the segment × group contingency table.
//! - [`stats`]: chi-square (with a public survival-function wrapper the KPI area can reuse),
//!   Cramér's V, Benjamini-Hochberg, Wilson intervals, the correlation ratio η.
//! - [`sampling`]: seeded Monte-Carlo p-values (Patefield).
//! - [`noncentral`]: the noncentral χ² distribution and the test-inversion interval of V.
//! - [`representation`]: representation ratios, the four-fifths rule, fair-clustering balance.
//! - [`proxies`]: association of features with protected attributes.
//! - [`suppression`]: small-cell suppression with complementary suppression.
//! - [`verdict`]: thresholds, verdict rules and the plain-English reasons.
//! - [`gate`]: which verdicts let a run be published, and what an override must say.
//! - [`input`]: an audit's input from values read per member, the policy's thresholds.
//! - [`export`]: a stored audit as CSV.
//! - [`audit`](mod@audit): the entry point and the serialisable report.

pub mod audit;
pub mod consent_selection;
pub mod export;
pub mod gate;
pub mod groups;
pub mod input;
pub mod noncentral;
pub mod proxies;
#[cfg(test)]
mod reference_tests;
pub mod representation;
pub mod sampling;
pub mod signoff;
pub mod stats;
pub mod summary;
pub mod suppression;
pub mod table;
pub mod verdict;

pub use audit::{
    AttributeReport, AuditInput, AuditReport, Feature, FeatureValues, ProtectedAttribute, Segment,
    audit,
};
pub use groups::{Bands, GroupColumn, MISSING_GROUP, NO_LABEL};
pub use stats::chi_square_sf;
pub use table::ContingencyTable;
pub use verdict::{FairnessThresholds, Verdict};

/// Everything that can go wrong when preparing or running a fairness audit.
///
/// These are input errors: the audit itself never fails on valid input, even when a table is
/// degenerate (that gives a "not testable" result instead).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FairnessError {
    #[error("the audited population is empty")]
    EmptyPopulation,
    #[error("{what} has {found} values but the population has {expected} members")]
    LengthMismatch {
        what: String,
        expected: usize,
        found: usize,
    },
    #[error("band cut points must be finite and strictly increasing, got {0:?}")]
    InvalidBands(Vec<f64>),
    #[error("band cut points must not be empty")]
    NoBands,
    #[error("{what} contains a non-finite value at member {index}")]
    NonFinite { what: String, index: usize },
    #[error("group label {0:?} is reserved for missing values")]
    ReservedLabel(String),
    #[error("group code {code} at member {index} is out of range ({levels} levels)")]
    CodeOutOfRange {
        code: u32,
        index: usize,
        levels: usize,
    },
    #[error("member {index} is in segment {segment}, which is not among the audited segments")]
    UnknownSegment { index: usize, segment: u32 },
    #[error("segment {0} is listed twice")]
    DuplicateSegment(u32),
    #[error("attribute {0:?} is listed twice")]
    DuplicateAttribute(String),
    #[error("intersection refers to unknown attribute {0:?}")]
    UnknownAttribute(String),
    #[error("an intersection needs two different attributes, got {0:?} twice")]
    SelfIntersection(String),
    #[error("threshold {name} is invalid: {why}")]
    InvalidThreshold { name: &'static str, why: String },
    #[error("{0} must contain at least one value")]
    EmptyInput(String),
}
