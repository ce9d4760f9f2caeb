//! Signed fairness reports: a compliance officer signs an audit off, the report is frozen with
//! the hash of its canonical JSON in the trail, and every later view recomputes the hash and
//! compares the signed report with the live one.

use reqwest::Method;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::api::Answer;
use crate::helpers::{TestApp, csrf_token, on_postgres, spawn_app, texts};

/// The demo data, one segmentation without the planted proxy, and its audit: (run, audit).
pub fn audited_run(app: &TestApp) -> (i64, i64) {
    use fairseg::trail::Actor;
    crate::audits::load_demo(app, 800, false);
    let policy = &*app.policy;
    let request = fairseg::demo::segmentation_request_without_proxy();
    let (run, outcome) = crate::helpers::execute_here(app, &Actor::system(), &request);
    outcome.unwrap();
    let audit = fairseg::app::audits::audit_run(&app.db, policy, &Actor::system(), run).unwrap();
    (run, audit.id)
}

/// The canonical form, written here independently of the server: keys sorted at every level,
/// compact.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), canonical(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

async fn sign(app: &TestApp, role: &str, audit: i64, statement: &str) -> (u16, Value) {
    let response = app
        .api(
            role,
            Method::POST,
            &format!("/api/v1/audits/{audit}/signoffs"),
        )
        .json(&json!({ "statement": statement }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn page(client: &reqwest::Client, app: &TestApp, path: &str) -> String {
    let response = client.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.text().await.unwrap()
}

const STATEMENT: &str = "Reviewed every table and the proxies; no dependence that matters.";

#[tokio::test]
async fn signing_freezes_the_report_with_the_hash_of_its_canonical_json_in_the_trail() {
    let app = spawn_app().await;
    let (run, audit) = audited_run(&app);
    let (status, live) = app
        .get_json("compliance", &format!("/api/v1/audits/{audit}"))
        .await;
    assert_eq!(status, 200);
    let expected = sha256(serde_json::to_string(&canonical(&live)).unwrap().as_bytes());

    let (status, signed) = sign(&app, "compliance", audit, &format!("  {STATEMENT}\n")).await;
    assert_eq!(status, 201, "{signed}");
    assert_eq!(signed["content_hash"], expected.as_str());
    assert_eq!(signed["statement"], STATEMENT, "trimmed");
    assert_eq!(signed["signed_by"], "compliance@example.test");
    assert_eq!(signed["role"], "compliance");
    assert_eq!(signed["seq"], 1);

    // The trail has it, with the hash.
    let trail = app
        .trail(&format!("subject=run:{run}&action=audit.signed"))
        .await;
    assert_eq!(trail.len(), 1);
    let detail: Value = serde_json::from_str(trail[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["audit_id"], audit);
    assert_eq!(detail["signer"], "compliance@example.test");
    assert_eq!(detail["statement"], STATEMENT);
    assert_eq!(detail["content_hash"], expected.as_str());
    assert_eq!(trail[0]["actor"], "compliance@example.test");

    // The download is the canonical JSON itself: its sha256 is the content hash.
    let client = app.sign_in("compliance").await;
    let response = client
        .get(app.url(&format!("/audits/{audit}/signoffs/1.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    assert_eq!(sha256(&bytes), expected);
    let frozen: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(frozen, live, "the frozen JSON is what the API served");

    // The report page shows the box, intact and current.
    let html = page(&client, &app, &format!("/audits/{audit}")).await;
    assert_eq!(
        texts(&html, ".signoff-box .signer"),
        ["compliance@example.test"]
    );
    assert_eq!(texts(&html, ".signoff-box .statement"), [STATEMENT]);
    assert_eq!(texts(&html, ".signoff-box code.hash"), [expected.as_str()]);
    let integrity = texts(&html, ".signoff-box .integrity.ok");
    assert!(integrity[0].contains("matches its hash"), "{integrity:?}");
    assert!(texts(&html, ".signoff-box .live.ok")[0].contains("exactly as signed"));

    // The frozen report, with its signature block filled.
    let html = page(&client, &app, &format!("/audits/{audit}/signoffs/1")).await;
    assert!(texts(&html, "#integrity")[0].contains("matches its hash"));
    assert_eq!(
        texts(&html, ".signed-report #signature .signer"),
        ["compliance@example.test"]
    );
    assert_eq!(
        texts(&html, ".signed-report #signature .statement"),
        [STATEMENT]
    );

    // The API list says the same.
    let (status, list) = app
        .get_json("analyst", &format!("/api/v1/audits/{audit}/signoffs"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["intact"], true);
    assert_eq!(list[0]["live"]["state"], "same");
}

#[tokio::test]
async fn a_report_altered_in_the_database_does_not_match_its_hash() {
    let app = spawn_app().await;
    let (_, audit) = audited_run(&app);
    let (status, _) = sign(&app, "compliance", audit, STATEMENT).await;
    assert_eq!(status, 201);

    // The table refuses changes; someone with the database's keys drops the guard first.
    let mut conn = app.db.conn().unwrap();
    use diesel::connection::SimpleConnection;
    assert!(
        conn.batch_execute("UPDATE audit_signoffs SET statement = 'x'")
            .is_err(),
        "sign-offs are append-only"
    );
    drop(conn);
    app.sql(if on_postgres() {
        "DROP TRIGGER audit_signoffs_append_only ON audit_signoffs"
    } else {
        "DROP TRIGGER audit_signoffs_no_update"
    });
    app.sql(
        "UPDATE audit_signoffs SET report_json = REPLACE(report_json, '\"verdict\":\"', '\"verdict\":\"pass-')",
    );

    let client = app.sign_in("compliance").await;
    let html = page(&client, &app, &format!("/audits/{audit}")).await;
    let bad = texts(&html, ".signoff-box .integrity.bad");
    assert_eq!(bad.len(), 1, "shown in red");
    assert!(bad[0].contains("does not match its hash"), "{bad:?}");
    assert!(texts(&html, ".signoff-box .integrity.ok").is_empty());
    let (_, list) = app
        .get_json("compliance", &format!("/api/v1/audits/{audit}/signoffs"))
        .await;
    assert_eq!(list[0]["intact"], false);

    // The printable copy altered as well: it is no longer served as a page.
    app.sql("UPDATE audit_signoffs SET report_html = REPLACE(report_html, 'Sign-off', 'Sign off')");
    let html = page(&client, &app, &format!("/audits/{audit}/signoffs/1")).await;
    assert!(texts(&html, "#integrity.bad")[0].contains("does not match its hash"));
    assert!(texts(&html, ".signed-report").is_empty());
    assert_eq!(texts(&html, "#not-shown").len(), 1);
}

#[tokio::test]
async fn auditing_again_shows_the_signed_report_is_no_longer_the_live_one() {
    let app = spawn_app().await;
    let (run, audit) = audited_run(&app);
    let (status, _) = sign(&app, "compliance", audit, STATEMENT).await;
    assert_eq!(status, 201);
    let again = fairseg::app::audits::audit_run(
        &app.db,
        &app.policy,
        &fairseg::trail::Actor::system(),
        run,
    )
    .unwrap();

    let client = app.sign_in("compliance").await;
    let html = page(&client, &app, &format!("/audits/{audit}")).await;
    let live = texts(&html, ".signoff-box .live.changed");
    assert!(
        live[0].contains("has changed since it was signed: audited again on"),
        "{live:?}"
    );
    assert!(live[0].contains(&format!("audit {}", again.id)));
    // Still intact: the stored report is what was signed.
    assert_eq!(texts(&html, ".signoff-box .integrity.ok").len(), 1);
    // The superseded audit cannot be signed: the form gives way to the reason.
    assert!(texts(&html, "#sign-refused")[0].contains("superseded"));
    let (status, body) = sign(&app, "compliance", audit, STATEMENT).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("audit {}", again.id))
    );
    // The new audit can be signed, as sign-off 1 of that audit.
    let (status, body) = sign(&app, "compliance", again.id, STATEMENT).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["seq"], 1);
    let (_, list) = app
        .get_json("compliance", &format!("/api/v1/audits/{audit}/signoffs"))
        .await;
    assert_eq!(list[0]["live"]["state"], "superseded");
    assert_eq!(list[0]["live"]["audit_id"], again.id);
}

#[tokio::test]
async fn an_override_and_the_publication_after_signing_show_the_live_audit_reads_differently() {
    let app = spawn_app().await;
    let (run, audit) = audited_run(&app);
    let (status, _) = sign(&app, "compliance", audit, STATEMENT).await;
    assert_eq!(status, 201);
    let client = app.sign_in("compliance").await;
    // Viewed before each change, so a form of the live audit kept from an earlier view would
    // show if it were served after the change.
    let html = page(&client, &app, &format!("/audits/{audit}")).await;
    assert_eq!(texts(&html, ".signoff-box .live.ok").len(), 1);
    let live_now = |html: &str| texts(html, ".signoff-box .live.changed");

    let response = app
        .api(
            "compliance",
            Method::POST,
            &format!("/api/v1/audits/{audit}/override"),
        )
        .json(&json!({"justification": "The inconclusive tables rest on groups too small to test; reviewed with legal."}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let html = page(&client, &app, &format!("/audits/{audit}")).await;
    let live = live_now(&html);
    assert_eq!(live.len(), 1, "{html}");
    assert!(live[0].contains("overrides"), "{live:?}");
    assert!(!live[0].contains("run status"), "{live:?}");

    app.api(
        "analyst",
        Method::POST,
        &format!("/api/v1/segmentations/{run}/publish"),
    )
    .expecting(200)
    .await;
    let html = page(&client, &app, &format!("/audits/{audit}")).await;
    let live = live_now(&html);
    assert!(live[0].contains("run status"), "{live:?}");
    // The stored report is still exactly what was signed.
    assert_eq!(texts(&html, ".signoff-box .integrity.ok").len(), 1);
    let (_, list) = app
        .get_json("compliance", &format!("/api/v1/audits/{audit}/signoffs"))
        .await;
    assert_eq!(list[0]["live"]["state"], "changed", "{list}");
}

#[tokio::test]
async fn only_a_signer_may_sign_and_a_bad_statement_changes_nothing() {
    let app = spawn_app().await;
    let (_, audit) = audited_run(&app);
    for role in ["marketing", "analyst", "admin"] {
        let (status, _) = sign(&app, role, audit, STATEMENT).await;
        assert_eq!(status, 403, "{role} may not sign");
    }
    for statement in ["   too short  ".to_string(), "x".repeat(2001)] {
        let (status, body) = sign(&app, "compliance", audit, &statement).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["field"], "statement");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("statement")
        );
    }
    // The form says why, on the report page, and stores nothing either.
    let client = app.sign_in("compliance").await;
    let html = page(&client, &app, &format!("/audits/{audit}")).await;
    let csrf = csrf_token(&html);
    assert_eq!(texts(&html, "form.signoff-form").len(), 1);
    let response = client
        .post(app.url(&format!("/audits/{audit}/signoffs")))
        .form(&[("csrf_token", csrf.as_str()), ("statement", "short")])
        .send()
        .await
        .unwrap();
    // The report again with the reason on it; the address carries no message.
    assert_eq!(response.status(), 409);
    assert!(response.headers().get("location").is_none());
    let html = response.text().await.unwrap();
    assert!(texts(&html, "p.error")[0].contains("at least 10 characters"));

    let (_, list) = app
        .get_json("compliance", &format!("/api/v1/audits/{audit}/signoffs"))
        .await;
    assert_eq!(list, json!([]));
    assert!(app.trail("action=audit.signed").await.is_empty());
    // Marketing cannot read sign-offs either (protected attributes are in the report).
    let (status, _) = app
        .get_json("marketing", &format!("/api/v1/audits/{audit}/signoffs"))
        .await;
    assert_eq!(status, 403);
}

// ---- Record of processing (GDPR Art. 30) ----------------------------------------------------

#[tokio::test]
async fn the_record_of_processing_lists_every_purpose_and_the_download_says_what_the_page_says() {
    use fairseg::policy::Permission;
    let app = spawn_app().await;
    crate::audits::load_demo(&app, 50, false);
    let policy = &app.policy;

    let (status, record) = app.get_json("marketing", "/api/v1/policy/record").await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["policy_version"], policy.version.as_str());
    assert_eq!(
        record["controller"]["name"],
        policy.presentation.company_name.as_str()
    );
    let purposes = record["purposes"].as_array().unwrap();
    let names: Vec<&str> = purposes
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = policy.purposes.keys().map(String::as_str).collect();
    assert_eq!(names, expected, "every purpose of the policy");
    let roles_with = |p: Permission| -> Vec<String> {
        policy
            .roles_with(p)
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    for p in purposes {
        let spec = &policy.purposes[p["name"].as_str().unwrap()];
        assert_eq!(p["legal_basis"], json!(spec.legal_basis));
        let mut union: Vec<String> = Vec::new();
        for c in p["categories"].as_array().unwrap() {
            let mut roles: Vec<String> = c["read_with"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|perm| roles_with(perm.as_str().unwrap().parse().unwrap()))
                .collect();
            roles.sort();
            roles.dedup();
            assert_eq!(c["recipients"], json!(roles), "{}", c["category"]);
            union.extend(roles);
            assert!(c["retention"]["days"].as_u64().unwrap() > 0);
        }
        union.sort();
        union.dedup();
        assert_eq!(p["recipients"], json!(union));
    }
    let segmentation = &purposes[names.iter().position(|n| *n == "segmentation").unwrap()];
    let special = segmentation["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["category"] == "special_categories")
        .unwrap();
    assert_eq!(
        special["recipients"],
        json!(roles_with(Permission::CustomersReadProtected))
    );
    let transactions = segmentation["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["category"] == "transactions")
        .unwrap();
    assert_eq!(
        transactions["retention"]["days"],
        policy.retention.transactions_days
    );

    // The page, linked from the policy page, in words.
    let client = app.sign_in("compliance").await;
    let html = page(&client, &app, "/policy").await;
    assert_eq!(texts(&html, r#"a[href="/policy/record"]"#).len(), 1);
    let html = page(&client, &app, "/policy/record").await;
    let md = page(&client, &app, "/policy/record.md").await;
    for name in &expected {
        let id = format!("#purpose-{name}");
        let heading = texts(&html, &format!("{id} h2"));
        assert_eq!(heading.len(), 1, "{name} on the page");
        assert!(!heading[0].contains('_'), "a readable heading: {heading:?}");
        assert!(
            md.contains(&format!("## {}", heading[0])),
            "{name} in the Markdown"
        );
        let basis = texts(&html, &format!("{id} .basis"));
        assert!(
            md.contains(&format!("- Legal basis: {}", basis[0])),
            "{basis:?}"
        );
        let recipients = texts(&html, &format!("{id} .recipients"));
        assert!(md.contains(&format!("- Recipients: {}", recipients[0])));
        for retention in texts(&html, &format!("{id} td.retention")) {
            assert!(md.contains(&retention), "{retention} in the Markdown");
        }
    }
    assert!(
        html.contains("Home store"),
        "attribute columns on file, labelled"
    );
    assert!(html.contains("2,555 days"));
    assert!(md.contains(&policy.version));
}
