//! Deny by default: every route of the table, called by every role and by nobody, answers
//! as its declared access says; a path outside the table does not exist.

use fairseg::policy::Permission;
use fairseg::web::routes::{self, Access};
use reqwest::{Method, StatusCode};

use crate::helpers::{ROLES, spawn_app};

/// A concrete path for a route pattern: each `{param}` becomes an id that exists nowhere.
fn concrete(pattern: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in pattern.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                out.push_str("00000000-0000-7000-8000-000000000000");
            }
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

#[tokio::test]
async fn every_route_answers_every_role_as_its_access_declares() {
    let app = spawn_app().await;
    let table = routes::table();
    assert!(table.len() > 20, "the table is the whole app");
    let mut failures = Vec::new();

    for route in &table {
        let path = concrete(route.path);
        let method = Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
        for caller in std::iter::once(None).chain(ROLES.iter().copied().map(Some)) {
            // A JSON body `{}` is never a complete command, so no call here changes anything
            // beyond ending the very token it presents (sign-out); each call gets its own token.
            let mut request = crate::helpers::api_client()
                .request(method.clone(), app.url(&path))
                .header("accept", "application/json");
            if method != Method::GET {
                request = request
                    .header("content-type", "application/json")
                    .body("{}");
            }
            if let Some(role) = caller {
                request = request.bearer_auth(app.token(role));
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let sent_to_sign_in = status == StatusCode::SEE_OTHER
                && response.headers()["location"]
                    .to_str()
                    .unwrap()
                    .starts_with("/signin?next=");

            let allowed = match (route.access, caller) {
                (Access::Public, _) => true,
                (_, None) => false,
                (Access::SignedIn, Some(_)) => true,
                (Access::Permission(p), Some(role)) => {
                    app.policy.role(role).unwrap().permissions.contains(&p)
                }
            };
            let ok = match (allowed, caller) {
                (true, _) => status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                // Pages send visitors to sign in; the API answers 401.
                (false, None) if route.is_api() => status == StatusCode::UNAUTHORIZED,
                (false, None) if route.method == actix_web::http::Method::GET => sent_to_sign_in,
                (false, None) => status == StatusCode::UNAUTHORIZED,
                (false, Some(_)) => status == StatusCode::FORBIDDEN,
            };
            // No route may fail inside: a 500 is a bug whoever calls.
            if !ok || status.is_server_error() {
                failures.push(format!(
                    "{} {} as {}: got {status}, expected {}",
                    route.method,
                    route.path,
                    caller.unwrap_or("anonymous"),
                    if allowed {
                        "access"
                    } else if caller.is_none() {
                        "401 or a redirect to sign in"
                    } else {
                        "403"
                    },
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn the_default_roles_see_what_their_jobs_need_and_no_more() {
    // Spelled out, so a policy edit that hands marketing the trail or protected attributes
    // fails here rather than passing the table-driven walk above.
    let app = spawn_app().await;
    let cases = [
        ("marketing", "/api/v1/trail", 403),
        ("marketing", "/api/v1/users", 403),
        ("analyst", "/api/v1/trail", 403),
        ("analyst", "/api/v1/users", 403),
        ("compliance", "/api/v1/trail", 200),
        ("compliance", "/api/v1/users", 403),
        ("compliance", "/api/v1/policy", 200),
        ("admin", "/api/v1/users", 200),
        ("admin", "/api/v1/trail", 200),
    ];
    for (role, path, expected) in cases {
        let (status, body) = app.get_json(role, path).await;
        assert_eq!(status, expected, "{role} GET {path}: {body}");
    }
    let marketing = app.policy.role("marketing").unwrap();
    assert!(
        !marketing
            .permissions
            .contains(&Permission::CustomersReadProtected)
    );
    assert!(!marketing.permissions.contains(&Permission::AuditsOverride));
    let compliance = app.policy.role("compliance").unwrap();
    assert!(compliance.permissions.contains(&Permission::AuditsOverride));
}

#[tokio::test]
async fn pages_send_anonymous_visitors_to_sign_in_and_back() {
    let app = spawn_app().await;
    for route in routes::table() {
        if route.method != actix_web::http::Method::GET
            || route.is_api()
            || route.access == Access::Public
        {
            continue;
        }
        let path = concrete(route.path);
        let response = crate::helpers::browser_client()
            .get(app.url(&path))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "GET {path}");
        let location = response.headers()["location"].to_str().unwrap();
        assert!(
            location.starts_with("/signin?next="),
            "GET {path} → {location}"
        );
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused_in_the_error_shape() {
    let app = spawn_app().await;
    let client = crate::helpers::api_client();

    let response = client
        .get(app.url("/api/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    let response = client.delete(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert!(body["error"]["message"].as_str().unwrap().len() > 5);
}
