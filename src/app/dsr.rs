//! Data-subject rights: export everything held about one customer, and erase it.
//!
//! Erasure removes the customer's row, attributes (ordinary and protected), transactions,
//! consent events and segment memberships in one transaction, and leaves only a pseudonymous
//! tombstone: the customer's keyed pseudonym in the erasure register (so a re-import of the
//! same id is recognised), in the request log and in the trail entry that proves the erasure.
//! The trail names customers only by pseudonym, so its hash chain stays intact and the raw id
//! is nowhere in the database afterwards.

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::{Value, json};

use crate::customers::features::BehaviouralFeatures;
use crate::customers::{CustomerId, Pseudonymizer};
use crate::db::dsr::{self as store, ConsentEventRow, ErasedCounts, TransactionRow};
use crate::db::{self, Db, DbConnection, DbError, features, trail as trail_store};
use crate::trail::{Actor, NewEntry};

#[derive(Debug, thiserror::Error)]
pub enum DsrError {
    #[error("{0}")]
    InvalidId(String),
    #[error("no customer with that id is held")]
    NotFound,
    #[error("that customer was erased on {0}; nothing is held about them any more")]
    AlreadyErased(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Everything held about one customer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerExport {
    /// The id the company knows the customer by.
    pub customer_id: String,
    /// The pseudonym by which the trail and the request log name the customer.
    pub pseudonym: String,
    #[schema(value_type = String, format = DateTime)]
    pub exported_at: NaiveDateTime,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: NaiveDateTime,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: NaiveDateTime,
    /// Ordinary attributes.
    #[schema(value_type = Object)]
    pub attributes: Value,
    /// Protected attributes (the policy's list), kept apart from the others.
    #[schema(value_type = Object)]
    pub protected_attributes: Value,
    #[schema(value_type = Vec<Object>)]
    pub transactions: Vec<TransactionRow>,
    /// The consent ledger for this customer, per purpose in time order.
    #[schema(value_type = Vec<Object>)]
    pub consent_events: Vec<ConsentEventRow>,
    /// Behavioural features derived from the transactions, as of the export day.
    pub features: BehaviouralFeatures,
    /// Segment memberships (filled in by the segmentation runs), each with the `explanation`
    /// of why the customer is in that segment (GDPR Art. 15(1)(h)).
    #[schema(value_type = Vec<Object>)]
    pub segment_memberships: Vec<Value>,
    /// The segmentation runs that used the customer's data.
    #[schema(value_type = Vec<Object>)]
    pub runs: Vec<Value>,
}

/// What an erasure removed, by pseudonym.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    pub pseudonym: String,
    pub removed: ErasedCounts,
}

fn parse_json(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({}))
}

/// The customer's row or, when they are not held, why: never known, or erased.
pub fn locate(
    conn: &mut DbConnection,
    pseudonyms: &Pseudonymizer,
    id: &CustomerId,
) -> Result<store::CustomerRow, DsrError> {
    match store::customer_by_external_id(conn, id.as_str())? {
        Some(row) => Ok(row),
        None => match store::erased_at(conn, &pseudonyms.pseudonym(id))? {
            Some(at) => Err(DsrError::AlreadyErased(at.format("%Y-%m-%d").to_string())),
            None => Err(DsrError::NotFound),
        },
    }
}

/// The customer with this id and their pseudonym, if they are held (no trail entry: only the
/// pseudonym is shown, before any request is made).
pub fn lookup(db: &Db, raw_id: &str) -> Result<Option<(CustomerId, String)>, DsrError> {
    let id = CustomerId::parse(raw_id).map_err(DsrError::InvalidId)?;
    let row = db.read(|c| store::customer_by_external_id(c, id.as_str()))?;
    Ok(row.map(|row| (id, row.pseudonym)))
}

/// Exports everything held about the customer, and records the request (log and trail) in
/// the same transaction.
pub fn export(
    db: &Db,
    pseudonyms: &Pseudonymizer,
    policy_version: &str,
    actor: &Actor,
    raw_id: &str,
) -> Result<CustomerExport, DsrError> {
    let id = CustomerId::parse(raw_id).map_err(DsrError::InvalidId)?;
    db.write(|conn| {
        let row = locate(conn, pseudonyms, &id)?;
        let now = db::now();
        let export = CustomerExport {
            customer_id: row.external_id.clone(),
            pseudonym: row.pseudonym.clone(),
            exported_at: now,
            created_at: row.created_at,
            updated_at: row.updated_at,
            attributes: parse_json(Some(row.attributes.clone())),
            protected_attributes: parse_json(store::protected_attributes(conn, row.id)?),
            transactions: store::transactions_of(conn, row.id)?,
            consent_events: store::consent_events_of(conn, row.id)?,
            features: features::for_customer(conn, row.id, now.date())?,
            segment_memberships: crate::app::explain::export(conn, row.id, &row.attributes)?,
            runs: store::runs_using(conn, row.id)?,
        };
        let detail = json!({
            "transactions": export.transactions.len(),
            "consent_events": export.consent_events.len(),
            "segment_memberships": export.segment_memberships.len(),
        });
        store::log_request(conn, "export", &row.pseudonym, actor.as_str(), now, &detail)?;
        trail_store::append(
            conn,
            NewEntry::new(actor, "dsr.exported", &row.pseudonym, detail),
            policy_version,
        )?;
        Ok(export)
    })
}

/// Erases the customer everywhere, in one transaction with the request log row and the trail
/// entry (subject: pseudonym; detail: counts only).
pub fn erase(
    db: &Db,
    pseudonyms: &Pseudonymizer,
    policy_version: &str,
    actor: &Actor,
    raw_id: &str,
) -> Result<Erasure, DsrError> {
    let id = CustomerId::parse(raw_id).map_err(DsrError::InvalidId)?;
    db.write(|conn| {
        let row = locate(conn, pseudonyms, &id)?;
        let now = db::now();
        let removed = store::erase(conn, row.id, &row.pseudonym, now)?;
        let detail = json!({"removed": removed, "reason": "data-subject request"});
        store::log_request(
            conn,
            "erasure",
            &row.pseudonym,
            actor.as_str(),
            now,
            &detail,
        )?;
        trail_store::append(
            conn,
            NewEntry::new(actor, "dsr.erased", &row.pseudonym, detail),
            policy_version,
        )?;
        Ok(Erasure {
            pseudonym: row.pseudonym,
            removed,
        })
    })
}

/// The request log, newest first.
pub fn requests(db: &Db, limit: i64) -> Result<Vec<store::DsrRequestRow>, DsrError> {
    Ok(db.read(|c| store::requests(c, limit))?)
}
