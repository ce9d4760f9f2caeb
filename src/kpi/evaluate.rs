//! Evaluation of every KPI for one period, for the whole population (`all`) and for each
//! segment, from columnar transactions.
//!
//! Hand-written instead of a data-frame group-by: the evaluator indexes the rows by day once
//! (a counting sort), so each period touches only its own rows and those of the period
//! before, and per-customer byte flags replace hash-based distinct counts. One month over a
//! 10-million-row history takes well under a second including the indexing, and a back-fill
//! pays the indexing once (see `benches/kpi.rs`).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::KpiError;
use super::catalogue::{Aggregates, ClvParams, Kpi, KpiValue, Undefined};
use super::period::Period;
use super::status::{Objective, Status};

/// The segment label of the whole population.
pub const ALL_SEGMENT: &str = "all";

/// Transactions as parallel columns. Row `i` is customer `customer[i]` spending `amount[i]`
/// on day `day[i]` (days since 1970-01-01, see [`super::period::day_number`]), optionally as
/// part of order `order[i]`.
///
/// Customers are dense indices `0..n_customers` (the caller maps its ids). Amounts may be
/// negative (refunds net against revenue) but must be finite.
#[derive(Debug, Clone, Copy)]
pub struct Transactions<'a> {
    n_customers: u32,
    customer: &'a [u32],
    day: &'a [i32],
    amount: &'a [f64],
    order: Option<&'a [u64]>,
}

impl<'a> Transactions<'a> {
    /// Validates the columns: equal lengths, customer indices below `n_customers`, finite
    /// amounts.
    pub fn new(
        n_customers: u32,
        customer: &'a [u32],
        day: &'a [i32],
        amount: &'a [f64],
        order: Option<&'a [u64]>,
    ) -> Result<Self, KpiError> {
        let n = customer.len();
        let mismatch = |column: &'static str, len: usize| KpiError::LengthMismatch {
            column,
            expected: n,
            found: len,
        };
        if day.len() != n {
            return Err(mismatch("day", day.len()));
        }
        if amount.len() != n {
            return Err(mismatch("amount", amount.len()));
        }
        if let Some(order) = order
            && order.len() != n
        {
            return Err(mismatch("order", order.len()));
        }
        if let Some(row) = customer.iter().position(|&c| c >= n_customers) {
            return Err(KpiError::CustomerOutOfRange {
                row,
                customer: customer[row],
                n_customers,
            });
        }
        if let Some(row) = amount.iter().position(|a| !a.is_finite()) {
            return Err(KpiError::NonFiniteAmount { row });
        }
        Ok(Self {
            n_customers,
            customer,
            day,
            amount,
            order,
        })
    }

    /// Number of customers in the population (including those who never bought).
    pub fn n_customers(&self) -> u32 {
        self.n_customers
    }

    /// Number of transaction rows.
    pub fn len(&self) -> usize {
        self.customer.len()
    }

    /// Whether there are no transaction rows.
    pub fn is_empty(&self) -> bool {
        self.customer.is_empty()
    }
}

/// The published segmentation: segment names and each customer's segment (or none, for
/// customers outside the segmented population, who still count in `all`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segmentation {
    names: Vec<String>,
    // Segment index per customer; `UNASSIGNED` for none. A flat u32 vector rather than
    // `Vec<Option<u32>>` halves the memory touched per row in the hot loop.
    of_customer: Vec<u32>,
}

const UNASSIGNED: u32 = u32::MAX;

impl Segmentation {
    /// `names[s]` is segment `s`; `assignment[c]` is customer `c`'s segment index, if any.
    /// Names must be unique, non-empty and not `all`.
    pub fn new(names: Vec<String>, assignment: &[Option<u32>]) -> Result<Self, KpiError> {
        let mut seen = HashSet::new();
        for name in &names {
            if name.trim().is_empty() || name == ALL_SEGMENT || !seen.insert(name.as_str()) {
                return Err(KpiError::InvalidSegmentName(name.clone()));
            }
        }
        let n_segments = u32::try_from(names.len())
            .ok()
            .filter(|&n| n < UNASSIGNED)
            .ok_or_else(|| KpiError::InvalidParameter("too many segments".into()))?;
        let mut of_customer = Vec::with_capacity(assignment.len());
        for (customer, seg) in assignment.iter().enumerate() {
            match *seg {
                Some(s) if s >= n_segments => {
                    return Err(KpiError::SegmentOutOfRange {
                        customer,
                        segment: s,
                        n_segments,
                    });
                }
                Some(s) => of_customer.push(s),
                None => of_customer.push(UNASSIGNED),
            }
        }
        Ok(Self { names, of_customer })
    }

