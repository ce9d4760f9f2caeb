//! KPI evaluation at scale: 1,000,000 customers, 10,000,000 transactions over two years
//! (2023–2024), 8 segments; every KPI for December 2024 for `all` and each segment.
//!
//! The data are generated deterministically and written once as raw little-endian columns to
//! `$KPI_BENCH_DIR` (default `target/kpi-bench`), where `tools/bench/kpi.py` reads the same
//! bytes and computes the same KPIs with pandas. Our results go to `rust_result.json` there so
//! the Python side can check that both computed the same numbers.
//!
//! Run: `cargo bench --bench kpi`, then `python3 tools/bench/kpi.py`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use fairseg::kpi::{
    ClvParams, DriftThresholds, Evaluator, Kpi, Period, PeriodKind, Segmentation, Transactions,
    day_number, feature_drift,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CUSTOMERS: u32 = 1_000_000;
const TRANSACTIONS: usize = 10_000_000;
const SEGMENTS: u32 = 8;
const REPEATS: usize = 5;

struct Data {
    customer: Vec<u32>,
    day: Vec<i32>,
    amount: Vec<f64>,
    segment: Vec<u8>,
}

fn generate() -> Data {
    let mut rng = ChaCha8Rng::seed_from_u64(20_240_601);
    let first = day_number(NaiveDate::from_ymd_opt(2023, 1, 1).unwrap());
    let days = 731; // 2023-01-01 ..= 2024-12-31
    let mut data = Data {
        customer: Vec::with_capacity(TRANSACTIONS),
        day: Vec::with_capacity(TRANSACTIONS),
        amount: Vec::with_capacity(TRANSACTIONS),
        segment: (0..CUSTOMERS)
            .map(|_| rng.gen_range(0..SEGMENTS) as u8)
            .collect(),
    };
    for _ in 0..TRANSACTIONS {
        // Skewed activity: low indices buy far more often than high ones.
        let u: f64 = rng.r#gen();
        data.customer.push(((u * u) * f64::from(CUSTOMERS)) as u32);
        data.day.push(first + rng.gen_range(0..days));
        let v: f64 = rng.r#gen();
        data.amount
            .push(((5.0 + 195.0 * v * v * v) * 100.0).round() / 100.0);
    }
    data
}

