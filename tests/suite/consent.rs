//! The consent ledger through the API and the pages: recording events (and refusing bad ones
//! with the field named), a customer's history and state, coverage with small counts
//! suppressed, and the customer's preference link (including tampered and expired ones).

use chrono::{TimeDelta, Utc};
use fairseg::consent::link::PreferenceLinks;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, Pages, TestApp, browser_client, csrf_token, spawn_app, texts};

const REFUSED: &str = "This link is not valid or has expired; ask us for a new one.";

async fn post_consent(app: &TestApp, body: Value) -> (u16, Value) {
    app.post_json("compliance", "/api/v1/consents", body).await
}

async fn grant(app: &TestApp, customer: &str, purpose: &str, at: &str) {
    let (status, body) = post_consent(
        app,
        json!({"customer_id": customer, "purpose": purpose, "status": "granted", "recorded_at": at}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

pub(crate) async fn state_of(app: &TestApp, customer: &str, purpose: &str) -> Value {
    let (status, body) = app
        .get_json(
            "compliance",
            &format!("/api/v1/customers/{customer}/consents"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["purpose"] == purpose)
        .cloned()
        .unwrap()
}

fn event_count(app: &TestApp) -> i64 {
    use diesel::prelude::*;
    app.db
        .read(|c| {
            Ok(fairseg::db::schema::consent_events::table
                .count()
                .get_result::<i64>(c)?)
        })
        .unwrap()
}

fn pseudonym_of(app: &TestApp, customer: &str) -> String {
    fairseg::startup::pseudonymizer(&app.db)
        .unwrap()
        .pseudonym(&fairseg::customers::CustomerId::parse(customer).unwrap())
}

/// Rows of the trail table whose any field contains `needle`.
fn trail_rows_containing(app: &TestApp, needle: &str) -> i64 {
    use diesel::prelude::*;
    use fairseg::db::schema::trail;
    let pattern = format!("%{needle}%");
    app.db
        .read(|c| {
            Ok(trail::table
                .filter(
                    trail::subject
                        .like(pattern.clone())
                        .or(trail::detail.like(pattern.clone()))
                        .or(trail::actor.like(pattern.clone())),
                )
                .count()
                .get_result::<i64>(c)?)
        })
        .unwrap()
}

#[tokio::test]
async fn an_event_is_recorded_with_its_resulting_state_and_trailed_by_pseudonym() {
    let app = spawn_app().await;
    app.add_customer("CUST-4711", r#"{"city":"Leeds"}"#);
    let (status, body) = post_consent(
        &app,
        json!({"customer_id": "CUST-4711", "purpose": "marketing_email", "status": "granted",
               "recorded_at": "2025-03-03T10:00:00+01:00", "source": "web_banner", "notice_version": "v3"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["event"]["status"], "granted");
    assert_eq!(body["event"]["recorded_at"], "2025-03-03T09:00:00Z");
    assert_eq!(body["event"]["recorded_by"], "compliance@example.test");
    assert_eq!(body["event"]["source"], "web_banner");
    // A one-year grant from March 2025 has run out by now.
    assert_eq!(body["state"]["state"], "expired");

    let pseudonym = pseudonym_of(&app, "CUST-4711");
    let entries = app.trail("action=consent.recorded").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["subject"], pseudonym);
    assert_eq!(entries[0]["actor"], "compliance@example.test");
    let detail: Value = serde_json::from_str(entries[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["purpose"], "marketing_email");
    assert_eq!(detail["notice_version"], "v3");

    // Viewing the customer's consents is trailed too; no trail row carries the raw id.
    let (status, _) = app
        .get_json("compliance", "/api/v1/customers/CUST-4711/consents")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        app.trail("action=consent.viewed").await[0]["subject"],
        pseudonym
    );
    assert_eq!(trail_rows_containing(&app, "4711"), 0);
}

#[tokio::test]
async fn bad_events_are_refused_with_the_field_named_and_nothing_stored() {
    let app = spawn_app().await;
    app.add_customer("C-1", "{}");
    let cases = [
        (
            json!({"customer_id": "C-1", "purpose": "telepathy", "status": "granted"}),
            "purpose",
            "segmentation",
        ),
        (
            json!({"customer_id": "C-1", "purpose": "segmentation", "status": "maybe"}),
            "status",
            "granted",
        ),
        (
            json!({"customer_id": "C-1", "purpose": "segmentation", "status": "granted", "recorded_at": "03/03/2025"}),
            "recorded_at",
            "03/03/2025",
        ),
        (
            json!({"customer_id": "C-1", "purpose": "segmentation", "status": "granted", "recorded_at": "2999-01-01"}),
            "recorded_at",
            "future",
        ),
        (
            json!({"customer_id": "", "purpose": "segmentation", "status": "granted"}),
            "customer_id",
            "empty",
        ),
    ];
    for (body, field, says) in cases {
        let (status, answer) = post_consent(&app, body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    let (status, answer) = post_consent(
        &app,
        json!({"customer_id": "C-404", "purpose": "segmentation", "status": "granted"}),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no customer"),
        "{answer}"
    );
    assert_eq!(event_count(&app), 0);
    assert!(app.trail("action=consent.").await.is_empty());
}

#[tokio::test]
async fn out_of_order_events_are_refused() {
    let app = spawn_app().await;
    app.add_customer("C-1", "{}");
    grant(&app, "C-1", "segmentation", "2025-03-01").await;
    let (status, answer) = post_consent(
        &app,
        json!({"customer_id": "C-1", "purpose": "segmentation", "status": "withdrawn", "recorded_at": "2025-02-01"}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["field"], "recorded_at");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2025-03-01T00:00:00Z")
    );
    assert_eq!(event_count(&app), 1);
    // Another purpose has its own order.
    grant(&app, "C-1", "marketing_email", "2025-02-01").await;
}

#[tokio::test]
async fn a_withdrawal_takes_effect_at_once_and_history_answers_for_any_instant() {
    let app = spawn_app().await;
    app.add_customer("C-1", "{}");
    let today = Utc::now().date_naive().to_string();
    grant(&app, "C-1", "segmentation", &today).await;
    assert_eq!(
        state_of(&app, "C-1", "segmentation").await["state"],
        "granted"
    );
    let (status, body) = post_consent(
        &app,
        json!({"customer_id": "C-1", "purpose": "segmentation", "status": "withdrawn"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["state"]["state"], "withdrawn");
    let state = state_of(&app, "C-1", "segmentation").await;
    assert_eq!(state["state"], "withdrawn");
    assert_eq!(state["permits_processing"], false);
    // Legitimate interest allows processing of a customer never asked.
    let analytics = state_of(&app, "C-1", "analytics").await;
    assert_eq!(analytics["state"], "never_asked");
    assert_eq!(analytics["permits_processing"], true);

    let (_, before) = app
        .get_json("compliance", "/api/v1/customers/C-1/consents?at=2000-01-01")
        .await;
    assert!(
        before["states"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "never_asked")
    );
    assert_eq!(before["events"].as_array().unwrap().len(), 2);
    let (status, bad) = app
        .get_json("compliance", "/api/v1/customers/C-1/consents?at=yesterday")
        .await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["field"], "at");
}

#[tokio::test]
async fn coverage_counts_suppress_small_numbers_in_the_api_and_the_page() {
    let app = spawn_app().await;
    let today = Utc::now().date_naive().to_string();
    for i in 0..25 {
        app.add_customer(&format!("C-{i}"), "{}");
    }
    for i in 0..15 {
        grant(&app, &format!("C-{i}"), "segmentation", &today).await;
    }
    for i in 12..15 {
        let (status, body) = post_consent(
            &app,
            json!({"customer_id": format!("C-{i}"), "purpose": "segmentation", "status": "withdrawn"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    // segmentation: 12 granted, 3 withdrawn, 0 expired, 10 never asked. The 3 is hidden, and
    // so is the 10 (else 25 − 12 − 0 − 10 would give the 3 away).
    let (status, body) = app
        .get_json("compliance", "/api/v1/consent/coverage?months=3")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["min_cell_size"], 10);
    assert_eq!(body["history_at"].as_array().unwrap().len(), 3);
    let seg = body["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == "segmentation")
        .unwrap();
    assert_eq!(
        seg["counts"]["granted"],
        json!({"count": 12, "display": "12"})
    );
    assert_eq!(
        seg["counts"]["withdrawn"],
        json!({"count": null, "display": "<10"})
    );
    assert_eq!(seg["counts"]["expired"]["count"], 0);
    assert_eq!(
        seg["counts"]["never_asked"],
        json!({"count": null, "display": "<10"})
    );
    let latest = seg["history"].as_array().unwrap().last().unwrap();
    assert_eq!(latest, &seg["counts"]);
    assert!(!body.to_string().contains("\"count\":3"), "{body}");

    let (status, bad) = app
        .get_json("compliance", "/api/v1/consent/coverage?months=0")
        .await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["field"], "months");
    let (status, _) = app.get_json("marketing", "/api/v1/consent/coverage").await;
    assert_eq!(status, 403);

    let client = app.sign_in("compliance").await;
    let (status, html) = client.page_with_status(app.url("/consent")).await;
    assert_eq!(status, 200);
    let cells = texts(&html, "td.num");
    assert!(cells.contains(&"<10".to_string()), "{cells:?}");
    assert!(!cells.contains(&"3".to_string()), "{cells:?}");
    assert_eq!(
        texts(&html, "figure.chart").len(),
        3,
        "one chart per purpose"
    );
    assert!(texts(&html, "nav[aria-label=Main] a").contains(&"Consent".to_string()));
}

#[tokio::test]
async fn staff_look_up_a_customer_and_create_a_preference_link_on_the_page() {
    let app = spawn_app().await;
    app.add_customer("C 7", "{}");
    grant(&app, "C 7", "segmentation", "2025-01-01").await;
    let client = app.sign_in("compliance").await;
    let response = client
        .get(app.url("/consent/lookup?id=C+7"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let (status, html) = client.page_with_status(app.url(&location)).await;
    assert_eq!(status, 200, "{location}");
    assert_eq!(
        texts(&html, "tbody tr").len(),
        3 + 1,
        "three purposes, one event"
    );
    let created = client
        .post_form(app.url(&format!("{location}/preference-link")), &html, &[])
        .await;
    assert_eq!(created.status(), 200);
    let html = created.text().await.unwrap();
    let link = texts(&html, "#preference-link");
    assert!(link[0].contains("/preferences/"), "{link:?}");
    assert_eq!(app.trail("action=consent.link_issued").await.len(), 1);

    let unknown = client
        .get(app.url("/consent/customers/nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

async fn issue_link(app: &TestApp, customer: &str) -> String {
    let body = app
        .api(
            "compliance",
            Method::POST,
            &format!("/api/v1/customers/{customer}/preference-link"),
        )
        .expecting(201)
        .await;
    assert!(body["expires_at"].as_str().is_some());
    body["url"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_customer_withdraws_with_one_click_on_their_preference_page() {
    let app = spawn_app().await;
    app.add_customer("CUST-4711", "{}");
    let today = Utc::now().date_naive().to_string();
    grant(&app, "CUST-4711", "marketing_email", &today).await;
    let url = issue_link(&app, "CUST-4711").await;
    assert!(
        !url.contains("4711"),
        "the link names the customer by pseudonym only"
    );

    let customer = browser_client();
    let page = customer.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("4711"),
        "the page does not show the customer id"
    );
    let words = texts(&html, "li[data-purpose=marketing_email] p.state");
    assert!(words[0].starts_with("You agreed on"), "{words:?}");
    assert!(
        texts(&html, "li[data-purpose=segmentation] p.state")[0].contains("We have not asked you")
    );
    let buttons = texts(&html, "li[data-purpose=marketing_email] button");
    assert_eq!(buttons, ["Withdraw"]);

    // The form's token is needed: a forged post without it changes nothing.
    let path = url.split_once("/preferences/").unwrap().1;
    let forged = customer
        .post(app.url(&format!("/preferences/{path}/withdraw")))
        .form(&[("purpose", "marketing_email"), ("csrf_token", "00")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(event_count(&app), 1);

    let done = customer
        .post_form(
            app.url(&format!("/preferences/{path}/withdraw")),
            &html,
            &[("purpose", "marketing_email")],
        )
        .await;
    assert_eq!(done.status(), 303);
    let back = done.headers()["location"].to_str().unwrap().to_string();
    let html = customer.page(app.url(&back)).await;
    assert!(texts(&html, "p[role=status]")[0].starts_with("Done"));
    let words = texts(&html, "li[data-purpose=marketing_email] p.state");
    assert!(words[0].starts_with("You withdrew on"), "{words:?}");
    // No more withdrawing; agreeing again is offered instead.
    assert!(
        texts(
            &html,
            "li[data-purpose=marketing_email] form[action$='/withdraw'] button"
        )
        .is_empty()
    );
    assert_eq!(
        texts(&html, "li[data-purpose=marketing_email] button"),
        ["Agree"]
    );

    // At once, in the ledger: recorded by the customer, from the preference page.
    let state = state_of(&app, "CUST-4711", "marketing_email").await;
    assert_eq!(state["state"], "withdrawn");
    let (_, body) = app
        .get_json("compliance", "/api/v1/customers/CUST-4711/consents")
        .await;
    let last = body["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["recorded_by"], "customer");
    assert_eq!(last["source"], "preference_page");
    let entries = app.trail("action=consent.recorded").await;
    assert_eq!(entries[0]["actor"], "customer");
    assert_eq!(entries[0]["subject"], pseudonym_of(&app, "CUST-4711"));
    assert_eq!(trail_rows_containing(&app, "4711"), 0);
}

#[tokio::test]
async fn tampered_expired_foreign_and_orphaned_links_show_a_clear_error_and_change_nothing() {
    let app = spawn_app().await;
    app.add_customer("C-1", "{}");
    app.add_customer("C-2", "{}");
    let today = Utc::now().date_naive().to_string();
    grant(&app, "C-1", "segmentation", &today).await;
    grant(&app, "C-2", "segmentation", &today).await;
    let url = issue_link(&app, "C-1").await;
    let token = url.split_once("/preferences/").unwrap().1.to_string();
    // A valid page token, to show that the link and not the form is what is refused.
    let html = browser_client().page(&url).await;
    let form_token = csrf_token(&html);

    let links = PreferenceLinks::new(&app.secret);
    let expired = links
        .issue(
            &pseudonym_of(&app, "C-1"),
            Utc::now() - TimeDelta::days(8),
            TimeDelta::days(7),
        )
        .0;
    let (head, rest) = token.split_once('.').unwrap();
    let (claims, signature) = rest.split_once('.').unwrap();
    // Someone edits the claims to point at another customer, keeping the signature.
    let other_claims = {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut c: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        c["sub"] = pseudonym_of(&app, "C-2").into();
        URL_SAFE_NO_PAD.encode(c.to_string())
    };
    let tampered = format!("{head}.{other_claims}.{signature}");
    let staff_token = app.token("compliance");
    let foreign = PreferenceLinks::new(b"some other server's secret, 32+ bytes")
        .issue(&pseudonym_of(&app, "C-1"), Utc::now(), TimeDelta::days(7))
        .0;

    for bad in [
        &expired,
        &tampered,
        &staff_token,
        &foreign,
        &"not-a-token".to_string(),
    ] {
        let page = browser_client()
            .get(app.url(&format!("/preferences/{bad}")))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 400, "{bad}");
        let html = page.text().await.unwrap();
        assert!(html.contains(REFUSED), "{html}");
        let post = browser_client()
            .post(app.url(&format!("/preferences/{bad}/withdraw")))
            .form(&[("purpose", "segmentation"), ("csrf_token", &form_token)])
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), 400, "{bad}");
        assert!(post.text().await.unwrap().contains(REFUSED));
    }
    assert_eq!(event_count(&app), 2);
    assert_eq!(
        state_of(&app, "C-1", "segmentation").await["state"],
        "granted"
    );
    assert_eq!(
        state_of(&app, "C-2", "segmentation").await["state"],
        "granted"
    );

    // A customer who has been erased: the link leads nowhere.
    app.sql("DELETE FROM customers WHERE external_id = 'C-1'");
    let page = browser_client().get(&url).send().await.unwrap();
    assert_eq!(page.status(), 400);
    assert!(page.text().await.unwrap().contains(REFUSED));
    let post = browser_client()
        .post(format!("{url}/withdraw"))
        .form(&[("purpose", "segmentation"), ("csrf_token", &form_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 400);
    assert_eq!(event_count(&app), 1, "only C-2's event is left");
}
