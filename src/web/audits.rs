//! Fairness audits: history, the printable report (with its SVG chart of representation
//! ratios), the comparison with the previous run's audit, the compliance override, the publish
//! gate, and the same as JSON and CSV. Protected attributes appear only here: every route
//! needs `audits:read` (marketing does not have it) or a stronger permission.

use std::sync::{Arc, LazyLock};

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use super::charts::{self, RatioChart};
use super::error::{AppError, blocking};
use super::layout::{Layout, State, render, see_other};
use super::signoffs::{SignoffBox, SignoffView, signoff_items};
use crate::app::audits::{self, AuditError, Audited, Gate, Listed, Published, StoredAudit};
use crate::app::kept::Shown;
use crate::auth::CurrentUser;
use crate::db::audits::OverrideRow;
use crate::fairness::audit::AttributeReport;
use crate::fairness::summary::{SummaryLine, summarise};
use crate::fairness::suppression::Suppression;
use crate::fairness::{AuditReport, Verdict};
use crate::policy::Permission;
use crate::trail::Actor;

impl From<AuditError> for AppError {
    fn from(e: AuditError) -> AppError {
        match e {
            e @ (AuditError::RunNotFound(_) | AuditError::AuditNotFound(_)) => {
                AppError::Missing(e.to_string())
            }
            e @ (AuditError::WrongState { .. }
            | AuditError::Gate { .. }
            | AuditError::NothingToOverride { .. }
            | AuditError::NoMembers(_)) => AppError::Conflict(e.to_string()),
            e @ AuditError::ShortJustification(_) => {
                AppError::invalid("justification", e.to_string())
            }
            AuditError::Db(e) => e.into(),
            other => AppError::internal(other),
        }
    }
}

/// An override as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OverrideJson {
    pub id: i64,
    pub by: String,
    pub justification: String,
    #[schema(value_type = String)]
    pub at: NaiveDateTime,
}

impl From<&OverrideRow> for OverrideJson {
    fn from(o: &OverrideRow) -> Self {
        OverrideJson {
            id: o.id,
            by: o.overridden_by.clone(),
            justification: o.justification.clone(),
            at: o.overridden_at,
        }
    }
}

/// An audit as JSON: its identity, then the report (attributes with `attribute`, `groups`,
/// `segments`, `table`, `chi_square`, `dof`, `p_value`, `p_value_adjusted`, `cramers_v`,
/// `cramers_v_corrected`, `verdict`, `reason`, ...; `proxies`; overall `verdict` and
/// `reason`), its overrides, and whether the run may be published.
#[derive(Debug, Clone, Serialize)]
pub struct AuditJson {
    pub id: i64,
    pub run_id: i64,
    pub run_status: String,
    pub policy_version: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub duration_ms: i64,
    /// The strategies changed after the audit: its four-fifths result is stale.
    pub stale_strategies: bool,
    pub overrides: Vec<OverrideJson>,
    /// The gate would let the run be published (verdict pass or warn, or overridden).
    pub publishable: bool,
    #[serde(flatten)]
    pub report: AuditReport,
}

impl AuditJson {
    pub fn of(a: &StoredAudit) -> AuditJson {
        AuditJson {
            id: a.row.id,
            run_id: a.row.run_id,
            run_status: a.run.status.to_string(),
            policy_version: a.row.policy_version.clone(),
            created_by: a.row.created_by.clone(),
            created_at: a.row.created_at,
            duration_ms: a.row.duration_ms,
            stale_strategies: a.stale_strategies,
            overrides: a.overrides.iter().map(OverrideJson::from).collect(),
            publishable: a.gate().publishable(),
            report: (*a.report).clone(),
        }
    }
}

/// One audit in the history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditSummary {
    pub id: i64,
    pub run_id: i64,
    #[schema(value_type = String)]
    pub verdict: Verdict,
    pub reason: String,
    pub members: i64,
    pub policy_version: String,
    pub created_by: String,
    #[schema(value_type = String)]
    pub created_at: NaiveDateTime,
    pub overridden: bool,
}

