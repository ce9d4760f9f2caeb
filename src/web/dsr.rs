//! Data-subject requests and retention (compliance, `dsr:manage`): the request log page with
//! export, erasure and retention forms, and the same operations in the API.

use actix_web::http::StatusCode;
use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};

use super::error::{AppError, blocking};
use super::layout::{Layout, State, render_with_status, see_other};
use crate::app::dsr::{self, CustomerExport, DsrError, Erasure};
use crate::app::retention::{self, RetentionError};
use crate::auth::CurrentUser;
use crate::db::dsr::DsrRequestRow;
use crate::retention::RetentionReport;
use crate::trail::Actor;

/// How many requests the log shows.
const LOG_LIMIT: i64 = 200;

impl From<DsrError> for AppError {
    fn from(e: DsrError) -> AppError {
        match e {
            DsrError::InvalidId(m) => AppError::invalid("customer_id", m),
            DsrError::NotFound => AppError::NotFound,
            e @ DsrError::AlreadyErased(_) => AppError::Conflict(e.to_string()),
            DsrError::Db(db) => db.into(),
        }
    }
}

impl From<RetentionError> for AppError {
    fn from(e: RetentionError) -> AppError {
        match e {
            RetentionError::Db(db) => db.into(),
        }
    }
}

async fn export(state: &State, user: &CurrentUser, id: String) -> Result<CustomerExport, AppError> {
    let (db, pseudonyms, version, actor) = (
        state.db.clone(),
        state.pseudonyms.clone(),
        state.policy.version.clone(),
        Actor::user(&user.email),
    );
    blocking(move || dsr::export(&db, &pseudonyms, &version, &actor, &id)).await
}

async fn erase(state: &State, user: &CurrentUser, id: String) -> Result<Erasure, AppError> {
    let (db, pseudonyms, version, actor) = (
        state.db.clone(),
        state.pseudonyms.clone(),
        state.policy.version.clone(),
        Actor::user(&user.email),
    );
    blocking(move || dsr::erase(&db, &pseudonyms, &version, &actor, &id)).await
}

async fn apply_retention(
    state: &State,
    user: &CurrentUser,
    dry_run: bool,
) -> Result<RetentionReport, AppError> {
    let (db, policy, actor) = (
        state.db.clone(),
        state.policy.clone(),
        Actor::user(&user.email),
    );
    blocking(move || retention::apply(&db, &policy, &actor, dry_run)).await
}

async fn request_log(state: &State) -> Result<Vec<DsrRequestRow>, AppError> {
    let db = state.db.clone();
    blocking(move || dsr::requests(&db, LOG_LIMIT)).await
}

// ----- API -----------------------------------------------------------------------------------

