//! KPI evaluation, drift and adaptation end to end: load what a period needs from the
//! database, evaluate with [`kpi::Evaluator`], append to the log with a trail entry, and read
//! the log, the drift and the alerts back for the CLI, the API and the pages.
//!
//! Who counts: segment `all` is every customer on file (aggregate reporting); a segment is the
//! published run's members minus those whose consent for the segmentation purpose is no
//! longer active now (withdrawal wins at once). Figures resting on fewer customers than the
//! policy's `fairness.min_cell_size` are stored, but suppressed wherever they are shown, with
//! a complementary partner among the segments where one alone would follow from `all`
//! ([`Withheld`]).
//!
//! Loading is proportional to the period, not the history: the transactions of P−1 and P by
//! the `occurred_at` index, and "first purchase ever in P" by one index probe per row of P
//! (`db::kpi::first_purchasers`). One month over 1,000,000 customers and 10,000,000
//! transactions on SQLite: see `benches/kpi_sqlite.rs` and docs/benchmarks.md.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use chrono::{NaiveDate, NaiveDateTime};
use serde_json::json;

use super::kept::Kept;
use crate::app::jobs::WorkerId;
use crate::app::runs::{self as run_cases, RunError};
use crate::config::KpiSchedule;
use crate::db::kpi::{self as store, EvaluationRecord, LogFilter};
use crate::db::segmentation::{self as runs, RunRow};
use crate::db::{self, Db, DbConnection, DbError};
use crate::kpi::population::Population;
use crate::kpi::series::{
    SeriesKey, is_suppressed, logged_coverage, status_of, stored_status, unique_names,
};
use crate::kpi::targets::{basis, objective, rules};
use crate::kpi::{
    self, ALL_SEGMENT, AlertRules, Assessment, ClvParams, Coverage, Evaluation, Evaluator,
    FeatureDrift, Kpi, KpiError, KpiSeries, Period, PeriodKind, SegmentShift, Status, Transactions,
    assess, day_number, feature_drift, segment_shift,
};
use crate::policy::Policy;
use crate::segmentation::pipeline::RunSummary;
use crate::segmentation::settings::{FeatureSource, RunSettings};
use crate::segmentation::status::RunStatus;
use crate::trail::{Actor, NewEntry};

/// What can go wrong between the database and the KPI computation.
#[derive(Debug, thiserror::Error)]
pub enum KpisError {
    #[error(transparent)]
    Kpi(#[from] KpiError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("stored run {id} cannot be read: {message}")]
    Corrupt { id: i64, message: String },
}

type Result<T> = std::result::Result<T, KpisError>;

/// The period kind of the policy (`kpi.period`, validated when the policy was loaded).
pub fn policy_kind(policy: &Policy) -> Result<PeriodKind> {
    Ok(PeriodKind::parse(&policy.kpi.period)?)
}

fn midnight(d: NaiveDate) -> NaiveDateTime {
    d.and_hms_opt(0, 0, 0).expect("midnight exists")
}

/// The series a logged row belongs to.
pub fn series_key(r: &EvaluationRecord) -> SeriesKey {
    SeriesKey::new(&r.segment, r.run_id, r.segment_number)
}

/// The log rows a reader may not see: those resting on fewer customers than the policy's
/// minimum cell size, and their complementary partners among the segments of the same run,
/// KPI, period and evaluation ([`kpi::series::withheld`]).
#[derive(Debug, Clone, Default)]
pub struct Withheld {
    min_cell_size: u32,
    partners: HashSet<i64>,
}

impl Withheld {
    /// Primary suppression only: for rows outside any group (`all`).
    pub fn primary(min_cell_size: u32) -> Withheld {
        Withheld {
            min_cell_size,
            partners: HashSet::new(),
        }
    }

    /// Over `records`, which hold every row of each group they touch (a whole evaluation,
    /// or every segment of a run).
    pub fn among(records: &[EvaluationRecord], min_cell_size: u32) -> Withheld {
        let figures: Vec<_> = records.iter().map(|r| (group(r), r.basis)).collect();
        let partners = kpi::series::withheld(&figures, min_cell_size)
            .into_iter()
            .zip(records)
            .filter(|(withheld, r)| *withheld && !is_suppressed(r.basis, min_cell_size))
            .map(|(_, r)| r.id)
            .collect();
        Withheld {
            min_cell_size,
            partners,
        }
    }

