//! Consent: the ledger API (record events, a customer's consents, coverage, preference links),
//! the compliance pages (coverage now and over time, a customer's history), and the customer's
//! own preference page reached by a signed link.

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{NaiveDateTime, TimeDelta};
use serde::{Deserialize, Serialize};

use super::charts::{self, BarSegment, CONSENT_SERIES as SERIES, Frame, HistoryChart};
use super::error::{AppError, blocking};
use super::layout::{Layout, State, render, see_other};
use crate::app::consent::{self as ledger, ConsentError, CustomerConsents, Recording, Who};
use crate::auth::CurrentUser;
use crate::consent::coverage::{ShownCount, Tally, month_ends, shown_row};
use crate::consent::link::{self, LinkClaims};
use crate::consent::{ConsentState, ConsentStatus};
use crate::customers::CustomerId;
use crate::db::consent::EventRow;
use crate::fairness::consent_selection::ConsentSelectionReport;
use crate::policy::{LegalBasis, Permission};
use crate::time::{format_instant, parse_instant};
use crate::trail::Actor;

impl From<ConsentError> for AppError {
    fn from(e: ConsentError) -> AppError {
        match e {
            e @ ConsentError::UnknownCustomer => AppError::Missing(e.to_string()),
            ConsentError::Invalid { field, message } => AppError::invalid(field, message),
            ConsentError::Db(e) => e.into(),
        }
    }
}

const MAX_TEXT: usize = 200;

fn customer_id(raw: &str) -> Result<CustomerId, AppError> {
    CustomerId::parse(raw).map_err(|m| AppError::invalid("customer_id", m))
}

fn instant(field: &str, raw: Option<&str>) -> Result<NaiveDateTime, AppError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(crate::db::now()),
        Some(raw) => parse_instant(raw).map_err(|m| AppError::invalid(field, m)),
    }
}

fn optional_text(field: &str, raw: Option<String>) -> Result<Option<String>, AppError> {
    let Some(text) = raw.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if text.len() > MAX_TEXT || text.chars().any(char::is_control) {
        return Err(AppError::invalid(
            field,
            format!("must be at most {MAX_TEXT} bytes of text without control characters"),
        ));
    }
    Ok(Some(text))
}

fn rfc3339(t: NaiveDateTime) -> String {
    format_instant(t)
}

// ------------------------------------------------------------------------------------------
// Views shared by the API and the pages.

/// A ledger event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    id: i64,
    purpose: String,
    /// `granted` or `withdrawn`.
    status: String,
    /// When the customer gave or withdrew consent (RFC 3339, UTC).
    recorded_at: String,
    source: Option<String>,
    notice_version: Option<String>,
    /// A staff e-mail, or `customer` for the preference page.
    recorded_by: String,
    /// When the event was entered into fairseg (RFC 3339, UTC).
    entered_at: String,
}

impl From<&EventRow> for EventView {
    fn from(e: &EventRow) -> EventView {
        EventView {
            id: e.id,
            purpose: e.purpose.clone(),
            status: e.status.clone(),
            recorded_at: rfc3339(e.recorded_at),
            source: e.source.clone(),
            notice_version: e.notice_version.clone(),
            recorded_by: e.recorded_by.clone(),
            entered_at: rfc3339(e.entered_at),
        }
    }
}

/// A customer's consent for one purpose at an instant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StateView {
    purpose: String,
    /// `consent` or `legitimate_interest`.
    legal_basis: String,
    /// `granted`, `withdrawn`, `expired` or `never_asked`.
    state: String,
    /// When the latest event was recorded (RFC 3339, UTC), unless never asked.
    since: Option<String>,
    /// When the grant lapses or lapsed (RFC 3339, UTC), for `granted` and `expired`.
    expires_at: Option<String>,
    /// Whether the customer's data may be used for the purpose.
    permits_processing: bool,
}

fn basis_name(b: LegalBasis) -> &'static str {
    match b {
        LegalBasis::Consent => "consent",
        LegalBasis::LegitimateInterest => "legitimate_interest",
    }
}

