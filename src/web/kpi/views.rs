//! The KPI log and the drift report as the API, the pages and the CLI show them: figures on
//! too few customers withheld, partial periods labelled, drift levels and alerts in words.

use chrono::{NaiveDate, NaiveDateTime};
use serde::Serialize;

use crate::app::kpis::{self, Drift, PeriodChoice, Withheld};
use crate::consent::coverage::shown_row;
use crate::db::kpi::EvaluationRecord;
use crate::kpi::series::{PARTIAL, SUPPRESSED};
use crate::kpi::{DriftLevel, PeriodKind, Severity};
use crate::policy::Policy;

/// One evaluation as shown: figures resting on fewer than `min_cell_size` customers, and the
/// figures that would give them away by subtraction, are withheld (value `null`, status
/// `suppressed`); figures of a period that had not ended when
/// it was evaluated are shown with status `partial`, never judged against their target.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct EvaluationView {
    pub id: i64,
    pub kpi: String,
    pub definition_version: String,
    pub policy_version: String,
    /// The published segmentation run the segment came from (`null` for `all`).
    pub run_id: Option<i64>,
    /// The segment's label when it was evaluated (`all` for the whole population).
    pub segment: String,
    /// The segment's number within the run: with `run_id`, the key of the series (renaming a
    /// segment keeps it). `null` for `all`.
    pub segment_number: Option<i32>,
    pub period_kind: String,
    pub period_start: NaiveDate,
    /// Last day of the period (inclusive).
    pub period_end: NaiveDate,
    pub value: Option<f64>,
    /// True when the figure rests on fewer customers than the policy's minimum cell size.
    pub suppressed: bool,
    /// True when the period had not ended when it was evaluated: the figure covers only
    /// `days_covered` of its `days_in_period` days and has no status against its target.
    pub partial: bool,
    pub days_covered: i64,
    pub days_in_period: i64,
    pub undefined_reason: Option<String>,
    pub target: Option<f64>,
    pub alert_threshold: Option<f64>,
    /// on_target, warning, alert, undefined, no_target, suppressed or partial.
    pub status: String,
    #[schema(value_type = String, format = DateTime)]
    pub evaluated_at: NaiveDateTime,
    pub evaluated_by: String,
    /// The server process that made a scheduled evaluation; null otherwise.
    pub evaluated_on: Option<String>,
    /// The schedule claim a scheduled evaluation was made under (each scheduled period is
    /// evaluated once across every server); null otherwise.
    pub schedule_claim: Option<i64>,
}

impl EvaluationView {
    pub fn of(r: &EvaluationRecord, withheld: &Withheld) -> EvaluationView {
        let suppressed = withheld.contains(r);
        let coverage = kpis::coverage(r);
        EvaluationView {
            id: r.id,
            kpi: r.kpi.clone(),
            definition_version: r.definition_version.clone(),
            policy_version: r.policy_version.clone(),
            run_id: r.run_id,
            segment: r.segment.clone(),
            segment_number: r.segment_number,
            period_kind: r.period_kind.clone(),
            period_start: r.period_start,
            period_end: r.period_end,
            value: if suppressed { None } else { r.value },
            suppressed,
            partial: !coverage.complete,
            days_covered: coverage.days_covered,
            days_in_period: coverage.days,
            undefined_reason: if suppressed {
                None
            } else {
                r.undefined_reason.clone()
            },
            target: r.target,
            alert_threshold: r.alert_threshold,
            status: if suppressed {
                SUPPRESSED.to_owned()
            } else if !coverage.complete {
                PARTIAL.to_owned()
            } else {
                r.status.clone()
            },
            evaluated_at: r.evaluated_at,
            evaluated_by: r.evaluated_by.clone(),
            evaluated_on: r.worker_id.clone(),
            schedule_claim: r.claim_id,
        }
    }

    /// Every row of `records` as shown, `withheld` hiding small figures and their partners.
    pub fn all(records: &[EvaluationRecord], withheld: &Withheld) -> Vec<EvaluationView> {
        records
            .iter()
            .map(|r| EvaluationView::of(r, withheld))
            .collect()
    }