fn write_raw(dir: &Path, data: &Data) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let put = |name: &str, bytes: Vec<u8>| fs::write(dir.join(name), bytes);
    put(
        "customer.u32",
        data.customer.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )?;
    put(
        "day.i32",
        data.day.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )?;
    put(
        "amount.f64",
        data.amount.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )?;
    put("segment.u8", data.segment.clone())?;
    Ok(())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let dir = std::env::var_os("KPI_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/kpi-bench"));

    let t = Instant::now();
    let data = generate();
    let generate_s = t.elapsed().as_secs_f64();
    write_raw(&dir, &data).expect("write benchmark data");

    let names: Vec<String> = (0..SEGMENTS).map(|s| format!("segment_{s}")).collect();
    let assignment: Vec<Option<u32>> = data.segment.iter().map(|&s| Some(u32::from(s))).collect();
    let segmentation = Segmentation::new(names, &assignment).unwrap();
    let tx = Transactions::new(CUSTOMERS, &data.customer, &data.day, &data.amount, None).unwrap();
    let december = Period::containing(
        PeriodKind::Month,
        NaiveDate::from_ymd_opt(2024, 12, 1).unwrap(),
    )
    .unwrap();

    let (mut validate, mut setup, mut evaluate) = (Vec::new(), Vec::new(), Vec::new());
    let mut result = None;
    for _ in 0..REPEATS {
        let t = Instant::now();
        let tx =
            Transactions::new(CUSTOMERS, &data.customer, &data.day, &data.amount, None).unwrap();
        validate.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let evaluator = Evaluator::new(tx, &segmentation, ClvParams::default()).unwrap();
        setup.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let e = evaluator.evaluate(december).unwrap();
        evaluate.push(t.elapsed().as_secs_f64());
        result = Some(e);
    }
    let result = result.unwrap();

    let evaluator = Evaluator::new(tx, &segmentation, ClvParams::default()).unwrap();
    let months = Period::between(
        PeriodKind::Month,
        NaiveDate::from_ymd_opt(2023, 1, 1).unwrap(),
        NaiveDate::from_ymd_opt(2024, 12, 31).unwrap(),
    )
    .unwrap();
    let t = Instant::now();
    let backfill = evaluator.evaluate_all(&months).unwrap();
    let backfill_s = t.elapsed().as_secs_f64();
    assert_eq!(backfill.len(), 24);

    let (v, s, e) = (median(validate), median(setup), median(evaluate));
    println!("kpi bench: {CUSTOMERS} customers, {TRANSACTIONS} transactions, {SEGMENTS} segments");
    println!("data written to {}", dir.display());
    println!("{:<52} {:>10}", "step (median of 5)", "seconds");
    println!("{:<52} {:>10.3}", "generate data (once)", generate_s);
    println!("{:<52} {:>10.3}", "validate columns (Transactions::new)", v);
    println!(
        "{:<52} {:>10.3}",
        "first purchase per customer (Evaluator::new)", s
    );
    println!(
        "{:<52} {:>10.3}",
        "evaluate December 2024, all + 8 segments", e
    );
    println!("{:<52} {:>10.3}", "total for one period", v + s + e);
    println!(
        "{:<52} {:>10.3}",
        "back-fill 24 months (one Evaluator)", backfill_s
    );

    // The same rows in day order (as `ORDER BY day` would load them): no day index needed.
    let mut order: Vec<u32> = (0..TRANSACTIONS as u32).collect();
    order.sort_by_key(|&i| data.day[i as usize]);
    let sorted_customer: Vec<u32> = order.iter().map(|&i| data.customer[i as usize]).collect();
    let sorted_day: Vec<i32> = order.iter().map(|&i| data.day[i as usize]).collect();
    let sorted_amount: Vec<f64> = order.iter().map(|&i| data.amount[i as usize]).collect();
    drop(order);
    let (mut sorted_setup, mut sorted_eval) = (Vec::new(), Vec::new());
    for _ in 0..REPEATS {
        let t = Instant::now();
        let tx = Transactions::new(
            CUSTOMERS,
            &sorted_customer,
            &sorted_day,
            &sorted_amount,
            None,
        )
        .unwrap();
        let evaluator = Evaluator::new(tx, &segmentation, ClvParams::default()).unwrap();
        sorted_setup.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let e = evaluator.evaluate(december).unwrap();
        sorted_eval.push(t.elapsed().as_secs_f64());
        assert_eq!(e.all().aggregates.active, result.all().aggregates.active);
    }
    let (ss, se) = (median(sorted_setup), median(sorted_eval));
    println!(
        "{:<52} {:>10.3}",
        "rows in day order: validate + first purchase", ss
    );
    println!(
        "{:<52} {:>10.3}",
        "rows in day order: evaluate December 2024", se
    );
    println!(
        "{:<52} {:>10.3}",
        "rows in day order: total for one period",
        ss + se
    );

    // Drift of one feature between two populations of 1,000,000 values each: the amounts of
    // rows 0..1M against those of rows 1M..2M scaled by 1.02 (a 2 % price rise).
    let reference = &data.amount[..1_000_000];
    let current: Vec<f64> = data.amount[1_000_000..2_000_000]
        .iter()
        .map(|a| a * 1.02)
        .collect();
    let mut drift_times = Vec::new();
    let mut drift = None;
    for _ in 0..3 {
        let t = Instant::now();
        drift = Some(
            feature_drift("amount", reference, &current, &DriftThresholds::default()).unwrap(),
        );
        drift_times.push(t.elapsed().as_secs_f64());
    }
    let drift = drift.unwrap();
    let drift_s = median(drift_times);
    println!(
        "{:<52} {:>10.3}",
        "drift of one feature, 1M vs 1M (PSI + KS)", drift_s
    );
    println!(
        "  psi {:.6}, ks D {:.6}, p {:e} ({:?})",
        drift.psi, drift.ks.statistic, drift.ks.p_value, drift.ks.method
    );

    let all = result.all();
    for kpi in [
        Kpi::ActiveCustomers,
        Kpi::NewCustomers,
        Kpi::AverageOrderValue,
        Kpi::RetentionRate,
    ] {
        println!("  all {:<24} {:?}", kpi.name(), all.value(kpi).value());
    }

    let json = serde_json::json!({
        "period_start": december.start().to_string(),
        "segments": result.segments.iter().map(|s| {
            let values: serde_json::Map<String, serde_json::Value> = Kpi::ALL
                .iter()
                .map(|k| (k.name().to_owned(), serde_json::json!(s.value(*k).value())))
                .collect();
            serde_json::json!({ "segment": s.segment, "values": values })
        }).collect::<Vec<_>>(),
        "seconds": {
            "validate": v, "first_purchase": s, "evaluate": e, "total": v + s + e,
            "drift": drift_s,
        },
        "drift": { "psi": drift.psi, "ks_statistic": drift.ks.statistic, "ks_pvalue": drift.ks.p_value },
    });
    let mut f = fs::File::create(dir.join("rust_result.json")).expect("write result");
    writeln!(f, "{json}").unwrap();
}
