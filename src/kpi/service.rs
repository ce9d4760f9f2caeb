//! KPI evaluation, drift and adaptation end to end: load what a period needs from the
//! database, evaluate with [`super::Evaluator`], append to the log with a trail entry, and
//! read the log, the drift and the alerts back for the CLI, the API and the pages.
//!
//! Who counts: segment `all` is every customer on file (aggregate reporting); a segment is the
//! published run's members minus those whose consent for the segmentation purpose is no
//! longer active now (withdrawal wins at once). Figures resting on fewer customers than the
//! policy's `fairness.min_cell_size` are stored, but suppressed wherever they are shown
//! ([`EvaluationView`]).
//!
//! Loading is proportional to the period, not the history: the transactions of P−1 and P by
//! the `occurred_at` index, and "first purchase ever in P" by one index probe per row of P
//! (`db::kpi::first_purchasers`). One month over 1,000,000 customers and 10,000,000
//! transactions on SQLite: see `benches/kpi_sqlite.rs` and the README.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};
use serde::Serialize;
use serde_json::json;

use super::{
    ALL_SEGMENT, AlertRules, Assessment, ClvParams, DriftLevel, DriftThresholds, Evaluation,
    Evaluator, Kpi, KpiError, KpiSeries, Objective, Period, PeriodKind, ResegmentationAdvice,
    Segmentation, Status, Transactions, assess, day_number, feature_drift, segment_shift,
};
use crate::db::kpi::{self as store, EvaluationRecord, LogFilter};
use crate::db::segmentation::{self as runs, RunRow};
use crate::db::{self, Db, DbConnection, DbError};
use crate::policy::{KpiSpec, Policy};
use crate::segmentation::pipeline::{self, RunError, RunSummary};
use crate::segmentation::settings::{FeatureSource, RunSettings};
use crate::trail::{Actor, NewEntry};

