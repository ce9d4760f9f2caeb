//! Operations: health, metrics, the OpenAPI document, and the stylesheet (compiled into the
//! binary, so pages work offline).

use actix_web::HttpResponse;
use actix_web::http::header;
use utoipa::OpenApi;

use super::error::{AppError, blocking};
use super::layout::State;

const STYLESHEET: &str = include_str!("../../templates/static/app.css");
const FAVICON: &str = include_str!("../../templates/static/favicon.svg");

pub async fn healthz(state: State) -> Result<HttpResponse, AppError> {
    let db = state.db.clone();
    blocking(move || {
        db.read(|c| {
            use diesel::connection::SimpleConnection;
            c.batch_execute("SELECT 1").map_err(Into::into)
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "policy_version": state.policy.version,
    })))
}

pub async fn metrics(state: State) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&state.admission))
}

pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLESHEET)
}

/// The icon browsers show in the tab (an SVG, also answered at `/favicon.ico`).
pub async fn favicon() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(FAVICON)
}

pub async fn openapi_document() -> HttpResponse {
    HttpResponse::Ok().json(super::openapi::ApiDoc::openapi())
}