    /// No segments: only the whole population `all` is evaluated.
    pub fn population_only(n_customers: u32) -> Self {
        Self {
            names: Vec::new(),
            of_customer: vec![UNASSIGNED; n_customers as usize],
        }
    }

    /// Segment names, in index order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of customers the assignment covers.
    pub fn n_customers(&self) -> usize {
        self.of_customer.len()
    }
}

/// One segment's result for a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentKpis {
    /// `all` or the segment name.
    pub segment: String,
    /// The counts behind the KPIs.
    pub aggregates: Aggregates,
    /// Every KPI in [`Kpi::ALL`] order.
    pub values: [KpiValue; Kpi::COUNT],
}

impl SegmentKpis {
    /// The value of one KPI.
    pub fn value(&self, kpi: Kpi) -> KpiValue {
        self.values[kpi.index()]
    }
}

/// Every KPI for a period, for `all` first and then each segment in index order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The evaluated period P.
    pub period: Period,
    /// P−1, used for retention, churn and CLV.
    pub previous: Period,
    /// `all`, then one entry per segment.
    pub segments: Vec<SegmentKpis>,
}

impl Evaluation {
    /// The result of `all` or of a named segment.
    pub fn segment(&self, name: &str) -> Option<&SegmentKpis> {
        self.segments.iter().find(|s| s.segment == name)
    }

    /// The whole population's result.
    pub fn all(&self) -> &SegmentKpis {
        &self.segments[0]
    }

    /// One flat row per segment and KPI (segments in order, KPIs in catalogue order), with
    /// the status against the objective that `objective(kpi, segment)` returns, if any. This
    /// is the shape of the evaluation log and of `fairseg kpi evaluate --json`.
    pub fn rows(&self, objective: impl Fn(Kpi, &str) -> Option<Objective>) -> Vec<EvaluationRow> {
        let mut rows = Vec::with_capacity(self.segments.len() * Kpi::COUNT);
        for s in &self.segments {
            for kpi in Kpi::ALL {
                let value = s.value(kpi);
                let objective = objective(kpi, &s.segment);
                rows.push(EvaluationRow {
                    kpi,
                    definition_version: kpi.definition_version(),
                    segment: s.segment.clone(),
                    period_start: self.period.start(),
                    period_end: self.period.end(),
                    value: value.value(),
                    undefined_reason: value.undefined_reason(),
                    target: objective.map(|o| o.target()),
                    alert_threshold: objective.map(|o| o.alert_threshold()),
                    status: objective.map(|o| o.status(&value)),
                });
            }
        }
        rows
    }
}

/// One KPI of one segment for one period, flat, ready to append to the log or print as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluationRow {
    /// The KPI.
    pub kpi: Kpi,
    /// Version of its formula.
    pub definition_version: &'static str,
    /// `all` or the segment name.
    pub segment: String,
    /// First day of the period.
    pub period_start: chrono::NaiveDate,
    /// First day *after* the period (periods are half-open).
    pub period_end: chrono::NaiveDate,
    /// The value, `null` when undefined.
    pub value: Option<f64>,
    /// Why the value is undefined, when it is.
    pub undefined_reason: Option<Undefined>,
    /// The target, when an objective is set.
    pub target: Option<f64>,
    /// The alert threshold, when an objective is set.
    pub alert_threshold: Option<f64>,
    /// Status against the objective; `null` when no objective is set.
    pub status: Option<Status>,
}

/// Evaluates periods over one transaction history and segmentation. Construction computes
/// each customer's first purchase day over the whole history once, so a back-fill over many
/// periods pays for it once.
#[derive(Debug)]
pub struct Evaluator<'a> {
    tx: Transactions<'a>,
    segmentation: &'a Segmentation,
    clv: ClvParams,
    first_day: Vec<i32>,
    segment_customers: Vec<u64>,
    // Row indices ordered by day, so that the rows of a period are a contiguous range;
    // `None` when the rows already come in day order (e.g. loaded with ORDER BY day).
    rows_by_day: Option<Vec<u32>>,
}

/// The rows of a period: a plain range when the input is in day order, else indices.
enum Rows<'r> {
    Contiguous(std::ops::Range<usize>),
    Indexed(std::slice::Iter<'r, u32>),
}

impl Iterator for Rows<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        match self {
            Rows::Contiguous(range) => range.next(),
            Rows::Indexed(iter) => iter.next().map(|&i| i as usize),
        }
    }
}

// Per-customer flags of the scan.
const ONE_ORDER: u8 = 1;
const TWO_ORDERS: u8 = 2;
const ACTIVE_PREVIOUS: u8 = 4;