/// What can go wrong between the database and the KPI computation.
#[derive(Debug, thiserror::Error)]
pub enum KpiServiceError {
    #[error(transparent)]
    Kpi(#[from] KpiError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("stored run {id} cannot be read: {message}")]
    Corrupt { id: i64, message: String },
}

type Result<T> = std::result::Result<T, KpiServiceError>;

/// Status stored for a KPI without an objective.
pub const NO_TARGET: &str = "no_target";
/// Status shown for a suppressed figure.
pub const SUPPRESSED: &str = "suppressed";

/// Count and sum KPIs: they scale with a segment's size, so overall targets apply to `all`
/// only and a segment needs its own override.
pub fn is_extensive(kpi: Kpi) -> bool {
    matches!(
        kpi,
        Kpi::SegmentSize | Kpi::ActiveCustomers | Kpi::NewCustomers | Kpi::Revenue | Kpi::Orders
    )
}

/// The objective of `kpi` in `segment` under the policy: the segment's override, else the
/// overall target (for `all`, and for ratio KPIs in every segment).
pub fn objective(spec: &KpiSpec, kpi: Kpi, segment: &str) -> Option<Objective> {
    let target = spec
        .segments
        .get(segment)
        .and_then(|m| m.get(kpi.name()))
        .or_else(|| {
            if segment == ALL_SEGMENT || !is_extensive(kpi) {
                spec.targets.get(kpi.name())
            } else {
                None
            }
        })?;
    Objective::for_kpi(kpi, target.target, target.alert).ok()
}

/// Alert rules and drift thresholds of the policy (validated when the policy was loaded).
pub fn rules(spec: &KpiSpec) -> Result<AlertRules> {
    let drift = DriftThresholds::new(
        spec.psi_warn,
        spec.psi_act,
        spec.ks_alpha,
        1e-4,
        spec.psi_bins,
    )?;
    Ok(AlertRules::new(
        spec.consecutive_periods,
        spec.min_stability_ari,
        drift,
    )?)
}

/// The number of customers a KPI's figure rests on: the segment's size for `segment_size`,
/// new customers for `new_customers`, customers active in P−1 for retention and churn,
/// active customers for the rest. When that number is zero the figure says "nobody", and it
/// rests on the whole segment instead.
fn basis(kpi: Kpi, a: &super::Aggregates) -> u64 {
    let relevant = match kpi {
        Kpi::SegmentSize => a.customers,
        Kpi::NewCustomers => a.new,
        Kpi::RetentionRate | Kpi::ChurnRate => a.active_previous,
        _ => a.active,
    };
    if relevant == 0 { a.customers } else { relevant }
}

fn midnight(d: NaiveDate) -> NaiveDateTime {
    d.and_hms_opt(0, 0, 0).expect("midnight exists")
}

/// The population KPIs are computed over: every customer on file, mapped to dense indices,
/// with the live members of the published run assigned to their segments.
struct Population {
    ids: Vec<i64>,
    /// `lookup[id - base]` is the dense index of customer `id` when ids are dense enough.
    lookup: Option<(i64, Vec<u32>)>,
    segmentation: Segmentation,
    run_id: Option<i64>,
}

impl Population {
    fn index_of(&self, id: i64) -> Option<u32> {
        match &self.lookup {
            Some((base, lookup)) => {
                let i = usize::try_from(id - base).ok()?;
                lookup.get(i).copied().filter(|&x| x != u32::MAX)
            }
            None => self.ids.binary_search(&id).ok().map(|i| i as u32),
        }
    }
}

/// Unique segment names for the evaluator: a name that is empty, `all` or used twice gets
/// its segment number appended.
fn unique_names(segments: &[(i32, String)]) -> Vec<String> {
    let mut seen = HashSet::new();
    segments
        .iter()
        .map(|(number, name)| {
            let trimmed = name.trim();
            let mut candidate = trimmed.to_owned();
            if candidate.is_empty() || candidate == ALL_SEGMENT || seen.contains(&candidate) {
                candidate = format!("{trimmed} (segment {number})");
            }
            seen.insert(candidate.clone());
            candidate
        })
        .collect()
}

/// The published run's segments as (number, unique name), in segment order.
fn segment_names(conn: &mut DbConnection, run_id: i64) -> Result<Vec<(i32, String)>> {
    let segments = runs::segments(conn, run_id)?;
    let pairs: Vec<(i32, String)> = segments
        .iter()
        .map(|s| (s.segment, s.name.clone()))
        .collect();
    let names = unique_names(&pairs);
    Ok(pairs.into_iter().map(|p| p.0).zip(names).collect())
}

fn load_population(conn: &mut DbConnection, policy: &Policy) -> Result<Population> {
    let ids = store::customer_ids(conn)?;
    let n = ids.len();
    let lookup = match (ids.first(), ids.last()) {
        (Some(&lo), Some(&hi)) if ((hi - lo) as u64) < 4 * n as u64 + 1_000_000 => {
            let mut lookup = vec![u32::MAX; (hi - lo + 1) as usize];
            for (i, &id) in ids.iter().enumerate() {
                lookup[(id - lo) as usize] = i as u32;
            }
            Some((lo, lookup))
        }
        _ => None,
    };
    let mut population = Population {
        ids,
        lookup,
        segmentation: Segmentation::population_only(n as u32),
        run_id: None,
    };
    let Some(run) = runs::published(conn)? else {
        return Ok(population);
    };
    let named = segment_names(conn, run.id)?;
    let position: HashMap<i32, u32> = named
        .iter()
        .enumerate()
        .map(|(i, (number, _))| (*number, i as u32))
        .collect();
    let members = runs::memberships(conn, run.id)?;
    let purpose = &policy.segmentation.purpose;
    let consented =
        db::consent::active_customers(conn, purpose, &policy.purposes[purpose], db::now())?;
    let mut assignment = vec![None; n];
    let mut j = 0;
    for (customer, segment) in members {
        while j < consented.len() && consented[j] < customer {
            j += 1;
        }
        if j < consented.len()
            && consented[j] == customer
            && let (Some(i), Some(&s)) = (population.index_of(customer), position.get(&segment))
        {
            assignment[i as usize] = Some(s);
        }
    }
    population.segmentation = Segmentation::new(
        named.into_iter().map(|(_, name)| name).collect(),
        &assignment,
    )?;
    population.run_id = Some(run.id);
    Ok(population)
}

/// Evaluates one period from the rows of P−1 and P and the first purchasers of P.
fn evaluate_period(
    conn: &mut DbConnection,
    population: &Population,
    period: Period,
    clv: ClvParams,
) -> Result<Evaluation> {
    let previous = period.previous()?;
    let (from, to) = (midnight(previous.start()), midnight(period.end()));
    let mut customer = Vec::new();
    let mut day = Vec::new();
    let mut amount = Vec::new();
    let mut order = Vec::new();
    let mut order_ids: HashMap<(u32, String), u64> = HashMap::new();
    let mut any_order = false;
    store::for_each_transaction(conn, from, to, |id, date, value, order_id| {
        let Some(c) = population.index_of(id) else {
            return;
        };
        // Orders are per customer; rows without an order id are one order each.
        let o = match order_id {
            Some(s) => {
                any_order = true;
                let next = order_ids.len() as u64;
                *order_ids.entry((c, s)).or_insert(next)
            }
            None => (1 << 63) | customer.len() as u64,
        };
        customer.push(c);
        day.push(day_number(date));
        amount.push(value);
        order.push(o);
    })?;
    let loaded = std::time::Instant::now();
    let mut first_day = vec![i32::MIN; population.ids.len()];
    let start = day_number(period.start());
    for id in store::first_purchasers(conn, midnight(period.start()), midnight(period.end()))? {
        if let Some(c) = population.index_of(id) {
            first_day[c as usize] = start;
        }
    }
    tracing::info!(
        rows = customer.len(),
        first_purchasers_ms = loaded.elapsed().as_millis() as u64,
        "KPI period loaded"
    );
    let tx = Transactions::new(
        population.ids.len() as u32,
        &customer,
        &day,
        &amount,
        any_order.then_some(order.as_slice()),
    )?;
    let evaluator = Evaluator::with_first_days(tx, &population.segmentation, clv, first_day)?;
    Ok(evaluator.evaluate(period)?)
}

/// The log rows of one evaluation.
fn records(
    evaluation: &Evaluation,
    policy: &Policy,
    run_id: Option<i64>,
    at: NaiveDateTime,
    actor: &Actor,
) -> Vec<EvaluationRecord> {
    let rows = evaluation.rows(|kpi, segment| objective(&policy.kpi, kpi, segment));
    let aggregates: HashMap<&str, &super::Aggregates> = evaluation
        .segments
        .iter()
        .map(|s| (s.segment.as_str(), &s.aggregates))
        .collect();
    rows.into_iter()
        .map(|r| EvaluationRecord {
            id: 0,
            kpi: r.kpi.name().to_owned(),
            definition_version: r.definition_version.to_owned(),
            policy_version: policy.version.clone(),
            run_id: if r.segment == ALL_SEGMENT {
                None
            } else {
                run_id
            },
            basis: basis(r.kpi, aggregates[r.segment.as_str()]) as i64,
            period_kind: evaluation.period.kind().as_str().to_owned(),
            period_start: r.period_start,
            period_end: evaluation.period.last_day(),
            value: r.value,
            undefined_reason: r.undefined_reason.map(|u| u.to_string()),
            target: r.target,
            alert_threshold: r.alert_threshold,
            status: r.status.map_or(NO_TARGET, |s| s.as_str()).to_owned(),
            evaluated_at: at,
            evaluated_by: actor.as_str().to_owned(),
            segment: r.segment,
        })
        .collect()
}

/// Evaluates every KPI for `all` and each live segment of the published run, for each
/// period, and appends the rows to the log with one trail entry. Returns the rows appended.
#[tracing::instrument(skip(db, policy), fields(periods = periods.len()))]
pub fn evaluate(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    periods: &[Period],
) -> Result<Vec<EvaluationRecord>> {
    let clv = ClvParams::new(policy.kpi.clv_margin, policy.kpi.clv_max_lifetime_periods)?;
    let started = std::time::Instant::now();
    let mut conn = db.conn()?;
    let population = load_population(&mut conn, policy)?;
    let population_ms = started.elapsed().as_millis() as u64;
    let at = db::now();
    let mut rows = Vec::new();
    for &period in periods {
        let evaluation = evaluate_period(&mut conn, &population, period, clv)?;
        rows.extend(records(&evaluation, policy, population.run_id, at, actor));
    }
    drop(conn);
    tracing::info!(
        population_ms,
        periods_ms = started.elapsed().as_millis() as u64 - population_ms,
        "KPI evaluation computed"
    );
    let labels: Vec<String> = periods.iter().map(|p| p.label()).collect();
    let subject = match (labels.first(), labels.last()) {
        (Some(a), Some(b)) if a != b => format!("kpi:{a}..{b}"),
        (Some(a), _) => format!("kpi:{a}"),
        _ => "kpi".to_owned(),
    };
    db.write(|conn| {
        store::append(conn, &mut rows)?;
        db::trail::append(
            conn,
            NewEntry::new(
                actor,
                "kpi.evaluated",
                subject.clone(),
                json!({
                    "periods": labels,
                    "period_kind": periods.first().map(|p| p.kind().as_str()),
                    "run_id": population.run_id,
                    "segments": population.segmentation.names().len() + 1,
                    "rows": rows.len(),
                }),
            ),
            &policy.version,
        )?;
        Ok(())
    })?;
    Ok(rows)
}

/// Evaluates every period of `kind` from the one containing `from` to the one containing
/// `to` (what `fairseg demo` calls to fill the charts from the start).
pub fn backfill(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    from: NaiveDate,
    to: NaiveDate,
    kind: PeriodKind,
) -> Result<Vec<EvaluationRecord>> {
    let periods = Period::between(kind, from, to)?;
    evaluate(db, policy, actor, &periods)
}

/// One evaluation as shown: figures resting on fewer than `min_cell_size` customers are
/// withheld (value `null`, status `suppressed`).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct EvaluationView {
    pub id: i64,
    pub kpi: String,
    pub definition_version: String,
    pub policy_version: String,
    /// The published segmentation run the segment came from (`null` for `all`).
    pub run_id: Option<i64>,
    pub segment: String,
    pub period_kind: String,
    pub period_start: NaiveDate,
    /// Last day of the period (inclusive).
    pub period_end: NaiveDate,
    pub value: Option<f64>,
    /// True when the figure rests on fewer customers than the policy's minimum cell size.
    pub suppressed: bool,
    pub undefined_reason: Option<String>,
    pub target: Option<f64>,
    pub alert_threshold: Option<f64>,
    /// on_target, warning, alert, undefined, no_target or suppressed.
    pub status: String,
    #[schema(value_type = String, format = DateTime)]
    pub evaluated_at: NaiveDateTime,
    pub evaluated_by: String,
}

