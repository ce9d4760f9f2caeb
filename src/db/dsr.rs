//! Storage side of data-subject requests: everything held about one customer, erasure, and
//! the request log. Callers run these inside `Db::read` / `Db::write`; `crate::app::dsr` decides.

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

/// When the customer with this pseudonym was erased, if they were.
pub fn erased_at(conn: &mut DbConnection, pseudonym: &str) -> DbResult<Option<NaiveDateTime>> {
    Ok(erased_customers::table
        .filter(erased_customers::pseudonym.eq(pseudonym))
        .select(erased_customers::erased_at)
        .first(conn)
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

/// The customer's segment memberships, for the export: run, segment number and name.
pub fn segment_memberships_of(
    conn: &mut DbConnection,
    customer: i64,
) -> DbResult<Vec<serde_json::Value>> {
    use super::schema::{segment_memberships, segments};
    let rows: Vec<(i64, i32, String)> = segment_memberships::table
        .inner_join(
            segments::table.on(segments::run_id
                .eq(segment_memberships::run_id)
                .and(segments::segment.eq(segment_memberships::segment))),
        )
        .filter(super::segmentation::of_customer(customer))
        .order(segment_memberships::run_id.asc())
        .select((
            segment_memberships::run_id,
            segment_memberships::segment,
            segments::name,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(run, segment, name)| {
            serde_json::json!({"run_id": run, "segment": segment, "segment_name": name})
        })
        .collect())
}

/// The segmentation runs whose population included the customer: when, by which algorithm
/// and under which policy.
pub fn runs_using(conn: &mut DbConnection, customer: i64) -> DbResult<Vec<serde_json::Value>> {
    use super::schema::{segment_memberships, segmentation_runs};
    let rows: Vec<(i64, String, String, Option<NaiveDateTime>, String)> =
        segment_memberships::table
            .inner_join(
                segmentation_runs::table.on(segmentation_runs::id.eq(segment_memberships::run_id)),
            )
            // Joined with the runs, each run's membership is one lookup of the key (run,
            // customer), as `of_customer` does (memberships have no index by customer).
            .filter(segment_memberships::customer_id.eq(customer))
            .order(segmentation_runs::id.asc())
            .select((
                segmentation_runs::id,
                segmentation_runs::algorithm,
                segmentation_runs::status,
                segmentation_runs::population_at,
                segmentation_runs::policy_version,
            ))
            .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, algorithm, status, at, policy)| {
            serde_json::json!({
                "run_id": id, "algorithm": algorithm, "status": status,
                "population_at": at.map(crate::time::format_instant),
                "policy_version": policy,
            })
        })
        .collect())
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
    super::consent_state::forget(conn, customer)?;
    let txns = diesel::delete(transactions::table.filter(transactions::customer_id.eq(customer)))
        .execute(conn)?;
    let protected = diesel::delete(
        customer_protected::table.filter(customer_protected::customer_id.eq(customer)),
    )
    .execute(conn)?;
    let memberships = super::segmentation::delete_memberships_of(conn, customer)?;
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
        segment_memberships: memberships as u64,
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