fn summaries(listed: Vec<Listed>) -> Vec<AuditSummary> {
    listed
        .into_iter()
        .map(
            |Listed {
                 head: h,
                 verdict,
                 overridden,
             }| AuditSummary {
                overridden,
                id: h.id,
                run_id: h.run_id,
                verdict,
                reason: h.reason,
                members: h.members,
                policy_version: h.policy_version,
                created_by: h.created_by,
                created_at: h.created_at,
            },
        )
        .collect()
}

const HISTORY_LIMIT: i64 = 200;

async fn history(state: &State) -> Result<Vec<AuditSummary>, AppError> {
    let db = state.db.clone();
    let listed = blocking(move || audits::history(&db, HISTORY_LIMIT)).await?;
    Ok(summaries(listed))
}

async fn load(state: &State, id: i64) -> Result<StoredAudit, AppError> {
    let db = state.db.clone();
    blocking(move || audits::load(&db, id)).await
}

fn actor(user: &CurrentUser) -> Actor {
    Actor::user(&user.email)
}

// ---------------------------------------------------------------------------------------------
// Pages

#[derive(Template)]
#[template(path = "audits/index.html")]
struct HistoryHtml {
    layout: Layout,
    audits: Vec<AuditSummary>,
}

pub async fn list_page(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let audits = history(&state).await?;
    Ok(render(&HistoryHtml {
        layout: Layout::new(&state, Some(&user), "Fairness audits", "/audits"),
        audits,
    }))
}

/// A table cell as shown: a count, or a mark saying it is suppressed and why.
pub struct CellView {
    pub text: String,
    pub suppressed: bool,
    pub title: &'static str,
}

fn cell(count: Option<u64>, s: Suppression, min_cell: u64) -> CellView {
    match (count, s) {
        (Some(c), Suppression::None) => CellView {
            text: c.to_string(),
            suppressed: false,
            title: "",
        },
        // Often a count in the hundreds: say that it is hidden to protect another cell, not
        // because it is small.
        (_, Suppression::Complementary) => CellView {
            text: "hidden".into(),
            suppressed: true,
            title: "hidden so that a small count elsewhere cannot be worked out from the totals",
        },
        _ => CellView {
            text: format!("< {min_cell}"),
            suppressed: true,
            title: "fewer members than the policy's minimum cell size: suppressed",
        },
    }
}

pub struct RowView {
    pub label: String,
    pub cells: Vec<CellView>,
    pub total: String,
}

pub struct RateView {
    pub group: String,
    pub rate: String,
    pub ratio: String,
    pub note: String,
}

pub struct FourFifthsView {
    pub reference: String,
    pub limit: String,
    pub rates: Vec<RateView>,
}

/// A p-value as people read it (`< 0.001`, `0.82`).
fn pval(x: Option<f64>) -> String {
    x.map_or_else(|| "—".into(), super::format::p_value)
}

fn fmt(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(x) if x != 0.0 && x.abs() < 1e-4 => {
            if x > 0.0 {
                "< 0.0001".into()
            } else {
                "> -0.0001".into()
            }
        }
        Some(x) => format!("{x:.digits$}"),
        None => "—".into(),
    }
}

