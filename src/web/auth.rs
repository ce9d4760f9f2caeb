//! Signing in and out, session tokens for the API, the caller's own account.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::access::{self, PRE_SESSION_COOKIE};
use super::error::{AppError, blocking};
use super::layout::{Layout, State, render, render_with_status, see_other};
use crate::app::accounts::{self, AccountError};
use crate::app::throttle as app_throttle;
use crate::auth::CurrentUser;
use crate::auth::throttle;
use crate::db::users::UserRow;

#[derive(Deserialize)]
pub struct SigninQuery {
    next: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "auth/signin.html")]
struct SigninPage {
    layout: Layout,
    next: String,
    email: String,
    error: Option<String>,
    notice: Option<&'static str>,
}

/// Only same-site paths are followed after sign-in, so the link cannot send users elsewhere;
/// control characters (a CR LF would split the `Location` header) and anything but a plain
/// local path fall back to the home page.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.len() <= 2048
                && !n.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

fn notice_text(code: Option<&str>) -> Option<&'static str> {
    match code? {
        "signed_out" => Some("You have signed out."),
        "password_changed" => {
            Some("Your password has been changed. Other sessions have been signed out.")
        }
        _ => None,
    }
}

fn pre_session_value(req: &HttpRequest) -> (String, bool) {
    match req.cookie(PRE_SESSION_COOKIE) {
        Some(c) if c.value().len() == 64 => (c.value().to_string(), false),
        _ => {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            (hex::encode(bytes), true)
        }
    }
}

pub async fn signin_page(
    state: State,
    req: HttpRequest,
    query: web::Query<SigninQuery>,
    user: Option<CurrentUser>,
) -> HttpResponse {
    let next = safe_next(query.next.as_deref());
    if user.is_some() {
        return see_other(&next);
    }
    let (pre, fresh) = pre_session_value(&req);
    let page = SigninPage {
        layout: Layout::anonymous(&state, "Sign in", &pre),
        next,
        email: String::new(),
        error: None,
        notice: notice_text(query.notice.as_deref()),
    };
    let mut response = render(&page);
    if fresh {
        let _ = response.add_cookie(&access::pre_session_cookie(&state, &pre));
    }
    response
}

#[derive(Deserialize)]
pub struct SigninForm {
    email: String,
    password: String,
    next: Option<String>,
}

fn client_of(state: &State, req: &HttpRequest) -> String {
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    throttle::client_address(
        req.peer_addr().map(|a| a.ip()),
        forwarded,
        &state.settings.trusted_proxies,
    )
}

/// Checks credentials behind the throttle (shared by every server through the database);
/// shared by the form and the API.
async fn sign_in(
    state: &State,
    req: &HttpRequest,
    email: &str,
    password: String,
) -> Result<UserRow, AppError> {
    let client = client_of(state, req);
    let (db, typed, from) = (state.db.clone(), email.to_string(), client.clone());
    let wait = blocking(move || app_throttle::wait(&db, &typed, &from)).await?;
    if let Some(wait) = wait {
        return Err(AppError::TooManyRequests {
            retry_after_seconds: wait.as_secs().max(1),
        });
    }
    let db = state.db.clone();
    let typed = email.to_string();
    let result = web::block(move || accounts::authenticate(&db, &typed, &password)).await?;
    let (db, typed) = (state.db.clone(), email.to_string());
    match result {
        Ok(user) => {
            blocking(move || app_throttle::record_success(&db, &typed)).await?;
            Ok(user)
        }
        Err(AccountError::BadCredentials) => {
            blocking(move || app_throttle::record_failure(&db, &typed, &client)).await?;
            state.metrics.sign_in_failures.inc();
            Err(AccountError::BadCredentials.into())
        }
        Err(e) => Err(e.into()),
    }
}

async fn record_sign_in(state: &State, user: &UserRow, via: &'static str) -> Result<(), AppError> {
    let (db, policy, user) = (state.db.clone(), state.policy.clone(), user.clone());
    blocking(move || accounts::record_sign_in(&db, &policy, &user, via)).await
}

pub async fn signin_submit(
    state: State,
    req: HttpRequest,
    form: web::Form<SigninForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let next = safe_next(form.next.as_deref());
    match sign_in(&state, &req, &form.email, form.password).await {
        Ok(user) => {
            record_sign_in(&state, &user, "form").await?;
            let (token, _) = state.tokens.issue(&user.id, user.token_version);
            let mut response = see_other(&next);
            let _ = response.add_cookie(&access::session_cookie(&state, &token));
            Ok(response)
        }
        Err(e @ (AppError::BadCredentials(_) | AppError::TooManyRequests { .. })) => {
            let status = actix_web::ResponseError::status_code(&e);
            let (pre, _) = pre_session_value(&req);
            let page = SigninPage {
                layout: Layout::anonymous(&state, "Sign in", &pre),
                next,
                email: form.email,
                error: Some(e.to_string()),
                notice: None,
            };
            let mut response = render_with_status(status, &page);
            if let AppError::TooManyRequests {
                retry_after_seconds,
            } = e
            {
                response.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    actix_web::http::header::HeaderValue::from(retry_after_seconds),
                );
            }
            Ok(response)
        }
        Err(e) => Err(e),
    }
}

