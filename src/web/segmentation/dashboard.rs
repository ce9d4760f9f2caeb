//! Marketing's dashboard of the published segmentation (overview table, segment cards, map)
//! and its forms: strategy, rename, activation export.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use super::map::{PALETTE, drawn_map};
use super::{AppError, State, fmt_opt, pct, read_members, reader, record_strategy, rename};
use crate::app::activation;
use crate::app::kept::Shown;
use crate::app::kpis::SegmentTrend;
use crate::app::runs::{self as app, Reader, RunView, Strategy, StrategyView};
use crate::auth::CurrentUser;
use crate::policy::Permission;
use crate::policy::Policy;
use crate::web::error::blocking;
use crate::web::format;
use crate::web::layout::{Layout, render, see_other};
use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};

/// A segment card's figures, formatted for the page.
#[derive(Clone)]
pub(super) struct SegmentCard {
    pub(super) segment: i32,
    pub(super) name: String,
    pub(super) proposed_name: String,
    pub(super) size_display: String,
    pub(super) share: String,
    pub(super) suppressed: bool,
    pub(super) colour: &'static str,
    /// The distinguishing features: (feature, "segment vs population (lift)").
    pub(super) top: Vec<(String, String)>,
    /// (label, figure).
    pub(super) valuation: Vec<(String, String)>,
    /// (criterion, pass, figure, explanation).
    pub(super) viability: Vec<(&'static str, bool, String, String)>,
    pub(super) stance: String,
    pub(super) priority: String,
    pub(super) strategy: Option<StrategyView>,
    /// Size and revenue over the KPI log's complete periods (empty until two are logged).
    pub(super) trend: Vec<crate::web::charts::Sparkline>,
}

fn describe_feature(f: &crate::segmentation::profile::FeatureProfile) -> String {
    use crate::segmentation::profile::FeatureSummary;
    match &f.summary {
        FeatureSummary::Numeric {
            segment_mean,
            population_mean,
            lift,
        } => format!(
            "mean {} vs {:.2} overall (lift {})",
            fmt_opt(segment_mean, 2),
            population_mean,
            fmt_opt(lift, 2)
        ),
        FeatureSummary::Categorical {
            category,
            segment_share,
            population_share,
            lift,
            ..
        } => format!(
            "{category}: {} vs {:.1}% overall (lift {})",
            pct(segment_share),
            population_share * 100.0,
            fmt_opt(lift, 2)
        ),
    }
}

/// The card's retention: a figure that rests on too few members active in the earlier
/// window is not meaningful, and a retention of 100 % says what it means.
fn retention_figure(v: &crate::segmentation::valuation::Valuation, min_cell: u64) -> String {
    match (v.retention, v.retention_basis) {
        (Some(_), Some(basis)) if basis < min_cell => {
            format!("not meaningful: fewer than {min_cell} members bought in the earlier window")
        }
        (Some(r), _) if r >= 1.0 => {
            "100% (all who bought in the earlier window bought again)".into()
        }
        (r, _) => pct(&r),
    }
}

pub(super) fn cards(view: &RunView, policy: &crate::policy::Policy) -> Vec<SegmentCard> {
    let cur = &policy.currency;
    let money = |v: f64| format::money(v, cur);
    let window = policy.segmentation.valuation_window_days;
    let min_cell = u64::from(policy.fairness.min_cell_size);
    view.segments
        .iter()
        .map(|s| {
            let top = s
                .profile
                .as_ref()
                .map(|p| {
                    p.top_features
                        .iter()
                        .filter_map(|name| p.features.iter().find(|f| &f.feature == name))
                        .map(|f| (format::label(&f.feature), describe_feature(f)))
                        .collect()
                })
                .unwrap_or_default();
            let (valuation, viability, stance, priority) = match &s.valuation {
                Some(v) => (
                    vec![
                        ("Revenue to date".into(), money(v.revenue)),
                        ("Orders".into(), format::int(v.orders)),
                        (
                            "Average order value".into(),
                            format::money_opt(v.average_order_value, cur),
                        ),
                        (
                            "Orders per customer".into(),
                            format!("{:.2}", v.purchase_frequency),
                        ),
                        (growth_label(window), pct(&v.revenue_growth)),
                        (
                            format!("Retention ({window}-day windows)"),
                            retention_figure(v, min_cell),
                        ),
                        (
                            format!("Lifetime value per customer (valuation, {window}-day window)"),
                            money(v.lifetime_value),
                        ),
                        ("Cost to serve (a year)".into(), money(v.cost_to_serve)),
                        ("Contribution (a year)".into(), money(v.contribution)),
                    ],
                    [
                        ("Measurable", &v.viability.measurable),
                        ("Accessible", &v.viability.accessible),
                        ("Substantial", &v.viability.substantial),
                        ("Actionable", &v.viability.actionable),
                    ]
                    .into_iter()
                    .map(|(label, c)| {
                        let figure = match (label, c.value) {
                            (_, None) => "–".to_owned(),
                            ("Accessible", Some(x)) => format!(
                                "{:.0}% reachable (at least {:.0}%)",
                                x * 100.0,
                                c.threshold * 100.0
                            ),
                            ("Actionable", Some(x)) => {
                                format!("distance {x:.2} (at least {:.2})", c.threshold)
                            }
                            (_, Some(x)) => format!(
                                "{} members (at least {})",
                                format::count(x),
                                format::count(c.threshold)
                            ),
                        };
                        (label, c.pass, figure, c.explanation.clone())
                    })
                    .collect(),
                    v.stance.as_str().to_owned(),
                    v.priority.to_string(),
                ),
                None => (Vec::new(), Vec::new(), String::new(), String::new()),
            };
            SegmentCard {
                segment: s.segment,
                name: s.name.clone(),
                proposed_name: s.proposed_name.clone(),
                size_display: s.size_display.clone(),
                share: pct(&s.share),
                suppressed: s.suppressed,
                colour: PALETTE[s.segment as usize % PALETTE.len()],
                top,
                valuation,
                viability,
                stance,
                priority,
                strategy: s.strategy.clone(),
                trend: Vec::new(),
            }
        })
        .collect()
}

/// One line of the segments' overview table, with the figures it sorts by.
pub struct OverviewRow {
    segment: i32,
    name: String,
    colour: &'static str,
    size: String,
    share: String,
    /// (compact, full) revenue.
    revenue: (String, String),
    growth: String,
    clv: String,
    stance: String,
    viability: String,
    keys: [f64; 5],
}

/// The columns the overview sorts by: (query value, heading), named as on the segment cards.
const OVERVIEW_SORTS: [(&str, &str); 5] = [
    ("size", "Members"),
    ("revenue", "Revenue to date"),
    ("growth", "Revenue growth"),
    ("clv", "Lifetime value per customer"),
    ("priority", "Priority"),
];

/// What the revenue growth compares: the valuation window's revenue with the window's before
/// it, which is "year on year" only for the default 365-day window.
fn growth_label(window: u32) -> String {
    if window == 365 {
        "Revenue growth (year on year)".into()
    } else {
        format!("Revenue growth (last {window} days on the {window} before)")
    }
}

/// The overview's note on the growth column, for any window.
fn growth_caption(window: u32) -> String {
    format!("Revenue growth compares the last {window} days' revenue with the {window} days before")
}

fn overview(view: &RunView, policy: &crate::policy::Policy, sort: &str) -> Vec<OverviewRow> {
    let cur = &policy.currency;
    let mut rows: Vec<OverviewRow> = view
        .segments
        .iter()
        .map(|s| {
            let v = s.valuation.as_ref().filter(|_| !s.suppressed);
            let passes = v.map(|v| {
                [
                    &v.viability.measurable,
                    &v.viability.accessible,
                    &v.viability.substantial,
                    &v.viability.actionable,
                ]
                .iter()
                .filter(|c| c.pass)
                .count()
            });
            OverviewRow {
                segment: s.segment,
                name: s.name.clone(),
                colour: PALETTE[s.segment as usize % PALETTE.len()],
                size: s.size.map_or_else(|| s.size_display.clone(), format::int),
                share: if s.suppressed {
                    "–".into()
                } else {
                    pct(&s.share)
                },
                revenue: v.map_or_else(
                    || ("–".into(), String::new()),
                    |v| {
                        (
                            format::money_compact(v.revenue, cur),
                            format::money(v.revenue, cur),
                        )
                    },
                ),
                growth: v.map_or_else(|| "–".into(), |v| pct(&v.revenue_growth)),
                clv: v.map_or_else(|| "–".into(), |v| format::money(v.lifetime_value, cur)),
                stance: v.map_or_else(String::new, |v| format::label(v.stance.as_str())),
                viability: passes.map_or_else(|| "–".into(), |n| format!("{n} of 4 criteria")),
                keys: [
                    s.size.unwrap_or(0) as f64,
                    v.map_or(f64::NEG_INFINITY, |v| v.revenue),
                    v.and_then(|v| v.revenue_growth)
                        .unwrap_or(f64::NEG_INFINITY),
                    v.map_or(f64::NEG_INFINITY, |v| v.lifetime_value),
                    v.map_or(f64::NEG_INFINITY, |v| -(v.priority as f64)),
                ],
            }
        })
        .collect();
    if let Some(i) = OVERVIEW_SORTS.iter().position(|(k, _)| *k == sort) {
        rows.sort_by(|a, b| {
            b.keys[i]
                .total_cmp(&a.keys[i])
                .then(a.segment.cmp(&b.segment))
        });
    }
    rows
}

#[derive(Deserialize)]
pub struct DashboardQuery {
    sort: Option<String>,
}

#[derive(Template)]
#[template(path = "segments/dashboard.html")]
struct DashboardPage {
    layout: Layout,
    overview: Vec<OverviewRow>,
    sort: String,
    sorts: [(&'static str, &'static str); 5],
    /// What the revenue growth column compares.
    growth_words: String,
    run: Option<RunView>,
    cards: Vec<SegmentCard>,
    map: Option<String>,
    can_strategy: bool,
    can_members: bool,
    /// Per segment: the activation export links (channel, "Email: 498 of 844 reachable").
    exports: Vec<Vec<(String, String)>>,
}

impl DashboardPage {
    /// A segment's export links.
    fn exports_of(&self, segment: &i32) -> &[(String, String)] {
        usize::try_from(*segment)
            .ok()
            .and_then(|s| self.exports.get(s))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// What the dashboard shows of the database to one kind of reader: the published run, its
/// map, its cards with their trends, and (for those who may export members) each segment's
/// export links.
#[derive(Clone, Default)]
struct DashboardData {
    run: Option<RunView>,
    map: Option<String>,
    cards: Vec<SegmentCard>,
    exports: Vec<Vec<(String, String)>>,
}

/// Marketing's dashboard: the published segmentation.
pub async fn dashboard(
    state: State,
    user: CurrentUser,
    query: web::Query<DashboardQuery>,
) -> Result<HttpResponse, AppError> {
    let sort = query
        .sort
        .clone()
        .filter(|s| OVERVIEW_SORTS.iter().any(|(k, _)| k == s))
        .unwrap_or_else(|| "size".into());
    let data = {
        let state = state.clone();
        let (reader, can_export) = (reader(&user), user.can(Permission::SegmentsMembers));
        blocking(move || dashboard_data(&state, reader, can_export)).await?
    };
    Ok(render(&DashboardPage {
        layout: Layout::new(&state, Some(&user), "Segments", "/segments"),
        overview: data
            .run
            .as_ref()
            .map(|r| overview(r, &state.policy, &sort))
            .unwrap_or_default(),
        sort,
        sorts: OVERVIEW_SORTS,
        growth_words: growth_caption(state.policy.segmentation.valuation_window_days),
        cards: data.cards.clone(),
        run: data.run.clone(),
        map: data.map.clone(),
        can_strategy: user.can(Permission::SegmentsStrategy),
        can_members: user.can(Permission::SegmentsMembers),
        exports: data.exports.clone(),
    }))
}

/// The dashboard's data, read on one blocking hop and kept per process while the database
/// shows the same data and no consent grant behind the live sizes and reach has lapsed
/// (`Shown`): between two writes a view costs the database one statement.
fn dashboard_data(
    state: &State,
    reader: Reader,
    can_export: bool,
) -> Result<Arc<DashboardData>, AppError> {
    type Slot = (String, Reader, bool);
    static SHOWN: LazyLock<Shown<Slot, Arc<DashboardData>>> = LazyLock::new(Shown::default);
    let (db, policy) = (&state.db, &state.policy);
    SHOWN.get_or_compute(db, (db.url().to_string(), reader, can_export), |now| {
        let changes_at = db.read(|conn| activation::changes_after(conn, policy, now))?;
        let Some(id) = app::published_id(db)? else {
            return Ok((Arc::new(DashboardData::default()), changes_at));
        };
        let (view, row) = app::view(db, policy, reader, id)?
            .ok_or_else(|| AppError::Missing(format!("there is no run {id}")))?;
        let map = drawn_map(db, &view, &row)?;
        let exports = if can_export {
            export_links(
                &activation::reach(db, policy, id, view.segments.len())?,
                policy,
            )
        } else {
            Vec::new()
        };
        let trends = crate::app::kpis::segment_trends(db, policy, id)?;
        let cards = with_trends(cards(&view, policy), &trends, policy)?;
        let data = DashboardData {
            run: Some(view),
            map,
            cards,
            exports,
        };
        Ok((Arc::new(data), changes_at))
    })
}

/// The cards with each segment's size and revenue over the KPI log, as sparklines.
fn with_trends(
    mut cards: Vec<SegmentCard>,
    trends: &BTreeMap<i32, SegmentTrend>,
    policy: &Policy,
) -> Result<Vec<SegmentCard>, AppError> {
    let kind = crate::app::kpis::policy_kind(policy)?;
    let name = |start| {
        crate::kpi::Period::containing(kind, start)
            .map(|p| format::period(&p))
            .unwrap_or_else(|_| format::date(&start))
    };
    let currency = &policy.currency;
    for card in cards.iter_mut().filter(|c| !c.suppressed) {
        let Some(t) = trends.get(&card.segment) else {
            continue;
        };
        card.trend = [
            crate::web::charts::sparkline("Members", &t.periods, &t.size, format::count, name),
            crate::web::charts::sparkline(
                "Revenue",
                &t.periods,
                &t.revenue,
                |v| format::money_compact(v, currency),
                name,
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
    }
    Ok(cards)
}

/// Per segment, each channel's export link text with how many members it holds now.
fn export_links(reach: &activation::Reach, policy: &Policy) -> Vec<Vec<(String, String)>> {
    let min = policy.fairness.min_cell_size as u64;
    let n_segments = reach.values().map(Vec::len).max().unwrap_or(0);
    (0..n_segments)
        .map(|s| {
            reach
                .iter()
                .map(|(channel, counts)| {
                    let (members, reachable) = counts[s];
                    (
                        channel.clone(),
                        crate::format::reach(channel, reachable, members, min),
                    )
                })
                .collect()
        })
        .collect()
}

#[derive(Deserialize)]
pub struct StrategyForm {
    channel: String,
    offer: String,
    service_level: String,
    favourable: Option<String>,
}

pub async fn strategy_submit(
    state: State,
    user: CurrentUser,
    path: web::Path<(i64, i32)>,
    form: web::Form<StrategyForm>,
) -> Result<HttpResponse, AppError> {
    let (run, segment) = path.into_inner();
    let form = form.into_inner();
    record_strategy(
        &state,
        &user,
        run,
        segment,
        Strategy {
            channel: form.channel,
            offer: form.offer,
            service_level: form.service_level,
            favourable: form.favourable.is_some(),
        },
    )
    .await?;
    Ok(see_other(&format!("/segments#segment-{segment}")))
}

#[derive(Deserialize)]
pub struct RenameForm {
    name: String,
    /// Where to go back to.
    back: Option<String>,
}

pub async fn rename_submit(
    state: State,
    user: CurrentUser,
    path: web::Path<(i64, i32)>,
    form: web::Form<RenameForm>,
) -> Result<HttpResponse, AppError> {
    let (run, segment) = path.into_inner();
    let form = form.into_inner();
    rename(&state, &user, run, segment, form.name).await?;
    let back = match form.back.as_deref() {
        Some("run") => format!("/segmentations/{run}"),
        _ => format!("/segments#segment-{segment}"),
    };
    Ok(see_other(&back))
}

#[derive(Deserialize)]
pub struct ExportQuery {
    channel: String,
}

/// Activation export of one segment of the published run, for a channel.
pub async fn export_csv(
    state: State,
    user: CurrentUser,
    path: web::Path<(i64, i32)>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, AppError> {
    let (run, segment) = path.into_inner();
    let members = read_members(
        &state,
        &user,
        run,
        Some(segment),
        Some(query.channel.clone()),
    )
    .await?;
    let db = state.db.clone();
    let names = blocking(move || activation::segment_names(&db, run)).await?;
    // The segment's name beside its number, for the people who load the file.
    let mut out = crate::spreadsheet::Writer::from_writer(Vec::new());
    out.write_record(["customer_id", "segment", "segment_name"])
        .map_err(AppError::internal)?;
    for (id, s) in &members {
        let name = names.get(s).map(String::as_str).unwrap_or_default();
        out.write_record([id.as_str(), &s.to_string(), name])
            .map_err(AppError::internal)?;
    }
    let body = out.into_inner().map_err(AppError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(format!(
                "run-{run}-segment-{segment}-{}.csv",
                query.channel
            ))],
        })
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::growth_label;

    #[test]
    fn revenue_growth_says_which_windows_it_compares() {
        assert_eq!(growth_label(365), "Revenue growth (year on year)");
        assert_eq!(
            growth_label(90),
            "Revenue growth (last 90 days on the 90 before)"
        );
    }
}
