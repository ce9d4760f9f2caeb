//! deploy/nginx.conf, as shipped, in front of two `fairseg serve` processes on one database:
//! a person signs in through the proxy and stays signed in whichever process answers,
//! requests land on both, and a run queued through the proxy is executed once.
//!
//! Needs nginx (scripts/test installs `nginx-light`); without it the test is skipped, unless
//! `CI` is set, where a missing nginx fails it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::cluster::{Server, cluster_app, statuses, trail_of, trail_verifies};
use crate::helpers::{Answer, PASSWORD, Pages, api_client, browser_client, eventually, poll};

/// nginx from the PATH or where Debian puts it.
fn nginx_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/sbin/nginx");
        debian.is_file().then_some(debian)
    })
}

/// A free TCP port of 127.0.0.1 (free when asked; nginx binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `text` with `from` replaced by `to`, which must occur exactly once: the test runs the
/// shipped file, changing only its addresses and paths.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "deploy/nginx.conf should contain `{from}` once"
    );
    text.replacen(from, to, 1)
}

/// nginx running deploy/nginx.conf in the foreground (one process, so killing it stops it
/// all); stopped when dropped.
struct Nginx {
    child: Child,
    address: String,
    access_log: PathBuf,
    error_log: PathBuf,
}

impl Nginx {
    fn start(binary: &Path, dir: &Path, port: u16, upstreams: [&str; 2]) -> Nginx {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf"),
        )
        .unwrap();
        let access_log = dir.join("nginx-access.log");
        let error_log = dir.join("nginx-error.log");
        let mut site = replace_once(&shipped, "listen 80;", &format!("listen 127.0.0.1:{port};"));
        site = replace_once(&site, "10.0.0.11:8080", upstreams[0]);
        site = replace_once(&site, "10.0.0.12:8080", upstreams[1]);
        site = replace_once(
            &site,
            "/var/log/nginx/fairseg.access.log",
            &access_log.display().to_string(),
        );
        std::fs::write(dir.join("fairseg-site.conf"), site).unwrap();
        // What a distribution's nginx.conf provides around a site, with every path in `dir`.
        let temp = dir.join("nginx-temp");
        std::fs::create_dir_all(&temp).unwrap();
        let main = format!(
            "daemon off;\nmaster_process off;\npid {pid};\nerror_log {err} info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n\
               fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n\
               scgi_temp_path {t}/scgi;\n  include {site};\n}}\n",
            pid = dir.join("nginx.pid").display(),
            err = error_log.display(),
            t = temp.display(),
            site = dir.join("fairseg-site.conf").display(),
        );
        let main_path = dir.join("nginx.conf");
        std::fs::write(&main_path, main).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(&main_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Nginx {
            child,
            address: format!("http://127.0.0.1:{port}"),
            access_log,
            error_log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// How many requests of the access log each upstream answered.
    fn answered_by(&self, upstream: &str) -> usize {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(&format!("upstream={upstream} ")))
            .count()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn two_servers_behind_nginx_share_sessions_and_execute_a_run_once() {
    let Some(binary) = nginx_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "nginx is missing (scripts/test installs nginx-light)"
        );
        eprintln!("skipped: nginx is not installed");
        return;
    };
    let app = cluster_app().await;
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let env = [
        ("FAIRSEG_PUBLIC_URL", public.as_str()),
        ("FAIRSEG_TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    let servers = [
        Server::start(&app, "a", &env),
        Server::start(&app, "b", &env),
    ];
    let upstreams: Vec<String> = servers
        .iter()
        .map(|s| s.address.trim_start_matches("http://").to_string())
        .collect();
    let nginx = Nginx::start(
        &binary,
        app.dir.path(),
        port,
        [&upstreams[0], &upstreams[1]],
    );
    eventually("nginx answers", Duration::from_secs(20), || async {
        let answered = api_client().get(nginx.url("/signin")).send().await.ok()?;
        (answered.status() == 200).then_some(())
    })
    .await;
    // nginx writes its access log line after the response, so the line may trail it.
    let logged = poll(Duration::from_secs(10), || async {
        (nginx.answered_by(&upstreams[0]) + nginx.answered_by(&upstreams[1]) >= 1).then_some(())
    })
    .await;
    assert!(
        logged.is_some(),
        "{}",
        std::fs::read_to_string(&nginx.error_log).unwrap_or_default()
    );

    // Sign in through the proxy; the session holds on every page whichever process answers.
    let person = browser_client();
    let page = person.page(nginx.url("/signin")).await;
    let signed_in = person
        .post_form(
            nginx.url("/signin"),
            &page,
            &[
                ("email", "analyst@example.test"),
                ("password", PASSWORD),
                ("next", "/"),
            ],
        )
        .await;
    assert_eq!(signed_in.status(), 303);
    for _ in 0..12 {
        let (status, html) = person.page_with_status(nginx.url("/segments")).await;
        assert_eq!(status, 200, "signed in on every process: {html}");
        assert!(
            !html.contains("name=\"password\""),
            "not sent back to sign in"
        );
    }
    for upstream in &upstreams {
        let logged = poll(Duration::from_secs(10), || async {
            (nginx.answered_by(upstream) >= 3).then_some(())
        })
        .await;
        assert!(
            logged.is_some(),
            "requests land on {upstream} too:\n{}",
            std::fs::read_to_string(&nginx.access_log).unwrap_or_default()
        );
    }

    // A run queued through the proxy is executed once, by one of the two.
    let queued = api_client()
        .request(Method::POST, nginx.url("/api/v1/segmentations"))
        .bearer_auth(app.token("analyst"))
        .json(&json!({"algorithm": "kmeans", "k": 3, "features": ["x", "y"]}))
        .expecting(202)
        .await;
    let run = queued["run_id"].as_i64().unwrap();
    let (status, worker, _) = eventually("the run finishes", Duration::from_secs(60), || async {
        let now = statuses(&app)[&run].clone();
        (!matches!(now.0.as_str(), "queued" | "running")).then_some(now)
    })
    .await;
    assert!(matches!(status.as_str(), "draft" | "audited"), "{status}");
    let trail = trail_of(&app, "segmentation.");
    let subject = format!("run:{run}");
    let claims = &trail[&("segmentation.claimed".to_string(), subject.clone())];
    assert_eq!(claims.len(), 1, "claimed once: {claims:?}");
    assert_eq!(claims[0]["worker"].as_str(), worker.as_deref());
    assert_eq!(
        trail[&("segmentation.completed".to_string(), subject)].len(),
        1
    );
    let (answered, view) = api_client()
        .get(nginx.url(&format!("/api/v1/segmentations/{run}")))
        .bearer_auth(app.token("analyst"))
        .answer()
        .await;
    assert_eq!(answered, 200);
    // The run's audit follows its completion, so the view may already be a step further.
    let seen = view["status"].as_str().unwrap_or_default();
    assert!(
        seen == status || (status == "draft" && seen == "audited"),
        "{seen} after {status}"
    );
    trail_verifies(&app);
}
