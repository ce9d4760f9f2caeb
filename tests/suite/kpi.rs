//! KPIs end to end: the CDNOW figures through the CLI, the append-only log, per-segment values
//! with small segments suppressed, alerts after N periods, drift, the re-run action, the pages,
//! the CSV export and who may do what.

use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    DemoCustomer, TestApp, csrf_token, spawn_app, spawn_app_with, stderr, stdout, texts,
};

fn at(y: i32, m: u32, d: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
}

async fn post_json(app: &TestApp, role: &str, path: &str, body: Value) -> (u16, Value) {
    let response = app
        .api(role, Method::POST, path)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The CDNOW fixture as import files: customers and transactions (at noon UTC).
fn cdnow_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cdnow/CDNOW_master.txt"
    ))
    .unwrap();
    let mut ids = std::collections::BTreeSet::new();
    let mut tx = String::from("customer_id,occurred_at,amount\n");
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 4 {
            continue;
        }
        ids.insert(f[0].to_owned());
        let d = f[1];
        tx.push_str(&format!(
            "{},{}-{}-{}T12:00:00Z,{}\n",
            f[0],
            &d[..4],
            &d[4..6],
            &d[6..],
            f[3]
        ));
    }
    let mut customers = String::from("customer_id\n");
    for id in ids {
        customers.push_str(&id);
        customers.push('\n');
    }
    let (c, t) = (dir.join("cdnow-customers.csv"), dir.join("cdnow-tx.csv"));
    std::fs::write(&c, customers).unwrap();
    std::fs::write(&t, tx).unwrap();
    (c, t)
}

fn close(ours: f64, theirs: f64) -> bool {
    (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0)
}

#[tokio::test]
async fn cdnow_monthly_kpis_through_the_cli_match_the_committed_computation() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let (customers, transactions) = cdnow_files(dir.path());
    for (kind, file) in [("customers", &customers), ("transactions", &transactions)] {
        let out = app.cli(&["import", kind, file.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = app.cli(&[
        "kpi",
        "evaluate",
        "--period",
        "month",
        "--from",
        "1997-01-01",
        "--to",
        "1998-06-30",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    // No segmentation is published: only `all`, 12 KPIs, 18 months.
    assert_eq!(rows.len(), 18 * 12);
    let reference: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/reference/kpi/cdnow.json"
    )))
    .unwrap();
    let months = reference["months"].as_array().unwrap();
    assert_eq!(months.len(), 18);
    for month in months {
        let label = month["month"].as_str().unwrap();
        let start = format!("{label}-01");
        for kpi in [
            "active_customers",
            "new_customers",
            "average_order_value",
            "retention_rate",
        ] {
            let row = rows
                .iter()
                .find(|r| r["kpi"] == kpi && r["period_start"] == start.as_str())
                .unwrap_or_else(|| panic!("{kpi} for {label}"));
            for field in [
                "kpi",
                "segment",
                "period_start",
                "period_end",
                "value",
                "target",
                "status",
            ] {
                assert!(row.get(field).is_some(), "{field} in {row}");
            }
            assert_eq!(row["segment"], "all");
            match (row["value"].as_f64(), month[kpi].as_f64()) {
                (Some(ours), Some(theirs)) => {
                    assert!(close(ours, theirs), "{label} {kpi}: {ours} vs {theirs}")
                }
                (None, None) => assert_eq!(row["status"], "undefined", "{label} {kpi}"),
                (ours, theirs) => panic!("{label} {kpi}: ours {ours:?}, reference {theirs:?}"),
            }
        }
    }
    let trail = app.trail("action=kpi.evaluated").await;
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0]["subject"], "kpi:1997-01..1998-06");
}

