//! A real server per test: its own database (an SQLite file, or a fresh PostgreSQL database
//! when `FAIRSEG_TEST_BACKEND=postgres`), the default policy, one account per role, and an
//! HTTP client that talks to it over TCP.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use fairseg::app::accounts;
use fairseg::auth::token::TokenKeys;
use fairseg::config::{PublicUrl, Settings};
use fairseg::db::users::UserRow;
use fairseg::db::{DatabaseUrl, Db};
use fairseg::policy::Policy;
use fairseg::startup;
use fairseg::trail::Actor;
use serde_json::Value;
use tempfile::TempDir;

pub mod api;
pub mod forms;
pub mod poll;
pub mod webdriver;

pub use api::Answer;
pub use forms::Pages;
pub use poll::{eventually, poll, poll_blocking};
pub use webdriver::Browser;

pub const PASSWORD: &str = "correct horse battery staple";
pub const ROLES: [&str; 4] = ["admin", "compliance", "marketing", "analyst"];

pub fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

pub fn on_postgres() -> bool {
    match std::env::var("FAIRSEG_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("FAIRSEG_TEST_BACKEND must be `sqlite` or `postgres`, not `{other}`"),
    }
}

/// A database of its own for one test, removed when the test ends.
pub struct TestDatabase {
    pub url: String,
    /// For PostgreSQL: the admin URL and the database to drop afterwards.
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    pub fn new(dir: &Path) -> TestDatabase {
        if !on_postgres() {
            let path = dir.join("fairseg-test.db");
            return TestDatabase {
                url: path.display().to_string(),
                postgres: None,
            };
        }
        let admin = std::env::var("FAIRSEG_TEST_PG_URL").expect(
            "FAIRSEG_TEST_BACKEND=postgres needs FAIRSEG_TEST_PG_URL, an admin URL of a running \
             server (scripts/test starts one)",
        );
        let name = format!("fairseg_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::establish(&admin)
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin}: {e}"));
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the test database");
        let (base, _) = admin
            .rsplit_once('/')
            .expect("the admin URL names a database");
        TestDatabase {
            url: format!("{base}/{name}"),
            postgres: Some((admin, name)),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.postgres
            && let Ok(mut conn) = PgConnection::establish(admin)
        {
            let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub db: Db,
    pub policy: Arc<Policy>,
    pub tokens: TokenKeys,
    pub secret: Vec<u8>,
    /// One account per role, by role name; each has `PASSWORD`.
    pub users: HashMap<&'static str, UserRow>,
    pub dir: TempDir,
    handle: ServerHandle,
    // Dropped last: the server and pool must let go of the database first.
    pub database: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop accepting at once; the runtime ending takes the workers down.
        drop(self.handle.stop(false));
    }
}

pub fn settings_for(url: &str) -> Settings {
    let mut settings = Settings::for_database(
        DatabaseUrl::parse(url).expect("valid test database URL"),
        policies_dir(),
        std::env::temp_dir().join(format!("fairseg-spool-{}", uuid::Uuid::new_v4())),
    );
    // Small limits, so that tests of the limits send small bodies.
    settings.max_body_bytes = 64 * 1024;
    settings.max_import_bytes = 1024 * 1024;
    // spawn_app_with sets the real address once the port is bound.
    settings.public_url = Some(PublicUrl::parse("http://127.0.0.1").unwrap());
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let mut settings = settings_for(&database.url);
    settings.public_url = Some(PublicUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap());
    settings.spool_dir = dir.path().join("spool");
    adjust(&mut settings);
    let policy = Policy::load(&settings.policies_dir).expect("the default policy is valid");
    let db = Db::connect(&settings.database_url).expect("connect and migrate");
    let secret = startup::prepare(&db, &policy, &settings).expect("prepare");
    let tokens = TokenKeys::new(&secret, settings.token_ttl);
    let mut users = HashMap::new();
    for role in ROLES {
        let user = accounts::create_user(
            &db,
            &policy,
            &Actor::cli(),
            &format!("{role}@example.test"),
            role,
            PASSWORD.to_string(),
        )
        .expect("seed user");
        users.insert(role, user);
    }
    let state = startup::app_state(db.clone(), policy, settings).expect("app state");
    let policy = state.policy.clone();
    let server = startup::run(listener, state).expect("server starts");
    let handle = server.handle();
    tokio::spawn(server);
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        db,
        policy,
        tokens,
        secret,
        users,
        dir,
        handle,
        database,
    }
}

/// A client that keeps cookies, as a browser does, and shows redirects rather than following
/// them, so tests see each step.
pub fn browser_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub fn api_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The CSRF token of the first form on a page.
pub fn csrf_token(html: &str) -> String {
    let doc = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse(r#"input[name="csrf_token"]"#).unwrap();
    doc.select(&selector)
        .next()
        .and_then(|e| e.value().attr("value"))
        .expect("the page has a form with a CSRF token")
        .to_string()
}

pub fn texts(html: &str, css: &str) -> Vec<String> {
    let doc = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse(css).unwrap();
    doc.select(&selector)
        .map(|e| e.text().collect::<String>().trim().to_string())
        .collect()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn user(&self, role: &str) -> UserRow {
        let id = &self.users[role].id;
        self.db
            .read(|c| UserRow::find(c, id))
            .unwrap()
            .expect("seeded user exists")
    }

    /// A fresh bearer token for the role's account, as `/api/v1/auth/token` would issue.
    pub fn token(&self, role: &str) -> String {
        let user = self.user(role);
        self.tokens.issue(&user.id, user.token_version).0
    }

    /// Signs in through the sign-in form, as a person would; the returned client carries the
    /// session cookie.
    pub async fn sign_in(&self, role: &str) -> reqwest::Client {
        let client = browser_client();
        let email = format!("{role}@example.test");
        let response = self
            .submit_sign_in(
                &client,
                &[("email", &email), ("password", PASSWORD), ("next", "/")],
            )
            .await;
        assert_eq!(response.status(), 303, "sign-in as {role} redirects home");
        client
    }

    /// Opens the sign-in page and sends its form with `fields`, as a person would.
    pub async fn submit_sign_in(
        &self,
        client: &reqwest::Client,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let page = client.page(self.url("/signin")).await;
        client.post_form(self.url("/signin"), &page, fields).await
    }

    /// The trail, newest first, as compliance reads it through the API.
    pub async fn trail(&self, query: &str) -> Vec<Value> {
        let body = self
            .get_ok("compliance", &format!("/api/v1/trail?{query}"))
            .await;
        body["entries"].as_array().unwrap().clone()
    }

    /// Runs the `fairseg` binary against this test's database and policies.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with(args, &[])
    }

    /// Runs the `fairseg` binary, which must succeed, and reads what it prints as JSON.
    pub fn cli_json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "fairseg {}: {}",
            args.join(" "),
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("fairseg {} prints JSON: {e}", args.join(" ")))
    }

    pub fn cli_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        run_cli(self.dir.path(), &self.database.url, args, env)
    }

    pub fn sql(&self, statements: &str) {
        let mut conn = self.db.conn().unwrap();
        conn.batch_execute(statements).unwrap();
    }
}

