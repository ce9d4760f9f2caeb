//! User administration, by API and in the browser, with every change in the trail.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, PASSWORD, Pages, api_client, spawn_app, texts};

#[tokio::test]
async fn an_admin_creates_an_account_that_can_sign_in_and_the_trail_says_who_did_it() {
    let app = spawn_app().await;
    let created = app
        .api("admin", Method::POST, "/api/v1/users")
        .json(&json!({"email": "New.Person@Example.test", "role": "analyst", "password": "a long enough secret"}))
        .expecting(201)
        .await;
    assert_eq!(created["email"], "new.person@example.test");
    assert_eq!(created["role"], "analyst");
    assert!(
        created.get("password_hash").is_none(),
        "hashes never leave the server"
    );

    let token = api_client()
        .post(app.url("/api/v1/auth/token"))
        .json(&json!({"email": "new.person@example.test", "password": "a long enough secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);

    let trail = app.trail("action=user.created").await;
    let entry = trail
        .iter()
        .find(|e| e["subject"] == created["id"])
        .expect("creation is in the trail");
    assert_eq!(entry["actor"], "admin@example.test");
    assert_eq!(entry["policy_version"], json!(app.policy.version));
    assert!(!entry["detail"].as_str().unwrap().contains("secret"));

    let (_, list) = app.get_json("admin", "/api/v1/users").await;
    assert_eq!(list.as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn bad_account_requests_say_which_field_is_wrong_and_change_nothing() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"email": "x@example.test", "role": "owner", "password": "a long enough secret"}),
            400,
            Some("role"),
        ),
        (
            json!({"email": "not-an-email", "role": "analyst", "password": "a long enough secret"}),
            400,
            Some("email"),
        ),
        (
            json!({"email": "x@example.test", "role": "analyst", "password": "short"}),
            400,
            Some("password"),
        ),
        (
            json!({"email": "analyst@example.test", "role": "analyst", "password": "a long enough secret"}),
            409,
            None,
        ),
    ];
    for (body, status, field) in cases {
        let response = app
            .api("admin", Method::POST, "/api/v1/users")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        if let Some(field) = field {
            assert_eq!(error["error"]["field"], field, "{error}");
        }
        assert!(!error["error"]["message"].as_str().unwrap().is_empty());
    }
    let (_, list) = app.get_json("admin", "/api/v1/users").await;
    assert_eq!(list.as_array().unwrap().len(), 4, "nothing was created");
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_or_disabled() {
    let app = spawn_app().await;
    let admin = app.user("admin").id;
    for body in [json!({"role": "analyst"}), json!({"disabled": true})] {
        app.api("admin", Method::PATCH, &format!("/api/v1/users/{admin}"))
            .json(&body)
            .expecting(409)
            .await;
    }
    assert_eq!(app.user("admin").role, "admin");

    // A role change takes effect on the next request: the old token no longer carries it.
    let analyst = app.user("analyst").id;
    let old = app.token("analyst");
    app.api("admin", Method::PATCH, &format!("/api/v1/users/{analyst}"))
        .json(&json!({"role": "compliance"}))
        .expecting(200)
        .await;
    let status = api_client()
        .get(app.url("/api/v1/trail"))
        .bearer_auth(old)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let (status, _) = app.get_json("analyst", "/api/v1/trail").await;
    assert_eq!(status, 200, "with a new token the new role applies");
    let changed = app.trail("action=user.role_changed").await;
    assert_eq!(changed[0]["subject"], json!(analyst));
}

#[tokio::test]
async fn the_admin_page_lists_and_creates_accounts_with_a_form() {
    let app = spawn_app().await;
    let client = app.sign_in("admin").await;
    let page = client.get(app.url("/admin/users")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let emails = texts(&html, "table td");
    assert!(
        emails.iter().any(|t| t == "marketing@example.test"),
        "{emails:?}"
    );

    let response = client
        .post_form(
            app.url("/admin/users"),
            &html,
            &[
                ("email", "seller@example.test"),
                ("role", "marketing"),
                ("password", "another long secret"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let html = client.page(app.url("/admin/users")).await;
    assert!(
        texts(&html, "table td")
            .iter()
            .any(|t| t == "seller@example.test")
    );

    // A mistake comes back on the same page, with the problem named.
    let response = client
        .post_form(
            app.url("/admin/users"),
            &html,
            &[
                ("email", "seller@example.test"),
                ("role", "marketing"),
                ("password", "another long secret"),
            ],
        )
        .await;
    assert_eq!(response.status(), 409);
    let html = response.text().await.unwrap();
    assert!(html.contains("seller@example.test"));
    assert_eq!(texts(&html, "h1"), ["Users"]);

    // Marketing cannot reach the page at all.
    let marketing = app.sign_in("marketing").await;
    let page = marketing.get(app.url("/admin/users")).send().await.unwrap();
    assert_eq!(page.status(), 403);
    let _ = PASSWORD;
}