impl<'a> Evaluator<'a> {
    /// Prepares evaluation; the segmentation must cover exactly the transactions' customers.
    pub fn new(
        tx: Transactions<'a>,
        segmentation: &'a Segmentation,
        clv: ClvParams,
    ) -> Result<Self, KpiError> {
        if segmentation.n_customers() != tx.n_customers as usize {
            return Err(KpiError::LengthMismatch {
                column: "segment assignment",
                expected: tx.n_customers as usize,
                found: segmentation.n_customers(),
            });
        }
        let mut first_day = vec![i32::MAX; tx.n_customers as usize];
        for (&c, &d) in tx.customer.iter().zip(tx.day) {
            let f = &mut first_day[c as usize];
            if d < *f {
                *f = d;
            }
        }
        Self::with_first_days(tx, segmentation, clv, first_day)
    }

    /// Like [`Evaluator::new`], with each customer's first purchase day given by the caller:
    /// for when `tx` holds only the rows of the periods evaluated (loaded from a database),
    /// so the first purchase ever cannot be seen in them. `first_day[c]` is customer `c`'s
    /// first purchase day, or any earlier day (e.g. `i32::MIN`) for a customer known to have
    /// bought before the periods evaluated.
    pub fn with_first_days(
        tx: Transactions<'a>,
        segmentation: &'a Segmentation,
        clv: ClvParams,
        first_day: Vec<i32>,
    ) -> Result<Self, KpiError> {
        if segmentation.n_customers() != tx.n_customers as usize {
            return Err(KpiError::LengthMismatch {
                column: "segment assignment",
                expected: tx.n_customers as usize,
                found: segmentation.n_customers(),
            });
        }
        if first_day.len() != tx.n_customers as usize {
            return Err(KpiError::LengthMismatch {
                column: "first purchase day",
                expected: tx.n_customers as usize,
                found: first_day.len(),
            });
        }
        let slots = segmentation.names.len() + 1;
        let mut segment_customers = vec![0u64; slots];
        for &s in &segmentation.of_customer {
            segment_customers[slot(s, slots)] += 1;
        }
        let rows_by_day = if tx.day.is_sorted() {
            None
        } else {
            Some(rows_by_day(tx.day)?)
        };
        Ok(Self {
            tx,
            segmentation,
            clv,
            first_day,
            segment_customers,
            rows_by_day,
        })
    }

