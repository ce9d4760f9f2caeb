//! Signed fairness reports: the sign-off form and API, the "Signed off" box of the report
//! page, the frozen report itself and its JSON. Each view says whether the stored report still
//! matches its hash and whether the live audit still equals it. Signing needs `audits:sign`;
//! reading needs `audits:read`.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use super::audits::{AuditJson, ReportView, report_view};
use super::error::AppError;
use super::format;
use super::layout::{Layout, State, render, see_other};
use crate::app::audits::StoredAudit;
use crate::app::signoffs::{self as app, Live, Presenter, Signature, SignoffError, SignoffStatus};
use crate::auth::CurrentUser;
use crate::db::Db;
use crate::db::audits::{AuditRow, OverrideRow};
use crate::fairness::signoff::canonical_json;
use crate::policy::{Permission, Policy};

impl From<SignoffError> for AppError {
    fn from(e: SignoffError) -> AppError {
        match e {
            e @ SignoffError::Statement(_) => AppError::invalid("statement", e.to_string()),
            e @ (SignoffError::AuditNotFound(_) | SignoffError::SignoffNotFound { .. }) => {
                AppError::Missing(e.to_string())
            }
            e @ (SignoffError::Superseded { .. }
            | SignoffError::Stale { .. }
            | SignoffError::ChangedWhileSigning(_)) => AppError::Conflict(e.to_string()),
            SignoffError::Audit(e) => e.into(),
            SignoffError::Db(e) => e.into(),
            e @ SignoffError::Render(_) => AppError::internal(e),
        }
    }
}

/// The audit's JSON and printable page, as the API and the report page give them.
pub struct WebPresenter<'a> {
    pub policy: &'a Policy,
}

#[derive(Template)]
#[template(path = "audits/signed.html")]
struct SignedHtml<'a> {
    a: ReportView,
    s: &'a Signature,
}

impl Presenter for WebPresenter<'_> {
    fn canonical_json(&self, audit: &StoredAudit) -> Arc<str> {
        kept_canonical_json(audit)
    }

    fn printable(&self, audit: &StoredAudit, signature: &Signature) -> Result<String, String> {
        SignedHtml {
            a: report_view(audit, self.policy),
            s: signature,
        }
        .render()
        .map_err(|e| e.to_string())
    }
}

/// Everything [`AuditJson::of`] reads of an audit, owned, so that a kept form can be checked
/// against the audit as it is now, byte for byte.
#[derive(PartialEq)]
struct JsonInputs {
    row: AuditRow,
    run_status: String,
    stale_strategies: bool,
    overrides: Vec<OverrideRow>,
}

impl JsonInputs {
    fn of(audit: &StoredAudit) -> JsonInputs {
        JsonInputs {
            row: audit.row.clone(),
            run_status: audit.run.status.to_string(),
            stale_strategies: audit.stale_strategies,
            overrides: audit.overrides.clone(),
        }
    }

    fn describe(&self, audit: &StoredAudit) -> bool {
        self.row == audit.row
            && self.run_status == audit.run.status.to_string()
            && self.stale_strategies == audit.stale_strategies
            && self.overrides == audit.overrides
    }
}

/// The audit's canonical JSON, kept per process for the newest form of each audit: building
/// it (a `Value` tree of the whole report, then sorted) was a third of the CPU of a view of a
/// signed report, and every view of it needs it to say whether the audit still equals what
/// was signed. The kept form is used only when every input it was built from is equal to the
/// audit's now (the stored report's bytes among them), so a changed run status, a new override
/// or a stored byte changed by hand is seen at the next view.
fn kept_canonical_json(audit: &StoredAudit) -> Arc<str> {
    const KEPT: usize = 64;
    type ByAudit = HashMap<i64, (JsonInputs, Arc<str>)>;
    static KEPT_JSON: LazyLock<Mutex<ByAudit>> = LazyLock::new(Default::default);
    if let Ok(kept) = KEPT_JSON.lock()
        && let Some((inputs, json)) = kept.get(&audit.row.id)
        && inputs.describe(audit)
    {
        return json.clone();
    }
    let value = serde_json::to_value(AuditJson::of(audit)).expect("an audit serialises");
    let json: Arc<str> = canonical_json(&value).into();
    if let Ok(mut kept) = KEPT_JSON.lock() {
        if kept.len() >= KEPT {
            kept.clear();
        }
        kept.insert(audit.row.id, (JsonInputs::of(audit), json.clone()));
    }
    json
}

/// A sign-off as the pages show it.
#[derive(Clone)]
pub struct SignoffView {
    pub seq: i32,
    pub signed_by: String,
    pub role: String,
    pub signed_at: String,
    pub statement: String,
    pub content_hash: String,
    pub intact: bool,
    /// "The stored report matches its hash." or what does not match.
    pub integrity: String,
    pub live_same: bool,
    /// Whether the live audit still equals the signed report, in words.
    pub live: String,
    pub href: String,
}

