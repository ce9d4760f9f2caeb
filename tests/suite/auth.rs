//! Signing in and out, tokens, CSRF and throttling, as users and attackers meet them.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Answer, PASSWORD, Pages, api_client, browser_client, csrf_token, spawn_app, texts,
};

fn set_cookie<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie set"))
}

#[tokio::test]
async fn signing_in_sets_a_strict_httponly_session_and_opens_the_home_page() {
    let app = spawn_app().await;
    let client = browser_client();
    let (status, html) = client.page_with_status(app.url("/signin")).await;
    assert_eq!(status, 200);
    // Every input is labelled, for screen readers.
    assert_eq!(texts(&html, "label[for=email]"), ["E-mail"]);
    assert_eq!(texts(&html, "label[for=password]"), ["Password"]);

    let response = client
        .post_form(
            app.url("/signin"),
            &html,
            &[
                ("email", "Marketing@Example.test"),
                ("password", PASSWORD),
                ("next", "/account"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/account");
    let cookie = set_cookie(&response, "fairseg_session");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");

    let (status, html) = client.page_with_status(app.url("/")).await;
    assert_eq!(status, 200);
    assert_eq!(texts(&html, "h1"), ["Welcome"]);
    assert!(texts(&html, ".lead")[0].contains("Marketing"));
    // Marketing's navigation has no trail and no user administration.
    let nav = texts(&html, "nav a");
    assert!(!nav.iter().any(|l| l.contains("Trail")), "{nav:?}");
    assert!(!nav.iter().any(|l| l.contains("Users")), "{nav:?}");

    let trail = app.trail("action=auth.signed_in").await;
    assert_eq!(trail[0]["actor"], "marketing@example.test");
    assert_eq!(trail[0]["policy_version"], json!(app.policy.version));
}

#[tokio::test]
async fn a_wrong_password_keeps_the_visitor_on_the_form_with_a_message() {
    let app = spawn_app().await;
    let client = browser_client();
    let response = app
        .submit_sign_in(
            &client,
            &[
                ("email", "marketing@example.test"),
                ("password", "not the password"),
            ],
        )
        .await;
    assert_eq!(response.status(), 401);
    assert!(
        response
            .headers()
            .get("set-cookie")
            .is_none_or(|c| !c.to_str().unwrap().starts_with("fairseg_session=ey"))
    );
    let html = response.text().await.unwrap();
    assert_eq!(texts(&html, "h1"), ["Sign in to fairseg"]);
    assert!(
        html.contains("marketing@example.test"),
        "the e-mail is kept in the form"
    );
}

#[tokio::test]
async fn forms_without_a_valid_csrf_token_are_refused() {
    let app = spawn_app().await;

    // The sign-in form: no token, then a token minted for another visitor.
    let client = browser_client();
    let _ = client.get(app.url("/signin")).send().await.unwrap();
    let form = |csrf: &str| {
        vec![
            ("csrf_token", csrf.to_string()),
            ("email", "admin@example.test".to_string()),
            ("password", PASSWORD.to_string()),
        ]
    };
    let response = client
        .post(app.url("/signin"))
        .form(&form(""))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let other = browser_client();
    let foreign = csrf_token(&other.page(app.url("/signin")).await);
    let response = client
        .post(app.url("/signin"))
        .form(&form(&foreign))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // A signed-in session: signing out needs the page's token; a forged post changes nothing.
    let client = app.sign_in("compliance").await;
    let response = client
        .post(app.url("/signout"))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(client.get(app.url("/")).send().await.unwrap().status(), 200);

    let html = client.page(app.url("/")).await;
    let response = client.post_form(app.url("/signout"), &html, &[]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/signin?notice=signed_out");
    let after = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(after.status(), 303, "signed out: back to the sign-in page");
}

#[tokio::test]
async fn a_signed_out_cookie_no_longer_works_even_if_replayed() {
    let app = spawn_app().await;
    let client = browser_client();
    let response = app
        .submit_sign_in(
            &client,
            &[("email", "analyst@example.test"), ("password", PASSWORD)],
        )
        .await;
    // Keep a copy of the cookie, as someone who copied it from the machine would.
    let stolen = set_cookie(&response, "fairseg_session")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let replay = || {
        let url = app.url("/api/v1/me");
        let cookie = stolen.clone();
        async move {
            api_client()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(replay().await, 200);

    let html = client.page(app.url("/")).await;
    let response = client.post_form(app.url("/signout"), &html, &[]).await;
    assert_eq!(response.status(), 303);
    let cleared = set_cookie(&response, "fairseg_session");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(replay().await, 401);
}

#[tokio::test]
async fn the_token_api_issues_bearer_tokens_that_identify_the_caller() {
    let app = spawn_app().await;
    let client = api_client();
    let response = client
        .post(app.url("/api/v1/auth/token"))
        .json(&json!({"email": "compliance@example.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    let minutes = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes();
    assert!((28..=30).contains(&minutes), "short expiry: {minutes} min");

    let me: Value = client
        .get(app.url("/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "compliance@example.test");
    assert_eq!(me["role"], "compliance");
    assert!(
        me["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("audits:override"))
    );

    let wrong = client
        .post(app.url("/api/v1/auth/token"))
        .json(&json!({"email": "compliance@example.test", "password": "nope nope nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_credentials", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body.get("token").is_none());
}

#[tokio::test]
async fn forged_expired_and_unsigned_tokens_are_refused() {
    let app = spawn_app().await;
    let user = app.user("admin");
    let good = app.token("admin");

    // Altered payload: same signature, different claims.
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    parts[1] = parts[1].chars().rev().collect();
    let altered = parts.join(".");
    // Signed with another key.
    let foreign = fairseg::auth::token::TokenKeys::new(&[7u8; 64], chrono::Duration::minutes(30))
        .issue(&user.id, user.token_version)
        .0;
    // alg none: a header that asks for no signature at all.
    use base64_url_like::encode;
    let unsigned = format!(
        "{}.{}.",
        encode(br#"{"alg":"none","typ":"JWT"}"#),
        good.split('.').nth(1).unwrap()
    );
    // Expired ten minutes ago, signed with the real key.
    let expired = fairseg::auth::token::TokenKeys::new(&app.secret, chrono::Duration::minutes(-10))
        .issue(&user.id, user.token_version)
        .0;

    for (what, token) in [
        ("altered", altered),
        ("foreign key", foreign),
        ("alg none", unsigned),
        ("expired", expired),
        ("garbage", "not-a-token".to_string()),
    ] {
        let response = api_client()
            .get(app.url("/api/v1/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{what} token");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "session_ended", "{what}: {body}");
    }
    app.api("admin", Method::GET, "/api/v1/me")
        .expecting(200)
        .await;
}

/// Base64url without padding, as JWT segments are written; small enough not to need a crate
/// in the test's dependencies beyond what the server already uses.
mod base64_url_like {
    pub fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |acc, b| (acc << 8) | *b as u32) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

#[tokio::test]
async fn revoking_a_token_ends_it_and_only_it() {
    let app = spawn_app().await;
    let first = app.token("marketing");
    let second = app.token("marketing");
    let response = api_client()
        .post(app.url("/api/v1/auth/revoke"))
        .bearer_auth(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let status = |t: String| {
        let url = app.url("/api/v1/me");
        async move {
            api_client()
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(status(first).await, 401);
    assert_eq!(status(second).await, 200);
}

#[tokio::test]
async fn changing_the_password_ends_every_session_and_the_old_password() {
    let app = spawn_app().await;
    let other_session = app.token("analyst");
    let current = app.token("analyst");
    let response = api_client()
        .post(app.url("/api/v1/me/password"))
        .bearer_auth(&current)
        .json(&json!({"current_password": PASSWORD, "new_password": "a much better passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let response = api_client()
        .post(app.url("/api/v1/me/password"))
        .bearer_auth(app.token("analyst"))
        .json(&json!({"current_password": "a much better passphrase", "new_password": "short"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "a weak password is refused");

    for token in [&other_session, &current] {
        let status = api_client()
            .get(app.url("/api/v1/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401);
    }
    let sign_in = |password: &'static str| {
        let url = app.url("/api/v1/auth/token");
        async move {
            api_client()
                .post(url)
                .json(&json!({"email": "analyst@example.test", "password": password}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(sign_in(PASSWORD).await, 401);
    assert_eq!(sign_in("a much better passphrase").await, 200);
}

#[tokio::test]
async fn repeated_failed_sign_ins_are_throttled_even_for_the_right_password() {
    let app = spawn_app().await;
    let attempt = |password: &'static str| {
        let url = app.url("/api/v1/auth/token");
        async move {
            api_client()
                .post(url)
                .json(&json!({"email": "admin@example.test", "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..5 {
        assert_eq!(attempt("guess guess guess").await.status(), 401);
    }
    let locked = attempt(PASSWORD).await;
    assert_eq!(locked.status(), 429);
    let retry: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body: Value = locked.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");

    // Another account from elsewhere is not locked out by this.
    let other = api_client()
        .post(app.url("/api/v1/auth/token"))
        .json(&json!({"email": "compliance@example.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}

#[tokio::test]
async fn a_disabled_account_loses_its_sessions_at_once() {
    let app = spawn_app().await;
    let token = app.token("marketing");
    let id = app.user("marketing").id;
    app.api("admin", Method::PATCH, &format!("/api/v1/users/{id}"))
        .json(&json!({"disabled": true}))
        .expecting(200)
        .await;
    let status = api_client()
        .get(app.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let sign_in = api_client()
        .post(app.url("/api/v1/auth/token"))
        .json(&json!({"email": "marketing@example.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(sign_in.status(), 401);
}

/// The home page's cards count what they name: the trail's entries (as the trail API counts
/// them) and the staff accounts, each only for a role that may see that card.
#[tokio::test]
async fn the_home_page_counts_the_trail_and_the_accounts_for_those_who_may_see_them() {
    use diesel::prelude::*;
    let app = spawn_app().await;
    let admin = app.sign_in("admin").await;
    // Some entries more than the test's set-up made: views and sign-ins.
    let marketing = app.sign_in("marketing").await;
    let cards = |client: reqwest::Client| {
        let url = app.url("/");
        async move {
            let html = client.get(url).send().await.unwrap().text().await.unwrap();
            texts(&html, ".card p")
        }
    };
    let (entries, accounts): (i64, i64) = app
        .db
        .read(|c| {
            Ok((
                fairseg::db::schema::trail::table.count().get_result(c)?,
                fairseg::db::schema::users::table.count().get_result(c)?,
            ))
        })
        .unwrap();
    assert!(entries > 1);
    let shown = cards(admin).await;
    for card in [
        format!("{entries} entries in the tamper-evident trail"),
        format!("{accounts} staff accounts"),
    ] {
        assert!(
            shown.iter().any(|c| c.starts_with(&card)),
            "{card}: {shown:?}"
        );
    }
    let shown = cards(marketing).await;
    assert!(
        !shown
            .iter()
            .any(|c| c.contains("tamper-evident trail") || c.contains("staff accounts")),
        "{shown:?}"
    );
}
