//! Imports of customers, transactions and consents: by API, by upload and by CLI; types
//! inferred and reported; protected attributes kept apart; bad files refused with line,
//! column and reason and nothing half-imported; re-imports trailed by pseudonym.

use std::path::PathBuf;

use diesel::prelude::*;
use fairseg::db::schema::{
    attribute_columns, consent_events, customer_protected, customers, imports, transactions,
};
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{Answer, Pages, TestApp, csrf_token, spawn_app, stderr, stdout, texts};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/imports")
        .join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

pub async fn post_csv(app: &TestApp, kind: &str, query: &str, body: Vec<u8>) -> (u16, Value) {
    app.api(
        "admin",
        Method::POST,
        &format!("/api/v1/imports/{kind}?{query}"),
    )
    .header("content-type", "text/csv")
    .body(body)
    .answer()
    .await
}

async fn import_fixture(app: &TestApp, kind: &str, name: &str) -> Value {
    let (status, body) =
        post_csv(app, kind, &format!("file_name={name}"), read_fixture(name)).await;
    assert_eq!(status, 201, "{name}: {body}");
    body
}

/// Row counts of every table an import writes.
pub fn counts(app: &TestApp) -> [i64; 6] {
    app.db
        .read(|c| {
            Ok([
                customers::table.count().get_result(c)?,
                customer_protected::table.count().get_result(c)?,
                transactions::table.count().get_result(c)?,
                consent_events::table.count().get_result(c)?,
                imports::table.count().get_result(c)?,
                attribute_columns::table.count().get_result(c)?,
            ])
        })
        .unwrap()
}

fn stored_customer(app: &TestApp, id: &str) -> (Value, Option<Value>) {
    app.db
        .read(|c| {
            let (internal, attributes): (i64, String) = customers::table
                .filter(customers::external_id.eq(id))
                .select((customers::id, customers::attributes))
                .first(c)?;
            let protected: Option<String> = customer_protected::table
                .find(internal)
                .select(customer_protected::attributes)
                .first(c)
                .optional()?;
            Ok((
                serde_json::from_str(&attributes).unwrap(),
                protected.map(|p| serde_json::from_str(&p).unwrap()),
            ))
        })
        .unwrap()
}

