//! `fairseg trail verify`: check the hash chain.

use anyhow::{Context, bail};

use fairseg::config::Settings;
use fairseg::db::{Db, trail as trail_store};

use super::{Reported, require_database};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Verify the hash chain; exits non-zero and names the first bad entry if it is broken.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(settings: &Settings, command: Command) -> anyhow::Result<()> {
    let Command::Verify { json } = command;
    // Verifying a database that is not there must not pass as "intact, 0 entries".
    require_database(settings)?;
    let db = Db::connect(&settings.database_url).context("opening the database")?;
    let report = db.read(trail_store::verify)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    }
    match &report.first_bad {
        None => {
            if !json {
                println!("trail intact: {} entries verified", report.entries);
            }
            Ok(())
        }
        Some(bad) => bail!(Reported(format!(
            "trail broken at entry {}: {}",
            bad.seq, bad.problem
        ))),
    }
}
