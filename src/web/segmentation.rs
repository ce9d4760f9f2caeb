//! Segmentation in the browser and the API: runs (analysts: start, follow, compare), the
//! published segments' dashboard (marketing: profiles, map, valuation, viability, strategy),
//! member lists and activation exports (individual-level data: permission and trail).
//!
//! One submodule per group of pages: [`api`] (JSON), [`runs`] (analysts' pages), [`dashboard`]
//! (marketing's page and its forms), [`map`] (the segment map as SVG). The use cases behind
//! them are in `crate::app::runs`.

mod api;
mod dashboard;
mod map;
mod runs;

pub use api::*;
pub use dashboard::{
    DashboardQuery, ExportQuery, RenameForm, StrategyForm, dashboard, export_csv, rename_submit,
    strategy_submit,
};
pub use map::map_page;
pub use runs::{RunForm, compare_page, run_page, runs_page, runs_submit};

use actix_web::HttpResponse;
use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};

use super::error::{AppError, blocking};
use super::layout::State;
use crate::app::runs::{self as app, Reader, RunError, RunView, Strategy};
use crate::auth::CurrentUser;
use crate::db::segmentation::RunRow;
use crate::policy::Permission;
use crate::segmentation::settings::RunRequest;
use crate::trail::Actor;

impl From<RunError> for AppError {
    fn from(e: RunError) -> AppError {
        match e {
            RunError::Settings(s) => AppError::invalid(s.field(), s.to_string()),
            RunError::Segmentation(s) => AppError::InvalidInput {
                field: None,
                message: s.to_string(),
            },
            RunError::NotFound(id) => AppError::Missing(format!("there is no run {id}")),
            e @ RunError::NoSegment { .. } => AppError::Missing(e.to_string()),
            e @ RunError::WrongState { .. } => AppError::Conflict(e.to_string()),
            e @ (RunError::NoConsentedCustomers { .. } | RunError::TooFewSegments { .. }) => {
                AppError::Conflict(e.to_string())
            }
            e @ (RunError::Corrupt { .. } | RunError::CorruptCustomer(_)) => AppError::internal(e),
            RunError::Db(db) => db.into(),
        }
    }
}

/// Drafts and failed runs are for those who run segmentations; everyone with `segments:read`
/// sees published (and retired) runs.
fn reader(user: &CurrentUser) -> Reader {
    if user.can(Permission::SegmentsRun) {
        Reader::Analyst
    } else {
        Reader::Everyone
    }
}

/// A run's report and stored row, or 404 when the user cannot see it.
async fn run_and_view(
    state: &State,
    user: &CurrentUser,
    id: i64,
) -> Result<(RunView, RunRow), AppError> {
    let (db, policy, reader) = (state.db.clone(), state.policy.clone(), reader(user));
    blocking(move || app::view(&db, &policy, reader, id))
        .await?
        .ok_or_else(|| AppError::Missing(format!("there is no run {id}")))
}

async fn load_run(state: &State, user: &CurrentUser, id: i64) -> Result<RunView, AppError> {
    Ok(run_and_view(state, user, id).await?.0)
}

async fn published_id(state: &State) -> Result<Option<i64>, AppError> {
    let db = state.db.clone();
    blocking(move || app::published_id(&db)).await
}

async fn start_run(
    state: &State,
    user: &CurrentUser,
    request: RunRequest,
) -> Result<i64, AppError> {
    let (db, policy) = (state.db.clone(), state.policy.clone());
    let actor = Actor::user(&user.email);
    let id = blocking(move || app::create(&db, &policy, &actor, &request)).await?;
    state.jobs.submit(id);
    Ok(id)
}

/// A run's members (optionally one segment; with a channel, an activation export).
async fn read_members(
    state: &State,
    user: &CurrentUser,
    run_id: i64,
    segment: Option<i32>,
    channel: Option<String>,
) -> Result<Vec<(String, i32)>, AppError> {
    let (db, policy) = (state.db.clone(), state.policy.clone());
    let actor = Actor::user(&user.email);
    // Only published runs are visible to roles that cannot run segmentations.
    if reader(user) == Reader::Everyone {
        let db = state.db.clone();
        if blocking(move || app::run(&db, Reader::Everyone, run_id))
            .await?
            .is_none()
        {
            return Err(AppError::Missing(format!("there is no run {run_id}")));
        }
    }
    blocking(move || app::read_members(&db, &policy, &actor, run_id, segment, channel.as_deref()))
        .await
}

/// One page of a run's members and the cursor of the next page (see `read_members`).
async fn read_members_page(
    state: &State,
    user: &CurrentUser,
    run_id: i64,
    segment: Option<i32>,
    channel: Option<String>,
    page: app::PageRequest,
) -> Result<app::MemberPage, AppError> {
    let (db, policy) = (state.db.clone(), state.policy.clone());
    let actor = Actor::user(&user.email);
    if reader(user) == Reader::Everyone {
        let db = state.db.clone();
        if blocking(move || app::run(&db, Reader::Everyone, run_id))
            .await?
            .is_none()
        {
            return Err(AppError::Missing(format!("there is no run {run_id}")));
        }
    }
    blocking(move || {
        app::read_members_page(
            &db,
            &policy,
            &actor,
            run_id,
            segment,
            channel.as_deref(),
            page,
        )
    })
    .await
}

/// Members as `customer_id,segment`: CSV (a download named `file_name`) or JSON.
fn members_response(
    members: Vec<(String, i32)>,
    format: Option<&str>,
    file_name: String,
) -> Result<HttpResponse, AppError> {
    match format.unwrap_or("csv") {
        "json" => Ok(HttpResponse::Ok().json(
            members
                .into_iter()
                .map(|(customer_id, segment)| api::Member {
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

async fn record_strategy(
    state: &State,
    user: &CurrentUser,
    run_id: i64,
    segment: i32,
    strategy: Strategy,
) -> Result<(), AppError> {
    for (field, value) in [
        ("channel", &strategy.channel),
        ("offer", &strategy.offer),
        ("service_level", &strategy.service_level),
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
    let (db, policy, reader) = (state.db.clone(), state.policy.clone(), reader(user));
    let actor = Actor::user(&user.email);
    blocking(move || app::record_strategy(&db, &policy, &actor, reader, run_id, segment, &strategy))
        .await
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
    let (db, policy, reader) = (state.db.clone(), state.policy.clone(), reader(user));
    let actor = Actor::user(&user.email);
    blocking(move || app::rename_segment(&db, &policy, &actor, reader, run_id, segment, &name))
        .await
}

async fn compare(state: &State, a: i64, b: i64) -> Result<app::Comparison, AppError> {
    let (db, policy) = (state.db.clone(), state.policy.clone());
    blocking(move || app::compare(&db, &policy, a, b)).await
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
}