impl EvaluationView {
    pub fn of(r: &EvaluationRecord, min_cell_size: u32) -> EvaluationView {
        let suppressed = r.basis < i64::from(min_cell_size);
        EvaluationView {
            id: r.id,
            kpi: r.kpi.clone(),
            definition_version: r.definition_version.clone(),
            policy_version: r.policy_version.clone(),
            run_id: r.run_id,
            segment: r.segment.clone(),
            period_kind: r.period_kind.clone(),
            period_start: r.period_start,
            period_end: r.period_end,
            value: if suppressed { None } else { r.value },
            suppressed,
            undefined_reason: if suppressed {
                None
            } else {
                r.undefined_reason.clone()
            },
            target: r.target,
            alert_threshold: r.alert_threshold,
            status: if suppressed {
                SUPPRESSED.to_owned()
            } else {
                r.status.clone()
            },
            evaluated_at: r.evaluated_at,
            evaluated_by: r.evaluated_by.clone(),
        }
    }

    /// The value as text: `suppressed`, `undefined` or the number.
    pub fn display(&self) -> String {
        match (self.suppressed, self.value) {
            (true, _) => SUPPRESSED.into(),
            (false, None) => "undefined".into(),
            (false, Some(v)) => format_number(&self.kpi, v),
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

/// Keeps the newest evaluation of each (period kind, segment, KPI, period), in log order.
pub fn newest_per_period(records: Vec<EvaluationRecord>) -> Vec<EvaluationRecord> {
    let mut newest: HashMap<(String, String, String, NaiveDate), usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        newest.insert(
            (
                r.period_kind.clone(),
                r.segment.clone(),
                r.kpi.clone(),
                r.period_start,
            ),
            i,
        );
    }
    let keep: HashSet<usize> = newest.into_values().collect();
    records
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, r)| r)
        .collect()
}

