//! The trail: every change is in it, tampering is found and named, and compliance reads it
//! filtered and paged.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, Pages, spawn_app, stderr, stdout, texts};

#[tokio::test]
async fn trail_verify_passes_an_intact_chain_and_names_an_altered_entry() {
    let app = spawn_app().await;
    let ok = app.cli(&["trail", "verify", "--json"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let report: Value = serde_json::from_str(&stdout(&ok)).unwrap();
    assert!(report["entries"].as_u64().unwrap() >= 6, "{report}");
    assert!(report.get("first_bad").is_none());

    // Someone edits entry 3 in the database by hand: who created an account, say.
    app.sql("UPDATE trail SET actor = 'someone-else' WHERE seq = 3");
    let broken = app.cli(&["trail", "verify"]);
    assert_eq!(broken.status.code(), Some(1));
    let message = stderr(&broken);
    assert_eq!(message.lines().count(), 1, "one line: {message}");
    assert!(message.contains("entry 3"), "{message}");
    assert!(message.contains("altered"), "{message}");

    let (status, body) = app.get_json("compliance", "/api/v1/trail/verify").await;
    assert_eq!(status, 200);
    assert_eq!(body["first_bad"]["seq"], 3, "{body}");
}

#[tokio::test]
async fn trail_verify_names_a_removed_entry_and_removed_newest_entries() {
    let app = spawn_app().await;
    app.sql("DELETE FROM trail WHERE seq = 4");
    let out = app.cli(&["trail", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["first_bad"]["seq"], 4, "{report}");
    assert!(
        stderr(&out).contains("entry 4 is missing"),
        "{}",
        stderr(&out)
    );

    let app = spawn_app().await;
    let newest: i64 = app.trail("").await[0]["seq"].as_i64().unwrap();
    app.sql(&format!("DELETE FROM trail WHERE seq = {newest}"));
    let out = app.cli(&["trail", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("were removed"), "{}", stderr(&out));
}

#[tokio::test]
async fn compliance_filters_and_pages_the_trail() {
    let app = spawn_app().await;
    // Enough entries for three pages of fifty.
    let admin = app.user("analyst").id;
    for i in 0..60 {
        let role = if i % 2 == 0 { "compliance" } else { "analyst" };
        app.api("admin", Method::PATCH, &format!("/api/v1/users/{admin}"))
            .json(&json!({"role": role}))
            .expecting(200)
            .await;
    }
    let (status, first) = app
        .get_json("compliance", "/api/v1/trail?action=user.role")
        .await;
    assert_eq!(status, 200);
    assert_eq!(first["total"], 60);
    assert!(first["pages"].as_i64().unwrap() >= 2);
    let entries = first["entries"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["action"] == "user.role_changed"));
    let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first");

    let (_, last) = app
        .get_json(
            "compliance",
            &format!("/api/v1/trail?action=user.role&page={}", first["pages"]),
        )
        .await;
    let on_pages = entries.len() as i64 * (first["pages"].as_i64().unwrap() - 1)
        + last["entries"].as_array().unwrap().len() as i64;
    assert_eq!(on_pages, 60, "every entry is on exactly one page");

    let (_, by_actor) = app
        .get_json(
            "compliance",
            "/api/v1/trail?actor=admin@example.test&action=user.",
        )
        .await;
    assert_eq!(by_actor["total"], 60);

    let (status, bad) = app
        .get_json("compliance", "/api/v1/trail?from=yesterday")
        .await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["field"], "from");

    // The page shows the same, with the filter kept in the form.
    let client = app.sign_in("compliance").await;
    let html = client
        .page(app.url("/trail?action=user.role_changed"))
        .await;
    let cells = texts(&html, "tbody tr");
    assert!(!cells.is_empty() && cells.iter().all(|r| r.contains("user.role_changed")));
    assert!(html.contains(r#"value="user.role_changed""#));
}
