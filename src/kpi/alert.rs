//! Alerts and the "re-segmentation recommended" signal.
//!
//! Three kinds of evidence that a segmentation has gone stale:
//! - a KPI past its alert threshold for N consecutive periods (one bad month is noise);
//! - drift of a feature or of the segment shares since segmentation;
//! - low stability of the segmentation itself (adjusted Rand index between re-runs, computed
//!   by the segmentation module and passed in).
//!
//! Alerts have a severity. Only `Action` alerts recommend re-segmenting; warnings are shown
//! so analysts can watch them.

use serde::{Deserialize, Serialize};

use super::KpiError;
use super::catalogue::{Direction, Kpi};
use super::drift::{DriftLevel, DriftThresholds, FeatureDrift, SegmentShift};
use super::status::Status;

/// How seriously to take an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth watching; does not by itself recommend re-segmenting.
    Warning,
    /// Recommends re-segmenting.
    Action,
}

/// Rules that turn evaluations, drift and stability into alerts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlertRules {
    consecutive_periods: usize,
    min_adjusted_rand: f64,
    drift: DriftThresholds,
}

impl AlertRules {
    /// `consecutive_periods` ≥ 1 periods past the alert threshold make a KPI alert;
    /// an adjusted Rand index below `min_adjusted_rand` (in (−1, 1]) is low stability.
    pub fn new(
        consecutive_periods: usize,
        min_adjusted_rand: f64,
        drift: DriftThresholds,
    ) -> Result<Self, KpiError> {
        if consecutive_periods == 0 {
            return Err(KpiError::InvalidParameter(
                "consecutive_periods must be at least 1".into(),
            ));
        }
        if !(min_adjusted_rand > -1.0 && min_adjusted_rand <= 1.0) {
            return Err(KpiError::InvalidParameter(format!(
                "min_adjusted_rand must be in (-1, 1], got {min_adjusted_rand}"
            )));
        }
        Ok(Self {
            consecutive_periods,
            min_adjusted_rand,
            drift,
        })
    }

    /// Periods in a row past the alert threshold that raise a KPI alert.
    pub fn consecutive_periods(&self) -> usize {
        self.consecutive_periods
    }

    /// Adjusted Rand index below which the segmentation counts as unstable.
    pub fn min_adjusted_rand(&self) -> f64 {
        self.min_adjusted_rand
    }

    /// Drift thresholds.
    pub fn drift(&self) -> &DriftThresholds {
        &self.drift
    }
}

impl Default for AlertRules {
    /// Three periods in a row, adjusted Rand index 0.6, default drift thresholds.
    fn default() -> Self {
        Self {
            consecutive_periods: 3,
            min_adjusted_rand: 0.6,
            drift: DriftThresholds::default(),
        }
    }
}

/// The status history of one KPI in one segment, oldest period first, complete periods only
/// (a period still filling up is never judged).
#[derive(Debug, Clone, Copy)]
pub struct KpiSeries<'a> {
    /// The KPI.
    pub kpi: Kpi,
    /// `all` or a segment name.
    pub segment: &'a str,
    /// Statuses per period, oldest first, without gaps.
    pub statuses: &'a [Status],
    /// Index of the first period that counts towards the advice: the first one after the
    /// segmentation was published (what came before says nothing about whether it has gone
    /// stale). 0 counts them all.
    pub counted_from: usize,
}