/// The log as shown, filtered, oldest first.
pub fn log(db: &Db, policy: &Policy, filter: &LogFilter) -> Result<Vec<EvaluationView>> {
    let rows = db.read(|c| store::log(c, filter))?;
    Ok(rows
        .iter()
        .map(|r| EvaluationView::of(r, policy.fairness.min_cell_size))
        .collect())
}

/// The newest evaluation of every KPI and segment for the latest period of `kind`.
pub fn latest(db: &Db, policy: &Policy, kind: PeriodKind) -> Result<Vec<EvaluationView>> {
    let rows = db.read(|c| {
        let Some(start) = store::latest_period(c, kind.as_str())? else {
            return Ok(Vec::new());
        };
        store::log(
            c,
            &LogFilter {
                period_kind: Some(kind.as_str().into()),
                from: Some(start),
                to: Some(start),
                ..LogFilter::default()
            },
        )
    })?;
    Ok(newest_per_period(rows)
        .iter()
        .map(|r| EvaluationView::of(r, policy.fairness.min_cell_size))
        .collect())
}

/// One segment's history for `kind`: the newest evaluation per period, by KPI, oldest first.
pub fn series(
    db: &Db,
    policy: &Policy,
    kind: PeriodKind,
    segment: &str,
) -> Result<BTreeMap<String, Vec<EvaluationView>>> {
    let rows = db.read(|c| {
        store::log(
            c,
            &LogFilter {
                period_kind: Some(kind.as_str().into()),
                segment: Some(segment.into()),
                ..LogFilter::default()
            },
        )
    })?;
    let mut out: BTreeMap<String, Vec<EvaluationView>> = BTreeMap::new();
    for r in newest_per_period(rows) {
        out.entry(r.kpi.clone())
            .or_default()
            .push(EvaluationView::of(&r, policy.fairness.min_cell_size));
    }
    for v in out.values_mut() {
        v.sort_by_key(|e| e.period_start);
    }
    Ok(out)
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
}