    pub fn contains(&self, r: &EvaluationRecord) -> bool {
        is_suppressed(r.basis, self.min_cell_size) || self.partners.contains(&r.id)
    }
}

/// The rows whose figures add up, beside `all`, to one published figure: one run's segments,
/// one KPI, one period, one evaluation. `None` for `all` and rows of no known segment.
fn group(r: &EvaluationRecord) -> Option<(i64, &str, &str, NaiveDate, NaiveDateTime)> {
    r.segment_number?;
    Some((
        r.run_id?,
        r.period_kind.as_str(),
        r.kpi.as_str(),
        r.period_start,
        r.evaluated_at,
    ))
}

/// [`Withheld`] of `records`, a part of the log (one segment's series, a filtered listing):
/// the rows of their groups they lack are read from the log first, since a partner may be
/// among the rows shown while the figure it protects is not.
pub fn withheld(db: &Db, records: &[EvaluationRecord], min_cell_size: u32) -> Result<Withheld> {
    let mut ranges: BTreeMap<(i64, &str), (NaiveDate, NaiveDate)> = BTreeMap::new();
    for r in records.iter().filter(|r| group(r).is_some()) {
        let Some(run_id) = r.run_id else { continue };
        let range = ranges
            .entry((run_id, r.period_kind.as_str()))
            .or_insert((r.period_start, r.period_start));
        range.0 = range.0.min(r.period_start);
        range.1 = range.1.max(r.period_start);
    }
    if ranges.is_empty() {
        return Ok(Withheld::primary(min_cell_size));
    }
    let shown: HashSet<i64> = records.iter().map(|r| r.id).collect();
    let mut whole = records.to_vec();
    db.read(|c| {
        for ((run_id, kind), (from, to)) in &ranges {
            let filter = LogFilter {
                period_kind: PeriodKind::parse(kind).ok(),
                run_id: Some(*run_id),
                from: Some(*from),
                to: Some(*to),
                ..LogFilter::default()
            };
            whole.extend(
                store::log(c, &filter)?
                    .into_iter()
                    .filter(|r| !shown.contains(&r.id) && r.period_kind == *kind),
            );
        }
        Ok(())
    })?;
    Ok(Withheld::among(&whole, min_cell_size))
}

/// How much of its period a logged row covers.
pub fn coverage(r: &EvaluationRecord) -> Coverage {
    logged_coverage(r.kind(), r.period_start, r.evaluated_at)
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
    let mut population = Population::new(store::customer_ids(conn)?);
    let Some(run) = runs::published(conn)? else {
        return Ok(population);
    };
    let named = segment_names(conn, run.id)?;
    let members = runs::memberships(conn, run.id)?;
    let purpose = &policy.segmentation.purpose;
    let consented = db::consent_state::active_under(conn, policy, purpose, db::now())?;
    population.assign(run.id, named, &members, &consented)?;
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
    let mut first_day = vec![i32::MIN; population.len()];
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
        population.len() as u32,
        &customer,
        &day,
        &amount,
        any_order.then_some(order.as_slice()),
    )?;
    let evaluator = Evaluator::with_first_days(tx, population.segmentation(), clv, first_day)?;
    Ok(evaluator.evaluate(period)?)
}

/// The log rows of one evaluation.
fn records(
    evaluation: &Evaluation,
    policy: &Policy,
    population: &Population,
    at: NaiveDateTime,
    actor: &Actor,
    claim: Option<&Claim<'_>>,
) -> Vec<EvaluationRecord> {
    let run_id = population.run_id();
    let rows = evaluation.rows(|kpi, segment| objective(&policy.kpi, kpi, segment));
    let aggregates: HashMap<&str, &kpi::Aggregates> = evaluation
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
            segment_number: population.number_of(&r.segment),
            basis: basis(r.kpi, aggregates[r.segment.as_str()]) as i64,
            period_kind: evaluation.period.kind().as_str().to_owned(),
            period_start: r.period_start,
            period_end: evaluation.period.last_day(),
            value: r.value,
            undefined_reason: r.undefined_reason.map(|u| u.to_string()),
            target: r.target,
            alert_threshold: r.alert_threshold,
            status: stored_status(r.status).to_owned(),
            evaluated_at: at,
            evaluated_by: actor.as_str().to_owned(),
            worker_id: claim.map(|c| c.worker.to_owned()),
            claim_id: claim.map(|c| c.id),
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
    let rows = evaluate_under(db, policy, actor, periods, None)?;
    measure_drift_after_evaluation(db, policy);
    Ok(rows)
}

