//! `fairseg check objections`: replay disclosures against the consent ledger.

use anyhow::bail;

use fairseg::config::Settings;
use fairseg::trail::Actor;

use super::{Reported, prepared};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Replay every activation export and member list against the consent ledger: fails
    /// (exit status 1), naming each one, if any included a customer after their objection or
    /// withdrawal.
    Objections {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(settings: &Settings, command: Command) -> anyhow::Result<()> {
    let Command::Objections { json } = command;
    let (policy, db) = prepared(settings)?;
    let check = fairseg::app::objections::check_objections(&db, &policy, &Actor::cli())?;
    if json {
        println!("{}", serde_json::to_string(&check)?);
    } else {
        println!(
            "{} disclosures, {} customer inclusions, {} consent events replayed",
            check.report.disclosures, check.report.inclusions, check.report.events
        );
        for l in &check.report.leaks {
            println!(
                "LEAK: disclosure {} (run {}, {}) included customer {} whose {} consent was withdrawn at {}",
                l.disclosure_id,
                l.run_id,
                l.disclosed_at,
                check
                    .external_ids
                    .get(&l.customer_id)
                    .map_or("(erased)", String::as_str),
                l.purpose,
                l.withdrawn_at
            );
        }
    }
    if check.clean {
        if !json {
            println!("no leak: nobody was disclosed after objecting or withdrawing");
        }
        Ok(())
    } else {
        bail!(Reported(format!(
            "{} leak(s): a disclosure included a customer after their objection or withdrawal",
            check.report.leaks.len()
        )))
    }
}
