//! The `fairseg` command line: policy checks, accounts, migrations, the demo, and refusing to
//! serve on an invalid policy.

use std::path::Path;

use serde_json::Value;

use crate::helpers::{TestDatabase, policies_dir, run_cli, spawn_app, stderr, stdout};

fn broken_policy(dir: &Path, edit: impl Fn(&str) -> String) -> std::path::PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let text = std::fs::read_to_string(policies_dir().join("policy.toml")).unwrap();
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit applies");
    std::fs::write(policies.join("policy.toml"), edited).unwrap();
    policies
}

#[test]
fn policy_check_accepts_the_default_policy_and_reports_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(dir.path(), "unused.db", &["policy", "check", "--json"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["valid"], true);
    let version = report["version"].as_str().unwrap();
    assert!(
        version.starts_with("sha256:") && version.len() == 7 + 64,
        "{version}"
    );
    assert!(
        !dir.path().join("unused.db").exists(),
        "checking a policy touches no database"
    );
}

#[test]
fn policy_check_names_file_key_and_problem_for_each_error() {
    let dir = tempfile::tempdir().unwrap();
    let policies = broken_policy(dir.path(), |t| {
        t.replacen("four_fifths_ratio = 0.8", "four_fifths_ratio = 1.8", 1)
            .replacen("\"kpi:read\"", "\"kpi:reed\"", 1)
    });
    let out = run_cli(
        dir.path(),
        "unused.db",
        &["policy", "check", "--json"],
        &[("FAIRSEG_POLICIES", policies.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["valid"], false);
    let issues = report["issues"].as_array().unwrap();
    assert_eq!(issues.len(), 2, "{report}");
    let keys: Vec<&str> = issues.iter().map(|i| i["key"].as_str().unwrap()).collect();
    assert!(
        keys.iter().any(|k| k.contains("four_fifths_ratio")),
        "{keys:?}"
    );
    assert!(keys.iter().any(|k| k.contains("permissions")), "{keys:?}");
    for issue in issues {
        assert!(issue["file"].as_str().unwrap().ends_with("policy.toml"));
        assert!(!issue["message"].as_str().unwrap().is_empty());
    }
    let unknown = issues
        .iter()
        .find(|i| i["key"].as_str().unwrap().contains("permissions"))
        .unwrap();
    assert!(
        unknown["message"].as_str().unwrap().contains("kpi:reed"),
        "{unknown}"
    );

    // The plain form prints one line per problem with its place.
    let out = run_cli(
        dir.path(),
        "unused.db",
        &["policy", "check"],
        &[("FAIRSEG_POLICIES", policies.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
    assert!(stdout(&out).contains("policy.toml:"), "{}", stdout(&out));
}

#[test]
fn a_syntax_error_is_reported_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let policies = broken_policy(dir.path(), |t| t.replacen("[fairness]", "[fairness", 1));
    let out = run_cli(
        dir.path(),
        "unused.db",
        &["policy", "check", "--json"],
        &[("FAIRSEG_POLICIES", policies.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let issue = &report["issues"][0];
    assert!(issue["line"].as_u64().unwrap() > 1, "{issue}");
    assert!(issue["column"].as_u64().is_some(), "{issue}");
}

#[test]
fn serve_refuses_to_start_on_an_invalid_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policies = broken_policy(dir.path(), |t| {
        t.replacen("[roles.admin]", "[roles.admins]", 1)
    });
    let out = run_cli(
        dir.path(),
        dir.path().join("fairseg.db").to_str().unwrap(),
        &["serve", "--addr", "127.0.0.1:0"],
        &[("FAIRSEG_POLICIES", policies.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("refusing to start on an invalid policy"),
        "{message}"
    );
    assert!(!stdout(&out).contains("serving"));
}

#[tokio::test]
async fn user_add_creates_an_account_from_the_environment_password() {
    let app = spawn_app().await;
    let out = app.cli_with(
        &[
            "user",
            "add",
            "--email",
            "ops@example.test",
            "--role",
            "compliance",
            "--json",
        ],
        &[("FAIRSEG_PASSWORD", "a perfectly fine passphrase")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let created: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(created["role"], "compliance");
    let token = crate::helpers::api_client()
        .post(app.url("/api/v1/auth/token"))
        .json(&serde_json::json!({"email": "ops@example.test", "password": "a perfectly fine passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let trail = app.trail("action=user.created").await;
    assert!(trail[0]["actor"].as_str().unwrap().starts_with("cli:"));

    let out = app.cli_with(
        &[
            "user",
            "add",
            "--email",
            "x@example.test",
            "--role",
            "superuser",
        ],
        &[("FAIRSEG_PASSWORD", "a perfectly fine passphrase")],
    );
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.starts_with("fairseg: error:") && message.contains("superuser"),
        "{message}"
    );

    // No password and no terminal: a clear refusal, not a hang.
    let out = app.cli(&[
        "user",
        "add",
        "--email",
        "y@example.test",
        "--role",
        "analyst",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("FAIRSEG_PASSWORD"));
}

#[test]
fn migrate_reports_an_up_to_date_database() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let out = run_cli(dir.path(), &database.url, &["migrate", "--json"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(report["database"].is_string());
    let applied = report["applied"].as_array().unwrap();
    assert!(
        !applied.is_empty(),
        "a new database gets every migration: {report}"
    );
    let out = run_cli(dir.path(), &database.url, &["migrate", "--json"], &[]);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        report["applied"],
        serde_json::json!([]),
        "nothing left to apply"
    );
}

#[test]
fn trail_verify_refuses_a_database_that_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo.db");
    let out = run_cli(
        dir.path(),
        missing.to_str().unwrap(),
        &["trail", "verify"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no database"), "{}", stderr(&out));
    assert!(!missing.exists(), "nothing was created");
}

#[test]
fn a_bad_database_url_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(dir.path(), "mysql://nope", &["migrate"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("database-url"), "{}", stderr(&out));
}

#[test]
fn demo_sets_up_a_database_with_one_account_per_role_and_never_overwrites_a_real_one() {
    let dir = tempfile::tempdir().unwrap();
    let demo_db = dir.path().join("fairseg-demo.db");
    let run = |db: &Path| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fairseg"));
        command
            .args(["demo", "--no-serve", "--json"])
            .current_dir(dir.path())
            .env("FAIRSEG_POLICIES", policies_dir())
            .env("FAIRSEG_DATABASE_URL", db)
            .env_remove("FAIRSEG_SIGNING_KEY");
        command.output().unwrap()
    };
    let out = run(&demo_db);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let users = report["users"].as_array().unwrap();
    let roles: Vec<&str> = users.iter().map(|u| u["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["admin", "compliance", "marketing", "analyst"]);
    assert!(
        users
            .iter()
            .all(|u| u["password"].as_str().unwrap().len() >= 12)
    );
    assert!(demo_db.exists());
    // The first run segments on the planted proxy: the audit fails, says why, and the run is
    // not published; the second leaves the proxy out and is published for marketing.
    let runs = report["segmentations"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{report}");
    assert_eq!(runs[0]["audit"]["verdict"], "fail", "{}", runs[0]);
    let reason = runs[0]["audit"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("home_store") && reason.contains("ethnicity"),
        "{reason}"
    );
    assert_eq!(runs[0]["published"], false);
    assert_ne!(runs[1]["audit"]["verdict"], "fail", "{}", runs[1]);
    assert_eq!(runs[1]["published"], true);
    // The demo shows consent-selection bias and a clean objection check over its export.
    assert!(
        report["consent_selection"]
            .as_str()
            .is_some_and(|h| h.starts_with("The consented population")),
        "{report}"
    );
    assert_eq!(report["objection_check"]["disclosures"], 1, "{report}");
    assert_eq!(report["objection_check"]["clean"], true, "{report}");
    // The compliance officer signed off the published run's audit: a frozen, intact report.
    let signed =
        fairseg::db::Db::open(&fairseg::db::DatabaseUrl::parse(demo_db.to_str().unwrap()).unwrap())
            .unwrap()
            .read(|c| fairseg::db::signoffs::of_audit(c, runs[1]["audit"]["id"].as_i64().unwrap()))
            .unwrap();
    assert_eq!(signed.len(), 1, "{report}");
    assert_eq!(signed[0].signed_by, fairseg::app::demo::DEMO_COMPLIANCE);

    // Run again: the demo database is replaced, with new passwords.
    let again = run(&demo_db);
    assert!(again.status.success(), "{}", stderr(&again));
    let report2: Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_ne!(
        report["users"][0]["password"],
        report2["users"][0]["password"]
    );

    // A database that `demo` did not make is left alone.
    let real = dir.path().join("real.db");
    let out = run_cli(dir.path(), real.to_str().unwrap(), &["migrate"], &[]);
    assert!(out.status.success());
    let out = run(&real);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("was not made by `fairseg demo`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn demo_fills_a_fresh_database_of_either_backend_and_never_one_with_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let demo = |url: &str| {
        run_cli(
            dir.path(),
            url,
            &["demo", "--no-serve", "--json", "--customers", "3000"],
            &[],
        )
    };
    let out = demo(&database.url);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["data"]["customers"], 3000, "{report}");
    let runs = report["segmentations"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{report}");
    assert_eq!(runs[1]["published"], true, "{report}");
    // The demo's accounts sign in to a server on that database.
    let compliance = report["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["role"] == "compliance")
        .unwrap()
        .clone();
    let db =
        fairseg::db::Db::open(&fairseg::db::DatabaseUrl::parse(&database.url).unwrap()).unwrap();
    let users = db.read(fairseg::db::users::UserRow::count).unwrap();
    assert_eq!(users, 4);
    assert_eq!(compliance["email"], fairseg::app::demo::DEMO_COMPLIANCE);

    // A PostgreSQL database with accounts is never filled (the demo drops no PostgreSQL
    // database); the SQLite demo file is replaced, as the test above shows.
    let real = TestDatabase::new(dir.path());
    if crate::helpers::on_postgres() {
        let out = run_cli(dir.path(), &real.url, &["migrate"], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = run_cli(
            dir.path(),
            &real.url,
            &[
                "user",
                "add",
                "--email",
                "a@example.org",
                "--role",
                "analyst",
            ],
            &[("FAIRSEG_PASSWORD", "a long enough password")],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let out = demo(&real.url);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("already has accounts"),
            "{}",
            stderr(&out)
        );
        let db =
            fairseg::db::Db::open(&fairseg::db::DatabaseUrl::parse(&real.url).unwrap()).unwrap();
        assert_eq!(db.read(fairseg::db::users::UserRow::count).unwrap(), 1);
    }
}
