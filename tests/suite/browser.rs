//! The pages in a real browser: headless Chromium driven through chromedriver. These run once,
//! on SQLite (scripts/test skips them on the PostgreSQL pass). Screenshots of each page land in
//! target/screenshots/ for review.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{PASSWORD, spawn_app};

/// A chromedriver process for one test, killed when the test ends.
pub(crate) struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) async fn start_browser() -> (Driver, Client) {
    let chromedriver =
        std::env::var("FAIRSEG_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    assert!(
        std::path::Path::new(&chromedriver).exists(),
        "browser tests need chromedriver at {chromedriver} (Debian: chromium-driver; scripts/test installs it) \
         or FAIRSEG_CHROMEDRIVER pointing at one"
    );
    let port = free_port();
    let child = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: tempfile::tempdir().unwrap(),
    };
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(format!("{}/status", driver.url)).await
            && r.status().is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "chromedriver did not come up on port {port}");
    let chromium = std::env::var("FAIRSEG_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ]
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session");
    (driver, client)
}

async fn screenshot(client: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

pub(crate) async fn sign_in(client: &Client, base: &str, role: &str) {
    client.goto(&format!("{base}/trail")).await.unwrap();
    // Sent to sign in first, and back to the page afterwards.
    assert!(client.current_url().await.unwrap().path() == "/signin");
    client
        .find(Locator::Css("#email"))
        .await
        .unwrap()
        .send_keys(&format!("{role}@example.test"))
        .await
        .unwrap();
    client
        .find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The form posts and the browser follows the redirect; wait until it has left the form,
    // or later lookups would find elements of the page being replaced.
    for _ in 0..100 {
        if client.current_url().await.unwrap().path() != "/signin" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("signing in as {role} did not leave the sign-in page");
}

async fn nav_labels(client: &Client) -> Vec<String> {
    let mut labels = Vec::new();
    for link in client
        .find_all(Locator::Css("nav[aria-label=Main] a"))
        .await
        .unwrap()
    {
        labels.push(link.text().await.unwrap());
    }
    labels
}

#[tokio::test]
async fn browser_compliance_and_marketing_see_their_own_app() {
    let app = spawn_app().await;
    let (_driver, client) = start_browser().await;

    sign_in(&client, &app.address, "compliance").await;
    client
        .wait()
        .for_element(Locator::Css("table caption"))
        .await
        .expect("the trail page opens after signing in");
    assert_eq!(client.current_url().await.unwrap().path(), "/trail");
    let nav = nav_labels(&client).await;
    assert!(nav.contains(&"Trail".to_string()), "{nav:?}");
    assert!(!nav.contains(&"Users".to_string()), "{nav:?}");
    screenshot(&client, "trail-compliance").await;

    client
        .find(Locator::LinkText("Verify the chain"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let status = client
        .wait()
        .for_element(Locator::Css("p[role=status]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(status.contains("intact"), "{status}");

    // Sign out with the form button: the session ends and pages ask to sign in again.
    client
        .find(Locator::Css("form[action='/signout'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css("#email"))
        .await
        .unwrap();
    client.goto(&app.url("/")).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/signin");

    sign_in(&client, &app.address, "marketing").await;
    let heading = client
        .wait()
        .for_element(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_ne!(heading, "Trail", "marketing may not read the trail");
    client.goto(&app.url("/")).await.unwrap();
    let heading = client
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, "Welcome");
    let nav = nav_labels(&client).await;
    assert!(!nav.contains(&"Trail".to_string()), "{nav:?}");
    screenshot(&client, "home-marketing").await;

    client.close().await.unwrap();
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
    let (_driver, client) = start_browser().await;
    sign_in(&client, &app.address, "compliance").await;
    client
        .wait()
        .for_element(Locator::Css("table caption"))
        .await
        .unwrap();
    client
        .find(Locator::LinkText("Data requests"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css("#customer"))
        .await
        .unwrap()
        .send_keys("CUST-BROWSER-1")
        .await
        .unwrap();
    client
        .find(Locator::Css("#lookup button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let found = client
        .wait()
        .for_element(Locator::Css("#found"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(found.contains(&pseudonym), "{found}");
    screenshot(&client, "dsr-compliance").await;

    // Export: a download; the page stays, and the request is logged.
    client
        .find(Locator::Css("#export button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut logged = false;
    for _ in 0..100 {
        let (_, log) = app.get_json("compliance", "/api/v1/dsr").await;
        if log["requests"].as_array().is_some_and(|r| !r.is_empty()) {
            assert_eq!(log["requests"][0]["kind"], "export");
            logged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logged, "the export was not recorded");

    // Erase: the browser will not submit without the box ticked.
    client
        .find(Locator::Css("#erase button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.get_json("compliance", "/api/v1/customers/CUST-BROWSER-1")
            .await
            .0,
        200
    );
    client
        .find(Locator::Css("#confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Css("#erase button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notice = client
        .wait()
        .for_element(Locator::Css("p[role=status]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(notice.contains(&pseudonym), "{notice}");
    let kinds = client
        .find(Locator::Css("#requests tbody tr td:nth-child(2)"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(kinds, "erasure");
    assert_eq!(
        app.get_json("compliance", "/api/v1/customers/CUST-BROWSER-1")
            .await
            .0,
        409
    );
    client.close().await.unwrap();
}

#[tokio::test]
async fn browser_staff_create_a_preference_link_and_the_customer_withdraws() {
    let app = spawn_app().await;
    app.add_customer("CUST-9", "{}");
    let today = chrono::Utc::now().date_naive().to_string();
    let response = app
        .api("compliance", reqwest::Method::POST, "/api/v1/consents")
        .json(&json!({"customer_id": "CUST-9", "purpose": "marketing_email", "status": "granted", "recorded_at": today}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let (_driver, client) = start_browser().await;

    // Staff: look the customer up on the consent page and create a link.
    sign_in(&client, &app.address, "compliance").await;
    client.goto(&app.url("/consent")).await.unwrap();
    screenshot(&client, "consent-coverage").await;
    client
        .find(Locator::Css("#customer-id"))
        .await
        .unwrap()
        .send_keys("CUST-9")
        .await
        .unwrap();
    client
        .find(Locator::Css("form[action='/consent/lookup'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::XPath("//button[text()='Create preference link']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let link = client
        .wait()
        .for_element(Locator::Css("#preference-link"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .expect("the link has an address");
    screenshot(&client, "consent-customer").await;
    client
        .find(Locator::Css("form[action='/signout'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css("#email"))
        .await
        .unwrap();

    // The customer: open the link, withdraw with one click, see it withdrawn.
    client.goto(&link).await.unwrap();
    let state = client
        .find(Locator::Css("li[data-purpose=marketing_email] p.state"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(state.starts_with("You agreed on"), "{state}");
    client
        .find(Locator::Css("li[data-purpose=marketing_email] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notice = client
        .wait()
        .for_element(Locator::Css("p[role=status]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(notice.starts_with("Done"), "{notice}");
    let state = client
        .find(Locator::Css("li[data-purpose=marketing_email] p.state"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(state.starts_with("You withdrew on"), "{state}");
    screenshot(&client, "preferences-withdrawn").await;
    let consent_state = || async {
        let (_, body) = app
            .get_json("compliance", "/api/v1/customers/CUST-9/consents")
            .await;
        body["states"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["purpose"] == "marketing_email")
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(consent_state().await, "withdrawn");
    // The page speaks for the company to the customer, and leads nowhere near the staff app.
    let page = client
        .execute(
            "return {
               brand: document.querySelector('.brand').textContent,
               footer: document.querySelector('footer').textContent,
               purpose: document.querySelector('li[data-purpose=marketing_email] h2').textContent,
               staff: document.querySelectorAll('a[href=\"/\"], a[href^=\"/signin\"]').length,
             };",
            vec![],
        )
        .await
        .unwrap();
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
        .find(Locator::Css(
            "li[data-purpose=marketing_email] form[action$='/grant'] button",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The page before the click already has a status line (the withdrawal's); wait for the
    // answer to the grant itself, not for whatever status element is found first.
    let state = client
        .wait()
        .for_element(Locator::XPath(
            "//li[@data-purpose='marketing_email']//p[contains(@class, 'state') \
             and starts-with(normalize-space(.), 'You agreed on')]",
        ))
        .await;
    screenshot(&client, "preferences-after-grant").await;
    let state = state.unwrap().text().await.unwrap();
    assert!(state.starts_with("You agreed on"), "{state}");
    let notice = client
        .find(Locator::Css("p[role=status]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(notice.starts_with("Thank you"), "{notice}");
    screenshot(&client, "preferences-granted-again").await;
    client.close().await.unwrap();
    assert_eq!(consent_state().await, "granted");
}

#[tokio::test]
async fn browser_admin_uploads_a_customer_file_and_reads_the_report() {
    let app = spawn_app().await;
    let (_driver, client) = start_browser().await;
    sign_in(&client, &app.address, "admin").await;
    client.goto(&app.url("/customers/import")).await.unwrap();
    let nav = nav_labels(&client).await;
    assert!(nav.contains(&"Import".to_string()), "{nav:?}");

    let file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imports/customers.csv");
    client
        .find(Locator::Css("#file"))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    client
        .find(Locator::Css(
            "form[enctype='multipart/form-data'] button[type=submit]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let imported = client
        .wait()
        .for_element(Locator::Css("#rows-imported"))
        .await
        .expect("the report appears after the upload")
        .text()
        .await
        .unwrap();
    assert_eq!(imported, "3");
    let mut kinds = Vec::new();
    for cell in client
        .find_all(Locator::Css("#columns tbody td:nth-child(2)"))
        .await
        .unwrap()
    {
        kinds.push(cell.text().await.unwrap());
    }
    assert_eq!(
        kinds,
        ["id", "number", "category", "category", "date", "category"]
    );
    let recent = client
        .find(Locator::Css("#recent tbody"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(recent.contains("customers.csv"), "{recent}");
    screenshot(&client, "import-admin").await;
    client.close().await.unwrap();
}

#[tokio::test]
async fn browser_an_analyst_runs_a_segmentation_and_marketing_records_a_strategy() {
    use crate::segmentation::{blob_customers, grant_all, import, publish};
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(30, 21);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation", "marketing_email"]);
    let (_driver, client) = start_browser().await;
    sign_in(&client, &app.address, "analyst").await;
    client.goto(&app.url("/segmentations")).await.unwrap();
    assert!(nav_labels(&client).await.contains(&"Runs".to_string()));
    let field = |css: &'static str| client.find(Locator::Css(css));
    field("#features")
        .await
        .unwrap()
        .send_keys("x,y")
        .await
        .unwrap();
    field("#k").await.unwrap().clear().await.unwrap();
    field("#k").await.unwrap().send_keys("3").await.unwrap();
    field("#new-run button[type=submit]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The run page follows the run (it refreshes itself) until the segments appear.
    let mut cards = Vec::new();
    for _ in 0..100 {
        cards = client
            .find_all(Locator::Css("ul.segments li.segment"))
            .await
            .unwrap();
        if !cards.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(cards.len(), 3, "three segments once the run is done");
    let path = client.current_url().await.unwrap().path().to_owned();
    let run: i64 = path.rsplit('/').next().unwrap().parse().unwrap();
    let included = field("#population tbody tr:first-child td")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(included, "90");
    // The run was audited as soon as it finished; the page says how and links the report.
    let verdict = client
        .wait()
        .for_element(Locator::Css("#audit strong.verdict"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        ["pass", "warn", "fail", "inconclusive"].contains(&verdict.as_str()),
        "{verdict}"
    );
    assert_eq!(
        client
            .find_all(Locator::Css("figure.map svg g.centre"))
            .await
            .unwrap()
            .len(),
        3
    );
    screenshot(&client, "segmentation-run-analyst").await;

    publish(&app, run);
    let (_driver2, marketing) = start_browser().await;
    sign_in(&marketing, &app.address, "marketing").await;
    marketing.goto(&app.url("/segments")).await.unwrap();
    let names = marketing
        .find_all(Locator::Css("li.segment h3"))
        .await
        .unwrap();
    assert_eq!(names.len(), 3);
    let viability = marketing
        .find(Locator::Css("#segment-0 table.viability"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for criterion in ["Measurable", "Accessible", "Substantial", "Actionable"] {
        assert!(viability.contains(criterion), "{viability}");
    }
    let form = |css: &'static str| marketing.find(Locator::Css(css));
    form("#channel-0")
        .await
        .unwrap()
        .send_keys("email")
        .await
        .unwrap();
    form("#offer-0")
        .await
        .unwrap()
        .send_keys("Free delivery")
        .await
        .unwrap();
    form("#service-0")
        .await
        .unwrap()
        .send_keys("standard")
        .await
        .unwrap();
    form("#strategy-0 input[name=favourable]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    form("#strategy-0 button[type=submit]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let recorded = marketing
        .wait()
        .for_element(Locator::Css("#strategy-0 p.muted"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(recorded.contains("marketing@example.test"), "{recorded}");
    let offer = marketing
        .find(Locator::Css("#offer-0"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(offer.as_deref(), Some("Free delivery"));
    screenshot(&marketing, "segments-dashboard-marketing").await;
    marketing.close().await.unwrap();
    client.close().await.unwrap();
}

#[tokio::test]
async fn browser_fairness_report_renders_with_its_chart_and_prints_cleanly() {
    let app = spawn_app().await;
    crate::audits::load_demo(&app, 1200, false);
    let out = app.cli(&[
        "segment",
        "--json",
        "--algorithm",
        "kmeans",
        "--k",
        "3",
        "--features",
        "monetary,frequency,home_store",
    ]);
    assert!(out.status.success(), "{}", crate::helpers::stderr(&out));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let audit_id = run["audit"]["id"].as_i64().unwrap();
    let (_driver, client) = start_browser().await;
    sign_in(&client, &app.address, "compliance").await;
    client
        .goto(&format!("{}/audits/{audit_id}", app.address))
        .await
        .unwrap();
    let heading = client
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        heading.contains(&format!("Fairness audit {audit_id}")),
        "{heading}"
    );
    let facts = client
        .execute(
            "return {
               charts: document.querySelectorAll('svg.representation').length,
               dots: document.querySelectorAll('svg.representation circle.ratio').length,
               whiskers: document.querySelectorAll('svg.representation line.interval').length,
               width: document.querySelector('svg.representation').getBoundingClientRect().width,
               suppressed: document.querySelectorAll('td.suppressed').length,
               print: [...document.styleSheets].some(s => [...s.cssRules].some(r =>
                 r.media && r.media.mediaText === 'print' &&
                 [...r.cssRules].some(x => x.selectorText && x.selectorText.includes('.audit-report')))),
             };",
            vec![],
        )
        .await
        .unwrap();
    assert!(facts["charts"].as_u64().unwrap() >= 4, "{facts}");
    assert!(facts["dots"].as_u64().unwrap() > 0, "{facts}");
    assert!(facts["whiskers"].as_u64().unwrap() > 0, "{facts}");
    assert!(facts["width"].as_f64().unwrap() > 100.0, "{facts}");
    assert!(facts["suppressed"].as_u64().unwrap() > 0, "{facts}");
    assert_eq!(
        facts["print"], true,
        "a print stylesheet for the report: {facts}"
    );
    let flagged = client
        .find(Locator::Css("#proxies tr.flagged td"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(flagged, "Home store");
    // The headline says what a sceptical reader needs first: not a pass, why, and what was not
    // tested.
    let headline = client
        .execute(
            "const box = document.querySelector('#verdict');
             return {
               verdict: box.querySelector('h2 .verdict').textContent.trim(),
               reason: document.querySelector('#verdict-reason').textContent,
               caveat: [...box.querySelectorAll('.caveat')].map(c => c.textContent).join(' '),
               proxy: [...document.querySelectorAll('#proxies tr.flagged')]
                 .map(r => r.textContent).join(' '),
             };",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(headline["verdict"], "fail", "{headline}");
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
    screenshot(&client, "audit-report").await;
    // On a phone the report scrolls its wide tables inside their box, not the page.
    client.set_window_size(390, 844).await.unwrap();
    let overflow = client
        .execute(
            "const w = document.documentElement.clientWidth;
             const wide = [...document.querySelectorAll('body *')]
               .filter(e => e.getBoundingClientRect().right > w + 2 && !e.closest('.table-wrap')
                 && e.parentElement.getBoundingClientRect().right <= w + 2)
               .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + e.getBoundingClientRect().right);
             return {by: document.documentElement.scrollWidth - w, wide};",
            vec![],
        )
        .await
        .unwrap();
    screenshot(&client, "audit-report-390").await;
    assert!(
        overflow["by"].as_f64().unwrap() <= 1.0,
        "page wider than the screen: {overflow}"
    );
    client.set_window_size(1280, 900).await.unwrap();
    client
        .goto(&format!("{}/audits", app.address))
        .await
        .unwrap();
    assert!(nav_labels(&client).await.contains(&"Audits".to_string()));
    client.close().await.unwrap();
}

#[tokio::test]
async fn kpi_dashboard_charts_and_drift_in_the_browser() {
    let app = spawn_app().await;
    crate::kpi::seeded(&app).await;
    let response = app
        .api("analyst", reqwest::Method::POST, "/api/v1/kpi/evaluate")
        .json(&json!({"from": "2025-01-01", "to": "2025-06-30"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // And the month under way, which has barely begun.
    let response = app
        .api("analyst", reqwest::Method::POST, "/api/v1/kpi/evaluate")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let (_driver, client) = start_browser().await;
    sign_in(&client, &app.address, "marketing").await;
    client.goto(&app.url("/kpi")).await.unwrap();
    let nav = nav_labels(&client).await;
    assert!(nav.contains(&"KPIs".to_string()), "{nav:?}");
    let cells = client
        .find_all(Locator::Css("table.kpi-glance tbody tr"))
        .await
        .unwrap();
    assert_eq!(cells.len(), 12);
    // It opens on the newest complete month, not on the one under way.
    let period = client.find(Locator::Css("h2#period")).await.unwrap();
    assert!(period.text().await.unwrap().starts_with("2025-06"));
    screenshot(&client, "kpi-overview-marketing").await;
    // The month under way is shown when chosen, labelled partial, and nothing in it is red.
    let current = fairseg::kpi::Period::containing(
        fairseg::kpi::PeriodKind::Month,
        fairseg::db::now().date(),
    )
    .unwrap();
    client
        .find(Locator::Css(&format!(
            r#"#start option[value="{}"]"#,
            current.start()
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Css("#choose button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let note = client
        .wait()
        .for_element(Locator::Css("#partial-note"))
        .await
        .expect("the partial month says so");
    assert!(note.text().await.unwrap().starts_with("partial ("));
    assert!(
        client
            .find_all(Locator::Css(
                "table.kpi-glance .badge.alert, table.kpi-glance .badge.warning"
            ))
            .await
            .unwrap()
            .is_empty()
    );
    screenshot(&client, "kpi-overview-partial-marketing").await;
    client.goto(&app.url("/kpi")).await.unwrap();
    client
        .find(Locator::Css("table.kpi-glance thead a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let chart = client
        .wait()
        .for_element(Locator::Css(
            r#"li.chart[data-kpi="active_customers"] polyline.series"#,
        ))
        .await
        .expect("the segment page draws its charts");
    let points = chart.attr("points").await.unwrap().unwrap();
    assert_eq!(points.split(' ').count(), 6, "{points}");
    screenshot(&client, "kpi-segment-all").await;
    client.goto(&app.url("/kpi/drift")).await.unwrap();
    let advice = client
        .find(Locator::Css("#advice"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The run was published minutes ago: too early for advice either way.
    assert!(advice.starts_with("No advice yet."), "{advice}");
    // Marketing may not start runs: no button.
    assert!(
        client
            .find(Locator::Css(r#"form[action="/kpi/drift/rerun"]"#))
            .await
            .is_err()
    );
    screenshot(&client, "kpi-drift-marketing").await;
    client.close().await.unwrap();
}

/// The demo's story in a test server: customers, the run on the planted proxy (failed audit,
/// not published), the run without it (published), and KPI history. Returns (first run,
/// published run, audit of the first run).
fn seed_demo(app: &crate::helpers::TestApp) -> (i64, i64, i64) {
    use fairseg::trail::Actor;
    crate::audits::load_demo(app, 1200, false);
    let policy = &*app.policy;
    let mut ids = Vec::new();
    for request in [
        fairseg::demo::segmentation_request(),
        fairseg::demo::segmentation_request_without_proxy(),
    ] {
        let run =
            fairseg::segmentation::pipeline::create(&app.db, policy, &Actor::system(), &request)
                .unwrap();
        fairseg::segmentation::pipeline::execute(&app.db, policy, run).unwrap();
        let audit =
            fairseg::app::audits::audit_run(&app.db, policy, &Actor::system(), run).unwrap();
        ids.push((run, audit.id));
    }
    crate::segmentation::publish(app, ids[1].0);
    fairseg::demo::backfill_kpis(&app.db, policy, fairseg::db::now().date()).unwrap();
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
async fn page_problems(client: &Client) -> Vec<String> {
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

async fn full_page_screenshot(client: &Client, path: &std::path::Path) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(path, png).unwrap();
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
        let (_driver, client) = start_browser().await;
        sign_in(&client, &app.address, role).await;
        client.goto(&app.url("/")).await.unwrap();
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
            client.goto(&app.url(page)).await.unwrap();
            // Terms link to the glossary entry that explains them, and the entry exists.
            if page.starts_with("/audits/") {
                let anchors = client
                    .execute(
                        "return [...document.querySelectorAll('a.term')].map(a => a.getAttribute('href'));",
                        vec![],
                    )
                    .await
                    .unwrap();
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
                full_page_screenshot(&client, &dir.join(format!("{name}-{width}.png"))).await;
            }
            index.push_str(&format!(
                "- `{page}`: [1400 px]({name}-1400.png), [390 px]({name}-390.png)\n"
            ));
        }
        index.push('\n');
        client.close().await.unwrap();
    }
    std::fs::write(dir.join("README.md"), index).unwrap();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Marketing's overview: one line per segment, money in the policy's currency (compact,
    // full on hover), dates in words, and sorting by revenue puts the largest first.
    let (_driver, client) = start_browser().await;
    sign_in(&client, &app.address, "marketing").await;
    client
        .goto(&app.url("/segments?sort=revenue"))
        .await
        .unwrap();
    let facts = client
        .execute(
            "const rows = [...document.querySelectorAll('#overview tbody tr')];
             return {
               rows: rows.length,
               cards: document.querySelectorAll('li.segment').length,
               revenue: rows.map(r => r.querySelector('td.revenue').textContent),
               full: rows.map(r => r.querySelector('td.revenue').getAttribute('title')),
               intro: document.querySelector('main p').textContent,
             };",
            vec![],
        )
        .await
        .unwrap();
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
    client.close().await.unwrap();
    let (status, html) = {
        let client = app.sign_in("marketing").await;
        let r = client.get(app.url("/glossary")).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    };
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
