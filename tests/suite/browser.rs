//! The pages in a real browser: headless Chromium driven through chromedriver. Every test that
//! drives a browser lives in this module, so that scripts/test can run them once, on SQLite,
//! and skip `browser::` on the PostgreSQL pass. Screenshots of each page land in
//! target/screenshots/ for review.

use std::path::PathBuf;

use fantoccini::Locator;
use reqwest::Method;
use serde_json::json;

use crate::helpers::webdriver::PATIENCE;
use crate::helpers::{Answer, Browser, Pages, TestApp, eventually, spawn_app};

#[tokio::test]
async fn browser_compliance_and_marketing_see_their_own_app() {
    let app = spawn_app().await;
    let client = Browser::signed_in(&app, "compliance").await;
    client.wait_for("table caption").await;
    assert_eq!(client.path().await, "/trail");
    let nav = client.nav_labels().await;
    assert!(nav.contains(&"Trail".to_string()), "{nav:?}");
    assert!(!nav.contains(&"Users".to_string()), "{nav:?}");
    client.screenshot("trail-compliance").await;

    client.click_link("Verify the chain").await;
    let status = client.wait_text("p[role=status]").await;
    assert!(status.contains("intact"), "{status}");

    // Sign out with the form button: the session ends and pages ask to sign in again.
    client.sign_out().await;
    client.open("/").await;
    assert_eq!(client.path().await, "/signin");

    client.sign_in("marketing").await;
    let heading = client.wait_text("h1").await;
    assert_ne!(heading, "Trail", "marketing may not read the trail");
    client.open("/").await;
    let heading = client.text("h1").await;
    assert_eq!(heading, "Welcome");
    let nav = client.nav_labels().await;
    assert!(!nav.contains(&"Trail".to_string()), "{nav:?}");
    client.screenshot("home-marketing").await;

    client.close().await;
}

#[tokio::test]
async fn browser_compliance_looks_up_exports_and_erases_a_customer() {
    let app = spawn_app().await;
    let pseudonym = app.insert_demo_customer(crate::helpers::DemoCustomer {
        id: "CUST-BROWSER-1",
        attributes: json!({"region": "North"}),
        protected: json!({"sex": "female"}),
        created_at: chrono::Utc::now().naive_utc() - chrono::TimeDelta::days(30),
        transactions: vec![(
            chrono::Utc::now().naive_utc() - chrono::TimeDelta::days(3),
            19.9,
            None,
        )],
        consents: vec![],
    });
    let client = Browser::signed_in(&app, "compliance").await;
    client.wait_for("table caption").await;
    client.click_link("Data requests").await;
    client.wait_for("#customer").await;
    client.fill("#customer", "CUST-BROWSER-1").await;
    client.click("#lookup button").await;
    let found = client.wait_text("#found").await;
    assert!(found.contains(&pseudonym), "{found}");
    client.screenshot("dsr-compliance").await;

    // Export: a download; the page stays, and the request is logged.
    client.click("#export button").await;
    let first = eventually("the export is recorded", PATIENCE, || async {
        let log = app.get_ok("compliance", "/api/v1/dsr").await;
        log["requests"].get(0).cloned()
    })
    .await;
    assert_eq!(first["kind"], "export");

    // Erase: the browser will not submit without the box ticked. The form is invalid and
    // nothing lets it skip validation, so the click cannot have sent it.
    let page_before = client.path().await;
    client.click("#erase button").await;
    let form = client
        .facts(
            "const form = document.querySelector('#erase');
             return {
               valid: form.checkValidity(),
               validated: !form.noValidate && !form.querySelector('button').formNoValidate,
               unticked: document.querySelector('#confirm').matches(':invalid'),
             };",
        )
        .await;
    assert_eq!(
        form,
        json!({"valid": false, "validated": true, "unticked": true}),
        "the erase form can only be sent with the box ticked"
    );
    assert_eq!(client.path().await, page_before);
    assert_eq!(
        app.get_json("compliance", "/api/v1/customers/CUST-BROWSER-1")
            .await
            .0,
        200
    );
    client.click("#confirm").await;
    client.click("#erase button").await;
    let notice = client.wait_text("p[role=status]").await;
    assert!(notice.contains(&pseudonym), "{notice}");
    let kinds = client.text("#requests tbody tr td:nth-child(2)").await;
    assert_eq!(kinds, "erasure");
    assert_eq!(
        app.get_json("compliance", "/api/v1/customers/CUST-BROWSER-1")
            .await
            .0,
        409
    );
    client.close().await;
}

