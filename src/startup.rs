//! Builds the application: the shared state (`web::state`), middleware, routes, and the HTTP
//! server.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use rand::RngCore;
use serde_json::json;
use tracing_actix_web::TracingLogger;

use crate::auth::csrf::CsrfKey;
use crate::auth::token::TokenKeys;
use crate::config::Settings;
use crate::customers::{PSEUDONYM_KEY_SECRET, Pseudonymizer};
use crate::db::{Db, DbResult, secrets, trail as trail_store};
use crate::policy::Policy;
use crate::trail::{Actor, NewEntry};
use crate::web::access::{self, RouteIndex};
use crate::web::admission::{self, Admission};
use crate::web::error::AppError;
use crate::web::hardening;
use crate::web::metrics::{self, Metrics};
use crate::web::routes;
use crate::web::state::AppState;

const SIGNING_KEY_SECRET: &str = "token_signing_key";

/// Records the policy version in force (its text is kept the first time it is seen) and
/// returns the token signing secret: from settings, or generated and kept on first run.
pub fn prepare(db: &Db, policy: &Policy, settings: &Settings) -> anyhow::Result<Vec<u8>> {
    db.write(|conn| -> DbResult<()> {
        if trail_store::record_policy_version(conn, policy)? {
            trail_store::append(
                conn,
                NewEntry::new(
                    &Actor::system(),
                    "policy.loaded",
                    &policy.version,
                    json!({"name": policy.meta.name, "file": policy.path.display().to_string()}),
                ),
                &policy.version,
            )?;
        }
        Ok(())
    })
    .context("recording the policy version")?;
    if let Some(key) = &settings.signing_key {
        return Ok(key.expose().to_vec());
    }
    let (key, created) = db
        .write(|conn| -> DbResult<_> {
            let (key, created) = secrets::get_or_create(conn, SIGNING_KEY_SECRET, || {
                let mut bytes = [0u8; 64];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                hex::encode(bytes)
            })?;
            if created {
                trail_store::append(
                    conn,
                    NewEntry::new(
                        &Actor::system(),
                        "server.signing_key_generated",
                        SIGNING_KEY_SECRET,
                        json!({}),
                    ),
                    &policy.version,
                )?;
            }
            Ok((key, created))
        })
        .context("loading the token signing key")?;
    if created {
        tracing::info!("generated a token signing key and stored it in the database");
    }
    Ok(key.into_bytes())
}

/// The customer pseudonymizer, its key generated and kept on first use. The CLI and the server
/// share it through the database, so both name a customer by the same pseudonym.
pub fn pseudonymizer(db: &Db) -> anyhow::Result<Pseudonymizer> {
    let (key, _) = db
        .write(|conn| {
            secrets::get_or_create(conn, PSEUDONYM_KEY_SECRET, || {
                let mut bytes = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                hex::encode(bytes)
            })
        })
        .context("loading the customer pseudonym key")?;
    Ok(Pseudonymizer::new(key.as_bytes()))
}

/// Builds the state every handler shares: the spool directory cleared, the policy version
/// recorded, the keys loaded, the run queue and the KPI schedule started.
pub fn app_state(db: Db, policy: Policy, settings: Settings) -> anyhow::Result<AppState> {
    let public_url = settings.require_public_url()?.clone();
    let removed = crate::imports::spool::prepare(&settings.spool_dir)?;
    if removed > 0 {
        tracing::warn!(
            removed,
            dir = %settings.spool_dir.display(),
            "removed uploads left in the spool directory by a server that stopped mid-import"
        );
    }
    let secret = prepare(&db, &policy, &settings)?;
    let policy = Arc::new(policy);
    let jobs = crate::app::jobs::Jobs::start(
        db.clone(),
        policy.clone(),
        settings.jobs,
        after_segmentation_run,
    )?;
    crate::app::kpis::spawn_schedule(
        db.clone(),
        policy.clone(),
        settings.kpi_schedule,
        jobs.worker_id().clone(),
    );
    let admission = admission(&settings, &db);
    Ok(AppState {
        jobs,
        pseudonyms: pseudonymizer(&db)?,
        tokens: TokenKeys::new(&secret, settings.token_ttl),
        csrf: CsrfKey::new(&secret),
        preference_links: crate::consent::link::PreferenceLinks::new(&secret),
        db,
        policy,
        metrics: Metrics::default(),
        admission,
        routes: RouteIndex::new(&routes::table()),
        settings,
        public_url,
    })
}

