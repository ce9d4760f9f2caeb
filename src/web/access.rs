//! The access middleware: finds the route in the table (deny by default), authenticates the
//! caller (session cookie or bearer token), checks the route's permission and, for
//! state-changing requests that ride on a cookie, the CSRF token. The signed-in user reaches
//! handlers as a `CurrentUser` argument.

use std::collections::HashMap;
use std::future::{Ready, ready};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};

use super::error::AppError;
use super::layout::Layout;
use super::routes::{Access, RouteSpec};
use crate::app::accounts;
use crate::auth::CurrentUser;
use crate::auth::token::TokenError;
use crate::web::state::AppState;

pub const SESSION_COOKIE: &str = "fairseg_session";
/// A random value given to visitors before they sign in, so the sign-in form has a CSRF token
/// bound to something.
pub const PRE_SESSION_COOKIE: &str = "fairseg_pre";
pub const CSRF_FIELD: &str = "csrf_token";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The route table indexed for the middleware.
pub struct RouteIndex {
    by_pattern: HashMap<&'static str, Vec<(Method, Access)>>,
}

impl RouteIndex {
    pub fn new(table: &[RouteSpec]) -> RouteIndex {
        let mut by_pattern: HashMap<&'static str, Vec<(Method, Access)>> = HashMap::new();
        for r in table {
            by_pattern
                .entry(r.path)
                .or_default()
                .push((r.method.clone(), r.access));
        }
        RouteIndex { by_pattern }
    }

    fn find(&self, method: &Method, pattern: &str) -> Result<Access, AppError> {
        let routes = self.by_pattern.get(pattern).ok_or(AppError::NotFound)?;
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        routes
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, a)| *a)
            .ok_or(AppError::MethodNotAllowed)
    }
}

fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/") || path == "/healthz" || path == "/metrics"
}

fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// How the caller presented credentials.
enum Credential {
    None,
    Cookie(String),
    Bearer(String),
}

fn credential(req: &ServiceRequest) -> Credential {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default();
        return match value.strip_prefix("Bearer ") {
            Some(token) => Credential::Bearer(token.trim().to_string()),
            None => Credential::Bearer(String::new()),
        };
    }
    match req.cookie(SESSION_COOKIE) {
        Some(c) if !c.value().is_empty() => Credential::Cookie(c.value().to_string()),
        _ => Credential::None,
    }
}

pub async fn enforce(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .expect("AppState is registered")
        .clone();
    let access = match req.match_pattern() {
        Some(pattern) => state.routes.find(req.method(), &pattern),
        None => Err(AppError::NotFound),
    };
    let access = match access {
        Ok(a) => a,
        Err(e) => return Ok(error_response(req, e, None)),
    };

    let credential = credential(&req);
    let user = match &credential {
        Credential::None => None,
        Credential::Cookie(token) | Credential::Bearer(token) => {
            let via_cookie = matches!(credential, Credential::Cookie(_));
            match authenticate(&state, token, via_cookie).await {
                Ok(user) => Some(user),
                // A stale cookie on a public page is ignored (the sign-in page must still
                // load); a bad bearer token is always an error, so integrators see why.
                Err(e) if via_cookie && access == Access::Public => {
                    tracing::debug!(error = %e, "ignoring an invalid session cookie on a public route");
                    None
                }
                Err(e) => {
                    let mut response = error_response(req, e, None);
                    if via_cookie {
                        let _ = response
                            .response_mut()
                            .add_cookie(&expired_session_cookie());
                    }
                    return Ok(response);
                }
            }
        }
    };

    match (access, &user) {
        (Access::Public, _) => {}
        (Access::SignedIn | Access::Permission(_), None) => {
            return Ok(error_response(req, AppError::Unauthenticated, None));
        }
        (Access::Permission(p), Some(u)) if !u.can(p) => {
            return Ok(error_response(
                req,
                AppError::Forbidden(p.to_string()),
                user,
            ));
        }
        _ => {}
    }

    if is_state_changing(req.method())
        && !is_signed_link_route(req.match_pattern().as_deref())
        && let Err(e) = check_csrf(&mut req, &state, user.as_ref(), &credential).await
    {
        return Ok(error_response(req, e, user));
    }

    if let Some(user) = user {
        req.extensions_mut().insert(user);
    }
    let response = next.call(req).await?;
    Ok(render_html_errors(response))
}

