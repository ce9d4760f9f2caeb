//! Derived behavioural features of a customer as of a date, from their transactions:
//! recency, frequency, monetary value, average order value and tenure. Pure functions on plain
//! rows; `db::features` loads the rows.
//!
//! Rules, so that two readers compute the same numbers:
//! - only transactions on or before the as-of date count (its whole day, UTC);
//! - an *order* is a distinct `order_id`; a transaction without an order id is an order of its
//!   own (so data without order ids counts each transaction as one order);
//! - recency is the number of calendar days from the last purchase's day to the as-of date,
//!   tenure the same from the first purchase's day (0 for a purchase on the as-of date);
//! - a customer with no transaction up to the date has recency, tenure and average order value
//!   `None`, frequency 0 and monetary 0.

use std::collections::HashSet;

use chrono::{NaiveDate, NaiveDateTime};
use serde::Serialize;

/// The feature names, as segmentation refers to them next to attribute names.
pub const FEATURE_NAMES: [&str; 5] = [
    "recency_days",
    "frequency",
    "monetary",
    "average_order_value",
    "tenure_days",
];

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BehaviouralFeatures {
    /// Days since the last purchase; none without a purchase.
    pub recency_days: Option<i64>,
    /// Number of orders.
    pub frequency: u64,
    /// Total spent.
    pub monetary: f64,
    /// monetary / frequency; none without an order.
    pub average_order_value: Option<f64>,
    /// Days since the first purchase; none without a purchase.
    pub tenure_days: Option<i64>,
}

impl BehaviouralFeatures {
    /// The features of a customer who bought nothing up to the date.
    pub fn none() -> BehaviouralFeatures {
        BehaviouralFeatures {
            recency_days: None,
            frequency: 0,
            monetary: 0.0,
            average_order_value: None,
            tenure_days: None,
        }
    }

    /// A feature by name, as a number (`None` when undefined), for use like an attribute.
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "recency_days" => self.recency_days.map(|d| d as f64),
            "frequency" => Some(self.frequency as f64),
            "monetary" => Some(self.monetary),
            "average_order_value" => self.average_order_value,
            "tenure_days" => self.tenure_days.map(|d| d as f64),
            _ => None,
        }
    }
}

/// One transaction as far as the features depend on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Purchase {
    pub occurred_at: NaiveDateTime,
    pub amount: f64,
    pub order_id: Option<String>,
}

/// Folds one customer's transactions, in any order, into features as of `as_of`.
#[derive(Debug)]
pub struct Accumulator {
    as_of: NaiveDate,
    first: Option<NaiveDate>,
    last: Option<NaiveDate>,
    monetary: f64,
    orders_without_id: u64,
    order_ids: HashSet<String>,
}

impl Accumulator {
    pub fn new(as_of: NaiveDate) -> Accumulator {
        Accumulator {
            as_of,
            first: None,
            last: None,
            monetary: 0.0,
            orders_without_id: 0,
            order_ids: HashSet::new(),
        }
    }

    pub fn add(&mut self, occurred_at: NaiveDateTime, amount: f64, order_id: Option<&str>) {
        let day = occurred_at.date();
        if day > self.as_of {
            return;
        }
        self.first = Some(self.first.map_or(day, |f| f.min(day)));
        self.last = Some(self.last.map_or(day, |l| l.max(day)));
        self.monetary += amount;
        match order_id {
            Some(id) => {
                if !self.order_ids.contains(id) {
                    self.order_ids.insert(id.to_string());
                }
            }
            None => self.orders_without_id += 1,
        }
    }

    pub fn finish(self) -> BehaviouralFeatures {
        let frequency = self.orders_without_id + self.order_ids.len() as u64;
        if frequency == 0 {
            return BehaviouralFeatures::none();
        }
        BehaviouralFeatures {
            recency_days: self.last.map(|l| (self.as_of - l).num_days()),
            frequency,
            monetary: self.monetary,
            average_order_value: Some(self.monetary / frequency as f64),
            tenure_days: self.first.map(|f| (self.as_of - f).num_days()),
        }
    }
}

/// The features of one customer from their transactions.
pub fn features_as_of(purchases: &[Purchase], as_of: NaiveDate) -> BehaviouralFeatures {
    let mut acc = Accumulator::new(as_of);
    for p in purchases {
        acc.add(p.occurred_at, p.amount, p.order_id.as_deref());
    }
    acc.finish()
}