/// Creates a run and executes it in the test, held by a worker of its own so the server's
/// workers leave it: (run id, outcome).
pub fn execute_here(
    app: &TestApp,
    actor: &Actor,
    request: &fairseg::segmentation::settings::RunRequest,
) -> (
    i64,
    Result<fairseg::app::runs::RunOutcome, fairseg::app::runs::RunError>,
) {
    fairseg::app::jobs::execute_here(
        &app.db,
        &app.policy,
        fairseg::config::JobSettings::default(),
        actor,
        request,
    )
    .expect("the run is created")
}

pub fn run_cli(cwd: &Path, database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fairseg"));
    command
        .args(args)
        .current_dir(cwd)
        .env("FAIRSEG_DATABASE_URL", database_url)
        .env("FAIRSEG_POLICIES", policies_dir())
        .env("FAIRSEG_PUBLIC_URL", "http://127.0.0.1:8080")
        .env("FAIRSEG_SPOOL_DIR", cwd.join("spool"))
        .env_remove("FAIRSEG_SIGNING_KEY")
        .env_remove("FAIRSEG_PASSWORD")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the fairseg binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A customer for the data-subject request and retention tests, written straight to the
/// tables: ordinary and protected attributes (JSON objects), transactions
/// `(occurred_at, amount, order_id)` and consent events `(purpose, status, recorded_at)`.
pub struct DemoCustomer<'a> {
    pub id: &'a str,
    pub attributes: Value,
    pub protected: Value,
    pub created_at: chrono::NaiveDateTime,
    pub transactions: Vec<(chrono::NaiveDateTime, f64, Option<&'a str>)>,
    pub consents: Vec<(&'a str, &'a str, chrono::NaiveDateTime)>,
}

impl TestApp {
    /// Inserts one customer (see `DemoCustomer`) and returns their pseudonym.
    pub fn insert_demo_customer(&self, c: DemoCustomer<'_>) -> String {
        use diesel::prelude::*;
        use fairseg::db::customers::{IdTable, next_id};
        use fairseg::db::schema::{consent_events, customer_protected, customers, transactions};
        let pseudonym = startup::pseudonymizer(&self.db)
            .unwrap()
            .pseudonym(&fairseg::customers::CustomerId::parse(c.id).unwrap());
        self.db
            .write::<_, fairseg::db::DbError>(|conn| {
                let id = next_id(conn, IdTable::Customers)?;
                diesel::insert_into(customers::table)
                    .values((
                        customers::id.eq(id),
                        customers::external_id.eq(c.id),
                        customers::pseudonym.eq(&pseudonym),
                        customers::attributes.eq(c.attributes.to_string()),
                        customers::created_at.eq(c.created_at),
                        customers::updated_at.eq(c.created_at),
                    ))
                    .execute(conn)?;
                diesel::insert_into(customer_protected::table)
                    .values((
                        customer_protected::customer_id.eq(id),
                        customer_protected::attributes.eq(c.protected.to_string()),
                    ))
                    .execute(conn)?;
                for (at, amount, order) in &c.transactions {
                    let tid = next_id(conn, IdTable::Transactions)?;
                    diesel::insert_into(transactions::table)
                        .values((
                            transactions::id.eq(tid),
                            transactions::customer_id.eq(id),
                            transactions::occurred_at.eq(*at),
                            transactions::amount.eq(*amount),
                            transactions::quantity.eq(Some(1i64)),
                            transactions::order_id.eq(*order),
                            transactions::imported_at.eq(*at),
                        ))
                        .execute(conn)?;
                }
                let first_event_id = next_id(conn, IdTable::ConsentEvents)?;
                for (purpose, status, at) in &c.consents {
                    let eid = next_id(conn, IdTable::ConsentEvents)?;
                    diesel::insert_into(consent_events::table)
                        .values((
                            consent_events::id.eq(eid),
                            consent_events::customer_id.eq(id),
                            consent_events::purpose.eq(*purpose),
                            consent_events::status.eq(*status),
                            consent_events::recorded_at.eq(*at),
                            consent_events::source.eq(Some("test")),
                            consent_events::notice_version.eq(None::<String>),
                            consent_events::recorded_by.eq("test"),
                            consent_events::entered_at.eq(*at),
                        ))
                        .execute(conn)?;
                }
                fairseg::db::consent_state::apply_events_from(conn, first_event_id)?;
                Ok(())
            })
            .unwrap();
        pseudonym
    }
}

impl TestApp {
    /// Puts a customer on file directly (no import): the next free id, the server's pseudonym
    /// for `external_id`, and `attributes` (a JSON object). Returns the internal id.
    pub fn add_customer(&self, external_id: &str, attributes: &str) -> i64 {
        use diesel::prelude::*;
        use fairseg::db::schema::customers;
        let pseudonyms = startup::pseudonymizer(&self.db).expect("pseudonym key");
        let pseudonym = pseudonyms.pseudonym(
            &fairseg::customers::CustomerId::parse(external_id).expect("a valid customer id"),
        );
        self.db
            .write::<_, fairseg::db::DbError>(|conn| {
                let id = fairseg::db::customers::next_id(
                    conn,
                    fairseg::db::customers::IdTable::Customers,
                )?;
                let now = fairseg::db::now();
                diesel::insert_into(customers::table)
                    .values((
                        customers::id.eq(id),
                        customers::external_id.eq(external_id),
                        customers::pseudonym.eq(&pseudonym),
                        customers::attributes.eq(attributes),
                        customers::created_at.eq(now),
                        customers::updated_at.eq(now),
                    ))
                    .execute(conn)?;
                Ok(id)
            })
            .expect("insert a customer")
    }
}
