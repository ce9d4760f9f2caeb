//! `fairseg audit`: print a run's fairness audit.

use fairseg::app::audits;
use fairseg::config::Settings;
use fairseg::trail::Actor;

use super::prepared;

#[derive(clap::Args)]
pub struct Args {
    /// The run.
    run_id: i64,
    /// The full report as JSON.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// The full report as CSV (one figure per line).
    #[arg(long)]
    csv: bool,
}

pub fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let (policy, db) = prepared(settings)?;
    let audit = audits::audit_of_run(&db, &policy, &Actor::cli(), args.run_id)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&fairseg::web::audits::AuditJson::of(&audit))?
        );
        return Ok(());
    }
    if args.csv {
        print!("{}", audit.csv());
        return Ok(());
    }
    let r = &audit.report;
    println!(
        "audit {} of run {} ({} members, policy {}): {}",
        audit.row.id,
        audit.row.run_id,
        r.members,
        &audit.row.policy_version[..12.min(audit.row.policy_version.len())],
        r.verdict
    );
    println!("  {}", r.reason);
    for a in &r.attributes {
        println!(
            "  {:<32} {:<12} {}",
            a.attribute,
            a.verdict.to_string(),
            a.reason
        );
    }
    for p in r.proxies.iter().filter(|p| p.flagged) {
        println!(
            "  proxy: {} stands in for {} ({:.2})",
            p.feature, p.attribute, p.value
        );
    }
    if audit.stale_strategies {
        println!(
            "  note: the strategies changed after this audit; its four-fifths result is stale"
        );
    }
    for o in &audit.overrides {
        println!(
            "  overridden by {} at {}: {}",
            o.overridden_by,
            o.overridden_at.format("%Y-%m-%d %H:%M UTC"),
            o.justification
        );
    }
    Ok(())
}
