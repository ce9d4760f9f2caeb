//! KPI dashboards (latest status at a glance, per-segment time series as server-side SVG),
//! the evaluation log as CSV, drift with alerts and the re-segmentation signal, and the one
//! action: run the published segmentation again with the same settings.

use actix_web::{HttpResponse, web};
use askama::Template;
use std::sync::{Arc, LazyLock};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::charts::{KpiChart, kpi_history};
use super::error::{AppError, blocking};
use super::format;
use super::layout::{Layout, State, render, see_other};
use crate::app::kept::Shown;
use crate::app::kpi_compare::PeriodComparison;
use crate::app::kpis::{self, KpisError, Withheld};
use crate::app::runs::RunError;
use crate::auth::CurrentUser;
use crate::db::kpi::{EvaluationRecord, LogFilter};
use crate::kpi::series::{PARTIAL, SeriesKey};
use crate::kpi::{ALL_SEGMENT, Kpi, KpiError, Period, PeriodKind};
use crate::policy::{Currency, Permission};
use crate::segmentation::status::RunStatus;
use crate::trail::Actor;

mod views;

pub use views::{
    AlertView, DriftReport, EvaluationView, FeatureDriftView, SegmentShiftView, SegmentSizeView,
    format_number, period_label,
};

impl From<KpisError> for AppError {
    fn from(e: KpisError) -> AppError {
        match e {
            KpisError::Kpi(KpiError::UnknownPeriodKind(p)) => AppError::invalid(
                "period",
                format!("`{p}` is not a period kind: use week, month or quarter"),
            ),
            KpisError::Kpi(e @ KpiError::EmptyDateRange { .. }) => {
                AppError::invalid("from", e.to_string())
            }
            KpisError::Kpi(e @ KpiError::DateOutOfRange(_)) => {
                AppError::invalid("as_of", e.to_string())
            }
            KpisError::Db(e) => e.into(),
            KpisError::Run(RunError::NotFound(id)) => {
                AppError::Missing(format!("segmentation run {id} does not exist"))
            }
            KpisError::Run(RunError::Settings(e)) => AppError::invalid(e.field(), e.to_string()),
            KpisError::Run(RunError::Db(e)) => e.into(),
            other => AppError::internal(other),
        }
    }
}

fn kind_of(state: &State, period: Option<&str>) -> Result<PeriodKind, AppError> {
    let raw = period
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .unwrap_or(&state.policy.kpi.period);
    PeriodKind::parse(raw).map_err(|_| {
        AppError::invalid(
            "period",
            format!("`{raw}` is not a period kind: use week, month or quarter"),
        )
    })
}

fn parse_day(field: &str, value: Option<&str>) -> Result<Option<NaiveDate>, AppError> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| crate::time::parse_day(v).map_err(|m| AppError::invalid(field, m)))
        .transpose()
}

// ---------------------------------------------------------------------------------------------
// The overview: every KPI of one period, overall and for the segments of one run.

struct Cell {
    display: String,
    status: String,
    label: String,
    note: Option<String>,
}

struct OverviewRow {
    kpi: &'static str,
    label: &'static str,
    formula: &'static str,
    cells: Vec<Cell>,
}

/// (value, text, selected) of a `<select>` option.
type Choice = (String, String, bool);

#[derive(Template)]
#[template(path = "kpi/index.html")]
struct OverviewHtml {
    layout: Layout,
    period_kind: String,
    /// The shown period: label and dates, and its partial label when it is partial.
    period: Option<(String, String)>,
    partial: Option<String>,
    period_choices: Vec<Choice>,
    run_choices: Vec<Choice>,
    /// Why the shown run is not the published one, or that there is none.
    run_note: Option<String>,
    /// The calendar's last complete period, when it has not been evaluated: (label, last day).
    missing_last_complete: Option<(String, String)>,
    /// (name, link to its charts)
    segments: Vec<(String, String)>,
    rows: Vec<OverviewRow>,
    nothing_evaluated: bool,
    can_evaluate: bool,
    /// The form's default day: the last day of the last complete period.
    default_as_of: String,
    /// A back-fill of the last twelve periods: (from, to).
    backfill: (String, String),
    min_cell_size: u32,
    /// The shown period beside the one before and the same one a year before (whole
    /// population; complete periods only).
    comparison: Option<ComparisonView>,
}