/// 40 regular customers buying 10.00 every month of the first half of 2025, and 5 big
/// spenders buying 1000.00 once in March, all with segmentation consent; a k-means run on
/// `monetary` splits them (40 and 5) and is published. Returns the run id.
pub(crate) async fn seeded(app: &TestApp) -> i64 {
    for i in 0..45 {
        let big = i >= 40;
        let id = format!("K{i:03}");
        let transactions = if big {
            vec![(at(2025, 3, 10), 1000.0, None)]
        } else {
            (1..=6).map(|m| (at(2025, m, 5), 10.0, None)).collect()
        };
        app.insert_demo_customer(DemoCustomer {
            id: &id,
            attributes: json!({}),
            protected: json!({}),
            created_at: at(2024, 12, 1),
            transactions,
            consents: vec![("segmentation", "granted", at(2024, 12, 1))],
        });
    }
    let out = app.cli(&[
        "segment",
        "--algorithm",
        "kmeans",
        "--k",
        "2",
        "--features",
        "monetary",
        "--seed",
        "7",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let run_id = run["run_id"].as_i64().unwrap();
    app.db
        .write(|c| {
            fairseg::db::segmentation::publish(c, run_id, "test", fairseg::db::now()).map(|_| ())
        })
        .unwrap();
    run_id
}

fn find<'a>(rows: &'a [Value], segment: &str, kpi: &str, start: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["segment"] == segment && r["kpi"] == kpi && r["period_start"] == start)
        .unwrap_or_else(|| panic!("{segment} {kpi} {start}"))
}

/// The segment names of the published run: (the 40 regulars, the 5 big spenders).
fn names(rows: &[Value]) -> (String, String) {
    let mut segments: Vec<String> = rows
        .iter()
        .map(|r| r["segment"].as_str().unwrap().to_owned())
        .filter(|s| s != "all")
        .collect();
    segments.sort();
    segments.dedup();
    assert_eq!(segments.len(), 2, "{segments:?}");
    let big = segments
        .iter()
        .find(|s| find(rows, s, "segment_size", "2025-03-01")["suppressed"] == true)
        .expect("one segment is below the minimum cell size")
        .clone();
    let regular = segments.into_iter().find(|s| *s != big).unwrap();
    (regular, big)
}

