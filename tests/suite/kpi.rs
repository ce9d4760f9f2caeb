//! KPIs end to end: the CDNOW figures through the CLI, the append-only log, per-segment values
//! with small segments suppressed, alerts after N periods, drift, the re-run action, the pages,
//! the CSV export and who may do what.

use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Answer, DemoCustomer, Pages, TestApp, eventually, spawn_app, spawn_app_with, stderr, stdout,
    texts,
};

fn at(y: i32, m: u32, d: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
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
    let rows: Vec<Value> = app.cli_json(&[
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

/// 40 regular customers buying 10.00 every month of the first half of 2025, 5 big spenders
/// buying 1000.00 once in March and 15 occasional ones buying 200.00 once in April, all with
/// segmentation consent; a k-means run on `monetary` splits them (40, 5 and 15) and is
/// published. Returns the run id. The big spenders' figures are withheld (5 < 10), and with
/// them the occasional ones' wherever those are the smallest other segment: `all` minus the
/// regulars would otherwise give the big spenders away.
pub(crate) async fn seeded(app: &TestApp) -> i64 {
    seeded_published_at(app, fairseg::db::now()).await
}

/// [`seeded`], with the run published at `published_at`.
pub(crate) async fn seeded_published_at(app: &TestApp, published_at: NaiveDateTime) -> i64 {
    let granted = fairseg::db::now() - chrono::TimeDelta::days(30);
    for i in 0..60 {
        let id = format!("K{i:03}");
        let transactions = match i {
            0..40 => (1..=6).map(|m| (at(2025, m, 5), 10.0, None)).collect(),
            40..45 => vec![(at(2025, 3, 10), 1000.0, None)],
            _ => vec![(at(2025, 4, 8), 200.0, None)],
        };
        app.insert_demo_customer(DemoCustomer {
            id: &id,
            attributes: json!({}),
            protected: json!({}),
            created_at: at(2024, 12, 1),
            transactions,
            // Granted a month ago, not on a fixed date: a fixed grant lapses once the
            // purpose's validity (730 days) has passed, and these tests would then find
            // nobody to segment.
            consents: vec![("segmentation", "granted", granted)],
        });
    }
    segment_and_publish(app, published_at)
}

#[tokio::test]
async fn segment_cards_show_members_and_revenue_over_the_kpi_log() {
    let app = spawn_app().await;
    let granted = fairseg::db::now() - chrono::TimeDelta::days(30);
    // 30 regulars buying for 10 every month, 15 big spenders buying once, in March.
    for i in 0..45 {
        let transactions = if i >= 30 {
            vec![(at(2025, 3, 10), 1000.0, None)]
        } else {
            (1..=6).map(|m| (at(2025, m, 5), 10.0, None)).collect()
        };
        app.insert_demo_customer(DemoCustomer {
            id: &format!("T{i:03}"),
            attributes: json!({}),
            protected: json!({}),
            created_at: at(2024, 12, 1),
            transactions,
            consents: vec![("segmentation", "granted", granted)],
        });
    }
    segment_and_publish_k(&app, fairseg::db::now(), 2);
    let client = app.sign_in("marketing").await;
    // Nothing logged yet: no trend to draw.
    let html = client.page(app.url("/segments")).await;
    assert!(texts(&html, "ul.trend li").is_empty());

    evaluate_first_half_of_2025(&app).await;
    let html = client.page(app.url("/segments")).await;
    let words = texts(&html, "ul.trend li span");
    assert_eq!(
        words.len(),
        4,
        "members and revenue for both segments: {words:?}"
    );
    assert!(
        words.contains(&"Members: 30 in January 2025, 30 in June 2025".to_string()),
        "{words:?}"
    );
    assert!(
        words.contains(&"Revenue: €300 in January 2025, €300 in June 2025".to_string()),
        "{words:?}"
    );
    assert!(
        words.contains(&"Members: 15 in January 2025, 15 in June 2025".to_string()),
        "{words:?}"
    );
    // Six months, six points per line, each line inside its drawing.
    let doc = scraper::Html::parse_document(&html);
    let lines = scraper::Selector::parse("svg.sparkline polyline").unwrap();
    for line in doc.select(&lines) {
        let points = line.value().attr("points").unwrap();
        assert_eq!(points.split(' ').count(), 6, "{points}");
        for p in points.split(' ') {
            let (x, y) = p.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!(
                (0.0..=120.0).contains(&x) && (0.0..=28.0).contains(&y),
                "{p}"
            );
        }
    }
}

/// Splits the customers in two by `monetary` (k-means, seed 7) and publishes the run at
/// `published_at`, retiring the run published before. Returns the run id.
fn segment_and_publish(app: &TestApp, published_at: NaiveDateTime) -> i64 {
    segment_and_publish_k(app, published_at, 3)
}

fn segment_and_publish_k(app: &TestApp, published_at: NaiveDateTime, k: u32) -> i64 {
    let k = k.to_string();
    let run: Value = app.cli_json(&[
        "segment",
        "--algorithm",
        "kmeans",
        "--k",
        &k,
        "--features",
        "monetary",
        "--seed",
        "7",
        "--json",
    ]);
    let run_id = run["run_id"].as_i64().unwrap();
    app.db
        .write(|c| fairseg::db::segmentation::publish(c, run_id, "test", published_at).map(|_| ()))
        .unwrap();
    run_id
}

/// The analyst evaluates every month of the first half of 2025 through the API: the rows.
async fn evaluate_first_half_of_2025(app: &TestApp) -> Value {
    let (status, body) = app
        .post_json(
            "analyst",
            "/api/v1/kpi/evaluate",
            json!({"from": "2025-01-01", "to": "2025-06-30"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

fn find<'a>(rows: &'a [Value], segment: &str, kpi: &str, start: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["segment"] == segment && r["kpi"] == kpi && r["period_start"] == start)
        .unwrap_or_else(|| panic!("{segment} {kpi} {start}"))
}

/// The segment names of the run the segment rows of `rows` belong to: (the 40 regulars, the 5
/// big spenders), told apart by their sizes in the database (the API withholds both the big
/// spenders' size and, as its complementary partner, the occasional buyers').
fn names(app: &TestApp, rows: &[Value]) -> (String, String) {
    let run_id = rows
        .iter()
        .find_map(|r| r["run_id"].as_i64())
        .expect("a segment row");
    let segments = app
        .db
        .read(|c| fairseg::db::segmentation::segments(c, run_id))
        .unwrap();
    let named = |size: i64| {
        segments
            .iter()
            .find(|s| s.size == size)
            .unwrap_or_else(|| panic!("a segment of {size}"))
            .name
            .clone()
    };
    (named(40), named(5))
}

#[tokio::test]
async fn segments_are_evaluated_from_the_published_run_small_ones_suppressed_and_the_log_only_grows()
 {
    let app = spawn_app().await;
    let run_id = seeded(&app).await;
    let (status, body) = app
        .post_json(
            "analyst",
            "/api/v1/kpi/evaluate",
            json!({"period": "month", "from": "2025-01-01", "to": "2025-06-30"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let rows = body.as_array().unwrap().clone();
    assert_eq!(rows.len(), 6 * 4 * 12);
    let (regular, big) = names(&app, &rows);

    let all = |kpi: &str| find(&rows, "all", kpi, "2025-03-01")["value"].as_f64();
    assert_eq!(all("active_customers"), Some(45.0));
    assert_eq!(all("revenue"), Some(5400.0));
    assert_eq!(all("segment_size"), Some(60.0));
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
    // 60 on file, 40 regulars shown: the 15 occasional buyers' size is withheld too, or the
    // big spenders' would follow by subtraction; so are their March active customers (0 of
    // them against the big spenders' 5, beside all's 45).
    let occasional = rows
        .iter()
        .filter_map(|r| r["segment"].as_str())
        .find(|s| *s != "all" && *s != regular && *s != big)
        .unwrap()
        .to_owned();
    for kpi in ["segment_size", "active_customers", "revenue"] {
        let r = find(&rows, &occasional, kpi, "2025-03-01");
        assert_eq!(r["suppressed"], true, "{r}");
        assert_eq!(r["value"], Value::Null, "{r}");
        assert_eq!(
            find(&rows, &regular, kpi, "2025-03-01")["suppressed"],
            false
        );
    }
    // Where both small segments rest on too few customers (nobody of either bought in
    // February, the base of March's retention), nothing more needs withholding.
    let r = find(&rows, &regular, "retention_rate", "2025-03-01");
    assert_eq!(r["suppressed"], false, "{r}");
    // The same figures read back from the log, one segment at a time, stay withheld.
    let (status, log) = app
        .get_json(
            "marketing",
            &format!("/api/v1/kpi/evaluations?period=month&segment={occasional}&kpi=segment_size"),
        )
        .await;
    assert_eq!(status, 200, "{log}");
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 6);
    assert!(log.iter().all(|r| r["value"].is_null()), "{log:?}");

    // Re-evaluating March appends; nothing is overwritten.
    let (status, again) = app
        .post_json(
            "analyst",
            "/api/v1/kpi/evaluate",
            json!({"period": "month", "as_of": "2025-03-15"}),
        )
        .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again.as_array().unwrap().len(), 48);
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
        diesel::sql_query("UPDATE kpi_evaluations SET value = 0")
            .execute(c)
            .map_err(fairseg::db::DbError::from)
    });
    assert!(updated.is_err(), "the log refuses updates");

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
    assert_eq!(records.len(), 6 * 48 + 48);
    for r in records.iter().filter(|r| &r[seg] == big.as_str()) {
        assert_eq!(&r[value], "");
        assert_eq!(&r[suppressed], "true");
    }

    let trail = app.trail("action=kpi.evaluated").await;
    assert_eq!(trail.len(), 2);
    assert_eq!(trail[0]["actor"], "analyst@example.test");
}

/// Purchases of 10.00 by customers `ids` (internal ids) at `when`.
fn add_purchases(app: &TestApp, ids: std::ops::RangeInclusive<i64>, when: NaiveDateTime) {
    use diesel::prelude::*;
    use fairseg::db::customers::{IdTable, next_id};
    use fairseg::db::schema::transactions;
    app.db
        .write(|conn| -> fairseg::db::DbResult<()> {
            for customer in ids.clone() {
                let id = next_id(conn, IdTable::Transactions)?;
                diesel::insert_into(transactions::table)
                    .values((
                        transactions::id.eq(id),
                        transactions::customer_id.eq(customer),
                        transactions::occurred_at.eq(when),
                        transactions::amount.eq(10.0),
                        transactions::quantity.eq(Some(1i64)),
                        transactions::order_id.eq(None::<String>),
                        transactions::imported_at.eq(when),
                    ))
                    .execute(conn)?;
            }
            Ok(())
        })
        .unwrap();
}

/// After June 2025 the regulars stop coming back: July, August and September each see a
/// different eleven of them, so retention falls past its alert threshold three months running
/// (27.5 %, then 0 %, then 0 %) after five months on target.
fn retention_falls_after_june(app: &TestApp) {
    add_purchases(app, 1..=11, at(2025, 7, 5));
    add_purchases(app, 12..=22, at(2025, 8, 5));
    add_purchases(app, 23..=33, at(2025, 9, 5));
}

fn alerts_of<'a>(report: &'a Value, kind: &str) -> Vec<&'a str> {
    report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .map(|a| a["message"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_kpi_past_its_threshold_for_n_periods_raises_an_alert_and_recommends_resegmenting() {
    let app = spawn_app().await;
    seeded_published_at(&app, at(2024, 12, 15)).await;
    retention_falls_after_june(&app);
    let n = app.policy.kpi.consecutive_periods;
    assert_eq!(n, 3);
    let (status, _) = app
        .post_json(
            "analyst",
            "/api/v1/kpi/evaluate",
            json!({"from": "2025-01-01", "to": "2025-08-31"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, report) = app.get_json("marketing", "/api/v1/kpi/drift").await;
    assert_eq!(status, 200, "{report}");
    assert!(
        !alerts_of(&report, "kpi_persistent")
            .iter()
            .any(|m| m.starts_with("retention_rate for the whole population")),
        "two periods are not enough: {report}"
    );
    let (status, _) = app
        .post_json(
            "analyst",
            "/api/v1/kpi/evaluate",
            json!({"as_of": "2025-09-30"}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, report) = app.get_json("marketing", "/api/v1/kpi/drift").await;
    assert!(
        alerts_of(&report, "kpi_persistent").contains(
            &"retention_rate for the whole population has been below its alert threshold for 3 \
              consecutive periods"
        ),
        "{report}"
    );
    assert_eq!(report["resegmentation_recommended"], true);
    assert_eq!(report["advice_too_early"], false);
    let reasons: Vec<&str> = report["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("retention_rate")),
        "{reasons:?}"
    );
    // The small segment's suppressed figures never raise an alert of their own.
    let (_, log) = app.get_json("marketing", "/api/v1/kpi/evaluations").await;
    let (_, big) = names(&app, log.as_array().unwrap());
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
async fn a_kpi_below_target_since_the_start_is_a_target_problem_not_drift() {
    let app = spawn_app().await;
    seeded_published_at(&app, at(2024, 12, 15)).await;
    // 45 active customers against the policy's target of 7,000 for `all`: below it in every
    // month, and past the alert threshold in the last three.
    let (status, _) = app
        .post_json(
            "analyst",
            "/api/v1/kpi/evaluate",
            json!({"from": "2025-01-01", "to": "2025-03-31"}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, report) = app.get_json("marketing", "/api/v1/kpi/drift").await;
    let unmet = alerts_of(&report, "target_unmet");
    assert!(
        unmet.iter().any(|m| m.starts_with(
            "active_customers for the whole population has been below its target in every one \
             of the 3 periods evaluated"
        ) && m.contains("this is not drift")),
        "{report}"
    );
    assert!(
        !alerts_of(&report, "kpi_persistent")
            .iter()
            .any(|m| m.starts_with("active_customers")),
        "{report}"
    );
    let alert = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "target_unmet")
        .unwrap();
    assert_eq!(alert["severity"], "warning");
    assert!(
        report["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| !r.as_str().unwrap().contains("active_customers")),
        "{report}"
    );
}

#[tokio::test]
async fn drift_gives_no_advice_on_a_run_published_minutes_ago() {
    let app = spawn_app().await;
    seeded(&app).await;
    // The same history that recommends re-segmenting a run published in 2024.
    retention_falls_after_june(&app);
    let (status, _) = app
        .post_json(
            "analyst",
            "/api/v1/kpi/evaluate",
            json!({"from": "2025-01-01", "to": "2025-09-30"}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, report) = app.get_json("marketing", "/api/v1/kpi/drift").await;
    assert_eq!(report["resegmentation_recommended"], false, "{report}");
    assert_eq!(report["advice_too_early"], true, "{report}");
    assert!(report["reasons"].as_array().unwrap().is_empty());
    // Advice needs three whole months after publication: the month of publication counts
    // from its first day only.
    let today = fairseg::db::now().date();
    let mut first =
        fairseg::kpi::Period::first_from(fairseg::kpi::PeriodKind::Month, today).unwrap();
    for _ in 1..3 {
        first = first.next().unwrap();
    }
    assert_eq!(report["advice_from"], first.end().to_string());
    // The history before publication is not counted against the new run.
    assert!(alerts_of(&report, "kpi_persistent").is_empty(), "{report}");
    let client = app.sign_in("marketing").await;
    let html = client.page(app.url("/kpi/drift")).await;
    let advice = texts(&html, "#advice");
    assert!(advice[0].starts_with("No advice yet."), "{advice:?}");
    assert!(!html.contains("Re-segmentation recommended"));
}

/// The drift report as the API gives it, less the instant it was made.
async fn drift_report(app: &TestApp) -> Value {
    let (status, mut report) = app.get_json("analyst", "/api/v1/kpi/drift").await;
    assert_eq!(status, 200, "{report}");
    report.as_object_mut().unwrap().remove("measured_at");
    report
}

/// The drift report measured afresh: every stored measurement forgotten first.
async fn fresh_drift_report(app: &TestApp) -> Value {
    app.db.write(fairseg::db::drift::forget_all).unwrap();
    drift_report(app).await
}

/// When run `run_id`'s stored drift measurement was made, if one is stored.
fn drift_measured_at(app: &TestApp, run_id: i64) -> Option<NaiveDateTime> {
    app.db
        .read(|c| fairseg::db::drift::measured_at(c, run_id))
        .unwrap()
}

/// The stored measurement of the published run, as stored.
fn stored_drift(app: &TestApp) -> fairseg::app::kpis::FeatureDrifts {
    use diesel::prelude::*;
    use fairseg::db::schema::drift_measurements;
    let json: String = app
        .db
        .read(|c| {
            Ok(drift_measurements::table
                .select(drift_measurements::result)
                .first(c)?)
        })
        .unwrap();
    serde_json::from_str(&json).unwrap()
}

fn current_n(report: &Value, feature: &str) -> i64 {
    report["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == feature)
        .and_then(|f| f["current_n"].as_i64())
        .unwrap_or_else(|| panic!("{feature} in {report}"))
}

#[tokio::test]
async fn drift_is_measured_when_an_evaluation_is_appended_and_the_stored_result_equals_a_fresh_one()
{
    let app = spawn_app().await;
    let run_id = seeded_published_at(&app, at(2025, 1, 1)).await;
    assert_eq!(drift_measured_at(&app, run_id), None);
    evaluate_first_half_of_2025(&app).await;
    // Measured once, when the evaluation was appended; views read it, in any process.
    let measured = drift_measured_at(&app, run_id).expect("measured with the evaluation");
    let stored = drift_report(&app).await;
    assert_eq!(stored["run_id"].as_i64(), Some(run_id));
    assert_eq!(current_n(&stored, "monetary"), 60, "{stored}");
    let (_, raw) = app.get_json("analyst", "/api/v1/kpi/drift").await;
    assert_eq!(
        raw["measured_at"].as_str(),
        Some(measured.format("%Y-%m-%dT%H:%M:%S%.f").to_string().as_str()),
        "the report says when its drift was measured"
    );
    // Signing in, reading pages and member lists change no data: the measurement stands.
    let client = app.sign_in("marketing").await;
    let html = client.page(app.url("/kpi/drift")).await;
    assert!(html.contains("monetary"), "{html}");
    let (status, _) = app
        .get_json(
            "compliance",
            &format!("/api/v1/segmentations/{run_id}/members?format=json&limit=10"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(drift_report(&app).await, stored);
    assert_eq!(drift_measured_at(&app, run_id), Some(measured));
    // The stored result is exactly what measuring now gives: the struct, field for field, and
    // the report users see.
    let fresh = fairseg::app::kpis::fresh_feature_drifts(&app.db, &app.policy)
        .unwrap()
        .unwrap();
    assert_eq!(stored_drift(&app), fresh);
    assert_eq!(fresh_drift_report(&app).await, stored);

    // The segment cards' export links count from a cache too: fill it.
    let regulars = stored["segment_shift"]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["live_size"] == 40)
        .and_then(|s| s["segment"].as_i64())
        .unwrap_or_else(|| panic!("the regulars' segment in {stored}"));
    let email_link = |html: &str| {
        texts(
            html,
            &format!("#actions-{regulars} a.export[data-channel=email]"),
        )
    };
    let html = client.page(app.url("/segments")).await;
    assert_eq!(
        email_link(&html),
        vec![fairseg::format::reach("email", 0, 40, 10)],
        "{html}"
    );

    // A withdrawal changes who is counted now: measured again, and again equal to a fresh
    // measurement.
    let (status, body) = app
        .post_json(
            "compliance",
            "/api/v1/consents",
            json!({"customer_id": "K000", "purpose": "segmentation", "status": "withdrawn"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let after_withdrawal = drift_report(&app).await;
    assert_eq!(
        current_n(&after_withdrawal, "monetary"),
        59,
        "{after_withdrawal}"
    );
    let html = client.page(app.url("/segments")).await;
    assert_eq!(
        email_link(&html),
        vec![fairseg::format::reach("email", 0, 39, 10)],
        "the export link counts the withdrawal at once: {html}"
    );
    assert_eq!(
        stored_drift(&app),
        fairseg::app::kpis::fresh_feature_drifts(&app.db, &app.policy)
            .unwrap()
            .unwrap()
    );
    assert_eq!(fresh_drift_report(&app).await, after_withdrawal);

    // A new customer with purchases, loaded by the import (a data change in the trail).
    let dir = tempfile::tempdir().unwrap();
    let customers = dir.path().join("customers.csv");
    std::fs::write(&customers, "customer_id\nK900\n").unwrap();
    let transactions = dir.path().join("transactions.csv");
    std::fs::write(
        &transactions,
        "customer_id,occurred_at,amount\nK900,2025-05-05T12:00:00Z,7000\n",
    )
    .unwrap();
    let today = fairseg::db::now().date().to_string();
    for args in [
        vec!["import", "customers", customers.to_str().unwrap()],
        vec!["import", "transactions", transactions.to_str().unwrap()],
    ] {
        let out = app.cli(&args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let (status, body) = app
        .post_json(
            "compliance",
            "/api/v1/consents",
            json!({"customer_id": "K900", "purpose": "segmentation", "status": "granted", "recorded_at": today}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let after_import = drift_report(&app).await;
    assert_eq!(current_n(&after_import, "monetary"), 60, "{after_import}");
    assert_ne!(after_import["features"], after_withdrawal["features"]);
    assert_eq!(fresh_drift_report(&app).await, after_import);

    // A newly published run is measured against its own reference.
    let rerun = segment_and_publish(&app, fairseg::db::now());
    assert_ne!(rerun, run_id);
    let republished = drift_report(&app).await;
    assert_eq!(republished["run_id"].as_i64(), Some(rerun));
    assert!(drift_measured_at(&app, rerun).is_some());
    assert_eq!(fresh_drift_report(&app).await, republished);
}

#[tokio::test]
async fn drift_detects_a_shifted_feature_and_the_rerun_starts_a_run_with_the_same_settings() {
    let app = spawn_app().await;
    let run_id = seeded_published_at(&app, at(2025, 1, 1)).await;
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
            .write(|conn| -> fairseg::db::DbResult<()> {
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
    // Segment sizes: the small segment's size is withheld, and so is the next smallest.
    let sizes = after["segment_shift"]["segments"].as_array().unwrap();
    assert_eq!(sizes.len(), 3);
    assert!(sizes.iter().any(|s| s["live_size"] == 40));
    assert_eq!(
        sizes.iter().filter(|s| s["live_size"].is_null()).count(),
        2,
        "{sizes:?}"
    );

    // Marketing may read drift but not start runs.
    let (status, _) = app
        .post_json(
            "marketing",
            &format!("/api/v1/segmentations/{run_id}/rerun"),
            json!({}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = app
        .post_json(
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
    let status = eventually("the rerun finishes", Duration::from_secs(10), || async {
        let status = app
            .db
            .read(|c| fairseg::db::segmentation::run(c, new_id))
            .unwrap()
            .unwrap()
            .status;
        (status.as_str() == "audited" || status.as_str() == "failed").then_some(status)
    })
    .await;
    assert_eq!(status.as_str(), "audited");
    let trail = app.trail("action=segmentation.rerun").await;
    assert_eq!(trail[0]["subject"], format!("run:{new_id}"));

    // The same through the form on the drift page.
    let client = app.sign_in("analyst").await;
    let page = client.get(app.url("/kpi/drift")).send().await.unwrap();
    let html = page.text().await.unwrap();
    // The feature in words; its internal name stays in the row's data attribute.
    assert_eq!(texts(&html, "#features tbody th"), ["Total spent"]);
    assert!(html.contains(r#"data-feature="monetary""#));
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
    evaluate_first_half_of_2025(&app).await;
    let client = app.sign_in("marketing").await;
    let html = client.page(app.url("/kpi")).await;
    assert!(texts(&html, "nav a").contains(&"KPIs".to_string()));
    let heads = texts(&html, "table.kpi-glance thead th");
    assert_eq!(heads.len(), 5, "{heads:?}");
    assert_eq!(heads[1], "all");
    let rows = texts(&html, "table.kpi-glance tbody th");
    assert_eq!(rows.len(), 12);
    // June: 40 active customers overall.
    let active = texts(&html, r#"td[data-kpi="active_customers"]"#);
    assert!(active[0].starts_with("40 "), "{active:?}");
    // June: the big spenders' column is withheld, and so is the occasional buyers' beside
    // it (wherever they are not too few themselves, they are its complementary partner).
    assert_eq!(
        texts(&html, "td.status-suppressed").len(),
        24,
        "the small segment's column and its partner's are withheld"
    );
    // Every regular bought in May and again in June: a retention of 100 % says so.
    let why = texts(&html, r#"td[data-kpi="retention_rate"] small.why"#);
    assert!(
        why.contains(&"every customer active in the period before bought again in this one".into()),
        "{why:?}"
    );
    // Marketing may not evaluate: no form.
    assert!(!html.contains(r#"action="/kpi/evaluate""#));
    // June beside May and beside June a year before (never evaluated: said so).
    assert_eq!(
        texts(&html, "#kpi-compare thead th"),
        [
            "KPI",
            "June 2025",
            "May 2025",
            "Change",
            "June 2024",
            "Change over a year"
        ]
    );
    assert_eq!(texts(&html, "#kpi-compare tbody tr").len(), 12);
    let year = texts(&html, "#kpi-compare tbody td:nth-child(5)");
    assert!(year.iter().all(|t| t == "not evaluated"), "{year:?}");
    let changes = texts(&html, "#kpi-compare tbody td:nth-child(4)");
    assert!(
        changes
            .iter()
            .any(|c| c.ends_with('%') || c.ends_with(" pts") || c == "no change"),
        "{changes:?}"
    );

    let html = client.page(app.url("/kpi/segments/all")).await;
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
    // Axes: value ticks in the KPI's unit (a rate in %, zero as "0", never "€0.00"), time
    // ticks naming months, and the target line says what it is.
    let text = |css: &str| {
        let sel = scraper::Selector::parse(css).unwrap();
        doc.select(&sel)
            .map(|e| e.text().collect::<String>())
            .collect::<Vec<_>>()
    };
    let ticks = text(r#"li.chart[data-kpi="retention_rate"] text.tick"#);
    assert!(ticks.iter().any(|t| t == "0"), "{ticks:?}");
    assert!(ticks.iter().any(|t| t.ends_with('%')), "{ticks:?}");
    assert!(ticks.iter().any(|t| t == "Jan 2025"), "{ticks:?}");
    let money = text(r#"li.chart[data-kpi="revenue"] text.tick"#);
    assert!(!money.iter().any(|t| t.contains("0.00")), "{money:?}");
    assert!(money.iter().any(|t| t.starts_with('€')), "{money:?}");
    let labels = text(r#"li.chart[data-kpi="retention_rate"] text.line-label"#);
    assert!(
        labels.iter().any(|l| l.starts_with("target ")),
        "{labels:?}"
    );

    // The big spenders' card is withheld (5 members), and so is the occasional buyers' (15,
    // but with 40 regulars of a known 60 they would give the 5 away): only the regulars'
    // card shows its trend.
    let html = client.page(app.url("/segments")).await;
    let words = texts(&html, "ul.trend li span");
    assert_eq!(words.len(), 2, "withheld cards show no trend: {words:?}");
    assert!(
        words.contains(&"Members: 40 in January 2025, 40 in June 2025".to_string()),
        "{words:?}"
    );

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
    let html = analyst.page(app.url("/kpi")).await;
    let response = analyst
        .post_form(app.url("/kpi/evaluate"), &html, &[("as_of", "2025-07-15")])
        .await;
    assert_eq!(response.status(), 303);
    let (_, log) = app
        .get_json("analyst", "/api/v1/kpi/evaluations?from=2025-07-01")
        .await;
    assert_eq!(log.as_array().unwrap().len(), 48);
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
        let (status, _) = app.post_json(role, "/api/v1/kpi/evaluate", json!({})).await;
        assert_eq!(status, expected, "{role} evaluates");
    }
    let (status, body) = app
        .post_json(
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
    let (status, _) = app
        .post_json("analyst", "/api/v1/segmentations/999/rerun", json!({}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_server_evaluates_on_its_schedule() {
    let app = spawn_app_with(|s| {
        s.kpi_schedule = fairseg::config::KpiSchedule::Every(std::time::Duration::from_secs(3600))
    })
    .await;
    let count = eventually("the first evaluation", Duration::from_secs(10), || async {
        let count = app.db.read(fairseg::db::kpi::count).unwrap();
        (count > 0).then_some(count)
    })
    .await;
    assert_eq!(count, 12, "one period of `all` at start");
    let trail = app.trail("action=kpi.evaluated").await;
    assert_eq!(trail[0]["actor"], "system");
}

#[tokio::test]
async fn retention_deletes_evaluations_past_their_period() {
    let app = spawn_app().await;
    let (status, _) = app
        .post_json("analyst", "/api/v1/kpi/evaluate", json!({}))
        .await;
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

/// The column heads of the overview and their links.
fn heads(html: &str) -> Vec<(String, String)> {
    let doc = scraper::Html::parse_document(html);
    let a = scraper::Selector::parse("table.kpi-glance thead a").unwrap();
    doc.select(&a)
        .map(|e| {
            (
                e.text().collect::<String>().trim().to_owned(),
                e.value().attr("href").unwrap().to_owned(),
            )
        })
        .collect()
}

async fn page(client: &reqwest::Client, app: &TestApp, path: &str) -> (u16, String) {
    let response = client.get(app.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn a_series_belongs_to_its_run_and_segment_so_reruns_and_renames_keep_histories_apart() {
    let app = spawn_app().await;
    let first = seeded_published_at(&app, at(2025, 1, 1)).await;
    let rows = evaluate_first_half_of_2025(&app).await;
    let (regular, _) = names(&app, rows.as_array().unwrap());
    // A re-run with the same settings gives segments of the same names; it is published and
    // the first run retired. Only April to June are evaluated with it.
    let second = segment_and_publish(&app, at(2025, 3, 31));
    let (status, rows) = app
        .post_json(
            "analyst",
            "/api/v1/kpi/evaluate",
            json!({"from": "2025-04-01", "to": "2025-06-30"}),
        )
        .await;
    assert_eq!(status, 201);
    let rows = rows.as_array().unwrap();
    let number = find(rows, &regular, "segment_size", "2025-06-01")["segment_number"]
        .as_i64()
        .unwrap();
    assert_eq!(
        find(rows, &regular, "segment_size", "2025-06-01")["run_id"].as_i64(),
        Some(second)
    );

    // The overview shows the published run's segments only, linked by run and number.
    let client = app.sign_in("marketing").await;
    let (_, html) = page(&client, &app, "/kpi").await;
    let h = heads(&html);
    assert_eq!(h.len(), 4, "{h:?}");
    assert_eq!(h[0].0, "all");
    let link = format!("/kpi/runs/{second}/segments/{number}?period=month");
    assert!(
        h.iter()
            .any(|(name, href)| *name == regular && *href == link),
        "{h:?}"
    );
    assert!(
        h.iter()
            .all(|(_, href)| !href.contains(&format!("/runs/{first}/")))
    );
    // The new run's regulars have three months of history, not six shared with the old run.
    let (status, html) = page(&client, &app, &link).await;
    assert_eq!(status, 200);
    let doc = scraper::Html::parse_document(&html);
    let line =
        scraper::Selector::parse(r#"li.chart[data-kpi="segment_size"] polyline.series"#).unwrap();
    let points = doc
        .select(&line)
        .next()
        .unwrap()
        .value()
        .attr("points")
        .unwrap();
    assert_eq!(points.split(' ').count(), 3, "{points}");
    // The retired run stays reachable as history, apart.
    let (status, html) = page(&client, &app, &format!("/kpi?run={first}")).await;
    assert_eq!(status, 200);
    assert!(texts(&html, "#run-note")[0].contains("retired"), "{html}");
    assert!(
        heads(&html)
            .iter()
            .skip(1)
            .all(|(_, href)| href.starts_with(&format!("/kpi/runs/{first}/"))),
        "{html}"
    );
    // An old link by name leads to the published run's segment.
    let response = client
        .get(app.url(&format!("/kpi/segments/{regular}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], link.as_str());

    // Renaming the segment keeps its series: July is logged under the new name, on the same
    // line.
    app.api(
        "marketing",
        Method::PATCH,
        &format!("/api/v1/segmentations/{second}/segments/{number}"),
    )
    .json(&json!({"name": "Steady buyers"}))
    .expecting(204)
    .await;
    let (status, july) = app
        .post_json(
            "analyst",
            "/api/v1/kpi/evaluate",
            json!({"as_of": "2025-07-15"}),
        )
        .await;
    assert_eq!(status, 201);
    let renamed = find(
        july.as_array().unwrap(),
        "Steady buyers",
        "segment_size",
        "2025-07-01",
    );
    assert_eq!(renamed["segment_number"].as_i64(), Some(number));
    let (_, html) = page(&client, &app, &link).await;
    assert_eq!(texts(&html, "h1"), ["KPIs: Steady buyers"]);
    let doc = scraper::Html::parse_document(&html);
    let points = doc
        .select(&line)
        .next()
        .unwrap()
        .value()
        .attr("points")
        .unwrap();
    assert_eq!(points.split(' ').count(), 4, "{points}");
    let (_, series) = app
        .get_json(
            "marketing",
            &format!(
                "/api/v1/kpi/evaluations?run_id={second}&segment_number={number}&kpi=segment_size"
            ),
        )
        .await;
    let labels: Vec<&str> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["segment"].as_str().unwrap())
        .collect();
    assert_eq!(labels.len(), 4, "{labels:?}");
    assert_eq!(labels[3], "Steady buyers");
    assert!(labels[..3].iter().all(|l| *l == regular));
}

#[tokio::test]
async fn kpi_opens_on_the_last_complete_period_and_shows_a_partial_one_only_when_asked() {
    let app = spawn_app().await;
    seeded(&app).await;
    let today = fairseg::db::now().date();
    let kind = fairseg::kpi::PeriodKind::Month;
    let last = fairseg::kpi::Period::last_complete(kind, today).unwrap();
    let current = fairseg::kpi::Period::containing(kind, today).unwrap();
    for as_of in [last.last_day(), today] {
        let (status, body) = app
            .post_json(
                "analyst",
                "/api/v1/kpi/evaluate",
                json!({"as_of": as_of.to_string()}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // The month under way: nobody has bought yet, which against the targets is an alert.
    let (_, rows) = app
        .get_json(
            "marketing",
            &format!(
                "/api/v1/kpi/evaluations?segment=all&from={}",
                current.start()
            ),
        )
        .await;
    let active = find(
        rows.as_array().unwrap(),
        "all",
        "active_customers",
        &current.start().to_string(),
    );
    assert_eq!(active["partial"], true);
    assert_eq!(active["status"], "partial");
    assert_eq!(active["days_in_period"].as_i64(), Some(current.days()));

    let client = app.sign_in("marketing").await;
    let (_, html) = page(&client, &app, "/kpi").await;
    let shown = texts(&html, "h2#period");
    // Periods in words ("November 2026"), never "2026-11".
    assert!(
        shown[0].starts_with(&fairseg::format::period(&last)),
        "{shown:?}"
    );
    assert!(texts(&html, "#partial-note").is_empty());
    let choices = texts(&html, "#start option");
    let partial_label = format!(
        "{} — partial ({} of {} days)",
        fairseg::format::period(&current),
        (today - current.start()).num_days() + 1,
        current.days()
    );
    assert!(choices.contains(&partial_label), "{choices:?}");

    let (_, html) = page(&client, &app, &format!("/kpi?start={}", current.start())).await;
    assert!(texts(&html, "h2#period")[0].starts_with(&fairseg::format::period(&current)));
    let note = texts(&html, "#partial-note");
    assert!(
        note[0].starts_with(&format!(
            "partial ({} of {} days).",
            (today - current.start()).num_days() + 1,
            current.days()
        )),
        "{note:?}"
    );
    for status in ["alert", "warning", "on_target"] {
        assert!(
            texts(&html, &format!("td.status-{status}")).is_empty(),
            "a partial month is never judged: {status}"
        );
    }
    assert!(!texts(&html, "td.status-partial").is_empty());
    // Nor does it count towards the alerts.
    let (_, report) = app.get_json("marketing", "/api/v1/kpi/drift").await;
    assert!(alerts_of(&report, "kpi_persistent").is_empty(), "{report}");
    // The charts end on the last complete month, and say what they leave out.
    let (_, html) = page(&client, &app, "/kpi/segments/all").await;
    let note = texts(&html, "#partial-note");
    assert!(
        note[0].contains(&fairseg::format::period(&current)),
        "{note:?}"
    );
    let doc = scraper::Html::parse_document(&html);
    let dot =
        scraper::Selector::parse(r#"li.chart[data-kpi="active_customers"] circle title"#).unwrap();
    let dots: Vec<String> = doc.select(&dot).map(|e| e.text().collect()).collect();
    assert_eq!(dots.len(), 1, "{dots:?}");
    assert!(dots[0].starts_with(&fairseg::web::format::date(&last.start())));
}

#[tokio::test]
async fn an_empty_week_view_says_how_to_evaluate_it_and_offers_the_button_to_who_may() {
    let app = spawn_app().await;
    seeded(&app).await;
    let marketing = app.sign_in("marketing").await;
    let (_, html) = page(&marketing, &app, "/kpi?period=week").await;
    let empty = texts(&html, "#empty");
    assert!(
        empty[0].contains("No week has been evaluated yet."),
        "{empty:?}"
    );
    assert!(
        empty[0].contains("fairseg kpi evaluate --period week"),
        "{empty:?}"
    );
    assert!(!html.contains(r#"action="/kpi/evaluate""#));

    let analyst = app.sign_in("analyst").await;
    let (_, html) = page(&analyst, &app, "/kpi?period=quarter").await;
    assert_eq!(
        texts(&html, "#empty button"),
        [
            "Evaluate the last complete quarter",
            "Back-fill the last twelve"
        ]
    );
    let doc = scraper::Html::parse_document(&html);
    let field = |name: &str| {
        let sel =
            scraper::Selector::parse(&format!(r#"#empty form input[name="{name}"]"#)).unwrap();
        doc.select(&sel)
            .next()
            .and_then(|e| e.value().attr("value"))
            .unwrap()
            .to_owned()
    };
    let response = analyst
        .post_form(
            app.url("/kpi/evaluate"),
            &html,
            &[
                ("period", "quarter"),
                ("from", field("from").as_str()),
                ("to", field("to").as_str()),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let (_, html) = page(&analyst, &app, "/kpi?period=quarter").await;
    assert!(texts(&html, "#empty").is_empty());
    assert_eq!(texts(&html, "#start option").len(), 12);
    let last = fairseg::kpi::Period::last_complete(
        fairseg::kpi::PeriodKind::Quarter,
        fairseg::db::now().date(),
    )
    .unwrap();
    assert!(texts(&html, "h2#period")[0].starts_with(&fairseg::format::period(&last)));
}

#[tokio::test]
async fn the_two_lifetime_values_say_which_they_are_and_a_full_retention_says_why() {
    let app = spawn_app().await;
    let now = fairseg::db::now();
    let days = |n: i64| now - chrono::TimeDelta::days(n);
    // 40 regulars bought in both of the valuation's windows; 12 big spenders bought in the
    // last one, and only 3 of them in the one before.
    for i in 0..52 {
        let regular = i < 40;
        let mut transactions = vec![(days(30), if regular { 10.0 } else { 1000.0 }, None)];
        if regular || i < 43 {
            transactions.push((days(400), if regular { 10.0 } else { 1000.0 }, None));
        }
        app.insert_demo_customer(DemoCustomer {
            id: &format!("V{i:03}"),
            attributes: json!({}),
            protected: json!({}),
            created_at: days(500),
            transactions,
            consents: vec![("segmentation", "granted", days(500))],
        });
    }
    segment_and_publish_k(&app, days(1), 2);
    let client = app.sign_in("marketing").await;
    let (_, html) = page(&client, &app, "/segments").await;
    let labels = texts(&html, "table.valuation th");
    let window = app.policy.segmentation.valuation_window_days;
    assert!(
        labels.contains(&format!(
            "Lifetime value per customer (valuation, {window}-day window)"
        )),
        "{labels:?}"
    );
    let retention = texts(&html, "table.valuation tr:nth-child(6) td");
    assert_eq!(retention.len(), 2, "{retention:?}");
    assert!(
        retention.contains(&"100% (all who bought in the earlier window bought again)".to_owned()),
        "{retention:?}"
    );
    assert!(
        retention.contains(&format!(
            "not meaningful: fewer than {} members bought in the earlier window",
            app.policy.fairness.min_cell_size
        )),
        "{retention:?}"
    );

    let last =
        fairseg::kpi::Period::last_complete(fairseg::kpi::PeriodKind::Month, now.date()).unwrap();
    let (status, _) = app
        .post_json(
            "analyst",
            "/api/v1/kpi/evaluate",
            json!({"as_of": last.last_day().to_string()}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, html) = page(&client, &app, "/kpi").await;
    let rows = texts(&html, "table.kpi-glance tbody th");
    // The rows follow the catalogue; the internal name is not shown.
    let clv = &rows[fairseg::kpi::Kpi::CustomerLifetimeValue.index()];
    assert!(!clv.contains("customer_lifetime_value"), "{rows:?}");
    assert!(
        clv.starts_with(
            "Lifetime value per active customer (from this period's revenue and churn)"
        ),
        "{clv}"
    );
}

#[tokio::test]
async fn the_schedule_evaluates_again_a_last_period_left_partial() {
    let app = spawn_app().await;
    let kind = fairseg::kpi::PeriodKind::Month;
    let last = fairseg::kpi::Period::last_complete(kind, fairseg::db::now().date()).unwrap();
    // The last month's newest evaluation was made on its last day (the server was down
    // when it ended).
    let before_end = last.last_day().and_hms_opt(12, 0, 0).unwrap();
    let mut row = fairseg::db::kpi::EvaluationRecord {
        id: 0,
        kpi: "segment_size".into(),
        definition_version: "v1".into(),
        policy_version: app.policy.version.clone(),
        run_id: None,
        segment: "all".into(),
        segment_number: None,
        period_kind: "month".into(),
        period_start: last.start(),
        period_end: last.last_day(),
        value: Some(0.0),
        undefined_reason: None,
        basis: 0,
        target: None,
        alert_threshold: None,
        status: "no_target".into(),
        evaluated_at: before_end,
        evaluated_by: "system".into(),
        worker_id: None,
        claim_id: None,
    };
    app.db
        .write(|c| fairseg::db::kpi::append(c, std::slice::from_mut(&mut row)))
        .unwrap();
    fairseg::app::kpis::spawn_schedule(
        app.db.clone(),
        app.policy.clone(),
        fairseg::config::KpiSchedule::Every(Duration::from_secs(3600)),
        fairseg::app::jobs::WorkerId::new(),
    );
    let end = last.end().and_hms_opt(0, 0, 0).unwrap();
    let again = eventually(
        "the last month evaluated again",
        Duration::from_secs(10),
        || async {
            let rows = app
                .db
                .read(|c| {
                    fairseg::db::kpi::log(
                        c,
                        &fairseg::db::kpi::LogFilter {
                            from: Some(last.start()),
                            to: Some(last.start()),
                            kpi: Some(fairseg::kpi::Kpi::SegmentSize),
                            ..Default::default()
                        },
                    )
                })
                .unwrap();
            let again = rows.iter().filter(|r| r.evaluated_at >= end).count();
            (again > 0).then_some(again)
        },
    )
    .await;
    assert_eq!(
        again, 1,
        "the last month is evaluated again, complete this time"
    );
}

/// A customer on file since December 2024, consented to segmentation for the last 30 days,
/// whose one purchase (`amount` at `bought_at`) is loaded only now: data that arrives late.
fn late_purchase(app: &TestApp, id: &str, bought_at: NaiveDateTime, amount: f64) {
    app.insert_demo_customer(DemoCustomer {
        id,
        attributes: json!({}),
        protected: json!({}),
        created_at: at(2024, 12, 1),
        transactions: vec![(bought_at, amount, None)],
        consents: vec![(
            "segmentation",
            "granted",
            fairseg::db::now() - chrono::TimeDelta::days(30),
        )],
    });
}

#[tokio::test]
async fn the_kpi_overview_shows_a_period_evaluated_again_at_once() {
    let app = spawn_app().await;
    seeded(&app).await;
    let march = chrono::NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
    let today = fairseg::db::now().date();
    let evaluate = || async {
        let (status, body) = app
            .post_json(
                "analyst",
                "/api/v1/kpi/evaluate",
                json!({"as_of": "2025-03-31"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    };
    let revenue = || {
        let overview = fairseg::app::kpis::overview(
            &app.db,
            fairseg::kpi::PeriodKind::Month,
            Some(march),
            None,
            today,
        )
        .unwrap();
        overview
            .records
            .iter()
            .find(|(_, r)| r.segment == "all" && r.kpi == "revenue")
            .map(|(_, r)| r.value)
            .expect("March's revenue is shown")
    };
    evaluate().await;
    // 40 regulars at 10 and 5 big spenders at 1000.
    assert_eq!(revenue(), Some(5400.0));
    // A purchase of March loaded late, and March evaluated again: the overview (kept per
    // process between views) shows the new evaluation at once.
    late_purchase(&app, "K900", at(2025, 3, 20), 100.0);
    evaluate().await;
    assert_eq!(revenue(), Some(5500.0));
}

#[tokio::test]
async fn the_home_page_counts_the_alerts_of_a_periods_newest_evaluation_only() {
    let app = spawn_app().await;
    seeded(&app).await;
    let evaluate_may = || async {
        let (status, body) = app
            .post_json(
                "analyst",
                "/api/v1/kpi/evaluate",
                json!({"as_of": "2025-05-31"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    };
    // The status of each KPI of `all` in May's newest evaluation, from the API (`suppressed`
    // where the figure rests on fewer customers than the minimum cell size).
    let newest_statuses = || async {
        let (_, rows) = app
            .get_json(
                "marketing",
                "/api/v1/kpi/evaluations?segment=all&from=2025-05-01&to=2025-05-01",
            )
            .await;
        let mut newest = std::collections::BTreeMap::new();
        for r in rows.as_array().unwrap() {
            // Oldest first: a later row of the same KPI replaces an earlier one.
            newest.insert(
                r["kpi"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            );
        }
        newest
    };
    let client = app.sign_in("marketing").await;
    let home_alerts = || async {
        let (_, html) = page(&client, &app, "/").await;
        let line = texts(&html, "li.todo a")
            .into_iter()
            .find(|t| t.contains("May 2025"))
            .expect("a KPI line for May 2025 on the home page");
        line.split_whitespace()
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no alert count in {line:?}"))
    };
    let alerts = |statuses: &std::collections::BTreeMap<String, String>| {
        statuses.values().filter(|s| *s == "alert").count()
    };
    // May: 40 regulars buying for 10, so the average order value (alert below 40) is in alert.
    evaluate_may().await;
    let before = newest_statuses().await;
    assert_eq!(before["average_order_value"], "alert");
    assert_eq!(home_alerts().await, alerts(&before));
    // A large purchase of May loaded late, and May evaluated again: the average order value is
    // back on target, and the home page counts what the KPI overview shows: not every alert
    // any evaluation of May ever raised, and not the status of a withheld figure (the new
    // customers of May are fewer than the minimum cell size).
    late_purchase(&app, "K901", at(2025, 5, 20), 2000.0);
    evaluate_may().await;
    let after = newest_statuses().await;
    assert_eq!(after["average_order_value"], "on_target");
    assert_eq!(after["new_customers"], "suppressed");
    assert_eq!(home_alerts().await, alerts(&after));
}
