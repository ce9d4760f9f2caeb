//! User administration (admin only): pages and API.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};

use super::error::{AppError, blocking};
use super::layout::{Layout, State, render_with_status, see_other};
use crate::app::accounts;
use crate::auth::CurrentUser;
use crate::db::users::UserRow;
use crate::trail::Actor;

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    id: String,
    email: String,
    role: String,
    disabled: bool,
    /// RFC 3339, UTC.
    created_at: String,
    /// For the page: "1 Dec 2026, 10:04".
    #[serde(skip)]
    #[schema(ignore)]
    created_display: String,
}

impl From<UserRow> for UserView {
    fn from(u: UserRow) -> UserView {
        UserView {
            id: u.id,
            email: u.email,
            role: u.role,
            disabled: u.disabled,
            created_at: u.created_at.and_utc().to_rfc3339(),
            created_display: super::format::datetime(u.created_at),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<UserView>,
    roles: Vec<String>,
    me: String,
    error: Option<String>,
    notice: Option<String>,
    form_email: String,
    form_role: String,
}

#[derive(Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

fn notice_text(code: Option<&str>) -> Option<String> {
    Some(
        match code? {
            "created" => "The user has been created.",
            "role" => "The role has been changed; the user's sessions were signed out.",
            "disabled" => "The account has been disabled and its sessions signed out.",
            "enabled" => "The account has been enabled.",
            "password" => "The password has been reset; the user's sessions were signed out.",
            _ => return None,
        }
        .to_string(),
    )
}

async fn load_users(state: &State) -> Result<Vec<UserView>, AppError> {
    let db = state.db.clone();
    Ok(blocking(move || db.read(UserRow::all))
        .await?
        .into_iter()
        .map(UserView::from)
        .collect())
}

async fn users_page(
    state: &State,
    user: &CurrentUser,
    status: StatusCode,
    error: Option<String>,
    notice: Option<String>,
    form: (String, String),
) -> Result<HttpResponse, AppError> {
    let page = UsersPage {
        layout: Layout::new(state, Some(user), "Users", "/admin/users"),
        users: load_users(state).await?,
        roles: state.policy.roles.keys().cloned().collect(),
        me: user.id.clone(),
        error,
        notice,
        form_email: form.0,
        form_role: form.1,
    };
    Ok(render_with_status(status, &page))
}

pub async fn list_page(
    state: State,
    user: CurrentUser,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse, AppError> {
    users_page(
        &state,
        &user,
        StatusCode::OK,
        None,
        notice_text(query.notice.as_deref()),
        (String::new(), "marketing".into()),
    )
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    email: String,
    role: String,
    password: String,
}

async fn create(state: &State, actor: &CurrentUser, new: NewUser) -> Result<UserRow, AppError> {
    let (db, policy, actor) = (
        state.db.clone(),
        state.policy.clone(),
        Actor::user(&actor.email),
    );
    blocking(move || {
        accounts::create_user(&db, &policy, &actor, &new.email, &new.role, new.password)
    })
    .await
}

/// Re-renders the page with a form error instead of leaving the admin on an error page.
async fn form_result(
    state: &State,
    user: &CurrentUser,
    result: Result<(), AppError>,
    notice: &str,
    form: (String, String),
) -> Result<HttpResponse, AppError> {
    match result {
        Ok(()) => Ok(see_other(&format!("/admin/users?notice={notice}"))),
        Err(e @ (AppError::InvalidInput { .. } | AppError::Conflict(_))) => {
            let status = actix_web::ResponseError::status_code(&e);
            users_page(state, user, status, Some(e.to_string()), None, form).await
        }
        Err(e) => Err(e),
    }
}

pub async fn create_submit(
    state: State,
    user: CurrentUser,
    form: web::Form<NewUser>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let kept = (form.email.clone(), form.role.clone());
    let result = create(&state, &user, form).await.map(|_| ());
    form_result(&state, &user, result, "created", kept).await
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
}

pub async fn role_submit(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, AppError> {
    let (db, policy, actor) = (
        state.db.clone(),
        state.policy.clone(),
        Actor::user(&user.email),
    );
    let (id, role) = (path.into_inner(), form.into_inner().role);
    let result = blocking(move || accounts::set_role(&db, &policy, &actor, &id, &role)).await;
    form_result(&state, &user, result, "role", Default::default()).await
}

async fn set_disabled(
    state: State,
    user: CurrentUser,
    id: String,
    disabled: bool,
) -> Result<HttpResponse, AppError> {
    if disabled && id == user.id {
        return form_result(
            &state,
            &user,
            Err(AppError::Conflict(
                "you cannot disable your own account".into(),
            )),
            "",
            Default::default(),
        )
        .await;
    }
    let (db, policy, actor) = (
        state.db.clone(),
        state.policy.clone(),
        Actor::user(&user.email),
    );
    let result =
        blocking(move || accounts::set_disabled(&db, &policy, &actor, &id, disabled)).await;
    let notice = if disabled { "disabled" } else { "enabled" };
    form_result(&state, &user, result, notice, Default::default()).await
}

pub async fn disable_submit(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    set_disabled(state, user, path.into_inner(), true).await
}

pub async fn enable_submit(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    set_disabled(state, user, path.into_inner(), false).await
}

#[derive(Deserialize)]
pub struct ResetForm {
    password: String,
}

pub async fn reset_password_submit(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    form: web::Form<ResetForm>,
) -> Result<HttpResponse, AppError> {
    let (db, policy, actor) = (
        state.db.clone(),
        state.policy.clone(),
        Actor::user(&user.email),
    );
    let (id, password) = (path.into_inner(), form.into_inner().password);
    let result =
        blocking(move || accounts::reset_password(&db, &policy, &actor, &id, password)).await;
    form_result(&state, &user, result, "password", Default::default()).await
}

/// All staff accounts.
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, description = "Accounts", body = [UserView])),
    security(("bearer" = [])))]
pub async fn list_api(state: State) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(load_users(&state).await?))
}

/// Create an account.
#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, description = "Invalid e-mail, role or password", body = super::error::ErrorBody),
        (status = 409, description = "The e-mail is taken", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_api(
    state: State,
    user: CurrentUser,
    body: web::Json<NewUser>,
) -> Result<HttpResponse, AppError> {
    let created = create(&state, &user, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(UserView::from(created)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    role: Option<String>,
    disabled: Option<bool>,
}

/// Change an account's role or disable it; either ends the account's sessions.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id")),
    request_body = UserUpdate,
    responses(
        (status = 200, description = "Updated", body = UserView),
        (status = 404, description = "No such user", body = super::error::ErrorBody),
        (status = 409, description = "Would leave no admin", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn update_api(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    body: web::Json<UserUpdate>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let update = body.into_inner();
    if update.disabled == Some(true) && id == user.id {
        return Err(AppError::Conflict(
            "you cannot disable your own account".into(),
        ));
    }
    let (db, policy, actor, target) = (
        state.db.clone(),
        state.policy.clone(),
        Actor::user(&user.email),
        id.clone(),
    );
    let row = blocking(move || {
        if let Some(role) = &update.role {
            accounts::set_role(&db, &policy, &actor, &target, role)?;
        }
        if let Some(disabled) = update.disabled {
            accounts::set_disabled(&db, &policy, &actor, &target, disabled)?;
        }
        db.read(|c| UserRow::find(c, &target))
            .map_err(accounts::AccountError::from)
    })
    .await?
    .ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok().json(UserView::from(row)))
}
