//! "Why am I in this segment?" in the data-subject export: every membership carries an
//! explanation whose numbers are checked here independently, from what the run stored (its
//! preprocessing and model, read straight from the database) and the customer's attributes.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::segmentation::{blob_customers, grant_all, import, segment};

/// The stored summary (with the fitted transform) and model of a run, as JSON.
fn stored(app: &TestApp, run: i64) -> (Value, Value) {
    let (row, model) = app
        .db
        .read(|c| {
            Ok((
                fairseg::db::segmentation::run(c, run)?,
                fairseg::db::segmentation::model(c, run)?,
            ))
        })
        .unwrap();
    let summary: Value = serde_json::from_str(&row.unwrap().summary.unwrap()).unwrap();
    (
        summary,
        serde_json::from_str(&model.expect("a model")).unwrap(),
    )
}

/// The customer's model-space row, from the stored transform and the raw attributes alone.
fn standardised(transform: &Value, raw: &BTreeMap<&str, &str>) -> Vec<f64> {
    let mut row = Vec::new();
    for f in transform["features"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        match f["kind"].as_str().unwrap() {
            "numeric" => {
                let mut v: f64 = raw[name].parse().unwrap();
                if f["log1p"] == true {
                    v = v.ln_1p();
                }
                row.push((v - f["mean"].as_f64().unwrap()) / f["scale"].as_f64().unwrap());
            }
            "categorical" => {
                for c in f["categories"].as_array().unwrap() {
                    row.push(if c == raw[name] { 1.0 } else { 0.0 });
                }
            }
            other => panic!("unknown kind {other}"),
        }
    }
    row
}

fn explanation_of(export: &Value, run: i64) -> Value {
    export["segment_memberships"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["run_id"] == run)
        .unwrap_or_else(|| panic!("a membership of run {run}: {export}"))["explanation"]
        .clone()
}