pub struct AttributeView {
    pub anchor: String,
    pub name: String,
    pub verdict: String,
    pub reason: String,
    pub stats: Vec<(&'static str, String)>,
    pub groups: Vec<String>,
    pub rows: Vec<RowView>,
    pub group_totals: Vec<CellView>,
    pub total: String,
    pub chart: RatioChart,
    pub four_fifths: Option<FourFifthsView>,
    pub balance: String,
    /// An intersection of two attributes: its details are collapsed by default.
    pub intersection: bool,
}

/// An attribute's own reason, then what each feature standing in for it makes of the verdict.
fn with_proxies(reason: &str, proxies: &[crate::fairness::verdict::Decision]) -> String {
    proxies.iter().fold(reason.to_string(), |text, d| {
        format!(
            "{text} Proxy ({}): {}.",
            crate::web::format::verdict(d.verdict),
            d.reason
        )
    })
}

/// The anchor of an attribute's section on the report.
fn anchor(attribute: &str) -> String {
    attribute
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn attribute_view(
    report: &AuditReport,
    a: &AttributeReport,
    names: &dyn Fn(u32) -> String,
) -> AttributeView {
    let t = &a.table;
    let method = match a.p_value_method {
        Some(crate::fairness::verdict::PValueMethod::MonteCarlo) => {
            "Monte-Carlo (more than 20% of expected counts below 5)"
        }
        Some(crate::fairness::verdict::PValueMethod::Asymptotic) => "chi-square distribution",
        None => "not tested",
    };
    let stats = vec![
        ("Chi-square", fmt(a.chi_square, 2)),
        (
            "Degrees of freedom",
            a.dof.map(|d| d.to_string()).unwrap_or("—".into()),
        ),
        ("p-value", pval(a.p_value)),
        ("p-value from", method.to_string()),
        (
            "p-value adjusted (Benjamini-Hochberg)",
            pval(a.p_value_adjusted),
        ),
        ("Cramér's V", fmt(a.cramers_v, 3)),
        ("Cramér's V, bias-corrected", fmt(a.cramers_v_corrected, 3)),
        (
            "95% interval of corrected V",
            match a.cramers_v_ci {
                Some(iv) => format!("{:.3} – {:.3}", iv.lower, iv.upper),
                None => "—".into(),
            },
        ),
    ];
    let rows = a
        .segments
        .iter()
        .enumerate()
        .map(|(i, &s)| RowView {
            label: names(s),
            cells: (0..a.groups.len())
                .map(|j| cell(t.counts[i][j], t.suppressed[i][j], t.min_cell_size))
                .collect(),
            total: t.segment_totals[i].to_string(),
        })
        .collect();
    let four_fifths = a.four_fifths.as_ref().map(|ff| FourFifthsView {
        reference: ff.reference_group.clone(),
        limit: format!("{:.2}", ff.limit),
        rates: ff
            .rates
            .iter()
            .map(|r| RateView {
                group: r.group.clone(),
                rate: if r.suppressed {
                    "suppressed".into()
                } else {
                    fmt(r.rate, 3)
                },
                ratio: if r.suppressed {
                    "suppressed".into()
                } else {
                    fmt(r.ratio, 3)
                },
                note: if r.violation {
                    "below the four-fifths limit".into()
                } else if !r.eligible {
                    "too few members to judge".into()
                } else {
                    String::new()
                },
            })
            .collect(),
    });
    let balance = if a.balance.minimum_suppressed {
        "suppressed".into()
    } else {
        match (a.balance.minimum, a.balance.minimum_segment) {
            (Some(b), Some(s)) => format!("{b:.3} (in {})", names(s)),
            _ => "—".into(),
        }
    };
    AttributeView {
        anchor: anchor(&a.attribute),
        name: crate::format::label(&a.attribute),
        verdict: report.attribute_verdict(a).to_string(),
        reason: with_proxies(&a.reason, &report.proxy_decisions(&a.attribute)),
        stats,
        groups: a.groups.clone(),
        rows,
        group_totals: t
            .group_totals
            .iter()
            .zip(&t.group_totals_suppressed)
            .map(|(&c, &s)| cell(c, s, t.min_cell_size))
            .collect(),
        total: t.total.to_string(),
        chart: charts::representation(a, names),
        four_fifths,
        balance,
        intersection: a
            .attribute
            .contains(crate::fairness::groups::INTERSECTION_SEPARATOR),
    }
}

pub struct ProxyView {
    pub feature: String,
    pub attribute: String,
    pub measure: &'static str,
    pub value: String,
    pub flagged: bool,
    /// `warn` or `fail` where the proxy rule raised the verdict.
    pub verdict: Option<String>,
}

/// Everything the report page shows of one audit.
pub struct ReportView {
    pub id: i64,
    pub run_id: i64,
    pub run_status: String,
    pub algorithm: String,
    pub created_at: String,
    pub created_by: String,
    pub policy_version: String,
    pub members: u64,
    pub verdict: String,
    pub verdict_words: &'static str,
    pub reason: String,
    pub stale: bool,
    pub suppression_complete: bool,
    pub min_cell_size: u64,
    pub attributes: Vec<AttributeView>,
    pub proxies: Vec<ProxyView>,
    pub overrides: Vec<OverrideRow>,
    pub publishable: bool,
    pub needs_override: bool,
    /// Headline caveats of the verdict.
    pub caveats: Vec<&'static str>,
    /// "overridden by NAME on DATE: publishable", once a compliance officer has overridden.
    pub override_note: Option<String>,
    /// The run's status as a reader should see it: `published (override)` when the gate was
    /// passed by an override.
    pub run_status_label: String,
    /// Roles that may publish the run (policy permission `segments:publish`).
    pub publishers: String,
    /// Consent-selection bias: the headline, then one sentence per attribute.
    pub selection_headline: Option<String>,
    pub selection_lines: Vec<String>,
    /// The one-screen summary: per attribute (its anchor) one sentence.
    pub summary: Vec<(String, SummaryLine)>,
    /// The significance level a gap must pass to be stated.
    pub alpha: String,
}

fn verdict_words(v: crate::fairness::Verdict) -> &'static str {
    use crate::fairness::Verdict::*;
    match v {
        Pass => {
            "Pass: segment membership does not depend on a protected attribute to a degree that matters."
        }
        Warn => {
            "Warning: the segments show some dependence on a protected attribute, directly or through a feature that stands in for one; review it before acting on the segments."
        }
        Inconclusive => {
            "Inconclusive: the data cannot rule a large dependence in or out; the run cannot be published without a written override."
        }
        Fail => {
            "Fail: the segments depend on a protected attribute, directly or through a feature that stands in for one; the run cannot be published without a written override."
        }
    }
}

pub(crate) fn report_view(a: &StoredAudit, policy: &crate::policy::Policy) -> ReportView {
    let names = |s: u32| match a.segment_names.get(&(s as i32)) {
        Some(n) => format!("{s} {n}"),
        None => format!("Segment {s}"),
    };
    let r = &a.report;
    ReportView {
        id: a.row.id,
        run_id: a.row.run_id,
        run_status: a.run.status.to_string(),
        algorithm: a.run.algorithm.clone(),
        created_at: format!("{} UTC", super::format::datetime(a.row.created_at)),
        created_by: a.row.created_by.clone(),
        policy_version: a.row.policy_version.clone(),
        members: r.members,
        verdict: r.verdict.to_string(),
        verdict_words: verdict_words(r.verdict),
        reason: r.reason.clone(),
        stale: a.stale_strategies,
        suppression_complete: r.suppression_complete,
        min_cell_size: r.thresholds.min_cell_size,
        attributes: r
            .attributes
            .iter()
            .map(|x| attribute_view(r, x, &names))
            .collect(),
        summary: r
            .attributes
            .iter()
            .map(|x| (anchor(&x.attribute), summarise(r, x, &names)))
            .collect(),
        alpha: format!("{}", r.thresholds.alpha),
        proxies: r
            .proxies
            .iter()
            .map(|p| ProxyView {
                feature: p.feature.clone(),
                attribute: p.attribute.clone(),
                measure: match p.measure {
                    crate::fairness::proxies::ProxyMeasure::CramersV => "Cramér's V",
                    crate::fairness::proxies::ProxyMeasure::CorrelationRatio => {
                        "correlation ratio η"
                    }
                },
                value: format!("{:.3}", p.value),
                flagged: p.flagged,
                verdict: p.verdict.map(|v| v.to_string()),
            })
            .collect(),
        overrides: a.overrides.clone(),
        publishable: a.gate().publishable(),
        needs_override: audits::needs_override(r.verdict),
        caveats: r.caveats.iter().map(|c| c.text()).collect(),
        override_note: a.overrides.last().map(|o| {
            format!(
                "Overridden by {} on {}: publishable",
                o.overridden_by,
                o.overridden_at.format("%Y-%m-%d %H:%M UTC")
            )
        }),
        run_status_label: run_status_label(
            a.run.status.as_str(),
            r.verdict,
            !a.overrides.is_empty(),
        ),
        publishers: policy.roles_with(Permission::SegmentsPublish).join(", "),
        selection_headline: r.consent_selection.as_ref().map(|c| c.headline.clone()),
        selection_lines: r
            .consent_selection
            .iter()
            .flat_map(|c| c.attributes.iter().map(|a| a.sentence.clone()))
            .collect(),
    }
}

/// A run's status with the way it got past the gate: a run published on an override says so
/// wherever its status is shown, never plain "published" beside "cannot be published".
pub fn run_status_label(status: &str, verdict: Verdict, overridden: bool) -> String {
    if status == "published" && Gate::decide(verdict, overridden) == Gate::Overridden {
        "published (override)".into()
    } else {
        status.to_owned()
    }
}

#[derive(Template)]
#[template(path = "audits/report.html")]
struct ReportHtml<'a> {
    layout: Layout,
    a: &'a ReportView,
    can_override: bool,
    can_publish: bool,
    error: Option<String>,
    notice: Option<String>,
    signoffs: super::signoffs::SignoffBox,
}