    /// The rows with a day in `[start, end)`.
    fn rows_in(&self, start: i32, end: i32) -> Rows<'_> {
        let day = self.tx.day;
        match &self.rows_by_day {
            None => {
                let lo = day.partition_point(|&d| d < start);
                let hi = day.partition_point(|&d| d < end);
                Rows::Contiguous(lo..hi.max(lo))
            }
            Some(index) => {
                let lo = index.partition_point(|&i| day[i as usize] < start);
                let hi = index.partition_point(|&i| day[i as usize] < end);
                Rows::Indexed(index[lo..hi.max(lo)].iter())
            }
        }
    }

    /// Every KPI for `period` (and its previous period) for `all` and each segment.
    pub fn evaluate(&self, period: Period) -> Result<Evaluation, KpiError> {
        let previous = period.previous()?;
        let (start, end) = period.day_range();
        let (prev_start, prev_end) = previous.day_range();
        let slots = self.segmentation.names.len() + 1;
        let seg = &self.segmentation.of_customer;
        let mut acc = vec![Aggregates::default(); slots];
        let mut revenue = vec![NeumaierSum::default(); slots];
        let mut flags = vec![0u8; self.tx.n_customers as usize];
        // Rows of P that carry an order id, to be de-duplicated after the scan.
        let mut order_rows: Vec<(u64, u32)> = Vec::new();

        for i in self.rows_in(start, end) {
            let c = self.tx.customer[i] as usize;
            let a = &mut acc[slot(seg[c], slots)];
            revenue[slot(seg[c], slots)].add(self.tx.amount[i]);
            match self.tx.order {
                Some(order) => order_rows.push((order[i], c as u32)),
                None => {
                    a.orders += 1;
                    let f = &mut flags[c];
                    if *f & ONE_ORDER == 0 {
                        *f |= ONE_ORDER;
                    } else if *f & TWO_ORDERS == 0 {
                        *f |= TWO_ORDERS;
                        a.repeaters += 1;
                    }
                }
            }
        }
        for i in self.rows_in(prev_start, prev_end) {
            let c = self.tx.customer[i] as usize;
            let f = &mut flags[c];
            if *f & ACTIVE_PREVIOUS == 0 {
                *f |= ACTIVE_PREVIOUS;
                acc[slot(seg[c], slots)].active_previous += 1;
            }
        }

        if !order_rows.is_empty() {
            order_rows.sort_unstable();
            order_rows.dedup();
            for pair in order_rows.windows(2) {
                if pair[0].0 == pair[1].0 {
                    return Err(KpiError::OrderSharedByCustomers {
                        order: pair[0].0,
                        customers: (pair[0].1, pair[1].1),
                    });
                }
            }
            for &(_, c) in &order_rows {
                let c = c as usize;
                let a = &mut acc[slot(seg[c], slots)];
                a.orders += 1;
                let f = &mut flags[c];
                if *f & ONE_ORDER == 0 {
                    *f |= ONE_ORDER;
                } else if *f & TWO_ORDERS == 0 {
                    *f |= TWO_ORDERS;
                    a.repeaters += 1;
                }
            }
        }

        // Per-customer pass: active, retained and new follow from the flags. A customer with
        // a row in P has a first purchase before `end`, so "first ever in P" is first ≥ start.
        for (c, &f) in flags.iter().enumerate() {
            if f & ONE_ORDER != 0 {
                let a = &mut acc[slot(seg[c], slots)];
                a.active += 1;
                if f & ACTIVE_PREVIOUS != 0 {
                    a.retained += 1;
                }
                if self.first_day[c] >= start {
                    a.new += 1;
                }
            }
        }

        let mut total = Aggregates::default();
        let mut total_revenue = NeumaierSum::default();
        for (s, a) in acc.iter_mut().enumerate() {
            a.customers = self.segment_customers[s];
            a.revenue = revenue[s].value();
            total_revenue.merge(&revenue[s]);
            total.customers += a.customers;
            total.active += a.active;
            total.active_previous += a.active_previous;
            total.retained += a.retained;
            total.new += a.new;
            total.orders += a.orders;
            total.repeaters += a.repeaters;
        }
        total.revenue = total_revenue.value();

        let mut segments = Vec::with_capacity(slots);
        segments.push(SegmentKpis {
            segment: ALL_SEGMENT.to_owned(),
            aggregates: total,
            values: total.kpis(&self.clv),
        });
        for (name, a) in self.segmentation.names.iter().zip(&acc) {
            segments.push(SegmentKpis {
                segment: name.clone(),
                aggregates: *a,
                values: a.kpis(&self.clv),
            });
        }
        Ok(Evaluation {
            period,
            previous,
            segments,
        })
    }

    /// Evaluates each period in turn (a back-fill).
    pub fn evaluate_all(&self, periods: &[Period]) -> Result<Vec<Evaluation>, KpiError> {
        periods.iter().map(|&p| self.evaluate(p)).collect()
    }
}

/// Row indices sorted by day (stable). A counting sort over the day span when the span is
/// modest compared with the number of rows (the normal case: a few years of days), otherwise
/// a comparison sort, so a stray far-future date cannot blow up memory.
fn rows_by_day(day: &[i32]) -> Result<Vec<u32>, KpiError> {
    let n = u32::try_from(day.len())
        .map_err(|_| KpiError::InvalidParameter("more than 2^32 transaction rows".into()))?;
    let (Some(&min), Some(&max)) = (day.iter().min(), day.iter().max()) else {
        return Ok(Vec::new());
    };
    let span = (i64::from(max) - i64::from(min) + 1) as usize;
    if span > 4 * day.len() + 4096 {
        let mut rows: Vec<u32> = (0..n).collect();
        rows.sort_by_key(|&i| day[i as usize]);
        return Ok(rows);
    }
    let mut offsets = vec![0u32; span + 1];
    for &d in day {
        offsets[(d - min) as usize + 1] += 1;
    }
    for k in 1..offsets.len() {
        offsets[k] += offsets[k - 1];
    }
    let mut rows = vec![0u32; day.len()];
    for (i, &d) in day.iter().enumerate() {
        let slot = &mut offsets[(d - min) as usize];
        rows[*slot as usize] = i as u32;
        *slot += 1;
    }
    Ok(rows)
}

/// Accumulator slot of a segment index: the unassigned customers use the last slot.
#[inline]
fn slot(segment: u32, slots: usize) -> usize {
    if segment == UNASSIGNED {
        slots - 1
    } else {
        segment as usize
    }
}

/// Neumaier compensated summation, so revenue over millions of rows does not depend on the
/// order of the rows beyond the last bit.
#[derive(Debug, Clone, Copy, Default)]
struct NeumaierSum {
    sum: f64,
    compensation: f64,
}

