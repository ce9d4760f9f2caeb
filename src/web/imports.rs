//! Imports over HTTP: the JSON API (`POST /api/v1/imports/{kind}` with the CSV as the body)
//! and the browser page (a multipart upload form and the report). Uploads are streamed to a
//! temporary file (never held in memory) up to `FAIRSEG_MAX_IMPORT_BYTES`, then imported from
//! it by the same code as `fairseg import`.

use std::io::Write;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::error::{AppError, ErrorDetail, blocking};
use super::layout::{Layout, State, render_with_status};
use crate::app::imports::{ImportContext, ImportRequest, import};
use crate::auth::CurrentUser;
use crate::db::imports::{self as store, ImportLogEntry};
use crate::imports::{ImportError, ImportKind, ImportOptions, ImportReport};
use crate::trail::Actor;

/// How many imports the lists show.
const RECENT: i64 = 20;

impl From<ImportError> for AppError {
    fn from(e: ImportError) -> AppError {
        match e {
            ImportError::Db(db) => db.into(),
            other => AppError::invalid("file", other.to_string()),
        }
    }
}

/// Receives an upload chunk by chunk into a temporary file, refusing more than `limit` bytes.
struct Spool {
    file: tempfile::NamedTempFile,
    size: u64,
    limit: u64,
}

impl Spool {
    /// A new spool file in the server's spool directory (never the system's temp directory:
    /// a file left there by a crash would stay for ever; the server clears its own at start).
    fn new(state: &State, limit: u64) -> Result<Spool, AppError> {
        Ok(Spool {
            file: crate::imports::spool::file(&state.settings.spool_dir)
                .map_err(AppError::internal)?,
            size: 0,
            limit,
        })
    }

    /// Writes one chunk. Chunks are small (tens of KiB) and land in the page cache, so the
    /// write does not hold the worker noticeably.
    fn push(&mut self, chunk: &[u8]) -> Result<(), AppError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(AppError::PayloadTooLarge {
                limit: usize::try_from(self.limit).unwrap_or(usize::MAX),
            });
        }
        self.file.write_all(chunk).map_err(AppError::internal)
    }

    fn finish(mut self) -> Result<tempfile::NamedTempFile, AppError> {
        self.file.flush().map_err(AppError::internal)?;
        Ok(self.file)
    }
}

/// Runs the import of a spooled file off the async workers.
async fn run_import(
    state: &State,
    user: &CurrentUser,
    kind: ImportKind,
    file: tempfile::NamedTempFile,
    file_name: String,
    options: ImportOptions,
) -> Result<Result<ImportReport, ImportError>, AppError> {
    let state = state.clone();
    let actor = Actor::user(&user.email);
    let outcome = web::block(move || {
        let ctx = ImportContext {
            db: &state.db,
            policy: &state.policy,
            pseudonyms: &state.pseudonyms,
        };
        let result = import(
            &ctx,
            &ImportRequest {
                kind,
                path: file.path(),
                file_name: &file_name,
                options,
                rejected: None,
                actor: &actor,
            },
        );
        drop(file);
        result
    })
    .await?;
    match outcome {
        Err(ImportError::Db(e)) => Err(e.into()),
        other => Ok(other),
    }
}

fn parse_kind(raw: &str) -> Result<ImportKind, AppError> {
    ImportKind::parse(raw).map_err(|m| AppError::invalid("kind", m))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ImportQuery {
    /// Import the good rows and reject the bad ones, instead of importing nothing.
    skip_invalid: Option<bool>,
    /// Accept ids of customers who were erased.
    allow_erased: Option<bool>,
    /// The file's name, for the report, the import log and the trail.
    file_name: Option<String>,
}

/// A refused import: the error and the report naming each bad row.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ImportFailure {
    error: ErrorDetail,
    report: ImportReport,
}

/// Import a CSV file (the request body, `Content-Type: text/csv`) of customers, transactions
/// or consent events. All or nothing unless `skip_invalid=true`.
#[utoipa::path(post, path = "/api/v1/imports/{kind}", tag = "imports",
    params(("kind" = String, Path, description = "`customers`, `transactions` or `consents`"), ImportQuery),
    request_body(content = String, content_type = "text/csv"),
    responses(
        (status = 201, description = "Imported; the report", body = ImportReport),
        (status = 400, description = "The file has errors and nothing was imported", body = ImportFailure),
        (status = 413, description = "Larger than FAIRSEG_MAX_IMPORT_BYTES", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn import_api(
    state: State,
    user: CurrentUser,
    kind: web::Path<String>,
    q: web::Query<ImportQuery>,
    mut body: web::Payload,
) -> Result<HttpResponse, AppError> {
    let kind = parse_kind(&kind)?;
    let mut spool = Spool::new(&state, state.settings.max_import_bytes)?;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| AppError::from_payload("body", &e))?;
        spool.push(&chunk)?;
    }
    let file = spool.finish()?;
    let q = q.into_inner();
    let options = ImportOptions {
        skip_invalid: q.skip_invalid.unwrap_or(false),
        allow_erased: q.allow_erased.unwrap_or(false),
        limits: state.settings.import_limits,
    };
    let file_name = q
        .file_name
        .unwrap_or_else(|| format!("{}.csv", kind.as_str()));
    match run_import(&state, &user, kind, file, file_name, options).await? {
        Ok(report) => Ok(HttpResponse::Created().json(report)),
        Err(ImportError::Invalid(report)) => {
            let message = report.failure_summary();
            Ok(HttpResponse::BadRequest().json(ImportFailure {
                error: ErrorDetail {
                    code: "invalid_input".into(),
                    message,
                    field: Some("file".into()),
                },
                report: *report,
            }))
        }
        Err(other) => Err(other.into()),
    }
}

