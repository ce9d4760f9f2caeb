//! Data-subject requests (export, erasure), the customer view, retention and the demo data,
//! through the API, the pages and the command line, on both backends.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::QueryableByName;
use diesel::RunQueryDsl;
use diesel::sql_types::{BigInt, Text};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{DemoCustomer, Pages, TestApp, on_postgres, spawn_app, stderr, stdout, texts};

fn days_ago(days: i64) -> NaiveDateTime {
    (chrono::Utc::now().naive_utc() - TimeDelta::days(days))
        .date()
        .and_hms_opt(10, 30, 0)
        .unwrap()
}

/// A customer with distinctive values, so a scan can look for them anywhere.
fn alice(id: &str) -> DemoCustomer<'_> {
    DemoCustomer {
        id,
        attributes: json!({"region": "North", "email": "alice.zyxwvut@example.org", "lifestyle": "outdoor"}),
        protected: json!({"ethnicity": "group_q", "age": 41, "sex": "female"}),
        created_at: days_ago(400),
        transactions: vec![
            (days_ago(300), 40.0, Some("ORD-ALICE-1")),
            (days_ago(300), 10.0, Some("ORD-ALICE-1")),
            (days_ago(20), 25.0, Some("ORD-ALICE-2")),
        ],
        consents: vec![
            ("segmentation", "granted", days_ago(399)),
            ("marketing_email", "granted", days_ago(399)),
            ("marketing_email", "withdrawn", days_ago(100)),
        ],
    }
}

fn bob(id: &str) -> DemoCustomer<'_> {
    DemoCustomer {
        id,
        attributes: json!({"region": "South", "lifestyle": "homebody"}),
        protected: json!({"ethnicity": "group_a", "age": 30, "sex": "male"}),
        created_at: days_ago(100),
        transactions: vec![(days_ago(5), 12.5, None)],
        consents: vec![("segmentation", "granted", days_ago(99))],
    }
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Every (table, column) of the schema, from the database's own catalogue.
fn all_columns(app: &TestApp) -> Vec<(String, String)> {
    let mut conn = app.db.conn().unwrap();
    let tables: Vec<Name> = if on_postgres() {
        diesel::sql_query(
            "SELECT table_name::text AS name FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
        )
        .load(&mut *conn)
        .unwrap()
    } else {
        diesel::sql_query("SELECT name FROM sqlite_master WHERE type = 'table'")
            .load(&mut *conn)
            .unwrap()
    };
    let mut out = Vec::new();
    for t in tables {
        let columns: Vec<Name> = if on_postgres() {
            diesel::sql_query(format!(
                "SELECT column_name::text AS name FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = '{}'",
                t.name
            ))
            .load(&mut *conn)
            .unwrap()
        } else {
            diesel::sql_query(format!("SELECT name FROM pragma_table_info('{}')", t.name))
                .load(&mut *conn)
                .unwrap()
        };
        for c in columns {
            out.push((t.name.clone(), c.name));
        }
    }
    out
}

/// Where in the database `needle` occurs (any table, any column, as text).
fn occurrences(app: &TestApp, needle: &str) -> Vec<String> {
    let columns = all_columns(app);
    assert!(
        columns.len() > 40,
        "the scan covers the whole schema: {columns:?}"
    );
    let mut conn = app.db.conn().unwrap();
    let mut found = Vec::new();
    for (table, column) in columns {
        let count: Count = diesel::sql_query(format!(
            "SELECT COUNT(*) AS n FROM \"{table}\" WHERE CAST(\"{column}\" AS TEXT) LIKE '%{needle}%'"
        ))
        .get_result(&mut *conn)
        .unwrap();
        if count.n > 0 {
            found.push(format!("{table}.{column} ({} rows)", count.n));
        }
    }
    found
}