impl KpiSeries<'_> {
    /// Number of most recent periods in a row with status `Alert`, among those counted.
    pub fn trailing_alerts(&self) -> usize {
        self.statuses[self.counted_from.min(self.statuses.len())..]
            .iter()
            .rev()
            .take_while(|s| **s == Status::Alert)
            .count()
    }

    /// Periods judged against the target (undefined and suppressed ones are not), when none
    /// of them was on target and the latest is past the alert threshold: the KPI has never
    /// met its target since the start, so the target does not fit the population. That is
    /// not evidence that the segmentation went stale.
    pub fn never_on_target(&self) -> Option<usize> {
        let judged: Vec<Status> = self
            .statuses
            .iter()
            .copied()
            .filter(|s| *s != Status::Undefined)
            .collect();
        (judged.last() == Some(&Status::Alert) && !judged.contains(&Status::OnTarget))
            .then_some(judged.len())
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Alert {
    /// A KPI past its alert threshold for at least the configured number of periods.
    KpiPersistent {
        /// The KPI.
        kpi: Kpi,
        /// `all` or the segment.
        segment: String,
        /// Periods in a row past the threshold.
        periods: usize,
    },
    /// A KPI past its alert threshold now and below its target in every period judged since
    /// the start: the target is the problem, not drift.
    TargetUnmet {
        /// The KPI.
        kpi: Kpi,
        /// `all` or the segment.
        segment: String,
        /// Periods judged, none of them on target.
        periods: usize,
    },
    /// A feature's distribution moved.
    FeatureDrift {
        /// Feature name.
        feature: String,
        /// Its PSI.
        psi: f64,
        /// PSI level.
        level: DriftLevel,
        /// KS p-value.
        ks_p_value: f64,
    },
    /// The segment shares moved.
    SegmentShift {
        /// PSI over segment shares.
        psi: f64,
        /// Its level.
        level: DriftLevel,
    },
    /// Re-running the segmentation gives a different partition.
    LowStability {
        /// Adjusted Rand index measured.
        adjusted_rand: f64,
        /// The limit it fell below.
        limit: f64,
    },
}

impl Alert {
    /// Warning or action.
    pub fn severity(&self) -> Severity {
        match self {
            Alert::KpiPersistent { .. } | Alert::LowStability { .. } => Severity::Action,
            Alert::FeatureDrift {
                level: DriftLevel::Act,
                ..
            }
            | Alert::SegmentShift {
                level: DriftLevel::Act,
                ..
            } => Severity::Action,
            Alert::FeatureDrift { .. } | Alert::SegmentShift { .. } | Alert::TargetUnmet { .. } => {
                Severity::Warning
            }
        }
    }

    /// A sentence for the dashboard and the advice.
    pub fn message(&self, rules: &AlertRules) -> String {
        let d = &rules.drift;
        let psi_words = |level: DriftLevel| match level {
            DriftLevel::Act => format!("at or above the action threshold {:.2}", d.psi_act()),
            DriftLevel::Warn => format!("at or above the warning threshold {:.2}", d.psi_warn()),
            DriftLevel::Stable => format!("below the warning threshold {:.2}", d.psi_warn()),
        };
        // The wrong side of a limit, for this KPI's direction.
        let side = |kpi: &Kpi| match kpi.direction() {
            Direction::HigherIsBetter => "below",
            Direction::LowerIsBetter => "above",
        };
        let who = |segment: &str| {
            if segment == super::evaluate::ALL_SEGMENT {
                "the whole population".to_owned()
            } else {
                format!("segment \"{segment}\"")
            }
        };
        match self {
            Alert::KpiPersistent {
                kpi,
                segment,
                periods,
            } => {
                format!(
                    "{kpi} for {} has been {} its alert threshold for {periods} \
                     consecutive periods",
                    who(segment),
                    side(kpi)
                )
            }
            Alert::TargetUnmet {
                kpi,
                segment,
                periods,
            } => {
                format!(
                    "{kpi} for {} has been {} its target in every one of the {periods} \
                     periods evaluated: the target does not fit this population (review it in \
                     the policy); this is not drift",
                    who(segment),
                    side(kpi)
                )
            }
            // Only the PSI says how far a feature moved; a significant KS test on a PSI below
            // the warning threshold is a real but small difference, and is worded as such.
            Alert::FeatureDrift {
                feature,
                psi,
                level: DriftLevel::Stable,
                ks_p_value,
            } => format!(
                "feature \"{feature}\" differs measurably but only slightly from segmentation \
                 time: the Kolmogorov-Smirnov test is significant (p = {ks_p_value:.3e}), but PSI \
                 {psi:.3} is {}",
                psi_words(DriftLevel::Stable)
            ),
            Alert::FeatureDrift {
                feature,
                psi,
                level,
                ks_p_value,
            } => format!(
                "feature \"{feature}\" has drifted since segmentation: PSI {psi:.3} is {} \
                 (Kolmogorov-Smirnov p = {ks_p_value:.3e})",
                psi_words(*level)
            ),
            Alert::SegmentShift { psi, level } => format!(
                "segment sizes have shifted since segmentation: PSI over segment shares \
                 {psi:.3} is {}",
                psi_words(*level)
            ),
            Alert::LowStability {
                adjusted_rand,
                limit,
            } => format!(
                "the segmentation is unstable: adjusted Rand index {adjusted_rand:.3} between \
                 runs is below {limit:.2}"
            ),
        }
    }
}

/// Whether to re-segment, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResegmentationAdvice {
    /// True when at least one alert calls for action.
    pub recommended: bool,
    /// One plain-English sentence per action alert; empty when not recommended.
    pub reasons: Vec<String>,
    /// True when the segmentation was published too recently to judge: fewer complete
    /// periods have passed since than a KPI alert needs. No advice is given then.
    pub too_early: bool,
}

