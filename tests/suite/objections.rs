//! The objection check: activation exports and member lists replayed against the consent
//! ledger, on a random ledger, and a planted leak that must fail loudly.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, Pages, TestApp, spawn_app, stderr, stdout, texts};
use crate::segmentation::{blob_customers, grant_all, import, publish, segment};

async fn record(app: &TestApp, customer: &str, purpose: &str, status: &str) {
    app.api("compliance", Method::POST, "/api/v1/consents")
        .json(&json!({"customer_id": customer, "purpose": purpose, "status": status}))
        .expecting(201)
        .await;
}

/// 60 customers, consented to segmentation and e-mail, segmented and published; then rounds of
/// random withdrawals and re-grants, each followed by a member list and an e-mail export.
/// Returns the run and the customers whose latest segmentation event is a withdrawal.
pub(crate) async fn random_ledger_with_exports(app: &TestApp, seed: u64) -> (i64, Vec<String>) {
    let (customers, truth) = blob_customers(20, 4);
    import(app, "customers", &customers);
    grant_all(app, truth.len(), &["segmentation", "marketing_email"]);
    let run = segment(
        app,
        &["--algorithm", "kmeans", "--k", "3", "--features", "x,y"],
    );
    let run = run["run_id"].as_i64().unwrap();
    publish(app, run);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut withdrawn = std::collections::BTreeSet::new();
    let marketing = app.sign_in("marketing").await;
    for _ in 0..5 {
        for _ in 0..rng.gen_range(1..4) {
            let c = format!("C{:04}", rng.gen_range(0..truth.len()));
            let purpose = ["segmentation", "marketing_email"][rng.gen_range(0..2)];
            let status = if rng.gen_bool(0.75) {
                "withdrawn"
            } else {
                "granted"
            };
            record(app, &c, purpose, status).await;
            if purpose == "segmentation" {
                if status == "withdrawn" {
                    withdrawn.insert(c);
                } else {
                    withdrawn.remove(&c);
                }
            }
        }
        let (status, body) = app
            .get_json(
                "compliance",
                &format!("/api/v1/segmentations/{run}/members?format=json"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let csv = marketing
            .get(app.url(&format!("/segments/{run}/0/export.csv?channel=email")))
            .send()
            .await
            .unwrap();
        assert_eq!(csv.status(), 200);
    }
    (run, withdrawn.into_iter().collect())
}

#[tokio::test]
async fn exports_on_a_random_ledger_replay_clean_and_a_planted_leak_fails_loudly() {
    let app = spawn_app().await;
    let (_, withdrawn) = random_ledger_with_exports(&app, 20261201).await;
    assert!(!withdrawn.is_empty(), "the ledger has withdrawals");

    let (status, check) = app
        .get_json("compliance", "/api/v1/checks/objections")
        .await;
    assert_eq!(status, 200, "{check}");
    assert_eq!(check["clean"], true, "{check}");
    assert_eq!(check["disclosures"], 10, "{check}");
    assert!(check["inclusions"].as_u64().unwrap() > 100, "{check}");
    let out = app.cli(&["check", "objections"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("no leak"), "{}", stdout(&out));
    let (status, _) = app.get_json("marketing", "/api/v1/checks/objections").await;
    assert_eq!(status, 403);

    // Plant a leak: the latest export now also names a customer who withdrew before it.
    let victim = &withdrawn[0];
    app.sql(&format!(
        "INSERT INTO disclosure_members (disclosure_id, customer_id) \
         SELECT (SELECT MAX(id) FROM disclosures), (SELECT id FROM customers WHERE external_id = '{victim}')"
    ));
    let (_, check) = app
        .get_json("compliance", "/api/v1/checks/objections")
        .await;
    assert_eq!(check["clean"], false, "{check}");
    let leaks = check["leaks"].as_array().unwrap();
    assert_eq!(leaks.len(), 1, "{check}");
    assert_eq!(leaks[0]["purpose"], "segmentation");
    assert_eq!(leaks[0]["kind"], "activation_export");
    let id = leaks[0]["customer_id"].as_i64().unwrap().to_string();
    assert_eq!(check["external_ids"][&id], Value::from(victim.as_str()));

    let out = app.cli(&["check", "objections"]);
    assert!(!out.status.success(), "a leak fails the CLI");
    assert!(
        stdout(&out).contains("LEAK: disclosure"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains(victim.as_str()), "{}", stdout(&out));
    assert!(stderr(&out).contains("1 leak(s)"), "{}", stderr(&out));

    let client = app.sign_in("compliance").await;
    let html = client.page(app.url("/trail/objections")).await;
    assert!(texts(&html, "#objection-verdict")[0].contains("1 leak(s)"));
    assert!(
        texts(&html, "#objection-leaks td")
            .iter()
            .any(|t| t == victim),
        "the page names the customer"
    );
    let trail = app.trail("action=objections.checked").await;
    assert!(trail.len() >= 3, "every check is in the trail");
}