#[tokio::test]
async fn export_holds_everything_about_the_customer_and_is_logged_by_pseudonym() {
    let app = spawn_app().await;
    let pseudonym = app.insert_demo_customer(alice("CUST-EXP-1"));
    app.insert_demo_customer(bob("CUST-EXP-2"));

    let (status, export) = app
        .get_json("compliance", "/api/v1/customers/CUST-EXP-1/export")
        .await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["customer_id"], "CUST-EXP-1");
    assert_eq!(export["pseudonym"], pseudonym.as_str());
    assert_eq!(export["attributes"]["email"], "alice.zyxwvut@example.org");
    assert_eq!(export["protected_attributes"]["ethnicity"], "group_q");
    assert_eq!(export["transactions"].as_array().unwrap().len(), 3);
    assert_eq!(export["consent_events"].as_array().unwrap().len(), 3);
    assert_eq!(export["features"]["frequency"], 2);
    assert_eq!(export["features"]["monetary"], 75.0);
    assert_eq!(export["features"]["recency_days"], 20);
    assert_eq!(export["segment_memberships"], json!([]));
    assert_eq!(export["runs"], json!([]));
    // Nothing about the other customer.
    assert!(!export.to_string().contains("CUST-EXP-2"));

    let (status, log) = app.get_json("compliance", "/api/v1/dsr").await;
    assert_eq!(status, 200);
    let request = &log["requests"][0];
    assert_eq!(request["kind"], "export");
    assert_eq!(request["subject"], pseudonym.as_str());
    assert_eq!(request["requested_by"], "compliance@example.test");
    let trail = app.trail("action=dsr.exported").await;
    assert_eq!(trail[0]["subject"], pseudonym.as_str());

    // Unknown customers are a 404, with the error shape.
    let (status, body) = app
        .get_json("compliance", "/api/v1/customers/NOBODY/export")
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn erasure_leaves_no_personal_data_in_any_table_and_the_trail_still_verifies() {
    let app = spawn_app().await;
    let raw = "CUST-ERASE-QK7";
    let pseudonym = app.insert_demo_customer(alice(raw));
    app.insert_demo_customer(bob("CUST-KEEP-1"));
    // Views and an export first, so the trail and the request log have entries about them.
    assert_eq!(
        app.get_json("compliance", &format!("/api/v1/customers/{raw}"))
            .await
            .0,
        200
    );
    assert_eq!(
        app.get_json("compliance", &format!("/api/v1/customers/{raw}/export"))
            .await
            .0,
        200
    );
    assert!(
        !occurrences(&app, raw).is_empty(),
        "the scan finds the id while it is held"
    );

    let (status, body) = app
        .post_json(
            "compliance",
            &format!("/api/v1/customers/{raw}/erase"),
            json!({"confirm": false}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "confirm");

    let (status, body) = app
        .post_json(
            "compliance",
            &format!("/api/v1/customers/{raw}/erase"),
            json!({"confirm": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pseudonym"], pseudonym.as_str());
    assert_eq!(body["removed"]["transactions"], 3);
    assert_eq!(body["removed"]["consent_events"], 3);

    // Neither the id nor any value unique to the customer is anywhere.
    for needle in [raw, "alice.zyxwvut", "group_q", "ORD-ALICE"] {
        let found = occurrences(&app, needle);
        assert!(found.is_empty(), "`{needle}` still in {found:?}");
    }
    // The tombstone: the pseudonym in the register, the request log and the trail.
    let found = occurrences(&app, &pseudonym);
    for place in [
        "erased_customers.pseudonym",
        "dsr_requests.subject",
        "trail.subject",
    ] {
        assert!(
            found.iter().any(|f| f.starts_with(place)),
            "{place} missing in {found:?}"
        );
    }
    let entry = &app.trail("action=dsr.erased").await[0];
    assert_eq!(entry["subject"], pseudonym.as_str());
    let (_, verify) = app.get_json("compliance", "/api/v1/trail/verify").await;
    assert!(verify.get("first_bad").is_none(), "{verify}");
    // The other customer is untouched.
    assert_eq!(
        app.get_json("compliance", "/api/v1/customers/CUST-KEEP-1")
            .await
            .0,
        200
    );

    // Asking again: the customer is known to have been erased.
    let (status, body) = app
        .get_json("compliance", &format!("/api/v1/customers/{raw}/export"))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("erased")
    );
    let (status, _) = app
        .post_json(
            "compliance",
            &format!("/api/v1/customers/{raw}/erase"),
            json!({"confirm": true}),
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn protected_attributes_reach_only_roles_allowed_to_read_them_and_each_view_is_in_the_trail()
{
    let app = spawn_app().await;
    let pseudonym = app.insert_demo_customer(alice("CUST-VIEW-1"));

    let (status, analyst) = app
        .get_json("analyst", "/api/v1/customers/CUST-VIEW-1")
        .await;
    assert_eq!(status, 200, "{analyst}");
    assert_eq!(analyst["attributes"]["region"], "North");
    assert!(analyst.get("protected_attributes").is_none());
    assert!(!analyst.to_string().contains("group_q"));

    let (status, compliance) = app
        .get_json(
            "compliance",
            "/api/v1/customers/CUST-VIEW-1?as_of=".to_string().as_str(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(compliance["protected_attributes"]["ethnicity"], "group_q");

    // Features as of a date: only the order 300 days ago counts 100 days later.
    let as_of = days_ago(200).date().format("%Y-%m-%d").to_string();
    let (_, past) = app
        .get_json(
            "analyst",
            &format!("/api/v1/customers/CUST-VIEW-1?as_of={as_of}"),
        )
        .await;
    assert_eq!(
        past["features"],
        json!({"recency_days": 100, "frequency": 1, "monetary": 50.0, "average_order_value": 50.0, "tenure_days": 100})
    );
    let (status, body) = app
        .get_json("analyst", "/api/v1/customers/CUST-VIEW-1?as_of=yesterday")
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "as_of");

    let views = app.trail("action=customer.viewed").await;
    assert_eq!(views.len(), 3);
    assert!(views.iter().all(|e| e["subject"] == pseudonym.as_str()));
    assert!(
        !serde_json::to_string(&app.trail("").await)
            .unwrap()
            .contains("CUST-VIEW-1")
    );

    // Marketing reads no customer and manages no request.
    app.insert_demo_customer(bob("CUST-VIEW-2"));
    for (method, path, body) in [
        (Method::GET, "/api/v1/customers/CUST-VIEW-2", None),
        (Method::GET, "/api/v1/customers/CUST-VIEW-2/export", None),
        (
            Method::POST,
            "/api/v1/customers/CUST-VIEW-2/erase",
            Some(json!({"confirm": true})),
        ),
        (
            Method::POST,
            "/api/v1/retention/apply",
            Some(json!({"dry_run": false})),
        ),
        (Method::GET, "/api/v1/dsr", None),
    ] {
        let mut request = app.api("marketing", method.clone(), path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 403, "{method} {path}: {text}");
        assert!(!text.contains("group_a"));
    }
    let marketing = app.sign_in("marketing").await;
    assert_eq!(
        marketing
            .get(app.url("/dsr"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    // Still held.
    assert_eq!(
        app.get_json("compliance", "/api/v1/customers/CUST-VIEW-2")
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn retention_previews_then_deletes_what_is_past_its_period_and_keeps_the_proof_of_consent() {
    let app = spawn_app().await;
    // Active, with records older than the 2555-day periods.
    app.insert_demo_customer(DemoCustomer {
        id: "CUST-RET-OLD",
        attributes: json!({}),
        protected: json!({}),
        created_at: days_ago(3100),
        transactions: vec![(days_ago(3000), 10.0, None), (days_ago(10), 20.0, None)],
        consents: vec![
            ("segmentation", "granted", days_ago(3000)),
            ("segmentation", "withdrawn", days_ago(2800)),
            ("marketing_email", "granted", days_ago(2900)),
        ],
    });
    // Inactive for longer than 1095 days.
    let inactive = app.insert_demo_customer(DemoCustomer {
        id: "CUST-RET-GONE",
        attributes: json!({"note": "retention-sleeper"}),
        protected: json!({}),
        created_at: days_ago(1300),
        transactions: vec![(days_ago(1200), 5.0, None)],
        consents: vec![("segmentation", "granted", days_ago(1250))],
    });
    // New, nothing recorded yet: not inactive.
    app.insert_demo_customer(DemoCustomer {
        id: "CUST-RET-NEW",
        attributes: json!({}),
        protected: json!({}),
        created_at: days_ago(3),
        transactions: vec![],
        consents: vec![],
    });
    let expected = json!({"transactions": 1, "consent_events": 1, "customers": 1, "segment_memberships": 0, "kpi_evaluations": 0});

    let (status, preview) = app
        .post_json(
            "compliance",
            "/api/v1/retention/apply",
            json!({"dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["dry_run"], true);
    assert_eq!(preview["removed"], expected);
    assert!(
        app.trail("action=retention.").await.is_empty(),
        "a preview changes nothing"
    );
    assert_eq!(
        app.get_json("compliance", "/api/v1/customers/CUST-RET-GONE")
            .await
            .0,
        200
    );

    let report: Value = app.cli_json(&["retention", "apply", "--json"]);
    assert_eq!(report["removed"], expected);
    assert_eq!(report["dry_run"], false);

    let (_, kept) = app
        .get_json("compliance", "/api/v1/customers/CUST-RET-OLD/export")
        .await;
    assert_eq!(kept["transactions"].as_array().unwrap().len(), 1);
    let events: Vec<(String, String)> = kept["consent_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["purpose"].as_str().unwrap().into(),
                e["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("marketing_email".to_string(), "granted".to_string()),
            ("segmentation".into(), "withdrawn".into())
        ],
        "the latest event per purpose stays, however old"
    );
    assert_eq!(
        app.get_json("compliance", "/api/v1/customers/CUST-RET-GONE")
            .await
            .0,
        409
    );
    assert!(occurrences(&app, "CUST-RET-GONE").is_empty());
    assert!(occurrences(&app, "retention-sleeper").is_empty());
    assert_eq!(
        app.get_json("compliance", "/api/v1/customers/CUST-RET-NEW")
            .await
            .0,
        200
    );
    assert_eq!(
        app.trail(&format!("subject={inactive}")).await[0]["action"],
        "retention.customer_erased"
    );
    assert_eq!(app.trail("action=retention.applied").await.len(), 1);

    // Nothing left to remove.
    let out = app.cli(&["retention", "apply"]);
    assert!(
        stdout(&out).contains("removed 0 transaction(s)"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn the_command_line_exports_and_erases_only_when_confirmed() {
    let app = spawn_app().await;
    let pseudonym = app.insert_demo_customer(alice("CUST-CLI-1"));
    let export: Value = app.cli_json(&["customer", "export", "CUST-CLI-1"]);
    assert_eq!(export["protected_attributes"]["age"], 41);
    let file = app.dir.path().join("export.json");
    let out = app.cli(&[
        "customer",
        "export",
        "CUST-CLI-1",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["customer_id"], "CUST-CLI-1");

    let out = app.cli(&["customer", "erase", "CUST-CLI-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert_eq!(
        app.get_json("compliance", "/api/v1/customers/CUST-CLI-1")
            .await
            .0,
        200
    );

    let erased: Value = app.cli_json(&["customer", "erase", "CUST-CLI-1", "--yes", "--json"]);
    assert_eq!(erased["pseudonym"], pseudonym.as_str());
    let out = app.cli(&["customer", "export", "CUST-CLI-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("erased"));
    let out = app.cli(&["trail", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let actors: Vec<String> = app
        .trail("action=dsr.")
        .await
        .iter()
        .map(|e| e["actor"].as_str().unwrap().to_string())
        .collect();
    assert!(actors.iter().all(|a| a.starts_with("cli:")), "{actors:?}");
}

#[tokio::test]
async fn the_compliance_page_exports_as_a_download_and_erases_only_with_the_box_ticked() {
    let app = spawn_app().await;
    let pseudonym = app.insert_demo_customer(alice("CUST-PAGE-1"));
    let client = app.sign_in("compliance").await;
    let home = client.page(app.url("/")).await;
    assert!(texts(&home, "nav a").contains(&"Data requests".to_string()));

    let page = client
        .get(app.url("/dsr?customer=CUST-PAGE-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(texts(&html, "#found").join(" ").contains(&pseudonym));

    let download = client
        .post_form(
            app.url("/dsr/export"),
            &html,
            &[("customer_id", "CUST-PAGE-1")],
        )
        .await;
    assert_eq!(download.status(), 200);
    let disposition = download.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(disposition.contains(&pseudonym) && !disposition.contains("CUST-PAGE-1"));
    let body: Value = download.json().await.unwrap();
    assert_eq!(body["customer_id"], "CUST-PAGE-1");

    // Without the box ticked nothing happens.
    let refused = client
        .post_form(
            app.url("/dsr/erase"),
            &html,
            &[("customer_id", "CUST-PAGE-1")],
        )
        .await;
    assert_eq!(refused.status(), 400);
    assert!(
        texts(&refused.text().await.unwrap(), "[role=alert]")
            .join(" ")
            .contains("confirm")
    );
    assert_eq!(
        app.get_json("compliance", "/api/v1/customers/CUST-PAGE-1")
            .await
            .0,
        200
    );

    let erased = client
        .post_form(
            app.url("/dsr/erase"),
            &html,
            &[("customer_id", "CUST-PAGE-1"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(erased.status(), 303);
    let location = erased.headers()["location"].to_str().unwrap().to_string();
    assert!(!location.contains("CUST-PAGE-1"));
    let html = client.page(app.url(&location)).await;
    assert!(texts(&html, "[role=status]").join(" ").contains(&pseudonym));
    let log: Vec<String> = texts(&html, "#requests tbody tr td:nth-child(2)");
    assert_eq!(log, ["erasure", "export"]);

    let report = client
        .post_form(app.url("/dsr/retention"), &html, &[("action", "preview")])
        .await;
    assert_eq!(report.status(), 200);
    let html = report.text().await.unwrap();
    assert!(
        texts(&html, "#retention-report caption")
            .join(" ")
            .contains("Preview")
    );
}

#[tokio::test]
async fn demo_data_loads_the_same_for_the_same_seed_on_either_backend() {
    async fn load(seed: u64) -> (TestApp, String) {
        let app = spawn_app().await;
        let today = chrono::NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        let data = fairseg::demo::generate(&fairseg::demo::options(&app.policy, 300, seed, today));
        let summary = fairseg::app::demo::load(
            &app.db,
            &data,
            &fairseg::startup::pseudonymizer(&app.db).unwrap(),
            &fairseg::trail::Actor::system(),
            &app.policy.version,
        )
        .unwrap();
        assert_eq!(summary.customers, 300);
        let digest = fingerprint(&app);
        (app, digest)
    }
    let (app, first) = load(5).await;
    // Features in bulk, paged in small pages, agree with one customer at a time.
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
    let all = app
        .db
        .read(|c| fairseg::db::features::for_all_paged(c, as_of, 97))
        .unwrap();
    let whole = app
        .db
        .read(|c| fairseg::db::features::for_all(c, as_of))
        .unwrap();
    assert_eq!(all, whole);
    assert!(
        all.len() > 200,
        "{} customers bought before {as_of}",
        all.len()
    );
    for (id, features) in all.iter().step_by(17) {
        let one = app
            .db
            .read(|c| fairseg::db::features::for_customer(c, *id, as_of))
            .unwrap();
        assert_eq!(&one, features);
        assert!(features.frequency > 0);
    }
    let (_, second) = load(5).await;
    let (_, other) = load(6).await;
    assert_eq!(first, second);
    assert_ne!(first, other);

    // Protected attributes are kept apart, with the columns' kinds recorded.
    let (_, c) = app.get_json("analyst", "/api/v1/customers/C000001").await;
    assert!(c["attributes"].get("postcode_district").is_some());
    assert!(c["attributes"].get("ethnicity").is_none());
    assert!(c.get("protected_attributes").is_none());
    let (_, c) = app
        .get_json("compliance", "/api/v1/customers/C000001")
        .await;
    assert!(c["protected_attributes"].get("ethnicity").is_some());
}

/// A digest of the customer data (not of server-side timestamps or keyed pseudonyms).
fn fingerprint(app: &TestApp) -> String {
    use sha2::{Digest, Sha256};
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        line: String,
    }
    let mut conn = app.db.conn().unwrap();
    let mut hasher = Sha256::new();
    for query in [
        "SELECT c.external_id || '|' || c.attributes || '|' || p.attributes AS line FROM customers c JOIN customer_protected p ON p.customer_id = c.id ORDER BY c.external_id",
        "SELECT c.external_id || '|' || CAST(t.occurred_at AS TEXT) || '|' || CAST(t.amount AS TEXT) || '|' || t.order_id AS line FROM transactions t JOIN customers c ON c.id = t.customer_id ORDER BY t.id",
        "SELECT c.external_id || '|' || e.purpose || '|' || e.status || '|' || CAST(e.recorded_at AS TEXT) AS line FROM consent_events e JOIN customers c ON c.id = e.customer_id ORDER BY e.id",
        "SELECT name || '|' || kind || '|' || CAST(protected AS TEXT) AS line FROM attribute_columns ORDER BY name",
    ] {
        let rows: Vec<Row> = diesel::sql_query(query).load(&mut *conn).unwrap();
        assert!(!rows.is_empty(), "{query}");
        for r in rows {
            hasher.update(r.line.as_bytes());
            hasher.update(b"\n");
        }
    }
    hex::encode(hasher.finalize())
}
