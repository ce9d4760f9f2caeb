//! Fairness audits and their overrides (both append-only), and the reads an audit needs: the
//! members' protected attributes.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{audit_overrides, customer_protected, fairness_audits};
use super::{DbConnection, DbResult};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = fairness_audits)]
pub struct AuditRow {
    pub id: i64,
    pub run_id: i64,
    pub policy_version: String,
    pub verdict: String,
    pub reason: String,
    pub members: i64,
    pub strategies: String,
    /// The suppressed report as JSON.
    pub report: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub duration_ms: i64,
}

/// An audit without its (large) report, for lists.
#[derive(Debug, Clone, Queryable, Selectable, PartialEq)]
#[diesel(table_name = fairness_audits)]
pub struct AuditHead {
    pub id: i64,
    pub run_id: i64,
    pub policy_version: String,
    pub verdict: String,
    pub reason: String,
    pub members: i64,
    pub created_by: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = audit_overrides)]
pub struct OverrideRow {
    pub id: i64,
    pub audit_id: i64,
    pub overridden_by: String,
    pub justification: String,
    pub overridden_at: NaiveDateTime,
}

/// The next audit id; call inside `Db::write`.
pub fn next_audit_id(conn: &mut DbConnection) -> DbResult<i64> {
    use diesel::dsl::max;
    let current: Option<i64> = fairness_audits::table
        .select(max(fairness_audits::id))
        .first(conn)?;
    Ok(current.unwrap_or(0) + 1)
}

/// The next override id; call inside `Db::write`.
pub fn next_override_id(conn: &mut DbConnection) -> DbResult<i64> {
    use diesel::dsl::max;
    let current: Option<i64> = audit_overrides::table
        .select(max(audit_overrides::id))
        .first(conn)?;
    Ok(current.unwrap_or(0) + 1)
}

pub fn insert(conn: &mut DbConnection, row: &AuditRow) -> DbResult<()> {
    diesel::insert_into(fairness_audits::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn insert_override(conn: &mut DbConnection, row: &OverrideRow) -> DbResult<()> {
    diesel::insert_into(audit_overrides::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: i64) -> DbResult<Option<AuditRow>> {
    Ok(fairness_audits::table
        .find(id)
        .select(AuditRow::as_select())
        .first(conn)
        .optional()?)
}

/// The newest audit of a run.
pub fn latest_of_run(conn: &mut DbConnection, run_id: i64) -> DbResult<Option<AuditRow>> {
    Ok(fairness_audits::table
        .filter(fairness_audits::run_id.eq(run_id))
        .order(fairness_audits::id.desc())
        .select(AuditRow::as_select())
        .first(conn)
        .optional()?)
}

/// The head of a run's newest audit: what pages that name it need, without the report
/// (~70 KB, read from overflow pages) that [`latest_of_run`] brings.
pub fn latest_head_of_run(conn: &mut DbConnection, run_id: i64) -> DbResult<Option<AuditHead>> {
    Ok(fairness_audits::table
        .filter(fairness_audits::run_id.eq(run_id))
        .order(fairness_audits::id.desc())
        .select(AuditHead::as_select())
        .first(conn)
        .optional()?)
}

/// Audits, newest first.
pub fn list(conn: &mut DbConnection, limit: i64) -> DbResult<Vec<AuditHead>> {
    Ok(fairness_audits::table
        .order(fairness_audits::id.desc())
        .limit(limit)
        .select(AuditHead::as_select())
        .load(conn)?)
}

/// The latest audit of `previous_run` if it has one, else the newest audit of a run before
/// `run_id`.
pub fn previous_audit_id(
    conn: &mut DbConnection,
    run_id: i64,
    previous_run: Option<i64>,
) -> DbResult<Option<i64>> {
    if let Some(prev) = previous_run
        && let Some(row) = latest_of_run(conn, prev)?
    {
        return Ok(Some(row.id));
    }
    Ok(fairness_audits::table
        .filter(fairness_audits::run_id.lt(run_id))
        .order(fairness_audits::id.desc())
        .select(fairness_audits::id)
        .first::<i64>(conn)
        .optional()?)
}

/// Overrides of an audit, oldest first.
pub fn overrides(conn: &mut DbConnection, audit_id: i64) -> DbResult<Vec<OverrideRow>> {
    Ok(audit_overrides::table
        .filter(audit_overrides::audit_id.eq(audit_id))
        .order(audit_overrides::id.asc())
        .select(OverrideRow::as_select())
        .load(conn)?)
}

/// Ids of the audits that have at least one override.
pub fn overridden_ids(conn: &mut DbConnection) -> DbResult<Vec<i64>> {
    Ok(audit_overrides::table
        .select(audit_overrides::audit_id)
        .distinct()
        .load(conn)?)
}

/// Runs whose latest audit failed or was inconclusive and carries an override: a published one
/// among them got past the gate on the override, and says so wherever its status is shown.
pub fn runs_passed_by_override(
    conn: &mut DbConnection,
) -> DbResult<std::collections::HashSet<i64>> {
    let latest: Vec<(i64, Option<i64>)> = fairness_audits::table
        .group_by(fairness_audits::run_id)
        .select((
            fairness_audits::run_id,
            diesel::dsl::max(fairness_audits::id),
        ))
        .load(conn)?;
    let overridden: std::collections::HashSet<i64> = overridden_ids(conn)?.into_iter().collect();
    let gated: std::collections::HashSet<i64> = fairness_audits::table
        .filter(fairness_audits::verdict.eq_any(["fail", "inconclusive"]))
        .select(fairness_audits::id)
        .load::<i64>(conn)?
        .into_iter()
        .collect();
    Ok(latest
        .into_iter()
        .filter_map(|(run, id)| {
            id.filter(|id| overridden.contains(id) && gated.contains(id))
                .map(|_| run)
        })
        .collect())
}

/// Streams `(customer id, protected attributes JSON)` of every customer that has them, in no
/// particular order, handing each JSON text over (on PostgreSQL by COPY, each row as it
/// arrives: `for_each_id_text!`).
pub fn for_each_protected(conn: &mut DbConnection, f: impl FnMut(i64, String)) -> DbResult<()> {
    // In storage order: ordering by customer would walk the key's index and fetch each row
    // from the table apart, about twice the work for a reader that places rows by id anyway.
    for_each_id_text!(conn, customer_protected, customer_id, attributes, f)
}