fn level_name(level: DriftLevel) -> &'static str {
    match level {
        DriftLevel::Stable => "stable",
        DriftLevel::Warn => "warn",
        DriftLevel::Act => "act",
    }
}

fn status_of(stored: &str) -> Option<Status> {
    match stored {
        "on_target" => Some(Status::OnTarget),
        "warning" => Some(Status::Warning),
        "alert" => Some(Status::Alert),
        "undefined" | SUPPRESSED => Some(Status::Undefined),
        _ => None,
    }
}

/// Current values of each numeric feature of the run over the customers whose segmentation
/// consent is active now.
fn current_values(
    conn: &mut DbConnection,
    policy: &Policy,
    settings: &RunSettings,
    wanted: &[String],
) -> Result<HashMap<String, Vec<f64>>> {
    let purpose = &policy.segmentation.purpose;
    let now = db::now();
    let consented = db::consent::active_customers(conn, purpose, &policy.purposes[purpose], now)?;
    let mut out: HashMap<String, Vec<f64>> = HashMap::new();
    let source = |name: &str| {
        settings
            .features
            .iter()
            .find(|f| f.spec.name == name)
            .map_or(FeatureSource::Behavioural, |f| f.source)
    };
    let behavioural: Vec<&String> = wanted
        .iter()
        .filter(|f| source(f) == FeatureSource::Behavioural)
        .collect();
    let attributes: Vec<&String> = wanted
        .iter()
        .filter(|f| source(f) == FeatureSource::Attribute)
        .collect();
    if !behavioural.is_empty() {
        let features = db::features::for_all(conn, now.date())?;
        let mut j = 0;
        let none = crate::customers::features::BehaviouralFeatures::none();
        for &id in &consented {
            while j < features.len() && features[j].0 < id {
                j += 1;
            }
            let f = if j < features.len() && features[j].0 == id {
                &features[j].1
            } else {
                &none
            };
            for name in &behavioural {
                if let Some(v) = f.get(name)
                    && v.is_finite()
                {
                    out.entry((*name).clone()).or_default().push(v);
                }
            }
        }
    }
    if !attributes.is_empty() {
        let allowed: HashSet<i64> = consented.iter().copied().collect();
        runs::for_each_attributes(conn, |id, text| {
            if !allowed.contains(&id) {
                return;
            }
            let Ok(map) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
            else {
                return;
            };
            for name in &attributes {
                let v = match map.get(name.as_str()) {
                    Some(serde_json::Value::Number(n)) => n.as_f64(),
                    Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
                    _ => None,
                };
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    out.entry((*name).clone()).or_default().push(v);
                }
            }
        })?;
    }
    Ok(out)
}