/// Everything held about one customer, as JSON (a data-subject access request). Recorded in the
/// request log and the trail by pseudonym.
#[utoipa::path(get, path = "/api/v1/customers/{id}/export", tag = "data-subject requests",
    params(("id" = String, Path, description = "The customer's id")),
    responses(
        (status = 200, description = "Everything held about the customer", body = CustomerExport),
        (status = 404, description = "No such customer", body = super::error::ErrorBody),
        (status = 409, description = "The customer was erased", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn export_api(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(export(&state, &user, path.into_inner()).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct EraseRequest {
    /// Must be `true`: erasure cannot be undone.
    confirm: bool,
}

/// Erase a customer: attributes, protected attributes, transactions, consent events and
/// memberships, everywhere. Only the pseudonym remains, in the erasure register, the request
/// log and the trail.
#[utoipa::path(post, path = "/api/v1/customers/{id}/erase", tag = "data-subject requests",
    params(("id" = String, Path, description = "The customer's id")),
    request_body = EraseRequest,
    responses(
        (status = 200, description = "Erased; what was removed", body = Erasure),
        (status = 400, description = "`confirm` is not true", body = super::error::ErrorBody),
        (status = 404, description = "No such customer", body = super::error::ErrorBody),
        (status = 409, description = "Already erased", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn erase_api(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    body: web::Json<EraseRequest>,
) -> Result<HttpResponse, AppError> {
    if !body.confirm {
        return Err(AppError::invalid(
            "confirm",
            "erasure cannot be undone: send {\"confirm\": true}",
        ));
    }
    Ok(HttpResponse::Ok().json(erase(&state, &user, path.into_inner()).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RetentionRequest {
    /// When true, count what would be removed without removing anything.
    dry_run: bool,
}

/// Apply the policy's retention periods (or preview them with `dry_run`).
#[utoipa::path(post, path = "/api/v1/retention/apply", tag = "data-subject requests",
    request_body = RetentionRequest,
    responses((status = 200, description = "What was (or would be) removed", body = RetentionReport)),
    security(("bearer" = [])))]
pub async fn retention_api(
    state: State,
    user: CurrentUser,
    body: web::Json<RetentionRequest>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(apply_retention(&state, &user, body.dry_run).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RequestLog {
    requests: Vec<DsrRequestRow>,
}

/// The log of data-subject requests, newest first (customers by pseudonym).
#[utoipa::path(get, path = "/api/v1/dsr", tag = "data-subject requests",
    responses((status = 200, description = "The latest 200 requests", body = RequestLog)),
    security(("bearer" = [])))]
pub async fn log_api(state: State) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(RequestLog {
        requests: request_log(&state).await?,
    }))
}

// ----- Page ----------------------------------------------------------------------------------

struct Found {
    customer_id: String,
    pseudonym: String,
}

#[derive(Template)]
#[template(path = "dsr/index.html")]
struct DsrPage {
    layout: Layout,
    requests: Vec<DsrRequestRow>,
    lookup: String,
    found: Option<Found>,
    notice: Option<String>,
    error: Option<String>,
    report: Option<RetentionReport>,
}

#[derive(Deserialize)]
pub struct PageQuery {
    customer: Option<String>,
    erased: Option<String>,
}

async fn dsr_page(
    state: &State,
    user: &CurrentUser,
    status: StatusCode,
    lookup: String,
    notice: Option<String>,
    mut error: Option<String>,
    report: Option<RetentionReport>,
) -> Result<HttpResponse, AppError> {
    let mut found = None;
    if !lookup.trim().is_empty() {
        let db = state.db.clone();
        let id = lookup.clone();
        let result = blocking(move || dsr::lookup(&db, &id)).await;
        match result {
            Ok(Some((id, pseudonym))) => {
                found = Some(Found {
                    customer_id: id.to_string(),
                    pseudonym,
                })
            }
            Ok(None) => error = Some("No customer with that id is held.".into()),
            Err(e @ AppError::InvalidInput { .. }) => error = Some(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    let page = DsrPage {
        layout: Layout::new(state, Some(user), "Data requests", "/dsr"),
        requests: request_log(state).await?,
        lookup,
        found,
        notice,
        error,
        report,
    };
    Ok(render_with_status(status, &page))
}

pub async fn page(
    state: State,
    user: CurrentUser,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let q = q.into_inner();
    let notice = q
        .erased
        .map(|p| format!("The customer has been erased; the trail names them as {p}."));
    dsr_page(
        &state,
        &user,
        StatusCode::OK,
        q.customer.unwrap_or_default(),
        notice,
        None,
        None,
    )
    .await
}

#[derive(Deserialize)]
pub struct CustomerForm {
    customer_id: String,
    confirm: Option<String>,
}

/// Re-renders the page with the error for a form that named an unknown customer or a bad id.
async fn page_error(
    state: &State,
    user: &CurrentUser,
    lookup: String,
    e: AppError,
) -> Result<HttpResponse, AppError> {
    match e {
        AppError::InvalidInput { .. } | AppError::NotFound | AppError::Conflict(_) => {
            let status = actix_web::ResponseError::status_code(&e);
            let message = match e {
                AppError::NotFound => "No customer with that id is held.".to_string(),
                other => other.to_string(),
            };
            dsr_page(state, user, status, lookup, None, Some(message), None).await
        }
        other => Err(other),
    }
}

/// The export as a JSON download named by pseudonym (never by the raw id).
pub async fn export_submit(
    state: State,
    user: CurrentUser,
    form: web::Form<CustomerForm>,
) -> Result<HttpResponse, AppError> {
    let id = form.into_inner().customer_id;
    match export(&state, &user, id.clone()).await {
        Ok(export) => Ok(HttpResponse::Ok()
            .insert_header(ContentDisposition {
                disposition: DispositionType::Attachment,
                parameters: vec![DispositionParam::Filename(format!(
                    "customer-{}.json",
                    export.pseudonym
                ))],
            })
            .content_type("application/json")
            .body(serde_json::to_string_pretty(&export).map_err(AppError::internal)?)),
        Err(e) => page_error(&state, &user, id, e).await,
    }
}

pub async fn erase_submit(
    state: State,
    user: CurrentUser,
    form: web::Form<CustomerForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    if form.confirm.as_deref() != Some("yes") {
        return page_error(
            &state,
            &user,
            form.customer_id,
            AppError::invalid(
                "confirm",
                "Tick the box to confirm: erasure cannot be undone.",
            ),
        )
        .await;
    }
    match erase(&state, &user, form.customer_id.clone()).await {
        Ok(erasure) => Ok(see_other(&format!("/dsr?erased={}", erasure.pseudonym))),
        Err(e) => page_error(&state, &user, form.customer_id, e).await,
    }
}

#[derive(Deserialize)]
pub struct RetentionForm {
    /// `preview` (dry run) or `apply`.
    action: String,
    /// `yes` when the apply form's confirmation box was ticked (apply needs it).
    #[serde(default)]
    confirm: Option<String>,
}

pub async fn retention_submit(
    state: State,
    user: CurrentUser,
    form: web::Form<RetentionForm>,
) -> Result<HttpResponse, AppError> {
    let dry_run = match form.action.as_str() {
        "preview" => true,
        "apply" => {
            super::audits::require_confirmation(form.confirm.as_deref(), "applying retention")?;
            false
        }
        other => {
            return Err(AppError::invalid(
                "action",
                format!("unknown action `{other}`: use `preview` or `apply`"),
            ));
        }
    };
    let report = apply_retention(&state, &user, dry_run).await?;
    dsr_page(
        &state,
        &user,
        StatusCode::OK,
        String::new(),
        None,
        None,
        Some(report),
    )
    .await
}