fn integrity_words(s: &SignoffStatus) -> String {
    let i = &s.integrity;
    if i.intact() {
        return "The stored report matches its hash: it is exactly the report that was signed."
            .into();
    }
    let mut what = Vec::new();
    if !i.json_matches {
        what.push("its JSON does not match its content hash");
    }
    if !i.html_matches {
        what.push("its printable page does not match its hash");
    }
    if i.trail_matches == Some(false) {
        what.push("its hashes differ from those the trail recorded at signing");
    }
    format!(
        "The stored report does not match its hash: it was altered after it was signed ({}).",
        what.join("; ")
    )
}

fn live_words(live: &Live) -> String {
    match live {
        Live::Same => "The live audit still reads exactly as signed.".into(),
        Live::Superseded { audit_id, at } => format!(
            "The audit has changed since it was signed: audited again on {} UTC (audit {audit_id}).",
            format::datetime(*at)
        ),
        Live::Changed { fields } => format!(
            "The audit has changed since it was signed: {} now read differently.",
            fields
                .iter()
                .map(|f| format::label_lower(f))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn view(s: &SignoffStatus) -> SignoffView {
    SignoffView {
        seq: s.row.seq,
        signed_by: s.row.signed_by.clone(),
        role: format::label(&s.row.signer_role),
        signed_at: format::datetime(s.row.signed_at),
        statement: s.row.statement.clone(),
        content_hash: s.row.content_hash.clone(),
        intact: s.integrity.intact(),
        integrity: integrity_words(s),
        live_same: s.live == Live::Same,
        live: live_words(&s.live),
        href: format!("/audits/{}/signoffs/{}", s.row.audit_id, s.row.seq),
    }
}

/// What the report page shows of sign-offs: each one checked, and the form (or why the audit
/// cannot be signed) for a user who may sign.
pub struct SignoffBox {
    pub items: Vec<SignoffView>,
    pub can_sign: bool,
    pub refusal: Option<String>,
    pub signer: String,
}

impl SignoffBox {
    /// The box as `user` sees it: the form only for those who may sign.
    pub fn for_user(items: Vec<SignoffView>, refusal: Option<String>, user: &CurrentUser) -> Self {
        SignoffBox {
            items,
            can_sign: user.can(Permission::AuditsSign),
            refusal,
            signer: user.email.clone(),
        }
    }
}

/// An audit's sign-offs, each checked against its hashes and the live report, and why the
/// audit cannot be signed (if it cannot), as the report page shows them to anyone.
pub fn signoff_items(
    db: &Db,
    policy: &Policy,
    audit: &StoredAudit,
) -> Result<(Vec<SignoffView>, Option<String>), SignoffError> {
    let presenter = WebPresenter { policy };
    let statuses = app::statuses(db, &presenter, audit)?;
    let refusal = match app::check_signable(db, audit) {
        Ok(()) => None,
        Err(e @ (SignoffError::Stale { .. } | SignoffError::Superseded { .. })) => {
            Some(format!("This audit cannot be signed: {e}."))
        }
        Err(e) => return Err(e),
    };
    Ok((statuses.iter().map(view).collect(), refusal))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignForm {
    /// What the officer reviewed and concludes (10 to 2000 characters after trimming).
    statement: String,
}

async fn sign(
    state: &State,
    user: &CurrentUser,
    audit_id: i64,
    statement: String,
) -> Result<Result<crate::db::signoffs::SignoffRow, SignoffError>, AppError> {
    let (db, policy) = (state.db.clone(), state.policy.clone());
    let signer = app::Signer {
        email: user.email.clone(),
        role: user.role.clone(),
    };
    Ok(web::block(move || {
        let presenter = WebPresenter { policy: &policy };
        app::sign(&db, &policy, &presenter, &signer, audit_id, &statement)
    })
    .await?)
}

fn with_message(path: &str, key: &str, message: &str) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.append_pair(key, message);
    format!("{path}?{}", s.finish())
}

/// The sign-off form: back to the report with a notice, or the report again with the reason
/// it was refused (nothing stored).
pub async fn sign_submit(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
    form: web::Form<SignForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let page = format!("/audits/{id}");
    match sign(&state, &user, id, form.into_inner().statement).await? {
        Ok(row) => Ok(see_other(&format!(
            "{}#signoff-{}",
            with_message(
                &page,
                "notice",
                "Signed off: the report is frozen with its hash."
            ),
            row.seq
        ))),
        Err(
            e @ (SignoffError::Statement(_)
            | SignoffError::Stale { .. }
            | SignoffError::Superseded { .. }
            | SignoffError::ChangedWhileSigning(_)),
        ) => super::audits::report_with(&state, &user, id, Some(e.to_string()), None).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "audits/signoff.html")]
struct SignoffHtml {
    layout: Layout,
    audit_id: i64,
    v: SignoffView,
    /// The stored printable report, when it is exactly what was signed.
    frozen: Option<String>,
}

async fn load_one(
    state: &State,
    audit_id: i64,
    seq: i32,
) -> Result<(StoredAudit, SignoffStatus), AppError> {
    let (db, policy) = (state.db.clone(), state.policy.clone());
    Ok(
        web::block(move || app::one(&db, &WebPresenter { policy: &policy }, audit_id, seq))
            .await??,
    )
}

/// The frozen report, served as stored, under a box that says whether it is intact.
pub async fn signoff_page(
    state: State,
    user: CurrentUser,
    path: web::Path<(i64, i32)>,
) -> Result<HttpResponse, AppError> {
    let (audit_id, seq) = path.into_inner();
    let (_, status) = load_one(&state, audit_id, seq).await?;
    Ok(render(&SignoffHtml {
        layout: Layout::new(
            &state,
            Some(&user),
            &format!("Signed report {seq} of audit {audit_id}"),
            "/audits",
        ),
        audit_id,
        v: view(&status),
        // Served as the server rendered it only when it is what was signed; anything else
        // in that column is not ours to put in a page.
        frozen: status
            .integrity
            .html_trusted()
            .then(|| status.row.report_html.clone()),
    }))
}

/// The signed report's JSON, byte for byte as stored (its sha256 is the content hash when it
/// is intact).
pub async fn signoff_json(
    state: State,
    path: web::Path<(i64, i32)>,
) -> Result<HttpResponse, AppError> {
    let (audit_id, seq) = path.into_inner();
    let (_, status) = load_one(&state, audit_id, seq).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"fairness-audit-{audit_id}-signed-{seq}.json\""),
        ))
        .insert_header(("X-Content-Hash", status.row.content_hash.clone()))
        .body(status.row.report_json))
}

