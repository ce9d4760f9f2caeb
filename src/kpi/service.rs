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
    ALL_SEGMENT, AlertRules, Assessment, ClvParams, Coverage, DriftLevel, DriftThresholds,
    Evaluation, Evaluator, Kpi, KpiError, KpiSeries, Objective, Period, PeriodKind,
    ResegmentationAdvice, Segmentation, Status, Transactions, assess, day_number, feature_drift,
    segment_shift,
};
use crate::app::runs::{self as run_cases, RunError};
use crate::db::kpi::{self as store, EvaluationRecord, LogFilter};
use crate::db::segmentation::{self as runs, RunRow};
use crate::db::{self, Db, DbConnection, DbError};
use crate::policy::{KpiSpec, Policy};
use crate::segmentation::pipeline::RunSummary;
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
/// Status shown for a figure of a period that had not ended when it was evaluated.
pub const PARTIAL: &str = "partial";

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
    /// The evaluator's (unique) segment name -> the segment's number in the run.
    numbers: HashMap<String, i32>,
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
        numbers: HashMap::new(),
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
    population.numbers = named.iter().map(|(n, name)| (name.clone(), *n)).collect();
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
    population: &Population,
    at: NaiveDateTime,
    actor: &Actor,
) -> Vec<EvaluationRecord> {
    let run_id = population.run_id;
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
            segment_number: population.numbers.get(&r.segment).copied(),
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
        rows.extend(records(&evaluation, policy, &population, at, actor));
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
    db.write::<_, DbError>(|conn| {
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
/// withheld (value `null`, status `suppressed`); figures of a period that had not ended when
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
}

/// The coverage of a logged row; a row whose period cannot be rebuilt counts as complete.
fn coverage(r: &EvaluationRecord) -> Coverage {
    PeriodKind::parse(&r.period_kind)
        .and_then(|k| Period::containing(k, r.period_start))
        .map(|p| p.coverage_at(r.evaluated_at))
        .unwrap_or(Coverage {
            days_covered: 0,
            days: 0,
            complete: true,
        })
}

impl EvaluationView {
    pub fn of(r: &EvaluationRecord, min_cell_size: u32) -> EvaluationView {
        let suppressed = r.basis < i64::from(min_cell_size);
        let coverage = coverage(r);
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

/// Which series a logged row belongs to: `all`, or a run's segment by number. A row logged
/// before series were keyed whose segment could not be recovered keeps its label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SeriesKey {
    All,
    Segment { run_id: i64, number: i32 },
    Label { run_id: Option<i64>, label: String },
}

impl SeriesKey {
    pub fn of(r: &EvaluationRecord) -> SeriesKey {
        match (r.run_id, r.segment_number) {
            _ if r.segment == ALL_SEGMENT => SeriesKey::All,
            (Some(run_id), Some(number)) => SeriesKey::Segment { run_id, number },
            (run_id, _) => SeriesKey::Label {
                run_id,
                label: r.segment.clone(),
            },
        }
    }
}

/// Keeps the newest evaluation of each (period kind, series, KPI, period), in log order.
pub fn newest_per_period(records: Vec<EvaluationRecord>) -> Vec<EvaluationRecord> {
    let mut newest: HashMap<(String, SeriesKey, String, NaiveDate), usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        newest.insert(
            (
                r.period_kind.clone(),
                SeriesKey::of(r),
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

/// One evaluated period, for choosing which to show.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodChoice {
    pub period: Period,
    /// `Some` when its newest evaluation was made before it ended.
    pub partial: Option<Coverage>,
}

impl PeriodChoice {
    /// `2026-11`, or `2026-12 — partial (1 of 31 days)`.
    pub fn label(&self) -> String {
        match &self.partial {
            Some(c) => format!(
                "{} — {}",
                self.period.label(),
                c.partial_label().unwrap_or_default()
            ),
            None => self.period.label(),
        }
    }
}

/// A run whose segments have KPI history.
#[derive(Debug, Clone, PartialEq)]
pub struct RunChoice {
    pub id: i64,
    /// The run's status now: `published`, `retired`, …
    pub status: String,
    pub published_at: Option<NaiveDateTime>,
}

/// A segment column of the overview.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentColumn {
    pub key: SeriesKey,
    /// The segment's current name (its label in the log when the run no longer has it).
    pub name: String,
}

/// What `/kpi` shows: one period, `all` and the segments of one run, never two runs mixed.
#[derive(Debug, Clone)]
pub struct Overview {
    pub kind: PeriodKind,
    /// Every period of `kind` in the log, newest first.
    pub periods: Vec<PeriodChoice>,
    /// The period shown: the one asked for, else the newest complete one evaluated.
    pub shown: Option<PeriodChoice>,
    /// The last period of `kind` that has ended, by the calendar.
    pub last_complete: Period,
    /// The runs with KPI history, newest first.
    pub runs: Vec<RunChoice>,
    /// The run whose segments are shown: the one asked for, else the published one.
    pub run: Option<RunChoice>,
    /// `all` first, then the run's segments in number order.
    pub columns: Vec<SegmentColumn>,
    /// The newest evaluation of every KPI and column for the shown period.
    pub views: Vec<(SeriesKey, EvaluationView)>,
}

/// The overview of `kind` for the period starting on `start` (default: the newest complete
/// period evaluated; a partial period is shown only when asked for) and the segments of run
/// `run` (default: the published run).
pub fn overview(
    db: &Db,
    policy: &Policy,
    kind: PeriodKind,
    start: Option<NaiveDate>,
    run: Option<i64>,
    today: NaiveDate,
) -> Result<Overview> {
    let last_complete = Period::last_complete(kind, today)?;
    let mut conn = db.conn()?;
    let c = &mut *conn;
    {
        let mut periods = Vec::new();
        for (start, _, at) in store::periods(c, kind.as_str())? {
            let Ok(period) = Period::containing(kind, start) else {
                continue;
            };
            let coverage = period.coverage_at(at);
            periods.push(PeriodChoice {
                period,
                partial: (!coverage.complete).then_some(coverage),
            });
        }
        let shown = match start {
            Some(start) => periods.iter().find(|p| p.period.start() == start).cloned(),
            None => periods.iter().find(|p| p.partial.is_none()).cloned(),
        };
        let mut runs = Vec::new();
        for id in store::runs_logged(c, kind.as_str())? {
            if let Some(r) = runs::run(c, id)? {
                runs.push(RunChoice {
                    id,
                    status: r.status.to_string(),
                    published_at: r.published_at,
                });
            }
        }
        let published = runs::published(c)?;
        let run = match run {
            Some(id) => runs.iter().find(|r| r.id == id).cloned(),
            None => published.map(|r| RunChoice {
                id: r.id,
                status: r.status.to_string(),
                published_at: r.published_at,
            }),
        };
        // The published run is offered even before its segments have history, so that
        // choosing among runs never silently switches to another one.
        if let Some(r) = &run
            && !runs.iter().any(|x| x.id == r.id)
        {
            runs.insert(0, r.clone());
        }
        let mut columns = vec![SegmentColumn {
            key: SeriesKey::All,
            name: ALL_SEGMENT.to_owned(),
        }];
        let mut views = Vec::new();
        if let Some(shown) = &shown {
            let rows = store::log(
                c,
                &LogFilter {
                    period_kind: Some(kind.as_str().into()),
                    from: Some(shown.period.start()),
                    to: Some(shown.period.start()),
                    ..LogFilter::default()
                },
            )?;
            let current: HashMap<i32, String> = match &run {
                Some(r) => runs::segments(c, r.id)?
                    .into_iter()
                    .map(|s| (s.segment, s.name))
                    .collect(),
                None => HashMap::new(),
            };
            let mut segments: BTreeMap<i32, String> = BTreeMap::new();
            for r in newest_per_period(rows) {
                let key = SeriesKey::of(&r);
                let belongs = match &key {
                    SeriesKey::All => true,
                    SeriesKey::Segment { run_id, number } => {
                        if run.as_ref().is_some_and(|x| x.id == *run_id) {
                            segments.entry(*number).or_insert_with(|| {
                                current.get(number).cloned().unwrap_or(r.segment.clone())
                            });
                            true
                        } else {
                            false
                        }
                    }
                    SeriesKey::Label { .. } => false,
                };
                if belongs {
                    views.push((key, EvaluationView::of(&r, policy.fairness.min_cell_size)));
                }
            }
            columns.extend(segments.into_iter().map(|(number, name)| SegmentColumn {
                key: SeriesKey::Segment {
                    run_id: run.as_ref().map_or(0, |r| r.id),
                    number,
                },
                name,
            }));
        }
        Ok(Overview {
            kind,
            periods,
            shown,
            last_complete,
            runs,
            run,
            columns,
            views,
        })
    }
}

/// One series' history for `kind`: the newest evaluation per period, by KPI, oldest first,
/// with the label the series goes by now (the segment's current name, else its newest label).
pub fn series(
    db: &Db,
    policy: &Policy,
    kind: PeriodKind,
    key: &SeriesKey,
) -> Result<(String, BTreeMap<String, Vec<EvaluationView>>)> {
    let (rows, current) = db.read(|c| {
        let mut filter = LogFilter {
            period_kind: Some(kind.as_str().into()),
            ..LogFilter::default()
        };
        let mut current = None;
        match key {
            SeriesKey::All => filter.segment = Some(ALL_SEGMENT.into()),
            SeriesKey::Segment { run_id, number } => {
                filter.run_id = Some(*run_id);
                filter.segment_number = Some(*number);
                current = runs::segments(c, *run_id)?
                    .into_iter()
                    .find(|s| s.segment == *number)
                    .map(|s| s.name);
            }
            SeriesKey::Label { run_id, label } => {
                filter.run_id = *run_id;
                filter.segment = Some(label.clone());
            }
        }
        Ok((store::log(c, &filter)?, current))
    })?;
    let name = current
        .or_else(|| rows.last().map(|r| r.segment.clone()))
        .unwrap_or_default();
    let mut out: BTreeMap<String, Vec<EvaluationView>> = BTreeMap::new();
    for r in newest_per_period(rows) {
        if SeriesKey::of(&r) != *key {
            continue;
        }
        out.entry(r.kpi.clone())
            .or_default()
            .push(EvaluationView::of(&r, policy.fairness.min_cell_size));
    }
    for v in out.values_mut() {
        v.sort_by_key(|e| e.period_start);
    }
    Ok((name, out))
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
    /// The period kind alerts are counted in (the policy's `kpi.period`).
    pub period_kind: String,
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

/// One KPI's statuses in one series, complete periods only, oldest first, with the label
/// the series is shown under and the index of its first period after `published`.
type StatusSeries = (Kpi, String, Vec<Status>, usize);

/// The status histories the alerts read: `all` and the segments of run `run_id`, keyed by
/// (run, segment number), complete periods only: a period still filling up says nothing yet.
fn kpi_series(
    conn: &mut DbConnection,
    policy: &Policy,
    run_id: Option<i64>,
    published: Option<NaiveDate>,
) -> Result<Vec<StatusSeries>> {
    let kind = PeriodKind::parse(&policy.kpi.period)?;
    let rows = store::log(
        conn,
        &LogFilter {
            period_kind: Some(kind.as_str().to_owned()),
            ..LogFilter::default()
        },
    )?;
    let names: HashMap<i32, String> = match run_id {
        Some(id) => segment_names(conn, id)?.into_iter().collect(),
        None => HashMap::new(),
    };
    let mut grouped: BTreeMap<(SeriesKey, String), Vec<(NaiveDate, Status)>> = BTreeMap::new();
    for r in newest_per_period(rows) {
        let key = SeriesKey::of(&r);
        let counted = match &key {
            SeriesKey::All => true,
            SeriesKey::Segment { run_id: id, .. } => Some(*id) == run_id,
            SeriesKey::Label { .. } => false,
        };
        if !counted || !coverage(&r).complete {
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
                .entry((key, r.kpi.clone()))
                .or_default()
                .push((r.period_start, status));
        }
    }
    Ok(grouped
        .into_iter()
        .filter_map(|((key, kpi), mut statuses)| {
            statuses.sort_by_key(|s| s.0);
            let label = match &key {
                SeriesKey::Segment { number, .. } => names.get(number).cloned()?,
                _ => ALL_SEGMENT.to_owned(),
            };
            let counted_from = published.map_or(0, |day| {
                statuses
                    .iter()
                    .take_while(|(start, _)| *start < day)
                    .count()
            });
            Some((
                Kpi::parse(&kpi).ok()?,
                label,
                statuses.into_iter().map(|s| s.1).collect(),
                counted_from,
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
        let max_segment = segments.iter().map(|s| s.segment).max().unwrap_or(-1);
        let live = run_cases::live_sizes(conn, policy, run.id, (max_segment + 1) as usize)?;
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
    let kind = PeriodKind::parse(&spec.period)?;
    let today = db::now().date();
    let published = run
        .as_ref()
        .map(|r| r.published_at.map_or(today, |at| at.date()));
    let series = kpi_series(conn, policy, run.as_ref().map(|r| r.id), published)?;
    let kpis: Vec<KpiSeries<'_>> = series
        .iter()
        .map(|(kpi, segment, statuses, counted_from)| KpiSeries {
            kpi: *kpi,
            segment,
            statuses,
            counted_from: *counted_from,
        })
        .collect();
    let stability = run.as_ref().and_then(|r| r.stability_ari);
    let since = published.map(|day| Period::complete_since(kind, day, today));
    let assessment: Assessment = assess(&rules, &kpis, &drifts, shift.as_ref(), stability, since)?;
    let ResegmentationAdvice {
        recommended,
        reasons,
        too_early,
    } = assessment.advice.clone();
    // The day the advice can first be given: the end of the N-th whole period after
    // publication.
    let advice_from = match published {
        Some(day) if too_early => {
            let mut p = Period::first_from(kind, day)?;
            for _ in 1..spec.consecutive_periods {
                p = p.next()?;
            }
            Some(p.end())
        }
        _ => None,
    };
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
        period_kind: kind.as_str().to_owned(),
        published_at: run.as_ref().and_then(|r| r.published_at),
        advice_too_early: too_early,
        advice_from,
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
    let id = run_cases::create(db, policy, actor, &request)?;
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

/// What a scheduled evaluation on `today` evaluates: the period containing yesterday, and
/// before it the last complete period when its newest evaluation (`last_evaluated_at`) was
/// made before it ended; left alone, a period evaluated for the last time while the server
/// was down on the day after it ended would stay partial for good.
fn scheduled_periods(
    kind: PeriodKind,
    today: NaiveDate,
    last_evaluated_at: Option<NaiveDateTime>,
) -> Result<Vec<Period>> {
    let day = today.pred_opt().unwrap_or(today);
    let period = Period::containing(kind, day)?;
    let last = Period::last_complete(kind, today)?;
    let stale = last_evaluated_at.is_some_and(|at| !last.coverage_at(at).complete);
    Ok(if stale && last != period {
        vec![last, period]
    } else {
        vec![period]
    })
}

/// Starts the scheduled evaluation in a background thread: at start and then at every
/// interval, the period (of the policy's kind) containing yesterday is evaluated and
/// appended, so a period's last evaluation is made the day after it ends (and the last
/// complete period again, if its newest evaluation predates its end).
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
                        let last = Period::last_complete(kind, today)?;
                        let newest = db
                            .read(|c| store::periods(c, kind.as_str()))?
                            .into_iter()
                            .find(|(start, _, _)| *start == last.start())
                            .map(|(_, _, at)| at);
                        let periods = scheduled_periods(kind, today, newest)?;
                        Ok(evaluate(&db, &policy, &Actor::system(), &periods)?.len())
                    }));
                match result {
                    Ok(Ok(rows)) => tracing::info!(rows, "scheduled KPI evaluation appended"),
                    Ok(Err(error)) => tracing::warn!(%error, "scheduled KPI evaluation failed"),
                    Err(panic) => tracing::error!(
                        panic = crate::app::jobs::panic_message(panic.as_ref()),
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
    fn the_schedule_evaluates_a_last_period_left_partial_again() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        let labels = |today, at: Option<NaiveDateTime>| {
            scheduled_periods(PeriodKind::Month, today, at)
                .unwrap()
                .iter()
                .map(Period::label)
                .collect::<Vec<_>>()
        };
        let on_last_day = d(11, 30).and_hms_opt(12, 0, 0);
        let day_after = d(12, 1).and_hms_opt(0, 5, 0);
        // The day after the month ended: yesterday's month is the last complete one.
        assert_eq!(labels(d(12, 1), on_last_day), ["2026-11"]);
        // The server missed that day: November is evaluated again, then December so far.
        assert_eq!(labels(d(12, 3), on_last_day), ["2026-11", "2026-12"]);
        // November was evaluated complete, or never: December only.
        assert_eq!(labels(d(12, 3), day_after), ["2026-12"]);
        assert_eq!(labels(d(12, 3), None), ["2026-12"]);
    }

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
