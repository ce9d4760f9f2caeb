//! Loads the transactions the behavioural features are computed from (`customers::features`).

use chrono::NaiveDate;
use diesel::prelude::*;

use super::schema::transactions;
use super::{DbConnection, DbResult};
use crate::customers::features::{
    Accumulator, BehaviouralFeatures, WindowAccumulator, WindowActivity, features_for_all,
};

/// The first instant after the as-of day: transactions before it count.
fn end_of(as_of: NaiveDate) -> chrono::NaiveDateTime {
    as_of
        .succ_opt()
        .unwrap_or(as_of)
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
}

/// One customer's features as of a date (internal customer id).
pub fn for_customer(
    conn: &mut DbConnection,
    customer: i64,
    as_of: NaiveDate,
) -> DbResult<BehaviouralFeatures> {
    let rows: Vec<(chrono::NaiveDateTime, f64, Option<String>)> = transactions::table
        .filter(transactions::customer_id.eq(customer))
        .filter(transactions::occurred_at.lt(end_of(as_of)))
        .select((
            transactions::occurred_at,
            transactions::amount,
            transactions::order_id,
        ))
        .load(conn)?;
    let mut acc = Accumulator::new(as_of);
    for (at, amount, order) in &rows {
        acc.add(*at, *amount, order.as_deref());
    }
    Ok(acc.finish())
}

/// Every customer's features as of a date, by internal id, in id order. Customers without a
/// transaction up to the date are absent (their features are `BehaviouralFeatures::none()`).
/// Transactions are read in pages of 200,000 rows ordered by customer, so memory stays bounded
/// by one page plus the result.
pub fn for_all(
    conn: &mut DbConnection,
    as_of: NaiveDate,
) -> DbResult<Vec<(i64, BehaviouralFeatures)>> {
    for_all_paged(conn, as_of, 200_000)
}

/// `for_all` with a page size of `page` rows (at least 1), for tests of the paging.
pub fn for_all_paged(
    conn: &mut DbConnection,
    as_of: NaiveDate,
    page: i64,
) -> DbResult<Vec<(i64, BehaviouralFeatures)>> {
    let page = page.max(1);
    let end = end_of(as_of);
    let mut out: Vec<(i64, BehaviouralFeatures)> = Vec::new();
    // Pages break between customers: each page takes whole customers from `after` on.
    let mut after: i64 = i64::MIN;
    loop {
        let ids: Vec<i64> = transactions::table
            .filter(transactions::customer_id.gt(after))
            .filter(transactions::occurred_at.lt(end))
            .select(transactions::customer_id)
            .order(transactions::customer_id.asc())
            .offset(page - 1)
            .limit(1)
            .load(conn)?;
        let upto = ids.first().copied();
        let mut q = transactions::table
            .filter(transactions::customer_id.gt(after))
            .filter(transactions::occurred_at.lt(end))
            .into_boxed();
        if let Some(upto) = upto {
            q = q.filter(transactions::customer_id.le(upto));
        }
        let rows: Vec<(i64, chrono::NaiveDateTime, f64, Option<String>)> = q
            .select((
                transactions::customer_id,
                transactions::occurred_at,
                transactions::amount,
                transactions::order_id,
            ))
            .order(transactions::customer_id.asc())
            .load(conn)?;
        out.extend(features_for_all(rows, as_of));
        match upto {
            Some(upto) => after = upto,
            None => break,
        }
    }
    Ok(out)
}

/// Every customer's features and valuation-window activity as of a date, by internal id, in
/// one streamed pass over the transactions in customer order. Customers without a transaction
/// up to the date are absent.
pub fn activity_for_all(
    conn: &mut DbConnection,
    as_of: NaiveDate,
    window_days: u32,
) -> DbResult<Vec<(i64, BehaviouralFeatures, WindowActivity)>> {
    let rows = transactions::table
        .filter(transactions::occurred_at.lt(end_of(as_of)))
        .order((transactions::customer_id.asc(), transactions::occurred_at.asc()))
        .select((
            transactions::customer_id,
            transactions::occurred_at,
            transactions::amount,
            transactions::order_id,
        ))
        .load_iter::<(i64, chrono::NaiveDateTime, f64, Option<String>), diesel::connection::DefaultLoadingMode>(
            conn,
        )?;
    let mut out = Vec::new();
    let mut current: Option<(i64, Accumulator, WindowAccumulator)> = None;
    for row in rows {
        let (customer, at, amount, order) = row?;
        match &mut current {
            Some((c, features, window)) if *c == customer => {
                features.add(at, amount, order.as_deref());
                window.add(at, amount, order.as_deref());
            }
            _ => {
                if let Some((c, features, window)) = current.take() {
                    out.push((c, features.finish(), window.finish()));
                }
                let mut features = Accumulator::new(as_of);
                let mut window = WindowAccumulator::new(as_of, window_days);
                features.add(at, amount, order.as_deref());
                window.add(at, amount, order.as_deref());
                current = Some((customer, features, window));
            }
        }
    }
    if let Some((c, features, window)) = current {
        out.push((c, features.finish(), window.finish()));
    }
    Ok(out)
}
