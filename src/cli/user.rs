//! `fairseg user add`: create a staff account.

use std::io::IsTerminal;

use anyhow::{Context, bail};
use serde_json::json;

use fairseg::app::accounts;
use fairseg::config::Settings;
use fairseg::db::Db;
use fairseg::policy::Policy;
use fairseg::startup;
use fairseg::trail::Actor;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a staff account. The password comes from FAIRSEG_PASSWORD or a prompt.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(settings: &Settings, command: Command) -> anyhow::Result<()> {
    let Command::Add { email, role, json } = command;
    let policy = Policy::load(&settings.policies_dir)?;
    let password = read_password()?;
    // The first account may be made before anything else, so the database may be new.
    let db = Db::connect(&settings.database_url).context("opening the database")?;
    startup::prepare(&db, &policy, settings)?;
    let user = accounts::create_user(&db, &policy, &Actor::cli(), &email, &role, password)?;
    if json {
        println!(
            "{}",
            json!({"id": user.id, "email": user.email, "role": user.role})
        );
    } else {
        println!("created {} ({}) with id {}", user.email, user.role, user.id);
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("FAIRSEG_PASSWORD") {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no password: set FAIRSEG_PASSWORD or run in a terminal to be prompted");
    }
    let first = rpassword::prompt_password("Password: ")?;
    let second = rpassword::prompt_password("Repeat password: ")?;
    if first != second {
        bail!("the two passwords differ");
    }
    Ok(first)
}
