//! `fairseg import`: load a CSV file of customers, transactions or consent events.

use std::path::PathBuf;

use anyhow::Context;

use fairseg::app::imports::{ImportContext, ImportRequest, import};
use fairseg::config::Settings;
use fairseg::db::Db;
use fairseg::imports::{ImportError, ImportKind, ImportOptions, ImportReport};
use fairseg::policy::Policy;
use fairseg::startup;
use fairseg::trail::Actor;

use super::Reported;

#[derive(clap::Args)]
pub struct Args {
    /// What the file holds.
    #[arg(value_parser = ["customers", "transactions", "consents"])]
    kind: String,
    /// The CSV file.
    file: PathBuf,
    /// Import the good rows and reject the bad ones (instead of importing nothing).
    #[arg(long)]
    skip_invalid: bool,
    /// With --skip-invalid: write the rejected rows, with line, column and reason, here.
    #[arg(long, requires = "skip_invalid")]
    rejected: Option<PathBuf>,
    /// Accept ids of customers who were erased.
    #[arg(long)]
    allow_erased: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let kind = ImportKind::parse(&args.kind).map_err(anyhow::Error::msg)?;
    let policy = Policy::load(&settings.policies_dir)?;
    // An import may be the first thing done to a new database.
    let db = Db::connect(&settings.database_url).context("opening the database")?;
    startup::prepare(&db, &policy, settings)?;
    let pseudonyms = startup::pseudonymizer(&db)?;
    let file_name = args.file.display().to_string();
    let rejected = args.rejected.as_deref();
    let outcome = import(
        &ImportContext {
            db: &db,
            policy: &policy,
            pseudonyms: &pseudonyms,
        },
        &ImportRequest {
            kind,
            path: &args.file,
            file_name: &file_name,
            options: ImportOptions {
                skip_invalid: args.skip_invalid,
                allow_erased: args.allow_erased,
                limits: settings.import_limits,
            },
            rejected,
            actor: &Actor::cli(),
        },
    );
    match outcome {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            show_errors(&file_name, &report);
            let columns: Vec<String> = report
                .columns
                .iter()
                .map(|c| {
                    format!(
                        "{} ({}{})",
                        c.name,
                        c.kind.as_str(),
                        if c.protected { ", protected" } else { "" }
                    )
                })
                .collect();
            println!(
                "{}: {} rows read, {} imported, {} rejected",
                report.file, report.rows_read, report.rows_imported, report.rows_rejected
            );
            if kind == ImportKind::Customers {
                println!(
                    "customers: {} new, {} updated; columns: {}",
                    report.customers_created,
                    report.customers_updated,
                    columns.join(", ")
                );
            }
            if let Some(path) = rejected.filter(|_| report.rows_rejected > 0) {
                println!("rejected rows written to {}", path.display());
            }
            Ok(())
        }
        Err(ImportError::Invalid(report)) => {
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                show_errors(&file_name, &report);
            }
            Err(Reported(report.failure_summary()).into())
        }
        Err(e) => Err(e.into()),
    }
}

fn show_errors(file_name: &str, report: &ImportReport) {
    for e in &report.errors {
        match &e.column {
            Some(c) => println!("{file_name}:{}: column `{c}`: {}", e.line, e.reason),
            None => println!("{file_name}:{}: {}", e.line, e.reason),
        }
    }
    if report.errors_total > report.errors.len() as u64 {
        println!(
            "{file_name}: … and {} more errors",
            report.errors_total - report.errors.len() as u64
        );
    }
}