/// The features of every customer in a stream of `(customer, occurred_at, amount, order_id)`
/// rows sorted (grouped) by customer, one pass and one customer's orders in memory at a time.
/// Customers without rows are absent from the result; they have `BehaviouralFeatures::none()`.
/// A stream that is not grouped gives one entry per run of rows of the same customer.
pub fn features_for_all<K, I>(rows: I, as_of: NaiveDate) -> Vec<(K, BehaviouralFeatures)>
where
    K: PartialEq + Clone,
    I: IntoIterator<Item = (K, NaiveDateTime, f64, Option<String>)>,
{
    let mut out: Vec<(K, BehaviouralFeatures)> = Vec::new();
    let mut current: Option<(K, Accumulator)> = None;
    for (customer, at, amount, order_id) in rows {
        match &mut current {
            Some((k, acc)) if *k == customer => acc.add(at, amount, order_id.as_deref()),
            _ => {
                if let Some((k, acc)) = current.take() {
                    out.push((k, acc.finish()));
                }
                let mut acc = Accumulator::new(as_of);
                acc.add(at, amount, order_id.as_deref());
                current = Some((customer, acc));
            }
        }
    }
    if let Some((k, acc)) = current {
        out.push((k, acc.finish()));
    }
    out
}

/// Revenue and orders in the valuation window ending on the as-of day and in the window of the
/// same length before it. Orders count as in [`Accumulator`]: distinct order ids, and each
/// transaction without one.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowActivity {
    pub recent_revenue: f64,
    pub recent_orders: u64,
    pub prior_revenue: f64,
}

/// Folds one customer's transactions into [`WindowActivity`].
#[derive(Debug)]
pub struct WindowAccumulator {
    /// First day of the recent window and of the prior window; the as-of day closes both.
    recent_from: NaiveDate,
    prior_from: NaiveDate,
    as_of: NaiveDate,
    activity: WindowActivity,
    recent_order_ids: HashSet<String>,
}

impl WindowAccumulator {
    pub fn new(as_of: NaiveDate, window_days: u32) -> WindowAccumulator {
        let days = chrono::Days::new(u64::from(window_days));
        let recent_from = as_of
            .checked_sub_days(days)
            .and_then(|d| d.succ_opt())
            .unwrap_or(NaiveDate::MIN);
        let prior_from = recent_from.checked_sub_days(days).unwrap_or(NaiveDate::MIN);
        WindowAccumulator {
            recent_from,
            prior_from,
            as_of,
            activity: WindowActivity::default(),
            recent_order_ids: HashSet::new(),
        }
    }

    pub fn add(&mut self, occurred_at: NaiveDateTime, amount: f64, order_id: Option<&str>) {
        let day = occurred_at.date();
        if day > self.as_of || day < self.prior_from {
            return;
        }
        if day >= self.recent_from {
            self.activity.recent_revenue += amount;
            match order_id {
                Some(id) => {
                    if !self.recent_order_ids.contains(id) {
                        self.recent_order_ids.insert(id.to_string());
                    }
                }
                None => self.activity.recent_orders += 1,
            }
        } else {
            self.activity.prior_revenue += amount;
        }
    }