/// The read queue: the configured size, else twice the cores (a request spends part of its
/// time waiting on SQLite's file or PostgreSQL's socket), never more than the database pool has
/// connections to lend, so that no admitted request waits in the pool's unordered queue.
fn admission(settings: &Settings, db: &Db) -> Admission {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let limit = settings
        .max_concurrent_requests
        .unwrap_or_else(|| (2 * cores).clamp(2, db.max_connections()));
    tracing::info!(limit, "reads worked on at once");
    Admission::new(limit, settings.queue_patience)
}

/// What follows a finished segmentation run, in the background worker: its fairness audit.
/// A failed audit leaves the run a draft (it cannot be published) and is logged; it can be
/// audited again on demand.
pub fn after_segmentation_run(db: &Db, policy: &Policy, outcome: &crate::app::runs::RunOutcome) {
    let run_id = outcome.run_id;
    if let Err(e) = crate::app::audits::audit_after_run(db, policy, &Actor::system(), outcome) {
        tracing::error!(run_id, error = %e, "the fairness audit of a segmentation run failed");
    }
}

/// Starts serving on `listener`; the server stops gracefully on SIGINT/SIGTERM, finishing
/// requests in flight for up to 30 s.
pub fn run(listener: TcpListener, state: AppState) -> anyhow::Result<Server> {
    let limit = state.settings.max_body_bytes;
    let tls = state.settings.cookie_secure;
    let request_timeout = state.settings.request_timeout;
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(limit))
            .app_data(
                web::JsonConfig::default()
                    .limit(limit)
                    .error_handler(move |e, _| json_error(e, limit).into()),
            )
            .app_data(
                web::FormConfig::default()
                    .limit(limit)
                    .error_handler(move |e, _| form_error(e, limit).into()),
            )
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                AppError::InvalidInput {
                    field: None,
                    message: format!("bad query parameters: {e}"),
                }
                .into()
            }))
            .app_data(web::PathConfig::default().error_handler(|_, _| AppError::NotFound.into()))
            .wrap(from_fn(access::enforce))
            .wrap(from_fn(admission::queue))
            .wrap(from_fn(metrics::record))
            .wrap(from_fn(hardening::body_timeout))
            .wrap(hardening::security_headers(tls))
            .wrap(TracingLogger::default())
            .configure(routes::configure)
            .default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(AppError::NotFound)
            }))
    })
    .shutdown_timeout(30)
    // The head of a request must arrive within this time of connecting (408 otherwise), and a
    // client has 5 s to close after the answer before the connection is dropped.
    .client_request_timeout(request_timeout)
    .client_disconnect_timeout(std::time::Duration::from_secs(5))
    .listen(listener)?
    .run();
    Ok(server)
}

fn json_error(e: actix_web::error::JsonPayloadError, limit: usize) -> AppError {
    use actix_web::error::JsonPayloadError as J;
    match e {
        J::OverflowKnownLength { .. } | J::Overflow { .. } => AppError::PayloadTooLarge { limit },
        J::Payload(p) if crate::web::hardening::is_stalled(&p) => AppError::RequestTimeout,
        J::ContentType => AppError::InvalidInput {
            field: None,
            message: "send JSON with Content-Type: application/json".into(),
        },
        J::Deserialize(e) => AppError::InvalidInput {
            field: None,
            message: format!(
                "invalid JSON body at line {}, column {}: {e}",
                e.line(),
                e.column()
            ),
        },
        other => AppError::InvalidInput {
            field: None,
            message: format!("invalid JSON body: {other}"),
        },
    }
}

fn form_error(e: actix_web::error::UrlencodedError, limit: usize) -> AppError {
    use actix_web::error::UrlencodedError as U;
    match e {
        U::Overflow { .. } => AppError::PayloadTooLarge { limit },
        U::Payload(p) if crate::web::hardening::is_stalled(&p) => AppError::RequestTimeout,
        other => AppError::InvalidInput {
            field: None,
            message: format!("invalid form: {other}"),
        },
    }
}