async fn recent(state: &State) -> Result<Vec<ImportLogEntry>, AppError> {
    let db = state.db.clone();
    blocking(move || db.read(|c| store::recent(c, RECENT))).await
}

/// The latest imports (20), newest first.
#[utoipa::path(get, path = "/api/v1/imports", tag = "imports",
    responses((status = 200, description = "The latest imports, newest first", body = [ImportLogEntry])),
    security(("bearer" = [])))]
pub async fn list_api(state: State) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(recent(&state).await?))
}

#[derive(Template)]
#[template(path = "customers/import.html")]
struct ImportPage {
    layout: Layout,
    kinds: Vec<&'static str>,
    kind: String,
    skip_invalid: bool,
    allow_erased: bool,
    report: Option<ImportReport>,
    /// Set when the import was refused.
    failure: Option<String>,
    recent: Vec<ImportLogEntry>,
}

async fn page_response(
    state: &State,
    user: &CurrentUser,
    status: StatusCode,
    form: FormState,
    report: Option<ImportReport>,
    failure: Option<String>,
) -> Result<HttpResponse, AppError> {
    let page = ImportPage {
        layout: Layout::new(state, Some(user), "Import", "/customers/import"),
        kinds: ImportKind::ALL.iter().map(|k| k.as_str()).collect(),
        kind: form.kind,
        skip_invalid: form.skip_invalid,
        allow_erased: form.allow_erased,
        report,
        failure,
        recent: recent(state).await?,
    };
    Ok(render_with_status(status, &page))
}

#[derive(Default)]
struct FormState {
    kind: String,
    skip_invalid: bool,
    allow_erased: bool,
}

pub async fn page(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    page_response(
        &state,
        &user,
        StatusCode::OK,
        FormState {
            kind: "customers".into(),
            ..FormState::default()
        },
        None,
        None,
    )
    .await
}

/// The upload form's submission (multipart; the CSRF token rides in the query string).
pub async fn upload(
    state: State,
    user: CurrentUser,
    mut form: actix_multipart::Multipart,
) -> Result<HttpResponse, AppError> {
    let mut fields = FormState::default();
    let mut file: Option<(tempfile::NamedTempFile, String)> = None;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| AppError::from_multipart("file", &e))?;
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            let file_name = field
                .content_disposition()
                .and_then(|d| d.get_filename())
                .unwrap_or("upload.csv")
                .to_string();
            let mut spool = Spool::new(&state, state.settings.max_import_bytes)?;
            while let Some(chunk) = field.next().await {
                let chunk = chunk.map_err(|e| AppError::from_multipart("file", &e))?;
                spool.push(&chunk)?;
            }
            file = Some((spool.finish()?, file_name));
        } else {
            let mut value = Vec::new();
            while let Some(chunk) = field.next().await {
                let chunk = chunk.map_err(|e| AppError::from_multipart(&name, &e))?;
                if value.len() + chunk.len() > 1024 {
                    return Err(AppError::invalid(&name, "the field is too long"));
                }
                value.extend_from_slice(&chunk);
            }
            let value = String::from_utf8_lossy(&value).trim().to_string();
            match name.as_str() {
                "kind" => fields.kind = value,
                "skip_invalid" => fields.skip_invalid = !value.is_empty(),
                "allow_erased" => fields.allow_erased = !value.is_empty(),
                _ => {}
            }
        }
    }
    let kind = match ImportKind::parse(&fields.kind) {
        Ok(k) => k,
        Err(m) => {
            return page_response(
                &state,
                &user,
                StatusCode::BAD_REQUEST,
                fields,
                None,
                Some(m),
            )
            .await;
        }
    };
    let Some((file, file_name)) = file else {
        return page_response(
            &state,
            &user,
            StatusCode::BAD_REQUEST,
            fields,
            None,
            Some("choose a CSV file to import".into()),
        )
        .await;
    };
    let options = ImportOptions {
        skip_invalid: fields.skip_invalid,
        allow_erased: fields.allow_erased,
        limits: state.settings.import_limits,
    };
    match run_import(&state, &user, kind, file, file_name, options).await? {
        Ok(report) => {
            page_response(&state, &user, StatusCode::OK, fields, Some(report), None).await
        }
        Err(ImportError::Invalid(report)) => {
            let summary = report.failure_summary();
            page_response(
                &state,
                &user,
                StatusCode::BAD_REQUEST,
                fields,
                Some(*report),
                Some(summary),
            )
            .await
        }
        Err(other) => {
            let message = other.to_string();
            page_response(
                &state,
                &user,
                StatusCode::BAD_REQUEST,
                fields,
                None,
                Some(message),
            )
            .await
        }
    }
}
