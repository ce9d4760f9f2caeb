//! Sign-offs of fairness audits (append-only), and the content hash their trail entry recorded.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{audit_signoffs, trail};
use super::{DbConnection, DbResult};

/// A stored sign-off with its frozen report.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = audit_signoffs)]
pub struct SignoffRow {
    pub id: i64,
    pub audit_id: i64,
    /// 1, 2, ... within the audit.
    pub seq: i32,
    pub signed_by: String,
    pub signer_role: String,
    pub signed_at: NaiveDateTime,
    pub statement: String,
    pub policy_version: String,
    /// The audit's JSON in canonical form, as signed.
    pub report_json: String,
    /// The printable report with the signature block filled, as signed.
    pub report_html: String,
    pub content_hash: String,
    pub html_hash: String,
    pub trail_seq: i64,
}

/// The next sign-off id and the next number within `audit_id`; call inside `Db::write`.
pub fn next_ids(conn: &mut DbConnection, audit_id: i64) -> DbResult<(i64, i32)> {
    use diesel::dsl::max;
    let id: Option<i64> = audit_signoffs::table
        .select(max(audit_signoffs::id))
        .first(conn)?;
    let seq: Option<i32> = audit_signoffs::table
        .filter(audit_signoffs::audit_id.eq(audit_id))
        .select(max(audit_signoffs::seq))
        .first(conn)?;
    Ok((id.unwrap_or(0) + 1, seq.unwrap_or(0) + 1))
}

pub fn insert(conn: &mut DbConnection, row: &SignoffRow) -> DbResult<()> {
    diesel::insert_into(audit_signoffs::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// The sign-offs of an audit, oldest first.
pub fn of_audit(conn: &mut DbConnection, audit_id: i64) -> DbResult<Vec<SignoffRow>> {
    Ok(audit_signoffs::table
        .filter(audit_signoffs::audit_id.eq(audit_id))
        .order(audit_signoffs::seq.asc())
        .select(SignoffRow::as_select())
        .load(conn)?)
}

/// Sign-off `seq` of an audit.
pub fn find(conn: &mut DbConnection, audit_id: i64, seq: i32) -> DbResult<Option<SignoffRow>> {
    Ok(audit_signoffs::table
        .filter(audit_signoffs::audit_id.eq(audit_id))
        .filter(audit_signoffs::seq.eq(seq))
        .select(SignoffRow::as_select())
        .first(conn)
        .optional()?)
}

/// The `content_hash` and `html_hash` in the detail of trail entry `seq`, if it is an
/// `audit.signed` entry that has them.
pub fn trail_hashes(conn: &mut DbConnection, seq: i64) -> DbResult<Option<(String, String)>> {
    let detail: Option<String> = trail::table
        .find(seq)
        .filter(trail::action.eq("audit.signed"))
        .select(trail::detail)
        .first(conn)
        .optional()?;
    Ok(detail
        .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
        .and_then(|d| {
            Some((
                d["content_hash"].as_str()?.to_owned(),
                d["html_hash"].as_str()?.to_owned(),
            ))
        }))
}