    pub fn finish(mut self) -> WindowActivity {
        self.activity.recent_orders += self.recent_order_ids.len() as u64;
        self.activity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn p(when: &str, amount: f64, order: Option<&str>) -> Purchase {
        Purchase {
            occurred_at: at(when),
            amount,
            order_id: order.map(str::to_string),
        }
    }

    #[test]
    fn hand_worked_example_with_order_ids() {
        // Two lines of order A on 1 March, one line of order B on 10 March, and one purchase
        // on 20 March, after the as-of date, which must not count.
        let purchases = [
            p("2026-03-01 09:00", 10.0, Some("A")),
            p("2026-03-01 09:00", 5.0, Some("A")),
            p("2026-03-10 18:30", 30.0, Some("B")),
            p("2026-03-20 12:00", 99.0, Some("C")),
        ];
        let f = features_as_of(&purchases, day("2026-03-15"));
        assert_eq!(f.recency_days, Some(5));
        assert_eq!(f.tenure_days, Some(14));
        assert_eq!(f.frequency, 2);
        assert_eq!(f.monetary, 45.0);
        assert_eq!(f.average_order_value, Some(22.5));
    }

    #[test]
    fn without_order_ids_each_transaction_is_an_order_and_the_as_of_day_counts_whole() {
        let purchases = [
            p("2026-01-01 00:00", 4.0, None),
            p("2026-01-01 00:00", 6.0, None),
            p("2026-01-31 23:59", 20.0, None),
        ];
        let f = features_as_of(&purchases, day("2026-01-31"));
        assert_eq!(f.frequency, 3);
        assert_eq!(f.monetary, 30.0);
        assert_eq!(f.average_order_value, Some(10.0));
        assert_eq!(f.recency_days, Some(0));
        assert_eq!(f.tenure_days, Some(30));
    }

    #[test]
    fn mixed_ids_count_distinct_orders_plus_loose_transactions() {
        let purchases = [
            p("2026-01-01 10:00", 1.0, Some("X")),
            p("2026-01-02 10:00", 1.0, Some("X")),
            p("2026-01-03 10:00", 1.0, None),
        ];
        assert_eq!(features_as_of(&purchases, day("2026-02-01")).frequency, 2);
    }

    #[test]
    fn no_purchase_before_the_date_gives_empty_features() {
        let purchases = [p("2026-05-01 10:00", 50.0, None)];
        let f = features_as_of(&purchases, day("2026-04-30"));
        assert_eq!(f, BehaviouralFeatures::none());
        assert_eq!(f.get("frequency"), Some(0.0));
        assert_eq!(f.get("recency_days"), None);
        assert_eq!(features_as_of(&[], day("2026-04-30")).monetary, 0.0);
    }

    #[test]
    fn bulk_matches_one_at_a_time() {
        let rows = vec![
            (1, at("2026-01-01 10:00"), 10.0, Some("a".to_string())),
            (1, at("2026-01-05 10:00"), 20.0, Some("b".to_string())),
            (2, at("2026-01-03 10:00"), 7.0, None),
            (3, at("2026-02-03 10:00"), 7.0, None),
        ];
        let all = features_for_all(rows, day("2026-01-10"));
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].0, 1);
        assert_eq!(all[0].1.frequency, 2);
        assert_eq!(all[0].1.recency_days, Some(5));
        assert_eq!(all[1].1.monetary, 7.0);
        // Customer 3 only bought after the date.
        assert_eq!(all[2].1, BehaviouralFeatures::none());
    }

    /// Features of all 23,570 CDNOW customers as of 1998-06-30 against pandas
    /// (`tools/reference/features.py`, written to tests/fixtures/reference/features_cdnow.json).
    #[test]
    fn cdnow_features_match_pandas() {
        #[derive(serde::Deserialize)]
        struct Row {
            customer_id: String,
            recency_days: i64,
            frequency: u64,
            monetary: f64,
            average_order_value: f64,
            tenure_days: i64,
        }
        #[derive(serde::Deserialize)]
        struct Reference {
            as_of: String,
            customers: usize,
            sum_recency_days: i64,
            sum_frequency: u64,
            sum_monetary: f64,
            sum_tenure_days: i64,
            sample: Vec<Row>,
        }
        let reference: Reference = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/reference/features_cdnow.json"
        )))
        .unwrap();
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cdnow/CDNOW_master.txt"
        ))
        .unwrap();
        let rows = text.lines().skip(1).filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() == 4).then(|| {
                let when = NaiveDate::parse_from_str(f[1], "%Y%m%d")
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap();
                (f[0].to_string(), when, f[3].parse::<f64>().unwrap(), None)
            })
        });
        let as_of = day(&reference.as_of);
        let all = features_for_all(rows, as_of);
        assert_eq!(all.len(), reference.customers);
        let sum_recency: i64 = all.iter().map(|(_, f)| f.recency_days.unwrap()).sum();
        let sum_tenure: i64 = all.iter().map(|(_, f)| f.tenure_days.unwrap()).sum();
        let sum_frequency: u64 = all.iter().map(|(_, f)| f.frequency).sum();
        let sum_monetary: f64 = all.iter().map(|(_, f)| f.monetary).sum();
        assert_eq!(sum_recency, reference.sum_recency_days);
        assert_eq!(sum_tenure, reference.sum_tenure_days);
        assert_eq!(sum_frequency, reference.sum_frequency);
        assert!((sum_monetary - reference.sum_monetary).abs() < 1e-6 * reference.sum_monetary);
        let by_id: std::collections::HashMap<&str, &BehaviouralFeatures> =
            all.iter().map(|(k, f)| (k.as_str(), f)).collect();
        for r in &reference.sample {
            let f = by_id[r.customer_id.as_str()];
            assert_eq!(f.recency_days, Some(r.recency_days), "{}", r.customer_id);
            assert_eq!(f.tenure_days, Some(r.tenure_days), "{}", r.customer_id);
            assert_eq!(f.frequency, r.frequency, "{}", r.customer_id);
            assert!((f.monetary - r.monetary).abs() < 1e-9 * r.monetary.max(1.0));
            let aov = f.average_order_value.unwrap();
            assert!((aov - r.average_order_value).abs() < 1e-9 * aov.max(1.0));
        }
    }

    #[test]
    fn windows_split_the_two_years_before_the_as_of_day() {
        // Window of 10 days ending 2026-03-20: recent = 11..=20 March, prior = 1..=10 March.
        let mut w = WindowAccumulator::new(day("2026-03-20"), 10);
        w.add(at("2026-02-28 12:00"), 1000.0, None); // before both windows
        w.add(at("2026-03-01 00:00"), 7.0, Some("A")); // first day of the prior window
        w.add(at("2026-03-10 23:59"), 3.0, Some("A"));
        w.add(at("2026-03-11 00:00"), 20.0, Some("B")); // first day of the recent window
        w.add(at("2026-03-20 18:00"), 5.0, Some("B"));
        w.add(at("2026-03-20 19:00"), 2.0, None);
        w.add(at("2026-03-21 00:00"), 500.0, None); // after the as-of day
        let a = w.finish();
        assert_eq!(a.prior_revenue, 10.0);
        assert_eq!(a.recent_revenue, 27.0);
        assert_eq!(a.recent_orders, 2);
    }
}
