//! `fairseg members`: a run's members as CSV, recorded in the trail.

use std::path::PathBuf;

use anyhow::Context;

use fairseg::config::Settings;
use fairseg::trail::Actor;

use super::prepared;

#[derive(clap::Args)]
pub struct Args {
    /// The run.
    run_id: i64,
    /// Only this segment (its number).
    #[arg(long)]
    segment: Option<i32>,
    /// Write to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let (policy, db) = prepared(settings)?;
    let members = fairseg::app::runs::read_members(
        &db,
        &policy,
        &Actor::cli(),
        args.run_id,
        args.segment,
        None,
    )?;
    let mut writer: Box<dyn std::io::Write> = match &args.out {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut csv = fairseg::spreadsheet::Writer::from_writer(&mut writer);
    csv.write_record(["customer_id", "segment"])?;
    for (external, segment) in &members {
        csv.write_record([external.as_str(), &segment.to_string()])?;
    }
    csv.flush()?;
    Ok(())
}
