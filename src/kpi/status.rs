//! A KPI value's status against its target and alert threshold.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::KpiError;
use super::catalogue::{Direction, Kpi, KpiValue};

/// How a value compares with its objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// At or better than the target.
    OnTarget,
    /// Worse than the target but not past the alert threshold.
    Warning,
    /// Past the alert threshold (below it when higher is better, above it when lower is).
    Alert,
    /// The value is undefined (e.g. no active customers), so it cannot be judged.
    Undefined,
}

impl Status {
    /// `on_target`, `warning`, `alert` or `undefined`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::OnTarget => "on_target",
            Status::Warning => "warning",
            Status::Alert => "alert",
            Status::Undefined => "undefined",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A target and an alert threshold for one KPI, oriented by the KPI's direction.
///
/// For a higher-is-better KPI the alert threshold is at or below the target (retention
/// target 0.40, alert under 0.30); for a lower-is-better KPI at or above it (churn target
/// 0.60, alert over 0.70).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    direction: Direction,
    target: f64,
    alert_threshold: f64,
}

impl Objective {
    /// An objective for `kpi`, with the KPI's own direction.
    pub fn for_kpi(kpi: Kpi, target: f64, alert_threshold: f64) -> Result<Self, KpiError> {
        Self::new(kpi.direction(), target, alert_threshold)
    }

    /// An objective with an explicit direction; rejects non-finite numbers and a threshold on
    /// the wrong side of the target.
    pub fn new(direction: Direction, target: f64, alert_threshold: f64) -> Result<Self, KpiError> {
        if !target.is_finite() || !alert_threshold.is_finite() {
            return Err(KpiError::InvalidParameter(
                "target and alert threshold must be finite numbers".into(),
            ));
        }
        let ordered = match direction {
            Direction::HigherIsBetter => alert_threshold <= target,
            Direction::LowerIsBetter => alert_threshold >= target,
        };
        if !ordered {
            let side = match direction {
                Direction::HigherIsBetter => "at or below",
                Direction::LowerIsBetter => "at or above",
            };
            return Err(KpiError::InvalidParameter(format!(
                "alert threshold {alert_threshold} must be {side} the target {target}"
            )));
        }
        Ok(Self {
            direction,
            target,
            alert_threshold,
        })
    }

    /// The target.
    pub fn target(&self) -> f64 {
        self.target
    }

    /// The alert threshold.
    pub fn alert_threshold(&self) -> f64 {
        self.alert_threshold
    }

    /// The direction the objective is read in.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The status of `value`. Reaching the target exactly is on target; reaching the alert
    /// threshold exactly is still a warning (the alert is for values past it).
    pub fn status(&self, value: &KpiValue) -> Status {
        let Some(v) = value.value() else {
            return Status::Undefined;
        };
        match self.direction {
            Direction::HigherIsBetter if v >= self.target => Status::OnTarget,
            Direction::HigherIsBetter if v < self.alert_threshold => Status::Alert,
            Direction::LowerIsBetter if v <= self.target => Status::OnTarget,
            Direction::LowerIsBetter if v > self.alert_threshold => Status::Alert,
            _ => Status::Warning,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::catalogue::Undefined;
    use super::*;

    #[test]
    fn higher_is_better_statuses() {
        let o = Objective::for_kpi(Kpi::RetentionRate, 0.4, 0.3).unwrap();
        let s = |v: f64| o.status(&KpiValue::Defined(v));
        assert_eq!(s(0.5), Status::OnTarget);
        assert_eq!(s(0.4), Status::OnTarget);
        assert_eq!(s(0.35), Status::Warning);
        assert_eq!(s(0.3), Status::Warning);
        assert_eq!(s(0.29), Status::Alert);
    }

    #[test]
    fn lower_is_better_statuses_for_churn() {
        let o = Objective::for_kpi(Kpi::ChurnRate, 0.6, 0.7).unwrap();
        let s = |v: f64| o.status(&KpiValue::Defined(v));
        assert_eq!(s(0.5), Status::OnTarget);
        assert_eq!(s(0.6), Status::OnTarget);
        assert_eq!(s(0.65), Status::Warning);
        assert_eq!(s(0.71), Status::Alert);
        // A churn threshold written as if higher were better is rejected.
        assert!(Objective::for_kpi(Kpi::ChurnRate, 0.6, 0.5).is_err());
        assert!(Objective::for_kpi(Kpi::Revenue, 100.0, 120.0).is_err());
    }

    #[test]
    fn undefined_values_and_bad_numbers() {
        let o = Objective::for_kpi(Kpi::AverageOrderValue, 30.0, 20.0).unwrap();
        assert_eq!(
            o.status(&KpiValue::Undefined(Undefined::NoOrders)),
            Status::Undefined
        );
        assert!(Objective::for_kpi(Kpi::Revenue, f64::NAN, 1.0).is_err());
        assert!(Objective::for_kpi(Kpi::Revenue, 1.0, f64::NEG_INFINITY).is_err());
        // Target equal to threshold: no warning band.
        let tight = Objective::for_kpi(Kpi::Revenue, 10.0, 10.0).unwrap();
        assert_eq!(tight.status(&KpiValue::Defined(9.99)), Status::Alert);
        assert_eq!(Status::OnTarget.to_string(), "on_target");
    }
}