    /// The value as text: `suppressed`, `undefined` or the number.
    pub fn display(&self) -> String {
        match (self.suppressed, self.value) {
            (true, _) => SUPPRESSED.into(),
            (false, None) => "undefined".into(),
            (false, Some(v)) => format_number(&self.kpi, v),
        }
    }

    /// The status in words: `partial (N of M days)` for a partial period.
    pub fn status_label(&self) -> String {
        if self.status == PARTIAL {
            format!(
                "partial ({} of {} days)",
                self.days_covered, self.days_in_period
            )
        } else {
            self.status.replace('_', " ")
        }
    }

    /// Why a figure that looks too good to be true is what it is: a retention of 100 %
    /// means every customer active in the period before bought again, which on a handful of
    /// customers is luck, not loyalty. `None` when there is nothing to explain.
    pub fn note(&self) -> Option<String> {
        match (self.kpi.as_str(), self.value) {
            ("retention_rate", Some(v)) if v >= 1.0 => {
                Some("every customer active in the period before bought again in this one".into())
            }
            ("churn_rate", Some(v)) if v <= 0.0 => {
                Some("no customer active in the period before was lost in this one".into())
            }
            _ => None,
        }
    }
}

/// A KPI value for people: counts as integers, rates as percentages, money with 2 decimals.
pub fn format_number(kpi: &str, v: f64) -> String {
    match kpi {
        "segment_size" | "active_customers" | "new_customers" | "orders" => format!("{v:.0}"),
        "repeat_purchase_rate" | "retention_rate" | "churn_rate" => {
            format!("{:.1} %", v * 100.0)
        }
        "purchase_frequency" => format!("{v:.2}"),
        _ => format!("{v:.2}"),
    }
}

/// `2026-11`, or `2026-12 — partial (1 of 31 days)`.
pub fn period_label(p: &PeriodChoice) -> String {
    match &p.partial {
        Some(c) => format!(
            "{} — {}",
            crate::format::period(&p.period),
            c.partial_label().unwrap_or_default()
        ),
        None => crate::format::period(&p.period),
    }
}

/// One feature's drift as shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FeatureDriftView {
    pub feature: String,
    pub psi: f64,
    /// stable, warn or act.
    pub level: String,
    pub ks_statistic: f64,
    pub ks_p_value: f64,
    pub ks_significant: bool,
    /// Values in the reference sample (taken at segmentation time) and now.
    pub reference_n: usize,
    pub current_n: usize,
}

/// One segment's size then and now; sizes and shares below the minimum cell size withheld.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SegmentSizeView {
    pub segment: i32,
    pub name: String,
    pub stored_size: Option<u64>,
    pub live_size: Option<u64>,
    pub stored_share: Option<f64>,
    pub live_share: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SegmentShiftView {
    pub psi: f64,
    pub level: String,
    pub segments: Vec<SegmentSizeView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    /// kpi_persistent, feature_drift, segment_shift or low_stability.
    pub kind: String,
    /// warning or action.
    pub severity: String,
    pub message: String,
}

/// Drift of the published segmentation, the alerts and the re-segmentation signal.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DriftReport {
    /// The published run, when there is one.
    pub run_id: Option<i64>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub population_at: Option<NaiveDateTime>,
    /// When the feature drift was measured: it counts the customers whose consent was active
    /// then, and is measured again when the data, the consent state, the day or the policy
    /// change.
    #[schema(value_type = String, format = DateTime)]
    pub measured_at: NaiveDateTime,
    pub features: Vec<FeatureDriftView>,
    /// Features of the run that could not be measured, with the reason.
    pub not_measured: Vec<String>,
    pub segment_shift: Option<SegmentShiftView>,
    pub stability_ari: Option<f64>,
    pub psi_warn: f64,
    pub psi_act: f64,
    pub ks_alpha: f64,
    pub consecutive_periods: usize,
    pub min_stability_ari: f64,
    pub alerts: Vec<AlertView>,
    pub resegmentation_recommended: bool,
    pub reasons: Vec<String>,
    /// The period kind alerts are counted in (the policy's `kpi.period`).
    #[schema(value_type = String)]
    pub period_kind: PeriodKind,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub published_at: Option<NaiveDateTime>,
    /// True when the published run is too recent to judge: fewer than
    /// `consecutive_periods` whole periods have ended since it was published, so no advice
    /// is given (the measurements are still shown).
    pub advice_too_early: bool,
    /// When `advice_too_early`, the first day advice can be given.
    pub advice_from: Option<NaiveDate>,
}