/// [`measure_drift`] once an evaluation is appended; a failure is logged, not the
/// evaluation's (the drift page measures on its first view instead).
fn measure_drift_after_evaluation(db: &Db, policy: &Policy) {
    if let Err(error) = measure_drift(db, policy) {
        tracing::warn!(%error, "drift not measured after the KPI evaluation");
    }
}

/// A schedule claim an evaluation is made under: the process that holds it and its id.
pub struct Claim<'a> {
    pub worker: &'a str,
    pub id: i64,
}

/// [`evaluate`], under a schedule claim, which is marked done with the rows appended.
fn evaluate_under(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    periods: &[Period],
    claim: Option<&Claim<'_>>,
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
        rows.extend(records(&evaluation, policy, &population, at, actor, claim));
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
        let mut detail = json!({
            "periods": labels,
            "period_kind": periods.first().map(|p| p.kind().as_str()),
            "run_id": population.run_id(),
            "segments": population.segmentation().names().len() + 1,
            "rows": rows.len(),
        });
        if let Some(claim) = claim {
            db::jobs::finish_slot(conn, claim.id, at)?;
            detail["worker"] = json!(claim.worker);
            detail["schedule_claim"] = json!(claim.id);
        }
        db::trail::append(
            conn,
            NewEntry::new(actor, "kpi.evaluated", subject, detail),
            &policy.version,
        )?;
        Ok::<_, KpisError>(())
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

/// Keeps the newest evaluation of each (period kind, series, KPI, period), in log order.
pub fn newest_per_period(records: Vec<EvaluationRecord>) -> Vec<EvaluationRecord> {
    let mut newest: HashMap<(String, SeriesKey, String, NaiveDate), usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        newest.insert(
            (
                r.period_kind.clone(),
                series_key(r),
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

/// One segment's size and revenue over the KPI log's complete periods, oldest first. A
/// figure resting on fewer customers than the policy's minimum cell size is `None`: shown as a
/// gap, never drawn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentTrend {
    pub periods: Vec<NaiveDate>,
    pub size: Vec<Option<f64>>,
    pub revenue: Vec<Option<f64>>,
}

/// The trends of run `run_id`'s segments (by segment number) over the policy's period kind.
/// Partial periods are left out: a month one day old is not a fall in revenue.
///
/// Drawn on every `/segments` view, so kept per process until the run's part of the log
/// changes (its row count and newest id, one indexed query) — any process reading the same
/// log draws the same trends.
pub fn segment_trends(
    db: &Db,
    policy: &Policy,
    run_id: i64,
) -> Result<BTreeMap<i32, SegmentTrend>> {
    /// The run's part of the log (row count and newest id) and the minimum cell size.
    type Versions = ((i64, Option<i64>), u32);
    type Slot = (String, i64, PeriodKind);
    type Trends = Arc<BTreeMap<i32, SegmentTrend>>;
    static DRAWN: LazyLock<Kept<Slot, Versions, Trends>> = LazyLock::new(Kept::default);
    let kind = policy_kind(policy)?;
    let filter = LogFilter {
        period_kind: Some(kind),
        run_id: Some(run_id),
        ..LogFilter::default()
    };
    let mut conn = db.conn()?;
    let c = &mut *conn;
    let version = store::log_version(c, &filter)?;
    let trends = DRAWN.get_or_compute(
        (db.url().to_string(), run_id, kind),
        (version, policy.fairness.min_cell_size),
        None,
        || -> Result<_> { Ok((Arc::new(draw_trends(store::log(c, &filter)?, policy)), None)) },
    )?;
    Ok((*trends).clone())
}

/// The newest evaluation of every series, KPI and period `filter` matches, in log order.
///
/// Dashboards read these on every view (the KPI overview's period, its comparison with the
/// periods before, the home page's alerts), and a period evaluated every day while it runs has
/// thirty rows for each one shown. The log only grows, and shrinks only by retention, so each
/// process keeps them until the matching rows' count or newest id changes (one indexed query).
pub fn newest_matching(
    c: &mut DbConnection,
    db: &Db,
    filter: &LogFilter,
) -> Result<Arc<Vec<EvaluationRecord>>> {
    type Slot = (String, LogFilter);
    /// The matching rows' count and newest id.
    type Versions = (i64, Option<i64>);
    type Newest = Arc<Vec<EvaluationRecord>>;
    static KEPT: LazyLock<Kept<Slot, Versions, Newest>> = LazyLock::new(Kept::default);
    let version = store::log_version(c, filter)?;
    KEPT.get_or_compute(
        (db.url().to_string(), filter.clone()),
        version,
        None,
        || -> Result<_> { Ok((Arc::new(newest_per_period(store::log(c, filter)?)), None)) },
    )
}

/// The newest evaluation of every series and KPI in `kind`'s period starting on `start`.
fn newest_of_period(
    c: &mut DbConnection,
    db: &Db,
    kind: PeriodKind,
    start: NaiveDate,
) -> Result<Arc<Vec<EvaluationRecord>>> {
    let filter = LogFilter {
        period_kind: Some(kind),
        from: Some(start),
        to: Some(start),
        ..LogFilter::default()
    };
    newest_matching(c, db, &filter)
}

fn draw_trends(rows: Vec<EvaluationRecord>, policy: &Policy) -> BTreeMap<i32, SegmentTrend> {
    let rows = newest_per_period(rows);
    let withheld = Withheld::among(&rows, policy.fairness.min_cell_size);
    // Per segment, per period start: (size, revenue).
    type Points = BTreeMap<NaiveDate, (Option<f64>, Option<f64>)>;
    let mut by_segment: BTreeMap<i32, Points> = BTreeMap::new();
    for r in rows {
        let (Some(number), Ok(kpi)) = (r.segment_number, Kpi::parse(&r.kpi)) else {
            continue;
        };
        if !matches!(kpi, Kpi::SegmentSize | Kpi::Revenue) || !coverage(&r).complete {
            continue;
        }
        let shown = r.value.filter(|_| !withheld.contains(&r));
        let point = by_segment
            .entry(number)
            .or_default()
            .entry(r.period_start)
            .or_default();
        match kpi {
            Kpi::SegmentSize => point.0 = shown,
            _ => point.1 = shown,
        }
    }
    by_segment
        .into_iter()
        .map(|(number, points)| {
            let mut trend = SegmentTrend::default();
            for (start, (size, revenue)) in points {
                trend.periods.push(start);
                trend.size.push(size);
                trend.revenue.push(revenue);
            }
            (number, trend)
        })
        .collect()
}

/// The log, filtered, oldest first.
pub fn log(db: &Db, filter: &LogFilter) -> Result<Vec<EvaluationRecord>> {
    Ok(db.read(|c| store::log(c, filter))?)
}

/// One evaluated period, for choosing which to show.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodChoice {
    pub period: Period,
    /// `Some` when its newest evaluation was made before it ended.
    pub partial: Option<Coverage>,
}

/// A run whose segments have KPI history.
#[derive(Debug, Clone, PartialEq)]
pub struct RunChoice {
    pub id: i64,
    /// The run's status now: published, retired, …
    pub status: RunStatus,
    pub published_at: Option<NaiveDateTime>,
}

/// A segment column of the overview.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentColumn {
    pub key: SeriesKey,
    /// The segment's current name (its label in the log when the run no longer has it).
    pub name: String,
}

/// One period, `all` and the segments of one run, never two runs mixed.
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
    pub records: Vec<(SeriesKey, EvaluationRecord)>,
}