fn kpi_series(
    conn: &mut DbConnection,
    policy: &Policy,
    segments: &HashSet<String>,
) -> Result<Vec<(Kpi, String, Vec<Status>)>> {
    let rows = store::log(
        conn,
        &LogFilter {
            period_kind: Some(policy.kpi.period.clone()),
            ..LogFilter::default()
        },
    )?;
    let mut grouped: BTreeMap<(String, String), Vec<(NaiveDate, Status)>> = BTreeMap::new();
    for r in newest_per_period(rows) {
        if r.segment != ALL_SEGMENT && !segments.contains(&r.segment) {
            continue;
        }
        let suppressed = r.basis < i64::from(policy.fairness.min_cell_size);
        let status = if suppressed {
            Some(Status::Undefined)
        } else {
            status_of(&r.status)
        };
        if let Some(status) = status {
            grouped
                .entry((r.segment.clone(), r.kpi.clone()))
                .or_default()
                .push((r.period_start, status));
        }
    }
    Ok(grouped
        .into_iter()
        .filter_map(|((segment, kpi), mut statuses)| {
            statuses.sort_by_key(|s| s.0);
            Some((
                Kpi::parse(&kpi).ok()?,
                segment,
                statuses.into_iter().map(|s| s.1).collect(),
            ))
        })
        .collect())
}