/// The comparison table: column headings, then per KPI (label, now, before, change, a year
/// before, change).
pub struct ComparisonView {
    pub now: String,
    pub previous: String,
    pub year_before: String,
    pub rows: Vec<[String; 6]>,
}

fn comparison_view(
    c: &crate::app::kpi_compare::PeriodComparison,
    min_cell: u32,
    currency: &crate::policy::Currency,
) -> ComparisonView {
    // The comparison is of `all`, which no other shown figure adds up to.
    let withheld = Withheld::primary(min_cell);
    let shown = |r: &Option<EvaluationRecord>| r.as_ref().map(|r| EvaluationView::of(r, &withheld));
    let value = |v: &Option<EvaluationView>| {
        v.as_ref()
            .filter(|v| !v.suppressed && !v.partial)
            .and_then(|v| v.value)
    };
    let words = |p: Option<Period>| {
        p.map(|p| crate::format::period(&p))
            .unwrap_or_else(|| "–".into())
    };
    ComparisonView {
        now: crate::format::period(&c.period),
        previous: words(c.previous),
        year_before: words(c.year_before),
        rows: c
            .rows
            .iter()
            .map(|row| {
                let (now, prev, year) = (
                    shown(&row.now),
                    shown(&row.previous),
                    shown(&row.year_before),
                );
                let cell = |v: &Option<EvaluationView>| {
                    v.as_ref()
                        .map(|v| kpi_shown(v, currency))
                        .unwrap_or_else(|| "not evaluated".into())
                };
                [
                    crate::format::label(row.kpi),
                    cell(&now),
                    cell(&prev),
                    crate::format::change(row.kpi, value(&now), value(&prev)),
                    cell(&year),
                    crate::format::change(row.kpi, value(&now), value(&year)),
                ]
            })
            .collect(),
    }
}

/// Percent-encodes one path segment (segment names may hold spaces or slashes).
fn path_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The page of a series' charts.
fn series_href(key: &SeriesKey, kind: PeriodKind) -> String {
    match key {
        SeriesKey::Segment { run_id, number } => {
            format!(
                "/kpi/runs/{run_id}/segments/{number}?period={}",
                kind.as_str()
            )
        }
        SeriesKey::All => format!("/kpi/segments/all?period={}", kind.as_str()),
        SeriesKey::Label { label, .. } => {
            format!(
                "/kpi/segments/{}?period={}",
                path_segment(label),
                kind.as_str()
            )
        }
    }
}

fn plural(kind: PeriodKind) -> &'static str {
    match kind {
        PeriodKind::Week => "weeks",
        PeriodKind::Month => "months",
        PeriodKind::Quarter => "quarters",
    }
}

#[derive(Deserialize, Default)]
pub struct OverviewQuery {
    /// week, month or quarter (default: the policy's kpi.period).
    period: Option<String>,
    /// The first day of the period to show (default: the newest complete one evaluated).
    start: Option<String>,
    /// The run whose segments to show (default: the published one).
    run: Option<String>,
}

