//! Migration between runs: segments of a re-run matched to the earlier run's by their centres
//! (Hungarian assignment), and the value that moved into at-risk segments.

use serde_json::Value;

use crate::helpers::{Answer, TestApp, spawn_app};
use crate::segmentation::{blob_customers, grant_all, import, segment};

/// Two k-means runs of the same three groups, started from different seeds.
pub(crate) fn two_runs(app: &TestApp) -> (i64, i64) {
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
async fn marketing_names_stay_when_a_rerun_finds_the_segment_again() {
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(30, 5);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let args = |seed: &'static str| {
        [
            "--algorithm",
            "kmeans",
            "--k",
            "3",
            "--features",
            "x,y",
            "--seed",
            seed,
        ]
    };
    let a = segment(&app, &args("1"))["run_id"].as_i64().unwrap();
    crate::segmentation::publish(&app, a);
    app.api(
        "marketing",
        reqwest::Method::PATCH,
        &format!("/api/v1/segmentations/{a}/segments/0"),
    )
    .json(&serde_json::json!({"name": "Champions"}))
    .expecting(204)
    .await;
    let members_of = |run: i64, segment: i64| -> Vec<i64> {
        use diesel::prelude::*;
        use fairseg::db::schema::segment_memberships as m;
        app.db
            .read(|conn| {
                Ok(m::table
                    .filter(m::run_id.eq(run).and(m::segment.eq(segment as i32)))
                    .select(m::customer_id)
                    .order(m::customer_id.asc())
                    .load::<i64>(conn)?)
            })
            .unwrap()
    };
    let champions = members_of(a, 0);

    let b = segment(&app, &args("99"))["run_id"].as_i64().unwrap();
    let (_, cmp) = app
        .get_json(
            "analyst",
            &format!("/api/v1/segmentations/compare?a={a}&b={b}"),
        )
        .await;
    let names = cmp["b_segments"].as_array().unwrap();
    let at = names
        .iter()
        .position(|n| n == "Champions")
        .unwrap_or_else(|| panic!("the re-run keeps the name: {cmp}"));
    assert_eq!(
        members_of(b, at as i64),
        champions,
        "and gives it to the segment with the same customers"
    );
    // The run's own proposal stays on record.
    let (_, run) = app
        .get_json("analyst", &format!("/api/v1/segmentations/{b}"))
        .await;
    let segment = &run["segments"][at];
    assert_ne!(segment["proposed_name"], "Champions", "{segment}");
}
