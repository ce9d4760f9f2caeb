//! Segmentation in the browser and the API: runs (analysts: start, follow, compare), the
//! published segments' dashboard (marketing: profiles, map, valuation, viability, strategy),
//! member lists and activation exports (individual-level data: permission and trail).

use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};

use super::error::{AppError, blocking};
use super::format;
use super::layout::{Layout, State, render, see_other};
use crate::auth::CurrentUser;
use crate::db::segmentation::{self as store, PUBLISHED, RETIRED, RunRow, StrategyRow};
use crate::fairness::suppression::Suppression;
use crate::policy::Permission;
use crate::segmentation::pipeline::{self, RunError};
use crate::segmentation::report::{self, RunView};
use crate::segmentation::settings::RunRequest;
use crate::segmentation::{matching, members};
use crate::trail::{Actor, NewEntry};

impl From<RunError> for AppError {
    fn from(e: RunError) -> AppError {
        match e {
            RunError::Settings(s) => AppError::invalid(s.field(), s.to_string()),
            RunError::Segmentation(s) => AppError::InvalidInput {
                field: None,
                message: s.to_string(),
            },
            RunError::NotFound(id) => AppError::Missing(format!("there is no run {id}")),
            e @ RunError::WrongState { .. } => AppError::Conflict(e.to_string()),
            e @ (RunError::NoConsentedCustomers { .. } | RunError::TooFewSegments { .. }) => {
                AppError::Conflict(e.to_string())
            }
            e @ (RunError::Corrupt { .. } | RunError::CorruptCustomer(_)) => AppError::internal(e),
            RunError::Db(db) => db.into(),
        }
    }
}

/// Whether the user may see a run: drafts and failed runs are for those who run
/// segmentations; everyone with `segments:read` sees published (and retired) runs.
fn visible(user: &CurrentUser, run: &RunRow) -> bool {
    user.can(Permission::SegmentsRun) || run.status == PUBLISHED || run.status == RETIRED
}

/// What a write to a run's segments changes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    /// Channel, offer, service level and the `favourable` flag the four-fifths rule reads.
    Strategy,
    Name,
}

/// Whether the user may change a run's segments: a run they cannot read does not exist for
/// them (404, as on reading); strategies apply to the published run only, so a `favourable`
/// flag never reaches the audit of a draft before publication; names may change on any run
/// the user can read that is not retired (retired runs are history).
fn writable(
    user: &CurrentUser,
    run: Option<&RunRow>,
    run_id: i64,
    write: Write,
) -> Result<(), AppError> {
    let Some(run) = run.filter(|r| visible(user, r)) else {
        return Err(AppError::Missing(format!("there is no run {run_id}")));
    };
    match write {
        Write::Strategy if run.status != PUBLISHED => Err(AppError::Conflict(format!(
            "run {run_id} is {}: strategies are recorded for the published run only",
            run.status
        ))),
        Write::Name if run.status == RETIRED => Err(AppError::Conflict(format!(
            "run {run_id} is retired: its segments can no longer be renamed"
        ))),
        _ => Ok(()),
    }
}

async fn load_run(state: &State, user: &CurrentUser, id: i64) -> Result<RunView, AppError> {
    let (db, policy) = (state.db.clone(), state.policy.clone());
    let found = blocking(move || -> Result<_, RunError> {
        let mut conn = db.conn()?;
        let Some(run) = store::run(&mut conn, id)? else {
            return Ok(None);
        };
        let segments = store::segments(&mut conn, id)?;
        let strategies = store::strategies(&mut conn, id)?;
        // Published memberships shrink at once when someone withdraws consent.
        let sizes = if run.status == PUBLISHED {
            Some(pipeline::live_sizes(
                &mut conn,
                &policy,
                id,
                segments.len(),
            )?)
        } else {
            None
        };
        Ok(Some((run, segments, strategies, sizes)))
    })
    .await?;
    let Some((run, segments, strategies, sizes)) = found else {
        return Err(AppError::Missing(format!("there is no run {id}")));
    };
    if !visible(user, &run) {
        return Err(AppError::Missing(format!("there is no run {id}")));
    }
    Ok(report::view(
        &run,
        &segments,
        &strategies,
        u64::from(state.policy.fairness.min_cell_size),
        sizes.as_deref(),
    ))
}

async fn published_id(state: &State) -> Result<Option<i64>, AppError> {
    let db = state.db.clone();
    Ok(blocking(move || db.read(store::published))
        .await?
        .map(|r| r.id))
}

async fn start_run(
    state: &State,
    user: &CurrentUser,
    request: RunRequest,
) -> Result<i64, AppError> {
    let (db, policy) = (state.db.clone(), state.policy.clone());
    let actor = Actor::user(&user.email);
    let id = blocking(move || pipeline::create(&db, &policy, &actor, &request)).await?;
    state.jobs.submit(id);
    Ok(id)
}

// ----- API -----------------------------------------------------------------------------------

#[derive(Serialize, utoipa::ToSchema)]
pub struct Started {
    run_id: i64,
    status: &'static str,
    /// Poll this for progress and results.
    location: String,
}