pub async fn signout(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let (db, policy) = (state.db.clone(), state.policy.clone());
    blocking(move || accounts::sign_out(&db, &policy, &user)).await?;
    let mut response = see_other("/signin?notice=signed_out");
    let _ = response.add_cookie(&access::expired_session_cookie());
    Ok(response)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    email: String,
    password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// A bearer token for the `Authorization: Bearer …` header.
    token: String,
    /// When the token stops working (RFC 3339, UTC).
    expires_at: String,
}

/// Exchange e-mail and password for a bearer token.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "A bearer token", body = TokenResponse),
        (status = 401, description = "Wrong e-mail or password", body = super::error::ErrorBody),
        (status = 429, description = "Too many failed attempts", body = super::error::ErrorBody),
    ))]
pub async fn issue_token(
    state: State,
    req: HttpRequest,
    body: web::Json<TokenRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let user = sign_in(&state, &req, &body.email, body.password).await?;
    record_sign_in(&state, &user, "api").await?;
    let (token, claims) = state.tokens.issue(&user.id, user.token_version);
    Ok(HttpResponse::Ok().json(TokenResponse {
        token,
        expires_at: claims.expires_at().and_utc().to_rfc3339(),
    }))
}

/// Sign out: the presented token stops working at once.
#[utoipa::path(post, path = "/api/v1/auth/revoke", tag = "auth",
    responses((status = 204, description = "The token is revoked")),
    security(("bearer" = [])))]
pub async fn revoke_token(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let (db, policy) = (state.db.clone(), state.policy.clone());
    blocking(move || accounts::sign_out(&db, &policy, &user)).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    email: String,
    role: String,
    permissions: Vec<String>,
}

/// Who the caller is.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    responses((status = 200, description = "The signed-in user", body = Me)),
    security(("bearer" = [])))]
pub async fn me(user: CurrentUser) -> HttpResponse {
    HttpResponse::Ok().json(Me {
        email: user.email.clone(),
        role: user.role.clone(),
        permissions: user.permissions.iter().map(|p| p.to_string()).collect(),
    })
}

#[derive(Template)]
#[template(path = "auth/account.html")]
struct AccountPage {
    layout: Layout,
    email: String,
    role: String,
    error: Option<String>,
    notice: Option<&'static str>,
}

#[derive(Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

pub async fn account_page(
    state: State,
    user: CurrentUser,
    query: web::Query<NoticeQuery>,
) -> HttpResponse {
    render(&AccountPage {
        layout: Layout::new(&state, Some(&user), "Your account", ""),
        email: user.email.clone(),
        role: user.role.clone(),
        error: None,
        notice: notice_text(query.notice.as_deref()),
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
    /// Forms repeat the new password; the API may omit it.
    #[serde(default)]
    #[schema(nullable = false)]
    confirm_password: Option<String>,
}

async fn change_password(
    state: &State,
    user: &CurrentUser,
    change: PasswordChange,
) -> Result<String, AppError> {
    if change
        .confirm_password
        .as_ref()
        .is_some_and(|c| *c != change.new_password)
    {
        return Err(AppError::invalid(
            "confirm_password",
            "the two new passwords differ",
        ));
    }
    let (db, policy, who) = (state.db.clone(), state.policy.clone(), user.clone());
    blocking(move || {
        accounts::change_password(
            &db,
            &policy,
            &who,
            &change.current_password,
            change.new_password,
        )
    })
    .await?;
    // Every token was revoked; this session continues with a fresh one.
    let (db, id) = (state.db.clone(), user.id.clone());
    let row = blocking(move || db.read(|c| UserRow::find(c, &id)))
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(state.tokens.issue(&row.id, row.token_version).0)
}

pub async fn change_password_submit(
    state: State,
    user: CurrentUser,
    form: web::Form<PasswordChange>,
) -> Result<HttpResponse, AppError> {
    match change_password(&state, &user, form.into_inner()).await {
        Ok(token) => {
            let mut response = see_other("/account?notice=password_changed");
            let _ = response.add_cookie(&access::session_cookie(&state, &token));
            Ok(response)
        }
        Err(e @ AppError::InvalidInput { .. }) => Ok(render_with_status(
            actix_web::http::StatusCode::BAD_REQUEST,
            &AccountPage {
                layout: Layout::new(&state, Some(&user), "Your account", ""),
                email: user.email.clone(),
                role: user.role.clone(),
                error: Some(e.to_string()),
                notice: None,
            },
        )),
        Err(e) => Err(e),
    }
}

/// Change one's own password. All outstanding tokens of the user are revoked; a fresh token is
/// returned for the caller.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "auth",
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed; a fresh token", body = TokenResponse),
        (status = 400, description = "Wrong current password or weak new one", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn change_password_api(
    state: State,
    user: CurrentUser,
    body: web::Json<PasswordChange>,
) -> Result<HttpResponse, AppError> {
    let token = change_password(&state, &user, body.into_inner()).await?;
    let claims = state
        .tokens
        .verify(&token)
        .map_err(|e| AppError::internal(anyhow::anyhow!(e)))?;
    Ok(HttpResponse::Ok().json(TokenResponse {
        token,
        expires_at: claims.expires_at().and_utc().to_rfc3339(),
    }))
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/trail?page=2")), "/trail?page=2");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
        assert_eq!(safe_next(Some("/x\r\nSet-Cookie: a=b")), "/");
        assert_eq!(safe_next(Some("/x\u{85}y")), "/");
        assert_eq!(safe_next(Some("/\tevil")), "/");
    }
}
