//! Fairness audits: stored after every run (CLI and background), served as JSON, CSV and a
//! printable page with small counts suppressed, and the publish gate with its written
//! compliance override.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, Pages, TestApp, poll, spawn_app, spawn_app_with, stdout, texts};
use crate::segmentation::segment;

/// The demo data set (realistic, seeded) with `n` customers; with `zone_is_ethnicity` every
/// customer also gets an ordinary attribute `zone` equal to their ethnicity: an undeclared
/// perfect proxy, so a segmentation on it fails the audit.
pub fn load_demo(app: &TestApp, n: usize, zone_is_ethnicity: bool) {
    let policy = &app.policy;
    let options = fairseg::demo::options(policy, n, 7, fairseg::db::now().date());
    let mut data = fairseg::demo::generate(&options);
    if zone_is_ethnicity {
        for c in &mut data.customers {
            let e = c.protected["ethnicity"].clone();
            c.attributes.insert("zone".into(), e);
        }
    }
    fairseg::app::demo::load(
        &app.db,
        &data,
        &fairseg::startup::pseudonymizer(&app.db).unwrap(),
        &fairseg::trail::Actor::system(),
        &policy.version,
    )
    .unwrap();
    if zone_is_ethnicity {
        app.sql(
            "INSERT INTO attribute_columns (name, kind, protected, first_seen_at, updated_at) \
             VALUES ('zone', 'category', FALSE, '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
        );
    }
}

fn detail(entry: &Value) -> Value {
    serde_json::from_str(entry["detail"].as_str().unwrap()).unwrap()
}

fn assert_no_small_count(table: &Value, min: u64) {
    for row in table["counts"].as_array().unwrap() {
        for c in row.as_array().unwrap() {
            if let Some(c) = c.as_u64() {
                assert!(c == 0 || c >= min, "count {c} below {min} left the server");
            }
        }
    }
    for c in table["group_totals"].as_array().unwrap() {
        if let Some(c) = c.as_u64() {
            assert!(c == 0 || c >= min, "group total {c} below {min}");
        }
    }
}