async fn authenticate(
    state: &web::Data<AppState>,
    token: &str,
    via_cookie: bool,
) -> Result<CurrentUser, AppError> {
    let claims = state.tokens.verify(token).map_err(|e| match e {
        TokenError::Expired => AppError::SessionEnded(e.to_string()),
        TokenError::Invalid => {
            AppError::SessionEnded("the session token is not valid; sign in again".into())
        }
    })?;
    let state = state.clone();
    super::error::blocking(move || {
        accounts::session_user(&state.db, &state.policy, &claims, via_cookie)
    })
    .await
}

/// Public routes whose path carries a signed, expiring link (a customer's preference link):
/// the link itself is the capability, so the session CSRF check does not apply (the visitor has
/// no session, and may have a staff cookie that the link's page knows nothing of). Their
/// handlers verify the link and a form token bound to the link's id instead.
pub const SIGNED_LINK_ROUTES: [&str; 2] = [
    "/preferences/{token}/withdraw",
    "/preferences/{token}/grant",
];

fn is_signed_link_route(pattern: Option<&str>) -> bool {
    pattern.is_some_and(|p| SIGNED_LINK_ROUTES.contains(&p))
}

/// The binding a CSRF token must match for this request, or `None` when the request carries
/// no ambient credential (a bearer token or an anonymous JSON call cannot be forged by
/// another site).
fn csrf_binding(
    req: &ServiceRequest,
    user: Option<&CurrentUser>,
    credential: &Credential,
) -> Option<String> {
    match (credential, user) {
        (Credential::Bearer(_), _) => None,
        (Credential::Cookie(_), Some(user)) => Some(session_binding(&user.jti)),
        _ => {
            let is_form = req
                .content_type()
                .starts_with("application/x-www-form-urlencoded")
                || req.content_type().starts_with("multipart/form-data");
            is_form.then(|| {
                pre_session_binding(
                    req.cookie(PRE_SESSION_COOKIE)
                        .map(|c| c.value().to_string())
                        .unwrap_or_default()
                        .as_str(),
                )
            })
        }
    }
}

pub fn session_binding(jti: &str) -> String {
    format!("session:{jti}")
}

pub fn pre_session_binding(value: &str) -> String {
    format!("pre:{value}")
}

