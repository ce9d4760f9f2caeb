//! Several `fairseg serve` processes on one database: queued runs executed once each by any
//! of them, a killed process's run ended by another once its lease expires, the KPI schedule
//! evaluating a period once across processes and restarts, sign-in throttling shared.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use diesel::prelude::*;
use fairseg::db::schema::{segmentation_runs, trail};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, TestApp, api_client, eventually, policies_dir, spawn_app_with};
use crate::segmentation::{blob_customers, grant_all, import};

/// A `fairseg serve` process of the built binary; killed when dropped.
pub struct Server {
    child: Child,
    pub address: String,
    log: std::path::PathBuf,
}

impl Server {
    /// Starts a server on `app`'s database on a free port, with short leases; `env` adds or
    /// overrides settings.
    pub fn start(app: &TestApp, name: &str, env: &[(&str, &str)]) -> Server {
        let dir = app.dir.path();
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_fairseg"));
        command
            .args(["serve", "--addr", "127.0.0.1:0"])
            .current_dir(dir)
            .env("FAIRSEG_DATABASE_URL", &app.database.url)
            .env("FAIRSEG_POLICIES", policies_dir())
            .env("FAIRSEG_PUBLIC_URL", "http://127.0.0.1:8080")
            .env("FAIRSEG_SPOOL_DIR", dir.join(format!("{name}-spool")))
            .env("FAIRSEG_KPI_SCHEDULE", "off")
            .env("FAIRSEG_WORKERS", "1")
            .env("FAIRSEG_JOB_LEASE_SECONDS", "3")
            .env("FAIRSEG_JOB_HEARTBEAT_SECONDS", "1")
            .env("FAIRSEG_JOB_POLL_MS", "100")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            ));
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
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
            .unwrap_or_else(|| {
                panic!(
                    "{name} did not say where it serves: {line}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_string();
        Server {
            child,
            address: format!("http://{address}"),
            log,
        }
    }

    fn api(
        &self,
        app: &TestApp,
        role: &str,
        method: Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        api_client()
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(app.token(role))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no drain, no goodbye.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The test's own server runs no worker and no schedule, and ends no other's runs (its
/// heartbeat looks once, at start): only the processes started here do.
pub async fn cluster_app() -> TestApp {
    let app = spawn_app_with(|s| {
        s.jobs.workers = 0;
        s.jobs.heartbeat = Duration::from_secs(3600);
    })
    .await;
    let (customers, truth) = blob_customers(10, 3);
    import(&app, "customers", &customers);
    grant_all(&app, truth.len(), &["segmentation"]);
    app
}

async fn queue_run(app: &TestApp, server: &Server) -> i64 {
    let body = server
        .api(app, "analyst", Method::POST, "/api/v1/segmentations")
        .json(&json!({"algorithm": "kmeans", "k": 3, "features": ["x", "y"]}))
        .expecting(202)
        .await;
    body["run_id"].as_i64().unwrap()
}

/// `(action, subject) -> [detail]` of the trail entries whose action starts with `prefix`.
pub fn trail_of(app: &TestApp, prefix: &str) -> BTreeMap<(String, String), Vec<Value>> {
    let rows: Vec<(String, String, String)> = app
        .db
        .read(|c| {
            Ok(trail::table
                .filter(trail::action.like(format!("{prefix}%")))
                .order(trail::seq.asc())
                .select((trail::action, trail::subject, trail::detail))
                .load(c)?)
        })
        .unwrap();
    let mut out: BTreeMap<_, Vec<Value>> = BTreeMap::new();
    for (action, subject, detail) in rows {
        out.entry((action, subject))
            .or_default()
            .push(serde_json::from_str(&detail).unwrap());
    }
    out
}

pub fn statuses(app: &TestApp) -> BTreeMap<i64, (String, Option<String>, Option<String>)> {
    app.db
        .read(|c| {
            Ok(segmentation_runs::table
                .select((
                    segmentation_runs::id,
                    segmentation_runs::status,
                    segmentation_runs::worker_id,
                    segmentation_runs::error,
                ))
                .load::<(i64, String, Option<String>, Option<String>)>(c)?)
        })
        .unwrap()
        .into_iter()
        .map(|(id, status, worker, error)| (id, (status, worker, error)))
        .collect()
}

pub fn trail_verifies(app: &TestApp) {
    let out = app.cli(&["trail", "verify"]);
    assert!(
        out.status.success(),
        "{}{}",
        crate::helpers::stdout(&out),
        crate::helpers::stderr(&out)
    );
}

#[tokio::test]
async fn runs_queued_through_two_servers_are_each_executed_once() {
    let app = cluster_app().await;
    let servers = [Server::start(&app, "a", &[]), Server::start(&app, "b", &[])];
    let mut runs = Vec::new();
    for _ in 0..10 {
        for server in &servers {
            runs.push(queue_run(&app, server).await);
        }
    }
    let finished = eventually("all 20 runs finish", Duration::from_secs(50), || async {
        let all = statuses(&app);
        runs.iter()
            .all(|id| !matches!(all[id].0.as_str(), "queued" | "running"))
            .then_some(all)
    })
    .await;
    for id in &runs {
        assert!(
            matches!(finished[id].0.as_str(), "draft" | "audited"),
            "run {id}: {:?}",
            finished[id]
        );
    }
    let trail = trail_of(&app, "segmentation.");
    let mut workers = BTreeSet::new();
    for id in &runs {
        let subject = format!("run:{id}");
        let claims = &trail[&("segmentation.claimed".to_string(), subject.clone())];
        assert_eq!(claims.len(), 1, "run {id} claimed once: {claims:?}");
        let worker = claims[0]["worker"].as_str().unwrap();
        assert_eq!(finished[id].1.as_deref(), Some(worker));
        workers.insert(worker.to_owned());
        assert_eq!(
            trail[&("segmentation.completed".to_string(), subject.clone())].len(),
            1,
            "run {id} completed once"
        );
        assert!(!trail.contains_key(&("segmentation.failed".to_string(), subject)));
    }
    assert_eq!(workers.len(), 2, "both servers executed runs: {workers:?}");
    trail_verifies(&app);
}

#[tokio::test]
async fn a_run_of_a_killed_server_is_failed_by_the_other_once_its_lease_expires() {
    let app = cluster_app().await;
    // A holds its run long enough to be killed mid-run.
    let mut a = Server::start(&app, "a", &[("FAIRSEG_DEBUG_RUN_DELAY_MS", "60000")]);
    let run = queue_run(&app, &a).await;
    let worker = eventually(
        "server a executes the run",
        Duration::from_secs(20),
        || async {
            let (status, worker, _) = statuses(&app)[&run].clone();
            (status == "running").then_some(worker).flatten()
        },
    )
    .await;
    let b = Server::start(&app, "b", &[]);
    a.kill();
    let failed = eventually(
        "server b fails the run",
        Duration::from_secs(30),
        || async {
            let (status, _, error) = statuses(&app)[&run].clone();
            (status == "failed").then_some(error).flatten()
        },
    )
    .await;
    assert!(
        failed.contains(&format!(
            "the server executing it stopped (worker {worker}, lease expired at"
        )),
        "{failed}"
    );
    let trail = trail_of(&app, "segmentation.");
    let subject = format!("run:{run}");
    assert_eq!(
        trail[&("segmentation.failed".into(), subject.clone())].len(),
        1
    );
    assert!(!trail.contains_key(&("segmentation.completed".into(), subject)));
    let (_, view) = b
        .api(
            &app,
            "analyst",
            Method::GET,
            &format!("/api/v1/segmentations/{run}"),
        )
        .answer()
        .await;
    assert_eq!(view["status"], "failed");
    assert!(view["segments"].as_array().unwrap().is_empty());

    // The queue goes on: a run queued now is executed by the server left.
    let next = queue_run(&app, &b).await;
    let status = eventually(
        "server b executes the next run",
        Duration::from_secs(30),
        || async {
            let (status, _, _) = statuses(&app)[&next].clone();
            (!matches!(status.as_str(), "queued" | "running")).then_some(status)
        },
    )
    .await;
    assert!(matches!(status.as_str(), "draft" | "audited"), "{status}");
    trail_verifies(&app);
}

#[tokio::test]
async fn a_serve_only_server_ends_the_run_of_a_killed_one_once_its_lease_expires() {
    let app = cluster_app().await;
    let mut worker = Server::start(&app, "worker", &[("FAIRSEG_DEBUG_RUN_DELAY_MS", "60000")]);
    let run = queue_run(&app, &worker).await;
    eventually(
        "the worker executes the run",
        Duration::from_secs(20),
        || async { (statuses(&app)[&run].0 == "running").then_some(()) },
    )
    .await;
    let serving = Server::start(&app, "serving", &[("FAIRSEG_WORKERS", "0")]);
    worker.kill();
    let failed = eventually(
        "the serve-only server fails the run",
        Duration::from_secs(30),
        || async {
            let (status, _, error) = statuses(&app)[&run].clone();
            (status == "failed").then_some(error).flatten()
        },
    )
    .await;
    assert!(
        failed.contains("the server executing it stopped"),
        "{failed}"
    );
    let trail = trail_of(&app, "segmentation.failed");
    assert_eq!(
        trail[&("segmentation.failed".into(), format!("run:{run}"))].len(),
        1
    );
    assert!(
        !serving.log().contains("run workers started"),
        "{}",
        serving.log()
    );
    trail_verifies(&app);
}

/// On PostgreSQL a queued run wakes the idle workers of every process at once (LISTEN/NOTIFY):
/// a server whose workers would look at the queue again only in a minute executes a run
/// queued through another server well before. On SQLite the workers' poll finds it.
#[tokio::test]
async fn a_run_queued_through_one_server_wakes_the_idle_workers_of_another() {
    let app = cluster_app().await;
    let poll = if crate::helpers::on_postgres() {
        "60000"
    } else {
        "100"
    };
    let front = Server::start(&app, "front", &[("FAIRSEG_WORKERS", "0")]);
    let back = Server::start(&app, "back", &[("FAIRSEG_JOB_POLL_MS", poll)]);
    // The back server's worker has looked once (at start) and found nothing.
    eventually(
        "the back server's worker starts",
        Duration::from_secs(20),
        || async { back.log().contains("run workers started").then_some(()) },
    )
    .await;
    let run = queue_run(&app, &front).await;
    let (status, worker, _) = eventually(
        "the back server executes the run",
        Duration::from_secs(30),
        || async {
            let now = statuses(&app)[&run].clone();
            (!matches!(now.0.as_str(), "queued" | "running")).then_some(now)
        },
    )
    .await;
    assert!(matches!(status.as_str(), "draft" | "audited"), "{status}");
    let trail = trail_of(&app, "segmentation.claimed");
    let claims = &trail[&("segmentation.claimed".into(), format!("run:{run}"))];
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0]["worker"].as_str(), worker.as_deref());
    assert!(
        back.log().contains(worker.as_deref().unwrap()),
        "{}",
        back.log()
    );
}

/// How many times `server`'s log says its scheduled evaluation ran (made or left to another).
fn schedule_ticks(server: &Server) -> usize {
    let log = server.log();
    log.matches("scheduled KPI evaluation appended").count()
        + log
            .matches("scheduled KPI evaluation already made or claimed")
            .count()
        + log.matches("scheduled KPI evaluation failed").count()
}

#[tokio::test]
async fn the_scheduled_kpi_evaluation_of_a_period_is_made_once_across_servers_and_restarts() {
    let app = cluster_app().await;
    let daily = [("FAIRSEG_KPI_SCHEDULE", "daily"), ("FAIRSEG_WORKERS", "0")];
    let a = Server::start(&app, "a", &daily);
    let mut b = Server::start(&app, "b", &daily);
    for server in [&a, &b] {
        eventually("the schedule ticks", Duration::from_secs(30), || async {
            (schedule_ticks(server) >= 1).then_some(())
        })
        .await;
    }
    b.kill();
    let b = Server::start(&app, "b", &daily);
    eventually(
        "the restarted schedule ticks",
        Duration::from_secs(30),
        || async {
            // The log file is appended to: the first run's line is there too.
            (schedule_ticks(&b) >= 2).then_some(())
        },
    )
    .await;
    for server in [&a, &b] {
        assert!(
            !server.log().contains("scheduled KPI evaluation failed"),
            "{}",
            server.log()
        );
    }
    let evaluated = trail_of(&app, "kpi.evaluated");
    let entries: Vec<&Value> = evaluated.values().flatten().collect();
    assert_eq!(entries.len(), 1, "one evaluation: {entries:?}");
    let rows: Vec<(String, String, Option<String>, Option<i64>)> = app
        .db
        .read(|c| {
            use fairseg::db::schema::kpi_evaluations as k;
            Ok(k::table
                .select((k::period_kind, k::evaluated_by, k::worker_id, k::claim_id))
                .load(c)?)
        })
        .unwrap();
    assert!(!rows.is_empty());
    let made_by: BTreeSet<_> = rows.iter().map(|r| (r.2.clone(), r.3)).collect();
    assert_eq!(made_by.len(), 1, "{made_by:?}");
    let (worker, claim) = made_by.into_iter().next().unwrap();
    assert_eq!(worker.as_deref(), entries[0]["worker"].as_str());
    assert_eq!(claim, entries[0]["schedule_claim"].as_i64());
    // The API says it too.
    let log = app.get_ok("analyst", "/api/v1/kpi/evaluations").await;
    let first = &log.as_array().unwrap()[0];
    assert_eq!(first["evaluated_on"].as_str(), worker.as_deref(), "{first}");
    assert_eq!(first["schedule_claim"].as_i64(), claim, "{first}");
    trail_verifies(&app);
}

#[tokio::test]
async fn wrong_passwords_spread_over_two_servers_throttle_the_account_on_both() {
    let app = spawn_app_with(|s| s.jobs.workers = 0).await;
    let zero = [("FAIRSEG_WORKERS", "0")];
    let servers = [
        Server::start(&app, "a", &zero),
        Server::start(&app, "b", &zero),
    ];
    let attempt = |server: &Server, password: &str| {
        let request = api_client()
            .post(format!("{}/api/v1/auth/token", server.address))
            .json(&json!({"email": "analyst@example.test", "password": password}));
        async move { request.send().await.unwrap() }
    };
    for i in 0..fairseg::auth::throttle::FREE_ATTEMPTS as usize {
        let answer = attempt(&servers[i % 2], "wrong password").await;
        assert_eq!(answer.status(), 401, "attempt {i}");
    }
    for server in &servers {
        // Even the right password waits out the lock-out, on either server.
        let answer = attempt(server, crate::helpers::PASSWORD).await;
        assert_eq!(answer.status(), 429);
        let retry: u64 = answer.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }
}

#[tokio::test]
async fn a_server_sent_sigterm_finishes_its_run_then_exits() {
    let app = cluster_app().await;
    let mut a = Server::start(&app, "a", &[("FAIRSEG_DEBUG_RUN_DELAY_MS", "2000")]);
    let run = queue_run(&app, &a).await;
    eventually(
        "server a executes the run",
        Duration::from_secs(20),
        || async { (statuses(&app)[&run].0 == "running").then_some(()) },
    )
    .await;
    let term = Command::new("kill")
        .args(["-TERM", &a.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exit =
        crate::helpers::poll_blocking(Duration::from_secs(30), || a.child.try_wait().unwrap())
            .expect("the server exits after draining");
    assert!(exit.success(), "{exit:?}\n{}", a.log());
    let (status, _, error) = statuses(&app)[&run].clone();
    assert!(
        matches!(status.as_str(), "draft" | "audited"),
        "{status} {error:?}"
    );
    assert_eq!(
        trail_of(&app, "segmentation.completed")
            [&("segmentation.completed".into(), format!("run:{run}"))]
            .len(),
        1
    );
}

/// The activation links of the segments dashboard ("Email: 10 of 10 reachable"), in order.
fn export_links(page: &str) -> Vec<String> {
    page.split("class=\"export\"")
        .skip(1)
        .filter_map(|rest| {
            let text = rest.split_once("download>")?.1;
            Some(text.split_once("</a>")?.0.trim().to_owned())
        })
        .collect()
}

/// On PostgreSQL each server keeps what its dashboards read while the database shows the
/// same data (`app::kept::Shown`, whose rules its unit tests check). A kept page must still
/// show, at its next view, what another server wrote meanwhile, and a consent grant's lapse
/// from the instant it lapses, exactly as a server that keeps nothing shows it. (Any write to
/// the cluster, an automatic ANALYZE too, ends what every server kept: the lapse is checked
/// on a kept page when nothing else wrote during the wait, and on a computed one otherwise.)
#[tokio::test]
async fn kept_pages_show_another_servers_writes_and_a_lapsed_grant_at_once() {
    use chrono::{Duration as Span, Utc};
    let app = cluster_app().await;
    let request = fairseg::segmentation::settings::RunRequest {
        algorithm: "kmeans".into(),
        features: vec!["x".into(), "y".into()],
        k: Some(3),
        ..Default::default()
    };
    let (run, outcome) =
        crate::helpers::execute_here(&app, &fairseg::trail::Actor::system(), &request);
    outcome.unwrap();
    crate::segmentation::publish(&app, run);
    // Nothing else writes meanwhile: no worker, no lease looked after every second.
    let zero = [
        ("FAIRSEG_WORKERS", "0"),
        ("FAIRSEG_JOB_HEARTBEAT_SECONDS", "1800"),
        ("FAIRSEG_JOB_LEASE_SECONDS", "3600"),
    ];
    let (a, b) = (
        Server::start(&app, "a", &zero),
        Server::start(&app, "b", &zero),
    );
    let view = |server: &Server, path: &str| {
        let request = server.api(&app, "marketing", Method::GET, path);
        let path = path.to_owned();
        async move {
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 200, "{path}");
            answer.text().await.unwrap()
        }
    };

    // A segment renamed through b is on a's dashboard at its next view.
    for _ in 0..2 {
        assert!(!view(&a, "/segments").await.contains("Renamed through b"));
    }
    b.api(
        &app,
        "marketing",
        Method::PATCH,
        &format!("/api/v1/segmentations/{run}/segments/0"),
    )
    .json(&json!({"name": "Renamed through b"}))
    .expecting(204)
    .await;
    assert!(view(&a, "/segments").await.contains("Renamed through b"));

    // A period evaluated through b is on a's KPI overview at its next view.
    for _ in 0..2 {
        assert!(view(&a, "/kpi").await.contains("has been evaluated yet"));
    }
    b.api(&app, "analyst", Method::POST, "/api/v1/kpi/evaluate")
        .json(&json!({}))
        .expecting(201)
        .await;
    assert!(!view(&a, "/kpi").await.contains("has been evaluated yet"));

    // Every customer's e-mail grant lapses a few seconds from now: before, each segment's
    // export reaches all its members; from the lapse on, none, on a's kept page as on the page
    // of a server started afterwards.
    let lapses_at = Utc::now() + Span::seconds(10);
    let granted_at = (lapses_at - Span::days(365)).format("%Y-%m-%dT%H:%M:%SZ");
    let mut grants = String::from("customer_id,purpose,status,recorded_at\n");
    for i in 0..30 {
        grants.push_str(&format!("C{i:04},marketing_email,granted,{granted_at}\n"));
    }
    crate::segmentation::import(&app, "consents", &grants);
    let reachable = export_links(&view(&a, "/segments").await);
    assert_eq!(reachable.len(), 3, "{reachable:?}");
    assert!(
        reachable
            .iter()
            .all(|l| l.ends_with(" reachable") && !l.contains("none")),
        "{reachable:?}"
    );
    assert_eq!(export_links(&view(&a, "/segments").await), reachable);
    let wait = (lapses_at - Utc::now() + Span::seconds(1))
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait).await;
    let lapsed = export_links(&view(&a, "/segments").await);
    assert!(
        lapsed.iter().all(|l| l.contains("none of")),
        "after the lapse: {lapsed:?}"
    );
    let c = Server::start(&app, "c", &zero);
    assert_eq!(export_links(&view(&c, "/segments").await), lapsed);
    assert_eq!(export_links(&view(&b, "/segments").await), lapsed);
}
