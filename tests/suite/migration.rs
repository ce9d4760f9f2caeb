//! Migration between runs: segments of a re-run matched to the earlier run's by their centres
//! (Hungarian assignment), and the value that moved into at-risk segments.

use serde_json::Value;

use crate::helpers::{TestApp, on_postgres, spawn_app};
use crate::segmentation::{blob_customers, grant_all, import, segment};

/// Two k-means runs of the same three groups, started from different seeds.
fn two_runs(app: &TestApp) -> (i64, i64) {
    let (customers, truth) = blob_customers(30, 5);
    import(app, "customers", &customers);
    grant_all(app, truth.len(), &["segmentation"]);
    let run = |seed: &str| {
        segment(
            app,
            &[
                "--algorithm",
                "kmeans",
                "--k",
                "3",
                "--features",
                "x,y",
                "--seed",
                seed,
            ],
        )["run_id"]
            .as_i64()
            .unwrap()
    };
    (run("1"), run("99"))
}

#[tokio::test]
async fn a_rerun_finds_each_segment_again_and_is_matched_to_it_by_its_centre() {
    let app = spawn_app().await;
    let (a, b) = two_runs(&app);
    let (status, cmp) = app
        .get_json(
            "analyst",
            &format!("/api/v1/segmentations/compare?a={a}&b={b}"),
        )
        .await;
    assert_eq!(status, 200, "{cmp}");
    let a_names: Vec<&str> = cmp["a_segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let matches = cmp["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 3);
    let mut seen = Vec::new();
    for (col, m) in matches.iter().enumerate() {
        let matched = m["matched"].as_str().expect("every segment is matched");
        assert!(!seen.contains(&matched), "matched twice: {cmp}");
        seen.push(matched);
        assert!(m["distance"].as_f64().unwrap() < 0.3, "{m}");
        // The matched segment of the first run holds all 30 of this segment's customers.
        let row = a_names.iter().position(|n| *n == matched).unwrap();
        assert_eq!(cmp["crosstab"][row][1][col], Value::from("30"), "{cmp}");
    }
    // No segment is at risk (no transactions: no revenue growth), so nothing moved.
    assert_eq!(cmp["moved_into_risk"], 0, "{cmp}");
}

#[tokio::test]
async fn browser_the_comparison_page_shows_the_matching() {
    if on_postgres() {
        return;
    }
    let app = spawn_app().await;
    let (a, b) = two_runs(&app);
    let (_driver, client) = crate::browser::start_browser().await;
    crate::browser::sign_in(&client, &app.address, "analyst").await;
    client
        .goto(&format!(
            "{}/segmentations/compare?a={a}&b={b}",
            app.address
        ))
        .await
        .unwrap();
    let facts = client
        .execute(
            "return {
               rows: document.querySelectorAll('#matching tbody tr').length,
               unmatched: [...document.querySelectorAll('#matching tbody td')].filter(t => t.innerText === 'no match').length,
               moved: document.querySelector('#moved-into-risk').innerText,
             };",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(facts["rows"], 3, "{facts}");
    assert_eq!(facts["unmatched"], 0, "{facts}");
    assert!(
        facts["moved"].as_str().unwrap().contains("0 customers"),
        "{facts}"
    );
}
