//! Storage side of data-subject requests: everything held about one customer, erasure, and
//! the request log. Callers run these inside `Db::read` / `Db::write`; `crate::dsr` decides.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{
    consent_events, customer_protected, customers, dsr_requests, erased_customers, transactions,
};
use super::{DbConnection, DbResult};

/// The customer row, as stored.
#[derive(Debug, Clone, Queryable)]
pub struct CustomerRow {
    pub id: i64,
    pub external_id: String,
    pub pseudonym: String,
    pub attributes: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub fn customer_by_external_id(
    conn: &mut DbConnection,
    external_id: &str,
) -> DbResult<Option<CustomerRow>> {
    Ok(customers::table
        .filter(customers::external_id.eq(external_id))
        .first::<CustomerRow>(conn)
        .optional()?)
}

/// The protected attributes (JSON object text), if any were stored.
pub fn protected_attributes(conn: &mut DbConnection, customer: i64) -> DbResult<Option<String>> {
    Ok(customer_protected::table
        .filter(customer_protected::customer_id.eq(customer))
        .select(customer_protected::attributes)
        .first::<String>(conn)
        .optional()?)
}

#[derive(Debug, Clone, Queryable, serde::Serialize)]
pub struct TransactionRow {
    #[serde(skip)]
    pub id: i64,
    pub occurred_at: NaiveDateTime,
    pub amount: f64,
    pub quantity: Option<i64>,
    pub order_id: Option<String>,
    pub imported_at: NaiveDateTime,
}

pub fn transactions_of(conn: &mut DbConnection, customer: i64) -> DbResult<Vec<TransactionRow>> {
    Ok(transactions::table
        .filter(transactions::customer_id.eq(customer))
        .order((transactions::occurred_at.asc(), transactions::id.asc()))
        .select((
            transactions::id,
            transactions::occurred_at,
            transactions::amount,
            transactions::quantity,
            transactions::order_id,
            transactions::imported_at,
        ))
        .load(conn)?)
}

#[derive(Debug, Clone, Queryable, serde::Serialize)]
pub struct ConsentEventRow {
    #[serde(skip)]
    pub id: i64,
    pub purpose: String,
    pub status: String,
    pub recorded_at: NaiveDateTime,
    pub source: Option<String>,
    pub notice_version: Option<String>,
    pub recorded_by: String,
    pub entered_at: NaiveDateTime,
}

pub fn consent_events_of(conn: &mut DbConnection, customer: i64) -> DbResult<Vec<ConsentEventRow>> {
    Ok(consent_events::table
        .filter(consent_events::customer_id.eq(customer))
        .order((
            consent_events::purpose.asc(),
            consent_events::recorded_at.asc(),
            consent_events::id.asc(),
        ))
        .select((
            consent_events::id,
            consent_events::purpose,
            consent_events::status,
            consent_events::recorded_at,
            consent_events::source,
            consent_events::notice_version,
            consent_events::recorded_by,
            consent_events::entered_at,
        ))
        .load(conn)?)
}

/// The customer's segment memberships, for the export. The segmentation tables do not exist
/// yet; the segmentation work fills this in (and `runs_using`, and a delete in `erase`).
pub fn segment_memberships_of(
    _conn: &mut DbConnection,
    _customer: i64,
) -> DbResult<Vec<serde_json::Value>> {
    Ok(Vec::new())
}

/// The segmentation runs whose frozen population included the customer (see
/// `segment_memberships_of`).
pub fn runs_using(_conn: &mut DbConnection, _customer: i64) -> DbResult<Vec<serde_json::Value>> {
    Ok(Vec::new())
}

/// What an erasure removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ErasedCounts {
    pub transactions: u64,
    pub consent_events: u64,
    pub protected_attributes: u64,
    pub segment_memberships: u64,
}

/// Removes everything held about one customer and records the pseudonym in the erasure
/// register. Must run inside `Db::write` together with the trail entry that proves it.
/// Every table that names a customer by internal id is cleared here, explicitly (not left to
/// `ON DELETE CASCADE`) so that the counts are known and no table is forgotten silently.
pub fn erase(
    conn: &mut DbConnection,
    customer: i64,
    pseudonym: &str,
    at: NaiveDateTime,
) -> DbResult<ErasedCounts> {
    let consent =
        diesel::delete(consent_events::table.filter(consent_events::customer_id.eq(customer)))
            .execute(conn)?;
    let txns = diesel::delete(transactions::table.filter(transactions::customer_id.eq(customer)))
        .execute(conn)?;
    let protected = diesel::delete(
        customer_protected::table.filter(customer_protected::customer_id.eq(customer)),
    )
    .execute(conn)?;
    // Segment memberships: delete here once the segmentation tables exist.
    diesel::delete(customers::table.filter(customers::id.eq(customer))).execute(conn)?;
    // A customer re-imported with --allow-erased and erased again keeps one register row.
    diesel::delete(erased_customers::table.filter(erased_customers::pseudonym.eq(pseudonym)))
        .execute(conn)?;
    diesel::insert_into(erased_customers::table)
        .values((
            erased_customers::pseudonym.eq(pseudonym),
            erased_customers::erased_at.eq(at),
        ))
        .execute(conn)?;
    Ok(ErasedCounts {
        transactions: txns as u64,
        consent_events: consent as u64,
        protected_attributes: protected as u64,
        segment_memberships: 0,
    })
}

pub fn is_erased(conn: &mut DbConnection, pseudonym: &str) -> DbResult<bool> {
    let n: i64 = erased_customers::table
        .filter(erased_customers::pseudonym.eq(pseudonym))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// One row of the data-subject request log.
#[derive(Debug, Clone, Queryable, serde::Serialize, utoipa::ToSchema)]
pub struct DsrRequestRow {
    pub id: String,
    /// `export` or `erasure`.
    pub kind: String,
    /// The customer's pseudonym.
    pub subject: String,
    pub requested_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: NaiveDateTime,
    /// JSON: counts only.
    pub detail: String,
}

pub fn log_request(
    conn: &mut DbConnection,
    kind: &str,
    subject: &str,
    requested_by: &str,
    at: NaiveDateTime,
    detail: &serde_json::Value,
) -> DbResult<String> {
    let id = uuid::Uuid::now_v7().to_string();
    diesel::insert_into(dsr_requests::table)
        .values((
            dsr_requests::id.eq(&id),
            dsr_requests::kind.eq(kind),
            dsr_requests::subject.eq(subject),
            dsr_requests::requested_by.eq(requested_by),
            dsr_requests::occurred_at.eq(at),
            dsr_requests::detail.eq(detail.to_string()),
        ))
        .execute(conn)?;
    Ok(id)
}

/// The request log, newest first.
pub fn requests(conn: &mut DbConnection, limit: i64) -> DbResult<Vec<DsrRequestRow>> {
    Ok(dsr_requests::table
        .order((dsr_requests::occurred_at.desc(), dsr_requests::id.desc()))
        .limit(limit)
        .load(conn)?)
}