/// A sign-off as the API shows it, with what was recomputed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignoffJson {
    pub audit_id: i64,
    pub seq: i32,
    pub signed_by: String,
    pub role: String,
    #[schema(value_type = String)]
    pub signed_at: chrono::NaiveDateTime,
    pub statement: String,
    pub policy_version: String,
    /// `sha256:<hex>` of the canonical JSON of the report as signed.
    pub content_hash: String,
    pub html_hash: String,
    /// The trail entry `audit.signed`.
    pub trail_seq: i64,
    /// The stored report still hashes to its recorded hashes (absent right after signing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intact: Option<bool>,
    /// `{"state": "same"}`, `{"state": "changed", "fields": [...]}` or
    /// `{"state": "superseded", "audit_id", "at"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub live: Option<Live>,
    pub report: String,
    pub json: String,
}

impl SignoffJson {
    fn of(row: &crate::db::signoffs::SignoffRow, checked: Option<&SignoffStatus>) -> SignoffJson {
        let report = format!("/audits/{}/signoffs/{}", row.audit_id, row.seq);
        SignoffJson {
            audit_id: row.audit_id,
            seq: row.seq,
            signed_by: row.signed_by.clone(),
            role: row.signer_role.clone(),
            signed_at: row.signed_at,
            statement: row.statement.clone(),
            policy_version: row.policy_version.clone(),
            content_hash: row.content_hash.clone(),
            html_hash: row.html_hash.clone(),
            trail_seq: row.trail_seq,
            intact: checked.map(|s| s.integrity.intact()),
            live: checked.map(|s| s.live.clone()),
            json: format!("{report}.json"),
            report,
        }
    }
}

/// Sign off an audit with a written statement: the report is frozen (canonical JSON and
/// printable page) with its content hash, recorded in the trail as `audit.signed`.
#[utoipa::path(post, path = "/api/v1/audits/{id}/signoffs", tag = "audits",
    params(("id" = i64, Path, description = "Audit id")),
    request_body = SignForm,
    responses(
        (status = 201, description = "The sign-off", body = SignoffJson),
        (status = 400, description = "Statement missing, too short or too long", body = super::error::ErrorBody),
        (status = 409, description = "The audit is stale or superseded", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn sign_api(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
    body: web::Json<SignForm>,
) -> Result<HttpResponse, AppError> {
    let row = sign(
        &state,
        &user,
        path.into_inner(),
        body.into_inner().statement,
    )
    .await??;
    Ok(HttpResponse::Created().json(SignoffJson::of(&row, None)))
}

/// The sign-offs of an audit, oldest first, each with whether the stored report is intact and
/// whether the live audit still equals it.
#[utoipa::path(get, path = "/api/v1/audits/{id}/signoffs", tag = "audits",
    params(("id" = i64, Path, description = "Audit id")),
    responses(
        (status = 200, description = "Sign-offs", body = [SignoffJson]),
        (status = 404, description = "No such audit", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_api(state: State, path: web::Path<i64>) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let (db, policy) = (state.db.clone(), state.policy.clone());
    let statuses = web::block(move || -> Result<_, SignoffError> {
        let audit = crate::app::audits::load(&db, id)?;
        app::statuses(&db, &WebPresenter { policy: &policy }, &audit)
    })
    .await??;
    Ok(HttpResponse::Ok().json(
        statuses
            .iter()
            .map(|s| SignoffJson::of(&s.row, Some(s)))
            .collect::<Vec<_>>(),
    ))
}