#[derive(Deserialize, Default)]
pub struct ReportQuery {
    notice: Option<String>,
}

pub async fn report_page(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
    q: web::Query<ReportQuery>,
) -> Result<HttpResponse, AppError> {
    report_with(
        &state,
        &user,
        path.into_inner(),
        None,
        q.into_inner().notice,
    )
    .await
}

/// The report page, with the reason a form on it was refused shown on the page (answered
/// with `409 Conflict`, nothing changed) instead of being carried in the URL.
pub async fn report_with(
    state: &State,
    user: &CurrentUser,
    audit_id: i64,
    error: Option<String>,
    notice: Option<String>,
) -> Result<HttpResponse, AppError> {
    let shown = {
        let state = state.clone();
        blocking(move || report_data(&state, audit_id)).await?
    };
    let (report, items, refusal) = &*shown;
    let signoffs = SignoffBox::for_user(items.clone(), refusal.clone(), user);
    let status = if error.is_some() {
        actix_web::http::StatusCode::CONFLICT
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(crate::web::layout::render_with_status(
        status,
        &ReportHtml {
            signoffs,
            layout: Layout::new(
                state,
                Some(user),
                &format!("Fairness audit {audit_id}"),
                "/audits",
            ),
            can_override: user.can(Permission::AuditsOverride),
            can_publish: user.can(Permission::SegmentsPublish),
            a: report,
            error,
            notice,
        },
    ))
}

/// The report page's data: the report, its sign-offs checked against their hashes and the
/// live report, and why it cannot be signed (if it cannot).
type ReportData = Arc<(ReportView, Vec<SignoffView>, Option<String>)>;

/// The report page's data, read on one blocking hop and kept per process while the database
/// shows the same data (`Shown`): a changed sign-off, override or report is a write, so it is
/// checked again on the next view.
fn report_data(state: &State, audit_id: i64) -> Result<ReportData, AppError> {
    static SHOWN: LazyLock<Shown<(String, i64), ReportData>> = LazyLock::new(Shown::default);
    let (db, policy) = (&state.db, &state.policy);
    SHOWN.get_or_compute(db, (db.url().to_string(), audit_id), |_| {
        let audit = audits::load(db, audit_id)?;
        let (items, refusal) = signoff_items(db, policy, &audit)?;
        Ok((
            Arc::new((report_view(&audit, policy), items, refusal)),
            None,
        ))
    })
}

#[derive(Template)]
#[template(path = "audits/compare.html")]
struct CompareHtml {
    layout: Layout,
    a: ReportView,
    b: Option<ReportView>,
    rows: Vec<CompareRow>,
}

pub struct CompareRow {
    pub attribute: String,
    pub current: [String; 4],
    pub previous: [String; 4],
}

fn compare_cells(a: Option<&AttributeReport>) -> [String; 4] {
    match a {
        Some(a) => [
            a.verdict.to_string(),
            fmt(a.cramers_v_corrected, 3),
            pval(a.p_value_adjusted),
            if a.balance.minimum_suppressed {
                "suppressed".into()
            } else {
                fmt(a.balance.minimum, 3)
            },
        ],
        None => ["not audited".into(), "—".into(), "—".into(), "—".into()],
    }
}

pub async fn compare_page(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let db = state.db.clone();
    let (current, previous) = blocking(move || audits::with_previous(&db, id)).await?;
    let mut names: Vec<String> = current
        .report
        .attributes
        .iter()
        .map(|a| a.attribute.clone())
        .collect();
    if let Some(p) = &previous {
        for a in &p.report.attributes {
            if !names.contains(&a.attribute) {
                names.push(a.attribute.clone());
            }
        }
    }
    let find = |s: &StoredAudit, n: &str| -> Option<AttributeReport> {
        s.report
            .attributes
            .iter()
            .find(|a| a.attribute == n)
            .cloned()
    };
    let rows = names
        .iter()
        .map(|n| CompareRow {
            attribute: n.clone(),
            current: compare_cells(find(&current, n).as_ref()),
            previous: compare_cells(previous.as_ref().and_then(|p| find(p, n)).as_ref()),
        })
        .collect();
    Ok(render(&CompareHtml {
        layout: Layout::new(
            &state,
            Some(&user),
            &format!("Audit {id} against the previous run"),
            "/audits",
        ),
        a: report_view(&current, &state.policy),
        b: previous.as_ref().map(|p| report_view(p, &state.policy)),
        rows,
    }))
}

pub async fn csv_download(state: State, path: web::Path<i64>) -> Result<HttpResponse, AppError> {
    let audit = load(&state, path.into_inner()).await?;
    Ok(csv_response(&audit))
}

fn csv_response(audit: &StoredAudit) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"fairness-audit-{}-run-{}.csv\"",
                audit.row.id, audit.row.run_id
            ),
        ))
        .body(audit.csv())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct OverrideForm {
    /// Why publishing is acceptable despite the verdict (at least 20 characters).
    justification: String,
    /// `yes`: the officer ticked that they take responsibility for the override.
    #[serde(default)]
    confirm: Option<String>,
}