#[tokio::test]
async fn a_cli_run_is_audited_with_every_figure_the_issue_lists_and_small_cells_suppressed() {
    let app = spawn_app().await;
    load_demo(&app, 2500, false);
    let run = segment(
        &app,
        &[
            "--algorithm",
            "kmeans",
            "--k",
            "4",
            "--features",
            "monetary,frequency,recency_days,home_store",
        ],
    );
    let run_id = run["run_id"].as_i64().unwrap();
    let audit_id = run["audit"]["id"]
        .as_i64()
        .expect("segment reports its audit");
    assert_eq!(run["status"], "audited");

    let (status, a) = app
        .get_json("analyst", &format!("/api/v1/audits/{audit_id}"))
        .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["run_id"], run_id);
    for key in ["verdict", "reason", "proxies", "attributes", "members"] {
        assert!(!a[key].is_null(), "missing {key}");
    }
    let attributes = a["attributes"].as_array().unwrap();
    let names: Vec<&str> = attributes
        .iter()
        .map(|x| x["attribute"].as_str().unwrap())
        .collect();
    for expected in [
        "age",
        "sex",
        "ethnicity",
        "marital_status",
        "ethnicity × sex",
    ] {
        assert!(names.contains(&expected), "{expected} audited: {names:?}");
    }
    let min = u64::from(app.policy.fairness.min_cell_size);
    let mut suppressed = 0;
    for x in attributes {
        for key in [
            "attribute",
            "groups",
            "segments",
            "table",
            "chi_square",
            "dof",
            "p_value",
            "p_value_adjusted",
            "cramers_v",
            "cramers_v_corrected",
            "verdict",
            "reason",
        ] {
            assert!(x.get(key).is_some(), "{key} in {}", x["attribute"]);
        }
        assert_no_small_count(&x["table"], min);
        suppressed += x["table"]["counts"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .filter(|c| c.is_null())
            .count();
    }
    assert!(
        suppressed > 0,
        "some small cells (e.g. sex = diverse) are suppressed"
    );
    // The planted proxy shows up, through the feature the run used.
    let proxy = a["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["feature"] == "home_store" && p["attribute"] == "ethnicity")
        .expect("home_store is checked against ethnicity");
    assert_eq!(proxy["flagged"], true, "{proxy}");
    assert!(a["reason"].as_str().unwrap().contains("home_store"));

    // The CLI prints the stored audit, as JSON and as CSV, without auditing again.
    let out = app.cli(&["audit", &run_id.to_string(), "--json"]);
    let cli: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(cli["id"], audit_id);
    let out = app.cli(&["audit", &run_id.to_string(), "--csv"]);
    let csv = stdout(&out);
    assert!(csv.starts_with("section,attribute,segment,group,feature,measure,value,suppressed"));
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let mut primary = 0;
    for record in reader.records() {
        let r = record.unwrap();
        if &r[0] == "cell" {
            if r[6].is_empty() {
                assert!(!r[7].is_empty(), "an empty count says why");
                primary += 1;
            } else {
                let c: u64 = r[6].parse().unwrap();
                assert!(c == 0 || c >= min, "CSV count {c}");
            }
        }
    }
    assert!(primary > 0);
    let (_, api_csv) = (
        0,
        app.api(
            "compliance",
            Method::GET,
            &format!("/api/v1/audits/{audit_id}?format=csv"),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap(),
    );
    assert_eq!(api_csv, csv);
    let trail = app
        .trail(&format!("subject=run:{run_id}&action=audit."))
        .await;
    assert_eq!(trail[0]["action"], "audit.completed");
    assert_eq!(detail(&trail[0])["audit_id"], audit_id);

    // The page marks suppressed cells and never shows a small count.
    let client = app.sign_in("compliance").await;
    let html = client.page(app.url(&format!("/audits/{audit_id}"))).await;
    let cells = texts(&html, "table.contingency td");
    assert!(cells.iter().any(|c| c == &format!("< {min}")));
    // A small count is protected by hiding others, often large ones: those cells say why.
    let doc = scraper::Html::parse_document(&html);
    let hidden = scraper::Selector::parse("table.contingency td.suppressed").unwrap();
    let complementary: Vec<_> = doc
        .select(&hidden)
        .filter(|td| td.text().collect::<String>().trim() == "hidden")
        .collect();
    assert!(
        !complementary.is_empty(),
        "complementary cells are marked 'hidden'"
    );
    for td in complementary {
        assert_eq!(
            td.value().attr("title"),
            Some("hidden so that a small count elsewhere cannot be worked out from the totals")
        );
    }
    assert!(!cells.iter().any(|c| c == "suppressed"));
    for c in cells {
        if let Ok(n) = c.parse::<u64>() {
            assert!(n == 0 || n >= min, "page shows count {n}");
        }
    }
    assert!(
        !texts(&html, "svg.representation circle.ratio").is_empty()
            || html.contains("circle class=\"ratio\"")
    );
    assert!(
        texts(&html, "#proxies tr.flagged td")
            .iter()
            .any(|t| t == "Home store")
    );
    // And the history lists it.
    let (_, list) = app.get_json("compliance", "/api/v1/audits").await;
    assert_eq!(list[0]["id"], audit_id);
}

#[tokio::test]
async fn a_background_run_is_audited_when_it_finishes() {
    let app = spawn_app_with(|s| s.jobs.workers = 0).await;
    load_demo(&app, 800, false);
    // The server's own worker, started the way `startup::app_state` starts it.
    let jobs = fairseg::app::jobs::Jobs::start(
        app.db.clone(),
        app.policy.clone(),
        fairseg::config::JobSettings::default(),
        fairseg::startup::after_segmentation_run,
    )
    .unwrap();
    let request = fairseg::segmentation::settings::RunRequest {
        algorithm: "kmeans".into(),
        features: vec!["monetary".into(), "frequency".into()],
        k: Some(3),
        ..Default::default()
    };
    let id = fairseg::app::runs::create(
        &app.db,
        &app.policy,
        &fairseg::trail::Actor::system(),
        &request,
    )
    .unwrap();
    jobs.submit(id);
    let audits = poll(std::time::Duration::from_secs(30), || async {
        let (_, list) = app
            .get_json("analyst", &format!("/api/v1/audits?run_id={id}"))
            .await;
        list.as_array()
            .is_some_and(|l| !l.is_empty())
            .then_some(list)
    })
    .await
    .unwrap_or(Value::Null);
    let run = app
        .db
        .read(|c| fairseg::db::segmentation::run(c, id))
        .unwrap()
        .unwrap();
    assert_eq!(
        audits[0]["run_id"], id,
        "the background run was audited: {} {:?}",
        run.status, run.error
    );
    let status = app
        .db
        .read(|c| fairseg::db::segmentation::run(c, id))
        .unwrap()
        .unwrap()
        .status;
    assert_eq!(status.as_str(), "audited");
}

#[tokio::test]
async fn a_failing_run_is_published_only_after_compliance_overrides_it_in_writing() {
    let app = spawn_app().await;
    load_demo(&app, 1500, true);
    let run = segment(
        &app,
        &["--algorithm", "kmeans", "--k", "5", "--features", "zone"],
    );
    let run_id = run["run_id"].as_i64().unwrap();
    let audit_id = run["audit"]["id"].as_i64().unwrap();
    assert_eq!(run["audit"]["verdict"], "fail", "{}", run["audit"]);

    // The gate refuses, through the API and the CLI.
    let publish = format!("/api/v1/segmentations/{run_id}/publish");
    let body = app
        .api("analyst", Method::POST, &publish)
        .expecting(409)
        .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("override")
    );
    let out = app.cli(&["publish", &run_id.to_string()]);
    assert!(!out.status.success());

    // Only compliance may override, and only with a written justification.
    let over = format!("/api/v1/audits/{audit_id}/override");
    let justification = "Zones are delivery areas; the offer is identical in every zone, reviewed with legal on 2026-11-24.";
    app.api("analyst", Method::POST, &over)
        .json(&json!({"justification": justification}))
        .expecting(403)
        .await;
    let body = app
        .api("compliance", Method::POST, &over)
        .json(&json!({"justification": "ok"}))
        .expecting(400)
        .await;
    assert_eq!(body["error"]["field"], "justification");
    // Through the form, as a compliance officer would.
    let client = app.sign_in("compliance").await;
    let page = client.page(app.url(&format!("/audits/{audit_id}"))).await;
    assert!(
        page.contains("id=\"justification\""),
        "compliance sees the override form"
    );
    // Too short through the form: the report again with the reason on it, not in the address.
    let r = client
        .post_form(
            app.url(&format!("/audits/{audit_id}/override")),
            &page,
            &[("justification", "too short"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(r.status(), 409);
    assert!(r.headers().get("location").is_none());
    let html = r.text().await.unwrap();
    assert!(texts(&html, "p.error")[0].contains("20"), "{html}");
    assert!(
        app.trail(&format!("subject=run:{run_id}&action=audit.overridden"))
            .await
            .is_empty()
    );
    let r = client
        .post_form(
            app.url(&format!("/audits/{audit_id}/override")),
            &page,
            &[("justification", justification), ("confirm", "yes")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let trail = app
        .trail(&format!("subject=run:{run_id}&action=audit.overridden"))
        .await;
    assert_eq!(trail[0]["actor"], "compliance@example.test");
    assert_eq!(detail(&trail[0])["justification"], justification);
    // The verdict box now says who overrode and that the run may be published, and by whom;
    // the form is gone (an override is recorded once).
    let page = client.page(app.url(&format!("/audits/{audit_id}"))).await;
    let note = texts(&page, "#override-note").join(" ");
    assert!(
        note.contains("Overridden by compliance@example.test on ")
            && note.contains(": publishable"),
        "{note}"
    );
    assert!(
        note.contains("(analyst) may publish run"),
        "who may publish next: {note}"
    );
    assert!(
        texts(&page, "#gate").is_empty(),
        "no 'cannot be published' beside the override"
    );
    assert!(
        !page.contains("id=\"justification\""),
        "the override form is gone"
    );
    let sign_off = texts(&page, "#sign-off dd").join(" | ");
    assert!(sign_off.contains(justification), "{sign_off}");
    assert!(sign_off.contains(&app.policy.version), "{sign_off}");

    // Now the run publishes, and the override is printed on the report.
    let r = app
        .api("analyst", Method::POST, &publish)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let p: Value = r.json().await.unwrap();
    assert!(p["override_id"].is_i64());
    let trail = app
        .trail(&format!(
            "subject=run:{run_id}&action=segmentation.published"
        ))
        .await;
    assert_eq!(detail(&trail[0])["audit_id"], audit_id);
    let html = client.page(app.url(&format!("/audits/{audit_id}"))).await;
    assert!(texts(&html, "#overrides blockquote p").contains(&justification.to_string()));
    assert_eq!(texts(&html, "#run-status"), ["published (override)"]);
    // The run's own page and the run list say the same, never plain "published".
    let analyst = app.sign_in("analyst").await;
    let run_page = analyst
        .page(app.url(&format!("/segmentations/{run_id}")))
        .await;
    assert_eq!(texts(&run_page, "#run-status"), ["published (override)"]);
    let (_, list) = app.get_json("analyst", "/api/v1/segmentations").await;
    let listed = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == run_id)
        .unwrap();
    assert_eq!(listed["published_on_override"], true, "{listed}");
    let (_, a) = app
        .get_json("compliance", &format!("/api/v1/audits/{audit_id}"))
        .await;
    assert_eq!(a["overrides"][0]["justification"], justification);
    assert_eq!(a["run_status"], "published");

    // A second run that passes retires the first when published; the comparison shows both.
    let second = segment(
        &app,
        &[
            "--algorithm",
            "kmeans",
            "--k",
            "3",
            "--features",
            "monetary,frequency",
        ],
    );
    let second_id = second["run_id"].as_i64().unwrap();
    assert!(
        ["pass", "warn"].contains(&second["audit"]["verdict"].as_str().unwrap()),
        "{}",
        second["audit"]
    );
    let p: Value = app.cli_json(&["publish", &second_id.to_string(), "--json"]);
    assert_eq!(p["retired_run_id"], run_id);
    let compare = client
        .page(app.url(&format!(
            "/audits/{}/compare",
            second["audit"]["id"].as_i64().unwrap()
        )))
        .await;
    assert!(compare.contains(&format!("Audit {audit_id}, run {run_id}")));
}

#[tokio::test]
async fn an_audit_that_passed_needs_no_override_and_marketing_cannot_read_audits() {
    let app = spawn_app().await;
    load_demo(&app, 600, false);
    let run = segment(
        &app,
        &[
            "--algorithm",
            "kmeans",
            "--k",
            "3",
            "--features",
            "monetary",
        ],
    );
    let audit_id = run["audit"]["id"].as_i64().unwrap();
    for path in [
        "/api/v1/audits".to_string(),
        format!("/api/v1/audits/{audit_id}"),
        format!("/api/v1/audits/{audit_id}?format=csv"),
    ] {
        app.api("marketing", Method::GET, &path)
            .expecting(403)
            .await;
    }
    let client = app.sign_in("marketing").await;
    let r = client
        .get(app.url(&format!("/audits/{audit_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let home = client.page(app.url("/")).await;
    assert!(
        !home.contains("href=\"/audits\""),
        "no Audits link for marketing"
    );
    if run["audit"]["verdict"] == "pass" || run["audit"]["verdict"] == "warn" {
        app.api(
            "compliance",
            Method::POST,
            &format!("/api/v1/audits/{audit_id}/override"),
        )
        .json(&json!({"justification": "There is nothing wrong with this audit at all."}))
        .expecting(409)
        .await;
    }
}

#[tokio::test]
async fn no_favourable_segment_is_a_headline_caveat_and_a_stale_audit_offers_audit_again() {
    let app = spawn_app().await;
    // Enough consented members that the intersections can be judged (10 per cell).
    load_demo(&app, 1500, false);
    let run = segment(
        &app,
        &[
            "--algorithm",
            "kmeans",
            "--k",
            "3",
            "--features",
            "monetary,frequency",
        ],
    );
    let run_id = run["run_id"].as_i64().unwrap();
    let audit_id = run["audit"]["id"].as_i64().unwrap();
    let (_, a) = app
        .get_json("compliance", &format!("/api/v1/audits/{audit_id}"))
        .await;
    assert_eq!(
        a["caveats"],
        json!(["no_favourable_treatment"]),
        "{}",
        a["caveats"]
    );
    let client = app.sign_in("compliance").await;
    let page = |id: i64| {
        let client = client.clone();
        let url = app.url(&format!("/audits/{id}"));
        async move { client.page(url).await }
    };
    let html = page(audit_id).await;
    let caveat = texts(&html, "#verdict .caveat").join(" ");
    assert!(
        caveat.contains("No favourable treatment was tested"),
        "{html}"
    );
    assert!(texts(&html, "#stale").is_empty());

    // Marketing marks a segment of the published run favourable: the audit is stale and every
    // reader of audits is offered "Audit again".
    if !["pass", "warn"].contains(&run["audit"]["verdict"].as_str().unwrap()) {
        panic!("this run should pass the gate: {}", run["audit"]);
    }
    let out = app.cli(&["publish", &run_id.to_string()]);
    assert!(out.status.success(), "{}", crate::helpers::stderr(&out));
    let r = app
        .api(
            "marketing",
            Method::PUT,
            &format!("/api/v1/segmentations/{run_id}/segments/0/strategy"),
        )
        .json(&json!({"channel": "email", "offer": "10% off", "service_level": "priority", "favourable": true}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let html = page(audit_id).await;
    assert!(!texts(&html, "#stale").is_empty(), "stale notice");
    let again = texts(&html, "#stale form.reaudit button");
    assert_eq!(again, ["Audit again"]);
    let r = client
        .post_form(
            app.url(&format!("/segmentations/{run_id}/audit")),
            &html,
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let new_id: i64 = location
        .trim_start_matches("/audits/")
        .split('?')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(new_id, audit_id);
    let (_, b) = app
        .get_json("compliance", &format!("/api/v1/audits/{new_id}"))
        .await;
    assert_eq!(b["caveats"], json!([]));
    assert!(
        b["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["four_fifths"].is_object()),
        "the four-fifths rule runs once a segment is favourable"
    );
    assert!(texts(&page(new_id).await, "#verdict .caveat").is_empty());
}

#[tokio::test]
async fn every_effect_size_in_a_report_lies_in_its_interval_and_proxies_set_the_verdict() {
    let app = spawn_app().await;
    load_demo(&app, 1500, false);
    // home_store is the demo's planted, undeclared proxy for ethnicity.
    let run = segment(
        &app,
        &[
            "--algorithm",
            "kmeans",
            "--k",
            "4",
            "--features",
            "monetary,frequency,home_store",
        ],
    );
    let audit = &run["audit"];
    assert_eq!(audit["verdict"], "fail", "{audit}");
    let reason = audit["reason"].as_str().unwrap();
    assert!(
        reason.contains("home_store") && reason.contains("ethnicity"),
        "{reason}"
    );
    let (_, a) = app
        .get_json("compliance", &format!("/api/v1/audits/{}", audit["id"]))
        .await;
    let proxy = a["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["feature"] == "home_store" && p["attribute"] == "ethnicity")
        .unwrap();
    assert_eq!(proxy["flagged"], true);
    assert_eq!(proxy["verdict"], "fail");
    for x in a["attributes"].as_array().unwrap() {
        let (Some(v), Some(ci)) = (
            x["cramers_v_corrected"].as_f64(),
            x["cramers_v_ci"].as_object(),
        ) else {
            continue;
        };
        let (lo, hi) = (ci["lower"].as_f64().unwrap(), ci["upper"].as_f64().unwrap());
        assert!(
            lo <= v && v <= hi,
            "{}: V = {v} outside {lo}–{hi}",
            x["attribute"]
        );
    }
    // The gate holds.
    let out = app.cli(&["publish", &run["run_id"].to_string()]);
    assert!(!out.status.success());
}

#[tokio::test]
async fn an_audit_given_the_runs_own_feature_values_sees_what_it_would_read_from_storage() {
    use fairseg::app::audits::{load_input, load_input_with};
    let app = spawn_app().await;
    load_demo(&app, 1200, false);
    // With and without customers excluded for missing values (consumers have no company size).
    for features in [
        vec!["monetary", "frequency", "home_store", "price_sensitivity"],
        vec!["monetary", "company_size", "industry"],
    ] {
        let request = fairseg::segmentation::settings::RunRequest {
            algorithm: "kmeans".into(),
            features: features.iter().map(|f| f.to_string()).collect(),
            k: Some(3),
            ..Default::default()
        };
        let actor = fairseg::trail::Actor::system();
        let (id, outcome) = crate::helpers::execute_here(&app, &actor, &request);
        let outcome = outcome.unwrap();
        let run = app
            .db
            .read(|c| fairseg::db::segmentation::run(c, id))
            .unwrap()
            .unwrap();
        let members = app
            .db
            .read(|c| fairseg::db::segmentation::memberships(c, id))
            .unwrap();
        let ids: Vec<i64> = members.iter().map(|&(c, _)| c).collect();
        assert_eq!(outcome.features.ids, ids, "{features:?}: members in order");
        assert_eq!(outcome.features.columns.len(), features.len());
        let mut conn = app.db.conn().unwrap();
        let stored = load_input(&mut conn, &app.policy, &run).unwrap();
        assert!(
            !stored.features.is_empty(),
            "{features:?}: proxies measured"
        );
        let known = load_input_with(&mut conn, &app.policy, &run, Some(&outcome.features)).unwrap();
        assert_eq!(known.membership, stored.membership, "{features:?}");
        assert_eq!(known.attributes, stored.attributes, "{features:?}");
        assert_eq!(known.features.len(), stored.features.len(), "{features:?}");
        for (k, s) in known.features.iter().zip(&stored.features) {
            assert_eq!(k.name, s.name, "{features:?}");
            if let (
                fairseg::fairness::audit::FeatureValues::Numeric(a),
                fairseg::fairness::audit::FeatureValues::Numeric(b),
            ) = (&k.values, &s.values)
            {
                let d: Vec<_> = a
                    .iter()
                    .zip(b)
                    .enumerate()
                    .filter(|(_, (x, y))| x != y)
                    .take(5)
                    .collect();
                assert!(d.is_empty(), "{}: {d:?}", k.name);
            }
            assert!(
                k.values == s.values,
                "{features:?}: values of {} differ",
                k.name
            );
        }
        assert_eq!(known, stored, "{features:?}");
        // Values for other members are not used: the audit reads storage instead.
        let mut other = outcome.features.clone();
        other.ids.pop();
        let fallback = load_input_with(&mut conn, &app.policy, &run, Some(&other)).unwrap();
        assert_eq!(fallback, stored, "{features:?}");
    }
}

#[tokio::test]
async fn an_audit_right_after_its_run_counts_only_the_members_still_stored() {
    use fairseg::app::audits::audit_run_with;
    let app = spawn_app().await;
    load_demo(&app, 600, false);
    let request = fairseg::segmentation::settings::RunRequest {
        algorithm: "kmeans".into(),
        features: ["monetary", "frequency", "price_sensitivity"]
            .iter()
            .map(|f| f.to_string())
            .collect(),
        k: Some(3),
        ..Default::default()
    };
    let actor = fairseg::trail::Actor::system();
    let (id, outcome) = crate::helpers::execute_here(&app, &actor, &request);
    let outcome = outcome.unwrap();
    // Given straight after the run, the audit audits the run's own members.
    let first = audit_run_with(&app.db, &app.policy, &actor, id, Some(&outcome.features)).unwrap();
    assert_eq!(first.report.members as usize, outcome.features.ids.len());
    // A member erased between the run and its audit is not audited.
    let erased: String = app
        .db
        .read(|c| fairseg::db::segmentation::members_with_ids(c, id, None))
        .unwrap()[0]
        .1
        .clone();
    let pseudonyms = fairseg::startup::pseudonymizer(&app.db).unwrap();
    fairseg::app::dsr::erase(&app.db, &pseudonyms, &app.policy.version, &actor, &erased).unwrap();
    let after = audit_run_with(&app.db, &app.policy, &actor, id, Some(&outcome.features)).unwrap();
    assert_eq!(
        after.report.members as usize,
        outcome.features.ids.len() - 1
    );
    let stored = fairseg::app::audits::audit_run(&app.db, &app.policy, &actor, id).unwrap();
    assert_eq!(after.report, stored.report);
}

#[tokio::test]
async fn the_audit_after_a_run_counts_the_customers_on_file_when_it_audits() {
    use fairseg::app::audits::{audit_after_run, audit_run};
    let app = spawn_app().await;
    load_demo(&app, 600, false);
    let request = fairseg::segmentation::settings::RunRequest {
        algorithm: "kmeans".into(),
        features: ["monetary", "frequency"]
            .iter()
            .map(|f| f.to_string())
            .collect(),
        k: Some(3),
        ..Default::default()
    };
    let actor = fairseg::trail::Actor::system();
    let (id, outcome) = crate::helpers::execute_here(&app, &actor, &request);
    let outcome = outcome.unwrap();
    // Straight after the run, the audit is the one a later audit of the stored run makes.
    let first = audit_after_run(&app.db, &app.policy, &actor, &outcome).unwrap();
    let stored = audit_run(&app.db, &app.policy, &actor, id).unwrap();
    assert_eq!(first.report, stored.report);
    // A customer outside the run erased between the run and its audit is no longer on file:
    // the consent-selection test of the audit leaves them out, as a later audit does.
    let everyone = app.db.read(fairseg::db::consent::customer_ids).unwrap();
    let outsider = *everyone
        .iter()
        .find(|c| !outcome.features.ids.contains(c))
        .expect("some demo customers are not in the run");
    let external = app
        .db
        .read(|c| fairseg::db::disclosures::external_ids(c, &[outsider]))
        .unwrap()
        .remove(&outsider)
        .unwrap();
    let pseudonyms = fairseg::startup::pseudonymizer(&app.db).unwrap();
    fairseg::app::dsr::erase(&app.db, &pseudonyms, &app.policy.version, &actor, &external).unwrap();
    let after = audit_after_run(&app.db, &app.policy, &actor, &outcome).unwrap();
    let stored = audit_run(&app.db, &app.policy, &actor, id).unwrap();
    assert_eq!(after.report, stored.report);
    assert_ne!(after.report, first.report);
    // A member of the run erased before its audit is no longer among the members audited
    // either: the audit after the run reads them again, as a later audit does.
    let member = outcome.features.ids[0];
    let external = app
        .db
        .read(|c| fairseg::db::disclosures::external_ids(c, &[member]))
        .unwrap()
        .remove(&member)
        .unwrap();
    fairseg::app::dsr::erase(&app.db, &pseudonyms, &app.policy.version, &actor, &external).unwrap();
    let without_member = audit_after_run(&app.db, &app.policy, &actor, &outcome).unwrap();
    let stored = audit_run(&app.db, &app.policy, &actor, id).unwrap();
    assert_eq!(without_member.report, stored.report);
    assert_ne!(without_member.report, after.report);
}

#[tokio::test]
async fn publish_override_and_retention_forms_ask_for_a_ticked_confirmation() {
    let app = spawn_app().await;
    load_demo(&app, 600, false);
    let run = segment(
        &app,
        &[
            "--algorithm",
            "kmeans",
            "--k",
            "3",
            "--features",
            "monetary,frequency",
        ],
    );
    let run_id = run["run_id"].as_i64().unwrap();
    let audit_id = run["audit"]["id"].as_i64().unwrap();
    // The report's publish form carries a required box and a button styled as destructive.
    let analyst = app.sign_in("analyst").await;
    let page = analyst.page(app.url(&format!("/audits/{audit_id}"))).await;
    if run["audit"]["verdict"] == "pass" || run["audit"]["verdict"] == "warn" {
        assert_eq!(
            texts(&page, "form.publish.confirm button.danger").len(),
            1,
            "{page}"
        );
        assert!(page.contains(r#"name="confirm" value="yes" required id="confirm-publish""#));
    }
    // Without the box ticked nothing is published, whatever the verdict.
    let r = analyst
        .post_form(
            app.url(&format!("/segmentations/{run_id}/publish")),
            &page,
            &[],
        )
        .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("tick the confirmation box")
    );
    assert!(
        app.trail(&format!(
            "subject=run:{run_id}&action=segmentation.published"
        ))
        .await
        .is_empty()
    );
    // Override: refused without the box, even with a long justification.
    let compliance = app.sign_in("compliance").await;
    let page = compliance
        .page(app.url(&format!("/audits/{audit_id}")))
        .await;
    let r = compliance
        .post_form(
            app.url(&format!("/audits/{audit_id}/override")),
            &page,
            &[(
                "justification",
                "A justification long enough to be accepted.",
            )],
        )
        .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    assert!(app.trail("action=audit.overridden").await.is_empty());
    // Retention: preview needs no box; apply does, and its form says so.
    let page = compliance.page(app.url("/dsr")).await;
    assert!(page.contains(r#"name="confirm" value="yes" required id="confirm-retention""#));
    assert_eq!(texts(&page, "#retention-apply button.danger").len(), 1);
    let r = compliance
        .post_form(app.url("/dsr/retention"), &page, &[("action", "apply")])
        .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    assert!(app.trail("action=retention.applied").await.is_empty());
    // Ticked, it applies (the trail query above would have seen it).
    let r = compliance
        .post_form(
            app.url("/dsr/retention"),
            &page,
            &[("action", "apply"), ("confirm", "yes")],
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(app.trail("action=retention.applied").await.len(), 1);
}
