//! One customer's record for staff with `customers:read`: attributes (protected ones only for
//! `customers:read_protected`) and behavioural features as of a date. A view of
//! individual-level data: each call is in the trail, by pseudonym.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::error::{AppError, blocking};
use super::layout::State;
use crate::app::customers::{self as view, CustomerView};
use crate::auth::CurrentUser;
use crate::policy::Permission;
use crate::trail::Actor;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ViewQuery {
    /// The day the behavioural features are computed as of (YYYY-MM-DD, UTC); today if absent.
    as_of: Option<String>,
}

/// A customer's attributes and behavioural features.
#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "The customer's id"), ViewQuery),
    responses(
        (status = 200, description = "The customer", body = CustomerView),
        (status = 400, description = "A bad date", body = super::error::ErrorBody),
        (status = 404, description = "No such customer", body = super::error::ErrorBody),
        (status = 409, description = "The customer was erased", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_api(
    state: State,
    user: CurrentUser,
    path: web::Path<String>,
    q: web::Query<ViewQuery>,
) -> Result<HttpResponse, AppError> {
    let as_of = match q.as_of.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => crate::db::now().date(),
        Some(s) => crate::time::parse_day(s).map_err(|m| AppError::invalid("as_of", m))?,
    };
    crate::segmentation::settings::check_as_of(as_of, crate::db::now().date())
        .map_err(|e| AppError::invalid("as_of", e.to_string()))?;
    let with_protected = user.can(Permission::CustomersReadProtected);
    let (db, pseudonyms, version, actor, id) = (
        state.db.clone(),
        state.pseudonyms.clone(),
        state.policy.version.clone(),
        Actor::user(&user.email),
        path.into_inner(),
    );
    let customer = blocking(move || {
        view::view(
            &db,
            &pseudonyms,
            &version,
            &actor,
            &id,
            as_of,
            with_protected,
        )
    })
    .await?;
    Ok(HttpResponse::Ok().json(customer))
}