/// The confirmation a destructive form carries: a ticked box (`confirm=yes`).
#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    confirm: Option<String>,
}

/// Refuses a destructive form whose confirmation box was not ticked.
pub fn require_confirmation(confirm: Option<&str>, what: &str) -> Result<(), AppError> {
    if confirm == Some("yes") {
        Ok(())
    } else {
        Err(AppError::invalid(
            "confirm",
            format!("{what}: tick the confirmation box first"),
        ))
    }
}

fn with_message(path: &str, key: &str, message: &str) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.append_pair(key, message);
    format!("{path}?{}", s.finish())
}

pub async fn override_submit(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
    form: web::Form<OverrideForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let (db, policy, actor) = (state.db.clone(), state.policy.clone(), actor(&user));
    let form = form.into_inner();
    require_confirmation(form.confirm.as_deref(), "recording an override")?;
    let justification = form.justification;
    let result =
        web::block(move || audits::override_audit(&db, &policy, &actor, id, &justification))
            .await?;
    let page = format!("/audits/{id}");
    match result {
        Ok(_) => Ok(see_other(&with_message(
            &page,
            "notice",
            "Override recorded.",
        ))),
        Err(e @ (AuditError::ShortJustification(_) | AuditError::NothingToOverride { .. })) => {
            report_with(&state, &user, id, Some(e.to_string()), None).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn publish(
    state: &State,
    user: &CurrentUser,
    run_id: i64,
) -> Result<Result<Published, AuditError>, AppError> {
    let (db, policy, actor) = (state.db.clone(), state.policy.clone(), actor(user));
    Ok(web::block(move || audits::publish_run(&db, &policy, &actor, run_id)).await?)
}

pub async fn publish_submit(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
    form: web::Form<ConfirmForm>,
) -> Result<HttpResponse, AppError> {
    let run_id = path.into_inner();
    require_confirmation(form.confirm.as_deref(), "publishing")?;
    let result = publish(&state, &user, run_id).await?;
    let db = state.db.clone();
    let latest = blocking(move || audits::latest_of_run(&db, run_id)).await?;
    let page = match latest {
        Some(id) => format!("/audits/{id}"),
        None => "/audits".into(),
    };
    match (result, latest) {
        (Ok(p), _) => Ok(see_other(&with_message(
            &page,
            "notice",
            &format!("Run {} published.", p.run_id),
        ))),
        (Err(e @ (AuditError::Gate { .. } | AuditError::WrongState { .. })), Some(id)) => {
            report_with(&state, &user, id, Some(e.to_string()), None).await
        }
        (Err(e), _) => Err(e.into()),
    }
}

pub async fn reaudit_submit(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let row = reaudit(&state, &user, path.into_inner()).await?;
    Ok(see_other(&with_message(
        &format!("/audits/{}", row.id),
        "notice",
        "Audited again.",
    )))
}

async fn reaudit(state: &State, user: &CurrentUser, run_id: i64) -> Result<Audited, AppError> {
    let (db, policy, actor) = (state.db.clone(), state.policy.clone(), actor(user));
    blocking(move || audits::audit_run(&db, &policy, &actor, run_id)).await
}

// ---------------------------------------------------------------------------------------------
// API

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only the audits of this run.
    run_id: Option<i64>,
}

/// Fairness audits, newest first (at most 200), without their reports.
#[utoipa::path(get, path = "/api/v1/audits", tag = "audits",
    params(ListQuery),
    responses((status = 200, description = "Audit history", body = [AuditSummary])),
    security(("bearer" = [])))]