pub async fn overview_page(
    state: State,
    user: CurrentUser,
    q: web::Query<OverviewQuery>,
) -> Result<HttpResponse, AppError> {
    let kind = kind_of(&state, q.period.as_deref())?;
    let start = parse_day("start", q.start.as_deref())?;
    let run = match q.run.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => Some(
            r.parse::<i64>()
                .map_err(|_| AppError::invalid("run", format!("`{r}` is not a run number")))?,
        ),
        None => None,
    };
    let shown = {
        let state = state.clone();
        blocking(move || overview_data(&state, kind, start, run)).await?
    };
    let (o, compared) = &*shown;
    let min_cell = state.policy.fairness.min_cell_size;
    let records: Vec<EvaluationRecord> = o.records.iter().map(|(_, r)| r.clone()).collect();
    let withheld = Withheld::among(&records, min_cell);
    let views: Vec<(SeriesKey, EvaluationView)> = o
        .records
        .iter()
        .map(|(key, r)| (key.clone(), EvaluationView::of(r, &withheld)))
        .collect();
    if let Some(start) = start
        && o.shown.is_none()
    {
        return Err(AppError::Missing(format!(
            "no {kind} starting on {start} has been evaluated"
        )));
    }
    if let Some(id) = run
        && o.run.is_none()
    {
        return Err(AppError::Missing(format!(
            "run {id} has no KPI history for {}",
            plural(kind)
        )));
    }
    let rows = Kpi::ALL
        .iter()
        .map(|kpi| OverviewRow {
            kpi: kpi.name(),
            label: kpi.label(),
            formula: kpi.formula(),
            cells: o
                .columns
                .iter()
                .map(|column| {
                    match views
                        .iter()
                        .find(|(key, v)| v.kpi == kpi.name() && *key == column.key)
                    {
                        // The period's heading already says how partial it is; each
                        // cell only says that it is.
                        Some((_, v)) => Cell {
                            display: kpi_shown(v, &state.policy.currency),
                            status: v.status.clone(),
                            label: if v.partial && !v.suppressed {
                                PARTIAL.to_owned()
                            } else {
                                status_words(v)
                            },
                            note: v.note(),
                        },
                        None => Cell {
                            display: "—".into(),
                            status: "none".into(),
                            label: "not evaluated".into(),
                            note: None,
                        },
                    }
                })
                .collect(),
        })
        .collect();
    let published = o
        .runs
        .iter()
        .find(|r| r.status == RunStatus::Published)
        .map(|r| r.id);
    let run_note = match &o.run {
        None => Some("No segmentation is published: only the whole population is shown.".into()),
        Some(r) if r.status != RunStatus::Published => Some(format!(
            "Run {} is {}: this is its history, shown apart from the published run{}.",
            r.id,
            r.status,
            published.map(|p| format!(" (run {p})")).unwrap_or_default()
        )),
        Some(r) if o.shown.is_some() && o.columns.len() == 1 => Some(format!(
            "The segments of run {} have not been evaluated for this {kind}.",
            r.id
        )),
        Some(_) => None,
    };
    let shown_start = o.shown.as_ref().map(|p| p.period.start());
    let period_choices = o
        .periods
        .iter()
        .map(|p| {
            (
                p.period.start().to_string(),
                period_label(p),
                Some(p.period.start()) == shown_start,
            )
        })
        .collect();
    let run_choices = o
        .runs
        .iter()
        .map(|r| {
            let what = if r.status == RunStatus::Published {
                "published".to_owned()
            } else {
                format!("{}, history", r.status)
            };
            (
                r.id.to_string(),
                format!("Run {} ({what})", r.id),
                o.run.as_ref().is_some_and(|x| x.id == r.id),
            )
        })
        .collect();
    let last = o.last_complete;
    let missing_last_complete = (!o.periods.is_empty()
        && !o
            .periods
            .iter()
            .any(|p| p.period == last && p.partial.is_none()))
    .then(|| (crate::format::period(&last), last.last_day().to_string()));
    let twelve_back = (1..12)
        .try_fold(last, |p, _| p.previous())
        .map_err(KpisError::from)?;
    let comparison = compared
        .as_ref()
        .map(|c| comparison_view(c, min_cell, &state.policy.currency));
    Ok(render(&OverviewHtml {
        layout: Layout::new(&state, Some(&user), "KPIs", "/kpi"),
        period_kind: kind.as_str().into(),
        period: o.shown.as_ref().map(|p| {
            (
                crate::format::period(&p.period),
                format!(
                    "{} to {}",
                    format::date(&p.period.start()),
                    format::date(&p.period.last_day())
                ),
            )
        }),
        partial: o
            .shown
            .as_ref()
            .and_then(|p| p.partial.as_ref())
            .and_then(|c| c.partial_label()),
        period_choices,
        run_choices,
        run_note,
        missing_last_complete,
        segments: o
            .columns
            .iter()
            .map(|c| (c.name.clone(), series_href(&c.key, kind)))
            .collect(),
        rows,
        nothing_evaluated: o.periods.is_empty(),
        can_evaluate: user.can(Permission::KpiEvaluate),
        default_as_of: last.last_day().to_string(),
        backfill: (twelve_back.start().to_string(), last.last_day().to_string()),
        min_cell_size: state.policy.fairness.min_cell_size,
        comparison,
    }))
}

