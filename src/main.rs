//! The `fairseg` command line: parse, then call the library.

use std::io::IsTerminal;
use std::net::TcpListener;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::json;

use fairseg::auth::accounts;
use fairseg::config::{GlobalArgs, Settings};
use fairseg::db::{Db, secrets, trail as trail_store};
use fairseg::policy::Policy;
use fairseg::trail::Actor;
use fairseg::{startup, telemetry};

#[derive(Parser)]
#[command(
    name = "fairseg",
    version,
    about = "Governed customer segmentation: consent first, fairness audited, KPIs tracked."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web app and the JSON API.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "FAIRSEG_ADDR", default_value = "127.0.0.1:8080")]
        addr: String,
    },
    /// Create a fresh demo database with demo users, print their credentials, and serve it.
    Demo {
        #[arg(long, env = "FAIRSEG_ADDR", default_value = "127.0.0.1:8080")]
        addr: String,
        /// Set up the demo database and exit without serving.
        #[arg(long)]
        no_serve: bool,
        #[arg(long)]
        json: bool,
        /// How many customers to generate.
        #[arg(long, default_value_t = fairseg::demo::DEFAULT_CUSTOMERS)]
        customers: usize,
        /// Seed of the generator: the same seed gives the same data.
        #[arg(long, default_value_t = fairseg::demo::DEFAULT_SEED)]
        seed: u64,
    },
    /// Apply pending database migrations (the server also applies them at start).
    Migrate {
        #[arg(long)]
        json: bool,
    },
    /// Policy commands.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Staff account commands.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Trail commands.
    Trail {
        #[command(subcommand)]
        command: TrailCommand,
    },
    /// Compliance checks over the stored records.
    Check {
        #[command(subcommand)]
        command: CheckCommand,
    },
    /// Import customers, transactions or consent events from a CSV file (all or nothing).
    Import {
        /// What the file holds.
        #[arg(value_parser = ["customers", "transactions", "consents"])]
        kind: String,
        /// The CSV file.
        file: std::path::PathBuf,
        /// Import the good rows and reject the bad ones (instead of importing nothing).
        #[arg(long)]
        skip_invalid: bool,
        /// With --skip-invalid: write the rejected rows, with line, column and reason, here.
        #[arg(long, requires = "skip_invalid")]
        rejected: Option<std::path::PathBuf>,
        /// Accept ids of customers who were erased.
        #[arg(long)]
        allow_erased: bool,
        #[arg(long)]
        json: bool,
    },
    /// Data-subject requests about one customer: export, erase.
    Customer {
        #[command(subcommand)]
        command: CustomerCommand,
    },
    /// Retention: delete what is past the policy's retention periods.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Run a segmentation on the customers whose consent for segmentation is active now.
    Segment(SegmentArgs),
    /// KPI commands.
    Kpi {
        #[command(subcommand)]
        command: KpiCommand,
    },
    /// Print a run's members as CSV `customer_id,segment` (customers who withdrew consent
    /// since the run are left out). Every call is recorded in the trail.
    Members {
        /// The run.
        run_id: i64,
        /// Only this segment (its number).
        #[arg(long)]
        segment: Option<i32>,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Print the stored fairness audit of a run (auditing it first if it has none).
    Audit {
        /// The run.
        run_id: i64,
        /// The full report as JSON.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// The full report as CSV (one figure per line).
        #[arg(long)]
        csv: bool,
    },
    /// Publish an audited run (its audit must pass or warn, or have a compliance override);
    /// the run published before is retired.
    Publish {
        /// The run.
        run_id: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KpiCommand {
    /// Evaluate every KPI for `all` and each segment of the published segmentation, and append
    /// the results to the KPI log.
    Evaluate {
        /// Evaluate the period containing this date (YYYY-MM-DD) [default: today].
        #[arg(long, conflicts_with_all = ["from", "to"])]
        as_of: Option<chrono::NaiveDate>,
        /// week, month or quarter [default: the policy's kpi.period].
        #[arg(long)]
        period: Option<String>,
        /// Back-fill every period from the one containing this date ...
        #[arg(long, requires = "to")]
        from: Option<chrono::NaiveDate>,
        /// ... to the one containing this date.
        #[arg(long, requires = "from")]
        to: Option<chrono::NaiveDate>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct SegmentArgs {
    /// kmeans, gmm, dbscan, rfm or rules.
    #[arg(long)]
    algorithm: String,
    /// Number of segments (kmeans, gmm).
    #[arg(long)]
    k: Option<usize>,
    /// Choose k in this range by silhouette (kmeans), e.g. --k-range 3..8.
    #[arg(long, value_parser = parse_k_range, conflicts_with = "k")]
    k_range: Option<(usize, usize)>,
    /// Comma-separated features: attribute names and recency_days, frequency, monetary,
    /// average_order_value, tenure_days.
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// Comma-separated numeric features to log-transform (skewed amounts).
    #[arg(long, value_delimiter = ',')]
    log_features: Vec<String>,
    /// Missing values: exclude_customer (default), impute_mean, impute_median, impute_mode.
    #[arg(long)]
    missing: Option<String>,
    /// Seed: the same seed gives the same memberships.
    #[arg(long)]
    seed: Option<u64>,
    /// DBSCAN radius and minimum neighbours.
    #[arg(long)]
    eps: Option<f64>,
    #[arg(long)]
    min_points: Option<usize>,
    /// Rule segments: a JSON file `{"rules": [{"name", "when"}], "otherwise"}`.
    #[arg(long)]
    rules: Option<std::path::PathBuf>,
    /// Compute behavioural features as of this date (YYYY-MM-DD); default today.
    #[arg(long)]
    as_of: Option<chrono::NaiveDate>,
    #[arg(long)]
    json: bool,
}

fn parse_k_range(raw: &str) -> Result<(usize, usize), String> {
    let (a, b) = raw
        .split_once("..")
        .ok_or_else(|| format!("`{raw}` is not a range like 3..8"))?;
    let parse = |v: &str| {
        v.trim()
            .trim_start_matches('=')
            .parse::<usize>()
            .map_err(|_| format!("`{v}` in `{raw}` is not a whole number"))
    };
    Ok((parse(a)?, parse(b)?))
}

#[derive(Subcommand)]
enum CustomerCommand {
    /// Print everything held about a customer as JSON (a data-subject access request).
    Export {
        /// The customer's id.
        id: String,
        /// Write the JSON to this file instead of stdout.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Erase a customer everywhere; only a pseudonymous tombstone remains.
    Erase {
        /// The customer's id.
        id: String,
        /// Confirm: erasure cannot be undone.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Delete what is past the retention periods and report what was removed.
    Apply {
        /// Count what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate the policy; each problem names file, key and what is wrong.
    Check {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
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

#[derive(Subcommand)]
enum CheckCommand {
    /// Replay every activation export and member list against the consent ledger: fails
    /// (exit status 1), naming each one, if any included a customer after their objection or
    /// withdrawal.
    Objections {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TrailCommand {
    /// Verify the hash chain; exits non-zero and names the first bad entry if it is broken.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

/// A failure whose report has already been printed in full; only the exit code remains.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Reported(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.global.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost context and its causes, joined.
            let chain: Vec<String> = e
                .chain()
                .map(|c| c.to_string().replace('\n', "; "))
                .collect();
            eprintln!("fairseg: error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { addr } => {
            let settings = Settings::from_args(&cli.global, "fairseg.db")?;
            serve(settings, &addr)
        }
        Command::Demo {
            addr,
            no_serve,
            json,
            customers,
            seed,
        } => {
            let settings = Settings::from_args(&cli.global, "fairseg-demo.db")?;
            demo(settings, &addr, no_serve, json, (customers, seed))
        }
        Command::Customer { command } => {
            let settings = Settings::from_args(&cli.global, "fairseg.db")?;
            customer_command(settings, command)
        }
        Command::Retention {
            command: RetentionCommand::Apply { dry_run, json },
        } => {
            let settings = Settings::from_args(&cli.global, "fairseg.db")?;
            retention_apply(settings, dry_run, json)
        }
        Command::Segment(args) => {
            let settings = Settings::from_args(&cli.global, "fairseg.db")?;
            segment_command(settings, args)
        }
        Command::Kpi {
            command:
                KpiCommand::Evaluate {
                    as_of,
                    period,
                    from,
                    to,
                    json,
                },
        } => {
            let settings = Settings::from_args(&cli.global, "fairseg.db")?;
            kpi_evaluate(settings, as_of, period, from.zip(to), json)
        }
        Command::Members {
            run_id,
            segment,
            out,
        } => {
            let settings = Settings::from_args(&cli.global, "fairseg.db")?;
            members_command(settings, run_id, segment, out)
        }
        Command::Audit { run_id, json, csv } => {
            let settings = Settings::from_args(&cli.global, "fairseg.db")?;
            audit_command(settings, run_id, json, csv)
        }
        Command::Publish { run_id, json } => {
            let settings = Settings::from_args(&cli.global, "fairseg.db")?;
            publish_command(settings, run_id, json)
        }
        Command::Migrate { json } => {
            let settings = Settings::from_args(&cli.global, "fairseg.db")?;
            let db = Db::open(&settings.database_url).context("opening the database")?;
            let applied = db.migrate()?;
            if json {
                println!(
                    "{}",
                    json!({"database": settings.database_url.to_string(), "applied": applied})
                );
            } else {
                println!(
                    "database {} is up to date ({} migration(s) applied now)",
                    settings.database_url,
                    applied.len()
                );
            }
            Ok(())
        }
        Command::Policy {
            command: PolicyCommand::Check { json },
        } => match Policy::load(&cli.global.policies_dir) {
            Ok(policy) => {
                if json {
                    println!(
                        "{}",
                        json!({"valid": true, "version": policy.version, "file": policy.path})
                    );
                } else {
                    println!(
                        "{}: valid, version {}",
                        policy.path.display(),
                        policy.version
                    );
                }
                Ok(())
            }
            Err(e) => {
                let issues = e.issues();
                if json {
                    println!("{}", json!({"valid": false, "issues": issues}));
                } else {
                    for issue in &issues {
                        println!("{issue}");
                    }
                }
                Err(Reported(format!("the policy has {} problem(s)", issues.len())).into())
            }
        },
        Command::User {
            command: UserCommand::Add { email, role, json },
        } => {
            let settings = Settings::from_args(&cli.global, "fairseg.db")?;
            let policy = Policy::load(&settings.policies_dir)?;
            let password = read_password()?;
            let db = Db::connect(&settings.database_url).context("opening the database")?;
            startup::prepare(&db, &policy, &settings)?;
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
        Command::Import {
            kind,
            file,
            skip_invalid,
            rejected,
            allow_erased,
            json,
        } => {
            let settings = Settings::from_args(&cli.global, "fairseg.db")?;
            import_command(
                settings,
                &kind,
                &file,
                rejected.as_deref(),
                ImportFlags {
                    skip_invalid,
                    allow_erased,
                    json,
                },
            )
        }
        Command::Check {
            command: CheckCommand::Objections { json },
        } => {
            let settings = Settings::from_args(&cli.global, "fairseg.db")?;
            let policy = Policy::load(&settings.policies_dir)?;
            let db = open_existing(&settings)?;
            startup::prepare(&db, &policy, &settings)?;
            let check = fairseg::consent::ledger::check_objections(&db, &policy, &Actor::cli())?;
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
        Command::Trail {
            command: TrailCommand::Verify { json },
        } => {
            let settings = Settings::from_args(&cli.global, "fairseg.db")?;
            // Verifying a database that is not there must not pass as "intact, 0 entries".
            if let Some(path) = settings.database_url.sqlite_path()
                && !std::path::Path::new(path).exists()
            {
                bail!("there is no database at {path}; pass --database-url");
            }
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
    }
}

#[derive(Clone, Copy)]
struct ImportFlags {
    skip_invalid: bool,
    allow_erased: bool,
    json: bool,
}

fn import_command(
    settings: Settings,
    kind: &str,
    file: &std::path::Path,
    rejected: Option<&std::path::Path>,
    flags: ImportFlags,
) -> anyhow::Result<()> {
    use fairseg::db::imports::{ImportContext, ImportRequest, import};
    use fairseg::imports::{ImportError, ImportKind, ImportOptions};
    let kind = ImportKind::parse(kind).map_err(anyhow::Error::msg)?;
    let policy = Policy::load(&settings.policies_dir)?;
    let db = Db::connect(&settings.database_url).context("opening the database")?;
    startup::prepare(&db, &policy, &settings)?;
    let pseudonyms = startup::pseudonymizer(&db)?;
    let file_name = file.display().to_string();
    let outcome = import(
        &ImportContext {
            db: &db,
            policy: &policy,
            pseudonyms: &pseudonyms,
        },
        &ImportRequest {
            kind,
            path: file,
            file_name: &file_name,
            options: ImportOptions {
                skip_invalid: flags.skip_invalid,
                allow_erased: flags.allow_erased,
                limits: settings.import_limits,
            },
            rejected,
            actor: &Actor::cli(),
        },
    );
    let show_errors = |report: &fairseg::imports::ImportReport| {
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
    };
    match outcome {
        Ok(report) => {
            if flags.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                show_errors(&report);
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
            }
            Ok(())
        }
        Err(ImportError::Invalid(report)) => {
            if flags.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                show_errors(&report);
            }
            Err(Reported(report.failure_summary()).into())
        }
        Err(e) => Err(e.into()),
    }
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

fn serve(settings: Settings, addr: &str) -> anyhow::Result<()> {
    settings.require_public_url()?;
    let policy =
        Policy::load(&settings.policies_dir).context("refusing to start on an invalid policy")?;
    let db = Db::connect(&settings.database_url).context("opening the database")?;
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let state = startup::app_state(db, policy, settings)?;
    tracing::info!(policy = %state.policy.version, database = %state.settings.database_url, "serving on http://{local}");
    println!("fairseg is serving on http://{local} (Ctrl-C to stop)");
    actix_web::rt::System::new()
        .block_on(async move { startup::run(listener, state)?.await.map_err(Into::into) })
}

/// Marks a database as made by `demo`, so a later `demo` may replace it but never a real one.
const DEMO_MARKER: &str = "demo_database";

const DEMO_USERS: [(&str, &str); 4] = [
    ("admin@fairseg.demo", "admin"),
    ("compliance@fairseg.demo", "compliance"),
    ("marketing@fairseg.demo", "marketing"),
    ("analyst@fairseg.demo", "analyst"),
];

fn demo(
    settings: Settings,
    addr: &str,
    no_serve: bool,
    json: bool,
    (customers, seed): (usize, u64),
) -> anyhow::Result<()> {
    let policy =
        Policy::load(&settings.policies_dir).context("refusing to start on an invalid policy")?;
    let Some(path) = settings.database_url.sqlite_path().map(str::to_string) else {
        bail!("the demo runs on an SQLite file; pass --database-url PATH.db or leave it unset");
    };
    if std::path::Path::new(&path).exists() {
        let existing =
            Db::connect(&settings.database_url).context("opening the existing demo database")?;
        let is_demo = existing.read(|c| secrets::find(c, DEMO_MARKER))?.is_some();
        drop(existing);
        if !is_demo {
            bail!(
                "{path} exists and was not made by `fairseg demo`; it is left untouched (pass another --database-url)"
            );
        }
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{path}{suffix}");
            if std::path::Path::new(&file).exists() {
                std::fs::remove_file(&file)
                    .with_context(|| format!("removing the old demo database {file}"))?;
            }
        }
    }
    let db = Db::connect(&settings.database_url).context("creating the demo database")?;
    db.write(|c| secrets::get_or_create(c, DEMO_MARKER, || "true".into()).map(|_| ()))?;
    startup::prepare(&db, &policy, &settings)?;
    let mut credentials = Vec::new();
    for (email, role) in DEMO_USERS {
        let password = demo_password();
        accounts::create_user(
            &db,
            &policy,
            &Actor::system(),
            email,
            role,
            password.clone(),
        )?;
        credentials.push(json!({"email": email, "role": role, "password": password}));
    }
    let started = std::time::Instant::now();
    let options = fairseg::demo::options(&policy, customers, seed, fairseg::db::now().date());
    let data = fairseg::demo::generate(&options);
    let loaded = fairseg::demo::load(
        &db,
        &data,
        &startup::pseudonymizer(&db)?,
        &Actor::system(),
        &policy.version,
    )
    .context("loading the demo data")?;
    // The first run segments on the planted proxy: its audit fails and the gate keeps it from
    // marketing (no override is ever made on the demo's behalf). The second run leaves the
    // proxy out, as an analyst would, and is published when its audit lets it through.
    let mut runs = Vec::new();
    for request in [
        fairseg::demo::segmentation_request(),
        fairseg::demo::segmentation_request_without_proxy(),
    ] {
        let run_id =
            fairseg::segmentation::pipeline::create(&db, &policy, &Actor::system(), &request)?;
        let outcome = fairseg::segmentation::pipeline::execute(&db, &policy, run_id)
            .context("segmenting the demo data")?;
        let audit = fairseg::fairness::service::audit_run_with(
            &db,
            &policy,
            &Actor::system(),
            run_id,
            Some(&outcome.features),
        )
        .context("auditing the demo segmentation")?;
        let verdict: fairseg::fairness::Verdict =
            audit.verdict.parse().map_err(anyhow::Error::msg)?;
        let published = fairseg::fairness::service::passes_gate(verdict);
        if published {
            let done =
                fairseg::fairness::service::publish_run(&db, &policy, &Actor::system(), run_id)
                    .context("publishing the demo segmentation")?;
            fairseg::demo::sign_off(&db, &policy, done.audit_id)
                .context("signing off the published run's audit")?;
        }
        runs.push((run_id, request.features, outcome, audit, published));
    }
    // Marketing's first activation export of the published run, so the objection check has a
    // disclosure to replay against the ledger.
    if let Some((run_id, ..)) = runs.iter().find(|r| r.4) {
        fairseg::segmentation::members::read_members(
            &db,
            &policy,
            &Actor::system(),
            *run_id,
            None,
            Some(policy.segmentation.default_channel.as_str()),
        )
        .context("the demo's activation export")?;
    }
    let objections = fairseg::consent::ledger::check_objections(&db, &policy, &Actor::system())
        .context("the demo's objection check")?;
    let selection: Option<String> = runs.last().and_then(|r| {
        serde_json::from_str::<fairseg::fairness::AuditReport>(&r.3.report)
            .ok()?
            .consent_selection
            .map(|c| c.headline)
    });
    // KPI history: every month of the demo history, per segment of the published run, so the
    // KPI charts are full from the start.
    let kpi_rows = fairseg::demo::backfill_kpis(&db, &policy, fairseg::db::now().date())
        .context("back-filling the demo KPI history")?;
    tracing::info!(rows = kpi_rows, "demo KPI history back-filled");
    if json {
        println!(
            "{}",
            json!({
                "database": path, "users": credentials, "addr": addr, "data": loaded, "seed": seed,
                "segmentations": runs.iter().map(|(run_id, features, outcome, audit, published)| json!({
                    "run_id": run_id, "features": features, "segments": outcome.segments.len(),
                    "published": published,
                    "audit": {"id": audit.id, "verdict": audit.verdict, "reason": audit.reason},
                })).collect::<Vec<_>>(),
                "consent_selection": selection,
                "objection_check": {"disclosures": objections.report.disclosures, "clean": objections.clean},
            })
        );
    } else {
        println!("Demo database: {path}");
        println!(
            "Demo data (seed {seed}): {} customers, {} transactions, {} consent events, loaded in {:.1} s",
            loaded.customers,
            loaded.transactions,
            loaded.consent_events,
            started.elapsed().as_secs_f64()
        );
        for (run_id, _, outcome, audit, published) in &runs {
            println!(
                "Demo segmentation: run {run_id}, {} segments of {} consented customers; audit {} {}{}",
                outcome.segments.len(),
                outcome.included,
                audit.id,
                audit.verdict,
                if *published {
                    ", published"
                } else {
                    ", not published (the gate needs an override)"
                }
            );
        }
        if let Some(h) = &selection {
            println!("Consent selection: {h}");
        }
        println!(
            "Objection check: {} disclosure(s) replayed against the ledger, {}",
            objections.report.disclosures,
            if objections.clean {
                "no leak"
            } else {
                "LEAKS FOUND"
            }
        );
        println!("Demo users (role, e-mail, password):");
        for c in &credentials {
            println!(
                "  {:<11} {:<26} {}",
                c["role"].as_str().unwrap_or(""),
                c["email"].as_str().unwrap_or(""),
                c["password"].as_str().unwrap_or("")
            );
        }
    }
    if no_serve {
        return Ok(());
    }
    println!("Open http://{addr}/ and sign in as one of them.");
    let mut settings = settings;
    if settings.public_url.is_none() {
        // The demo's links point at the address it serves on.
        settings.public_url = Some(
            fairseg::config::PublicUrl::parse(&format!("http://{addr}")).map_err(|reason| {
                fairseg::config::ConfigError::Invalid {
                    setting: fairseg::config::PUBLIC_URL_SETTING,
                    reason,
                }
            })?,
        );
    }
    serve(settings, addr)
}

/// A fresh, readable password per demo run: the demo must not ship known credentials.
fn demo_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    let groups: Vec<String> = (0..3)
        .map(|_| {
            (0..4)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect()
        })
        .collect();
    format!("demo-{}", groups.join("-"))
}

/// Opens an existing database for a data command (refusing a missing SQLite file, which would
/// otherwise be created empty and report "no such customer").
fn open_existing(settings: &Settings) -> anyhow::Result<Db> {
    if let Some(path) = settings.database_url.sqlite_path()
        && !std::path::Path::new(path).exists()
    {
        bail!("there is no database at {path}; pass --database-url");
    }
    Db::connect(&settings.database_url).context("opening the database")
}

fn segment_command(settings: Settings, args: SegmentArgs) -> anyhow::Result<()> {
    use fairseg::segmentation::{pipeline, report, settings::RunRequest};
    let policy = Policy::load(&settings.policies_dir)?;
    let db = open_existing(&settings)?;
    startup::prepare(&db, &policy, &settings)?;
    let rules = match &args.rules {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: not valid JSON", path.display()))?,
            )
        }
        None => None,
    };
    let missing = match &args.missing {
        Some(m) => Some(
            serde_json::from_value(json!(m))
                .map_err(|_| anyhow::anyhow!("--missing: `{m}` is not one of exclude_customer, impute_mean, impute_median, impute_mode"))?,
        ),
        None => None,
    };
    let request = RunRequest {
        algorithm: args.algorithm,
        features: args.features,
        k: args.k,
        k_min: args.k_range.map(|r| r.0),
        k_max: args.k_range.map(|r| r.1),
        seed: args.seed,
        log_features: args.log_features,
        missing,
        eps: args.eps,
        min_points: args.min_points,
        rules,
        as_of: args.as_of,
    };
    let id = pipeline::create(&db, &policy, &Actor::cli(), &request)?;
    let outcome =
        pipeline::execute(&db, &policy, id).with_context(|| format!("run {id} failed"))?;
    let audit_started = std::time::Instant::now();
    let audit = fairseg::fairness::service::audit_run_with(
        &db,
        &policy,
        &Actor::cli(),
        id,
        Some(&outcome.features),
    )
    .with_context(|| format!("the fairness audit of run {id} failed"))?;
    drop(outcome);
    let audit_ms = audit_started.elapsed().as_millis() as u64;
    let (run, segments, strategies) = db.read(|conn| {
        Ok((
            fairseg::db::segmentation::run(conn, id)?.expect("just written"),
            fairseg::db::segmentation::segments(conn, id)?,
            fairseg::db::segmentation::strategies(conn, id)?,
        ))
    })?;
    let view = report::view(
        &run,
        &segments,
        &strategies,
        u64::from(policy.fairness.min_cell_size),
        None,
    );
    if args.json {
        let mut out = serde_json::to_value(&view)?;
        out["audit"] = json!({"id": audit.id, "verdict": audit.verdict, "reason": audit.reason});
        // The audit follows the run in the same command; its time is reported beside the
        // run's stages.
        out["timings_ms"]["audit"] = json!(audit_ms);
        println!("{out}");
    } else {
        println!(
            "run {}: {} ({}), {} customers in {} segments",
            view.run_id,
            view.algorithm,
            view.status,
            view.included_display.as_deref().unwrap_or("?"),
            view.segments.len()
        );
        for s in &view.segments {
            println!("  {:>3}  {:>8}  {}", s.segment, s.size_display, s.name);
        }
        for (reason, n) in &view.excluded {
            println!("  excluded ({reason}): {n}");
        }
        println!(
            "fairness audit {}: {} ({})",
            audit.id, audit.verdict, audit.reason
        );
    }
    Ok(())
}

fn audit_command(settings: Settings, run_id: i64, json: bool, csv: bool) -> anyhow::Result<()> {
    use fairseg::fairness::{export, service};
    let policy = Policy::load(&settings.policies_dir)?;
    let db = open_existing(&settings)?;
    startup::prepare(&db, &policy, &settings)?;
    let audit = service::audit_of_run(&db, &policy, &Actor::cli(), run_id)?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&fairseg::web::audits::AuditJson::of(&audit))?
        );
    } else if csv {
        print!("{}", export::csv(&audit));
    } else {
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
    }
    Ok(())
}

fn publish_command(settings: Settings, run_id: i64, json: bool) -> anyhow::Result<()> {
    let policy = Policy::load(&settings.policies_dir)?;
    let db = open_existing(&settings)?;
    startup::prepare(&db, &policy, &settings)?;
    let published = fairseg::fairness::service::publish_run(&db, &policy, &Actor::cli(), run_id)
        .map_err(|e| Reported(e.to_string()))?;
    if json {
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

fn kpi_evaluate(
    settings: Settings,
    as_of: Option<chrono::NaiveDate>,
    period: Option<String>,
    range: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    json: bool,
) -> anyhow::Result<()> {
    use fairseg::kpi::{Period, PeriodKind, service};
    let policy = Policy::load(&settings.policies_dir)?;
    let db = open_existing(&settings)?;
    startup::prepare(&db, &policy, &settings)?;
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
    let rows = service::evaluate(&db, &policy, &Actor::cli(), &periods)?;
    let views: Vec<service::EvaluationView> = rows
        .iter()
        .map(|r| service::EvaluationView::of(r, policy.fairness.min_cell_size))
        .collect();
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

fn members_command(
    settings: Settings,
    run_id: i64,
    segment: Option<i32>,
    out: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let policy = Policy::load(&settings.policies_dir)?;
    let db = open_existing(&settings)?;
    startup::prepare(&db, &policy, &settings)?;
    let members = fairseg::segmentation::members::read_members(
        &db,
        &policy,
        &Actor::cli(),
        run_id,
        segment,
        None,
    )?;
    let mut writer: Box<dyn std::io::Write> = match &out {
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

fn customer_command(settings: Settings, command: CustomerCommand) -> anyhow::Result<()> {
    let policy = Policy::load(&settings.policies_dir)?;
    let db = open_existing(&settings)?;
    startup::prepare(&db, &policy, &settings)?;
    let pseudonyms = startup::pseudonymizer(&db)?;
    match command {
        CustomerCommand::Export { id, out } => {
            let export =
                fairseg::dsr::export(&db, &pseudonyms, &policy.version, &Actor::cli(), &id)?;
            let text = serde_json::to_string_pretty(&export)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, text + "\n")
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "exported customer {} to {}",
                        export.pseudonym,
                        path.display()
                    );
                }
                None => println!("{text}"),
            }
            Ok(())
        }
        CustomerCommand::Erase { id, yes, json } => {
            if !yes {
                bail!("erasure cannot be undone: pass --yes to confirm");
            }
            let erasure =
                fairseg::dsr::erase(&db, &pseudonyms, &policy.version, &Actor::cli(), &id)?;
            if json {
                println!("{}", serde_json::to_string(&erasure)?);
            } else {
                let r = erasure.removed;
                println!(
                    "erased customer {}: {} transactions, {} consent events, {} protected attribute record(s)",
                    erasure.pseudonym, r.transactions, r.consent_events, r.protected_attributes
                );
            }
            Ok(())
        }
    }
}

fn retention_apply(settings: Settings, dry_run: bool, json: bool) -> anyhow::Result<()> {
    let policy = Policy::load(&settings.policies_dir)?;
    let db = open_existing(&settings)?;
    startup::prepare(&db, &policy, &settings)?;
    let cutoffs = fairseg::retention::cutoffs(&policy.retention, fairseg::db::now());
    let report =
        fairseg::db::retention::apply(&db, cutoffs, dry_run, &Actor::cli(), &policy.version)?;
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
