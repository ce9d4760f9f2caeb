//! KPI evaluation end to end on SQLite: 1,000,000 customers, 10,000,000 transactions over
//! 2023–2024, a published segmentation of 8 segments with every customer consented; every KPI
//! for December 2024 for `all` and each segment, loaded from the database, evaluated and
//! appended to the log (`app::kpis::evaluate`, what `fairseg kpi evaluate` runs).
//!
//! The database is generated once (SQL, in SQLite itself) at `$KPI_BENCH_DIR/kpi.db` (default
//! `target/kpi-bench/kpi.db`); `tools/bench/kpi_sqlite.py` computes the same KPIs with pandas
//! from the same file.
//!
//! Run: `cargo bench --bench kpi_sqlite`, then `python3 tools/bench/kpi_sqlite.py`.

use std::path::PathBuf;
use std::time::Instant;

use chrono::NaiveDate;
use diesel::connection::SimpleConnection;
use fairseg::app::kpis;
use fairseg::config::Settings;
use fairseg::db::{DatabaseUrl, Db};
use fairseg::kpi::{Period, PeriodKind};
use fairseg::policy::Policy;
use fairseg::trail::Actor;

const CUSTOMERS: u64 = 1_000_000;
const TRANSACTIONS: u64 = 10_000_000;
const REPEATS: usize = 3;

fn generate(db: &Db) {
    let started = Instant::now();
    let mut conn = db.conn().unwrap();
    conn.batch_execute(&format!(
        "PRAGMA synchronous = OFF;
         DROP INDEX transactions_customer; DROP INDEX transactions_period;
         BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {CUSTOMERS})
         INSERT INTO customers (id, external_id, pseudonym, attributes, created_at, updated_at)
           SELECT i, 'C' || i, 'p' || i, '{{}}', '2022-12-01 00:00:00', '2022-12-01 00:00:00' FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {TRANSACTIONS}),
           r(i, u, d, v) AS (SELECT i, abs(random()) % 1000000, abs(random()) % 731, abs(random()) % 1000000 FROM n)
         INSERT INTO transactions (id, customer_id, occurred_at, amount, quantity, order_id, imported_at)
           SELECT i, 1 + CAST((u * u) / 1000000000000.0 * {CUSTOMERS} AS INTEGER),
                  datetime('2023-01-01', '+' || d || ' days', '+' || (i % 86400) || ' seconds'),
                  round(5 + 195 * (v / 1000000.0) * (v / 1000000.0) * (v / 1000000.0), 2),
                  1, NULL, '2025-01-01 00:00:00' FROM r;
         INSERT INTO consent_events (id, customer_id, purpose, status, recorded_at, source, notice_version, recorded_by, entered_at)
           SELECT id, id, 'segmentation', 'granted', datetime('now', '-10 days'), 'bench', NULL, 'bench', datetime('now', '-10 days') FROM customers;
         INSERT INTO segmentation_runs (id, algorithm, settings, purpose, policy_version, status, stage, progress, created_by, created_at)
           VALUES (1, 'kmeans', '{{}}', 'segmentation', 'bench', 'published', 'done', 1.0, 'bench', '2025-01-01 00:00:00');
         WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 7)
         INSERT INTO segments (run_id, segment, name, proposed_name, size, profile, valuation)
           SELECT 1, i, 'Segment ' || i, 'Segment ' || i, 0, '{{}}', '{{}}' FROM s;
         INSERT INTO segment_memberships (run_id, customer_id, segment)
           SELECT 1, id, (id * 7919) % 8 FROM customers;
         COMMIT;
         CREATE INDEX transactions_customer ON transactions (customer_id, occurred_at);
         CREATE INDEX transactions_period ON transactions (occurred_at, customer_id, amount, order_id);
         ANALYZE;"
    ))
    .unwrap();
    // The ledger was written directly: the consent state is recomputed from it, as every
    // writer of the ledger keeps it.
    fairseg::db::consent_state::rebuild(&mut conn).unwrap();
    eprintln!(
        "generated {CUSTOMERS} customers and {TRANSACTIONS} transactions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    fairseg::telemetry::init(fairseg::config::LogFormat::Pretty);
    let dir = std::env::var("KPI_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/kpi-bench"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kpi.db");
    let fresh = !path.exists();
    let url = DatabaseUrl::parse(path.to_str().unwrap()).unwrap();
    let db = Db::connect(&url).unwrap();
    if fresh {
        generate(&db);
    }
    let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    let policy = Policy::load(&policies).unwrap();
    let settings = Settings::for_database(url, policies, dir.join("spool"));
    fairseg::startup::prepare(&db, &policy, &settings).unwrap();
    let period = Period::containing(
        PeriodKind::Month,
        NaiveDate::from_ymd_opt(2024, 12, 1).unwrap(),
    )
    .unwrap();
    let mut times = Vec::new();
    let mut rows = Vec::new();
    for _ in 0..REPEATS {
        let started = Instant::now();
        rows = kpis::evaluate(&db, &policy, &Actor::cli(), &[period]).unwrap();
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let all = |kpi: &str| {
        rows.iter()
            .find(|r| r.segment == "all" && r.kpi == kpi)
            .and_then(|r| r.value)
    };
    println!(
        "kpi_sqlite: {CUSTOMERS} customers, {TRANSACTIONS} transactions, 9 segments x 12 KPIs for {}: \
         median {:.2} s, best {:.2} s over {REPEATS} runs (load + evaluate + append {} rows)",
        period.label(),
        times[REPEATS / 2],
        times[0],
        rows.len()
    );
    println!(
        "  all: active_customers {:?}, new_customers {:?}, revenue {:?}, retention_rate {:?}",
        all("active_customers"),
        all("new_customers"),
        all("revenue"),
        all("retention_rate")
    );
}