#[tokio::test]
async fn browser_staff_create_a_preference_link_and_the_customer_withdraws() {
    let app = spawn_app().await;
    app.add_customer("CUST-9", "{}");
    let today = chrono::Utc::now().date_naive().to_string();
    app.api("compliance", Method::POST, "/api/v1/consents")
        .json(&json!({"customer_id": "CUST-9", "purpose": "marketing_email", "status": "granted", "recorded_at": today}))
        .expecting(201)
        .await;

    // Staff: look the customer up on the consent page and create a link.
    let client = Browser::signed_in(&app, "compliance").await;
    client.open("/consent").await;
    client.screenshot("consent-coverage").await;
    client.fill("#customer-id", "CUST-9").await;
    client.click("form[action='/consent/lookup'] button").await;
    client
        .wait_for_element(Locator::XPath("//button[text()='Create preference link']"))
        .await
        .click()
        .await
        .unwrap();
    let link = client
        .wait_for("#preference-link")
        .await
        .attr("href")
        .await
        .unwrap()
        .expect("the link has an address");
    client.screenshot("consent-customer").await;
    client.sign_out().await;

    // The customer: open the link, withdraw with one click, see it withdrawn.
    client.goto(&link).await.unwrap();
    let state = client
        .text("li[data-purpose=marketing_email] p.state")
        .await;
    assert!(state.starts_with("You agreed on"), "{state}");
    client
        .click("li[data-purpose=marketing_email] button")
        .await;
    let notice = client.wait_text("p[role=status]").await;
    assert!(notice.starts_with("Done"), "{notice}");
    let state = client
        .text("li[data-purpose=marketing_email] p.state")
        .await;
    assert!(state.starts_with("You withdrew on"), "{state}");
    client.screenshot("preferences-withdrawn").await;
    let consent_state = || async {
        crate::consent::state_of(&app, "CUST-9", "marketing_email").await["state"].clone()
    };
    assert_eq!(consent_state().await, "withdrawn");
    // The page speaks for the company to the customer, and leads nowhere near the staff app.
    let page = client
        .facts(
            "return {
               brand: document.querySelector('.brand').textContent,
               footer: document.querySelector('footer').textContent,
               purpose: document.querySelector('li[data-purpose=marketing_email] h2').textContent,
               staff: document.querySelectorAll('a[href=\"/\"], a[href^=\"/signin\"]').length,
             };",
        )
        .await;
    assert_eq!(page["brand"], "Northwind Retail", "{page}");
    assert!(
        page["footer"]
            .as_str()
            .unwrap()
            .contains("privacy@northwind.example")
            && !page["footer"].as_str().unwrap().contains("sha256"),
        "{page}"
    );
    assert_eq!(
        page["purpose"], "We send you e-mails with offers chosen for you.",
        "{page}"
    );
    assert_eq!(page["staff"], 0, "{page}");
    // The customer changes their mind: one click agrees again.
    client
        .click("li[data-purpose=marketing_email] form[action$='/grant'] button")
        .await;
    // The page before the click already has a status line (the withdrawal's); wait for the
    // answer to the grant itself, not for whatever status element is found first.
    let state = client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::XPath(
            "//li[@data-purpose='marketing_email']//p[contains(@class, 'state') \
             and starts-with(normalize-space(.), 'You agreed on')]",
        ))
        .await;
    client.screenshot("preferences-after-grant").await;
    let state = state.unwrap().text().await.unwrap();
    assert!(state.starts_with("You agreed on"), "{state}");
    let notice = client.text("p[role=status]").await;
    assert!(notice.starts_with("Thank you"), "{notice}");
    client.screenshot("preferences-granted-again").await;
    client.close().await;
    assert_eq!(consent_state().await, "granted");
}

#[tokio::test]
async fn browser_admin_uploads_a_customer_file_and_reads_the_report() {
    let app = spawn_app().await;
    let client = Browser::signed_in(&app, "admin").await;
    client.open("/customers/import").await;
    let nav = client.nav_labels().await;
    assert!(nav.contains(&"Import".to_string()), "{nav:?}");

    let file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imports/customers.csv");
    client.fill("#file", file.to_str().unwrap()).await;
    client
        .click("form[enctype='multipart/form-data'] button[type=submit]")
        .await;
    let imported = client.wait_text("#rows-imported").await;
    assert_eq!(imported, "3");
    let kinds = client.texts("#columns tbody td:nth-child(2)").await;
    assert_eq!(
        kinds,
        ["id", "number", "category", "category", "date", "category"]
    );
    let recent = client.text("#recent tbody").await;
    assert!(recent.contains("customers.csv"), "{recent}");
    client.screenshot("import-admin").await;
    client.close().await;
}

