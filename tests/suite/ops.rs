//! The API's edges and the operator's view: one error shape, body limits, health, metrics, and
//! an OpenAPI document that covers every API route.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{Answer, Pages, api_client, spawn_app, spawn_app_with};
use fairseg::web::routes;

#[tokio::test]
async fn malformed_json_is_refused_with_where_it_went_wrong() {
    let app = spawn_app().await;
    let body = app
        .api("admin", Method::POST, "/api/v1/users")
        .header("content-type", "application/json")
        .body("{\"email\": \"a@b.test\",\n \"role\": }")
        .expecting(400)
        .await;
    assert_eq!(body["error"]["code"], "invalid_input");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("column"), "{message}");

    app.api("admin", Method::POST, "/api/v1/users")
        .header("content-type", "text/plain")
        .body("{}")
        .expecting(400)
        .await;
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_it_is_read() {
    let app = spawn_app().await;
    let huge = format!("{{\"email\": \"{}\"}}", "x".repeat(100 * 1024));
    let body = app
        .api("admin", Method::POST, "/api/v1/users")
        .header("content-type", "application/json")
        .body(huge)
        .expecting(413)
        .await;
    assert_eq!(body["error"]["code"], "payload_too_large");
    let (_, users) = app.get_json("admin", "/api/v1/users").await;
    assert_eq!(users.as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn health_and_metrics_answer_operators() {
    let app = spawn_app().await;
    let health: Value = api_client().get(app.url("/healthz")).expecting(200).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["policy_version"], app.policy.version.as_str());

    let _ = app.get_json("admin", "/api/v1/me").await;
    let _ = api_client()
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .unwrap();
    let response = api_client().get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    let me_ok = text
        .lines()
        .find(|l| {
            l.starts_with("fairseg_http_requests_total{")
                && l.contains(r#"route="/api/v1/me""#)
                && l.contains(r#"status="200""#)
        })
        .unwrap_or_else(|| panic!("no request counter for /api/v1/me:\n{text}"));
    assert!(me_ok.ends_with(" 1"), "{me_ok}");
    assert!(
        text.contains(r#"route="/api/v1/me",status="401""#) || text.contains(r#"status="401""#)
    );
    assert!(text.contains("fairseg_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn the_openapi_document_describes_every_api_route() {
    let app = spawn_app().await;
    let doc: Value = api_client()
        .get(app.url("/api/v1/openapi.json"))
        .expecting(200)
        .await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut missing = Vec::new();
    for route in routes::table() {
        if !route.is_api() || route.path == "/api/v1/openapi.json" {
            continue;
        }
        let method = route.method.as_str().to_lowercase();
        if doc["paths"][route.path][&method].is_null() {
            missing.push(format!("{} {}", route.method, route.path));
        }
    }
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document: {missing:?}"
    );
    // And nothing documented that does not exist.
    let table = routes::table();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                table
                    .iter()
                    .any(|r| r.path == path && r.method.as_str().eq_ignore_ascii_case(method)),
                "documented but not served: {method} {path}"
            );
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn pages_render_errors_as_pages_and_the_stylesheet_is_served_offline() {
    let app = spawn_app().await;
    let client = app.sign_in("marketing").await;
    let response = client.get(app.url("/trail")).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.text().await.unwrap();
    assert!(html.contains("<h1"), "an error page, not JSON");

    let css = api_client()
        .get(app.url("/static/app.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let home = client.page(app.url("/")).await;
    assert!(
        !home.contains("https://"),
        "no third-party assets: pages work offline"
    );
}

/// A server with no turn to give: every read waits out the queue's patience and is refused,
/// while the health check and the metrics, which a load balancer and monitoring need most when
/// the server is busy, still answer at once.
#[tokio::test]
async fn a_read_that_waits_too_long_is_told_when_to_come_back_and_monitoring_sees_it() {
    let app = spawn_app_with(|s| {
        s.max_concurrent_requests = Some(0);
        s.queue_patience = std::time::Duration::from_millis(300);
    })
    .await;

    let response = app
        .api("marketing", Method::GET, "/api/v1/segmentations")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try again in 5 seconds"),
        "{body}"
    );

    // A page gets the error page, not JSON, with the same advice.
    let response = api_client().get(app.url("/signin")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("try again in 5 seconds"), "{page}");

    let health: Value = api_client().get(app.url("/healthz")).expecting(200).await;
    assert_eq!(health["status"], "ok");
    let text = api_client()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metric = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .to_string()
    };
    assert_eq!(metric("fairseg_reads_refused_total"), "2");
    assert_eq!(metric("fairseg_reads_limit"), "0");
    assert_eq!(metric("fairseg_reads_waiting"), "0");
    assert_eq!(metric("fairseg_reads_in_flight"), "0");
}