impl NeumaierSum {
    #[inline]
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    fn merge(&mut self, other: &NeumaierSum) {
        self.add(other.sum);
        self.add(other.compensation);
    }

    fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::super::catalogue::Undefined;
    use super::super::period::{PeriodKind, day_number};
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> i32 {
        day_number(NaiveDate::from_ymd_opt(y, m, d).unwrap())
    }

    fn march_2024() -> Period {
        Period::containing(
            PeriodKind::Month,
            NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
        )
        .unwrap()
    }

    /// Six customers, two segments (`a` = {0,1,2}, `b` = {3,4}), customer 5 unassigned.
    ///
    /// | customer | Jan 2024 | Feb 2024 (P−1) | Mar 2024 (P)       |
    /// |----------|----------|----------------|--------------------|
    /// | 0        | 10       | 20             | 30, 40 (two orders)|
    /// | 1        |          | 5              |                    |
    /// | 2        |          |                | 15 (first ever)    |
    /// | 3        | 7        | 8              | 9                  |
    /// | 4        |          |                | 100, 1 (first ever)|
    /// | 5        |          | 2              | 3                  |
    struct Fixture {
        customer: Vec<u32>,
        day: Vec<i32>,
        amount: Vec<f64>,
    }

    fn fixture() -> Fixture {
        let rows = [
            (0, day(2024, 1, 5), 10.0),
            (0, day(2024, 2, 5), 20.0),
            (0, day(2024, 3, 1), 30.0),
            (0, day(2024, 3, 31), 40.0),
            (1, day(2024, 2, 29), 5.0),
            (2, day(2024, 3, 15), 15.0),
            (3, day(2024, 1, 31), 7.0),
            (3, day(2024, 2, 1), 8.0),
            (3, day(2024, 3, 2), 9.0),
            (4, day(2024, 3, 3), 100.0),
            (4, day(2024, 3, 3), 1.0),
            (5, day(2024, 2, 10), 2.0),
            (5, day(2024, 3, 10), 3.0),
            // April: outside P, must not count.
            (1, day(2024, 4, 1), 1000.0),
        ];
        Fixture {
            customer: rows.iter().map(|r| r.0).collect(),
            day: rows.iter().map(|r| r.1).collect(),
            amount: rows.iter().map(|r| r.2).collect(),
        }
    }

    fn segmentation() -> Segmentation {
        Segmentation::new(
            vec!["a".into(), "b".into()],
            &[Some(0), Some(0), Some(0), Some(1), Some(1), None],
        )
        .unwrap()
    }

    #[test]
    fn hand_worked_month_for_all_and_each_segment() {
        let f = fixture();
        let tx = Transactions::new(6, &f.customer, &f.day, &f.amount, None).unwrap();
        let seg = segmentation();
        let ev = Evaluator::new(tx, &seg, ClvParams::default()).unwrap();
        let e = ev.evaluate(march_2024()).unwrap();
        assert_eq!(e.previous.label(), "2024-02");
        assert_eq!(
            e.segments
                .iter()
                .map(|s| s.segment.as_str())
                .collect::<Vec<_>>(),
            ["all", "a", "b"]
        );

        // all: active in March {0,2,3,4,5} = 5; in Feb {0,1,3,5} = 4; retained {0,3,5} = 3;
        // new {2,4} = 2; orders = rows = 7; repeaters {0,4} = 2; revenue 198.
        let all = e.all().aggregates;
        assert_eq!(
            all,
            Aggregates {
                customers: 6,
                active: 5,
                active_previous: 4,
                retained: 3,
                new: 2,
                orders: 7,
                repeaters: 2,
                revenue: 198.0
            }
        );
        let v = |s: &SegmentKpis, k: Kpi| s.value(k).value().unwrap();
        let all = e.all();
        assert_eq!(v(all, Kpi::AverageOrderValue), 198.0 / 7.0);
        assert_eq!(v(all, Kpi::RevenuePerCustomer), 198.0 / 5.0);
        assert_eq!(v(all, Kpi::PurchaseFrequency), 7.0 / 5.0);
        assert_eq!(v(all, Kpi::RepeatPurchaseRate), 2.0 / 5.0);
        assert_eq!(v(all, Kpi::RetentionRate), 3.0 / 4.0);
        assert_eq!(v(all, Kpi::ChurnRate), 1.0 / 4.0);
        // CLV = revenue per customer * 1 / churn = 39.6 * 4.
        assert!((v(all, Kpi::CustomerLifetimeValue) - 158.4).abs() < 1e-12);

        // a = {0,1,2}: active {0,2}, prev {0,1}, retained {0}, new {2}, orders 3, revenue 85.
        let a = e.segment("a").unwrap().aggregates;
        assert_eq!(
            (
                a.customers,
                a.active,
                a.active_previous,
                a.retained,
                a.new,
                a.orders,
                a.repeaters
            ),
            (3, 2, 2, 1, 1, 3, 1)
        );
        assert_eq!(a.revenue, 85.0);
        // b = {3,4}: active {3,4}, prev {3}, retained {3}, new {4}, orders 3, revenue 110.
        let b = e.segment("b").unwrap();
        assert_eq!(v(b, Kpi::RetentionRate), 1.0);
        assert_eq!(v(b, Kpi::ChurnRate), 0.0);
        assert_eq!(v(b, Kpi::Revenue), 110.0);
        assert_eq!(v(b, Kpi::RepeatPurchaseRate), 0.5);
        // Churn 0: lifetime capped at 60 periods.
        assert_eq!(v(b, Kpi::CustomerLifetimeValue), 55.0 * 60.0);
    }