#[tokio::test]
async fn browser_an_analyst_runs_a_segmentation_and_marketing_records_a_strategy() {
    use crate::segmentation::{blob_customers, grant_all, import, publish};
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(30, 21);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation", "marketing_email"]);
    let client = Browser::signed_in(&app, "analyst").await;
    client.open("/segmentations").await;
    assert!(client.nav_labels().await.contains(&"Runs".to_string()));
    // Features are picked from the list of known ones, with their kind; none is ticked for
    // the analyst, and protected attributes cannot be.
    assert_eq!(
        client.count("#features input[name=features]:checked").await,
        0
    );
    let kinds = client.text("#features tbody").await;
    assert!(kinds.contains("number"), "{kinds}");
    // Only the chosen algorithm's fields show (no script: CSS :has()).
    assert!(client.find_css("#k").await.is_displayed().await.unwrap());
    assert!(!client.find_css("#eps").await.is_displayed().await.unwrap());
    client.click("#algorithm option[value=dbscan]").await;
    assert!(client.find_css("#eps").await.is_displayed().await.unwrap());
    assert!(!client.find_css("#k").await.is_displayed().await.unwrap());
    client.screenshot("run-form-dbscan-analyst").await;
    client.click("#algorithm option[value=kmeans]").await;
    client.click("#feature-x").await;
    client.click("#feature-y").await;
    client.find_css("#k").await.clear().await.unwrap();
    client.fill("#k", "3").await;
    client.click("#new-run button[type=submit]").await;
    // The run page follows the run (it refreshes itself) until the segments appear.
    let cards = eventually("the run page shows its segments", PATIENCE, || async {
        let n = client.count("ul.segments li.segment").await;
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(cards, 3, "three segments once the run is done");
    let path = client.path().await;
    let run: i64 = path.rsplit('/').next().unwrap().parse().unwrap();
    let included = client.text("#population tbody tr:first-child td").await;
    assert_eq!(included, "90");
    // The run was audited as soon as it finished; the page says how and links the report.
    let verdict = client.wait_text("#audit strong.verdict").await;
    assert!(
        ["Pass", "Warning", "Fail", "Inconclusive"].contains(&verdict.as_str()),
        "{verdict}"
    );
    assert_eq!(client.count("figure.map svg g.centre").await, 3);
    client.screenshot("segmentation-run-analyst").await;

    publish(&app, run);
    let marketing = Browser::signed_in(&app, "marketing").await;
    marketing.open("/segments").await;
    assert_eq!(marketing.count("li.segment h3").await, 3);
    let viability = marketing.text("#segment-0 table.viability").await;
    for criterion in ["Measurable", "Accessible", "Substantial", "Actionable"] {
        assert!(viability.contains(criterion), "{viability}");
    }
    marketing.fill("#channel-0", "email").await;
    marketing.fill("#offer-0", "Free delivery").await;
    marketing.fill("#service-0", "standard").await;
    marketing.click("#strategy-0 input[name=favourable]").await;
    marketing.click("#strategy-0 button[type=submit]").await;
    let recorded = marketing.wait_text("#strategy-0 p.muted").await;
    assert!(recorded.contains("marketing@example.test"), "{recorded}");
    let offer = marketing
        .find_css("#offer-0")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(offer.as_deref(), Some("Free delivery"));
    marketing.screenshot("segments-dashboard-marketing").await;
    marketing.close().await;
    client.close().await;
}

#[tokio::test]
async fn browser_fairness_report_renders_with_its_chart_and_prints_cleanly() {
    let app = spawn_app().await;
    crate::audits::load_demo(&app, 1200, false);
    let run = crate::segmentation::segment(
        &app,
        &[
            "--algorithm",
            "kmeans",
            "--k",
            "3",
            "--features",
            "monetary,frequency,home_store",
        ],
    );
    let audit_id = run["audit"]["id"].as_i64().unwrap();
    let client = Browser::signed_in(&app, "compliance").await;
    client.open(&format!("/audits/{audit_id}")).await;
    let heading = client.text("h1").await;
    assert!(
        heading.contains(&format!("Fairness audit {audit_id}")),
        "{heading}"
    );
    let facts = client.facts("return {
               charts: document.querySelectorAll('svg.representation').length,
               dots: document.querySelectorAll('svg.representation circle.ratio').length,
               whiskers: document.querySelectorAll('svg.representation line.interval').length,
               width: document.querySelector('svg.representation').getBoundingClientRect().width,
               suppressed: document.querySelectorAll('td.suppressed').length,
               print: [...document.styleSheets].some(s => [...s.cssRules].some(r =>
                 r.media && r.media.mediaText === 'print' &&
                 [...r.cssRules].some(x => x.selectorText && x.selectorText.includes('.audit-report')))),
             };").await;
    assert!(facts["charts"].as_u64().unwrap() >= 4, "{facts}");
    assert!(facts["dots"].as_u64().unwrap() > 0, "{facts}");
    assert!(facts["whiskers"].as_u64().unwrap() > 0, "{facts}");
    assert!(facts["width"].as_f64().unwrap() > 100.0, "{facts}");
    assert!(facts["suppressed"].as_u64().unwrap() > 0, "{facts}");
    assert_eq!(
        facts["print"], true,
        "a print stylesheet for the report: {facts}"
    );
    let flagged = client.text("#proxies tr.flagged td").await;
    assert_eq!(flagged, "Home store");
    // The headline says what a sceptical reader needs first: not a pass, why, and what was not
    // tested.
    let headline = client
        .facts(
            "const box = document.querySelector('#verdict');
             return {
               verdict: box.querySelector('h2 .verdict').textContent.trim(),
               reason: document.querySelector('#verdict-reason').textContent,
               caveat: [...box.querySelectorAll('.caveat')].map(c => c.textContent).join(' '),
               proxy: [...document.querySelectorAll('#proxies tr.flagged')]
                 .map(r => r.textContent).join(' '),
             };",
        )
        .await;
    assert_eq!(headline["verdict"], "Fail", "{headline}");
    let reason = headline["reason"].as_str().unwrap();
    assert!(
        reason.contains("home store")
            && reason.contains("ethnicity")
            && !reason.contains("home_store"),
        "{headline}"
    );
    assert!(
        headline["caveat"]
            .as_str()
            .unwrap()
            .contains("No favourable treatment was tested"),
        "{headline}"
    );
    assert!(
        headline["proxy"].as_str().unwrap().contains("sets fail"),
        "{headline}"
    );
    client.screenshot("audit-report").await;
    // On a phone the report scrolls its wide tables inside their box, not the page.
    client.set_window_size(390, 844).await.unwrap();
    let overflow = client.facts("const w = document.documentElement.clientWidth;
             const wide = [...document.querySelectorAll('body *')]
               .filter(e => e.getBoundingClientRect().right > w + 2 && !e.closest('.table-wrap')
                 && e.parentElement.getBoundingClientRect().right <= w + 2)
               .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + e.getBoundingClientRect().right);
             return {by: document.documentElement.scrollWidth - w, wide};").await;
    client.screenshot("audit-report-390").await;
    assert!(
        overflow["by"].as_f64().unwrap() <= 1.0,
        "page wider than the screen: {overflow}"
    );
    client.set_window_size(1280, 900).await.unwrap();
    client.open("/audits").await;
    assert!(client.nav_labels().await.contains(&"Audits".to_string()));
    client.close().await;
}

#[tokio::test]
async fn kpi_dashboard_charts_and_drift_in_the_browser() {
    let app = spawn_app().await;
    crate::kpi::seeded(&app).await;
    app.api("analyst", Method::POST, "/api/v1/kpi/evaluate")
        .json(&json!({"from": "2025-01-01", "to": "2025-06-30"}))
        .expecting(201)
        .await;
    // And the month under way, which has barely begun.
    app.api("analyst", Method::POST, "/api/v1/kpi/evaluate")
        .json(&json!({}))
        .expecting(201)
        .await;
    let client = Browser::signed_in(&app, "marketing").await;
    client.open("/kpi").await;
    let nav = client.nav_labels().await;
    assert!(nav.contains(&"KPIs".to_string()), "{nav:?}");
    assert_eq!(client.count("table.kpi-glance tbody tr").await, 12);
    // It opens on the newest complete month, not on the one under way.
    assert!(client.text("h2#period").await.starts_with("June 2025"));
    client.screenshot("kpi-overview-marketing").await;
    // The period beside the one before and the same one a year before.
    let heads = client.texts("#kpi-compare thead th").await;
    assert_eq!(heads[1], "June 2025", "{heads:?}");
    assert_eq!(heads[2], "May 2025", "{heads:?}");
    client
        .facts("document.querySelector('#compare-periods').scrollIntoView(); return null;")
        .await;
    client.screenshot("kpi-compare-marketing").await;
    // The month under way is shown when chosen, labelled partial, and nothing in it is red.
    let current = fairseg::kpi::Period::containing(
        fairseg::kpi::PeriodKind::Month,
        fairseg::db::now().date(),
    )
    .unwrap();
    client
        .click(&format!(r#"#start option[value="{}"]"#, current.start()))
        .await;
    client.click("#choose button").await;
    let note = client.wait_text("#partial-note").await;
    assert!(note.starts_with("partial ("), "{note}");
    assert_eq!(
        client
            .count("table.kpi-glance .badge.alert, table.kpi-glance .badge.warning")
            .await,
        0
    );
    client.screenshot("kpi-overview-partial-marketing").await;
    client.open("/kpi").await;
    client.click("table.kpi-glance thead a").await;
    let chart = client
        .wait_for(r#"li.chart[data-kpi="active_customers"] polyline.series"#)
        .await;
    let points = chart.attr("points").await.unwrap().unwrap();
    assert_eq!(points.split(' ').count(), 6, "{points}");
    client.screenshot("kpi-segment-all").await;
    client.open("/kpi/drift").await;
    let advice = client.text("#advice").await;
    // The run was published minutes ago: too early for advice either way.
    assert!(advice.starts_with("No advice yet."), "{advice}");
    // Marketing may not start runs: no button.
    assert_eq!(client.count(r#"form[action="/kpi/drift/rerun"]"#).await, 0);
    client.screenshot("kpi-drift-marketing").await;
    client.close().await;
}

/// The demo's story in a test server: customers, the run on the planted proxy (failed audit,
/// not published), the run without it (published), and KPI history. Returns (first run,
/// published run, audit of the first run).
fn seed_demo(app: &TestApp) -> (i64, i64, i64) {
    use fairseg::trail::Actor;
    crate::audits::load_demo(app, 1200, false);
    let policy = &*app.policy;
    let mut ids = Vec::new();
    for request in [
        fairseg::demo::segmentation_request(),
        fairseg::demo::segmentation_request_without_proxy(),
    ] {
        let (run, outcome) = crate::helpers::execute_here(app, &Actor::system(), &request);
        outcome.unwrap();
        let audit =
            fairseg::app::audits::audit_run(&app.db, policy, &Actor::system(), run).unwrap();
        ids.push((run, audit.id));
    }
    crate::segmentation::publish(app, ids[1].0);
    fairseg::app::demo::backfill_kpis(&app.db, policy, fairseg::db::now().date()).unwrap();
    (ids[0].0, ids[1].0, ids[0].1)
}

/// Internal names that must never reach a reader's eyes (outside `code` and `pre`).
const RAW_NAMES: [&str; 22] = [
    "repeat_purchase_rate",
    "retention_rate",
    "churn_rate",
    "average_order_value",
    "customer_lifetime_value",
    "revenue_per_customer",
    "purchase_frequency",
    "active_customers",
    "new_customers",
    "segment_size",
    "recency_days",
    "tenure_days",
    "price_sensitivity",
    "home_store",
    "never_asked",
    "legitimate_interest",
    "no_target",
    "on_target",
    "marketing_email",
    "undefined",
    "Mostly ",
    "NaN",
];

/// What a reader sees on the current page that should not be there: a page wider than the
/// window, raw internal names, ISO time stamps, and in-app links that answer 403.
async fn page_problems(client: &Browser) -> Vec<String> {
    let facts = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const raw = arguments[0];
             const w = document.documentElement.clientWidth;
             const clone = document.body.cloneNode(true);
             clone.querySelectorAll('code, pre, script, style, .visually-hidden').forEach(e => e.remove());
             const text = clone.textContent;
             const found = raw.filter(t => text.includes(t));
             const iso = (text.match(/\\d{4}-\\d{2}-\\d{2}[ T]\\d{2}:\\d{2}/g) || []).slice(0, 3);
             const links = [...new Set([...document.querySelectorAll('a[href^=\"/\"]')]
               .map(a => a.getAttribute('href')).filter(h => !h.endsWith('.csv') && !h.includes('/export')))]
               .slice(0, 40);
             Promise.all(links.map(h => fetch(h, {credentials: 'same-origin', redirect: 'manual'})
                 .then(r => [h, r.status]).catch(() => [h, 0])))
               .then(statuses => done({
                 over: document.documentElement.scrollWidth - w,
                 wide: [...document.querySelectorAll('body *')]
                   .filter(e => e.getBoundingClientRect().right > w + 1 && !e.closest('.table-scroll, .table-wrap, .scroll')
                     && e.parentElement.getBoundingClientRect().right <= w + 1)
                   .slice(0, 3).map(e => e.tagName + '.' + e.className + '#' + e.id),
                 found, iso,
                 forbidden: statuses.filter(([h, s]) => s === 403).map(([h]) => h),
               }));",
            vec![json!(RAW_NAMES)],
        )
        .await
        .unwrap();
    let mut problems = Vec::new();
    if facts["over"].as_f64().unwrap() > 1.0 {
        problems.push(format!(
            "wider than the window by {} px ({})",
            facts["over"], facts["wide"]
        ));
    }
    for key in ["found", "iso", "forbidden"] {
        if !facts[key].as_array().unwrap().is_empty() {
            problems.push(format!("{key}: {}", facts[key]));
        }
    }
    problems
}

/// Where the page screenshots go: `FAIRSEG_SCREENSHOTS` (scripts/screenshots sets it), else
/// target/screenshots/pages.
fn pages_dir() -> PathBuf {
    std::env::var_os("FAIRSEG_SCREENSHOTS").map_or_else(
        || {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .unwrap()
                .join("screenshots")
                .join("pages")
        },
        PathBuf::from,
    )
}

#[tokio::test]
async fn browser_every_role_reads_its_pages_on_a_desktop_and_a_phone() {
    let app = spawn_app().await;
    let (first_run, published, audit) = seed_demo(&app);
    let dir = pages_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut problems = Vec::new();
    let mut index = String::from("# Pages per role\n\n");
    let mut confirmations = Vec::new();
    let mut glossary_links: Vec<String> = Vec::new();
    for role in ["admin", "compliance", "marketing", "analyst"] {
        let client = Browser::signed_in(&app, role).await;
        client.open("/").await;
        let mut pages: Vec<String> = Vec::new();
        for link in client
            .find_all(Locator::Css("nav[aria-label=Main] a"))
            .await
            .unwrap()
        {
            pages.push(link.attr("href").await.unwrap().unwrap());
        }
        let nav = pages.clone();
        let has = |p: &str| nav.iter().any(|n| n == p);
        if has("/kpi") {
            pages.push("/kpi/drift".into());
            pages.push("/kpi/segments/all".into());
        }
        if has("/audits") {
            pages.push(format!("/audits/{audit}"));
        }
        if has("/segmentations") {
            pages.push(format!("/segmentations/{published}"));
            pages.push(format!("/segmentations/{first_run}"));
        }
        pages.push("/account".into());
        pages.push("/glossary".into());
        index.push_str(&format!("## {role}\n\n"));
        for page in &pages {
            let name = format!(
                "{role}{}",
                page.replace('/', "-").trim_end_matches('-').to_owned()
            );
            let name = if name == role {
                format!("{role}-home")
            } else {
                name
            };
            client.open(page).await;
            // Terms link to the glossary entry that explains them, and the entry exists.
            if page.starts_with("/audits/") {
                let anchors = client.facts("return [...document.querySelectorAll('a.term')].map(a => a.getAttribute('href'));").await;
                let anchors: Vec<String> = serde_json::from_value(anchors).unwrap();
                assert!(
                    anchors.contains(&"/glossary#cramers-v".to_string())
                        && anchors.contains(&"/glossary#p-value".to_string()),
                    "{anchors:?}"
                );
                glossary_links.extend(anchors);
            }
            // A destructive form asks for a ticked box and looks destructive.
            for form in client.find_all(Locator::Css("form.confirm")).await.unwrap() {
                let id = form.attr("id").await.unwrap().unwrap_or_default();
                let action = form.attr("action").await.unwrap().unwrap_or_default();
                assert!(
                    form.find(Locator::Css("input[type=checkbox][name=confirm][required]"))
                        .await
                        .is_ok()
                        && form.find(Locator::Css("button.danger")).await.is_ok(),
                    "{role} {page}: {action} {id} without its confirmation"
                );
                confirmations.push(action);
            }
            for (width, height) in [(1400, 900), (390, 844)] {
                client.set_window_size(width, height).await.unwrap();
                for p in page_problems(&client).await {
                    problems.push(format!("{role} {page} at {width} px: {p}"));
                }
                if page == "/segments" {
                    // The cards' trends are drawn, whole, inside their card, at both widths.
                    let trends = client
                        .facts(
                            "return [...document.querySelectorAll('ul.trend svg.sparkline')].map(s => {
                               const r = s.getBoundingClientRect();
                               const c = s.closest('.card').getBoundingClientRect();
                               return [r.width, r.height, r.left - c.left, c.right - r.right];
                             });",
                        )
                        .await;
                    let trends: Vec<[f64; 4]> = serde_json::from_value(trends).unwrap();
                    if trends.is_empty() {
                        problems.push(format!("{role} /segments at {width} px: no trend"));
                    }
                    for [w, h, left, right] in trends {
                        if w < 40.0 || h < 10.0 || left < -0.5 || right < -0.5 {
                            problems.push(format!(
                                "{role} /segments at {width} px: a trend of {w}×{h} px, \
                                 {left} px from its card's left and {right} from its right"
                            ));
                        }
                    }
                }
                client
                    .screenshot_to(&dir.join(format!("{name}-{width}.png")))
                    .await;
            }
            index.push_str(&format!(
                "- `{page}`: [1400 px]({name}-1400.png), [390 px]({name}-390.png)\n"
            ));
        }
        index.push('\n');
        client.close().await;
    }
    std::fs::write(dir.join("README.md"), index).unwrap();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Each role's home page lists what waits for it, area by area, in every area it may use.
    for (role, areas) in [
        ("admin", &["Consent", "Imports"][..]),
        ("compliance", &["Audits", "KPIs", "Consent"][..]),
        ("marketing", &["KPIs"][..]),
        ("analyst", &["Audits", "KPIs"][..]),
    ] {
        let client = Browser::signed_in(&app, role).await;
        client.open("/").await;
        let shown = client.texts("#todos li.todo .area").await;
        for area in areas {
            assert!(shown.iter().any(|a| a == area), "{role}: {shown:?}");
        }
        if role == "marketing" {
            // Activation links say how many customers each file holds.
            client.open("/segments").await;
            let links = client.texts("a.export").await;
            assert!(!links.is_empty());
            for l in &links {
                assert!(
                    l.starts_with("Email: ")
                        && (l.ends_with(" reachable") || l.ends_with(" members")),
                    "{l}"
                );
            }
            // KPI charts have axes: value ticks in the unit, months on the time axis, a
            // labelled target line, and no "€0.00".
            client.open("/kpi/segments/all").await;
            let ticks = client.texts("li.chart[data-kpi=revenue] text.tick").await;
            assert!(ticks.iter().any(|t| t.starts_with('€')), "{ticks:?}");
            assert!(!ticks.iter().any(|t| t.contains("0.00")), "{ticks:?}");
            let labels = client.texts("li.chart text.line-label").await;
            assert!(
                labels.iter().any(|l| l.starts_with("target ")),
                "{labels:?}"
            );
        }
        if role == "compliance" {
            // The failing run's audit is a to-do for the officer who may override it.
            let todo = client.text("#todos li.todo-act").await;
            assert!(todo.contains(&format!("run {first_run}")), "{todo}");
            // The report opens on its summary: one sentence per attribute, a gap stated with its
            // ratio and interval against the stated reference, above the details; the
            // intersections' details are collapsed.
            client.open(&format!("/audits/{audit}")).await;
            let facts = client
                .facts(
                    "const top = s => document.querySelector(s).getBoundingClientRect().top;
                     return {
                       lines: [...document.querySelectorAll('#summary li.summary-line')].map(l => l.textContent),
                       gaps: [...document.querySelectorAll('#summary li.tone-gap')].map(l => l.textContent),
                       green: [...document.querySelectorAll('#summary li.tone-no-gap')].map(l => l.textContent),
                       proxied: [...document.querySelectorAll('#summary li.tone-proxy')].map(l => l.textContent),
                       ethnicity: document.querySelector('#attr-ethnicity h2 .verdict').textContent,
                       sections: document.querySelectorAll('section.attribute').length,
                       above: top('#summary') < top('#proxies'),
                       intersections: document.querySelectorAll('details.intersection').length,
                       open: document.querySelectorAll('details.intersection[open]').length,
                     };",
                )
                .await;
            assert_eq!(
                facts["lines"].as_array().unwrap().len() as u64,
                facts["sections"].as_u64().unwrap(),
                "{facts}"
            );
            assert_eq!(facts["above"], true, "{facts}");
            assert_eq!(facts["open"], 0, "{facts}");
            // The demo's run uses home store, which stands in for ethnicity and fails the
            // audit: ethnicity is not shown as a green pass beside that headline, its line
            // names the proxy, and its section takes the proxy's verdict.
            let texts = |key: &str| -> Vec<String> {
                facts[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect()
            };
            assert!(
                !texts("green").iter().any(|l| l.contains("Ethnicity:")),
                "{facts}"
            );
            assert!(
                texts("proxied").iter().any(|l| l.contains("Ethnicity:")
                    && l.contains("but the run uses home store, which stands in for ethnicity")
                    && l.trim_start().starts_with("Fail")),
                "{facts}"
            );
            assert_eq!(facts["ethnicity"], "Fail", "{facts}");
            for gap in facts["gaps"].as_array().unwrap() {
                let gap = gap.as_str().unwrap();
                assert!(
                    gap.contains("% CI")
                        && gap.contains("against their share of all audited members")
                        || gap.contains("the segments differ"),
                    "{gap}"
                );
            }
        }
        client.close().await;
    }
    // Marketing's overview: one line per segment, money in the policy's currency (compact,
    // full on hover), dates in words, and sorting by revenue puts the largest first.
    let client = Browser::signed_in(&app, "marketing").await;
    client.open("/segments?sort=revenue").await;
    let facts = client
        .facts(
            "const rows = [...document.querySelectorAll('#overview tbody tr')];
             return {
               rows: rows.length,
               cards: document.querySelectorAll('li.segment').length,
               revenue: rows.map(r => r.querySelector('td.revenue').textContent),
               full: rows.map(r => r.querySelector('td.revenue').getAttribute('title')),
               intro: document.querySelector('main p').textContent,
             };",
        )
        .await;
    assert_eq!(facts["rows"], facts["cards"], "{facts}");
    let compact: Vec<&str> = facts["revenue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(compact.iter().all(|r| r.starts_with('€')), "{facts}");
    let full: Vec<f64> = facts["full"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let text = v.as_str().unwrap();
            assert!(
                text.starts_with('€') && text.contains('.') && text.len() > 4,
                "{facts}"
            );
            text.trim_start_matches('€')
                .replace(',', "")
                .parse()
                .unwrap()
        })
        .collect();
    assert!(full.windows(2).all(|w| w[0] >= w[1]), "{full:?}");
    assert!(
        facts["intro"]
            .as_str()
            .unwrap()
            .contains(&fairseg::web::format::date(&fairseg::db::now().date())),
        "{facts}"
    );
    client.close().await;
    let (status, html) = app
        .sign_in("marketing")
        .await
        .page_with_status(app.url("/glossary"))
        .await;
    assert_eq!(status, 200);
    assert!(!glossary_links.is_empty());
    for link in &glossary_links {
        let id = link.trim_start_matches("/glossary#");
        assert!(
            html.contains(&format!("id=\"{id}\"")),
            "{link} has no entry"
        );
    }
    // Compliance met the override form on the failed audit and the retention form.
    for needed in [format!("/audits/{audit}/override"), "/dsr/retention".into()] {
        assert!(
            confirmations.contains(&needed),
            "{needed} in {confirmations:?}"
        );
    }
}

#[tokio::test]
async fn browser_the_consent_page_draws_selection_bias_per_attribute() {
    let app = spawn_app().await;
    crate::consent_selection::load_biased_demo(&app, 600);
    let client = Browser::signed_in(&app, "compliance").await;
    client.open("/consent").await;
    let facts = client.facts("return {
               lines: document.querySelectorAll('#consent-selection polyline.selection-line').length,
               points: [...document.querySelectorAll('#consent-selection polyline.selection-line')]
                 .map(p => p.getAttribute('points').trim().split(' ').length),
               headline: document.querySelector('#selection-headline').innerText,
             };").await;
    assert!(facts["lines"].as_u64().unwrap() >= 3, "{facts}");
    assert!(
        facts["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_u64() == Some(12)),
        "twelve month ends: {facts}"
    );
    assert!(
        facts["headline"]
            .as_str()
            .unwrap()
            .contains("under-represents sex female"),
        "{facts}"
    );
}

#[tokio::test]
async fn browser_the_comparison_page_shows_the_matching() {
    let app = spawn_app().await;
    let (a, b) = crate::migration::two_runs(&app);
    let client = Browser::signed_in(&app, "analyst").await;
    client
        .open(&format!("/segmentations/compare?a={a}&b={b}"))
        .await;
    let facts = client.facts("return {
               rows: document.querySelectorAll('#matching tbody tr').length,
               unmatched: [...document.querySelectorAll('#matching tbody td')].filter(t => t.innerText === 'no match').length,
               moved: document.querySelector('#moved-into-risk').innerText,
             };").await;
    assert_eq!(facts["rows"], 3, "{facts}");
    assert_eq!(facts["unmatched"], 0, "{facts}");
    assert!(
        facts["moved"].as_str().unwrap().contains("0 customers"),
        "{facts}"
    );
}

#[tokio::test]
async fn browser_the_objection_check_page_says_no_leak() {
    let app = spawn_app().await;
    crate::objections::random_ledger_with_exports(&app, 7).await;
    let client = Browser::signed_in(&app, "compliance").await;
    client.open("/trail").await;
    client.click_link("Check objections").await;
    let verdict = client.wait_text("#objection-verdict").await;
    assert!(verdict.contains("No leak"), "{verdict}");
    let summary = client.text("#objection-summary").await;
    assert!(summary.starts_with("10 disclosures"), "{summary}");
}

/// A compliance officer signs an audit off and reads the "Signed off" box, then the frozen
/// report it links to.
#[tokio::test]
async fn browser_compliance_signs_off_an_audit_and_reads_the_box() {
    let app = spawn_app().await;
    let (_, audit) = crate::signoffs::audited_run(&app);
    let browser = Browser::signed_in(&app, "compliance").await;
    browser.open(&format!("/audits/{audit}")).await;
    let statement = "Reviewed in the browser: tables, proxies and consent selection.";
    browser.wait_for("form.signoff-form #statement").await;
    browser
        .fill("form.signoff-form #statement", statement)
        .await;
    browser.click("form.signoff-form button[type=submit]").await;
    let integrity = browser.wait_text(".signoff-box .integrity").await;
    assert!(integrity.contains("matches its hash"), "{integrity}");
    assert_eq!(
        browser.text(".signoff-box .signer").await,
        "compliance@example.test"
    );
    assert_eq!(browser.text(".signoff-box .statement").await, statement);
    assert!(
        browser
            .text(".signoff-box code.hash")
            .await
            .starts_with("sha256:")
    );
    assert!(browser.text("p.notice").await.contains("Signed off"));
    browser.click_link("Signed report").await;
    let signer = browser.wait_text(".signed-report #signature .signer").await;
    assert_eq!(signer, "compliance@example.test");
    assert!(
        browser
            .text("#integrity")
            .await
            .contains("matches its hash")
    );
    browser.close().await;
}

#[tokio::test]
async fn browser_the_customer_page_says_why_they_are_in_their_segment() {
    use crate::segmentation::{grant_all, import, segment};
    let app = spawn_app().await;
    let mut customers = String::from("customer_id,region,sex\n");
    let mut txns = String::from("customer_id,occurred_at,amount\n");
    for i in 0..60 {
        customers.push_str(&format!(
            "C{i:04},{},{}\n",
            ["north", "south"][i % 2],
            ["female", "male"][(i / 2) % 2]
        ));
        // Three kinds of buyer: recent big spenders, regular, lapsed.
        let (days, amount, orders) = [(5, 400.0, 6), (40, 60.0, 3), (300, 20.0, 1)][i % 3];
        for o in 0..orders {
            let at = chrono::Utc::now() - chrono::Duration::days(days + o * 3 + (i as i64 % 5));
            txns.push_str(&format!(
                "C{i:04},{},{:.2}\n",
                at.format("%Y-%m-%dT%H:%M:%SZ"),
                amount + (i % 7) as f64
            ));
        }
    }
    import(&app, "customers", &customers);
    import(&app, "transactions", &txns);
    grant_all(&app, 60, &["segmentation"]);
    let run = segment(
        &app,
        &[
            "--algorithm",
            "kmeans",
            "--k",
            "3",
            "--features",
            "monetary,recency_days,frequency",
            "--seed",
            "2",
        ],
    )["run_id"]
        .as_i64()
        .unwrap();
    let client = Browser::signed_in(&app, "analyst").await;
    client.open("/customers/C0000").await;
    let sentence = client.wait_text(".why-sentence").await;
    assert!(sentence.starts_with("You are in '"), "{sentence}");
    assert!(
        sentence.contains("standard deviations") && sentence.contains("the next closest group was"),
        "{sentence}"
    );
    assert!(sentence.contains('€'), "money reads as money: {sentence}");
    let heading = client.text(&format!("#why-run-{run}")).await;
    assert!(heading.starts_with(&format!("Run {run}:")), "{heading}");
    let dir = std::env::var_os("FAIRSEG_EXPLAIN_SHOTS").map_or_else(pages_dir, PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    for (width, height) in [(1400u32, 1700u32), (390, 2600)] {
        client.set_window_size(width, height).await.unwrap();
        client.open("/customers/C0000").await;
        client.wait_for(".why-sentence").await;
        let problems = page_problems(&client).await;
        assert!(problems.is_empty(), "{width} px: {problems:?}");
        client
            .screenshot_to(&dir.join(format!("customer-why-{width}.png")))
            .await;
    }
    // Roles without segments:read see the customer but no explanation.
    client.set_window_size(1280, 900).await.unwrap();
    client.sign_out().await;
    client.sign_in("admin").await;
    client.open("/customers/C0000").await;
    client.wait_for("h1").await;
    assert_eq!(client.count(".why-sentence").await, 0);
    client.close().await;
}