fn state_view(purpose: &str, basis: LegalBasis, state: &ConsentState) -> StateView {
    let (since, expires_at) = match *state {
        ConsentState::Granted { since, expires_at } => (Some(since), Some(expires_at)),
        ConsentState::Withdrawn { since } => (Some(since), None),
        ConsentState::Expired {
            granted_at,
            expired_at,
        } => (Some(granted_at), Some(expired_at)),
        ConsentState::NeverAsked => (None, None),
    };
    StateView {
        purpose: purpose.to_string(),
        legal_basis: basis_name(basis).to_string(),
        state: state.name().to_string(),
        since: since.map(rfc3339),
        expires_at: expires_at.map(rfc3339),
        permits_processing: state.permits(basis),
    }
}

// ------------------------------------------------------------------------------------------
// API: record an event.

/// A consent event from a CRM or a consent banner.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewConsent {
    /// The id the company knows the customer by.
    customer_id: String,
    /// A purpose of the policy.
    purpose: String,
    /// `granted` or `withdrawn`.
    status: String,
    /// When the customer answered: `YYYY-MM-DD` or RFC 3339; default now. Not before the
    /// latest event for the same customer and purpose, nor in the future.
    recorded_at: Option<String>,
    /// Where the answer was given, e.g. `web_banner`, `crm`, `store`.
    source: Option<String>,
    /// The version of the privacy notice the customer saw.
    notice_version: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordedView {
    event: EventView,
    /// The customer's state for the purpose now, after the event.
    state: StateView,
}