/// Alerts (most severe first, in input order within a severity) and the advice they add up
/// to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// Every alert raised.
    pub alerts: Vec<Alert>,
    /// The re-segmentation signal.
    pub advice: ResegmentationAdvice,
}

/// Turns KPI status histories, feature drift, segment-share shift and stability into alerts
/// and advice. `adjusted_rand` is the stability of the published segmentation, if measured;
/// `periods_since_publication` the complete periods since it was published (`None` when
/// nothing is published): with fewer than the rules' `consecutive_periods` no advice is
/// given, as no KPI alert could have formed yet and drift measured against a population
/// frozen minutes ago says nothing.
pub fn assess(
    rules: &AlertRules,
    kpis: &[KpiSeries<'_>],
    drift: &[FeatureDrift],
    shift: Option<&SegmentShift>,
    adjusted_rand: Option<f64>,
    periods_since_publication: Option<usize>,
) -> Result<Assessment, KpiError> {
    let mut alerts = Vec::new();
    for series in kpis {
        if let Some(periods) = series.never_on_target()
            && periods >= rules.consecutive_periods
        {
            alerts.push(Alert::TargetUnmet {
                kpi: series.kpi,
                segment: series.segment.to_owned(),
                periods,
            });
            continue;
        }
        let periods = series.trailing_alerts();
        if periods >= rules.consecutive_periods {
            alerts.push(Alert::KpiPersistent {
                kpi: series.kpi,
                segment: series.segment.to_owned(),
                periods,
            });
        }
    }
    for f in drift {
        // KS significance alone raises a warning: with large populations it flags shifts too
        // small to matter, so only the PSI level can call for action.
        if f.level != DriftLevel::Stable || f.ks_significant {
            alerts.push(Alert::FeatureDrift {
                feature: f.feature.clone(),
                psi: f.psi,
                level: f.level,
                ks_p_value: f.ks.p_value,
            });
        }
    }
    if let Some(s) = shift
        && s.level != DriftLevel::Stable
    {
        alerts.push(Alert::SegmentShift {
            psi: s.psi,
            level: s.level,
        });
    }
    if let Some(ari) = adjusted_rand {
        if !(ari.is_finite() && (-1.0..=1.0).contains(&ari)) {
            return Err(KpiError::InvalidParameter(format!(
                "adjusted Rand index must be in [-1, 1], got {ari}"
            )));
        }
        if ari < rules.min_adjusted_rand {
            alerts.push(Alert::LowStability {
                adjusted_rand: ari,
                limit: rules.min_adjusted_rand,
            });
        }
    }
    // Stable sort: action alerts first, input order kept within each severity.
    alerts.sort_by_key(|a| std::cmp::Reverse(a.severity()));
    let too_early = periods_since_publication.is_some_and(|p| p < rules.consecutive_periods);
    let reasons: Vec<String> = if too_early {
        Vec::new()
    } else {
        alerts
            .iter()
            .filter(|a| a.severity() == Severity::Action)
            .map(|a| a.message(rules))
            .collect()
    };
    Ok(Assessment {
        advice: ResegmentationAdvice {
            recommended: !reasons.is_empty(),
            reasons,
            too_early,
        },
        alerts,
    })
}

#[cfg(test)]
mod tests {
    use super::super::drift::{feature_drift, segment_shift};
    use super::*;
    use Status::{Alert as A, OnTarget as Ok_, Undefined as U, Warning as W};

    #[test]
    fn kpi_alert_needs_n_consecutive_periods() {
        let rules = AlertRules::default();
        let recovered = [A, A, A, Ok_];
        let two = [Ok_, A, A];
        let broken = [Ok_, A, A, U, A, A];
        let three = [Ok_, W, A, A, A];
        let series = [
            KpiSeries {
                kpi: Kpi::RetentionRate,
                segment: "loyal",
                statuses: &recovered,
                counted_from: 0,
            },
            KpiSeries {
                kpi: Kpi::RetentionRate,
                segment: "new",
                statuses: &two,
                counted_from: 0,
            },
            KpiSeries {
                kpi: Kpi::Revenue,
                segment: "all",
                statuses: &broken,
                counted_from: 0,
            },
            KpiSeries {
                kpi: Kpi::ChurnRate,
                segment: "loyal",
                statuses: &three,
                counted_from: 0,
            },
        ];
        let a = assess(&rules, &series, &[], None, None, None).unwrap();
        assert_eq!(
            a.alerts,
            vec![Alert::KpiPersistent {
                kpi: Kpi::ChurnRate,
                segment: "loyal".into(),
                periods: 3
            }]
        );
        assert!(a.advice.recommended);
        assert_eq!(
            a.advice.reasons,
            [
                "churn_rate for segment \"loyal\" has been above its alert threshold for 3 \
              consecutive periods"
            ]
        );
        let strict = AlertRules::new(4, 0.6, DriftThresholds::default()).unwrap();
        assert!(
            !assess(&strict, &series, &[], None, None, None)
                .unwrap()
                .advice
                .recommended
        );
    }

    #[test]
    fn a_kpi_never_on_target_is_a_target_problem_not_drift() {
        let rules = AlertRules::default();
        let never = [W, A, A, A];
        let fell = [Ok_, A, A, A];
        let series = [
            KpiSeries {
                kpi: Kpi::ActiveCustomers,
                segment: "all",
                statuses: &never,
                counted_from: 0,
            },
            KpiSeries {
                kpi: Kpi::RetentionRate,
                segment: "loyal",
                statuses: &fell,
                counted_from: 0,
            },
        ];
        let a = assess(&rules, &series, &[], None, None, Some(12)).unwrap();
        assert_eq!(
            a.alerts,
            vec![
                Alert::KpiPersistent {
                    kpi: Kpi::RetentionRate,
                    segment: "loyal".into(),
                    periods: 3
                },
                Alert::TargetUnmet {
                    kpi: Kpi::ActiveCustomers,
                    segment: "all".into(),
                    periods: 4
                },
            ]
        );
        assert_eq!(a.alerts[1].severity(), Severity::Warning);
        assert!(
            a.alerts[1]
                .message(&rules)
                .contains("below its target in every one of the 4")
        );
        // Only the retention that fell from its target is a reason to re-segment.
        assert_eq!(a.advice.reasons.len(), 1);
        assert!(a.advice.reasons[0].starts_with("retention_rate"));
    }

    #[test]
    fn no_advice_on_a_segmentation_published_too_recently() {
        let rules = AlertRules::default();
        let base: Vec<f64> = (0..2000).map(|i| f64::from(i % 100)).collect();
        let moved: Vec<f64> = base.iter().map(|x| x + 40.0).collect();
        let drift = [feature_drift("recency", &base, &moved, rules.drift()).unwrap()];
        for (periods, advised) in [
            (Some(0), false),
            (Some(2), false),
            (Some(3), true),
            (None, true),
        ] {
            let a = assess(&rules, &[], &drift, None, None, periods).unwrap();
            assert_eq!(a.advice.recommended, advised, "{periods:?}");
            assert_eq!(a.advice.too_early, !advised, "{periods:?}");
            // The measurement itself is still reported.
            assert_eq!(a.alerts.len(), 1);
        }
        // Alerts of the periods before publication do not count towards the advice.
        let statuses = [Ok_, A, A, A, A];
        let series = [KpiSeries {
            kpi: Kpi::RetentionRate,
            segment: "loyal",
            statuses: &statuses,
            counted_from: 3,
        }];
        assert_eq!(series[0].trailing_alerts(), 2);
        assert!(
            assess(&rules, &series, &[], None, None, Some(5))
                .unwrap()
                .alerts
                .is_empty()
        );
    }

    #[test]
    fn a_significant_ks_on_a_stable_psi_is_not_called_drift() {
        let rules = AlertRules::default();
        let alert = Alert::FeatureDrift {
            feature: "monetary".into(),
            psi: 0.006,
            level: DriftLevel::Stable,
            ks_p_value: 1e-6,
        };
        let m = alert.message(&rules);
        assert!(!m.contains("has drifted"), "{m}");
        assert!(
            m.contains("only slightly") && m.contains("PSI 0.006 is below"),
            "{m}"
        );
        assert_eq!(alert.severity(), Severity::Warning);
    }

    #[test]
    fn nothing_wrong_means_no_recommendation() {
        let ok = [Ok_, W, Ok_];
        let series = [KpiSeries {
            kpi: Kpi::Revenue,
            segment: "all",
            statuses: &ok,
            counted_from: 0,
        }];
        let a = assess(&AlertRules::default(), &series, &[], None, Some(0.9), None).unwrap();
        assert!(a.alerts.is_empty());
        assert_eq!(
            a.advice,
            ResegmentationAdvice {
                recommended: false,
                reasons: vec![],
                too_early: false,
            }
        );
    }

    #[test]
    fn drift_shift_and_stability_raise_alerts_with_reasons() {
        let rules = AlertRules::default();
        let t = rules.drift();
        let base: Vec<f64> = (0..2000).map(|i| f64::from(i % 100)).collect();
        let moved: Vec<f64> = base.iter().map(|x| x + 40.0).collect();
        let nudged: Vec<f64> = base.iter().map(|x| x + 5.0).collect();
        let drifts = [
            feature_drift("monetary", &base, &base, t).unwrap(),
            feature_drift("recency", &base, &moved, t).unwrap(),
            feature_drift("frequency", &base, &nudged, t).unwrap(),
        ];
        assert_eq!(drifts[0].level, DriftLevel::Stable);
        assert!(!drifts[0].ks_significant);
        assert_eq!(drifts[1].level, DriftLevel::Act);
        let shift = segment_shift(&[500, 300, 200], &[200, 300, 500], t).unwrap();
        assert_eq!(shift.level, DriftLevel::Act);
        let a = assess(&rules, &[], &drifts, Some(&shift), Some(0.41), None).unwrap();
        assert!(a.advice.recommended);
        assert_eq!(a.advice.reasons.len(), 3);
        assert!(a.advice.reasons[0].starts_with("feature \"recency\" has drifted"));
        assert!(a.advice.reasons[1].starts_with("segment sizes have shifted"));
        assert_eq!(
            a.advice.reasons[2],
            "the segmentation is unstable: adjusted Rand index 0.410 between runs is below 0.60"
        );
        // The small nudge is at most a warning, listed after the action alerts.
        let last = a.alerts.last().unwrap();
        assert_eq!(last.severity(), Severity::Warning);
        assert!(matches!(last, Alert::FeatureDrift { feature, .. } if feature == "frequency"));
    }

    #[test]
    fn rules_and_inputs_are_validated() {
        assert!(AlertRules::new(0, 0.6, DriftThresholds::default()).is_err());
        assert!(AlertRules::new(3, 1.5, DriftThresholds::default()).is_err());
        assert!(assess(&AlertRules::default(), &[], &[], None, Some(f64::NAN), None).is_err());
        let stable = assess(&AlertRules::default(), &[], &[], None, Some(0.6), None).unwrap();
        assert!(!stable.advice.recommended);
    }
}
