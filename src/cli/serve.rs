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
    tracing::info!(policy = %state.policy.version, database = %state.settings.database_url, "serving on http://{local}");
    println!("fairseg is serving on http://{local} (Ctrl-C to stop)");
    actix_web::rt::System::new()
        .block_on(async move { startup::run(listener, state)?.await.map_err(Into::into) })
}