    #[test]
    fn rows_carry_targets_and_statuses() {
        let f = fixture();
        let tx = Transactions::new(6, &f.customer, &f.day, &f.amount, None).unwrap();
        let seg = segmentation();
        let e = Evaluator::new(tx, &seg, ClvParams::default())
            .unwrap()
            .evaluate(march_2024())
            .unwrap();
        let rows = e.rows(|kpi, segment| match (kpi, segment) {
            (Kpi::RetentionRate, "all") => Some(Objective::for_kpi(kpi, 0.8, 0.5).unwrap()),
            (Kpi::ChurnRate, _) => Some(Objective::for_kpi(kpi, 0.2, 0.4).unwrap()),
            _ => None,
        });
        assert_eq!(rows.len(), 3 * Kpi::COUNT);
        let find = |kpi: Kpi, segment: &str| {
            rows.iter()
                .find(|r| r.kpi == kpi && r.segment == segment)
                .unwrap()
        };
        // all: retention 0.75 is below target 0.8 but above the alert 0.5.
        assert_eq!(
            find(Kpi::RetentionRate, "all").status,
            Some(Status::Warning)
        );
        // a: churn 0.5 is above the churn alert threshold 0.4; b: churn 0 is on target.
        assert_eq!(find(Kpi::ChurnRate, "a").status, Some(Status::Alert));
        assert_eq!(find(Kpi::ChurnRate, "b").status, Some(Status::OnTarget));
        assert_eq!(find(Kpi::Revenue, "a").status, None);
        let json = serde_json::to_value(find(Kpi::ChurnRate, "a")).unwrap();
        assert_eq!(json["kpi"], "churn_rate");
        assert_eq!(json["period_start"], "2024-03-01");
        assert_eq!(json["period_end"], "2024-04-01");
        assert_eq!(json["value"], 0.5);
        assert_eq!(json["target"], 0.2);
        assert_eq!(json["status"], "alert");
    }

    #[test]
    fn order_ids_count_distinct_orders() {
        let f = fixture();
        // Customer 4's two March rows are one order; customer 0's two March rows two orders.
        let order: Vec<u64> = vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 12, 13, 14];
        let tx = Transactions::new(6, &f.customer, &f.day, &f.amount, Some(&order)).unwrap();
        let seg = segmentation();
        let e = Evaluator::new(tx, &seg, ClvParams::default())
            .unwrap()
            .evaluate(march_2024())
            .unwrap();
        let all = e.all().aggregates;
        assert_eq!((all.orders, all.repeaters), (6, 1));
        assert_eq!(
            e.all().value(Kpi::AverageOrderValue).value(),
            Some(198.0 / 6.0)
        );
        assert_eq!(e.segment("b").unwrap().aggregates.orders, 2);

