//! What every page shares: the signed-in user, navigation by role, the CSRF token for forms,
//! and the policy version in force.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;

use crate::auth::CurrentUser;
use crate::policy::Permission;
use crate::web::state::AppState;

pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

pub struct Layout {
    pub title: String,
    pub user_email: Option<String>,
    pub user_role: Option<String>,
    pub csrf_token: String,
    pub nav: Vec<NavItem>,
    pub policy_version: String,
    /// A page for customers (the preference page): the company's name and contact instead of
    /// the staff app's brand, sign-in link and policy version.
    pub public: bool,
    pub company_name: String,
    pub company_contact: String,
    pub currency: crate::policy::Currency,
}

/// Navigation entries and the permission each needs; a role sees only what it may open.
const NAV: [(&str, &str, Option<Permission>); 11] = [
    ("/", "Home", None),
    ("/admin/users", "Users", Some(Permission::UsersManage)),
    ("/trail", "Trail", Some(Permission::TrailRead)),
    ("/policy", "Policy", Some(Permission::PolicyRead)),
    ("/dsr", "Data requests", Some(Permission::DsrManage)),
    ("/consent", "Consent", Some(Permission::ConsentRecord)),
    (
        "/customers/import",
        "Import",
        Some(Permission::CustomersImport),
    ),
    ("/segments", "Segments", Some(Permission::SegmentsRead)),
    ("/segmentations", "Runs", Some(Permission::SegmentsRun)),
    ("/audits", "Audits", Some(Permission::AuditsRead)),
    ("/kpi", "KPIs", Some(Permission::KpiRead)),
];

impl Layout {
    pub fn new(state: &AppState, user: Option<&CurrentUser>, title: &str, current: &str) -> Layout {
        let nav = match user {
            Some(u) => NAV
                .iter()
                .filter(|(_, _, p)| p.is_none_or(|p| u.can(p)))
                .map(|(href, label, _)| NavItem {
                    href,
                    label,
                    current: *href == current,
                })
                .collect(),
            None => Vec::new(),
        };
        Layout {
            title: title.to_string(),
            user_email: user.map(|u| u.email.clone()),
            user_role: user.map(|u| u.role.clone()),
            csrf_token: user
                .map(|u| {
                    state
                        .csrf
                        .token_for(&super::access::session_binding(&u.jti))
                })
                .unwrap_or_default(),
            nav,
            policy_version: state.policy.short_version().to_string(),
            public: false,
            company_name: state.policy.presentation.company_name.clone(),
            company_contact: state.policy.presentation.company_contact.clone(),
            currency: state.policy.currency.clone(),
        }
    }

    /// A layout for a visitor who is not signed in, with the form token bound to their
    /// pre-session cookie.
    pub fn anonymous(state: &AppState, title: &str, pre_session: &str) -> Layout {
        let mut layout = Layout::new(state, None, title, "");
        layout.csrf_token = state
            .csrf
            .token_for(&super::access::pre_session_binding(pre_session));
        layout
    }
}

/// Renders a page as an HTML response.
pub fn render(page: &impl Template) -> HttpResponse {
    render_with_status(StatusCode::OK, page)
}

pub fn render_with_status(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("The page could not be rendered; the error has been logged.")
        }
    }
}

/// A 303 redirect after a successful form post (post/redirect/get).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, location.to_string()))
        .finish()
}

pub type State = web::Data<AppState>;
