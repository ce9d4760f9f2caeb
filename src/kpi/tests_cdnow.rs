//! The real CDNOW transactions (23,570 customers, 69,659 rows, January 1997 to June 1998)
//! against monthly KPIs computed with pandas by `tools/reference/kpi.py`.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::Deserialize;

use super::{
    ClvParams, Evaluator, Kpi, Period, PeriodKind, Segmentation, Transactions, day_number,
};

#[derive(Deserialize)]
struct Month {
    month: String,
    segment_size: u64,
    active_customers: u64,
    new_customers: u64,
    revenue: f64,
    orders: u64,
    average_order_value: Option<f64>,
    repeat_purchase_rate: Option<f64>,
    retention_rate: Option<f64>,
    churn_rate: Option<f64>,
}

#[derive(Deserialize)]
struct Reference {
    customers: usize,
    transactions: usize,
    months: Vec<Month>,
}

struct Cdnow {
    n_customers: u32,
    customer: Vec<u32>,
    day: Vec<i32>,
    amount: Vec<f64>,
}

/// `customer_id date(YYYYMMDD) number_of_cds dollar_value`, whitespace-separated, one header
/// line, CRLF line ends.
fn load() -> Cdnow {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cdnow/CDNOW_master.txt"
    ))
    .expect("CDNOW fixture present");
    let mut index: HashMap<u64, u32> = HashMap::new();
    let (mut customer, mut day, mut amount) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        assert_eq!(fields.len(), 4, "line {line:?}");
        let id: u64 = fields[0].parse().unwrap();
        let next = index.len() as u32;
        customer.push(*index.entry(id).or_insert(next));
        day.push(day_number(
            NaiveDate::parse_from_str(fields[1], "%Y%m%d").unwrap(),
        ));
        amount.push(fields[3].parse::<f64>().unwrap());
    }
    Cdnow {
        n_customers: index.len() as u32,
        customer,
        day,
        amount,
    }
}

fn close(ours: f64, theirs: f64) -> bool {
    ours == theirs || (ours - theirs).abs() <= 1e-9 * theirs.abs()
}

#[test]
fn monthly_kpis_match_pandas() {
    let reference: Reference = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/reference/kpi/cdnow.json"
    )))
    .unwrap();
    let data = load();
    assert_eq!(data.n_customers as usize, reference.customers);
    assert_eq!(data.customer.len(), reference.transactions);
    let tx = Transactions::new(
        data.n_customers,
        &data.customer,
        &data.day,
        &data.amount,
        None,
    )
    .unwrap();
    let seg = Segmentation::population_only(data.n_customers);
    let evaluator = Evaluator::new(tx, &seg, ClvParams::default()).unwrap();
    let periods = Period::between(
        PeriodKind::Month,
        NaiveDate::from_ymd_opt(1997, 1, 1).unwrap(),
        NaiveDate::from_ymd_opt(1998, 6, 30).unwrap(),
    )
    .unwrap();
    assert_eq!(periods.len(), reference.months.len());
    assert_eq!(reference.months.len(), 18);

    for (period, want) in periods.iter().zip(&reference.months) {
        assert_eq!(period.label(), want.month);
        let e = evaluator.evaluate(*period).unwrap();
        let all = e.all();
        let a = all.aggregates;
        let m = &want.month;
        assert_eq!(a.customers, want.segment_size, "{m}");
        assert_eq!(a.active, want.active_customers, "{m} active_customers");
        assert_eq!(a.new, want.new_customers, "{m} new_customers");
        assert_eq!(a.orders, want.orders, "{m} orders");
        assert!(
            close(a.revenue, want.revenue),
            "{m} revenue {} vs {}",
            a.revenue,
            want.revenue
        );
        for (kpi, expected) in [
            (Kpi::AverageOrderValue, want.average_order_value),
            (Kpi::RepeatPurchaseRate, want.repeat_purchase_rate),
            (Kpi::RetentionRate, want.retention_rate),
            (Kpi::ChurnRate, want.churn_rate),
        ] {
            let got = all.value(kpi).value();
            match (got, expected) {
                (Some(g), Some(w)) => assert!(close(g, w), "{m} {kpi}: {g} vs {w}"),
                (None, None) => {}
                _ => panic!("{m} {kpi}: ours {got:?}, pandas {expected:?}"),
            }
        }
    }
    // Everyone in CDNOW made their first purchase in Q1 1997; afterwards nobody is new.
    let q1_new: u64 = reference.months[..3].iter().map(|m| m.new_customers).sum();
    assert_eq!(q1_new, reference.customers as u64);
}
