//! `fairseg kpi evaluate`: evaluate the KPIs and append them to the KPI log.

use anyhow::Context;

use fairseg::app::kpis;
use fairseg::config::Settings;
use fairseg::kpi::{Period, PeriodKind};
use fairseg::trail::Actor;
use fairseg::web::kpi::EvaluationView;

use super::prepared;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Evaluate every KPI for `all` and each segment of the published segmentation, and append
    /// the results to the KPI log.
    Evaluate {
        /// Evaluate the period containing this date (YYYY-MM-DD) [default: today].
        #[arg(long, value_parser = fairseg::time::parse_day, conflicts_with_all = ["from", "to"])]
        as_of: Option<chrono::NaiveDate>,
        /// week, month or quarter [default: the policy's kpi.period].
        #[arg(long)]
        period: Option<String>,
        /// Back-fill every period from the one containing this date ...
        #[arg(long, value_parser = fairseg::time::parse_day, requires = "to")]
        from: Option<chrono::NaiveDate>,
        /// ... to the one containing this date.
        #[arg(long, value_parser = fairseg::time::parse_day, requires = "from")]
        to: Option<chrono::NaiveDate>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(settings: &Settings, command: Command) -> anyhow::Result<()> {
    let Command::Evaluate {
        as_of,
        period,
        from,
        to,
        json,
    } = command;
    let range = from.zip(to);
    let (policy, db) = prepared(settings)?;
    let kind =
        PeriodKind::parse(period.as_deref().unwrap_or(&policy.kpi.period)).context("--period")?;
    let today = fairseg::db::now().date();
    for (option, day) in [("--as-of", as_of), ("--to", range.map(|(_, to)| to))] {
        if let Some(day) = day {
            fairseg::segmentation::settings::check_as_of(day, today).context(option)?;
        }
    }
    let periods = match range {
        Some((from, to)) => Period::between(kind, from, to).context("--from/--to")?,
        None => vec![Period::containing(
            kind,
            as_of.unwrap_or_else(|| fairseg::db::now().date()),
        )?],
    };
    let rows = kpis::evaluate(&db, &policy, &Actor::cli(), &periods)?;
    // An evaluation appends every segment of each period at once: its groups are whole.
    let withheld = kpis::Withheld::among(&rows, policy.fairness.min_cell_size);
    let views = EvaluationView::all(&rows, &withheld);
    if json {
        println!("{}", serde_json::to_string(&views)?);
    } else {
        for v in &views {
            println!(
                "{} {:<12} {:<24} {:>14}  {}",
                v.period_start,
                v.segment,
                v.kpi,
                v.display(),
                v.status_label()
            );
        }
        println!(
            "{} evaluations appended ({} period(s))",
            views.len(),
            periods.len()
        );
    }
    Ok(())
}
