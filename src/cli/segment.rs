//! `fairseg segment`: run a segmentation and audit it.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

use fairseg::app::runs::report;
use fairseg::config::Settings;
use fairseg::segmentation::settings::RunRequest;
use fairseg::trail::Actor;

use super::prepared;

#[derive(clap::Args)]
pub struct Args {
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
    rules: Option<PathBuf>,
    /// Compute behavioural features as of this date (YYYY-MM-DD); default today.
    #[arg(long, value_parser = fairseg::time::parse_day)]
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

pub fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let (policy, db) = prepared(settings)?;
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
    // Executed here, held by this process so that a server on the same database leaves it.
    let (id, outcome) =
        fairseg::app::jobs::execute_here(&db, &policy, settings.jobs, &Actor::cli(), &request)?;
    let outcome = outcome.with_context(|| format!("run {id} failed"))?;
    let audit_started = std::time::Instant::now();
    let audit = fairseg::app::audits::audit_after_run(&db, &policy, &Actor::cli(), &outcome)
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
