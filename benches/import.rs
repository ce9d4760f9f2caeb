//! Import speed: 1,000,000 customers with 8 attributes (two of them protected), then
//! 1,000,000 transactions, each from CSV into a fresh SQLite file through the code path of
//! `fairseg import` (`app::imports::import`: one streaming walk that checks and writes,
//! validation, type inference, pseudonyms, batched INSERTs in one transaction, import log and
//! trail).
//!
//! The CSV files are generated deterministically into `$IMPORT_BENCH_DIR` (default
//! `target/import-bench`), where `tools/bench/import.py` reads the same files with
//! `pandas.read_csv` and writes them with `DataFrame.to_sql` into SQLite, for comparison.
//!
//! Run: `cargo bench --bench import`, then `python3 tools/bench/import.py`.
//! `IMPORT_BENCH_TRANSACTIONS=10000000` makes the transactions file that long (written once
//! as `transactions-10000000.csv`, about 400 MB; its database takes about 1 GB while a run
//! lasts); `IMPORT_BENCH_RUNS=1` runs once.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use fairseg::app::imports::{ImportContext, ImportRequest, import};
use fairseg::customers::Pseudonymizer;
use fairseg::db::{DatabaseUrl, Db};
use fairseg::imports::{ImportKind, ImportOptions};
use fairseg::policy::Policy;
use fairseg::trail::Actor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CUSTOMERS: usize = 1_000_000;
/// Transactions in the file; `IMPORT_BENCH_TRANSACTIONS` overrides it (the 10,000,000).
fn transactions() -> usize {
    std::env::var("IMPORT_BENCH_TRANSACTIONS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000)
}
/// Runs per file; `IMPORT_BENCH_RUNS` overrides it (one run while iterating).
fn repeats() -> usize {
    std::env::var("IMPORT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

fn bench_dir() -> PathBuf {
    std::env::var_os("IMPORT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/import-bench"))
}

fn write_customers(path: &Path) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut out = BufWriter::new(fs::File::create(path).unwrap());
    writeln!(
        out,
        "customer_id,age,sex,city,income,signup_date,channel,visits,score"
    )
    .unwrap();
    const CITIES: [&str; 8] = [
        "Oslo",
        "Bergen",
        "Trondheim",
        "Stavanger",
        "Tromsø",
        "Drammen",
        "Bodø",
        "Ålesund",
    ];
    const CHANNELS: [&str; 4] = ["web", "store", "app", "phone"];
    for i in 0..CUSTOMERS {
        let age: u32 = rng.gen_range(18..90);
        let sex = if rng.gen_bool(0.5) { "f" } else { "m" };
        let city = CITIES[rng.gen_range(0..CITIES.len())];
        let income = if rng.gen_bool(0.03) {
            "?".to_string()
        } else {
            format!("{:.2}", rng.gen_range(15_000.0..150_000.0))
        };
        let day = rng.gen_range(1..=28);
        let month = rng.gen_range(1..=12);
        let year = rng.gen_range(2015..=2024);
        let channel = CHANNELS[rng.gen_range(0..CHANNELS.len())];
        let visits: u32 = rng.gen_range(0..500);
        let score: f64 = rng.r#gen();
        writeln!(
            out,
            "C{i:07},{age},{sex},{city},{income},{year}-{month:02}-{day:02},{channel},{visits},{score:.4}"
        )
        .unwrap();
    }
    out.flush().unwrap();
}

fn write_transactions(path: &Path, n: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut out = BufWriter::new(fs::File::create(path).unwrap());
    writeln!(out, "customer_id,occurred_at,amount,quantity,order_id").unwrap();
    for i in 0..n {
        let c = rng.gen_range(0..CUSTOMERS);
        let day = rng.gen_range(1..=28);
        let month = rng.gen_range(1..=12);
        let amount = rng.gen_range(1.0..500.0);
        let quantity: u32 = rng.gen_range(1..5);
        writeln!(
            out,
            "C{c:07},2024-{month:02}-{day:02},{amount:.2},{quantity},O{i:08}"
        )
        .unwrap();
    }
    out.flush().unwrap();
}

/// The CPU time (user + system) this process has used, in seconds: the wall clock of a run
/// on a shared machine says as much about the neighbours as about the import.
fn cpu_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn run(
    db: &Db,
    policy: &Policy,
    pseudonyms: &Pseudonymizer,
    kind: ImportKind,
    path: &Path,
) -> (f64, f64) {
    let started = Instant::now();
    let cpu = cpu_seconds();
    let report = import(
        &ImportContext {
            db,
            policy,
            pseudonyms,
        },
        &ImportRequest {
            kind,
            path,
            file_name: &path.display().to_string(),
            options: ImportOptions::default(),
            rejected: None,
            actor: &Actor::cli(),
        },
    )
    .unwrap_or_else(|e| panic!("the benchmark import fails: {e}"));
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(report.rows_imported as usize, report.rows_read as usize);
    (seconds, cpu_seconds() - cpu)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let dir = bench_dir();
    fs::create_dir_all(&dir).unwrap();
    let customers = dir.join("customers.csv");
    let n_transactions = transactions();
    let transactions = if n_transactions == 1_000_000 {
        dir.join("transactions.csv")
    } else {
        dir.join(format!("transactions-{n_transactions}.csv"))
    };
    if !customers.exists() {
        write_customers(&customers);
    }
    if !transactions.exists() {
        write_transactions(&transactions, n_transactions);
    }
    let size = |p: &Path| fs::metadata(p).unwrap().len() as f64 / 1e6;
    println!(
        "import bench: {CUSTOMERS} customers × 8 attributes ({:.1} MB), {n_transactions} transactions ({:.1} MB), SQLite, {} runs each on a fresh database",
        size(&customers),
        size(&transactions),
        repeats()
    );
    let policy = Policy::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
    let pseudonyms = Pseudonymizer::new(b"benchmark pseudonym key");
    let mut customer_times = Vec::new();
    let mut transaction_times = Vec::new();
    for run_no in 0..repeats() {
        let tmp = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::parse(&tmp.path().join("bench.db").display().to_string()).unwrap();
        let db = Db::connect(&url).unwrap();
        let (c, c_cpu) = run(&db, &policy, &pseudonyms, ImportKind::Customers, &customers);
        let (t, t_cpu) = run(
            &db,
            &policy,
            &pseudonyms,
            ImportKind::Transactions,
            &transactions,
        );
        println!(
            "  run {}: customers {c:.2} s ({:.0} rows/s, CPU {c_cpu:.2} s), transactions {t:.2} s ({:.0} rows/s, CPU {t_cpu:.2} s)",
            run_no + 1,
            CUSTOMERS as f64 / c,
            n_transactions as f64 / t
        );
        customer_times.push(c);
        transaction_times.push(t);
    }
    let c = median(customer_times);
    let t = median(transaction_times);
    println!(
        "fairseg customers:    median {c:.2} s = {:.0} rows/s (target ≥ 200000)",
        CUSTOMERS as f64 / c
    );
    println!(
        "fairseg transactions: median {t:.2} s = {:.0} rows/s (target ≥ 300000)",
        n_transactions as f64 / t
    );
    println!(
        "pandas counterpart: python3 tools/bench/import.py {}",
        dir.display()
    );
}