/// Record a consent event (append-only).
#[utoipa::path(post, path = "/api/v1/consents", tag = "consent",
    request_body = NewConsent,
    responses(
        (status = 201, description = "Recorded", body = RecordedView),
        (status = 400, description = "Unknown purpose or status, a bad time, or an event older than the latest one; `field` names the input", body = super::error::ErrorBody),
        (status = 404, description = "No such customer", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn record_api(
    state: State,
    user: CurrentUser,
    body: web::Json<NewConsent>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let customer = customer_id(&body.customer_id)?;
    let purpose = crate::consent::purpose(&state.policy, &body.purpose)
        .map_err(|m| AppError::invalid("purpose", m))?;
    let basis = purpose.legal_basis;
    let purpose_name = body.purpose.trim().to_string();
    let status = ConsentStatus::parse(&body.status).map_err(|m| AppError::invalid("status", m))?;
    let recorded_at = instant("recorded_at", body.recorded_at.as_deref())?;
    let source = optional_text("source", body.source)?;
    let notice_version = optional_text("notice_version", body.notice_version)?;
    let (db, policy) = (state.db.clone(), state.policy.clone());
    let actor = Actor::user(&user.email);
    let recorded = blocking(move || {
        ledger::record(
            &db,
            &policy,
            &actor,
            Who::External(&customer),
            &Recording {
                purpose: &purpose_name,
                status,
                recorded_at,
                source: source.as_deref(),
                notice_version: notice_version.as_deref(),
                recorded_by: &user.email,
            },
        )
    })
    .await?;
    Ok(HttpResponse::Created().json(RecordedView {
        state: state_view(&recorded.event.purpose, basis, &recorded.state),
        event: EventView::from(&recorded.event),
    }))
}

// ------------------------------------------------------------------------------------------
// API: one customer's consents.

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AtQuery {
    /// The instant (`YYYY-MM-DD` or RFC 3339); default now.
    at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerConsentsView {
    customer_id: String,
    /// The name the trail knows the customer by.
    pseudonym: String,
    at: String,
    states: Vec<StateView>,
    /// Every event, oldest first.
    events: Vec<EventView>,
}

fn consents_view(id: &CustomerId, at: NaiveDateTime, c: &CustomerConsents) -> CustomerConsentsView {
    CustomerConsentsView {
        customer_id: id.to_string(),
        pseudonym: c.pseudonym.clone(),
        at: rfc3339(at),
        states: c
            .states
            .iter()
            .map(|s| state_view(&s.purpose, s.legal_basis, &s.state))
            .collect(),
        events: c.events.iter().map(EventView::from).collect(),
    }
}

async fn load_customer(
    state: &State,
    user: &CurrentUser,
    id: CustomerId,
    at: NaiveDateTime,
) -> Result<CustomerConsents, AppError> {
    let (db, policy, actor) = (
        state.db.clone(),
        state.policy.clone(),
        Actor::user(&user.email),
    );
    blocking(move || ledger::view(&db, &policy, &actor, &id, at)).await
}

/// A customer's consent history and state per purpose at an instant (written to the trail).
#[utoipa::path(get, path = "/api/v1/customers/{id}/consents", tag = "consent",
    params(("id" = String, Path, description = "The customer's id"), AtQuery),
    responses(
        (status = 200, description = "History and states", body = CustomerConsentsView),
        (status = 400, description = "A bad instant", body = super::error::ErrorBody),
        (status = 404, description = "No such customer", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn customer_api(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    query: web::Query<AtQuery>,
) -> Result<HttpResponse, AppError> {
    let id = customer_id(&path.into_inner())?;
    let at = instant("at", query.at.as_deref())?;
    let consents = load_customer(&state, &user, id.clone(), at).await?;
    Ok(HttpResponse::Ok().json(consents_view(&id, at, &consents)))
}

// ------------------------------------------------------------------------------------------
// API: coverage.

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CoverageQuery {
    /// The instant (`YYYY-MM-DD` or RFC 3339); default now.
    at: Option<String>,
    /// How many month ends of history up to `at`, 1 to 60; default 12.
    months: Option<u32>,
}

/// Counts per state; each is suppressed (`count` null, `display` `<N`) when below the policy's
/// minimum cell size, or when it would give away a suppressed one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CountsView {
    granted: ShownCount,
    withdrawn: ShownCount,
    expired: ShownCount,
    never_asked: ShownCount,
}

fn counts_view(tally: &Tally, min_cell_size: u32) -> CountsView {
    let mut row = shown_row(&tally.counts(), u64::from(min_cell_size)).into_iter();
    let mut next = || row.next().expect("four counts");
    CountsView {
        granted: next(),
        withdrawn: next(),
        expired: next(),
        never_asked: next(),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PurposeCoverageView {
    purpose: String,
    description: String,
    legal_basis: String,
    counts: CountsView,
    /// The counts at each instant of `history_at`.
    history: Vec<CountsView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CoverageView {
    at: String,
    min_cell_size: u32,
    /// The month ends of the history, oldest first; the last is `at`.
    history_at: Vec<String>,
    purposes: Vec<PurposeCoverageView>,
}

struct Coverage {
    at: NaiveDateTime,
    instants: Vec<NaiveDateTime>,
    purposes: Vec<(ledger::PurposeCoverage, Vec<Tally>)>,
}

async fn load_coverage(
    state: &State,
    at: NaiveDateTime,
    months: u32,
) -> Result<Coverage, AppError> {
    let instants = month_ends(at, months);
    let (db, policy, at_instants) = (state.db.clone(), state.policy.clone(), instants.clone());
    let (now, history) = blocking(move || {
        let now = ledger::coverage(&db, &policy, at)?;
        let history = ledger::coverage_history(&db, &policy, &at_instants)?;
        Ok::<_, ConsentError>((now, history))
    })
    .await?;
    Ok(Coverage {
        at,
        instants,
        purposes: now
            .into_iter()
            .zip(history)
            .map(|(c, (_, h))| (c, h))
            .collect(),
    })
}

fn coverage_view(c: &Coverage, min_cell_size: u32) -> CoverageView {
    CoverageView {
        at: rfc3339(c.at),
        min_cell_size,
        history_at: c.instants.iter().copied().map(rfc3339).collect(),
        purposes: c
            .purposes
            .iter()
            .map(|(p, h)| PurposeCoverageView {
                purpose: p.purpose.clone(),
                description: p.description.clone(),
                legal_basis: basis_name(p.legal_basis).to_string(),
                counts: counts_view(&p.tally, min_cell_size),
                history: h.iter().map(|t| counts_view(t, min_cell_size)).collect(),
            })
            .collect(),
    }
}

fn months_of(q: Option<u32>) -> Result<u32, AppError> {
    match q.unwrap_or(12) {
        m @ 1..=60 => Ok(m),
        m => Err(AppError::invalid(
            "months",
            format!("must be between 1 and 60, got {m}"),
        )),
    }
}

/// Consent coverage per purpose at an instant and at the month ends before it (aggregate
/// counts only, small ones suppressed).
#[utoipa::path(get, path = "/api/v1/consent/coverage", tag = "consent",
    params(CoverageQuery),
    responses(
        (status = 200, description = "Coverage", body = CoverageView),
        (status = 400, description = "A bad instant or month count", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn coverage_api(
    state: State,
    query: web::Query<CoverageQuery>,
) -> Result<HttpResponse, AppError> {
    let at = instant("at", query.at.as_deref())?;
    let months = months_of(query.months)?;
    let coverage = load_coverage(&state, at, months).await?;
    Ok(HttpResponse::Ok().json(coverage_view(
        &coverage,
        state.policy.fairness.min_cell_size,
    )))
}

// ------------------------------------------------------------------------------------------
// API: preference links.

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LinkView {
    /// The address to send the customer; it works without an account until `expires_at`.
    url: String,
    /// RFC 3339, UTC.
    expires_at: String,
}

async fn issue_link(
    state: &State,
    user: &CurrentUser,
    id: CustomerId,
) -> Result<LinkView, AppError> {
    let (db, policy, links, actor) = (
        state.db.clone(),
        state.policy.clone(),
        state.preference_links.clone(),
        Actor::user(&user.email),
    );
    let (token, claims) =
        blocking(move || ledger::issue_link(&db, &policy, &links, &actor, &id, link::DEFAULT_TTL))
            .await?;
    // Never from the request's Host or X-Forwarded-Host: the link is e-mailed to a customer,
    // and a forged header would hand their token to another site.
    Ok(LinkView {
        url: state.public_url.join(&format!("/preferences/{token}")),
        expires_at: rfc3339(claims.expires_at()),
    })
}

/// Create a preference link for a customer (valid 7 days; written to the trail).
#[utoipa::path(post, path = "/api/v1/customers/{id}/preference-link", tag = "consent",
    params(("id" = String, Path, description = "The customer's id")),
    responses(
        (status = 201, description = "The link", body = LinkView),
        (status = 404, description = "No such customer", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn link_api(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = customer_id(&path.into_inner())?;
    let link = issue_link(&state, &user, id).await?;
    Ok(HttpResponse::Created().json(link))
}

// ------------------------------------------------------------------------------------------
// Compliance pages.

const CHART_WIDTH: f64 = 640.0;
const CHART_HEIGHT: f64 = 180.0;
const CHART_PAD: f64 = 36.0;

struct CoverageRow {
    purpose: String,
    description: String,
    legal_basis: &'static str,
    cells: Vec<ShownCount>,
    bar: Vec<BarSegment>,
    chart: HistoryChart,
}

/// Colours of the consent-selection lines, one per protected attribute (cycled).
const SELECTION_COLOURS: [&str; 6] = [
    "#1565c0", "#6a1b9a", "#00838f", "#ad1457", "#558b2f", "#4e342e",
];

struct SelectionLine {
    colour: &'static str,
    label: String,
    points: String,
}

/// Consent-selection bias over time: the corrected V of consent status × each protected
/// attribute at each month end, and the sentences of the latest month.
struct SelectionView {
    legal_basis: String,
    lines: Vec<SelectionLine>,
    x_labels: Vec<(String, String)>,
    y_max: String,
    headline: String,
    sentences: Vec<String>,
}

fn selection_view(
    policy: &crate::policy::Policy,
    instants: &[NaiveDateTime],
    history: &[ConsentSelectionReport],
) -> Option<SelectionView> {
    let last = history.last().filter(|r| !r.attributes.is_empty())?;
    let v_max = history
        .iter()
        .flat_map(|r| r.attributes.iter().filter_map(|a| a.cramers_v_corrected))
        .fold(0.1_f64, f64::max);
    let n = instants.len().max(2) - 1;
    let x_of = |i: usize| CHART_PAD + (CHART_WIDTH - 2.0 * CHART_PAD) * i as f64 / n as f64;
    let y_of = |v: f64| CHART_HEIGHT - CHART_PAD - (CHART_HEIGHT - 2.0 * CHART_PAD) * v / v_max;
    let lines = last
        .attributes
        .iter()
        .enumerate()
        .map(|(k, a)| SelectionLine {
            colour: SELECTION_COLOURS[k % SELECTION_COLOURS.len()],
            label: a.attribute.clone(),
            points: history
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    r.attributes
                        .iter()
                        .find(|x| x.attribute == a.attribute)
                        .and_then(|x| x.cramers_v_corrected)
                        .map(|v| format!("{:.1},{:.1}", x_of(i), y_of(v)))
                })
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect();
    let x_labels = instants
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == (instants.len() - 1) % 3)
        .map(|(i, t)| (format!("{:.1}", x_of(i)), t.format("%Y-%m-%d").to_string()))
        .collect();
    Some(SelectionView {
        legal_basis: policy.consent_selection.legal_basis.clone(),
        lines,
        x_labels,
        y_max: format!("{v_max:.2}"),
        headline: last.headline.clone(),
        sentences: last.attributes.iter().map(|a| a.sentence.clone()).collect(),
    })
}

async fn load_selection(
    state: &State,
    instants: &[NaiveDateTime],
) -> Result<Vec<ConsentSelectionReport>, AppError> {
    let (db, policy, instants) = (state.db.clone(), state.policy.clone(), instants.to_vec());
    blocking(move || crate::app::audits::consent_selection_history(&db, &policy, &instants)).await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SelectionHistoryView {
    /// RFC 3339 month ends, oldest first, one report each.
    at: Vec<String>,
    /// The policy's stated legal basis for using non-consenting customers' protected
    /// attributes in this aggregate test.
    legal_basis: String,
    /// Consent-selection reports (see docs/fairness.md, "Consent-selection bias").
    #[schema(value_type = Vec<Object>)]
    reports: Vec<ConsentSelectionReport>,
}

/// Consent-selection bias at the month ends before an instant: does the consented population
/// for the segmentation purpose differ from all customers on each protected attribute?
/// Aggregate figures only, small counts suppressed; 404 when the policy switches it off.
#[utoipa::path(get, path = "/api/v1/consent/selection", tag = "consent",
    params(CoverageQuery),
    responses(
        (status = 200, description = "Consent-selection bias over time", body = SelectionHistoryView),
        (status = 404, description = "The policy switches the test off", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn selection_api(
    state: State,
    query: web::Query<CoverageQuery>,
) -> Result<HttpResponse, AppError> {
    if !state.policy.consent_selection.enabled {
        return Err(AppError::NotFound);
    }
    let at = instant("at", query.at.as_deref())?;
    let months = months_of(query.months)?;
    let instants = month_ends(at, months);
    let reports = load_selection(&state, &instants).await?;
    Ok(HttpResponse::Ok().json(SelectionHistoryView {
        at: instants.iter().copied().map(rfc3339).collect(),
        legal_basis: state.policy.consent_selection.legal_basis.clone(),
        reports,
    }))
}

#[derive(Template)]
#[template(path = "consent/index.html")]
struct CoveragePage {
    /// Shown only to roles that may read audits (it rests on protected attributes).
    selection: Option<SelectionView>,
    layout: Layout,
    at: String,
    min_cell_size: u32,
    rows: Vec<CoverageRow>,
    chart_width: f64,
    chart_height: f64,
    chart_pad: f64,
    series: [(&'static str, &'static str); 4],
}

/// Consent coverage per purpose now and over the last 12 months.
pub async fn coverage_page(
    state: State,
    user: CurrentUser,
    query: web::Query<AtQuery>,
) -> Result<HttpResponse, AppError> {
    let at = instant("at", query.at.as_deref())?;
    let coverage = load_coverage(&state, at, 12).await?;
    let min = state.policy.fairness.min_cell_size;
    let rows = coverage
        .purposes
        .iter()
        .map(|(p, history)| {
            let cells = shown_row(&p.tally.counts(), u64::from(min));
            let history_rows: Vec<Vec<ShownCount>> = history
                .iter()
                .map(|t| shown_row(&t.counts(), u64::from(min)))
                .collect();
            CoverageRow {
                purpose: p.purpose.clone(),
                description: p.description.clone(),
                legal_basis: basis_name(p.legal_basis),
                bar: charts::consent_bar(&p.tally, &cells),
                cells,
                chart: charts::consent_history(
                    Frame {
                        width: CHART_WIDTH,
                        height: CHART_HEIGHT,
                        pad: CHART_PAD,
                    },
                    &coverage.instants,
                    &history_rows,
                ),
            }
        })
        .collect();
    let selection = if user.can(Permission::AuditsRead) {
        let history = load_selection(&state, &coverage.instants).await?;
        selection_view(&state.policy, &coverage.instants, &history)
    } else {
        None
    };
    let page = CoveragePage {
        selection,
        layout: Layout::new(&state, Some(&user), "Consent", "/consent"),
        at: format!("{} UTC", super::format::datetime(coverage.at)),
        min_cell_size: min,
        rows,
        chart_width: CHART_WIDTH,
        chart_height: CHART_HEIGHT,
        chart_pad: CHART_PAD,
        series: SERIES,
    };
    Ok(render(&page))
}

#[derive(Deserialize)]
pub struct LookupQuery {
    id: Option<String>,
}

/// The look-up form: on to the customer's page.
pub async fn lookup(query: web::Query<LookupQuery>) -> Result<HttpResponse, AppError> {
    let id = customer_id(query.id.as_deref().unwrap_or_default())?;
    let encoded: String = url::form_urlencoded::byte_serialize(id.as_str().as_bytes()).collect();
    Ok(see_other(&format!(
        "/consent/customers/{}",
        encoded.replace('+', "%20")
    )))
}

struct StateRow {
    purpose: String,
    legal_basis: &'static str,
    state: &'static str,
    since: String,
    until: String,
    permits: bool,
}

#[derive(Template)]
#[template(path = "consent/customer.html")]
struct CustomerPage {
    layout: Layout,
    customer_id: String,
    pseudonym: String,
    states: Vec<StateRow>,
    events: Vec<EventView>,
    link: Option<LinkView>,
}

fn day_time(t: NaiveDateTime) -> String {
    super::format::datetime(t)
}

async fn customer_html(
    state: &State,
    user: &CurrentUser,
    id: CustomerId,
    link: Option<LinkView>,
) -> Result<HttpResponse, AppError> {
    let at = crate::db::now();
    let consents = load_customer(state, user, id.clone(), at).await?;
    let states = consents
        .states
        .iter()
        .map(|s| {
            let (since, until) = match s.state {
                ConsentState::Granted { since, expires_at } => {
                    (day_time(since), day_time(expires_at))
                }
                ConsentState::Withdrawn { since } => (day_time(since), String::new()),
                ConsentState::Expired {
                    granted_at,
                    expired_at,
                } => (day_time(granted_at), day_time(expired_at)),
                ConsentState::NeverAsked => (String::new(), String::new()),
            };
            StateRow {
                purpose: s.purpose.clone(),
                legal_basis: basis_name(s.legal_basis),
                state: s.state.name(),
                since,
                until,
                permits: s.permits,
            }
        })
        .collect();
    let page = CustomerPage {
        layout: Layout::new(state, Some(user), "Customer consent", "/consent"),
        customer_id: id.to_string(),
        pseudonym: consents.pseudonym.clone(),
        states,
        events: consents.events.iter().map(EventView::from).collect(),
        link,
    };
    Ok(render(&page))
}

/// A customer's consent states and full history (written to the trail).
pub async fn customer_page(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = customer_id(&path.into_inner())?;
    customer_html(&state, &user, id, None).await
}

/// Creates a preference link and shows it on the customer's page.
pub async fn link_submit(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = customer_id(&path.into_inner())?;
    let link = issue_link(&state, &user, id.clone()).await?;
    customer_html(&state, &user, id, Some(link)).await
}

// ------------------------------------------------------------------------------------------
// The customer's preference page.

/// What a customer sees for any link that does not work: nothing about why, nothing changes.
pub const LINK_REFUSED: &str = "This link is not valid or has expired; ask us for a new one.";

fn link_refused() -> AppError {
    AppError::InvalidInput {
        field: None,
        message: LINK_REFUSED.into(),
    }
}

fn verify_link(state: &State, token: &str) -> Result<LinkClaims, AppError> {
    state.preference_links.verify(token).map_err(|e| {
        tracing::info!(reason = %e, "refused a preference link");
        link_refused()
    })
}

fn form_binding(claims: &LinkClaims) -> String {
    format!("link:{}", claims.jti)
}

fn long_date(t: NaiveDateTime) -> String {
    t.format("%-d %B %Y").to_string()
}

struct PreferenceRow {
    purpose: String,
    /// What the purpose means for the customer, in their words.
    description: String,
    /// Whether the customer may agree (again): consent-based purposes not granted now.
    can_grant: bool,
    /// The state in plain words.
    words: String,
    /// The button's label, when the customer can withdraw or object.
    action: Option<&'static str>,
}

fn in_words(basis: LegalBasis, state: &ConsentState) -> (String, Option<&'static str>) {
    match (basis, *state) {
        (_, ConsentState::Granted { since, expires_at }) => (
            format!(
                "You agreed on {}; this lasts until {}.",
                long_date(since),
                long_date(expires_at - TimeDelta::seconds(1))
            ),
            Some("Withdraw"),
        ),
        (LegalBasis::Consent, ConsentState::Withdrawn { since }) => {
            (format!("You withdrew on {}.", long_date(since)), None)
        }
        (LegalBasis::LegitimateInterest, ConsentState::Withdrawn { since }) => (
            format!(
                "You objected on {}; we no longer use your data for this.",
                long_date(since)
            ),
            None,
        ),
        (LegalBasis::Consent, ConsentState::Expired { expired_at, .. }) => (
            format!(
                "Your agreement ran out on {}; we no longer use your data for this.",
                long_date(expired_at)
            ),
            None,
        ),
        (LegalBasis::Consent, ConsentState::NeverAsked) => (
            "We have not asked you, and we do not use your data for this.".into(),
            None,
        ),
        (
            LegalBasis::LegitimateInterest,
            ConsentState::Expired { .. } | ConsentState::NeverAsked,
        ) => (
            "We do this as part of our legitimate interest; you may object at any time.".into(),
            Some("Object"),
        ),
    }
}

#[derive(Template)]
#[template(path = "consent/preferences.html")]
struct PreferencePage {
    layout: Layout,
    token: String,
    form_token: String,
    rows: Vec<PreferenceRow>,
    notice: Option<String>,
    expires: String,
}

#[derive(Deserialize)]
pub struct PreferenceQuery {
    withdrawn: Option<String>,
    granted: Option<String>,
}

/// A purpose as the customer would put it; the policy's description (written for staff)
/// for a purpose without customer words.
fn to_the_customer(purpose: &str, description: &str) -> String {
    match purpose {
        "segmentation" => "We use your purchases to choose offers for you.".into(),
        "marketing_email" => "We send you e-mails with offers chosen for you.".into(),
        "analytics" => {
            "We count your purchases together with everyone else's to see how we are doing.".into()
        }
        _ => description.to_string(),
    }
}

/// The customer's consents in plain words, with a button per active one.
pub async fn preferences_page(
    state: State,
    path: web::Path<String>,
    query: web::Query<PreferenceQuery>,
) -> Result<HttpResponse, AppError> {
    let token = path.into_inner();
    let claims = verify_link(&state, &token)?;
    let (db, policy, pseudonym) = (state.db.clone(), state.policy.clone(), claims.sub.clone());
    let consents = blocking(move || ledger::own(&db, &policy, &pseudonym, crate::db::now()))
        .await
        .map_err(|e| match e {
            AppError::Missing(_) => link_refused(),
            other => other,
        })?;
    let rows = consents
        .states
        .iter()
        .map(|s| {
            let (words, action) = in_words(s.legal_basis, &s.state);
            PreferenceRow {
                purpose: s.purpose.clone(),
                description: to_the_customer(&s.purpose, &s.description),
                can_grant: s.legal_basis == LegalBasis::Consent
                    && !matches!(s.state, ConsentState::Granted { .. }),
                words,
                action,
            }
        })
        .collect();
    let notice = query
        .withdrawn
        .as_deref()
        .and_then(|p| state.policy.purpose(p).map(|spec| (p, spec)))
        .map(|(p, spec)| {
            format!(
                "Done: from now on, no more of this: “{}”",
                to_the_customer(p, &spec.description).trim_end_matches('.')
            )
        })
        .or_else(|| {
            query
                .granted
                .as_deref()
                .and_then(|p| state.policy.purpose(p).map(|spec| (p, spec)))
                .map(|(p, spec)| {
                    format!(
                        "Thank you: you agreed again to “{}”",
                        to_the_customer(p, &spec.description).trim_end_matches('.')
                    )
                })
        });
    let mut layout = Layout::new(&state, None, "Your privacy choices", "");
    layout.csrf_token = String::new();
    layout.public = true;
    let page = PreferencePage {
        layout,
        form_token: state.csrf.token_for(&form_binding(&claims)),
        token,
        rows,
        notice,
        expires: long_date(claims.expires_at()),
    };
    let mut response = render(&page);
    // The link is a credential: keep it out of referrers and shared caches.
    response.headers_mut().insert(
        actix_web::http::header::REFERRER_POLICY,
        actix_web::http::header::HeaderValue::from_static("no-referrer"),
    );
    response.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct WithdrawForm {
    purpose: String,
    csrf_token: String,
}

/// Withdraws (or objects to) one purpose, at once, and goes back to the page.
pub async fn withdraw_submit(
    state: State,
    path: web::Path<String>,
    form: web::Form<WithdrawForm>,
) -> Result<HttpResponse, AppError> {
    customer_choice(state, path, form, ConsentStatus::Withdrawn).await
}

/// Grants consent for one purpose again, at once (a customer who withdrew, or whose consent
/// ran out, changes their mind), and goes back to the page.
pub async fn grant_submit(
    state: State,
    path: web::Path<String>,
    form: web::Form<WithdrawForm>,
) -> Result<HttpResponse, AppError> {
    customer_choice(state, path, form, ConsentStatus::Granted).await
}

async fn customer_choice(
    state: State,
    path: web::Path<String>,
    form: web::Form<WithdrawForm>,
    status: ConsentStatus,
) -> Result<HttpResponse, AppError> {
    let token = path.into_inner();
    let claims = verify_link(&state, &token)?;
    let form = form.into_inner();
    if !state.csrf.verify(&form_binding(&claims), &form.csrf_token) {
        return Err(AppError::Csrf);
    }
    let purpose = form.purpose.trim().to_string();
    crate::consent::purpose(&state.policy, &purpose)
        .map_err(|m| AppError::invalid("purpose", m))?;
    let (db, policy, pseudonym, name) = (
        state.db.clone(),
        state.policy.clone(),
        claims.sub.clone(),
        purpose.clone(),
    );
    blocking(move || {
        ledger::record(
            &db,
            &policy,
            &Actor::user("customer"),
            Who::Pseudonym(&pseudonym),
            &Recording {
                purpose: &name,
                status,
                recorded_at: crate::db::now(),
                source: Some("preference_page"),
                notice_version: None,
                recorded_by: "customer",
            },
        )
    })
    .await
    .map_err(|e| match e {
        AppError::Missing(_) => link_refused(),
        other => other,
    })?;
    let encoded: String = url::form_urlencoded::byte_serialize(purpose.as_bytes()).collect();
    Ok(see_other(&format!(
        "/preferences/{token}?{}={encoded}",
        if status == ConsentStatus::Granted {
            "granted"
        } else {
            "withdrawn"
        }
    )))
}