/// The overview's data (the period shown, with its comparison with the periods before when
/// it is complete), read on one blocking hop and kept per process while the database shows
/// the same data, until the day ends (`Shown`).
fn overview_data(
    state: &State,
    kind: PeriodKind,
    start: Option<NaiveDate>,
    run: Option<i64>,
) -> Result<Arc<(kpis::Overview, Option<PeriodComparison>)>, AppError> {
    type Slot = (String, PeriodKind, Option<NaiveDate>, Option<i64>);
    type Data = Arc<(kpis::Overview, Option<PeriodComparison>)>;
    static SHOWN: LazyLock<Shown<Slot, Data>> = LazyLock::new(Shown::default);
    let db = &state.db;
    SHOWN.get_or_compute(db, (db.url().to_string(), kind, start, run), |now| {
        let o = kpis::overview(db, kind, start, run, now.date())?;
        let compared = match o.shown.as_ref().filter(|p| p.partial.is_none()) {
            Some(p) => Some(crate::app::kpi_compare::compare(db, p.period)?),
            None => None,
        };
        Ok((Arc::new((o, compared)), None))
    })
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
pub struct PeriodQuery {
    /// week, month or quarter (default: the policy's kpi.period).
    period: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Per-segment time series, drawn as SVG on the server (`charts::kpi_history`).

#[derive(Template)]
#[template(path = "kpi/segment.html")]
struct SegmentHtml {
    layout: Layout,
    segment: String,
    /// Which run the segment belongs to, and its state, e.g. "run 4 (published)".
    run: Option<String>,
    period_kind: String,
    charts: Vec<KpiChart>,
    /// Periods left out of the charts because they had not ended: their labels.
    partial: Vec<String>,
    back: String,
    min_cell_size: u32,
}

async fn render_series(
    state: &State,
    user: &CurrentUser,
    key: SeriesKey,
    kind: PeriodKind,
) -> Result<HttpResponse, AppError> {
    let (db, k) = (state.db.clone(), key.clone());
    let min_cell = state.policy.fairness.min_cell_size;
    let (name, series, withheld) = blocking(move || {
        let (name, series) = kpis::series(&db, kind, &k)?;
        let rows: Vec<EvaluationRecord> = series.values().flatten().cloned().collect();
        let withheld = kpis::withheld(&db, &rows, min_cell)?;
        Ok::<_, KpisError>((name, series, withheld))
    })
    .await?;
    if series.is_empty() {
        return Err(AppError::Missing(format!(
            "no KPI evaluations for `{name}`"
        )));
    }
    // A period still filling up would end every line in a cliff: it is left out of the
    // charts, and named under them.
    let mut partial: Vec<String> = Vec::new();
    let charts = Kpi::ALL
        .iter()
        .filter_map(|k| {
            let s: Vec<EvaluationView> = series
                .get(k.name())?
                .iter()
                .map(|r| EvaluationView::of(r, &withheld))
                .collect();
            let complete: Vec<EvaluationView> = s.iter().filter(|v| !v.partial).cloned().collect();
            for v in s.iter().filter(|v| v.partial) {
                let label = format!(
                    "{}, {}",
                    Period::containing(kind, v.period_start)
                        .map(|p| crate::format::period(&p))
                        .unwrap_or_else(|_| format::date(&v.period_start)),
                    v.status_label()
                );
                if !partial.contains(&label) {
                    partial.push(label);
                }
            }
            (!complete.is_empty()).then(|| kpi_history(k, &complete, &state.policy.currency))
        })
        .collect();
    let (run, back) = match &key {
        SeriesKey::Segment { run_id, .. } => {
            let (db, id) = (state.db.clone(), *run_id);
            let status = blocking(move || kpis::run_status(&db, id))
                .await?
                .map(|s| s.to_string())
                .unwrap_or_default();
            (
                Some(format!("run {run_id} ({status})")),
                format!("/kpi?period={}&run={run_id}", kind.as_str()),
            )
        }
        _ => (None, format!("/kpi?period={}", kind.as_str())),
    };
    Ok(render(&SegmentHtml {
        layout: Layout::new(state, Some(user), &format!("KPIs: {name}"), "/kpi"),
        segment: name,
        run,
        period_kind: kind.as_str().into(),
        charts,
        partial,
        back,
        min_cell_size: state.policy.fairness.min_cell_size,
    }))
}

/// `all`, or a segment of the published run by its current name (an old link): the series
/// belongs to the run and the segment's number, so a name is looked up, never keyed on.
pub async fn segment_page(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    q: web::Query<PeriodQuery>,
) -> Result<HttpResponse, AppError> {
    let segment = path.into_inner();
    let kind = kind_of(&state, q.period.as_deref())?;
    if segment == ALL_SEGMENT {
        return render_series(&state, &user, SeriesKey::All, kind).await;
    }
    let (db, name) = (state.db.clone(), segment.clone());
    let found = blocking(move || kpis::published_segment(&db, &name)).await?;
    match found {
        Some((run_id, number)) => Ok(see_other(&series_href(
            &SeriesKey::Segment { run_id, number },
            kind,
        ))),
        None => Err(AppError::Missing(format!(
            "no KPI evaluations for segment `{segment}`"
        ))),
    }
}

/// One segment of one run: its history, whatever it was called when each period was
/// evaluated.
pub async fn run_segment_page(
    state: State,
    user: CurrentUser,
    path: web::Path<(i64, i32)>,
    q: web::Query<PeriodQuery>,
) -> Result<HttpResponse, AppError> {
    let (run_id, number) = path.into_inner();
    let kind = kind_of(&state, q.period.as_deref())?;
    render_series(&state, &user, SeriesKey::Segment { run_id, number }, kind).await
}

// ---------------------------------------------------------------------------------------------
// The log, as JSON or CSV.

#[derive(Deserialize, Default, utoipa::IntoParams)]
pub struct LogQuery {
    /// week, month or quarter.
    period: Option<String>,
    /// `all` or a segment name.
    segment: Option<String>,
    /// A segmentation run: its segments' rows only.
    run_id: Option<i64>,
    /// A segment's number within `run_id`: that series only, whatever its label.
    segment_number: Option<i32>,
    /// A KPI name.
    kpi: Option<String>,
    /// Periods starting on or after this day (YYYY-MM-DD).
    from: Option<String>,
    /// Periods starting on or before this day (YYYY-MM-DD).
    to: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

fn filter_of(q: &LogQuery) -> Result<LogFilter, AppError> {
    let text = |s: &Option<String>| {
        s.as_ref()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let period_kind = match text(&q.period) {
        Some(p) => Some(PeriodKind::parse(&p).map_err(|_| {
            AppError::invalid(
                "period",
                format!("`{p}` is not a period kind: use week, month or quarter"),
            )
        })?),
        None => None,
    };
    let kpi = match text(&q.kpi) {
        Some(k) => Some(
            Kpi::parse(&k).map_err(|_| AppError::invalid("kpi", format!("`{k}` is not a KPI")))?,
        ),
        None => None,
    };
    Ok(LogFilter {
        period_kind,
        segment: text(&q.segment),
        run_id: q.run_id,
        segment_number: q.segment_number,
        kpi,
        from: parse_day("from", q.from.as_deref())?,
        to: parse_day("to", q.to.as_deref())?,
    })
}

const CSV_HEADER: [&str; 23] = [
    "id",
    "kpi",
    "definition_version",
    "policy_version",
    "run_id",
    "segment",
    "period_kind",
    "period_start",
    "period_end",
    "value",
    "suppressed",
    "undefined_reason",
    "target",
    "alert_threshold",
    "status",
    "evaluated_at",
    "evaluated_by",
    "segment_number",
    "partial",
    "days_covered",
    "days_in_period",
    "evaluated_on",
    "schedule_claim",
];

fn csv_of(views: &[EvaluationView]) -> Result<HttpResponse, AppError> {
    let mut w = crate::spreadsheet::Writer::from_writer(Vec::new());
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    w.write_record(CSV_HEADER).map_err(AppError::internal)?;
    for v in views {
        w.write_record([
            v.id.to_string(),
            v.kpi.clone(),
            v.definition_version.clone(),
            v.policy_version.clone(),
            v.run_id.map(|r| r.to_string()).unwrap_or_default(),
            v.segment.clone(),
            v.period_kind.clone(),
            v.period_start.to_string(),
            v.period_end.to_string(),
            opt(v.value),
            v.suppressed.to_string(),
            v.undefined_reason.clone().unwrap_or_default(),
            opt(v.target),
            opt(v.alert_threshold),
            v.status.clone(),
            v.evaluated_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            v.evaluated_by.clone(),
            v.segment_number.map(|n| n.to_string()).unwrap_or_default(),
            v.partial.to_string(),
            v.days_covered.to_string(),
            v.days_in_period.to_string(),
            v.evaluated_on.clone().unwrap_or_default(),
            v.schedule_claim.map(|c| c.to_string()).unwrap_or_default(),
        ])
        .map_err(AppError::internal)?;
    }
    let bytes = w.into_inner().map_err(AppError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"kpi-evaluations.csv\"",
        ))
        .body(bytes))
}

async fn load_log(state: &State, q: &LogQuery) -> Result<Vec<EvaluationView>, AppError> {
    let filter = filter_of(q)?;
    let db = state.db.clone();
    let min_cell = state.policy.fairness.min_cell_size;
    let (rows, withheld) = blocking(move || {
        let rows = kpis::log(&db, &filter)?;
        let withheld = kpis::withheld(&db, &rows, min_cell)?;
        Ok::<_, KpisError>((rows, withheld))
    })
    .await?;
    Ok(EvaluationView::all(&rows, &withheld))
}

pub async fn log_csv(state: State, q: web::Query<LogQuery>) -> Result<HttpResponse, AppError> {
    csv_of(&load_log(&state, &q).await?)
}

/// The KPI evaluation log, oldest first (append-only: a re-evaluation adds rows). Figures
/// resting on fewer customers than the policy's minimum cell size have `value: null` and
/// status `suppressed`.
#[utoipa::path(get, path = "/api/v1/kpi/evaluations", tag = "kpi",
    params(LogQuery),
    responses(
        (status = 200, description = "The evaluations (JSON list, or CSV with format=csv)", body = [EvaluationView]),
        (status = 400, description = "A bad filter", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn evaluations_api(
    state: State,
    q: web::Query<LogQuery>,
) -> Result<HttpResponse, AppError> {
    let views = load_log(&state, &q).await?;
    match q.format.as_deref().map(str::trim) {
        None | Some("") | Some("json") => Ok(HttpResponse::Ok().json(views)),
        Some("csv") => csv_of(&views),
        Some(other) => Err(AppError::invalid(
            "format",
            format!("`{other}` is not a format: use json or csv"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluating on demand.

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct EvaluateRequest {
    /// Evaluate the period containing this day (YYYY-MM-DD; default today).
    as_of: Option<String>,
    /// week, month or quarter (default: the policy's kpi.period).
    period: Option<String>,
    /// Back-fill from the period containing this day ...
    from: Option<String>,
    /// ... to the period containing this day.
    to: Option<String>,
}

fn periods_of(state: &State, r: &EvaluateRequest) -> Result<Vec<Period>, AppError> {
    let kind = kind_of(state, r.period.as_deref())?;
    let from = parse_day("from", r.from.as_deref())?;
    let to = parse_day("to", r.to.as_deref())?;
    let as_of = parse_day("as_of", r.as_of.as_deref())?;
    // The log only grows: a period that has not come yet must not be written into it.
    let today = crate::db::now().date();
    for (field, day) in [("as_of", as_of), ("to", to)] {
        if let Some(day) = day {
            crate::segmentation::settings::check_as_of(day, today)
                .map_err(|e| AppError::invalid(field, e.to_string()))?;
        }
    }
    let periods = match (from, to) {
        (Some(from), Some(to)) => {
            if as_of.is_some() {
                return Err(AppError::invalid(
                    "as_of",
                    "give either as_of or from and to, not both",
                ));
            }
            Period::between(kind, from, to).map_err(KpisError::from)?
        }
        (None, None) => vec![
            Period::containing(kind, as_of.unwrap_or_else(|| crate::db::now().date()))
                .map_err(KpisError::from)?,
        ],
        (Some(_), None) => return Err(AppError::invalid("to", "from needs to")),
        (None, Some(_)) => return Err(AppError::invalid("from", "to needs from")),
    };
    if periods.len() > 520 {
        return Err(AppError::invalid(
            "from",
            format!(
                "{} periods requested; back-fill at most 520 at a time",
                periods.len()
            ),
        ));
    }
    Ok(periods)
}

async fn run_evaluation(
    state: &State,
    user: &CurrentUser,
    periods: Vec<Period>,
) -> Result<Vec<EvaluationView>, AppError> {
    let (db, policy, actor) = (
        state.db.clone(),
        state.policy.clone(),
        Actor::user(&user.email),
    );
    let rows = blocking(move || kpis::evaluate(&db, &policy, &actor, &periods)).await?;
    // An evaluation appends every segment of each period at once: its groups are whole.
    let withheld = Withheld::among(&rows, state.policy.fairness.min_cell_size);
    Ok(EvaluationView::all(&rows, &withheld))
}

/// Evaluate every KPI for `all` and each segment of the published segmentation, for one
/// period or every period of a range, and append the results to the log.
#[utoipa::path(post, path = "/api/v1/kpi/evaluate", tag = "kpi",
    request_body = EvaluateRequest,
    responses(
        (status = 201, description = "The rows appended", body = [EvaluationView]),
        (status = 400, description = "A bad date or period", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn evaluate_api(
    state: State,
    user: CurrentUser,
    body: Option<web::Json<EvaluateRequest>>,
) -> Result<HttpResponse, AppError> {
    let request = body.map(web::Json::into_inner).unwrap_or_default();
    let periods = periods_of(&state, &request)?;
    let views = run_evaluation(&state, &user, periods).await?;
    Ok(HttpResponse::Created().json(views))
}

#[derive(Deserialize)]
pub struct EvaluateForm {
    period: Option<String>,
    as_of: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

pub async fn evaluate_submit(
    state: State,
    user: CurrentUser,
    form: web::Form<EvaluateForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let periods = periods_of(
        &state,
        &EvaluateRequest {
            as_of: form.as_of,
            period: form.period.clone(),
            from: form.from,
            to: form.to,
        },
    )?;
    let shown = periods.last().map(Period::start);
    run_evaluation(&state, &user, periods).await?;
    let kind = kind_of(&state, form.period.as_deref())?;
    // Back to the period just evaluated: asking for a period that has not ended is how one
    // sees it, labelled partial.
    Ok(see_other(&match shown {
        Some(start) => format!("/kpi?period={}&start={start}", kind.as_str()),
        None => format!("/kpi?period={}", kind.as_str()),
    }))
}

// ---------------------------------------------------------------------------------------------
// Drift, alerts and the re-segmentation signal.

#[derive(Template)]
#[template(path = "kpi/drift.html")]
struct DriftHtml {
    layout: Layout,
    report: DriftReport,
    can_rerun: bool,
    /// Whether the run's own page opens for this user (analysts); others see the run named,
    /// not a link that answers 403.
    can_open_run: bool,
}

async fn drift_report(state: &State) -> Result<DriftReport, AppError> {
    let (db, policy) = (state.db.clone(), state.policy.clone());
    let drift = blocking(move || kpis::drift(&db, &policy)).await?;
    Ok(DriftReport::of(drift, &state.policy))
}

pub async fn drift_page(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let report = drift_report(&state).await?;
    Ok(render(&DriftHtml {
        layout: Layout::new(&state, Some(&user), "Drift and alerts", "/kpi/drift"),
        can_rerun: user.can(Permission::SegmentsRun) && report.run_id.is_some(),
        can_open_run: user.can(Permission::SegmentsRun),
        report,
    }))
}

/// Drift of each feature of the published segmentation (PSI and two-sample KS between the
/// population at segmentation time and the consented population now), the shift in segment
/// sizes, the alerts, and whether re-segmenting is recommended, with the reasons.
#[utoipa::path(get, path = "/api/v1/kpi/drift", tag = "kpi",
    responses((status = 200, description = "The drift report", body = DriftReport)),
    security(("bearer" = [])))]
pub async fn drift_api(state: State) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(drift_report(&state).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RerunResponse {
    /// The new run (queued; it executes in the background).
    run_id: i64,
    /// The run whose settings were used.
    settings_of: i64,
    /// Where the new run, its audit and its comparison with the published run are shown.
    location: String,
}

async fn start_rerun(state: &State, user: &CurrentUser, run_id: i64) -> Result<i64, AppError> {
    let (db, policy, actor) = (
        state.db.clone(),
        state.policy.clone(),
        Actor::user(&user.email),
    );
    let id = blocking(move || kpis::rerun(&db, &policy, &actor, run_id)).await?;
    state.jobs.submit(id);
    Ok(id)
}

/// Start a new segmentation run with the same settings as run `id` (its behavioural
/// features computed as of now); it is queued and runs in the background.
#[utoipa::path(post, path = "/api/v1/segmentations/{id}/rerun", tag = "kpi",
    params(("id" = i64, Path, description = "The run whose settings to reuse")),
    responses(
        (status = 202, description = "The new run was queued", body = RerunResponse),
        (status = 404, description = "No such run", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn rerun_api(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let from = path.into_inner();
    let id = start_rerun(&state, &user, from).await?;
    Ok(HttpResponse::Accepted().json(RerunResponse {
        run_id: id,
        settings_of: from,
        location: format!("/segmentations/{id}"),
    }))
}

#[derive(Deserialize)]
pub struct RerunForm {
    run_id: i64,
}

pub async fn rerun_submit(
    state: State,
    user: CurrentUser,
    form: web::Form<RerunForm>,
) -> Result<HttpResponse, AppError> {
    let id = start_rerun(&state, &user, form.run_id).await?;
    Ok(see_other(&format!("/segmentations/{id}")))
}

/// A KPI value for people, in the policy's currency: withheld, not enough data, or the figure.
pub(super) fn kpi_shown(v: &EvaluationView, currency: &Currency) -> String {
    match (v.suppressed, v.value) {
        (true, _) => "withheld".into(),
        (false, None) => "–".into(),
        (false, Some(x)) => format::kpi_value(&v.kpi, x, currency),
    }
}

/// A status in words from the label table; a partial period says how much of it is covered.
pub(super) fn status_words(v: &EvaluationView) -> String {
    if v.status == PARTIAL {
        v.status_label()
    } else {
        format::label_lower(&v.status)
    }
}