#[tokio::test]
async fn segments_are_evaluated_from_the_published_run_small_ones_suppressed_and_the_log_only_grows()
 {
    let app = spawn_app().await;
    let run_id = seeded(&app).await;
    let (status, body) = post_json(
        &app,
        "analyst",
        "/api/v1/kpi/evaluate",
        json!({"period": "month", "from": "2025-01-01", "to": "2025-06-30"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let rows = body.as_array().unwrap().clone();
    assert_eq!(rows.len(), 6 * 3 * 12);
    let (regular, big) = names(&rows);

    let all = |kpi: &str| find(&rows, "all", kpi, "2025-03-01")["value"].as_f64();
    assert_eq!(all("active_customers"), Some(45.0));
    assert_eq!(all("revenue"), Some(5400.0));
    assert_eq!(all("segment_size"), Some(45.0));
    assert_eq!(
        find(&rows, "all", "new_customers", "2025-01-01")["value"].as_f64(),
        Some(40.0)
    );
    let reg = |kpi: &str, m: &str| find(&rows, &regular, kpi, m).clone();
    assert_eq!(
        reg("active_customers", "2025-03-01")["value"].as_f64(),
        Some(40.0)
    );
    assert_eq!(
        reg("retention_rate", "2025-03-01")["value"].as_f64(),
        Some(1.0)
    );
    assert_eq!(
        reg("retention_rate", "2025-03-01")["run_id"].as_i64(),
        Some(run_id)
    );
    assert_eq!(
        reg("retention_rate", "2025-03-01")["target"].as_f64(),
        Some(0.4)
    );
    assert_eq!(reg("retention_rate", "2025-03-01")["status"], "on_target");
    // Counts and sums have no segment target unless the policy overrides them.
    assert_eq!(reg("revenue", "2025-03-01")["status"], "no_target");
    // Five big spenders: every figure of their segment is withheld, in every period.
    for r in rows.iter().filter(|r| r["segment"] == big.as_str()) {
        assert_eq!(r["value"], Value::Null, "{r}");
        assert_eq!(r["suppressed"], true, "{r}");
        assert_eq!(r["status"], "suppressed", "{r}");
    }

    // Re-evaluating March appends; nothing is overwritten.
    let (status, again) = post_json(
        &app,
        "analyst",
        "/api/v1/kpi/evaluate",
        json!({"period": "month", "as_of": "2025-03-15"}),
    )
    .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again.as_array().unwrap().len(), 36);
    let (status, log) = app
        .get_json(
            "marketing",
            "/api/v1/kpi/evaluations?period=month&segment=all&kpi=active_customers",
        )
        .await;
    assert_eq!(status, 200);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 7);
    assert_eq!(
        log.iter()
            .filter(|r| r["period_start"] == "2025-03-01")
            .count(),
        2
    );
    let updated = app.db.write(|c| {
        use diesel::RunQueryDsl;
        Ok(diesel::sql_query("UPDATE kpi_evaluations SET value = 0").execute(c))
    });
    assert!(updated.unwrap().is_err(), "the log refuses updates");

    // The CSV export carries the same rows and withholds the same figures.
    let csv = app
        .api(
            "marketing",
            Method::GET,
            "/api/v1/kpi/evaluations?format=csv",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let (seg, value, suppressed) = (
        header.iter().position(|h| h == "segment").unwrap(),
        header.iter().position(|h| h == "value").unwrap(),
        header.iter().position(|h| h == "suppressed").unwrap(),
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 6 * 36 + 36);
    for r in records.iter().filter(|r| &r[seg] == big.as_str()) {
        assert_eq!(&r[value], "");
        assert_eq!(&r[suppressed], "true");
    }

    let trail = app.trail("action=kpi.evaluated").await;
    assert_eq!(trail.len(), 2);
    assert_eq!(trail[0]["actor"], "analyst@example.test");
}

#[tokio::test]
async fn a_kpi_past_its_threshold_for_n_periods_raises_an_alert_and_recommends_resegmenting() {
    let app = spawn_app().await;
    seeded(&app).await;
    let n = app.policy.kpi.consecutive_periods;
    assert_eq!(n, 3);
    // 45 active customers is far below the policy's alert threshold for `all`.
    let (status, _) = post_json(
        &app,
        "analyst",
        "/api/v1/kpi/evaluate",
        json!({"from": "2025-01-01", "to": "2025-02-28"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, report) = app.get_json("marketing", "/api/v1/kpi/drift").await;
    assert_eq!(status, 200, "{report}");
    let persistent = |report: &Value| {
        report["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "kpi_persistent")
            .map(|a| a["message"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        !persistent(&report)
            .iter()
            .any(|m| m.contains("active_customers")),
        "two periods are not enough: {report}"
    );
    let (status, _) = post_json(
        &app,
        "analyst",
        "/api/v1/kpi/evaluate",
        json!({"as_of": "2025-03-31"}),
    )
    .await;
    assert_eq!(status, 201);
    let (_, report) = app.get_json("marketing", "/api/v1/kpi/drift").await;
    let alerts = persistent(&report);
    assert!(
        alerts
            .iter()
            .any(|m| m.starts_with("active_customers for the whole population")),
        "{report}"
    );
    assert_eq!(report["resegmentation_recommended"], true);
    assert!(!report["reasons"].as_array().unwrap().is_empty());
    // The small segment's suppressed figures never raise an alert of their own.
    let (_, log) = app.get_json("marketing", "/api/v1/kpi/evaluations").await;
    let (_, big) = names(log.as_array().unwrap());
    assert!(
        report["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| !a["message"].as_str().unwrap().contains(big.as_str())),
        "{report}"
    );
}

#[tokio::test]
async fn drift_detects_a_shifted_feature_and_the_rerun_starts_a_run_with_the_same_settings() {
    let app = spawn_app().await;
    let run_id = seeded(&app).await;
    let (status, before) = app.get_json("analyst", "/api/v1/kpi/drift").await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["run_id"].as_i64(), Some(run_id));
    let monetary = |report: &Value| {
        report["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["feature"] == "monetary")
            .cloned()
            .unwrap_or_else(|| panic!("monetary in {report}"))
    };
    assert_eq!(monetary(&before)["level"], "stable", "{before}");

    // Every regular customer now spends 500 more: their monetary value moves far.
    {
        use diesel::prelude::*;
        use fairseg::db::customers::{IdTable, next_id};
        use fairseg::db::schema::transactions;
        app.db
            .write(|conn| {
                for customer in 1..=40i64 {
                    let id = next_id(conn, IdTable::Transactions)?;
                    diesel::insert_into(transactions::table)
                        .values((
                            transactions::id.eq(id),
                            transactions::customer_id.eq(customer),
                            transactions::occurred_at.eq(at(2025, 7, 1)),
                            transactions::amount.eq(500.0),
                            transactions::quantity.eq(Some(1i64)),
                            transactions::order_id.eq(None::<String>),
                            transactions::imported_at.eq(at(2025, 7, 1)),
                        ))
                        .execute(conn)?;
                }
                Ok(())
            })
            .unwrap();
    }
    let (_, after) = app.get_json("analyst", "/api/v1/kpi/drift").await;
    let m = monetary(&after);
    assert_eq!(m["level"], "act", "{after}");
    assert!(m["psi"].as_f64().unwrap() >= 0.2, "{m}");
    assert_eq!(m["ks_significant"], true, "{m}");
    assert_eq!(after["resegmentation_recommended"], true);
    assert!(
        after["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("monetary")),
        "{after}"
    );
    // Segment sizes: the small segment's size is withheld.
    let sizes = after["segment_shift"]["segments"].as_array().unwrap();
    assert_eq!(sizes.len(), 2);
    assert!(sizes.iter().any(|s| s["live_size"] == 40));
    assert!(sizes.iter().any(|s| s["live_size"].is_null()));

    // Marketing may read drift but not start runs.
    let (status, _) = post_json(
        &app,
        "marketing",
        &format!("/api/v1/segmentations/{run_id}/rerun"),
        json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = post_json(
        &app,
        "analyst",
        &format!("/api/v1/segmentations/{run_id}/rerun"),
        json!({}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let new_id = body["run_id"].as_i64().unwrap();
    assert!(new_id > run_id);
    assert_eq!(body["location"], format!("/segmentations/{new_id}"));
    let (old, new) = app
        .db
        .read(|c| {
            Ok((
                fairseg::db::segmentation::run(c, run_id)?.unwrap(),
                fairseg::db::segmentation::run(c, new_id)?.unwrap(),
            ))
        })
        .unwrap();
    let settings = |s: &str| {
        let mut v: Value = serde_json::from_str(s).unwrap();
        v["as_of"] = Value::Null;
        v
    };
    assert_eq!(settings(&new.settings), settings(&old.settings));
    assert_eq!(new.created_by, "analyst@example.test");
    // It runs in the background, and is audited as soon as it finishes.
    let mut status = new.status.clone();
    for _ in 0..100 {
        if status == "audited" || status == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = app
            .db
            .read(|c| fairseg::db::segmentation::run(c, new_id))
            .unwrap()
            .unwrap()
            .status;
    }
    assert_eq!(status, "audited");
    let trail = app.trail("action=segmentation.rerun").await;
    assert_eq!(trail[0]["subject"], format!("run:{new_id}"));

    // The same through the form on the drift page.
    let client = app.sign_in("analyst").await;
    let page = client.get(app.url("/kpi/drift")).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert_eq!(texts(&html, "#features tbody th"), ["monetary"]);
    let doc = scraper::Html::parse_document(&html);
    let form =
        scraper::Selector::parse(r#"form[action="/kpi/drift/rerun"] input[name="csrf_token"]"#)
            .unwrap();
    let csrf = doc
        .select(&form)
        .next()
        .and_then(|e| e.value().attr("value"))
        .unwrap()
        .to_owned();
    let response = client
        .post(app.url("/kpi/drift/rerun"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("run_id", &run_id.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("/segmentations/"), "{location}");
}

#[tokio::test]
async fn the_pages_show_latest_status_and_charts_and_withhold_small_counts() {
    let app = spawn_app().await;
    seeded(&app).await;
    let (status, _) = post_json(
        &app,
        "analyst",
        "/api/v1/kpi/evaluate",
        json!({"from": "2025-01-01", "to": "2025-06-30"}),
    )
    .await;
    assert_eq!(status, 201);
    let client = app.sign_in("marketing").await;
    let html = client
        .get(app.url("/kpi"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(texts(&html, "nav a").contains(&"KPIs".to_string()));
    let heads = texts(&html, "table.kpi-glance thead th");
    assert_eq!(heads.len(), 4, "{heads:?}");
    assert_eq!(heads[1], "all");
    let rows = texts(&html, "table.kpi-glance tbody th");
    assert_eq!(rows.len(), 12);
    // June: 40 active customers overall.
    let active = texts(&html, r#"td[data-kpi="active_customers"]"#);
    assert!(active[0].starts_with("40 "), "{active:?}");
    assert_eq!(
        texts(&html, "td.status-suppressed").len(),
        12,
        "the small segment's column is withheld"
    );
    // Marketing may not evaluate: no form.
    assert!(!html.contains(r#"action="/kpi/evaluate""#));

    let html = client
        .get(app.url("/kpi/segments/all"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let doc = scraper::Html::parse_document(&html);
    let charts = scraper::Selector::parse("li.chart").unwrap();
    assert_eq!(doc.select(&charts).count(), 12);
    let retention =
        scraper::Selector::parse(r#"li.chart[data-kpi="retention_rate"] polyline.series"#).unwrap();
    let points = doc
        .select(&retention)
        .next()
        .unwrap()
        .value()
        .attr("points")
        .unwrap();
    // January has no previous month with customers: a gap, then five points.
    assert_eq!(points.split(' ').count(), 5, "{points}");
    let target =
        scraper::Selector::parse(r#"li.chart[data-kpi="retention_rate"] line.target"#).unwrap();
    assert_eq!(doc.select(&target).count(), 1);

    let missing = client
        .get(app.url("/kpi/segments/nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let csv = client.get(app.url("/kpi/log.csv")).send().await.unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.text().await.unwrap().starts_with("id,kpi,"));

    // The analyst evaluates from the page.
    let analyst = app.sign_in("analyst").await;
    let html = analyst
        .get(app.url("/kpi"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_token(&html);
    let response = analyst
        .post(app.url("/kpi/evaluate"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("period", "month"),
            ("as_of", "2025-07-15"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let (_, log) = app
        .get_json("analyst", "/api/v1/kpi/evaluations?from=2025-07-01")
        .await;
    assert_eq!(log.as_array().unwrap().len(), 36);
}

#[tokio::test]
async fn reading_needs_kpi_read_and_evaluating_needs_kpi_evaluate() {
    let app = spawn_app().await;
    for (role, expected) in [
        ("admin", 403),
        ("compliance", 200),
        ("marketing", 200),
        ("analyst", 200),
    ] {
        let (status, _) = app.get_json(role, "/api/v1/kpi/evaluations").await;
        assert_eq!(status, expected, "{role} reads the log");
        let (status, _) = app.get_json(role, "/api/v1/kpi/drift").await;
        assert_eq!(status, expected, "{role} reads drift");
    }
    for (role, expected) in [
        ("admin", 403),
        ("compliance", 403),
        ("marketing", 403),
        ("analyst", 201),
    ] {
        let (status, _) = post_json(&app, role, "/api/v1/kpi/evaluate", json!({})).await;
        assert_eq!(status, expected, "{role} evaluates");
    }
    let (status, body) = post_json(
        &app,
        "analyst",
        "/api/v1/kpi/evaluate",
        json!({"period": "fortnight"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "period");
    let (status, body) = app
        .get_json("analyst", "/api/v1/kpi/evaluations?kpi=happiness")
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "kpi");
    let (status, _) = post_json(
        &app,
        "analyst",
        "/api/v1/segmentations/999/rerun",
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_server_evaluates_on_its_schedule() {
    let app = spawn_app_with(|s| {
        s.kpi_schedule =
            fairseg::kpi::service::Schedule::Every(std::time::Duration::from_secs(3600))
    })
    .await;
    let mut count = 0;
    for _ in 0..100 {
        count = app.db.read(fairseg::db::kpi::count).unwrap();
        if count > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count, 12, "one period of `all` at start");
    let trail = app.trail("action=kpi.evaluated").await;
    assert_eq!(trail[0]["actor"], "system");
}

#[tokio::test]
async fn retention_deletes_evaluations_past_their_period() {
    let app = spawn_app().await;
    let (status, _) = post_json(&app, "analyst", "/api/v1/kpi/evaluate", json!({})).await;
    assert_eq!(status, 201);
    let days = app.policy.retention.kpi_evaluations_days;
    let out = app.cli_with(&["retention", "apply", "--dry-run", "--json"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["removed"]["kpi_evaluations"], 0);
    // Past the retention period, the evaluations go.
    let later = fairseg::db::now() + chrono::TimeDelta::days(i64::from(days) + 1);
    let cutoffs = fairseg::retention::cutoffs(&app.policy.retention, later);
    let removed = app
        .db
        .write(|c| fairseg::db::kpi::delete_evaluated_before(c, cutoffs.kpi_evaluations))
        .unwrap();
    assert_eq!(removed, 12);
}
