//! `fairseg publish`: publish an audited run.

use fairseg::config::Settings;
use fairseg::trail::Actor;

use super::{Reported, prepared};

#[derive(clap::Args)]
pub struct Args {
    /// The run.
    run_id: i64,
    #[arg(long)]
    json: bool,
}

pub fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let (policy, db) = prepared(settings)?;
    let published = fairseg::app::audits::publish_run(&db, &policy, &Actor::cli(), args.run_id)
        .map_err(|e| Reported(e.to_string()))?;
    if args.json {
        println!("{}", serde_json::to_string(&published)?);
    } else {
        println!(
            "run {} published (audit {}: {}{}){}",
            published.run_id,
            published.audit_id,
            published.verdict,
            match published.override_id {
                Some(o) => format!(", override {o}"),
                None => String::new(),
            },
            match published.retired_run_id {
                Some(r) => format!("; run {r} retired"),
                None => String::new(),
            }
        );
    }
    Ok(())
}
