//! Segmentation runs through the CLI and the API: consent decides the population, runs are
//! reproducible, protected attributes and proxies are refused, withdrawal after publication
//! takes effect at once, small segments are suppressed, member reads are trailed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::{Duration, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Answer, Pages, TestApp, eventually, spawn_app, spawn_app_with, stderr, stdout, texts,
};

fn write(app: &TestApp, name: &str, text: &str) -> PathBuf {
    let path = app.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub fn import(app: &TestApp, kind: &str, text: &str) {
    let path = write(app, &format!("{kind}.csv"), text);
    let out = app.cli(&["import", kind, path.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn day(days_ago: i64) -> String {
    (Utc::now() - Duration::days(days_ago))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Three well-separated groups on `x`, `y`, with a category and protected attributes.
pub fn blob_customers(n_per_group: usize, seed: u64) -> (String, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres = [(0.0, 0.0), (20.0, 0.0), (10.0, 20.0)];
    let mut csv = String::from("customer_id,x,y,region,sex,postcode_district\n");
    let mut truth = Vec::new();
    for i in 0..3 * n_per_group {
        let g = i % 3;
        let (cx, cy) = centres[g];
        let x = cx + rng.gen_range(-2.0..2.0);
        let y = cy + rng.gen_range(-2.0..2.0);
        let region = ["north", "south"][rng.gen_range(0..2)];
        let sex = ["female", "male"][rng.gen_range(0..2)];
        csv.push_str(&format!(
            "C{i:04},{x:.3},{y:.3},{region},{sex},D{}\n",
            i % 7
        ));
        truth.push(g);
    }
    (csv, truth)
}

/// Eighty customers in four blobs over `x` and `y`, consented to `purposes`, and a k-means run
/// of them (k = 3, seed 5) started through the API by an analyst: the run's id.
async fn start_blob_kmeans(app: &TestApp, purposes: &[&str]) -> i64 {
    let (customers, truth) = blob_customers(20, 4);
    import(app, "customers", &customers);
    grant_all(app, truth.len(), purposes);
    let started = app
        .api("analyst", Method::POST, "/api/v1/segmentations")
        .json(&json!({"algorithm": "kmeans", "k": 3, "features": ["x", "y"], "seed": 5}))
        .expecting(202)
        .await;
    started["run_id"].as_i64().unwrap()
}

pub fn grant_all(app: &TestApp, n: usize, purposes: &[&str]) {
    let mut csv = String::from("customer_id,purpose,status,recorded_at\n");
    for i in 0..n {
        for p in purposes {
            csv.push_str(&format!("C{i:04},{p},granted,{}\n", day(30)));
        }
    }
    import(app, "consents", &csv);
}

pub fn segment(app: &TestApp, args: &[&str]) -> Value {
    let mut all = vec!["segment", "--json"];
    all.extend_from_slice(args);
    app.cli_json(&all)
}

/// `members` as customer id -> segment.
fn members(app: &TestApp, run: i64) -> BTreeMap<String, i64> {
    let out = app.cli(&["members", &run.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("customer_id,segment"));
    lines
        .map(|l| {
            let (id, s) = l.split_once(',').unwrap();
            (id.to_owned(), s.parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_run_sees_exactly_the_customers_whose_consent_is_active_at_its_start() {
    // A property over random ledgers: each seed draws a different one.
    for seed in [99, 7, 2026] {
        run_on_a_random_ledger(seed).await;
    }
}

async fn run_on_a_random_ledger(seed: u64) {
    let app = spawn_app().await;
    let n = 120;
    let (customers, _) = blob_customers(n / 3, 1);
    import(&app, "customers", &customers);
    // Random ledgers: per customer, a random history of grants and withdrawals, some grants
    // older than the 730-day validity (expired), some customers never asked.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut csv = String::from("customer_id,purpose,status,recorded_at\n");
    let mut expected = BTreeSet::new();
    let mut counts = BTreeMap::from([("never", 0), ("withdrawn", 0), ("expired", 0)]);
    for i in 0..n {
        let events = rng.gen_range(0..4);
        let mut age: i64 = rng.gen_range(100..1200);
        let mut last: Option<(bool, i64)> = None;
        for _ in 0..events {
            let granted = rng.gen_bool(0.6);
            let status = if granted { "granted" } else { "withdrawn" };
            csv.push_str(&format!("C{i:04},segmentation,{status},{}\n", day(age)));
            last = Some((granted, age));
            age = rng.gen_range(age / 2..age);
        }
        match last {
            Some((true, age)) if age < 730 => {
                expected.insert(format!("C{i:04}"));
            }
            Some((true, _)) => *counts.get_mut("expired").unwrap() += 1,
            Some((false, _)) => *counts.get_mut("withdrawn").unwrap() += 1,
            None => *counts.get_mut("never").unwrap() += 1,
        }
        // Consent for another purpose never admits anyone.
        csv.push_str(&format!("C{i:04},marketing_email,granted,{}\n", day(3)));
    }
    import(&app, "consents", &csv);
    assert!(
        expected.len() > 20 && counts.values().all(|&c| c >= 10),
        "{counts:?}"
    );

    let run = segment(
        &app,
        &["--algorithm", "kmeans", "--k", "3", "--features", "x,y"],
    );
    let got: BTreeSet<String> = members(&app, run["run_id"].as_i64().unwrap())
        .into_keys()
        .collect();
    assert_eq!(
        got, expected,
        "seed {seed}: members are exactly the consented customers"
    );
    assert_eq!(run["included"], expected.len());
    assert_eq!(run["excluded"]["no_consent"], counts["never"]);
    assert_eq!(run["excluded"]["withdrawn"], counts["withdrawn"]);
    assert_eq!(run["excluded"]["expired"], counts["expired"]);
    assert_eq!(run["excluded"]["missing_values"], 0);
    assert!(run["population_at"].is_string());
    for stage in ["load", "preprocess", "cluster", "profile", "persist"] {
        assert!(run["timings_ms"][stage].is_u64(), "{stage}: {run}");
    }
}

#[tokio::test]
async fn kmeans_recovers_separated_groups_and_the_same_seed_gives_the_same_memberships() {
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(40, 2);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let args = [
        "--algorithm",
        "kmeans",
        "--k",
        "3",
        "--features",
        "x,y,region",
        "--seed",
        "11",
    ];
    let first = segment(&app, &args);
    let second = segment(&app, &args);
    let a = members(&app, first["run_id"].as_i64().unwrap());
    let b = members(&app, second["run_id"].as_i64().unwrap());
    assert_eq!(a, b, "same seed, same memberships");
    let labels: Vec<usize> = a.values().map(|&s| s as usize).collect();
    let ari = fairseg::segmentation::quality::adjusted_rand_index(&truth, &labels).unwrap();
    assert!(ari > 0.95, "adjusted Rand index {ari}");
    let sizes: Vec<u64> = first["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), 120);
    assert_eq!(first["k"], 3);
    // A range of k is chosen by silhouette, with the other scores beside it.
    let chosen = segment(
        &app,
        &[
            "--algorithm",
            "kmeans",
            "--k-range",
            "2..5",
            "--features",
            "x,y",
        ],
    );
    assert_eq!(chosen["k"], 3, "{}", chosen["k_candidates"]);
    let candidates = chosen["k_candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 4);
    assert!(
        candidates
            .iter()
            .all(|c| c["davies_bouldin"].is_f64() && c["calinski_harabasz"].is_f64())
    );
}

/// A run after a published one is compared with it (its profile is computed while its members
/// are written): the same seed finds the same segments, so their stability against the
/// published run is 1 and they keep the names people gave the published run's segments.
#[tokio::test]
async fn a_run_after_a_published_one_is_compared_with_it_and_keeps_its_names() {
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(30, 2);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let args = [
        "--algorithm",
        "kmeans",
        "--k",
        "3",
        "--features",
        "x,y",
        "--seed",
        "5",
    ];
    let first = segment(&app, &args);
    let run = first["run_id"].as_i64().unwrap();
    assert!(first["stability_ari"].is_null(), "nothing published yet");
    publish(&app, run);
    app.api(
        "marketing",
        Method::PATCH,
        &format!("/api/v1/segmentations/{run}/segments/1"),
    )
    .json(&json!({"name": "Steady buyers"}))
    .expecting(204)
    .await;

    let second = segment(&app, &args);
    assert_eq!(second["previous_run_id"], run);
    assert_eq!(second["stability_ari"].as_f64(), Some(1.0), "{second}");
    assert_eq!(
        members(&app, run),
        members(&app, second["run_id"].as_i64().unwrap())
    );
    let names = |r: &Value| -> Vec<(i64, String, u64)> {
        r["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["segment"].as_i64().unwrap(),
                    s["name"].as_str().unwrap().to_owned(),
                    s["size"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let before = names(&first);
    let after = names(&second);
    assert_eq!(after.len(), 3);
    for ((segment, name, size), (_, old, old_size)) in after.iter().zip(&before) {
        assert_eq!(size, old_size);
        let expected = if *segment == 1 {
            "Steady buyers"
        } else {
            old.as_str()
        };
        assert_eq!(name, expected, "segment {segment}");
    }
    // The run's stages are all timed, the profile's beside the members' write.
    for stage in ["load", "preprocess", "cluster", "profile", "persist"] {
        assert!(second["timings_ms"][stage].is_u64(), "{stage}: {second}");
    }
}

#[tokio::test]
async fn protected_attributes_and_proxies_are_refused_naming_the_feature_and_nothing_runs() {
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(10, 3);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let out = app.cli(&[
        "segment",
        "--algorithm",
        "kmeans",
        "--k",
        "3",
        "--features",
        "x,sex",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("`sex` is a protected attribute"),
        "{}",
        stderr(&out)
    );
    let out = app.cli(&[
        "segment",
        "--algorithm",
        "kmeans",
        "--k",
        "3",
        "--features",
        "postcode_district,x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("postcode_district") && err.contains("proxy") && err.contains("ethnicity"),
        "{err}"
    );
    let body = app
        .api("analyst", Method::POST, "/api/v1/segmentations")
        .json(&json!({"algorithm": "gmm", "k": 3, "features": ["y", "Sex"]}))
        .expecting(400)
        .await;
    assert_eq!(body["error"]["field"], "features");
    assert!(body["error"]["message"].as_str().unwrap().contains("Sex"));
    let (_, runs) = app.get_json("analyst", "/api/v1/segmentations").await;
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );
}

pub async fn wait_for(app: &TestApp, run: i64) -> Value {
    let what = format!("run {run} finishes");
    eventually(&what, std::time::Duration::from_secs(60), || async {
        let body = app
            .get_ok("analyst", &format!("/api/v1/segmentations/{run}"))
            .await;
        (!matches!(body["status"].as_str(), Some("queued" | "running"))).then_some(body)
    })
    .await
}

/// Marketing's view of a published run's members, through the API.
async fn member_ids_via_api(app: &TestApp, run: i64) -> Vec<String> {
    let (status, listed) = app
        .get_json(
            "marketing",
            &format!("/api/v1/segmentations/{run}/members?format=json"),
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["customer_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Marketing's view of a run's members read page by page (`limit`, then the `X-Next-Cursor`
/// cursor), and how many pages it took.
async fn member_ids_by_page(app: &TestApp, run: i64, limit: usize) -> (Vec<String>, usize) {
    let client = crate::helpers::api_client();
    let token = app.token("marketing");
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut after: Option<String> = None;
    loop {
        let mut url = app.url(&format!(
            "/api/v1/segmentations/{run}/members?format=json&limit={limit}"
        ));
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let response = client.get(url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let next = response
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Value = response.json().await.unwrap();
        let page = page.as_array().unwrap();
        assert!(page.len() <= limit);
        ids.extend(
            page.iter()
                .map(|m| m["customer_id"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        match next {
            Some(n) => after = Some(n),
            None => return (ids, pages),
        }
    }
}

/// The published run's segment sizes as marketing sees them, added up.
async fn published_size_total(app: &TestApp) -> u64 {
    let (_, view) = app
        .get_json("marketing", "/api/v1/segmentations/published")
        .await;
    view["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["size"].as_u64().unwrap())
        .sum()
}

async fn withdraw(app: &TestApp, customer: &str, purpose: &str) {
    app.api("compliance", Method::POST, "/api/v1/consents")
        .json(&json!({"customer_id": customer, "purpose": purpose, "status": "withdrawn"}))
        .expecting(201)
        .await;
}

pub fn publish(app: &TestApp, run: i64) {
    app.db
        .write(|conn| {
            fairseg::db::segmentation::publish(conn, run, "test", fairseg::db::now()).map(|_| ())
        })
        .unwrap();
}

#[tokio::test]
async fn runs_start_in_the_background_and_withdrawal_after_publication_takes_effect_at_once() {
    let app = spawn_app().await;
    let run = start_blob_kmeans(&app, &["segmentation", "marketing_email"]).await;
    let done = wait_for(&app, run).await;
    // The fairness audit follows at once in the worker and moves the draft to audited.
    assert!(
        ["draft", "audited"].contains(&done["status"].as_str().unwrap()),
        "{done}"
    );
    assert_eq!(done["progress"], 1.0);

    // A draft is not for marketing: not listed, not readable, no members.
    let (status, _) = app
        .get_json("marketing", &format!("/api/v1/segmentations/{run}"))
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .get_json(
            "marketing",
            &format!("/api/v1/segmentations/{run}/members?format=json"),
        )
        .await;
    assert_eq!(status, 404);
    // Analysts may run segmentations but not read member lists.
    let (status, _) = app
        .get_json("analyst", &format!("/api/v1/segmentations/{run}/members"))
        .await;
    assert_eq!(status, 403);

    publish(&app, run);
    assert_eq!(member_ids_via_api(&app, run).await.len(), 60);
    assert_eq!(published_size_total(&app).await, 60);

    // C0001 withdraws: gone from members, sizes and exports at once.
    withdraw(&app, "C0001", "segmentation").await;
    let ids = member_ids_via_api(&app, run).await;
    assert_eq!(ids.len(), 59);
    assert!(!ids.iter().any(|id| id == "C0001"));
    assert_eq!(published_size_total(&app).await, 59);
    // Read seven at a time, the pages hold the same members in the same order, and end.
    let (paged, pages) = member_ids_by_page(&app, run, 7).await;
    assert_eq!(paged, ids);
    assert_eq!(pages, 9);
    let (status, body) = app
        .get_json(
            "marketing",
            &format!("/api/v1/segmentations/{run}/members?limit=0"),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // An e-mail export leaves out whoever has no active e-mail consent (C0002 withdraws it).
    // The dashboard has counted its reach before: the withdrawal must show at once.
    let segment_of_c2 = members(&app, run)["C0002"];
    let client = app.sign_in("marketing").await;
    let link_of_c2 = format!("#actions-{segment_of_c2} a.export[data-channel=email]");
    let before = texts(&client.page(app.url("/segments")).await, &link_of_c2);
    withdraw(&app, "C0002", "marketing_email").await;
    let csv = client
        .page(app.url(&format!(
            "/segments/{run}/{segment_of_c2}/export.csv?channel=email"
        )))
        .await;
    // The segment's name rides beside its number.
    assert!(
        csv.starts_with("customer_id,segment,segment_name\n"),
        "{csv}"
    );
    let second = csv.lines().nth(1).unwrap();
    let name = second.splitn(3, ',').nth(2).unwrap();
    assert!(!name.is_empty(), "{csv}");
    assert!(csv.lines().skip(1).all(|l| l.ends_with(name)), "{csv}");
    assert!(!csv.contains("C0002") && !csv.contains("C0001"), "{csv}");
    // The dashboard's link says how many the file holds.
    let rows = csv.lines().count() - 1;
    let html = client.page(app.url("/segments")).await;
    let links = texts(&html, &link_of_c2);
    assert_eq!(links.len(), 1, "{html}");
    assert_ne!(links, before, "the count before the withdrawal");
    // Exactly what the download holds, against the segment's live size, without revealing a
    // count below the minimum cell size (here: the one member without e-mail consent).
    let size = members(&app, run)
        .values()
        .filter(|s| **s == segment_of_c2)
        .count() as u64;
    assert_eq!(
        links[0],
        fairseg::format::reach("email", rows as u64, size, 10),
        "{rows} rows of {size}"
    );
    assert_eq!(
        links[0],
        format!("Email: all but fewer than 10 of {size} reachable")
    );
    assert!(csv.lines().count() > 10);

    // Every read of members is in the trail, by whom and of which run.
    let trail = app.trail("action=members.").await;
    assert!(trail.len() >= 3, "{trail:?}");
    assert!(trail.iter().any(|e| e["action"] == "members.exported"
        && e["actor"] == "marketing@example.test"
        && e["subject"] == format!("run:{run}")));
}

#[tokio::test]
async fn small_segments_are_suppressed_and_rules_and_rfm_name_their_segments() {
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(20, 5);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let mut x: Vec<f64> = customers
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    x.sort_by(|a, b| b.total_cmp(a));
    // Exactly four customers lie east of the fifth-largest x.
    let threshold = x[4];
    let rules = write(
        &app,
        "rules.json",
        &json!({"rules": [
            {"name": "Far east", "when": {"compare": {"attribute": "x", "op": ">", "value": threshold}}},
            {"name": "North", "when": {"in": {"attribute": "region", "values": ["north"]}}}],
            "otherwise": "Everyone else"})
        .to_string(),
    );
    let run = segment(
        &app,
        &["--algorithm", "rules", "--rules", rules.to_str().unwrap()],
    );
    let segments = run["segments"].as_array().unwrap();
    let names: Vec<&str> = segments
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Far east", "North", "Everyone else"]);
    let far_east = &segments[0];
    assert!(far_east["size"].is_null());
    assert_eq!(far_east["size_display"], "<10");
    assert_eq!(far_east["suppressed"], true);
    assert!(far_east["valuation"].is_null() && far_east["profile"].is_null());
    // One suppressed cell alone could be worked out from the total: a second is hidden too.
    assert_eq!(
        segments.iter().filter(|s| s["suppressed"] == true).count(),
        2,
        "{segments:?}"
    );

    // RFM on customers with purchases: named segments from the documented grid.
    let mut txns = String::from("customer_id,occurred_at,amount\n");
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for i in 0..60 {
        for _ in 0..rng.gen_range(1..6) {
            txns.push_str(&format!(
                "C{i:04},{},{:.2}\n",
                day(rng.gen_range(1..400)),
                rng.gen_range(5.0..200.0)
            ));
        }
    }
    import(&app, "transactions", &txns);
    let rfm = segment(&app, &["--algorithm", "rfm"]);
    let known = [
        "Champions",
        "Loyal",
        "Cannot lose them",
        "At risk",
        "Potential loyalists",
        "New customers",
        "Promising",
        "Need attention",
        "About to sleep",
        "Hibernating",
        "Lost",
    ];
    for s in rfm["segments"].as_array().unwrap() {
        assert!(known.contains(&s["name"].as_str().unwrap()), "{s}");
    }
    assert_eq!(rfm["included"], 60);
}

#[tokio::test]
async fn strategies_and_names_are_recorded_by_marketing_and_trailed() {
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(20, 6);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let run = segment(
        &app,
        &["--algorithm", "kmeans", "--k", "3", "--features", "x,y"],
    )["run_id"]
        .as_i64()
        .unwrap();
    publish(&app, run);
    let put = |role: &'static str, body: Value| {
        app.api(
            role,
            Method::PUT,
            &format!("/api/v1/segmentations/{run}/segments/1/strategy"),
        )
        .json(&body)
        .send()
    };
    let good = json!({"channel": "email", "offer": "10% off", "service_level": "priority", "favourable": true});
    assert_eq!(
        put("analyst", good.clone())
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    assert_eq!(put("marketing", good).await.unwrap().status().as_u16(), 204);
    let response = put(
        "marketing",
        json!({"channel": " ", "offer": "x", "service_level": "y", "favourable": false}),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["field"], "channel");
    app.api(
        "marketing",
        Method::PATCH,
        &format!("/api/v1/segmentations/{run}/segments/1"),
    )
    .json(&json!({"name": "Weekend bargain hunters"}))
    .expecting(204)
    .await;
    let (_, view) = app
        .get_json("marketing", "/api/v1/segmentations/published")
        .await;
    let s1 = &view["segments"][1];
    assert_eq!(s1["name"], "Weekend bargain hunters");
    assert_ne!(s1["proposed_name"], "Weekend bargain hunters");
    assert_eq!(s1["strategy"]["offer"], "10% off");
    assert_eq!(s1["strategy"]["favourable"], true);
    let trail = app.trail("action=segment.").await;
    let actions: BTreeSet<&str> = trail
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        BTreeSet::from(["segment.renamed", "segment.strategy_recorded"])
    );
}

#[tokio::test]
async fn a_run_whose_server_stopped_is_failed_once_its_lease_expires_with_nothing_kept() {
    let app = spawn_app_with(|s| s.jobs.workers = 0).await;
    let (customers, truth) = blob_customers(10, 7);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let request = fairseg::segmentation::settings::RunRequest {
        algorithm: "kmeans".into(),
        features: vec!["x".into()],
        k: Some(2),
        ..Default::default()
    };
    let actor = fairseg::trail::Actor::system();
    let now = fairseg::db::now();
    let held = |lease: i64| {
        let run = fairseg::app::runs::create_held(
            &app.db,
            &app.policy,
            &actor,
            &request,
            Some(("gone:1:dead", now + chrono::Duration::seconds(lease))),
        )
        .unwrap();
        // The process died after the run started.
        app.db
            .write(|conn| fairseg::db::segmentation::start(conn, run, now))
            .unwrap();
        run
    };
    let (expired, live) = (held(-1), held(3600));
    let settings = fairseg::config::JobSettings {
        workers: 1,
        ..Default::default()
    };
    let _jobs = fairseg::app::jobs::Jobs::start(
        app.db.clone(),
        app.policy.clone(),
        settings,
        fairseg::app::jobs::nothing_after,
    )
    .unwrap();
    let view = eventually(
        "the abandoned run is failed",
        std::time::Duration::from_secs(20),
        || async {
            let (_, view) = app
                .get_json("analyst", &format!("/api/v1/segmentations/{expired}"))
                .await;
            (view["status"] == "failed").then_some(view)
        },
    )
    .await;
    let error = view["error"].as_str().unwrap();
    assert!(
        error.contains("the server executing it stopped (worker gone:1:dead, lease expired at"),
        "{error}"
    );
    assert_eq!(view["segments"].as_array().unwrap().len(), 0);
    let out = app.cli(&["members", &expired.to_string()]);
    assert_eq!(stdout(&out), "customer_id,segment\n");
    // A run under a live lease is left to its holder.
    let (_, other) = app
        .get_json("analyst", &format!("/api/v1/segmentations/{live}"))
        .await;
    assert_eq!(other["status"], "running", "{other}");
}

#[tokio::test]
async fn retention_removes_old_memberships_but_never_the_published_runs() {
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(10, 9);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let args = ["--algorithm", "kmeans", "--k", "3", "--features", "x,y"];
    let old = segment(&app, &args)["run_id"].as_i64().unwrap();
    let old_published = segment(&app, &args)["run_id"].as_i64().unwrap();
    let recent = segment(&app, &args)["run_id"].as_i64().unwrap();
    // Both earlier runs finished three years ago; the policy keeps memberships 730 days.
    app.sql(&format!(
        "UPDATE segmentation_runs SET finished_at = '2023-01-01 00:00:00' WHERE id IN ({old}, {old_published})"
    ));
    publish(&app, old_published);
    let report: Value = app.cli_json(&["retention", "apply", "--json"]);
    assert_eq!(report["removed"]["segment_memberships"], 30);
    assert!(members(&app, old).is_empty());
    assert_eq!(members(&app, old_published).len(), 30);
    assert_eq!(members(&app, recent).len(), 30);
}

#[tokio::test]
async fn gaussian_mixtures_and_dbscan_run_through_the_same_pipeline() {
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(30, 10);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let gmm = segment(
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
    );
    let labels: Vec<usize> = members(&app, gmm["run_id"].as_i64().unwrap())
        .values()
        .map(|&s| s as usize)
        .collect();
    let ari = fairseg::segmentation::quality::adjusted_rand_index(&truth, &labels).unwrap();
    assert!(ari > 0.95, "GMM adjusted Rand index {ari}");
    let dbscan = segment(
        &app,
        &[
            "--algorithm",
            "dbscan",
            "--eps",
            "0.5",
            "--min-points",
            "4",
            "--features",
            "x,y",
        ],
    );
    let names: Vec<&str> = dbscan["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        &names[..3],
        ["Cluster 1", "Cluster 2", "Cluster 3"],
        "{names:?}"
    );
    let out = app.cli(&["segment", "--algorithm", "dbscan", "--features", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("eps"), "{}", stderr(&out));
}

#[tokio::test]
async fn two_runs_are_compared_on_their_shared_customers_with_small_cells_hidden() {
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(20, 12);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let a = segment(
        &app,
        &["--algorithm", "kmeans", "--k", "3", "--features", "x,y"],
    )["run_id"]
        .as_i64()
        .unwrap();
    let b = segment(
        &app,
        &["--algorithm", "kmeans", "--k", "2", "--features", "x"],
    )["run_id"]
        .as_i64()
        .unwrap();
    let (status, cmp) = app
        .get_json(
            "analyst",
            &format!("/api/v1/segmentations/compare?a={a}&b={b}"),
        )
        .await;
    assert_eq!(status, 200, "{cmp}");
    assert_eq!(cmp["shared_customers"], 60);
    let ari = cmp["adjusted_rand_index"].as_f64().unwrap();
    assert!(ari > 0.0 && ari < 1.0, "{ari}");
    let rows = cmp["crosstab"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let cells: Vec<&str> = rows
        .iter()
        .flat_map(|r| r[1].as_array().unwrap().iter().map(|c| c.as_str().unwrap()))
        .collect();
    assert_eq!(cells.len(), 6);
    // Every cell is a count of at least 10, 0, or hidden: never a small number.
    for c in &cells {
        assert!(
            *c == "<10" || c.parse::<u64>().is_ok_and(|n| n == 0 || n >= 10),
            "{cells:?}"
        );
    }
    // The same on the page, for analysts only.
    let client = app.sign_in("analyst").await;
    let html = client
        .page(app.url(&format!("/segmentations/compare?a={a}&b={b}")))
        .await;
    assert_eq!(crate::helpers::texts(&html, "#ari"), [format!("{ari:.3}")]);
    assert_eq!(crate::helpers::texts(&html, "#crosstab tbody tr").len(), 3);
    let (status, _) = app
        .get_json(
            "marketing",
            &format!("/api/v1/segmentations/compare?a={a}&b={b}"),
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn the_segment_map_stops_drawing_a_segment_that_withdrawals_make_too_small_to_show() {
    let app = spawn_app().await;
    let run = start_blob_kmeans(&app, &["segmentation"]).await;
    wait_for(&app, run).await;
    publish(&app, run);
    let client = app.sign_in("marketing").await;
    let centres = || async {
        texts(
            &client.page(app.url("/segments")).await,
            "svg.segment-map g.centre text",
        )
    };
    let before = centres().await;
    assert_eq!(before.len(), 3, "{before:?}");
    let by_segment = members(&app, run);
    let segment = *by_segment.values().next().unwrap();
    assert!(before.contains(&segment.to_string()), "{before:?}");
    // Withdrawals leave the segment 9 members, fewer than the minimum cell size of 10: the
    // map (kept between views) no longer shows where they are.
    let in_it: Vec<&String> = by_segment
        .iter()
        .filter(|(_, s)| **s == segment)
        .map(|(id, _)| id)
        .collect();
    assert!(in_it.len() > 9, "{in_it:?}");
    for id in &in_it[..in_it.len() - 9] {
        withdraw(&app, id, "segmentation").await;
    }
    // (A second segment may be withheld with it, so that the total does not give it away.)
    let after = centres().await;
    assert!(!after.contains(&segment.to_string()), "{after:?}");
    assert!(!after.is_empty() && after.len() < 3, "{after:?}");
}