fn level_name(level: DriftLevel) -> &'static str {
    match level {
        DriftLevel::Stable => "stable",
        DriftLevel::Warn => "warn",
        DriftLevel::Act => "act",
    }
}

impl DriftReport {
    /// The drift as shown under the policy: segment sizes below its minimum cell size
    /// withheld, with the next smallest beside a lone one (the sizes add up to a total shown
    /// elsewhere).
    pub fn of(d: Drift, policy: &Policy) -> DriftReport {
        let spec = &policy.kpi;
        let min_cell = u64::from(policy.fairness.min_cell_size);
        let segment_shift = d.shift.as_ref().map(|s| {
            let column = |size: fn(&kpis::SegmentSizes) -> u64| {
                let sizes: Vec<u64> = s.segments.iter().map(size).collect();
                shown_row(&sizes, min_cell)
            };
            let (stored, live) = (column(|seg| seg.stored), column(|seg| seg.live));
            SegmentShiftView {
                psi: s.shift.psi,
                level: level_name(s.shift.level).into(),
                segments: s
                    .segments
                    .iter()
                    .enumerate()
                    .map(|(i, seg)| SegmentSizeView {
                        segment: seg.segment,
                        name: seg.name.clone(),
                        stored_size: stored[i].count,
                        live_size: live[i].count,
                        stored_share: stored[i].count.map(|_| s.shift.reference_shares[i]),
                        live_share: live[i].count.map(|_| s.shift.current_shares[i]),
                    })
                    .collect(),
            }
        });
        let alerts = d
            .assessment
            .alerts
            .iter()
            .map(|a| AlertView {
                kind: serde_json::to_value(a)
                    .ok()
                    .and_then(|v| v["kind"].as_str().map(str::to_owned))
                    .unwrap_or_default(),
                severity: match a.severity() {
                    Severity::Warning => "warning".into(),
                    Severity::Action => "action".into(),
                },
                message: a.message(&d.rules),
            })
            .collect();
        let advice = d.assessment.advice;
        DriftReport {
            run_id: d.run.as_ref().map(|r| r.id),
            population_at: d.run.as_ref().and_then(|r| r.population_at),
            measured_at: d.measured_at,
            features: d
                .features
                .iter()
                .map(|m| FeatureDriftView {
                    feature: m.drift.feature.clone(),
                    psi: m.drift.psi,
                    level: level_name(m.drift.level).into(),
                    ks_statistic: m.drift.ks.statistic,
                    ks_p_value: m.drift.ks.p_value,
                    ks_significant: m.drift.ks_significant,
                    reference_n: m.reference_n,
                    current_n: m.current_n,
                })
                .collect(),
            not_measured: d.not_measured,
            segment_shift,
            stability_ari: d.run.as_ref().and_then(|r| r.stability_ari),
            psi_warn: spec.psi_warn,
            psi_act: spec.psi_act,
            ks_alpha: spec.ks_alpha,
            consecutive_periods: spec.consecutive_periods,
            min_stability_ari: spec.min_stability_ari,
            alerts,
            resegmentation_recommended: advice.recommended,
            reasons: advice.reasons,
            period_kind: d.kind,
            published_at: d.run.as_ref().and_then(|r| r.published_at),
            advice_too_early: advice.too_early,
            advice_from: d.advice_from,
        }
    }
}