/// Start a segmentation run in the background. The population is frozen when the run starts:
/// exactly the customers whose consent for the policy's segmentation purpose is active then.
#[utoipa::path(post, path = "/api/v1/segmentations", tag = "segmentation",
    request_body = RunRequest,
    responses(
        (status = 202, description = "Queued", body = Started),
        (status = 400, description = "Invalid settings, or a protected or proxy feature (named)", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_api(
    state: State,
    user: CurrentUser,
    body: web::Json<RunRequest>,
) -> Result<HttpResponse, AppError> {
    let id = start_run(&state, &user, body.into_inner()).await?;
    let location = format!("/api/v1/segmentations/{id}");
    Ok(HttpResponse::Accepted()
        .insert_header((actix_web::http::header::LOCATION, location.clone()))
        .json(Started {
            run_id: id,
            status: store::QUEUED,
            location,
        }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunList {
    runs: Vec<RunSummaryItem>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunSummaryItem {
    run_id: i64,
    algorithm: String,
    status: String,
    stage: String,
    progress: f64,
    segments: Option<usize>,
    stability_ari: Option<f64>,
    created_by: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::NaiveDateTime,
    error: Option<String>,
    /// Published on a compliance override of a failed or inconclusive audit.
    published_on_override: bool,
}

async fn run_list(state: &State, user: &CurrentUser) -> Result<Vec<RunSummaryItem>, AppError> {
    let db = state.db.clone();
    let (runs, overridden) = blocking(move || {
        db.read(|conn| {
            Ok((
                store::runs(conn, 200)?,
                crate::db::audits::runs_passed_by_override(conn)?,
            ))
        })
    })
    .await?;
    Ok(runs
        .into_iter()
        .filter(|r| visible(user, r))
        .map(|r| RunSummaryItem {
            published_on_override: r.status == PUBLISHED && overridden.contains(&r.id),
            segments: report::summary_of(&r).map(|s| s.k),
            run_id: r.id,
            algorithm: r.algorithm,
            status: r.status,
            stage: r.stage,
            progress: r.progress,
            stability_ari: r.stability_ari,
            created_by: r.created_by,
            created_at: r.created_at,
            error: r.error,
        })
        .collect())
}

/// Runs, newest first (drafts only for roles that run segmentations).
#[utoipa::path(get, path = "/api/v1/segmentations", tag = "segmentation",
    responses((status = 200, description = "The latest 200 runs", body = RunList)),
    security(("bearer" = [])))]
pub async fn list_api(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(RunList {
        runs: run_list(&state, &user).await?,
    }))
}

/// One run: status and progress while it runs; then its population counts, segments with
/// profiles, valuation, viability and strategy, quality scores and per-stage timings.
/// Counts below the policy's minimum cell size are suppressed.
#[utoipa::path(get, path = "/api/v1/segmentations/{id}", tag = "segmentation",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 404, description = "No such run", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_api(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(load_run(&state, &user, path.into_inner()).await?))
}

/// The published segmentation.
#[utoipa::path(get, path = "/api/v1/segmentations/published", tag = "segmentation",
    responses(
        (status = 200, description = "The published run", body = RunView),
        (status = 404, description = "Nothing is published yet", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn published_api(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let id = published_id(&state)
        .await?
        .ok_or_else(|| AppError::Missing("no segmentation is published yet".into()))?;
    Ok(HttpResponse::Ok().json(load_run(&state, &user, id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct MembersQuery {
    /// Only this segment.
    segment: Option<i32>,
    /// `csv` (default) or `json`.
    format: Option<String>,
    /// Activation export: only members whose consent for this channel's purpose is active.
    channel: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Member {
    customer_id: String,
    segment: i32,
}

async fn read_members(
    state: &State,
    user: &CurrentUser,
    run_id: i64,
    query: &MembersQuery,
    channel: Option<String>,
) -> Result<Vec<(String, i32)>, AppError> {
    let (db, policy) = (state.db.clone(), state.policy.clone());
    let actor = Actor::user(&user.email);
    let segment = query.segment;
    // Only published runs are visible to roles that cannot run segmentations.
    if !user.can(Permission::SegmentsRun) {
        let db = state.db.clone();
        let run = blocking(move || db.read(|c| store::run(c, run_id))).await?;
        if !run.as_ref().is_some_and(|r| visible(user, r)) {
            return Err(AppError::Missing(format!("there is no run {run_id}")));
        }
    }
    blocking(move || {
        members::read_members(&db, &policy, &actor, run_id, segment, channel.as_deref())
    })
    .await
}

fn members_response(
    members: Vec<(String, i32)>,
    format: Option<&str>,
    file_name: String,
) -> Result<HttpResponse, AppError> {
    match format.unwrap_or("csv") {
        "json" => Ok(HttpResponse::Ok().json(
            members
                .into_iter()
                .map(|(customer_id, segment)| Member {
                    customer_id,
                    segment,
                })
                .collect::<Vec<_>>(),
        )),
        "csv" => {
            let mut out = crate::spreadsheet::Writer::from_writer(Vec::new());
            out.write_record(["customer_id", "segment"])
                .map_err(AppError::internal)?;
            for (id, segment) in &members {
                out.write_record([id.as_str(), &segment.to_string()])
                    .map_err(AppError::internal)?;
            }
            let body = out.into_inner().map_err(AppError::internal)?;
            Ok(HttpResponse::Ok()
                .content_type("text/csv; charset=utf-8")
                .insert_header(ContentDisposition {
                    disposition: DispositionType::Attachment,
                    parameters: vec![DispositionParam::Filename(file_name)],
                })
                .body(body))
        }
        other => Err(AppError::invalid(
            "format",
            format!("`{other}` is not a format: use csv or json"),
        )),
    }
}

/// A run's members as `customer_id,segment` (CSV, or JSON with `format=json`). Customers who
/// withdrew consent since the run are left out. Every read is in the trail.
#[utoipa::path(get, path = "/api/v1/segmentations/{id}/members", tag = "segmentation",
    params(("id" = i64, Path, description = "Run id"), MembersQuery),
    responses(
        (status = 200, description = "CSV `customer_id,segment`, or JSON", body = Vec<Member>),
        (status = 404, description = "No such run", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn members_api(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
    query: web::Query<MembersQuery>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let members = read_members(&state, &user, id, &query, query.channel.clone()).await?;
    members_response(
        members,
        query.format.as_deref(),
        format!("run-{id}-members.csv"),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct StrategyRequest {
    /// The channel (one of the policy's segmentation channels, or another such as `store`).
    channel: String,
    offer: String,
    service_level: String,
    /// Whether the treatment is favourable to members (a discount, a better service level):
    /// the fairness audit's four-fifths rule looks at favourable segments.
    favourable: bool,
}

async fn record_strategy(
    state: &State,
    user: &CurrentUser,
    run_id: i64,
    segment: i32,
    body: StrategyRequest,
) -> Result<(), AppError> {
    for (field, value) in [
        ("channel", &body.channel),
        ("offer", &body.offer),
        ("service_level", &body.service_level),
    ] {
        if value.trim().is_empty() {
            return Err(AppError::invalid(
                field,
                format!("{field} must not be empty"),
            ));
        }
        if value.len() > 500 {
            return Err(AppError::invalid(
                field,
                format!("{field} is longer than 500 characters"),
            ));
        }
    }
    let (db, version) = (state.db.clone(), state.policy.version.clone());
    let actor = Actor::user(&user.email);
    let who = user.clone();
    blocking(move || -> Result<(), AppError> {
        db.write::<_, crate::db::DbError>(|conn| {
            let run = store::run(conn, run_id)?;
            if let Err(e) = writable(&who, run.as_ref(), run_id, Write::Strategy) {
                return Ok(Err(e));
            }
            let exists = store::segments(conn, run_id)?
                .iter()
                .any(|s| s.segment == segment);
            if !exists {
                return Ok(Err(AppError::Missing(format!(
                    "run {run_id} has no segment {segment}"
                ))));
            }
            let row = StrategyRow {
                run_id,
                segment,
                channel: body.channel.trim().to_owned(),
                offer: body.offer.trim().to_owned(),
                service_level: body.service_level.trim().to_owned(),
                favourable: body.favourable,
                recorded_by: actor.as_str().to_owned(),
                recorded_at: crate::db::now(),
            };
            store::record_strategy(conn, &row)?;
            crate::db::trail::append(
                conn,
                NewEntry::new(
                    &actor,
                    "segment.strategy_recorded",
                    format!("run:{run_id}/segment:{segment}"),
                    serde_json::json!({
                        "channel": row.channel, "offer": row.offer,
                        "service_level": row.service_level, "favourable": row.favourable,
                    }),
                ),
                &version,
            )?;
            Ok(Ok(()))
        })?
    })
    .await
}

/// Record marketing's treatment of a segment: channel, offer, service level, and whether it
/// is favourable.
#[utoipa::path(put, path = "/api/v1/segmentations/{id}/segments/{segment}/strategy", tag = "segmentation",
    params(("id" = i64, Path, description = "Run id"), ("segment" = i32, Path, description = "Segment number")),
    request_body = StrategyRequest,
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "A field is empty or too long", body = super::error::ErrorBody),
        (status = 404, description = "No such segment", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn strategy_api(
    state: State,
    user: CurrentUser,
    path: web::Path<(i64, i32)>,
    body: web::Json<StrategyRequest>,
) -> Result<HttpResponse, AppError> {
    let (run, segment) = path.into_inner();
    record_strategy(&state, &user, run, segment, body.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RenameRequest {
    name: String,
}

async fn rename(
    state: &State,
    user: &CurrentUser,
    run_id: i64,
    segment: i32,
    name: String,
) -> Result<(), AppError> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 80 {
        return Err(AppError::invalid(
            "name",
            "a segment name has 1 to 80 characters",
        ));
    }
    let (db, version) = (state.db.clone(), state.policy.version.clone());
    let actor = Actor::user(&user.email);
    let who = user.clone();
    blocking(move || -> Result<(), AppError> {
        db.write::<_, crate::db::DbError>(|conn| {
            let run = store::run(conn, run_id)?;
            if let Err(e) = writable(&who, run.as_ref(), run_id, Write::Name) {
                return Ok(Err(e));
            }
            if store::rename_segment(conn, run_id, segment, &name)? == 0 {
                return Ok(Err(AppError::Missing(format!(
                    "run {run_id} has no segment {segment}"
                ))));
            }
            crate::db::trail::append(
                conn,
                NewEntry::new(
                    &actor,
                    "segment.renamed",
                    format!("run:{run_id}/segment:{segment}"),
                    serde_json::json!({ "name": name }),
                ),
                &version,
            )?;
            Ok(Ok(()))
        })?
    })
    .await
}

/// Rename a segment (the proposed name stays on record).
#[utoipa::path(patch, path = "/api/v1/segmentations/{id}/segments/{segment}", tag = "segmentation",
    params(("id" = i64, Path, description = "Run id"), ("segment" = i32, Path, description = "Segment number")),
    request_body = RenameRequest,
    responses(
        (status = 204, description = "Renamed"),
        (status = 400, description = "Empty or too long", body = super::error::ErrorBody),
        (status = 404, description = "No such segment", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn rename_api(
    state: State,
    user: CurrentUser,
    path: web::Path<(i64, i32)>,
    body: web::Json<RenameRequest>,
) -> Result<HttpResponse, AppError> {
    let (run, segment) = path.into_inner();
    rename(&state, &user, run, segment, body.into_inner().name).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Two runs compared on the customers both contain.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Comparison {
    a: i64,
    b: i64,
    shared_customers: Option<u64>,
    shared_display: String,
    /// Adjusted Rand index on the shared customers (1 = the same partition).
    adjusted_rand_index: Option<f64>,
    /// Row per segment of `a` (its name, then one cell per segment of `b`): shared members,
    /// suppressed two-way (`<N` below the minimum cell size, `hidden` to protect one).
    crosstab: Vec<(String, Vec<String>)>,
    a_segments: Vec<String>,
    b_segments: Vec<String>,
    /// For each segment of `b`, the segment of `a` whose centre it is matched to (minimum total
    /// centre distance, Hungarian assignment on the profiles' standardised differences over the
    /// features both runs used), and the distance; `null` when left over or not comparable.
    matches: Vec<SegmentMatch>,
    /// Customers who moved from a segment of `a` that is not at risk into an at-risk or
    /// declining segment of `b`, and their lifetime value at their old segment's value per
    /// customer; `null` when that would reveal a suppressed count.
    moved_into_risk: Option<u64>,
    moved_value_into_risk: Option<f64>,
    moved_display: String,
}

/// One segment of the second run and its match in the first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SegmentMatch {
    segment: String,
    matched: Option<String>,
    distance: Option<f64>,
    at_risk: bool,
}

/// Centres (standardised differences per feature, over `features`), proposed names, value per
/// customer and revenue growth of a run's segments, from their stored profiles and valuations.
type SegmentFacts = (Vec<Vec<f64>>, Vec<String>, Vec<f64>, Vec<Option<f64>>);

fn segment_facts(rows: &[store::SegmentRow], features: &[String]) -> SegmentFacts {
    let mut centres = Vec::new();
    let (mut names, mut value, mut growth) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        let profile: Option<crate::segmentation::profile::SegmentProfile> =
            serde_json::from_str(&r.profile).ok();
        centres.push(
            features
                .iter()
                .map(|f| {
                    profile
                        .as_ref()
                        .and_then(|p| p.features.iter().find(|x| &x.feature == f))
                        .map_or(0.0, |x| x.standardised_difference)
                })
                .collect(),
        );
        let v: Option<crate::segmentation::valuation::Valuation> =
            serde_json::from_str(&r.valuation).ok();
        names.push(r.proposed_name.clone());
        value.push(v.as_ref().map_or(0.0, |v| v.lifetime_value));
        growth.push(v.and_then(|v| v.revenue_growth));
    }
    (centres, names, value, growth)
}

fn feature_names(rows: &[store::SegmentRow]) -> Vec<String> {
    rows.first()
        .and_then(|r| {
            serde_json::from_str::<crate::segmentation::profile::SegmentProfile>(&r.profile).ok()
        })
        .map(|p| p.features.into_iter().map(|f| f.feature).collect())
        .unwrap_or_default()
}

async fn compare(state: &State, a: i64, b: i64) -> Result<Comparison, AppError> {
    let db = state.db.clone();
    let min_cell = u64::from(state.policy.fairness.min_cell_size);
    blocking(move || -> Result<Comparison, AppError> {
        let mut conn = db.conn()?;
        let mut names = |id: i64| -> Result<Vec<String>, AppError> {
            if store::run(&mut conn, id)?.is_none() {
                return Err(AppError::Missing(format!("there is no run {id}")));
            }
            Ok(store::segments(&mut conn, id)?
                .into_iter()
                .map(|s| s.name)
                .collect())
        };
        let (a_names, b_names) = (names(a)?, names(b)?);
        let ma = store::memberships(&mut conn, a)?;
        let mb = store::memberships(&mut conn, b)?;
        let mut table = vec![vec![0u64; b_names.len()]; a_names.len()];
        let shared_pairs = pipeline::shared_segments(&ma, &mb);
        for &(sa, sb) in &shared_pairs {
            table[sa][sb] += 1;
        }
        let shared = shared_pairs.len() as u64;
        let shown = published_crosstab(&table, min_cell);
        let (rows_a, rows_b) = (
            store::segments(&mut conn, a)?,
            store::segments(&mut conn, b)?,
        );
        let fb = feature_names(&rows_b);
        let features: Vec<String> = feature_names(&rows_a)
            .into_iter()
            .filter(|f| fb.contains(f))
            .collect();
        let (ca, pa, va, ga) = segment_facts(&rows_a, &features);
        let (cb, pb, _, gb) = segment_facts(&rows_b, &features);
        let risk_a: Vec<bool> = pa
            .iter()
            .zip(&ga)
            .map(|(n, g)| matching::is_at_risk(n, *g))
            .collect();
        let risk_b: Vec<bool> = pb
            .iter()
            .zip(&gb)
            .map(|(n, g)| matching::is_at_risk(n, *g))
            .collect();
        let matched = if features.is_empty() {
            vec![None; cb.len()]
        } else {
            matching::match_centres(&ca, &cb)
        };
        let matches = b_names
            .iter()
            .zip(&matched)
            .zip(&risk_b)
            .map(|((name, m), &at_risk)| SegmentMatch {
                segment: name.clone(),
                matched: m.map(|(i, _)| a_names[i].clone()),
                distance: m.map(|(_, d)| d),
                at_risk,
            })
            .collect();
        let (moved, value) = matching::value_moved_into_risk(&table, &va, &risk_a, &risk_b);
        // Every contributing cell must be published, or the total would reveal a hidden one.
        let revealing = shown.iter().enumerate().any(|(r, row)| {
            !risk_a[r]
                && row
                    .iter()
                    .enumerate()
                    .any(|(c, cell)| risk_b[c] && cell.parse::<u64>().is_err())
        });
        let (moved_into_risk, moved_value_into_risk, moved_display) = if revealing {
            (
                None,
                None,
                "withheld: it would reveal a small count".to_owned(),
            )
        } else {
            (
                Some(moved),
                Some(value),
                format!("{moved} customers, lifetime value {value:.2}"),
            )
        };
        let shared_shown = crate::consent::coverage::shown_row(&[shared], min_cell).remove(0);
        Ok(Comparison {
            a,
            b,
            shared_customers: shared_shown.count,
            shared_display: shared_shown.display,
            adjusted_rand_index: pipeline::stability(&ma, &mb),
            crosstab: shown
                .into_iter()
                .zip(a_names.iter().cloned())
                .map(|(row, name)| (name, row))
                .collect(),
            a_segments: a_names,
            b_segments: b_names,
            matches,
            moved_into_risk,
            moved_value_into_risk,
            moved_display,
        })
    })
    .await
}

/// The cross-table of two runs as it may be shown. Its rows add up to the first run's segment
/// sizes and its columns to the second's, both public, so small cells are suppressed two-way
/// (hiding one cell per row would leave a small cell recoverable from its column): `<N` for a
/// small count, `hidden` for a count hidden to protect one.
fn published_crosstab(table: &[Vec<u64>], min_cell: u64) -> Vec<Vec<String>> {
    let cols = table.first().map_or(0, Vec::len);
    if table.is_empty() || cols == 0 {
        return vec![Vec::new(); table.len()];
    }
    let counts = crate::fairness::ContingencyTable::from_counts(
        (0..table.len() as u32).collect(),
        (0..cols).map(|c| c.to_string()).collect(),
        table.concat(),
    )
    .expect("a rectangular table");
    let (marks, _) = crate::fairness::suppression::suppress_two_way(&counts, min_cell);
    table
        .iter()
        .enumerate()
        .map(|(r, row)| {
            row.iter()
                .enumerate()
                .map(|(c, &n)| match marks.cells[r * cols + c] {
                    Suppression::None => n.to_string(),
                    Suppression::Primary => format!("<{min_cell}"),
                    Suppression::Complementary => "hidden".to_owned(),
                })
                .collect()
        })
        .collect()
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct CompareQuery {
    a: i64,
    b: i64,
}

/// Compare two runs: adjusted Rand index and the cross-tabulation of shared customers.
#[utoipa::path(get, path = "/api/v1/segmentations/compare", tag = "segmentation",
    params(CompareQuery),
    responses(
        (status = 200, description = "The comparison", body = Comparison),
        (status = 404, description = "No such run", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn compare_api(
    state: State,
    query: web::Query<CompareQuery>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(compare(&state, query.a, query.b).await?))
}

// ----- Segment map (SVG) -----------------------------------------------------------------------

/// Colours of the segments on the map, in order (colour-blind-safe, Okabe–Ito).
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
];

pub struct MapPoint {
    x: f64,
    y: f64,
    colour: &'static str,
}

pub struct MapCentre {
    x: f64,
    y: f64,
    colour: &'static str,
    label: String,
}

#[derive(Template)]
#[template(path = "segments/map.svg", escape = "html")]
pub struct MapSvg {
    width: f64,
    height: f64,
    points: Vec<MapPoint>,
    centres: Vec<MapCentre>,
    x_label: String,
    y_label: String,
    /// What each axis means, in words, written above the plot.
    x_words: String,
    y_words: String,
}

const MAP_W: f64 = 640.0;
const MAP_H: f64 = 420.0;
const MAP_PAD: f64 = 48.0;

/// Lays out the stored map: scales PCA coordinates into the drawing and colours points by
/// segment. `None` when the run has no map (e.g. a single feature).
/// A principal axis's loadings in words: `+recency_days -monetary` → `more days since last
/// purchase, less total spent`.
fn axis_words(label: &str) -> String {
    label
        .split_whitespace()
        .map(|t| match t.split_at_checked(1) {
            Some(("+", name)) => format!("more {}", format::label_lower(name)),
            Some(("-" | "−", name)) => format!("less {}", format::label_lower(name)),
            _ => format::label_lower(t),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn map_svg(view: &RunView, run: &RunRow) -> Option<MapSvg> {
    let summary = report::summary_of(run)?;
    let map = summary.map?;
    let xs = map.points.iter().chain(&map.centres).map(|p| p[0]);
    let ys = map.points.iter().chain(&map.centres).map(|p| p[1]);
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (y0, y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let sx = |v: f64| MAP_PAD + (v - x0) / (x1 - x0).max(1e-9) * (MAP_W - 2.0 * MAP_PAD);
    let sy = |v: f64| MAP_H - MAP_PAD - (v - y0) / (y1 - y0).max(1e-9) * (MAP_H - 2.0 * MAP_PAD);
    let colour = |s: usize| PALETTE[s % PALETTE.len()];
    // Points of suppressed (small) segments are not drawn: a handful of dots is a count.
    let hidden: Vec<bool> = view.segments.iter().map(|s| s.suppressed).collect();
    let axis = |i: usize| {
        map.axes
            .get(i)
            .map(|a| {
                format!(
                    "Axis {} ({:.0}% of the spread)",
                    i + 1,
                    a.explained_variance_ratio * 100.0,
                )
            })
            .unwrap_or_default()
    };
    Some(MapSvg {
        width: MAP_W,
        height: MAP_H,
        points: map
            .points
            .iter()
            .zip(&map.labels)
            .filter(|(_, l)| !hidden.get(**l).copied().unwrap_or(true))
            .map(|(p, &l)| MapPoint {
                x: sx(p[0]),
                y: sy(p[1]),
                colour: colour(l),
            })
            .collect(),
        centres: map
            .centres
            .iter()
            .enumerate()
            .filter(|(i, _)| !hidden.get(*i).copied().unwrap_or(true))
            .map(|(i, p)| MapCentre {
                x: sx(p[0]),
                y: sy(p[1]),
                colour: colour(i),
                label: view
                    .segments
                    .get(i)
                    .map(|s| s.segment.to_string())
                    .unwrap_or_default(),
            })
            .collect(),
        x_label: axis(0),
        y_label: axis(1),
        x_words: map
            .axes
            .first()
            .map(|a| format!("→ Axis 1: {}", axis_words(&a.label)))
            .unwrap_or_default(),
        y_words: map
            .axes
            .get(1)
            .map(|a| format!("↑ Axis 2: {}", axis_words(&a.label)))
            .unwrap_or_default(),
    })
}

async fn run_and_view(
    state: &State,
    user: &CurrentUser,
    id: i64,
) -> Result<(RunView, RunRow), AppError> {
    let view = load_run(state, user, id).await?;
    let db = state.db.clone();
    let run = blocking(move || db.read(|c| store::run(c, id)))
        .await?
        .ok_or(AppError::NotFound)?;
    Ok((view, run))
}

/// The segment map of a run as SVG.
pub async fn map_page(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let (view, run) = run_and_view(&state, &user, path.into_inner()).await?;
    let svg = map_svg(&view, &run).ok_or(AppError::NotFound)?;
    let body = svg.render().map_err(AppError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml; charset=utf-8")
        .body(body))
}

// ----- Pages ---------------------------------------------------------------------------------

/// A segment card's figures, formatted for the page.
pub struct SegmentCard {
    segment: i32,
    name: String,
    proposed_name: String,
    size_display: String,
    share: String,
    suppressed: bool,
    colour: &'static str,
    /// The distinguishing features: (feature, "segment vs population (lift)").
    top: Vec<(String, String)>,
    /// (label, figure).
    valuation: Vec<(String, String)>,
    /// (criterion, pass, figure, explanation).
    viability: Vec<(&'static str, bool, String, String)>,
    stance: String,
    priority: String,
    strategy: Option<crate::segmentation::report::StrategyView>,
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

fn cards(view: &RunView, policy: &crate::policy::Policy) -> Vec<SegmentCard> {
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
                        ("Revenue".into(), money(v.revenue)),
                        ("Orders".into(), format::int(v.orders)),
                        (
                            "Average order value".into(),
                            format::money_opt(v.average_order_value, cur),
                        ),
                        (
                            "Orders per customer".into(),
                            format!("{:.2}", v.purchase_frequency),
                        ),
                        (
                            "Revenue growth (year on year)".into(),
                            pct(&v.revenue_growth),
                        ),
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

/// The columns the overview sorts by: (query value, heading).
const OVERVIEW_SORTS: [(&str, &str); 5] = [
    ("size", "Members"),
    ("revenue", "Revenue"),
    ("growth", "Growth"),
    ("clv", "Lifetime value"),
    ("priority", "Priority"),
];

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
    run: Option<RunView>,
    cards: Vec<SegmentCard>,
    map: Option<String>,
    can_strategy: bool,
    can_members: bool,
    channels: Vec<String>,
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
    let (run, map) = match published_id(&state).await? {
        Some(id) => {
            let (view, row) = run_and_view(&state, &user, id).await?;
            let map = map_svg(&view, &row)
                .map(|m| m.render())
                .transpose()
                .map_err(AppError::internal)?;
            (Some(view), map)
        }
        None => (None, None),
    };
    Ok(render(&DashboardPage {
        layout: Layout::new(&state, Some(&user), "Segments", "/segments"),
        overview: run
            .as_ref()
            .map(|r| overview(r, &state.policy, &sort))
            .unwrap_or_default(),
        sort,
        sorts: OVERVIEW_SORTS,
        cards: run
            .as_ref()
            .map(|r| cards(r, &state.policy))
            .unwrap_or_default(),
        run,
        map,
        can_strategy: user.can(Permission::SegmentsStrategy),
        can_members: user.can(Permission::SegmentsMembers),
        channels: state.policy.segmentation.channels.keys().cloned().collect(),
    }))
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
        StrategyRequest {
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
    let q = MembersQuery {
        segment: Some(segment),
        format: None,
        channel: None,
    };
    let members = read_members(&state, &user, run, &q, Some(query.channel.clone())).await?;
    members_response(
        members,
        Some("csv"),
        format!("run-{run}-segment-{segment}-{}.csv", query.channel),
    )
}

#[derive(Template)]
#[template(path = "segments/runs.html")]
struct RunsPage {
    layout: Layout,
    runs: Vec<RunSummaryItem>,
    features: Vec<String>,
    error: Option<String>,
    form: RunForm,
}

#[derive(Deserialize, Default, Clone)]
pub struct RunForm {
    #[serde(default)]
    algorithm: String,
    #[serde(default)]
    features: String,
    #[serde(default)]
    log_features: String,
    #[serde(default)]
    k: String,
    #[serde(default)]
    k_min: String,
    #[serde(default)]
    k_max: String,
    #[serde(default)]
    seed: String,
    #[serde(default)]
    missing: String,
    #[serde(default)]
    eps: String,
    #[serde(default)]
    min_points: String,
    #[serde(default)]
    rules: String,
}

fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn optional<T: std::str::FromStr>(field: &'static str, raw: &str) -> Result<Option<T>, AppError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse()
        .map(Some)
        .map_err(|_| AppError::invalid(field, format!("{field}: `{raw}` is not a valid number")))
}

impl RunForm {
    fn to_request(&self) -> Result<RunRequest, AppError> {
        Ok(RunRequest {
            algorithm: self.algorithm.clone(),
            features: split_list(&self.features),
            k: optional("k", &self.k)?,
            k_min: optional("k_min", &self.k_min)?,
            k_max: optional("k_max", &self.k_max)?,
            seed: optional("seed", &self.seed)?,
            log_features: split_list(&self.log_features),
            missing: match self.missing.trim() {
                "" => None,
                m => Some(serde_json::from_value(serde_json::json!(m)).map_err(|_| {
                    AppError::invalid("missing", format!("`{m}` is not a missing-value rule"))
                })?),
            },
            eps: optional("eps", &self.eps)?,
            min_points: optional("min_points", &self.min_points)?,
            rules: match self.rules.trim() {
                "" => None,
                r => Some(serde_json::from_str(r).map_err(|e| {
                    AppError::invalid("rules", format!("rules: not valid JSON: {e}"))
                })?),
            },
            as_of: None,
        })
    }
}

async fn runs_page_with(
    state: &State,
    user: &CurrentUser,
    form: RunForm,
    error: Option<String>,
) -> Result<HttpResponse, AppError> {
    let runs = run_list(state, user).await?;
    let db = state.db.clone();
    let policy = state.policy.clone();
    let columns = blocking(move || db.read(store::known_columns)).await?;
    let mut features: Vec<String> = columns
        .into_iter()
        .filter(|c| c.kind != crate::segmentation::settings::ColumnKind::Date && !c.protected)
        .filter(|c| {
            !policy
                .protected_attributes
                .contains_key(&c.name.to_ascii_lowercase())
                && !policy.proxies.contains_key(&c.name)
        })
        .map(|c| c.name)
        .collect();
    features.extend(
        crate::customers::features::FEATURE_NAMES
            .iter()
            .map(|s| s.to_string()),
    );
    let page = RunsPage {
        layout: Layout::new(state, Some(user), "Segmentation runs", "/segmentations"),
        runs,
        features,
        error,
        form,
    };
    Ok(if page.error.is_some() {
        super::layout::render_with_status(actix_web::http::StatusCode::BAD_REQUEST, &page)
    } else {
        render(&page)
    })
}

/// Analysts: run history, a form to start a run, and a form to compare two runs.
pub async fn runs_page(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let form = RunForm {
        algorithm: "kmeans".into(),
        k: "6".into(),
        seed: "1".into(),
        ..RunForm::default()
    };
    runs_page_with(&state, &user, form, None).await
}

pub async fn runs_submit(
    state: State,
    user: CurrentUser,
    form: web::Form<RunForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let started = match form.to_request() {
        Ok(request) => start_run(&state, &user, request).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(id) => Ok(see_other(&format!("/segmentations/{id}"))),
        Err(e @ AppError::InvalidInput { .. }) => {
            runs_page_with(&state, &user, form, Some(e.to_string())).await
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "segments/run.html")]
struct RunPage {
    layout: Layout,
    run: RunView,
    /// (reason, count as shown).
    excluded: Vec<(String, String)>,
    /// (score, value).
    quality: Vec<(String, String)>,
    cards: Vec<SegmentCard>,
    map: Option<String>,
    in_progress: bool,
    /// A finished run whose automatic fairness audit has not been stored yet.
    awaiting_audit: bool,
    progress_percent: u32,
    published_id: Option<i64>,
    /// The latest fairness audit of the run: (id, verdict, reason), for roles that read audits.
    audit: Option<(i64, String, String)>,
    /// Published on a compliance override: shown as "published (override)".
    published_on_override: bool,
}

/// One run: progress while it runs (the page refreshes itself), then its results.
pub async fn run_page(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let (view, row) = run_and_view(&state, &user, id).await?;
    let map = map_svg(&view, &row)
        .map(|m| m.render())
        .transpose()
        .map_err(AppError::internal)?;
    let in_progress = view.status == store::QUEUED || view.status == store::RUNNING;
    let excluded = view
        .excluded
        .iter()
        .map(|(reason, n)| {
            (
                reason.replace('_', " "),
                n.to_string().trim_matches('"').to_owned(),
            )
        })
        .collect();
    let quality = view
        .quality
        .as_ref()
        .and_then(|q| q.as_object())
        .map(|q| {
            [
                "silhouette",
                "calinski_harabasz",
                "davies_bouldin",
                "inertia",
                "iterations",
            ]
            .iter()
            .filter_map(|key| {
                let v = q.get(*key)?;
                let shown = match v.as_f64() {
                    Some(x) if v.is_u64() => format!("{x:.0}"),
                    Some(x) => format!("{x:.4}"),
                    None => return None,
                };
                Some((key.replace('_', "-"), shown))
            })
            .collect()
        })
        .unwrap_or_default();
    let db = state.db.clone();
    let (latest, overridden) = blocking(move || {
        db.read(|c| {
            Ok((
                crate::db::audits::latest_of_run(c, id)?,
                crate::db::audits::runs_passed_by_override(c)?,
            ))
        })
    })
    .await?;
    let audit = latest
        .filter(|_| user.can(Permission::AuditsRead))
        .map(|a| (a.id, a.verdict, a.reason));
    Ok(render(&RunPage {
        published_on_override: view.status == PUBLISHED && overridden.contains(&id),
        awaiting_audit: view.status == store::DRAFT && audit.is_none(),
        audit,
        layout: Layout::new(&state, Some(&user), &format!("Run {id}"), "/segmentations"),
        excluded,
        quality,
        cards: cards(&view, &state.policy),
        progress_percent: (view.progress * 100.0).round().clamp(0.0, 100.0) as u32,
        in_progress,
        map,
        published_id: published_id(&state).await?,
        run: view,
    }))
}

#[derive(Template)]
#[template(path = "segments/compare.html")]
struct ComparePage {
    layout: Layout,
    comparison: Comparison,
}

pub async fn compare_page(
    state: State,
    user: CurrentUser,
    query: web::Query<CompareQuery>,
) -> Result<HttpResponse, AppError> {
    Ok(render(&ComparePage {
        layout: Layout::new(&state, Some(&user), "Compare runs", "/segmentations"),
        comparison: compare(&state, query.a, query.b).await?,
    }))
}

/// Formats an optional number for the pages.
pub fn fmt_opt(v: &Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Formats a share as a percentage.
pub fn pct(v: &Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_lists_and_numbers_parse_with_field_errors() {
        assert_eq!(split_list(" a, b,,c "), ["a", "b", "c"]);
        assert_eq!(optional::<usize>("k", " 6 ").unwrap(), Some(6));
        assert_eq!(optional::<usize>("k", "").unwrap(), None);
        let err = optional::<usize>("k", "six").unwrap_err();
        assert_eq!(err.field(), Some("k"));
    }

    use crate::segmentation::settings::SettingsError;

    #[test]
    fn settings_errors_keep_their_field() {
        let e: AppError = RunError::Settings(SettingsError::ProtectedFeature {
            feature: "age".into(),
        })
        .into();
        assert_eq!(e.field(), Some("features"));
        assert!(e.to_string().contains("age"));
    }

    #[test]
    fn a_small_shared_cell_stays_hidden_with_both_margins_known() {
        // Run A's segments (rows) and run B's (columns) both have public sizes. One cell of 4
        // shared customers among hundreds.
        let table = vec![vec![4, 300, 220], vec![180, 260, 140], vec![90, 150, 410]];
        let shown = published_crosstab(&table, 10);
        assert_eq!(shown[0][0], "<10");
        let hidden = |r: usize, c: usize| shown[r][c] == "hidden" || shown[r][c] == "<10";
        assert!(
            (1..3).any(|c| hidden(0, c)),
            "no partner in the row: {shown:?}"
        );
        assert!(
            (1..3).any(|r| hidden(r, 0)),
            "no partner in the column: {shown:?}"
        );
        // With both margins known, a hidden rectangle through the small cell lets it move by
        // one while every margin stays the same: it has more than one possible value.
        let movable = (1..3).any(|r| {
            (1..3).any(|c| {
                hidden(0, c) && hidden(r, 0) && hidden(r, c) && table[0][c] > 0 && table[r][0] > 0
            })
        });
        assert!(movable, "recoverable: {shown:?}");
    }
}