pub async fn list_api(state: State, q: web::Query<ListQuery>) -> Result<HttpResponse, AppError> {
    let mut audits = history(&state).await?;
    if let Some(run) = q.run_id {
        audits.retain(|a| a.run_id == run);
    }
    Ok(HttpResponse::Ok().json(audits))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct FormatQuery {
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// One audit: per attribute and intersection the table (small counts suppressed), the test,
/// effect sizes, representation, four-fifths, balance and verdict; the proxies; the overall
/// verdict; overrides. `?format=csv` gives the same as CSV, one figure per line.
#[utoipa::path(get, path = "/api/v1/audits/{id}", tag = "audits",
    params(("id" = i64, Path, description = "Audit id"), FormatQuery),
    responses(
        (status = 200, description = "The audit", body = Object),
        (status = 404, description = "No such audit", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_api(
    state: State,
    path: web::Path<i64>,
    q: web::Query<FormatQuery>,
) -> Result<HttpResponse, AppError> {
    let audit = load(&state, path.into_inner()).await?;
    match q.format.as_deref() {
        None | Some("json") => Ok(HttpResponse::Ok().json(AuditJson::of(&audit))),
        Some("csv") => Ok(csv_response(&audit)),
        Some(other) => Err(AppError::invalid(
            "format",
            format!("`{other}` is not a format: use json or csv"),
        )),
    }
}

/// Record a compliance override of a failed or inconclusive audit, with a written
/// justification (at least 20 characters). It is in the trail and printed on the report.
#[utoipa::path(post, path = "/api/v1/audits/{id}/override", tag = "audits",
    params(("id" = i64, Path, description = "Audit id")),
    request_body = OverrideForm,
    responses(
        (status = 201, description = "The override", body = OverrideJson),
        (status = 400, description = "Justification too short", body = super::error::ErrorBody),
        (status = 409, description = "The audit passed or warned: nothing to override", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn override_api(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
    body: web::Json<OverrideForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let (db, policy, actor) = (state.db.clone(), state.policy.clone(), actor(&user));
    let justification = body.into_inner().justification;
    let row = web::block(move || audits::override_audit(&db, &policy, &actor, id, &justification))
        .await??;
    Ok(HttpResponse::Created().json(OverrideJson::from(&row)))
}

/// Publish an audited run: its latest audit must pass or warn, or carry a compliance
/// override. The run published before is retired. If the strategies changed since the
/// audit, the run is audited again first.
#[utoipa::path(post, path = "/api/v1/segmentations/{id}/publish", tag = "audits",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "Published", body = Published),
        (status = 409, description = "Refused by the gate or not audited", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn publish_api(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let published = publish(&state, &user, path.into_inner()).await??;
    Ok(HttpResponse::Ok().json(published))
}

/// Audit a run again now (e.g. after its strategies changed); returns the new audit.
#[utoipa::path(post, path = "/api/v1/segmentations/{id}/audit", tag = "audits",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 201, description = "The new audit", body = Object),
        (status = 409, description = "The run is not finished", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn reaudit_api(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let row = reaudit(&state, &user, path.into_inner()).await?;
    let audit = load(&state, row.id).await?;
    Ok(HttpResponse::Created().json(AuditJson::of(&audit)))
}
