//! Reading and verifying the trail (compliance and admin).

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use super::error::{AppError, blocking};
use super::layout::{Layout, State, render};
use crate::auth::CurrentUser;
use crate::db::trail::{self as store, TrailFilter, Verification};
use crate::trail::Entry;

pub const PAGE_SIZE: i64 = 50;

#[derive(Deserialize, Default, utoipa::IntoParams)]
pub struct TrailQuery {
    /// Exact actor (an e-mail, `system` or `cli:…`).
    actor: Option<String>,
    /// Action prefix, e.g. `user.` or `auth.signed_in`.
    action: Option<String>,
    /// Exact subject id.
    subject: Option<String>,
    /// First day included (YYYY-MM-DD, UTC).
    from: Option<String>,
    /// Last day included (YYYY-MM-DD, UTC).
    to: Option<String>,
    /// Page number, from 1.
    page: Option<i64>,
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn parse_day(field: &str, value: Option<String>) -> Result<Option<NaiveDate>, AppError> {
    value
        .map(|v| crate::time::parse_day(&v).map_err(|m| AppError::invalid(field, m)))
        .transpose()
}

fn filter_of(q: &TrailQuery) -> Result<TrailFilter, AppError> {
    let start =
        |d: NaiveDate| -> NaiveDateTime { d.and_hms_opt(0, 0, 0).expect("midnight exists") };
    Ok(TrailFilter {
        actor: non_empty(&q.actor),
        action: non_empty(&q.action),
        subject: non_empty(&q.subject),
        from: parse_day("from", non_empty(&q.from))?.map(start),
        to: parse_day("to", non_empty(&q.to))?
            .and_then(|d| d.succ_opt())
            .map(start),
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TrailPage {
    entries: Vec<Entry>,
    total: i64,
    page: i64,
    pages: i64,
}

/// The largest page number asked for: 50 million entries, far beyond any trail, and an
/// offset that cannot overflow.
const MAX_PAGE: i64 = 1_000_000;

async fn load(state: &State, q: &TrailQuery) -> Result<TrailPage, AppError> {
    let filter = filter_of(q)?;
    let page = q.page.unwrap_or(1);
    if !(1..=MAX_PAGE).contains(&page) {
        return Err(AppError::invalid(
            "page",
            format!("pages are numbered from 1 to {MAX_PAGE}, got {page}"),
        ));
    }
    let db = state.db.clone();
    let (entries, total) =
        blocking(move || db.read(|c| store::page(c, &filter, (page - 1) * PAGE_SIZE, PAGE_SIZE)))
            .await?;
    Ok(TrailPage {
        entries,
        total,
        page,
        pages: ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1),
    })
}

#[derive(Template)]
#[template(path = "trail/index.html")]
struct TrailHtml {
    layout: Layout,
    result: TrailPage,
    actor: String,
    action: String,
    subject: String,
    from: String,
    to: String,
    query_without_page: String,
    verification: Option<Verification>,
}

fn query_without_page(q: &TrailQuery) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("actor", &q.actor),
        ("action", &q.action),
        ("subject", &q.subject),
        ("from", &q.from),
        ("to", &q.to),
    ] {
        if let Some(v) = non_empty(v) {
            s.append_pair(k, &v);
        }
    }
    s.finish()
}

async fn trail_html(
    state: &State,
    user: &CurrentUser,
    q: TrailQuery,
    verification: Option<Verification>,
) -> Result<HttpResponse, AppError> {
    let result = load(state, &q).await?;
    Ok(render(&TrailHtml {
        layout: Layout::new(state, Some(user), "Trail", "/trail"),
        result,
        query_without_page: query_without_page(&q),
        actor: q.actor.unwrap_or_default(),
        action: q.action.unwrap_or_default(),
        subject: q.subject.unwrap_or_default(),
        from: q.from.unwrap_or_default(),
        to: q.to.unwrap_or_default(),
        verification,
    }))
}

pub async fn page(
    state: State,
    user: CurrentUser,
    q: web::Query<TrailQuery>,
) -> Result<HttpResponse, AppError> {
    trail_html(&state, &user, q.into_inner(), None).await
}

async fn verify(state: &State) -> Result<Verification, AppError> {
    let db = state.db.clone();
    blocking(move || db.read(store::verify)).await
}

pub async fn verify_page(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let verification = verify(&state).await?;
    trail_html(&state, &user, TrailQuery::default(), Some(verification)).await
}

/// Trail entries, newest first, filtered and paged (50 a page).
#[utoipa::path(get, path = "/api/v1/trail", tag = "trail",
    params(TrailQuery),
    responses(
        (status = 200, description = "One page of entries", body = TrailPage),
        (status = 400, description = "A bad filter", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_api(state: State, q: web::Query<TrailQuery>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(load(&state, &q).await?))
}

/// Verify the whole hash chain; names the first bad entry.
#[utoipa::path(get, path = "/api/v1/trail/verify", tag = "trail",
    responses((status = 200, description = "The result; `first_bad` is present when the chain is broken")),
    security(("bearer" = [])))]
pub async fn verify_api(state: State) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(verify(&state).await?))
}
