//! Consent state of a whole population at an instant, on SQLite: 1,000,000 customers and
//! about 2.5 million ledger events over two years (2023–2024) across the default policy's three
//! purposes. Times `db::consent::active_customers` (who may be processed for a purpose at an
//! instant: what a segmentation run freezes) and the coverage counts of every purpose, each the
//! median of 5 runs, then writes the results to `$CONSENT_BENCH_DIR` (default
//! `target/consent-bench`) where `tools/bench/consent_state.py` reads the same SQLite file with
//! pandas, computes the same figures and checks that they agree.
//!
//! Run: `cargo bench --bench consent_state`, then `python3 tools/bench/consent_state.py`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use diesel::connection::SimpleConnection;
use fairseg::db::consent::{active_customers, tally_at};
use fairseg::db::{DatabaseUrl, Db};
use fairseg::policy::Policy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CUSTOMERS: i64 = 1_000_000;
const REPEATS: usize = 5;
const BATCH: usize = 1_000;

fn ts(t: NaiveDateTime) -> String {
    // diesel's SQLite text form of a timestamp.
    t.format("%F %T%.f").to_string()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::var("CONSENT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/consent-bench"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("consent.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let policy = Policy::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies"))?;
    let purposes: Vec<(String, fairseg::policy::PurposeSpec)> = policy
        .purposes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let db = Db::connect(&DatabaseUrl::parse(&path.display().to_string())?)?;

    // Setup: multi-row INSERTs in one transaction; its speed is not what is measured.
    let started = Instant::now();
    let start = NaiveDate::from_ymd_opt(2023, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let span_secs = 731 * 86_400i64;
    let mut rng = ChaCha8Rng::seed_from_u64(20_261_123);
    let mut conn = db.conn()?;
    conn.batch_execute("BEGIN")?;
    let created = ts(start);
    let mut sql = String::new();
    for first in (1..=CUSTOMERS).step_by(BATCH) {
        sql.clear();
        sql.push_str("INSERT INTO customers (id, external_id, pseudonym, attributes, created_at, updated_at) VALUES ");
        for id in first..(first + BATCH as i64).min(CUSTOMERS + 1) {
            if id != first {
                sql.push(',');
            }
            write!(
                sql,
                "({id},'C{id}','c_{id}','{{}}','{created}','{created}')"
            )?;
        }
        conn.batch_execute(&sql)?;
    }
    let mut events = 0i64;
    let mut rows: Vec<String> = Vec::with_capacity(BATCH);
    let flush = |rows: &mut Vec<String>,
                 conn: &mut fairseg::db::PooledConnection|
     -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO consent_events (id, customer_id, purpose, status, recorded_at, source, notice_version, recorded_by, entered_at) VALUES {}",
            rows.join(",")
        );
        conn.batch_execute(&sql)?;
        rows.clear();
        Ok(())
    };
    for customer in 1..=CUSTOMERS {
        for (purpose, _) in &purposes {
            // A first answer for 60 % of customer × purpose pairs; then alternate grants and
            // withdrawals with falling probability: about 0.83 events per pair.
            if !rng.gen_bool(0.6) {
                continue;
            }
            let mut t = rng.gen_range(0..span_secs);
            let mut granted = rng.gen_bool(0.85);
            loop {
                events += 1;
                let at = ts(start + TimeDelta::seconds(t));
                rows.push(format!(
                    "({events},{customer},'{purpose}','{}','{at}','bench','v1','bench','{at}')",
                    if granted { "granted" } else { "withdrawn" }
                ));
                if rows.len() == BATCH {
                    flush(&mut rows, &mut conn)?;
                }
                if !rng.gen_bool(0.28) || t >= span_secs - 1 {
                    break;
                }
                t = rng.gen_range(t + 1..span_secs);
                granted = !granted;
            }
        }
    }
    flush(&mut rows, &mut conn)?;
    // The ledger was written directly: the consent state is recomputed from it.
    fairseg::db::consent_state::rebuild(&mut conn)?;
    conn.batch_execute("COMMIT; ANALYZE;")?;
    drop(conn);
    println!(
        "setup: {CUSTOMERS} customers, {events} consent events over 2023-2024 in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        path.display()
    );

    let at = NaiveDate::from_ymd_opt(2024, 12, 31)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap();
    let mut results = serde_json::Map::new();
    results.insert("at".into(), ts(at).into());
    for (purpose, spec) in &purposes {
        let mut times = Vec::new();
        let mut active = Vec::new();
        for _ in 0..REPEATS {
            let t = Instant::now();
            active = db.read(|c| active_customers(c, purpose, spec, at))?;
            times.push(t.elapsed().as_secs_f64());
        }
        let checksum: i64 = active.iter().fold(0i64, |a, &id| a.wrapping_add(id));
        println!(
            "active_customers({purpose}, {}): {} customers, median {:.3} s",
            ts(at),
            active.len(),
            median(times)
        );
        results.insert(
            format!("active_{purpose}"),
            serde_json::json!({"count": active.len(), "id_sum": checksum}),
        );
    }
    let mut times = Vec::new();
    let mut tallies = Vec::new();
    for _ in 0..REPEATS {
        let t = Instant::now();
        tallies = purposes
            .iter()
            .map(|(p, spec)| db.read(|c| tally_at(c, p, spec, at)))
            .collect::<Result<Vec<_>, _>>()?;
        times.push(t.elapsed().as_secs_f64());
    }
    println!(
        "coverage of all {} purposes at {}: median {:.3} s",
        purposes.len(),
        ts(at),
        median(times)
    );
    for ((purpose, _), tally) in purposes.iter().zip(&tallies) {
        println!("  {purpose}: {tally:?}");
        results.insert(format!("tally_{purpose}"), serde_json::to_value(tally)?);
    }
    std::fs::write(
        dir.join("rust_result.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    Ok(())
}
