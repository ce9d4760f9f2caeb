//! The policy in force.

use actix_web::HttpResponse;
use askama::Template;

use super::layout::{Layout, State, render};
use crate::auth::CurrentUser;
use crate::policy::Policy;

#[derive(Template)]
#[template(path = "policy/index.html")]
struct PolicyPage<'a> {
    layout: Layout,
    policy: &'a Policy,
}

pub async fn page(state: State, user: CurrentUser) -> HttpResponse {
    render(&PolicyPage {
        layout: Layout::new(&state, Some(&user), "Policy", "/policy"),
        policy: &state.policy,
    })
}

/// The policy in force, its version, and its full text.
#[utoipa::path(get, path = "/api/v1/policy", tag = "policy",
    responses((status = 200, description = "The policy")),
    security(("bearer" = [])))]
pub async fn api(state: State) -> HttpResponse {
    let mut body = serde_json::to_value(&*state.policy).unwrap_or_default();
    body["source"] = state.policy.source.clone().into();
    HttpResponse::Ok().json(body)
}
