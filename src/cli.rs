//! The `fairseg` command line: the arguments, one file per command in `cli/`, and the few
//! helpers commands share (opening the database, a failure already reported).

mod audit;
mod check;
mod customer;
mod demo;
mod import;
mod kpi;
mod members;
mod migrate;
mod policy;
mod publish;
mod retention;
mod segment;
mod serve;
mod trail;
mod user;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use fairseg::config::{GlobalArgs, Settings};
use fairseg::db::Db;
use fairseg::policy::Policy;
use fairseg::startup;

#[derive(Parser)]
#[command(
    name = "fairseg",
    version,
    about = "Governed customer segmentation: consent first, fairness audited, KPIs tracked."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the web app and the JSON API.
    Serve(serve::Args),
    /// Create a fresh demo database with demo users, print their credentials, and serve it.
    Demo(demo::Args),
    /// Apply pending database migrations (the server also applies them at start).
    Migrate(migrate::Args),
    /// Policy commands.
    Policy {
        #[command(subcommand)]
        command: policy::Command,
    },
    /// Staff account commands.
    User {
        #[command(subcommand)]
        command: user::Command,
    },
    /// Trail commands.
    Trail {
        #[command(subcommand)]
        command: trail::Command,
    },
    /// Compliance checks over the stored records.
    Check {
        #[command(subcommand)]
        command: check::Command,
    },
    /// Import customers, transactions or consent events from a CSV file (all or nothing).
    Import(import::Args),
    /// Data-subject requests about one customer: export, erase.
    Customer {
        #[command(subcommand)]
        command: customer::Command,
    },
    /// Retention: delete what is past the policy's retention periods.
    Retention {
        #[command(subcommand)]
        command: retention::Command,
    },
    /// Run a segmentation on the customers whose consent for segmentation is active now.
    Segment(segment::Args),
    /// KPI commands.
    Kpi {
        #[command(subcommand)]
        command: kpi::Command,
    },
    /// Print a run's members as CSV `customer_id,segment` (customers who withdrew consent
    /// since the run are left out). Every call is recorded in the trail.
    Members(members::Args),
    /// Print the stored fairness audit of a run (auditing it first if it has none).
    Audit(audit::Args),
    /// Publish an audited run (its audit must pass or warn, or have a compliance override);
    /// the run published before is retired.
    Publish(publish::Args),
}

/// A failure whose report has already been printed in full; only the exit code remains.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // Checking the policy needs no settings: it must work where the rest of the configuration
    // is not there yet.
    if let Command::Policy { command } = &cli.command {
        return policy::run(&cli.global.policies_dir, command);
    }
    let default_database = match cli.command {
        Command::Demo(_) => demo::DEFAULT_DATABASE,
        _ => "fairseg.db",
    };
    let settings = Settings::from_args(&cli.global, default_database)?;
    match cli.command {
        Command::Policy { .. } => unreachable!("answered above"),
        Command::Serve(args) => serve::run(settings, args),
        Command::Demo(args) => demo::run(settings, args),
        Command::Migrate(args) => migrate::run(&settings, args),
        Command::User { command } => user::run(&settings, command),
        Command::Trail { command } => trail::run(&settings, command),
        Command::Check { command } => check::run(&settings, command),
        Command::Import(args) => import::run(&settings, args),
        Command::Customer { command } => customer::run(&settings, command),
        Command::Retention { command } => retention::run(&settings, command),
        Command::Segment(args) => segment::run(&settings, args),
        Command::Kpi { command } => kpi::run(&settings, command),
        Command::Members(args) => members::run(&settings, args),
        Command::Audit(args) => audit::run(&settings, args),
        Command::Publish(args) => publish::run(&settings, args),
    }
}

/// Refuses a missing SQLite file: connecting would create it empty, and a data command would
/// then report "no such customer" or an intact, empty trail.
fn require_database(settings: &Settings) -> anyhow::Result<()> {
    if let Some(path) = settings.database_url.sqlite_path()
        && !std::path::Path::new(path).exists()
    {
        bail!("there is no database at {path}; pass --database-url");
    }
    Ok(())
}

/// Opens an existing database for a data command.
fn open_existing(settings: &Settings) -> anyhow::Result<Db> {
    require_database(settings)?;
    Db::connect(&settings.database_url).context("opening the database")
}

/// What most data commands start with: the policy, the existing database, and the policy
/// version recorded in it.
fn prepared(settings: &Settings) -> anyhow::Result<(Policy, Db)> {
    let policy = Policy::load(&settings.policies_dir)?;
    let db = open_existing(settings)?;
    startup::prepare(&db, &policy, settings)?;
    Ok((policy, db))
}
