//! Consent-selection bias: with every audit and on the consent page, whether the consented
//! population differs from all customers on each protected attribute.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{Answer, Pages, TestApp, spawn_app, stderr, texts};

/// The demo data set, with two in three women's segmentation grants left out: the consented
/// population then under-represents women.
pub(crate) fn load_biased_demo(app: &TestApp, n: usize) {
    let policy = &app.policy;
    let options = fairseg::demo::options(policy, n, 11, fairseg::db::now().date());
    let mut data = fairseg::demo::generate(&options);
    let female: Vec<bool> = data
        .customers
        .iter()
        .map(|c| c.protected.get("sex").and_then(Value::as_str) == Some("female"))
        .collect();
    data.consents
        .retain(|e| !(e.purpose == "segmentation" && female[e.customer] && e.customer % 3 != 0));
    fairseg::app::demo::load(
        &app.db,
        &data,
        &fairseg::startup::pseudonymizer(&app.db).unwrap(),
        &fairseg::trail::Actor::system(),
        &policy.version,
    )
    .unwrap();
}

fn segment(app: &TestApp) -> Value {
    app.cli_json(&[
        "segment",
        "--json",
        "--algorithm",
        "kmeans",
        "--k",
        "3",
        "--features",
        "monetary,frequency,recency_days",
    ])
}

#[tokio::test]
async fn an_audit_says_the_consented_population_under_represents_women() {
    let app = spawn_app().await;
    load_biased_demo(&app, 1500);
    let run = segment(&app);
    let audit_id = run["audit"]["id"].as_i64().unwrap();
    let (status, a) = app
        .get_json("compliance", &format!("/api/v1/audits/{audit_id}"))
        .await;
    assert_eq!(status, 200, "{a}");
    let s = &a["consent_selection"];
    assert_eq!(s["customers"], 1500, "{s}");
    assert_eq!(
        s["consented"], a["members"],
        "the audited population is the consented one"
    );
    let sex = s["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["attribute"] == "sex")
        .expect("sex is tested");
    assert_eq!(sex["significant"], true, "{sex}");
    assert_eq!(sex["most_distorted"], "female", "{sex}");
    let headline = s["headline"].as_str().unwrap();
    assert!(
        headline.contains("under-represents sex female"),
        "{headline}"
    );
    // No count below the minimum cell size leaves the server.
    let min = u64::from(app.policy.fairness.min_cell_size);
    for x in s["attributes"].as_array().unwrap() {
        for row in x["table"]["counts"].as_array().unwrap() {
            for c in row.as_array().unwrap().iter().filter_map(Value::as_u64) {
                assert!(c == 0 || c >= min, "count {c} in {}", x["attribute"]);
            }
        }
        for c in x["table"]["group_totals"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
        {
            assert!(c == 0 || c >= min, "group total {c} in {}", x["attribute"]);
        }
        for g in x["groups"].as_array().unwrap() {
            if g["suppressed"] == true {
                assert!(g["relative_difference"].is_null(), "{g}");
            }
        }
    }

    // The line in the report page.
    let client = app.sign_in("compliance").await;
    let html = client.page(app.url(&format!("/audits/{audit_id}"))).await;
    let line = texts(&html, "#consent-selection p").join(" ");
    assert!(line.contains("under-represents sex female"), "{line}");
}

#[tokio::test]
async fn the_consent_page_tracks_selection_bias_only_for_roles_that_read_audits() {
    let app = spawn_app().await;
    load_biased_demo(&app, 800);
    let compliance = app.sign_in("compliance").await;
    let html = compliance.page(app.url("/consent")).await;
    let headline = texts(&html, "#selection-headline").join(" ");
    assert!(
        headline.contains("under-represents sex female"),
        "{headline}"
    );
    assert!(
        texts(&html, "#consent-selection em")
            .join(" ")
            .contains("Art. 9(2)(g)"),
        "the legal basis is shown"
    );
    // admin records consent but may not read audits: no protected figures.
    let admin = app.sign_in("admin").await;
    let html = admin.page(app.url("/consent")).await;
    assert!(texts(&html, "#consent-selection").is_empty());
    app.api("admin", Method::GET, "/api/v1/consent/selection")
        .expecting(403)
        .await;
    let (status, body) = app
        .get_json("compliance", "/api/v1/consent/selection?months=3")
        .await;
    assert_eq!(status, 200, "{body}");
    let reports = body["reports"].as_array().unwrap();
    assert_eq!(reports.len(), body["at"].as_array().unwrap().len());
    let last = reports.last().unwrap();
    assert_eq!(last["customers"], 800);
    // The history is kept between views; a customer added since is counted at once.
    app.add_customer("C-NEW", "{}");
    let (_, body) = app
        .get_json("compliance", "/api/v1/consent/selection?months=3")
        .await;
    assert_eq!(
        body["reports"].as_array().unwrap().last().unwrap()["customers"],
        801
    );
}

#[tokio::test]
async fn a_policy_that_switches_the_test_off_leaves_it_out_of_audits_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read_to_string(crate::helpers::policies_dir().join("policy.toml"))
        .unwrap()
        .replace(
            "[consent_selection]\nenabled = true",
            "[consent_selection]\nenabled = false",
        );
    assert!(source.contains("enabled = false"));
    std::fs::write(dir.path().join("policy.toml"), source).unwrap();
    let policies = dir.path().to_path_buf();
    let app = crate::helpers::spawn_app_with(|s| s.policies_dir = policies).await;
    load_biased_demo(&app, 600);
    let out = app.cli_with(
        &[
            "segment",
            "--json",
            "--algorithm",
            "kmeans",
            "--k",
            "3",
            "--features",
            "monetary,frequency,recency_days",
        ],
        &[("FAIRSEG_POLICIES", dir.path().to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    let audit_id = run["audit"]["id"].as_i64().unwrap();
    let (_, a) = app
        .get_json("compliance", &format!("/api/v1/audits/{audit_id}"))
        .await;
    assert!(
        a["consent_selection"].is_null(),
        "{}",
        a["consent_selection"]
    );
    let (status, _) = app
        .get_json("compliance", "/api/v1/consent/selection")
        .await;
    assert_eq!(status, 404);
}
