//! `fairseg serve`: the web app and the JSON API.

use std::net::TcpListener;

use anyhow::Context;

use fairseg::config::Settings;
use fairseg::db::Db;
use fairseg::policy::Policy;
use fairseg::startup;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "FAIRSEG_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,
}

pub fn run(settings: Settings, args: Args) -> anyhow::Result<()> {
    serve(settings, &args.addr)
}

/// Serves until stopped; `demo` ends here too.
pub fn serve(settings: Settings, addr: &str) -> anyhow::Result<()> {
    settings.require_public_url()?;
    let policy =
        Policy::load(&settings.policies_dir).context("refusing to start on an invalid policy")?;
    let db = Db::connect(&settings.database_url).context("opening the database")?;
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let state = startup::app_state(db, policy, settings)?;
    let jobs = state.jobs.clone();
    tracing::info!(policy = %state.policy.version, database = %state.settings.database_url, worker = %jobs.worker_id(), "serving on http://{local}");
    println!("fairseg is serving on http://{local} (Ctrl-C to stop)");
    let served = actix_web::rt::System::new()
        .block_on(async move { startup::run(listener, state)?.await.map_err(Into::into) });
    // Stopped (SIGTERM, SIGINT): claim nothing more, let the runs executing finish, give up
    // what is still held, so no run waits for a lease to expire.
    let given_up = jobs.drain(DRAIN_GRACE);
    if !given_up.is_empty() {
        tracing::warn!(runs = ?given_up, "gave up the runs this server still held");
    }
    tracing::info!("stopped");
    served
}

/// How long a stopping server waits for the runs it executes to finish.
const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(60);
