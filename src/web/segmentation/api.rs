//! The JSON API of segmentation runs: start, list, read, members, strategy, rename, compare.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::{
    AppError, State, compare, load_run, members_response, published_id, read_members,
    read_members_page, record_strategy, rename, start_run,
};
use crate::app::runs::{self as app, Comparison, RunView, Strategy};
use crate::auth::CurrentUser;
use crate::segmentation::settings::RunRequest;
use crate::segmentation::status::RunStatus;
use crate::web::error::blocking;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Started {
    run_id: i64,
    #[schema(value_type = String)]
    status: RunStatus,
    /// Poll this for progress and results.
    location: String,
}

/// Start a segmentation run in the background. The population is frozen when the run starts:
/// exactly the customers whose consent for the policy's segmentation purpose is active then.
#[utoipa::path(post, path = "/api/v1/segmentations", tag = "segmentation",
    request_body = RunRequest,
    responses(
        (status = 202, description = "Queued", body = Started),
        (status = 400, description = "Invalid settings, or a protected or proxy feature (named)", body = crate::web::error::ErrorBody),
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
            status: RunStatus::Queued,
            location,
        }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunList {
    runs: Vec<RunSummaryItem>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunSummaryItem {
    pub(super) run_id: i64,
    pub(super) algorithm: String,
    #[schema(value_type = String)]
    pub(super) status: RunStatus,
    pub(super) stage: String,
    pub(super) progress: f64,
    pub(super) segments: Option<usize>,
    pub(super) stability_ari: Option<f64>,
    pub(super) created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub(super) created_at: chrono::NaiveDateTime,
    pub(super) error: Option<String>,
    /// Published on a compliance override of a failed or inconclusive audit.
    pub(super) published_on_override: bool,
}

/// The runs the user sees, newest first (of the latest 200).
pub(super) async fn run_list(
    state: &State,
    user: &CurrentUser,
) -> Result<Vec<RunSummaryItem>, AppError> {
    let (db, reader) = (state.db.clone(), super::reader(user));
    let runs = blocking(move || app::list(&db, reader, 200)).await?;
    Ok(runs
        .into_iter()
        .map(|(r, published_on_override)| RunSummaryItem {
            published_on_override,
            segments: app::report::summary_of(&r).map(|s| s.k),
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
        (status = 404, description = "No such run", body = crate::web::error::ErrorBody),
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
        (status = 404, description = "Nothing is published yet", body = crate::web::error::ErrorBody),
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
    pub(super) segment: Option<i32>,
    /// `csv` (default) or `json`.
    format: Option<String>,
    /// Activation export: only members whose consent for this channel's purpose is active.
    channel: Option<String>,
    /// One page of at most this many members (up to 10,000); the cursor of the next page is
    /// in the `X-Next-Cursor` header and a `Link: <…>; rel="next"` header, absent after the
    /// last page. Without it, every member at once.
    limit: Option<usize>,
    /// The cursor of the page to read (from `X-Next-Cursor`).
    after: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Member {
    pub(super) customer_id: String,
    pub(super) segment: i32,
}

/// A run's members as `customer_id,segment` (CSV, or JSON with `format=json`). Customers who
/// withdrew consent since the run are left out. Every read is in the trail.
#[utoipa::path(get, path = "/api/v1/segmentations/{id}/members", tag = "segmentation",
    params(("id" = i64, Path, description = "Run id"), MembersQuery),
    responses(
        (status = 200, description = "CSV `customer_id,segment`, or JSON", body = Vec<Member>),
        (status = 404, description = "No such run", body = crate::web::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn members_api(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
    query: web::Query<MembersQuery>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let Some(limit) = query.limit else {
        let members = read_members(&state, &user, id, query.segment, query.channel.clone()).await?;
        return members_response(
            members,
            query.format.as_deref(),
            format!("run-{id}-members.csv"),
        );
    };
    if limit == 0 || limit > app::MAX_PAGE {
        return Err(AppError::invalid(
            "limit",
            format!("limit must be between 1 and {}", app::MAX_PAGE),
        ));
    }
    let after = match query.after.as_deref() {
        None => None,
        Some(raw) => Some(raw.parse::<i64>().ok().filter(|&c| c >= 0).ok_or_else(|| {
            AppError::invalid(
                "after",
                "after must be a cursor from X-Next-Cursor".to_string(),
            )
        })?),
    };
    let (members, next) = read_members_page(
        &state,
        &user,
        id,
        query.segment,
        query.channel.clone(),
        app::PageRequest { after, limit },
    )
    .await?;
    let mut response = members_response(
        members,
        query.format.as_deref(),
        format!("run-{id}-members.csv"),
    )?;
    if let Some(next) = next {
        let mut link = format!("/api/v1/segmentations/{id}/members?limit={limit}&after={next}");
        for (name, value) in [
            ("segment", query.segment.map(|s| s.to_string())),
            ("format", query.format.clone()),
            ("channel", query.channel.clone()),
        ] {
            // Channel names and formats are plain words (anything else was refused above).
            if let Some(value) = value.filter(|v| {
                v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            }) {
                link.push_str(&format!("&{name}={value}"));
            }
        }
        let headers = response.headers_mut();
        headers.insert(
            actix_web::http::header::HeaderName::from_static("x-next-cursor"),
            actix_web::http::header::HeaderValue::from(next),
        );
        if let Ok(value) =
            actix_web::http::header::HeaderValue::from_str(&format!("<{link}>; rel=\"next\""))
        {
            headers.insert(actix_web::http::header::LINK, value);
        }
    }
    Ok(response)
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

/// Record marketing's treatment of a segment: channel, offer, service level, and whether it
/// is favourable.
#[utoipa::path(put, path = "/api/v1/segmentations/{id}/segments/{segment}/strategy", tag = "segmentation",
    params(("id" = i64, Path, description = "Run id"), ("segment" = i32, Path, description = "Segment number")),
    request_body = StrategyRequest,
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "A field is empty or too long", body = crate::web::error::ErrorBody),
        (status = 404, description = "No such segment", body = crate::web::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn strategy_api(
    state: State,
    user: CurrentUser,
    path: web::Path<(i64, i32)>,
    body: web::Json<StrategyRequest>,
) -> Result<HttpResponse, AppError> {
    let (run, segment) = path.into_inner();
    let body = body.into_inner();
    record_strategy(
        &state,
        &user,
        run,
        segment,
        Strategy {
            channel: body.channel,
            offer: body.offer,
            service_level: body.service_level,
            favourable: body.favourable,
        },
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RenameRequest {
    name: String,
}

/// Rename a segment (the proposed name stays on record).
#[utoipa::path(patch, path = "/api/v1/segmentations/{id}/segments/{segment}", tag = "segmentation",
    params(("id" = i64, Path, description = "Run id"), ("segment" = i32, Path, description = "Segment number")),
    request_body = RenameRequest,
    responses(
        (status = 204, description = "Renamed"),
        (status = 400, description = "Empty or too long", body = crate::web::error::ErrorBody),
        (status = 404, description = "No such segment", body = crate::web::error::ErrorBody),
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

#[derive(Deserialize, utoipa::IntoParams)]
pub struct CompareQuery {
    pub(super) a: i64,
    pub(super) b: i64,
}

/// Compare two runs: adjusted Rand index and the cross-tabulation of shared customers.
#[utoipa::path(get, path = "/api/v1/segmentations/compare", tag = "segmentation",
    params(CompareQuery),
    responses(
        (status = 200, description = "The comparison", body = Comparison),
        (status = 404, description = "No such run", body = crate::web::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn compare_api(
    state: State,
    query: web::Query<CompareQuery>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(compare(&state, query.a, query.b).await?))
}
