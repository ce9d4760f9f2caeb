//! `fairseg retention apply`: delete what is past the policy's retention periods.

use fairseg::config::Settings;
use fairseg::trail::Actor;

use super::prepared;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Delete what is past the retention periods and report what was removed.
    Apply {
        /// Count what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(settings: &Settings, command: Command) -> anyhow::Result<()> {
    let Command::Apply { dry_run, json } = command;
    let (policy, db) = prepared(settings)?;
    let report = fairseg::app::retention::apply(&db, &policy, &Actor::cli(), dry_run)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    let c = &report.cutoffs;
    println!(
        "{verb} {} transaction(s) older than {}",
        report.removed.transactions,
        c.transactions.format("%Y-%m-%d")
    );
    println!(
        "{verb} {} consent event(s) older than {} (the latest per customer and purpose is kept)",
        report.removed.consent_events,
        c.consent_events.format("%Y-%m-%d")
    );
    println!(
        "{verb} {} customer(s) inactive since {}",
        report.removed.customers,
        c.inactive_customers.format("%Y-%m-%d")
    );
    for note in &report.notes {
        println!("note: {note}");
    }
    Ok(())
}