/// Drift of the published run's features and segment sizes, the alerts (KPIs past their
/// threshold for N periods in a row, drift, low stability) and the re-segmentation signal.
#[tracing::instrument(skip(db, policy))]
pub fn drift(db: &Db, policy: &Policy) -> Result<DriftReport> {
    let spec = &policy.kpi;
    let rules = rules(spec)?;
    let thresholds = *rules.drift();
    let min_cell = u64::from(policy.fairness.min_cell_size);
    let mut conn = db.conn()?;
    let conn = &mut *conn;
    let run: Option<RunRow> = runs::published(conn)?;
    let mut features = Vec::new();
    let mut not_measured = Vec::new();
    let mut shift_view = None;
    let mut shift = None;
    let mut drifts = Vec::new();
    let mut names = HashSet::new();
    if let Some(run) = &run {
        let corrupt = |message: String| KpiServiceError::Corrupt {
            id: run.id,
            message,
        };
        let settings: RunSettings =
            serde_json::from_str(&run.settings).map_err(|e| corrupt(e.to_string()))?;
        let summary: Option<RunSummary> = match &run.summary {
            Some(s) => Some(serde_json::from_str(s).map_err(|e| corrupt(e.to_string()))?),
            None => None,
        };
        let references = summary.map(|s| s.reference).unwrap_or_default();
        let wanted: Vec<String> = references.iter().map(|r| r.feature.clone()).collect();
        let current = current_values(conn, policy, &settings, &wanted)?;
        for reference in &references {
            let now = current
                .get(&reference.feature)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if reference.values.is_empty() || now.is_empty() {
                not_measured.push(format!(
                    "{}: no values {}",
                    reference.feature,
                    if reference.values.is_empty() {
                        "at segmentation time"
                    } else {
                        "now"
                    }
                ));
                continue;
            }
            let d = feature_drift(&reference.feature, &reference.values, now, &thresholds)?;
            features.push(FeatureDriftView {
                feature: d.feature.clone(),
                psi: d.psi,
                level: level_name(d.level).into(),
                ks_statistic: d.ks.statistic,
                ks_p_value: d.ks.p_value,
                ks_significant: d.ks_significant,
                reference_n: reference.values.len(),
                current_n: now.len(),
            });
            drifts.push(d);
        }
        let segments = runs::segments(conn, run.id)?;
        let named = segment_names(conn, run.id)?;
        names = named.iter().map(|(_, n)| n.clone()).collect();
        let max_segment = segments.iter().map(|s| s.segment).max().unwrap_or(-1);
        let live = pipeline::live_sizes(conn, policy, run.id, (max_segment + 1) as usize)?;
        let stored: Vec<u64> = segments.iter().map(|s| s.size.max(0) as u64).collect();
        let now: Vec<u64> = segments.iter().map(|s| live[s.segment as usize]).collect();
        if stored.iter().sum::<u64>() > 0 && now.iter().sum::<u64>() > 0 {
            let s = segment_shift(&stored, &now, &thresholds)?;
            let shown = |n: u64| (n >= min_cell).then_some(n);
            shift_view = Some(SegmentShiftView {
                psi: s.psi,
                level: level_name(s.level).into(),
                segments: segments
                    .iter()
                    .zip(&named)
                    .enumerate()
                    .map(|(i, (seg, (_, name)))| SegmentSizeView {
                        segment: seg.segment,
                        name: name.clone(),
                        stored_size: shown(stored[i]),
                        live_size: shown(now[i]),
                        stored_share: shown(stored[i]).map(|_| s.reference_shares[i]),
                        live_share: shown(now[i]).map(|_| s.current_shares[i]),
                    })
                    .collect(),
            });
            shift = Some(s);
        }
    }
    let series = kpi_series(conn, policy, &names)?;
    let kpis: Vec<KpiSeries<'_>> = series
        .iter()
        .map(|(kpi, segment, statuses)| KpiSeries {
            kpi: *kpi,
            segment,
            statuses,
        })
        .collect();
    let stability = run.as_ref().and_then(|r| r.stability_ari);
    let assessment: Assessment = assess(&rules, &kpis, &drifts, shift.as_ref(), stability)?;
    let ResegmentationAdvice {
        recommended,
        reasons,
    } = assessment.advice.clone();
    let alerts = assessment
        .alerts
        .iter()
        .map(|a| AlertView {
            kind: serde_json::to_value(a)
                .ok()
                .and_then(|v| v["kind"].as_str().map(str::to_owned))
                .unwrap_or_default(),
            severity: match a.severity() {
                super::Severity::Warning => "warning".into(),
                super::Severity::Action => "action".into(),
            },
            message: a.message(&rules),
        })
        .collect();
    Ok(DriftReport {
        run_id: run.as_ref().map(|r| r.id),
        population_at: run.as_ref().and_then(|r| r.population_at),
        measured_at: db::now(),
        features,
        not_measured,
        segment_shift: shift_view,
        stability_ari: stability,
        psi_warn: spec.psi_warn,
        psi_act: spec.psi_act,
        ks_alpha: spec.ks_alpha,
        consecutive_periods: spec.consecutive_periods,
        min_stability_ari: spec.min_stability_ari,
        alerts,
        resegmentation_recommended: recommended,
        reasons,
    })
}

/// Creates a new run with the settings of run `run_id` (features, algorithm, k, seed,
/// missing-value rule), its behavioural features computed as of now, and records why in the
/// trail. The caller queues it (`state.jobs.submit`). Returns the new run's id.
pub fn rerun(db: &Db, policy: &Policy, actor: &Actor, run_id: i64) -> Result<i64> {
    let run = db
        .read(|c| runs::run(c, run_id))?
        .ok_or(RunError::NotFound(run_id))?;
    let settings: RunSettings =
        serde_json::from_str(&run.settings).map_err(|e| KpiServiceError::Corrupt {
            id: run_id,
            message: e.to_string(),
        })?;
    let mut request = settings.to_request();
    // Re-segmenting is about the customers as they are now.
    request.as_of = None;
    let id = pipeline::create(db, policy, actor, &request)?;
    db.write(|conn| {
        db::trail::append(
            conn,
            NewEntry::new(
                actor,
                "segmentation.rerun",
                format!("run:{id}"),
                json!({ "settings_of": run_id }),
            ),
            &policy.version,
        )
    })?;
    Ok(id)
}