#[tokio::test]
async fn customers_import_infers_types_and_keeps_protected_attributes_apart() {
    let app = spawn_app().await;
    let report = import_fixture(&app, "customers", "customers.csv").await;
    assert_eq!(report["rows_read"], 3, "{report}");
    assert_eq!(report["rows_imported"], 3);
    assert_eq!(report["customers_created"], 3);
    let columns: Vec<(String, String, bool, u64)> = report["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["kind"].as_str().unwrap().to_string(),
                c["protected"].as_bool().unwrap(),
                c["missing"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("customer_id", "id", false, 0),
        ("age", "number", true, 1),
        ("Sex", "category", true, 1),
        ("city", "category", false, 1),
        ("since", "date", false, 1),
        ("note", "category", false, 0),
    ];
    assert_eq!(
        columns,
        expected.map(|(n, k, p, m)| (n.to_string(), k.to_string(), p, m))
    );

    // The byte-order mark is gone from the first column, quoted commas and newlines are kept,
    // `?` and `NA` are missing values; protected attributes live in their own table.
    let (attributes, protected) = stored_customer(&app, "C2");
    assert_eq!(attributes["note"], "two\nlines");
    assert_eq!(attributes["city"], "Bergen");
    assert!(attributes.get("age").is_none() && attributes.get("Sex").is_none());
    let protected = protected.unwrap();
    assert_eq!(protected["age"], Value::Null);
    assert_eq!(protected["sex"], "m");
    let (attributes, _) = stored_customer(&app, "C3");
    assert_eq!(attributes["city"], Value::Null);
    assert_eq!(stored_customer(&app, "C1").0["note"], "likes tea, coffee");

    // The trail names the file and the counts, never a customer id.
    let entries = app.trail("action=import.customers").await;
    assert_eq!(entries.len(), 1);
    let detail: Value = serde_json::from_str(entries[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["file"], "customers.csv");
    assert_eq!(detail["rows_imported"], 3);
    assert_eq!(entries[0]["subject"], report["import_id"]);
    assert!(!entries[0].to_string().contains("C1"));

    let (status, list) = app.get_json("admin", "/api/v1/imports").await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["file_name"], "customers.csv");
    assert_eq!(list[0]["rows_imported"], 3);
}

/// (kind, fixture, line, column, words in the reason)
const BAD_FILES: [(&str, &str, u64, Option<&str>, &str); 13] = [
    (
        "customers",
        "customers_bad_header.csv",
        1,
        Some("customer_id"),
        "lacks the required column",
    ),
    (
        "customers",
        "customers_duplicate.csv",
        4,
        Some("customer_id"),
        "duplicate customer id",
    ),
    (
        "customers",
        "customers_header_only.csv",
        2,
        None,
        "no data rows",
    ),
    ("customers", "empty.csv", 1, None, "empty"),
    ("customers", "customers_quoted_bad.csv", 4, None, "3 fields"),
    (
        "transactions",
        "transactions_bad_amount.csv",
        3,
        Some("amount"),
        "not a number",
    ),
    (
        "transactions",
        "transactions_bad_date.csv",
        3,
        Some("occurred_at"),
        "not a date",
    ),
    (
        "transactions",
        "transactions_unknown_customer.csv",
        3,
        Some("customer_id"),
        "unknown customer",
    ),
    (
        "transactions",
        "transactions_wrong_header.csv",
        1,
        Some("when"),
        "unknown column",
    ),
    ("transactions", "empty.csv", 1, None, "empty"),
    (
        "consents",
        "consents_unknown_purpose.csv",
        3,
        Some("purpose"),
        "unknown purpose",
    ),
    (
        "consents",
        "consents_unknown_status.csv",
        3,
        Some("status"),
        "unknown consent status",
    ),
    (
        "consents",
        "consents_withdrawal_before_grant.csv",
        3,
        Some("recorded_at"),
        "time order",
    ),
];

#[tokio::test]
async fn bad_files_are_refused_naming_line_column_and_reason_and_nothing_is_imported() {
    let app = spawn_app().await;
    import_fixture(&app, "customers", "customers.csv").await;
    let before = counts(&app);
    for (kind, name, line, column, reason) in BAD_FILES {
        let (status, body) =
            post_csv(&app, kind, &format!("file_name={name}"), read_fixture(name)).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["error"]["code"], "invalid_input", "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(name) && message.contains("nothing was imported"),
            "{message}"
        );
        let first = &body["report"]["errors"][0];
        assert_eq!(first["line"], line, "{name}: {body}");
        assert_eq!(first["column"].as_str(), column, "{name}: {body}");
        assert!(
            first["reason"].as_str().unwrap().contains(reason),
            "{name}: {first}"
        );
        assert_eq!(
            counts(&app),
            before,
            "{name} must leave every table unchanged"
        );
    }
    // A 0-byte body is an empty file, not a server error.
    let (status, body) = post_csv(&app, "consents", "", Vec::new()).await;
    assert_eq!(status, 400);
    assert!(
        body["report"]["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("empty")
    );
    assert_eq!(counts(&app), before);
}

#[tokio::test]
async fn transactions_and_consents_import_for_known_customers_and_follow_the_ledger() {
    let app = spawn_app().await;
    import_fixture(&app, "customers", "customers.csv").await;
    let report = import_fixture(&app, "transactions", "transactions.csv").await;
    assert_eq!(report["rows_imported"], 2);
    let report = import_fixture(&app, "consents", "consents.csv").await;
    assert_eq!(report["rows_imported"], 3);
    let recorded_by: Vec<String> = app
        .db
        .read(|c| {
            Ok(consent_events::table
                .select(consent_events::recorded_by)
                .load(c)?)
        })
        .unwrap();
    assert!(
        recorded_by.iter().all(|r| r == "admin@example.test"),
        "{recorded_by:?}"
    );

    // A later file may not put an event before the latest one already in the ledger.
    let before = counts(&app);
    let late =
        b"customer_id,purpose,status,recorded_at\nC2,analytics,withdrawn,2024-01-10\n".to_vec();
    let (status, body) = post_csv(&app, "consents", "", late).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["report"]["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("latest event")
    );
    assert_eq!(counts(&app), before);
}

#[tokio::test]
async fn skip_invalid_imports_the_good_rows_and_reports_the_bad() {
    let app = spawn_app().await;
    import_fixture(&app, "customers", "customers.csv").await;
    let (status, body) = post_csv(
        &app,
        "transactions",
        "skip_invalid=true&file_name=t.csv",
        read_fixture("transactions_unknown_customer.csv"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["rows_read"], 2);
    assert_eq!(body["rows_imported"], 1);
    assert_eq!(body["rows_rejected"], 1);
    assert_eq!(body["errors"][0]["line"], 3);
    assert_eq!(counts(&app)[2], 1);
}

#[tokio::test]
async fn reimports_update_attributes_and_the_trail_names_changed_attributes_by_pseudonym_only() {
    let app = spawn_app().await;
    import_fixture(&app, "customers", "customers.csv").await;
    let again = b"customer_id,Sex,city\nC1,m,Oslo\nC2,m,Bergen\n".to_vec();
    let (status, body) = post_csv(&app, "customers", "", again).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["customers_updated"], 1, "{body}");
    let (attributes, protected) = stored_customer(&app, "C1");
    assert_eq!(protected.unwrap()["sex"], "m");
    assert_eq!(
        attributes["note"], "likes tea, coffee",
        "other attributes are kept"
    );

    let entries = app.trail("action=customer.updated").await;
    assert_eq!(entries.len(), 1);
    let pseudonym = fairseg::startup::pseudonymizer(&app.db)
        .unwrap()
        .pseudonym(&fairseg::customers::CustomerId::parse("C1").unwrap());
    assert_eq!(entries[0]["subject"], pseudonym.as_str());
    let detail = entries[0]["detail"].as_str().unwrap();
    assert!(detail.contains("\"sex\""), "{detail}");
    assert!(
        !detail.contains("\"m\"") && !detail.contains("C1"),
        "{detail}"
    );
}

#[tokio::test]
async fn erased_customers_are_refused_unless_allowed() {
    let app = spawn_app().await;
    let pseudonym = fairseg::startup::pseudonymizer(&app.db)
        .unwrap()
        .pseudonym(&fairseg::customers::CustomerId::parse("C2").unwrap());
    app.sql(&format!(
        "INSERT INTO erased_customers (pseudonym, erased_at) VALUES ('{pseudonym}', '2024-01-01 00:00:00')"
    ));
    let (status, body) = post_csv(&app, "customers", "", read_fixture("customers.csv")).await;
    assert_eq!(status, 400, "{body}");
    let error = &body["report"]["errors"][0];
    assert_eq!(error["line"], 3);
    assert!(
        error["reason"].as_str().unwrap().contains("erased"),
        "{error}"
    );
    assert_eq!(counts(&app)[0], 0);
    let (status, body) = post_csv(
        &app,
        "customers",
        "allow_erased=true",
        read_fixture("customers.csv"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(counts(&app)[0], 3);
}

#[tokio::test]
async fn imports_need_the_import_permission_and_respect_the_size_limit() {
    let app = spawn_app().await;
    app.api("marketing", Method::POST, "/api/v1/imports/customers")
        .header("content-type", "text/csv")
        .body(read_fixture("customers.csv"))
        .expecting(403)
        .await;
    // The test server allows 1 MiB: one byte more is refused, and nothing is imported.
    let mut big = b"customer_id,note\n".to_vec();
    while big.len() <= 1024 * 1024 {
        big.extend_from_slice(b"C1,xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n");
    }
    let (status, body) = post_csv(&app, "customers", "", big).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(counts(&app)[0], 0);
    let (status, _) = post_csv(&app, "suppliers", "", b"x\n".to_vec()).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn cli_import_reports_errors_per_line_and_writes_rejected_rows() {
    let app = spawn_app().await;
    let ok = app.cli(&[
        "import",
        "customers",
        fixture("customers.csv").to_str().unwrap(),
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(
        stdout(&ok).contains("3 rows read, 3 imported, 0 rejected"),
        "{}",
        stdout(&ok)
    );
    assert!(
        stdout(&ok).contains("age (number, protected)"),
        "{}",
        stdout(&ok)
    );

    let bad = fixture("transactions_bad_amount.csv");
    let out = app.cli(&["import", "transactions", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).starts_with("fairseg: error: transactions_bad_amount.csv: line 3"));
    assert!(
        stdout(&out).contains(&format!(
            "{}:3: column `amount`: `twelve` is not a number",
            bad.display()
        )),
        "{}",
        stdout(&out)
    );
    let json = app.cli(&["import", "transactions", bad.to_str().unwrap(), "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(report["errors"][0]["column"], "amount");
    assert_eq!(counts(&app)[2], 0);

    let rejected = app.dir.path().join("rejected.csv");
    let report: Value = app.cli_json(&[
        "import",
        "transactions",
        bad.to_str().unwrap(),
        "--skip-invalid",
        "--rejected",
        rejected.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        (
            report["rows_imported"].as_u64(),
            report["rows_rejected"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let written = std::fs::read_to_string(&rejected).unwrap();
    assert_eq!(
        written,
        "customer_id,occurred_at,amount,line,column,reason\nC2,2024-03-02,twelve,3,amount,`twelve` is not a number\n"
    );
    let trail = app.trail("action=import.transactions").await;
    assert!(trail[0]["actor"].as_str().unwrap().starts_with("cli:"));
}

#[tokio::test]
async fn the_import_page_uploads_a_file_and_shows_the_report() {
    let app = spawn_app().await;
    let client = app.sign_in("admin").await;
    let (status, html) = client.page_with_status(app.url("/customers/import")).await;
    assert_eq!(status, 200);
    assert!(texts(&html, "nav a").contains(&"Import".to_string()));
    let csrf = csrf_token(&html);

    let multipart = |kind: &str, file: &[u8]| {
        let boundary = "----fairsegtestboundary";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\n{kind}\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.csv\"\r\nContent-Type: text/csv\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    };
    let (content_type, body) = multipart("customers", &read_fixture("customers.csv"));
    let response = client
        .post(app.url(&format!("/customers/import?csrf_token={csrf}")))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert_eq!(texts(&html, "#rows-imported"), vec!["3"]);
    let kinds = texts(&html, "#columns tbody td:nth-child(2)");
    assert_eq!(
        kinds,
        vec!["id", "number", "category", "category", "date", "category"]
    );
    assert!(texts(&html, "#recent tbody td").contains(&"c.csv".to_string()));

    let (content_type, body) =
        multipart("transactions", &read_fixture("transactions_bad_date.csv"));
    let response = client
        .post(app.url(&format!("/customers/import?csrf_token={csrf}")))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let html = response.text().await.unwrap();
    let row = texts(&html, "#errors tbody td");
    assert_eq!(row[0], "3");
    assert_eq!(row[1], "occurred_at");
    assert!(texts(&html, "p[role=alert]")[0].contains("nothing was imported"));

    // Without the CSRF token the upload is refused.
    let (content_type, body) = multipart("customers", &read_fixture("customers.csv"));
    let response = client
        .post(app.url("/customers/import"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

/// A customers file of `n` rows, `C00001`… with an age and a city.
fn many_customers(n: usize, city: &str) -> Vec<u8> {
    let mut csv = String::from("customer_id,age,city\n");
    for i in 1..=n {
        csv.push_str(&format!("C{i:05},{},{city}\n", 20 + i % 60));
    }
    csv.into_bytes()
}

/// Inserts a customer straight into the table, as nothing in fairseg would: here to make a
/// pseudonym collide.
fn insert_customer(app: &TestApp, id: i64, external: &str, pseudonym: &str) -> QueryResult<()> {
    let now = fairseg::db::now();
    app.db
        .write(|c| {
            diesel::insert_into(customers::table)
                .values((
                    customers::id.eq(id),
                    customers::external_id.eq(external),
                    customers::pseudonym.eq(pseudonym),
                    customers::attributes.eq("{}"),
                    customers::created_at.eq(now),
                    customers::updated_at.eq(now),
                ))
                .execute(c)?;
            Ok(())
        })
        .map_err(|e| match e {
            fairseg::db::DbError::Query(q) => q,
            other => panic!("{other}"),
        })
}

/// Large files take the bulk path on SQLite (indexes built after the rows, one scan for the
/// customers' ids); what a user sees must be the same as for small files.
#[tokio::test]
async fn large_imports_are_all_or_nothing_and_keep_ids_and_pseudonyms_unique() {
    const N: usize = 25_000;
    let app = spawn_app().await;
    let (status, body) = post_csv(&app, "customers", "", many_customers(N, "Oslo")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["customers_created"], N);
    let (attributes, protected) = stored_customer(&app, "C12345");
    assert_eq!(attributes["city"], "Oslo");
    assert_eq!(protected.unwrap()["age"], 20.0 + (12345 % 60) as f64);
    // Into the empty table PostgreSQL built the primary keys after the rows: they hold.
    let e = insert_customer(&app, 1, "not C00001", "c_not_taken").unwrap_err();
    assert!(e.to_string().to_lowercase().contains("unique"), "{e}");
    // So does the protected attributes' key to the customers (made again after the rows).
    let e = app
        .db
        .write(|c| -> fairseg::db::DbResult<()> {
            diesel::insert_into(customer_protected::table)
                .values((
                    customer_protected::customer_id.eq(N as i64 + 10),
                    customer_protected::attributes.eq("{}"),
                ))
                .execute(c)?;
            Ok(())
        })
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("foreign key"), "{e}");
    // The rows carry the import's instant (PostgreSQL's COPY gets it encoded by fairseg).
    let (created, updated): (chrono::NaiveDateTime, chrono::NaiveDateTime) = app
        .db
        .read(|c| {
            Ok(customers::table
                .filter(customers::external_id.eq("C12345"))
                .select((customers::created_at, customers::updated_at))
                .first(c)?)
        })
        .unwrap();
    assert_eq!(created, updated);
    let age = fairseg::db::now() - created;
    assert!(
        age >= chrono::TimeDelta::zero() && age < chrono::TimeDelta::minutes(10),
        "created at {created}, {age} ago"
    );

    // A re-import of all of them, one changed: an update, no new rows.
    let mut again = many_customers(N, "Oslo");
    let changed = String::from_utf8(again.clone())
        .unwrap()
        .replace("C00007,27,Oslo", "C00007,27,Bergen");
    again = changed.into_bytes();
    let (status, body) = post_csv(&app, "customers", "", again).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (
            body["customers_created"].as_u64(),
            body["customers_updated"].as_u64()
        ),
        (Some(0), Some(1)),
        "{body}"
    );
    assert_eq!(stored_customer(&app, "C00007").0["city"], "Bergen");

    // Transactions for all of them, and one unknown customer: nothing is imported.
    let mut tx = String::from("customer_id,occurred_at,amount\n");
    for i in 1..=N {
        tx.push_str(&format!("C{i:05},2024-03-01,{}.50\n", i % 90));
    }
    let (status, body) = post_csv(
        &app,
        "transactions",
        "",
        format!("{tx}NOBODY,2024-03-01,1\n").into_bytes(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["message"]
            .as_str()
            .map(|m| m.contains(&format!("line {}", N + 2))),
        Some(true),
        "{body}"
    );
    assert_eq!(counts(&app)[2], 0);
    let (status, body) = post_csv(&app, "transactions", "", tx.into_bytes()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(counts(&app)[2], N as i64);

    // The unique pseudonym index is built again after a bulk insert: a customer stored with
    // the pseudonym of one in the next file makes that import fail, and leaves nothing.
    let pseudonyms = fairseg::startup::pseudonymizer(&app.db).unwrap();
    let taken = pseudonyms.pseudonym(&fairseg::customers::CustomerId::parse("D00001").unwrap());
    insert_customer(&app, 1_000_000, "someone else", &taken).unwrap();
    let others = String::from_utf8(many_customers(2 * N, "Oslo"))
        .unwrap()
        .replace("C", "D")
        .into_bytes();
    let before = counts(&app);
    let (status, body) = post_csv(&app, "customers", "", others).await;
    assert!(status >= 400, "{status} {body}");
    assert_eq!(counts(&app), before, "nothing of the failed import stays");
    // The indexes are still there: a second customer with that pseudonym or that external
    // id is refused by the database.
    let e = insert_customer(&app, 1_000_001, "third", &taken).unwrap_err();
    assert!(e.to_string().to_lowercase().contains("unique"), "{e}");
    let e = insert_customer(&app, 1_000_002, "C00001", "c_fresh").unwrap_err();
    assert!(e.to_string().to_lowercase().contains("unique"), "{e}");
}

/// A first large import goes into empty tables (on PostgreSQL they are emptied again and the
/// rows written frozen): one that fails late leaves the tables empty and keyed as before, with
/// the error at its line, and the corrected file then goes in whole.
#[tokio::test]
async fn a_first_large_import_that_fails_late_leaves_the_empty_tables_as_they_were() {
    const N: usize = 25_000;
    let app = spawn_app().await;
    let good = String::from_utf8(many_customers(N, "Oslo")).unwrap();
    // Line 24,002 (customer C24001) loses its id: found after many batches were written.
    let bad = good.replace("C24001,", ",");
    let (status, body) = post_csv(&app, "customers", "", bad.into_bytes()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("line 24002")),
        "{body}"
    );
    assert_eq!(counts(&app), [0; 6], "nothing of the failed import stays");

    let (status, body) = post_csv(&app, "customers", "", good.into_bytes()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["customers_created"], N);
    assert_eq!(counts(&app)[..2], [N as i64, N as i64]);
    assert_eq!(stored_customer(&app, "C24001").0["city"], "Oslo");
    // The keys were made again: a second customer with a taken external id is refused.
    let e = insert_customer(&app, N as i64 + 1, "C00001", "c_fresh").unwrap_err();
    assert!(e.to_string().to_lowercase().contains("unique"), "{e}");
}

/// Customers and transactions imports check that every customer a row names exists before
/// writing it, so SQLite does not check each row's foreign key again while they write: a bulk
/// file naming an unknown customer part-way is still refused at its line and column with
/// nothing written, `skip_invalid` still rejects just that row, and afterwards the database
/// still refuses a row that names no customer, written as nothing in fairseg would.
#[tokio::test]
async fn imports_checking_customers_themselves_leave_the_database_checking_its_keys() {
    const N: usize = 25_000;
    let app = spawn_app().await;
    let (status, body) = post_csv(&app, "customers", "", many_customers(N, "Oslo")).await;
    assert_eq!(status, 201, "{body}");
    let mut tx = String::from("customer_id,occurred_at,amount\n");
    for i in 1..=N {
        if i == N / 2 {
            tx.push_str("GHOST,2024-03-01,5.00\n");
        }
        tx.push_str(&format!("C{i:05},2024-03-01,{}.50\n", i % 90));
    }
    let before = counts(&app);
    let (status, body) = post_csv(&app, "transactions", "", tx.clone().into_bytes()).await;
    assert_eq!(status, 400, "{body}");
    let first = &body["report"]["errors"][0];
    assert_eq!(first["line"], N / 2 + 1, "{body}");
    assert_eq!(first["column"], "customer_id", "{body}");
    assert!(
        first["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unknown customer")),
        "{first}"
    );
    assert_eq!(counts(&app), before, "nothing of the refused file stays");

    let (status, body) = post_csv(&app, "transactions", "skip_invalid=true", tx.into_bytes()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (
            body["rows_imported"].as_u64(),
            body["rows_rejected"].as_u64()
        ),
        (Some(N as u64), Some(1))
    );
    assert_eq!(body["errors"][0]["line"], N / 2 + 1, "{body}");
    assert_eq!(counts(&app)[2], N as i64);

    // Every connection the server writes with still checks foreign keys.
    for attempt in 0..4 {
        let refused = app.db.write::<_, fairseg::db::DbError>(|c| {
            diesel::insert_into(transactions::table)
                .values((
                    transactions::id.eq(10_000_000 + attempt),
                    transactions::customer_id.eq(999_999_999_i64),
                    transactions::occurred_at.eq(fairseg::db::now()),
                    transactions::amount.eq(1.0),
                    transactions::imported_at.eq(fairseg::db::now()),
                ))
                .execute(c)?;
            Ok(())
        });
        let e = refused.expect_err("a transaction of no customer is refused");
        assert!(e.to_string().to_lowercase().contains("foreign key"), "{e}");
    }
    assert_eq!(counts(&app)[2], N as i64);
}

/// Rows go in by COPY on PostgreSQL and by multi-row INSERTs on SQLite, several statements per
/// file either way: a failure after some of them went in (here the database refusing a
/// pseudonym taken by a customer stored behind fairseg's back, on the file's 12,000th row)
/// leaves nothing of the file behind: no new customer or protected attributes, no update of
/// the re-imported ones, no log row, no trail entry.
#[tokio::test]
async fn a_failure_while_writing_rolls_the_whole_file_back() {
    const N: usize = 15_000;
    let app = spawn_app().await;
    let (status, body) = post_csv(&app, "customers", "", many_customers(100, "Oslo")).await;
    assert_eq!(status, 201, "{body}");
    let pseudonyms = fairseg::startup::pseudonymizer(&app.db).unwrap();
    let taken = pseudonyms.pseudonym(&fairseg::customers::CustomerId::parse("C12000").unwrap());
    insert_customer(&app, 1_000_000, "someone else", &taken).unwrap();
    let before = counts(&app);
    let trail_before = app.trail("").await.len();

    // The first 100 are re-imported with a new city (updates, trailed), the rest are new.
    let (status, body) = post_csv(&app, "customers", "", many_customers(N, "Bergen")).await;
    assert!(status >= 400, "{status} {body}");
    assert_eq!(counts(&app), before, "nothing of the failed import stays");
    assert_eq!(stored_customer(&app, "C00007").0["city"], "Oslo");
    assert_eq!(app.trail("").await.len(), trail_before);

    // Without the collision the same file goes in whole.
    app.sql("DELETE FROM customers WHERE id = 1000000");
    let (status, body) = post_csv(&app, "customers", "", many_customers(N, "Bergen")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (
            body["customers_created"].as_u64(),
            body["customers_updated"].as_u64()
        ),
        (Some(N as u64 - 100), Some(100))
    );
    assert_eq!(counts(&app)[0], N as i64);
    assert_eq!(stored_customer(&app, "C14999").0["city"], "Bergen");
    assert_eq!(stored_customer(&app, "C00007").0["city"], "Bergen");
}

/// Customers files are checked and written in one walk, each column written with the type
/// its values so far have: a file must still come out as if its types had been known from
/// the start. Here a column of numbers whose last value is not one (stored as text from the
/// first row on), and a bad row after several batches went in (nothing stays).
#[tokio::test]
async fn a_type_settled_late_and_an_error_late_in_a_file_change_nothing_already_written() {
    const N: usize = 3_000;
    let app = spawn_app().await;
    let mut csv = String::from("customer_id,code,score\n");
    for i in 1..=N {
        csv.push_str(&format!("C{i:05},{},{}.25\n", 100 + i, i % 7));
    }
    let bad = format!("{csv}C00010,1,1\n");
    let (status, body) = post_csv(&app, "customers", "", bad.into_bytes()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("line {}", N + 2))),
        "{body}"
    );
    assert_eq!(counts(&app), [0; 6], "nothing of the refused file stays");

    csv.push_str("C99999,X-1,2.5\n");
    let (status, body) = post_csv(&app, "customers", "", csv.into_bytes()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["customers_created"], N + 1);
    let kinds: Vec<&str> = body["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["id", "category", "number"], "{body}");
    let (first, _) = stored_customer(&app, "C00001");
    assert_eq!(first["code"], "101", "a category's values are text");
    assert_eq!(first["score"], 1.25);
    assert_eq!(stored_customer(&app, "C99999").0["code"], "X-1");
    // One import: one log row, one trail entry.
    assert_eq!(counts(&app)[4], 1);
    let imports = app
        .trail("")
        .await
        .into_iter()
        .filter(|e| e["action"] == "import.customers")
        .count();
    assert_eq!(imports, 1);
}