        let mut shared = order.clone();
        shared[5] = 3; // customer 2's March row claims customer 0's order 3
        let tx = Transactions::new(6, &f.customer, &f.day, &f.amount, Some(&shared)).unwrap();
        let err = Evaluator::new(tx, &seg, ClvParams::default())
            .unwrap()
            .evaluate(march_2024());
        assert!(matches!(
            err,
            Err(KpiError::OrderSharedByCustomers { order: 3, .. })
        ));
    }

    #[test]
    fn first_purchase_uses_all_history_not_only_the_period() {
        // Customer 0 bought in 2020 and again in P: active but not new.
        let customer = [0, 0, 1];
        let days = [day(2020, 6, 1), day(2024, 3, 5), day(2024, 3, 6)];
        let amount = [1.0, 2.0, 3.0];
        let tx = Transactions::new(2, &customer, &days, &amount, None).unwrap();
        let seg = Segmentation::population_only(2);
        let e = Evaluator::new(tx, &seg, ClvParams::default())
            .unwrap()
            .evaluate(march_2024())
            .unwrap();
        assert_eq!(e.segments.len(), 1);
        let a = e.all().aggregates;
        assert_eq!((a.active, a.new), (2, 1));
        // Nobody active in February: retention is undefined, not NaN.
        assert_eq!(
            e.all().value(Kpi::RetentionRate).undefined_reason(),
            Some(Undefined::NoActivePreviousPeriod)
        );
    }

    #[test]
    fn empty_period_and_empty_segment_are_undefined_not_nan() {
        let f = fixture();
        let tx = Transactions::new(7, &f.customer, &f.day, &f.amount, None).unwrap();
        let seg = Segmentation::new(
            vec!["a".into(), "nobody".into()],
            &[Some(0), Some(0), Some(0), Some(0), Some(0), Some(0), None],
        )
        .unwrap();
        let ev = Evaluator::new(tx, &seg, ClvParams::default()).unwrap();
        let nobody = ev.evaluate(march_2024()).unwrap();
        let nobody = nobody.segment("nobody").unwrap();
        assert_eq!(nobody.value(Kpi::SegmentSize).value(), Some(0.0));
        assert_eq!(
            nobody.value(Kpi::AverageOrderValue).undefined_reason(),
            Some(Undefined::NoOrders)
        );
        let may = Period::containing(
            PeriodKind::Month,
            NaiveDate::from_ymd_opt(2024, 5, 1).unwrap(),
        )
        .unwrap();
        let e = ev.evaluate(may).unwrap();
        assert_eq!(e.all().aggregates.active, 0);
        assert_eq!(e.all().aggregates.active_previous, 1);
        assert_eq!(e.all().value(Kpi::ChurnRate).value(), Some(1.0));
        assert_eq!(
            e.all().value(Kpi::CustomerLifetimeValue).undefined_reason(),
            Some(Undefined::NoActiveCustomers)
        );
        let json = serde_json::to_string(&e).unwrap();
        assert!(!json.contains("NaN") && !json.contains("null"));
    }

    #[test]
    fn back_fill_evaluates_each_period() {
        let f = fixture();
        let tx = Transactions::new(6, &f.customer, &f.day, &f.amount, None).unwrap();
        let seg = segmentation();
        let ev = Evaluator::new(tx, &seg, ClvParams::default()).unwrap();
        let periods = Period::between(
            PeriodKind::Month,
            NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(2024, 4, 30).unwrap(),
        )
        .unwrap();
        let all: Vec<f64> = ev
            .evaluate_all(&periods)
            .unwrap()
            .iter()
            .map(|e| e.all().value(Kpi::Revenue).value().unwrap())
            .collect();
        assert_eq!(all, [17.0, 35.0, 198.0, 1000.0]);
        // Weekly: the week of 2024-02-26..03-03 holds Feb 29 (5), Mar 1 (30), Mar 2 (9), Mar 3 (101).
        let w = Period::containing(
            PeriodKind::Week,
            NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
        )
        .unwrap();
        assert_eq!(ev.evaluate(w).unwrap().all().aggregates.revenue, 145.0);
    }

    #[test]
    fn inputs_are_validated() {
        let c = [0u32, 1];
        let d = [0i32, 1];
        let a = [1.0, 2.0];
        assert!(matches!(
            Transactions::new(2, &c, &d[..1], &a, None),
            Err(KpiError::LengthMismatch { column: "day", .. })
        ));
        assert!(matches!(
            Transactions::new(1, &c, &d, &a, None),
            Err(KpiError::CustomerOutOfRange { row: 1, .. })
        ));
        assert!(matches!(
            Transactions::new(2, &c, &d, &[1.0, f64::NAN], None),
            Err(KpiError::NonFiniteAmount { row: 1 })
        ));
        assert!(matches!(
            Transactions::new(2, &c, &d, &a, Some(&[1])),
            Err(KpiError::LengthMismatch {
                column: "order",
                ..
            })
        ));
        assert!(Segmentation::new(vec!["all".into()], &[]).is_err());
        assert!(Segmentation::new(vec!["x".into(), "x".into()], &[]).is_err());
        assert!(Segmentation::new(vec![" ".into()], &[]).is_err());
        assert!(matches!(
            Segmentation::new(vec!["x".into()], &[Some(1)]),
            Err(KpiError::SegmentOutOfRange {
                customer: 0,
                segment: 1,
                ..
            })
        ));
        let tx = Transactions::new(2, &c, &d, &a, None).unwrap();
        let seg = Segmentation::population_only(3);
        assert!(Evaluator::new(tx, &seg, ClvParams::default()).is_err());
    }

    #[test]
    fn quarter_after_an_empty_quarter() {
        let f = fixture();
        let tx = Transactions::new(6, &f.customer, &f.day, &f.amount, None).unwrap();
        let seg = segmentation();
        let ev = Evaluator::new(tx, &seg, ClvParams::default()).unwrap();
        let q1 = Period::containing(
            PeriodKind::Quarter,
            NaiveDate::from_ymd_opt(2024, 2, 1).unwrap(),
        )
        .unwrap();
        let e = ev.evaluate(q1).unwrap();
        assert_eq!(e.previous.label(), "2023-Q4");
        // Every customer bought for the first time in Q1 2024: 13 rows worth 17 + 35 + 198.
        let a = e.all().aggregates;
        assert_eq!(
            (a.active, a.new, a.orders, a.active_previous),
            (6, 6, 13, 0)
        );
        assert_eq!(a.revenue, 250.0);
        // Customers 0, 3, 4 and 5 bought at least twice in the quarter.
        assert_eq!(a.repeaters, 4);
        assert_eq!(
            e.all().value(Kpi::RetentionRate).undefined_reason(),
            Some(Undefined::NoActivePreviousPeriod)
        );
        // Q2 2024: only customer 1 (April), retained from Q1; the other five churned.
        let q2 = ev.evaluate(q1.next().unwrap()).unwrap();
        assert_eq!(q2.all().value(Kpi::RetentionRate).value(), Some(1.0 / 6.0));
        assert_eq!(q2.all().value(Kpi::ChurnRate).value(), Some(5.0 / 6.0));
    }

    #[test]
    fn day_index_is_a_stable_sort_for_dense_and_sparse_days() {
        let dense = [5, 3, 5, 4, 3, 3];
        assert_eq!(rows_by_day(&dense).unwrap(), [1, 4, 5, 3, 0, 2]);
        let sparse = [2_000_000, -5, 7, -5];
        assert_eq!(rows_by_day(&sparse).unwrap(), [1, 3, 2, 0]);
        assert!(rows_by_day(&[]).unwrap().is_empty());
    }

    #[test]
    fn rows_already_in_day_order_give_the_same_result() {
        let f = fixture();
        let mut order: Vec<usize> = (0..f.day.len()).collect();
        order.sort_by_key(|&i| f.day[i]);
        let customer: Vec<u32> = order.iter().map(|&i| f.customer[i]).collect();
        let days: Vec<i32> = order.iter().map(|&i| f.day[i]).collect();
        let amount: Vec<f64> = order.iter().map(|&i| f.amount[i]).collect();
        let seg = segmentation();
        let sorted = Transactions::new(6, &customer, &days, &amount, None).unwrap();
        let sorted = Evaluator::new(sorted, &seg, ClvParams::default()).unwrap();
        assert!(sorted.rows_by_day.is_none());
        let unsorted = Transactions::new(6, &f.customer, &f.day, &f.amount, None).unwrap();
        let unsorted = Evaluator::new(unsorted, &seg, ClvParams::default()).unwrap();
        assert!(unsorted.rows_by_day.is_some());
        for month in 1..=5 {
            let p = Period::containing(
                PeriodKind::Month,
                NaiveDate::from_ymd_opt(2024, month, 1).unwrap(),
            )
            .unwrap();
            assert_eq!(
                sorted.evaluate(p).unwrap(),
                unsorted.evaluate(p).unwrap(),
                "{p}"
            );
        }
    }

    #[test]
    fn a_far_future_date_does_not_change_the_result() {
        let mut f = fixture();
        f.customer.push(1);
        f.day.push(day(9000, 1, 1));
        f.amount.push(1.0);
        let tx = Transactions::new(6, &f.customer, &f.day, &f.amount, None).unwrap();
        let seg = segmentation();
        let ev = Evaluator::new(tx, &seg, ClvParams::default()).unwrap();
        let e = ev.evaluate(march_2024()).unwrap();
        assert_eq!(e.all().aggregates.revenue, 198.0);
        assert_eq!(e.all().aggregates.active_previous, 4);
    }

    #[test]
    fn compensated_revenue_does_not_lose_small_amounts() {
        let mut s = NeumaierSum::default();
        s.add(1e16);
        for _ in 0..10 {
            s.add(1.0);
        }
        s.add(-1e16);
        assert_eq!(s.value(), 10.0);
    }
}
