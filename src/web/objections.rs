//! The objection check: every recorded activation export and member list replayed against the
//! consent ledger (page and API; the CLI is `fairseg check objections`).

use actix_web::HttpResponse;
use askama::Template;

use super::error::{AppError, blocking};
use super::layout::{Layout, State, render};
use crate::app::objections::{self, ObjectionCheck, ObjectionError};
use crate::auth::CurrentUser;
use crate::trail::Actor;

impl From<ObjectionError> for AppError {
    fn from(e: ObjectionError) -> AppError {
        match e {
            ObjectionError::Db(e) => e.into(),
        }
    }
}

async fn run(state: &State, user: &CurrentUser) -> Result<ObjectionCheck, AppError> {
    let (db, policy, actor) = (
        state.db.clone(),
        state.policy.clone(),
        Actor::user(&user.email),
    );
    blocking(move || objections::check_objections(&db, &policy, &actor)).await
}

/// Replays every disclosure against the ledger; `clean` is false and `leaks` lists each
/// customer included after withdrawing.
#[utoipa::path(get, path = "/api/v1/checks/objections", tag = "consent",
    responses((status = 200, description = "The check; `clean` is false when some disclosure included a customer after their objection or withdrawal")),
    security(("bearer" = [])))]
pub async fn api(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(run(&state, &user).await?))
}

struct LeakRow {
    disclosure: String,
    kind: &'static str,
    run_id: i64,
    disclosed_at: String,
    customer: String,
    purpose: String,
    withdrawn_at: String,
}

#[derive(Template)]
#[template(path = "trail/objections.html")]
struct ObjectionsPage {
    layout: Layout,
    clean: bool,
    disclosures: u64,
    inclusions: u64,
    events: u64,
    checked_at: String,
    leaks: Vec<LeakRow>,
}

pub async fn page(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let c = run(&state, &user).await?;
    let fmt = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let leaks = c
        .report
        .leaks
        .iter()
        .map(|l| LeakRow {
            disclosure: l.disclosure_id.to_string(),
            kind: match l.kind {
                crate::consent::objections::DisclosureKind::ActivationExport => "activation export",
                crate::consent::objections::DisclosureKind::MemberList => "member list",
            },
            run_id: l.run_id,
            disclosed_at: fmt(l.disclosed_at),
            customer: c
                .external_ids
                .get(&l.customer_id)
                .cloned()
                .unwrap_or_else(|| format!("internal {} (erased)", l.customer_id)),
            purpose: l.purpose.clone(),
            withdrawn_at: fmt(l.withdrawn_at),
        })
        .collect();
    Ok(render(&ObjectionsPage {
        layout: Layout::new(&state, Some(&user), "Objection check", "/trail"),
        clean: c.clean,
        disclosures: c.report.disclosures,
        inclusions: c.report.inclusions,
        events: c.report.events,
        checked_at: fmt(c.checked_at),
        leaks,
    }))
}
