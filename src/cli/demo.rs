//! `fairseg demo`: a fresh demo database with demo users, then serve it.

use anyhow::{Context, bail};
use serde_json::json;

use fairseg::app::demo;
use fairseg::config::{ConfigError, PUBLIC_URL_SETTING, PublicUrl, Settings};
use fairseg::db::Db;
use fairseg::policy::Policy;
use fairseg::startup;

/// The demo keeps clear of a real database's default name.
pub const DEFAULT_DATABASE: &str = "fairseg-demo.db";

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(mut settings: Settings, args: Args) -> anyhow::Result<()> {
    let Args {
        addr,
        no_serve,
        json,
        customers,
        seed,
    } = args;
    let policy =
        Policy::load(&settings.policies_dir).context("refusing to start on an invalid policy")?;
    let shown = settings.database_url.to_string();
    match settings.database_url.sqlite_path() {
        Some(path) => remove_old_demo(&settings, path)?,
        None => {
            // PostgreSQL: the demo fills a fresh database and never drops one.
            let existing = Db::connect(&settings.database_url)
                .context("opening the PostgreSQL database for the demo")?;
            if !demo::has_no_accounts(&existing)? {
                bail!(
                    "{shown} already has accounts; on PostgreSQL the demo only fills a fresh database (CREATE DATABASE a new one and pass its URL)"
                );
            }
        }
    }
    let db = Db::connect(&settings.database_url).context("creating the demo database")?;
    demo::mark_demo_database(&db)?;
    startup::prepare(&db, &policy, &settings)?;
    let users = demo::create_users(&db, &policy)?;
    let started = std::time::Instant::now();
    let story = demo::populate(
        &db,
        &policy,
        &startup::pseudonymizer(&db)?,
        &fairseg::web::signoffs::WebPresenter { policy: &policy },
        customers,
        seed,
    )?;
    let loaded = &story.loaded;
    if json {
        println!(
            "{}",
            json!({
                "database": shown, "users": users, "addr": addr, "data": loaded, "seed": seed,
                "segmentations": story.runs.iter().map(demo::DemoRun::json).collect::<Vec<_>>(),
                "consent_selection": story.consent_selection,
                "objection_check": {"disclosures": story.objections.report.disclosures, "clean": story.objections.clean},
            })
        );
    } else {
        println!("Demo database: {shown}");
        println!(
            "Demo data (seed {seed}): {} customers, {} transactions, {} consent events, loaded in {:.1} s",
            loaded.customers,
            loaded.transactions,
            loaded.consent_events,
            started.elapsed().as_secs_f64()
        );
        for run in &story.runs {
            println!(
                "Demo segmentation: run {}, {} segments of {} consented customers; audit {} {}{}",
                run.run_id,
                run.segments,
                run.included,
                run.audit_id,
                run.verdict,
                if run.published {
                    ", published"
                } else {
                    ", not published (the gate needs an override)"
                }
            );
        }
        if let Some(h) = &story.consent_selection {
            println!("Consent selection: {h}");
        }
        println!(
            "Objection check: {} disclosure(s) replayed against the ledger, {}",
            story.objections.report.disclosures,
            if story.objections.clean {
                "no leak"
            } else {
                "LEAKS FOUND"
            }
        );
        println!("Demo users (role, e-mail, password):");
        for u in &users {
            println!("  {:<11} {:<26} {}", u.role, u.email, u.password);
        }
    }
    if no_serve {
        return Ok(());
    }
    println!("Open http://{addr}/ and sign in as one of them.");
    if settings.public_url.is_none() {
        // The demo's links point at the address it serves on.
        settings.public_url = Some(PublicUrl::parse(&format!("http://{addr}")).map_err(
            |reason| ConfigError::Invalid {
                setting: PUBLIC_URL_SETTING,
                reason,
            },
        )?);
    }
    super::serve::serve(settings, &addr)
}

/// Removes an SQLite demo database that `demo` made earlier; refuses to touch any other file.
fn remove_old_demo(settings: &Settings, path: &str) -> anyhow::Result<()> {
    if !std::path::Path::new(path).exists() {
        return Ok(());
    }
    let existing =
        Db::connect(&settings.database_url).context("opening the existing demo database")?;
    let is_demo = demo::is_demo_database(&existing)?;
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
    Ok(())
}