async fn check_csrf(
    req: &mut ServiceRequest,
    state: &web::Data<AppState>,
    user: Option<&CurrentUser>,
    credential: &Credential,
) -> Result<(), AppError> {
    let Some(binding) = csrf_binding(req, user, credential) else {
        return Ok(());
    };
    if binding == pre_session_binding("") {
        return Err(AppError::Csrf);
    }
    let presented = if let Some(h) = req.headers().get(CSRF_HEADER) {
        h.to_str().unwrap_or_default().to_string()
    } else if req
        .content_type()
        .starts_with("application/x-www-form-urlencoded")
    {
        // Read the form to find the token, then put the body back for the handler.
        let limit = state.settings.max_body_bytes;
        let bytes =
            req.extract::<web::Bytes>().await.map_err(|e| match e
                .as_error::<actix_web::error::PayloadError>()
            {
                Some(p) if super::hardening::is_stalled(p) => AppError::RequestTimeout,
                _ => AppError::PayloadTooLarge { limit },
            })?;
        let token = url::form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        req.set_payload(Payload::from(bytes));
        token
    } else {
        // Multipart uploads carry the token in the query string of the form's action.
        url::form_urlencoded::parse(req.query_string().as_bytes())
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    if state.csrf.verify(&binding, &presented) {
        Ok(())
    } else {
        Err(AppError::Csrf)
    }
}

/// The answer to a refused request: JSON for the API; for pages, a redirect to the sign-in
/// page when the visitor is not signed in, else the error page.
/// The answer to a request refused before its handler ran: JSON for the API, the sign-in page
/// for a page that needs a session, else an error page.
pub(crate) fn error_response(
    req: ServiceRequest,
    error: AppError,
    user: Option<CurrentUser>,
) -> ServiceResponse<BoxBody> {
    let (http_req, _) = req.into_parts();
    let path = http_req.path().to_string();
    let response = if is_api_path(&path) {
        error.error_response()
    } else if matches!(error, AppError::Unauthenticated | AppError::SessionEnded(_))
        && http_req.method() == Method::GET
    {
        let next = match http_req.query_string() {
            "" => path.clone(),
            q => format!("{path}?{q}"),
        };
        let target = format!(
            "/signin?next={}",
            url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        );
        HttpResponse::SeeOther()
            .insert_header((header::LOCATION, target))
            .finish()
    } else {
        error_page(&http_req, &error, user.as_ref())
    };
    ServiceResponse::new(http_req, response)
}

/// Replaces the JSON body of a handler's error with the error page, for browser routes.
fn render_html_errors<B: MessageBody + 'static>(
    response: ServiceResponse<B>,
) -> ServiceResponse<BoxBody> {
    let path = response.request().path().to_string();
    let status = response.status();
    if is_api_path(&path) || !(status.is_client_error() || status.is_server_error()) {
        return response.map_into_boxed_body();
    }
    let app_error = response
        .response()
        .error()
        .and_then(|e| e.as_error::<AppError>())
        .map(|e| (e.to_string(), e.code()));
    let Some((message, _code)) = app_error else {
        return response.map_into_boxed_body();
    };
    let request = response.request().clone();
    let user = request.extensions().get::<CurrentUser>().cloned();
    let page = render_error_page(&request, status, &message, user.as_ref());
    response.into_response(page)
}

fn error_page(req: &HttpRequest, error: &AppError, user: Option<&CurrentUser>) -> HttpResponse {
    if let AppError::Internal(e) = error {
        tracing::error!(error = ?e, "internal error");
    }
    render_error_page(req, error.status_code(), &error.to_string(), user)
}

#[derive(askama::Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    reason: String,
    message: String,
}

fn render_error_page(
    req: &HttpRequest,
    status: StatusCode,
    message: &str,
    user: Option<&CurrentUser>,
) -> HttpResponse {
    let state = req
        .app_data::<web::Data<AppState>>()
        .expect("AppState is registered");
    let title = status.canonical_reason().unwrap_or("Error").to_string();
    let page = ErrorPage {
        layout: Layout::new(state, user, &title, ""),
        status: status.as_u16(),
        reason: title,
        message: message.to_string(),
    };
    super::layout::render_with_status(status, &page)
}

impl FromRequest for CurrentUser {
    type Error = AppError;
    type Future = Ready<Result<CurrentUser, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<CurrentUser>()
                .cloned()
                .ok_or(AppError::Unauthenticated),
        )
    }
}

/// The session cookie: HttpOnly (no script can read it), SameSite=Strict (no other site can
/// send it), Secure when configured (behind TLS).
pub fn session_cookie(state: &AppState, token: &str) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, token.to_string())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.cookie_secure)
        .max_age(actix_web::cookie::time::Duration::seconds(
            state.tokens.ttl().num_seconds(),
        ))
        .finish()
}

pub fn expired_session_cookie() -> Cookie<'static> {
    let mut cookie = Cookie::build(SESSION_COOKIE, "")
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    cookie.make_removal();
    cookie
}

pub fn pre_session_cookie(state: &AppState, value: &str) -> Cookie<'static> {
    Cookie::build(PRE_SESSION_COOKIE, value.to_string())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.cookie_secure)
        .finish()
}