#[tokio::test]
async fn segmentation_export_explains_kmeans_with_distances_recomputed_from_the_stored_centres() {
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(20, 21);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let run = segment(
        &app,
        &[
            "--algorithm",
            "kmeans",
            "--k",
            "3",
            "--features",
            "x,y,region",
            "--seed",
            "4",
        ],
    )["run_id"]
        .as_i64()
        .unwrap();
    let (summary, model) = stored(&app, run);
    assert_eq!(model["algorithm"], "kmeans");
    let centres: Vec<Vec<f64>> = serde_json::from_value(model["centres"].clone()).unwrap();
    assert_eq!(centres.len(), 3);

    // Several customers, one per group at least.
    for line in customers.lines().skip(1).take(6) {
        let cells: Vec<&str> = line.split(',').collect();
        let raw: BTreeMap<&str, &str> = [("x", cells[1]), ("y", cells[2]), ("region", cells[3])]
            .into_iter()
            .collect();
        let (status, export) = app
            .get_json(
                "compliance",
                &format!("/api/v1/customers/{}/export", cells[0]),
            )
            .await;
        assert_eq!(status, 200, "{export}");
        let e = explanation_of(&export, run);
        assert_eq!(e["algorithm"], "kmeans", "{e}");
        let segment = e["segment"].as_u64().unwrap() as usize;
        let row = standardised(&summary["transform"], &raw);
        let d: Vec<f64> = centres
            .iter()
            .map(|c| {
                c.iter()
                    .zip(&row)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        let nearest = (0..3).min_by(|&a, &b| d[a].total_cmp(&d[b])).unwrap();
        assert_eq!(nearest, segment, "its own centre is the nearest: {d:?}");
        let own = e["distances"]["own"].as_f64().unwrap();
        assert!((own - d[segment]).abs() < 1e-9, "{own} vs {}", d[segment]);
        let next = (0..3)
            .filter(|&s| s != segment)
            .min_by(|&a, &b| d[a].total_cmp(&d[b]))
            .unwrap();
        let shown = &e["distances"]["next_nearest"];
        assert_eq!(shown["segment"], next);
        assert!((shown["distance"].as_f64().unwrap() - d[next]).abs() < 1e-9);
        // The standardised values shown are the ones recomputed.
        for (f, z) in e["features"].as_array().unwrap()[..2].iter().zip(&row) {
            assert!(
                (f["standardised"].as_f64().unwrap() - z).abs() < 1e-9,
                "{f}"
            );
        }
        assert_eq!(e["features"][2]["category"], raw["region"]);
        assert_eq!(e["consistent"], true);
        let sentence = e["sentence"].as_str().unwrap();
        let name = e["segment_name"].as_str().unwrap();
        assert!(
            sentence.starts_with(&format!("You are in '{name}' because your ")),
            "{sentence}"
        );
        assert!(
            sentence.ends_with(&format!(
                "the next closest group was '{}'.",
                shown["name"].as_str().unwrap()
            )),
            "{sentence}"
        );
        // Nothing about other customers: no centre, no count, no other id.
        let text = e.to_string();
        assert!(!text.contains("centre") && !text.contains("size"), "{text}");
    }
}

#[tokio::test]
async fn segmentation_export_gives_gmm_posteriors_that_sum_to_one_with_the_segment_most_likely() {
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(20, 22);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let run = segment(
        &app,
        &[
            "--algorithm",
            "gmm",
            "--k",
            "3",
            "--features",
            "x,y",
            "--seed",
            "3",
        ],
    )["run_id"]
        .as_i64()
        .unwrap();
    let (_, model) = stored(&app, run);
    assert_eq!(model["algorithm"], "gmm");
    assert_eq!(model["covariances"].as_array().unwrap().len(), 3);
    for id in ["C0000", "C0001", "C0002", "C0031"] {
        let export = app
            .get_ok("compliance", &format!("/api/v1/customers/{id}/export"))
            .await;
        let e = explanation_of(&export, run);
        let p: Vec<f64> = e["posteriors"]
            .as_array()
            .unwrap_or_else(|| panic!("{e}"))
            .iter()
            .map(|p| p["probability"].as_f64().unwrap())
            .collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{p:?}");
        let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        assert_eq!(json!(best), e["segment"], "{e}");
        assert_eq!(e["consistent"], true);
        assert!(e["sentence"].as_str().unwrap().contains("probability"));
    }
}

#[tokio::test]
async fn segmentation_export_names_the_matched_rule_and_the_stored_rfm_scores() {
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(20, 23);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let rules_path = app.dir.path().join("rules.json");
    std::fs::write(
        &rules_path,
        json!({"rules": [
            {"name": "East", "when": {"compare": {"attribute": "x", "op": ">", "value": 15}}},
            {"name": "North", "when": {"in": {"attribute": "region", "values": ["north"]}}}],
            "otherwise": "Everyone else"})
        .to_string(),
    )
    .unwrap();
    let rules = segment(
        &app,
        &[
            "--algorithm",
            "rules",
            "--rules",
            rules_path.to_str().unwrap(),
        ],
    )["run_id"]
        .as_i64()
        .unwrap();
    // RFM on purchases.
    let mut txns = String::from("customer_id,occurred_at,amount\n");
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for i in 0..60 {
        for _ in 0..rng.gen_range(1..6) {
            let at = chrono::Utc::now() - chrono::Duration::days(rng.gen_range(1..400));
            txns.push_str(&format!(
                "C{i:04},{},{:.2}\n",
                at.format("%Y-%m-%dT%H:%M:%SZ"),
                rng.gen_range(5.0..200.0)
            ));
        }
    }
    import(&app, "transactions", &txns);
    let rfm = segment(&app, &["--algorithm", "rfm"])["run_id"]
        .as_i64()
        .unwrap();
    for line in customers.lines().skip(1).take(8) {
        let cells: Vec<&str> = line.split(',').collect();
        let (x, region) = (cells[1].parse::<f64>().unwrap(), cells[3]);
        let export = app
            .get_ok(
                "compliance",
                &format!("/api/v1/customers/{}/export", cells[0]),
            )
            .await;
        let e = explanation_of(&export, rules);
        let expected = if x > 15.0 {
            ("East", Some(1), "X > 15")
        } else if region == "north" {
            ("North", Some(2), "region is one of north")
        } else {
            ("Everyone else", None, "no rule matched")
        };
        assert_eq!(e["rule"]["name"], expected.0, "{e}");
        assert_eq!(e["rule"]["rule"], json!(expected.1));
        assert_eq!(e["rule"]["text"], expected.2);
        assert_eq!(e["segment_name"], expected.0);
        assert_eq!(e["consistent"], true);

        let e = explanation_of(&export, rfm);
        let s = &e["rfm"];
        let score = fairseg::segmentation::rfm::RfmScore {
            r: s["recency"].as_u64().unwrap() as u8,
            f: s["frequency"].as_u64().unwrap() as u8,
            m: s["monetary"].as_u64().unwrap() as u8,
        };
        assert_eq!(
            e["segment_name"],
            fairseg::segmentation::rfm::RfmSegment::of(score).name(),
            "the stored scores place the customer in their segment: {e}"
        );
        assert_eq!(e["consistent"], true);
        let f = export["features"]["frequency"].as_u64().unwrap();
        assert!(
            e["sentence"]
                .as_str()
                .unwrap()
                .contains(&format!("({f} orders)")),
            "{e}"
        );
    }
}
