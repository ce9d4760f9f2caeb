//! The record of processing activities (GDPR Art. 30) as a page, a Markdown document and JSON.
//! The page and the Markdown are rendered from one view, so the download says what the page
//! says; names go through the label table (`format::label`).

use actix_web::{HttpResponse, web};
use askama::Template;

use super::error::AppError;
use super::format;
use super::layout::{Layout, State, render};
use crate::auth::CurrentUser;
use crate::policy::LegalBasis;
use crate::policy::record::Record;

pub struct CategoryView {
    pub title: &'static str,
    pub items: String,
    pub aggregate_only: bool,
    pub recipients: String,
    pub retention: String,
}

pub struct PurposeView {
    pub name: String,
    pub label: String,
    pub description: String,
    pub legal_basis: String,
    pub consent_validity: Option<String>,
    pub data_subjects: String,
    pub recipients: String,
    pub categories: Vec<CategoryView>,
    pub notes: Vec<String>,
}

/// The record in words.
pub struct RecordView {
    pub controller: String,
    pub contact: String,
    pub responsible: String,
    pub policy_name: String,
    pub policy_version: String,
    pub purposes: Vec<PurposeView>,
    pub measures: Vec<(&'static str, String)>,
    pub transfers: &'static str,
}

fn roles(names: &[String]) -> String {
    if names.is_empty() {
        return "no role".into();
    }
    names
        .iter()
        .map(|r| format::label(r))
        .collect::<Vec<_>>()
        .join(", ")
}

fn basis(b: LegalBasis, article: &str) -> String {
    let name = match b {
        LegalBasis::Consent => "consent",
        LegalBasis::LegitimateInterest => "legitimate_interest",
    };
    format!("{} ({article})", format::label(name))
}

pub fn view(r: &Record) -> RecordView {
    RecordView {
        controller: r.controller.name.clone(),
        contact: r.controller.contact.clone(),
        responsible: r.controller.responsible.clone(),
        policy_name: r.policy_name.clone(),
        policy_version: r.policy_version.clone(),
        purposes: r
            .purposes
            .iter()
            .map(|p| PurposeView {
                name: p.name.clone(),
                label: format::label(&p.name),
                description: p.description.clone(),
                legal_basis: basis(p.legal_basis, p.legal_basis_article),
                consent_validity: p
                    .consent_validity_days
                    .map(|d| format!("a grant lapses after {} days", format::int(d))),
                data_subjects: p.data_subjects.join(", "),
                recipients: roles(&p.recipients),
                categories: p
                    .categories
                    .iter()
                    .map(|c| CategoryView {
                        title: c.title,
                        items: c
                            .items
                            .iter()
                            .map(|i| format::label(i))
                            .collect::<Vec<_>>()
                            .join(", "),
                        aggregate_only: c.aggregate_only,
                        recipients: roles(&c.recipients),
                        retention: format!(
                            "{} days ({})",
                            format::int(c.retention.days),
                            c.retention.rule
                        ),
                    })
                    .collect(),
                notes: p.notes.clone(),
            })
            .collect(),
        measures: r
            .measures
            .iter()
            .map(|m| (m.title, m.detail.clone()))
            .collect(),
        transfers: r.transfers,
    }
}

async fn build(state: &State) -> Result<Record, AppError> {
    let (db, policy) = (state.db.clone(), state.policy.clone());
    Ok(web::block(move || crate::app::record::build(&db, &policy)).await??)
}

#[derive(Template)]
#[template(path = "policy/record.html")]
struct RecordHtml {
    layout: Layout,
    r: RecordView,
}

#[derive(Template)]
#[template(path = "policy/record.md")]
struct RecordMarkdown {
    r: RecordView,
}

pub async fn page(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let r = view(&build(&state).await?);
    Ok(render(&RecordHtml {
        layout: Layout::new(&state, Some(&user), "Record of processing", "/policy"),
        r,
    }))
}

pub async fn markdown(state: State) -> Result<HttpResponse, AppError> {
    let r = view(&build(&state).await?);
    let text = RecordMarkdown { r }.render().map_err(AppError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/markdown; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            "attachment; filename=\"record-of-processing.md\"",
        ))
        .body(text))
}

/// The record of processing activities (GDPR Art. 30) generated from the policy in force.
#[utoipa::path(get, path = "/api/v1/policy/record", tag = "policy",
    responses((status = 200, description = "The record of processing", body = Object)),
    security(("bearer" = [])))]
pub async fn api(state: State) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(build(&state).await?))
}
