//! `fairseg migrate`: apply pending migrations.

use anyhow::Context;
use serde_json::json;

use fairseg::config::Settings;
use fairseg::db::Db;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    json: bool,
}

pub fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let db = Db::open(&settings.database_url).context("opening the database")?;
    let applied = db.migrate()?;
    if args.json {
        println!(
            "{}",
            json!({"database": settings.database_url.to_string(), "applied": applied})
        );
    } else {
        println!(
            "database {} is up to date ({} migration(s) applied now)",
            settings.database_url,
            applied.len()
        );
    }
    Ok(())
}
