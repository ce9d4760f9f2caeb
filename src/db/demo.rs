//! Storing the demo data set: multi-row inserts of what `crate::demo` generated.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::Value;

use super::customers::{IdTable, next_id};
use super::schema::{
    attribute_columns, consent_events, customer_protected, customers, transactions,
};
use super::{DbConnection, DbResult};
use crate::demo::{COLUMNS, DemoData, DemoSummary};

const CHUNK: usize = 1000;

/// A multi-row insert. diesel's `MultiConnection` has no batch inserts, so each backend's
/// connection runs it directly (the rows are backend-independent values).
macro_rules! batch_insert {
    ($conn:expr, $table:expr, $rows:expr) => {
        match $conn {
            DbConnection::Sqlite(c) => diesel::insert_into($table).values($rows).execute(c)?,
            DbConnection::Postgres(c) => diesel::insert_into($table).values($rows).execute(c)?,
        }
    };
}

/// Inserts the data set (multi-row inserts of `CHUNK` rows); `pseudonym_of` holds one
/// pseudonym per customer, in order. Customer ids continue after any already present.
pub fn insert(
    conn: &mut DbConnection,
    data: &DemoData,
    pseudonym_of: &[String],
    loaded_at: NaiveDateTime,
) -> DbResult<DemoSummary> {
    let first_customer = next_id(conn, IdTable::Customers)?;
    let first_txn = next_id(conn, IdTable::Transactions)?;
    let first_consent = next_id(conn, IdTable::ConsentEvents)?;
    write_columns(conn, loaded_at)?;
    let ids: Vec<i64> = (0..data.customers.len() as i64)
        .map(|i| first_customer + i)
        .collect();
    for (chunk_no, chunk) in data.customers.chunks(CHUNK).enumerate() {
        let base = chunk_no * CHUNK;
        let rows: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(k, c)| {
                (
                    customers::id.eq(ids[base + k]),
                    customers::external_id.eq(c.external_id.as_str()),
                    customers::pseudonym.eq(pseudonym_of[base + k].as_str()),
                    customers::attributes.eq(Value::Object(c.attributes.clone()).to_string()),
                    customers::created_at.eq(c.signed_up),
                    customers::updated_at.eq(c.signed_up),
                )
            })
            .collect();
        batch_insert!(conn, customers::table, rows);
        let rows: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(k, c)| {
                (
                    customer_protected::customer_id.eq(ids[base + k]),
                    customer_protected::attributes
                        .eq(Value::Object(c.protected.clone()).to_string()),
                )
            })
            .collect();
        batch_insert!(conn, customer_protected::table, rows);
    }
    for (chunk_no, chunk) in data.transactions.chunks(CHUNK).enumerate() {
        let base = first_txn + (chunk_no * CHUNK) as i64;
        let rows: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(k, t)| {
                (
                    transactions::id.eq(base + k as i64),
                    transactions::customer_id.eq(ids[t.customer]),
                    transactions::occurred_at.eq(t.occurred_at),
                    transactions::amount.eq(t.amount),
                    transactions::quantity.eq(Some(t.quantity)),
                    transactions::order_id.eq(Some(t.order_id.as_str())),
                    transactions::imported_at.eq(loaded_at),
                )
            })
            .collect();
        batch_insert!(conn, transactions::table, rows);
    }
    for (chunk_no, chunk) in data.consents.chunks(CHUNK).enumerate() {
        let base = first_consent + (chunk_no * CHUNK) as i64;
        let rows: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(k, e)| {
                (
                    consent_events::id.eq(base + k as i64),
                    consent_events::customer_id.eq(ids[e.customer]),
                    consent_events::purpose.eq(e.purpose.as_str()),
                    consent_events::status.eq(if e.granted { "granted" } else { "withdrawn" }),
                    consent_events::recorded_at.eq(e.recorded_at),
                    consent_events::source.eq(Some(e.source)),
                    consent_events::notice_version.eq(Some(e.notice_version)),
                    consent_events::recorded_by.eq("demo"),
                    consent_events::entered_at.eq(e.recorded_at),
                )
            })
            .collect();
        batch_insert!(conn, consent_events::table, rows);
    }
    super::consent_state::apply_events_from(conn, first_consent)?;
    Ok(DemoSummary {
        customers: data.customers.len(),
        transactions: data.transactions.len(),
        consent_events: data.consents.len(),
    })
}

/// Records the attribute columns with their kinds (replacing rows of the same names).
fn write_columns(conn: &mut DbConnection, at: NaiveDateTime) -> DbResult<()> {
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    diesel::delete(attribute_columns::table.filter(attribute_columns::name.eq_any(&names)))
        .execute(conn)?;
    let rows: Vec<_> = COLUMNS
        .iter()
        .map(|(name, kind, protected)| {
            (
                attribute_columns::name.eq(*name),
                attribute_columns::kind.eq(*kind),
                attribute_columns::protected.eq(*protected),
                attribute_columns::first_seen_at.eq(at),
                attribute_columns::updated_at.eq(at),
            )
        })
        .collect();
    batch_insert!(conn, attribute_columns::table, rows);
    Ok(())
}