/// How often the server evaluates KPIs by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    Off,
    Every(Duration),
}

impl Schedule {
    /// `off`, `hourly` or `daily`.
    pub fn parse(s: &str) -> Option<Schedule> {
        match s.trim() {
            "off" => Some(Schedule::Off),
            "hourly" => Some(Schedule::Every(Duration::from_secs(3600))),
            "daily" => Some(Schedule::Every(Duration::from_secs(24 * 3600))),
            _ => None,
        }
    }
}

/// Starts the scheduled evaluation in a background thread: at start and then at every
/// interval, the period (of the policy's kind) containing yesterday is evaluated and
/// appended, so a period's last evaluation is made the day after it ends.
pub fn spawn_schedule(db: Db, policy: Arc<Policy>, schedule: Schedule) {
    let Schedule::Every(interval) = schedule else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("kpi-schedule".into())
        .spawn(move || {
            loop {
                // A panic in one evaluation must not end the schedule for the process's life.
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<usize> {
                        let kind = PeriodKind::parse(&policy.kpi.period)?;
                        let today = db::now().date();
                        let day = today.pred_opt().unwrap_or(today);
                        let period = Period::containing(kind, day)?;
                        Ok(evaluate(&db, &policy, &Actor::system(), &[period])?.len())
                    }));
                match result {
                    Ok(Ok(rows)) => tracing::info!(rows, "scheduled KPI evaluation appended"),
                    Ok(Err(error)) => tracing::warn!(%error, "scheduled KPI evaluation failed"),
                    Err(panic) => tracing::error!(
                        panic = crate::segmentation::jobs::panic_message(panic.as_ref()),
                        "scheduled KPI evaluation panicked; the schedule goes on"
                    ),
                }
                std::thread::sleep(interval);
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the KPI schedule");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_or_reserved_segment_names_are_made_unique() {
        let names = unique_names(&[
            (0, "Loyal".into()),
            (1, "Loyal".into()),
            (2, "all".into()),
            (3, " ".into()),
        ]);
        assert_eq!(
            names,
            [
                "Loyal",
                "Loyal (segment 1)",
                "all (segment 2)",
                " (segment 3)"
            ]
        );
    }

    #[test]
    fn basis_is_the_customers_a_figure_rests_on() {
        let a = super::super::Aggregates {
            customers: 100,
            active: 8,
            active_previous: 0,
            new: 0,
            ..Default::default()
        };
        assert_eq!(basis(Kpi::SegmentSize, &a), 100);
        assert_eq!(basis(Kpi::AverageOrderValue, &a), 8);
        assert_eq!(basis(Kpi::NewCustomers, &a), 100);
        assert_eq!(basis(Kpi::RetentionRate, &a), 100);
    }

    #[test]
    fn extensive_targets_apply_to_segments_only_by_override() {
        let mut spec = KpiSpec::default();
        spec.targets.insert(
            "revenue".into(),
            crate::policy::KpiTarget {
                target: 10.0,
                alert: 5.0,
            },
        );
        spec.targets.insert(
            "retention_rate".into(),
            crate::policy::KpiTarget {
                target: 0.4,
                alert: 0.3,
            },
        );
        assert!(objective(&spec, Kpi::Revenue, "all").is_some());
        assert!(objective(&spec, Kpi::Revenue, "Loyal").is_none());
        assert!(objective(&spec, Kpi::RetentionRate, "Loyal").is_some());
        spec.segments.insert(
            "Loyal".into(),
            BTreeMap::from([(
                "revenue".to_owned(),
                crate::policy::KpiTarget {
                    target: 3.0,
                    alert: 1.0,
                },
            )]),
        );
        assert_eq!(
            objective(&spec, Kpi::Revenue, "Loyal").unwrap().target(),
            3.0
        );
    }
}