/// The overview of `kind` for the period starting on `start` (default: the newest complete
/// period evaluated; a partial period is shown only when asked for) and the segments of run
/// `run` (default: the published run).
pub fn overview(
    db: &Db,
    kind: PeriodKind,
    start: Option<NaiveDate>,
    run: Option<i64>,
    today: NaiveDate,
) -> Result<Overview> {
    let last_complete = Period::last_complete(kind, today)?;
    let mut conn = db.conn()?;
    let c = &mut *conn;
    let mut periods = Vec::new();
    for (start, _, at) in store::periods(c, kind)? {
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
    for id in store::runs_logged(c, kind)? {
        if let Some(r) = runs::run_head(c, id)? {
            runs.push(RunChoice {
                id,
                status: r.status,
                published_at: r.published_at,
            });
        }
    }
    let published = runs::published_head(c)?;
    let run = match run {
        Some(id) => runs.iter().find(|r| r.id == id).cloned(),
        None => published.map(|r| RunChoice {
            id: r.id,
            status: r.status,
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
    let mut records = Vec::new();
    if let Some(shown) = &shown {
        let rows = newest_of_period(c, db, kind, shown.period.start())?;
        let current: HashMap<i32, String> = match &run {
            Some(r) => runs::segments(c, r.id)?
                .into_iter()
                .map(|s| (s.segment, s.name))
                .collect(),
            None => HashMap::new(),
        };
        let mut segments: BTreeMap<i32, String> = BTreeMap::new();
        for r in rows.iter() {
            let key = series_key(r);
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
                records.push((key, r.clone()));
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
        records,
    })
}

/// One series' history for `kind`: the newest evaluation per period, by KPI, oldest first,
/// with the label the series goes by now (the segment's current name, else its newest label).
pub fn series(
    db: &Db,
    kind: PeriodKind,
    key: &SeriesKey,
) -> Result<(String, BTreeMap<String, Vec<EvaluationRecord>>)> {
    let (rows, current) = db.read(|c| {
        let mut filter = LogFilter {
            period_kind: Some(kind),
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
    let mut out: BTreeMap<String, Vec<EvaluationRecord>> = BTreeMap::new();
    for r in newest_per_period(rows) {
        if series_key(&r) != *key {
            continue;
        }
        out.entry(r.kpi.clone()).or_default().push(r);
    }
    for v in out.values_mut() {
        v.sort_by_key(|e| e.period_start);
    }
    Ok((name, out))
}

/// The status of run `run_id` now, if it exists.
pub fn run_status(db: &Db, run_id: i64) -> Result<Option<RunStatus>> {
    Ok(db.read(|c| runs::run(c, run_id))?.map(|r| r.status))
}

/// The series of the published run's segment called `name` now: (run, segment number).
pub fn published_segment(db: &Db, name: &str) -> Result<Option<(i64, i32)>> {
    Ok(db.read(|c| {
        let Some(run) = runs::published(c)? else {
            return Ok(None);
        };
        Ok(runs::segments(c, run.id)?
            .into_iter()
            .find(|s| s.name.trim() == name.trim())
            .map(|s| (run.id, s.segment)))
    })?)
}

/// A run's feature drift is measured from the customers, their transactions and attributes,
/// consent, the published run and its reference sample: an entry of one of these actions
/// changes none of them, so it does not make a stored measurement stale. (Consent changes are
/// also seen through the consent state's version, and transactions loaded directly through
/// the next transaction id.)
const DRIFT_UNAFFECTED_BY: &[&str] = crate::trail::CUSTOMER_DATA_UNCHANGED_BY;

/// What the feature drift of run `run_id` measured now would be computed from: the day
/// (features are as of today), the consent state, every change of customer data (each use case
/// that changes data appends to the trail; transactions loaded directly move the next
/// transaction id) and the policy. A grant that lapses without a write (at a million customers
/// one does every few minutes) does not make the measurement stale: it counts the customers
/// whose consent was active when it was made, and says when that was (`measured_at`).
fn drift_inputs(
    conn: &mut DbConnection,
    policy: &Policy,
    run_id: i64,
    now: NaiveDateTime,
) -> Result<db::drift::DriftInputs> {
    let purpose = &policy.segmentation.purpose;
    Ok(db::drift::DriftInputs {
        run_id,
        day: now.date(),
        consent_version: db::consent_state::version(conn)?,
        data_seq: db::trail::last_seq_except(conn, DRIFT_UNAFFECTED_BY)?,
        next_transaction: db::customers::next_id(conn, db::customers::IdTable::Transactions)?,
        policy_version: policy.version.clone(),
        valid_until: db::consent_state::changes_after(
            conn,
            purpose,
            &policy.purposes[purpose],
            now,
        )?,
    })
}

/// A run's feature drift as measured and stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureDrifts {
    pub features: Vec<MeasuredDrift>,
    /// Features of the run that could not be measured, with the reason.
    pub not_measured: Vec<String>,
}

/// The feature drift of `run` and when it was measured: the stored measurement when it was
/// made from now's inputs, else measured now (which reads every consenting customer's features
/// and attributes: seconds at a million customers) and stored for every process to read.
fn feature_drifts(
    db: &Db,
    conn: &mut DbConnection,
    policy: &Policy,
    run: &RunRow,
    thresholds: &kpi::DriftThresholds,
) -> Result<(FeatureDrifts, NaiveDateTime)> {
    let now = db::now();
    let inputs = drift_inputs(conn, policy, run.id, now)?;
    if let Some((json, measured_at)) = db::drift::stored(conn, &inputs)? {
        match serde_json::from_str(&json) {
            Ok(stored) => return Ok((stored, measured_at)),
            Err(error) => {
                tracing::warn!(run = run.id, %error, "stored drift unreadable; measuring again");
            }
        }
    }
    let started = std::time::Instant::now();
    let measured = measure_feature_drifts(conn, policy, run, thresholds)?;
    let json = serde_json::to_string(&measured).expect("drift serialises");
    db.write(|c| db::drift::store(c, &inputs, now, &json))?;
    tracing::info!(
        run = run.id,
        ms = started.elapsed().as_millis() as u64,
        "feature drift measured and stored"
    );
    Ok((measured, now))
}

/// Measures the feature drift of `run` now, from its reference sample and the current values.
fn measure_feature_drifts(
    conn: &mut DbConnection,
    policy: &Policy,
    run: &RunRow,
    thresholds: &kpi::DriftThresholds,
) -> Result<FeatureDrifts> {
    let corrupt = |message: String| KpisError::Corrupt {
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
    let mut out = FeatureDrifts {
        features: Vec::new(),
        not_measured: Vec::new(),
    };
    for reference in &references {
        let now = current
            .get(&reference.feature)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if reference.values.is_empty() || now.is_empty() {
            out.not_measured.push(format!(
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
        out.features.push(MeasuredDrift {
            drift: feature_drift(&reference.feature, &reference.values, now, thresholds)?,
            reference_n: reference.values.len(),
            current_n: now.len(),
        });
    }
    Ok(out)
}

/// Measures and stores the published run's drift (its feature drift and live segment sizes)
/// unless a measurement from now's inputs is stored already, so that the first view of the
/// drift page, in any process, reads it. Called after KPI evaluations are appended (the
/// schedule's daily tick measures the new day's drift).
pub fn measure_drift(db: &Db, policy: &Policy) -> Result<()> {
    let thresholds = *rules(&policy.kpi)?.drift();
    let mut conn = db.conn()?;
    let Some(run) = runs::published(&mut conn)? else {
        return Ok(());
    };
    feature_drifts(db, &mut conn, policy, &run, &thresholds)?;
    let max_segment = runs::segments(&mut conn, run.id)?
        .iter()
        .map(|s| s.segment)
        .max()
        .unwrap_or(-1);
    run_cases::live_sizes(&mut conn, policy, run.id, (max_segment + 1) as usize)?;
    Ok(())
}

/// The published run's feature drift measured now from the data, ignoring any stored
/// measurement and storing nothing: what a stored measurement must equal.
pub fn fresh_feature_drifts(db: &Db, policy: &Policy) -> Result<Option<FeatureDrifts>> {
    let thresholds = *rules(&policy.kpi)?.drift();
    let mut conn = db.conn()?;
    let Some(run) = runs::published(&mut conn)? else {
        return Ok(None);
    };
    Ok(Some(measure_feature_drifts(
        &mut conn,
        policy,
        &run,
        &thresholds,
    )?))
}

/// One feature's drift, with the sizes of the samples it compares.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeasuredDrift {
    pub drift: FeatureDrift,
    /// Values in the reference sample (taken at segmentation time).
    pub reference_n: usize,
    /// Values now.
    pub current_n: usize,
}

/// One segment's size at segmentation time and now, unsuppressed.
#[derive(Debug, Clone)]
pub struct SegmentSizes {
    pub segment: i32,
    pub name: String,
    pub stored: u64,
    pub live: u64,
}

/// The shift in segment sizes, with the sizes it was measured on.
#[derive(Debug, Clone)]
pub struct Shift {
    pub shift: SegmentShift,
    pub segments: Vec<SegmentSizes>,
}

/// Drift of the published segmentation, the alerts and the re-segmentation signal.
#[derive(Debug, Clone)]
pub struct Drift {
    /// The published run, when there is one.
    pub run: Option<RunRow>,
    /// When the feature drift was measured (now when there is no published run).
    pub measured_at: NaiveDateTime,
    pub features: Vec<MeasuredDrift>,
    /// Features of the run that could not be measured, with the reason.
    pub not_measured: Vec<String>,
    pub shift: Option<Shift>,
    pub rules: AlertRules,
    pub assessment: Assessment,
    /// The period kind alerts are counted in (the policy's `kpi.period`).
    pub kind: PeriodKind,
    /// When the published run is too recent to judge, the first day advice can be given.
    pub advice_from: Option<NaiveDate>,
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
    let consented = db::consent_state::active_under(conn, policy, purpose, now)?;
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
    kind: PeriodKind,
    run_id: Option<i64>,
    published: Option<NaiveDate>,
) -> Result<Vec<StatusSeries>> {
    let rows = store::log(
        conn,
        &LogFilter {
            period_kind: Some(kind),
            ..LogFilter::default()
        },
    )?;
    let names: HashMap<i32, String> = match run_id {
        Some(id) => segment_names(conn, id)?.into_iter().collect(),
        None => HashMap::new(),
    };
    let mut grouped: BTreeMap<(SeriesKey, String), Vec<(NaiveDate, Status)>> = BTreeMap::new();
    let rows = newest_per_period(rows);
    let withheld = Withheld::among(&rows, policy.fairness.min_cell_size);
    for r in rows {
        let key = series_key(&r);
        let counted = match &key {
            SeriesKey::All => true,
            SeriesKey::Segment { run_id: id, .. } => Some(*id) == run_id,
            SeriesKey::Label { .. } => false,
        };
        if !counted || !coverage(&r).complete {
            continue;
        }
        let status = if withheld.contains(&r) {
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
pub fn drift(db: &Db, policy: &Policy) -> Result<Drift> {
    let spec = &policy.kpi;
    let rules = rules(spec)?;
    let thresholds = *rules.drift();
    let mut conn = db.conn()?;
    let conn = &mut *conn;
    let run: Option<RunRow> = runs::published(conn)?;
    let mut features = Vec::new();
    let mut not_measured = Vec::new();
    let mut measured_at = db::now();
    let mut shift = None;
    if let Some(run) = &run {
        let (measured, at) = feature_drifts(db, conn, policy, run, &thresholds)?;
        features = measured.features;
        not_measured = measured.not_measured;
        measured_at = at;
        let segments = runs::segments(conn, run.id)?;
        let named = segment_names(conn, run.id)?;
        let max_segment = segments.iter().map(|s| s.segment).max().unwrap_or(-1);
        let live = run_cases::live_sizes(conn, policy, run.id, (max_segment + 1) as usize)?;
        let stored: Vec<u64> = segments.iter().map(|s| s.size.max(0) as u64).collect();
        let now: Vec<u64> = segments.iter().map(|s| live[s.segment as usize]).collect();
        if stored.iter().sum::<u64>() > 0 && now.iter().sum::<u64>() > 0 {
            shift = Some(Shift {
                shift: segment_shift(&stored, &now, &thresholds)?,
                segments: segments
                    .iter()
                    .zip(&named)
                    .enumerate()
                    .map(|(i, (seg, (_, name)))| SegmentSizes {
                        segment: seg.segment,
                        name: name.clone(),
                        stored: stored[i],
                        live: now[i],
                    })
                    .collect(),
            });
        }
    }
    let kind = policy_kind(policy)?;
    let today = db::now().date();
    let published = run
        .as_ref()
        .map(|r| r.published_at.map_or(today, |at| at.date()));
    let series = kpi_series(conn, policy, kind, run.as_ref().map(|r| r.id), published)?;
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
    let drifts: Vec<FeatureDrift> = features.iter().map(|f| f.drift.clone()).collect();
    let assessment = assess(
        &rules,
        &kpis,
        &drifts,
        shift.as_ref().map(|s| &s.shift),
        stability,
        since,
    )?;
    // The day the advice can first be given: the end of the N-th whole period after
    // publication.
    let advice_from = match published {
        Some(day) if assessment.advice.too_early => {
            let mut p = Period::first_from(kind, day)?;
            for _ in 1..spec.consecutive_periods {
                p = p.next()?;
            }
            Some(p.end())
        }
        _ => None,
    };
    Ok(Drift {
        run,
        measured_at,
        features,
        not_measured,
        shift,
        rules,
        assessment,
        kind,
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
        serde_json::from_str(&run.settings).map_err(|e| KpisError::Corrupt {
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

/// One scheduled evaluation on `today`: see [`kpi::schedule::scheduled_periods`]. Each period
/// is claimed first, once across every server on the database (a period is evaluated once as
/// final, and once per day of data while it runs); a period another process claimed is left
/// to it. Returns the number of rows appended.
fn scheduled_evaluation(db: &Db, policy: &Policy, worker: &WorkerId) -> Result<usize> {
    let kind = policy_kind(policy)?;
    let now = db::now();
    let today = now.date();
    let last = Period::last_complete(kind, today)?;
    let newest = db
        .read(|c| store::periods(c, kind))?
        .into_iter()
        .find(|(start, _, _)| *start == last.start())
        .map(|(_, _, at)| at);
    let periods = kpi::schedule::scheduled_periods(kind, today, newest)?;
    let yesterday = today.pred_opt().unwrap_or(today);
    let mut appended = 0;
    for period in periods {
        let evaluation = if period.last_day() < today {
            "final".to_owned()
        } else {
            format!("through {yesterday}")
        };
        let slot = db::jobs::Slot {
            task: "kpi",
            period_kind: kind.as_str(),
            period_start: period.start(),
            evaluation: &evaluation,
        };
        // A claim unfinished for this long belonged to a process that stopped mid-evaluation.
        let stale_before = now - chrono::Duration::hours(1);
        let claimed =
            db.write(|c| db::jobs::claim_slot(c, &slot, worker.as_str(), now, stale_before))?;
        let Some(id) = claimed else {
            tracing::info!(period = %period.label(), %evaluation, "scheduled KPI evaluation already made or claimed by another server");
            continue;
        };
        let claim = Claim {
            worker: worker.as_str(),
            id,
        };
        match evaluate_under(db, policy, &Actor::system(), &[period], Some(&claim)) {
            Ok(rows) => appended += rows.len(),
            Err(error) => {
                // Given up so that a later tick, here or elsewhere, tries again.
                if let Err(e) = db.write(|c| db::jobs::release_slot(c, id)) {
                    tracing::error!(error = %e, claim = id, "cannot release a KPI schedule claim");
                }
                return Err(error);
            }
        }
    }
    // At start and at every tick, even with nothing to evaluate: a new day is new drift.
    measure_drift_after_evaluation(db, policy);
    Ok(appended)
}

/// Starts the scheduled evaluation in a background thread: at start and then at every
/// interval, the period (of the policy's kind) containing yesterday is evaluated and
/// appended, so a period's last evaluation is made the day after it ends (and the last
/// complete period again, if its newest evaluation predates its end).
pub fn spawn_schedule(db: Db, policy: Arc<Policy>, schedule: KpiSchedule, worker: WorkerId) {
    let KpiSchedule::Every(interval) = schedule else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("kpi-schedule".into())
        .spawn(move || {
            loop {
                // A panic in one evaluation must not end the schedule for the process's life.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    scheduled_evaluation(&db, &policy, &worker)
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
