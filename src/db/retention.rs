//! Applies the retention rules of `crate::retention` to the stored records.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamp};
use serde_json::json;

use super::schema::{consent_events, customers, transactions};
use super::{Db, DbConnection, DbError, DbResult, dsr, trail as trail_store};
use crate::retention::{Cutoffs, Removed, RetentionReport, standing_notes};
use crate::trail::{Actor, NewEntry};

/// Consent events past the cut-off ($1) that are not the latest of their customer × purpose.
/// The latest is the one recorded last, and among those recorded at the same instant the one
/// entered last (highest id), as in `consent::state_at`.
const SUPERSEDED_CONSENT: &str = "recorded_at < $1 AND EXISTS (\
    SELECT 1 FROM consent_events later \
    WHERE later.customer_id = consent_events.customer_id \
      AND later.purpose = consent_events.purpose \
      AND (later.recorded_at > consent_events.recorded_at \
           OR (later.recorded_at = consent_events.recorded_at AND later.id > consent_events.id)))";

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Inactive customers: created before the cut-off, with no transaction and no consent event
/// at or after it.
fn inactive_customers(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
) -> DbResult<Vec<(i64, String)>> {
    use diesel::dsl::{exists, not};
    Ok(customers::table
        .filter(customers::created_at.lt(cutoff))
        .filter(not(exists(
            transactions::table
                .filter(transactions::customer_id.eq(customers::id))
                .filter(transactions::occurred_at.ge(cutoff)),
        )))
        .filter(not(exists(
            consent_events::table
                .filter(consent_events::customer_id.eq(customers::id))
                .filter(consent_events::recorded_at.ge(cutoff)),
        )))
        .select((customers::id, customers::pseudonym))
        .order(customers::id.asc())
        .load(conn)?)
}

/// Deletes what is past retention, inside the caller's write transaction, and appends the
/// trail entries: one per erased customer (by pseudonym) and `retention.applied` with counts.
pub fn apply_in(
    conn: &mut DbConnection,
    cutoffs: &Cutoffs,
    now: NaiveDateTime,
    actor: &Actor,
    policy_version: &str,
) -> DbResult<Removed> {
    let mut removed = Removed::default();
    for (id, pseudonym) in inactive_customers(conn, cutoffs.inactive_customers)? {
        let counts = dsr::erase(conn, id, &pseudonym, now)?;
        trail_store::append(
            conn,
            NewEntry::new(
                actor,
                "retention.customer_erased",
                &pseudonym,
                json!({"removed": counts, "reason": "inactive past the retention period"}),
            ),
            policy_version,
        )?;
        removed.customers += 1;
    }
    removed.transactions = diesel::delete(
        transactions::table.filter(transactions::occurred_at.lt(cutoffs.transactions)),
    )
    .execute(conn)? as u64;
    removed.segment_memberships = expired_memberships(conn, cutoffs.segment_memberships)?;
    removed.consent_events = diesel::sql_query(format!(
        "DELETE FROM consent_events WHERE {SUPERSEDED_CONSENT}"
    ))
    .bind::<Timestamp, _>(cutoffs.consent_events)
    .execute(conn)? as u64;
    removed.kpi_evaluations =
        super::kpi::delete_evaluated_before(conn, cutoffs.kpi_evaluations)? as u64;
    trail_store::append(
        conn,
        NewEntry::new(
            actor,
            "retention.applied",
            "retention",
            json!({"cutoffs": cutoffs, "removed": removed}),
        ),
        policy_version,
    )?;
    Ok(removed)
}

/// Deletes the memberships of runs that finished before the cut-off, except the published
/// run's: dashboards and exports are served from it. The runs themselves (settings, counts,
/// segment profiles) stay as the record of what was done.
fn expired_memberships(conn: &mut DbConnection, cutoff: NaiveDateTime) -> DbResult<u64> {
    use super::schema::{segment_memberships, segmentation_runs};
    let runs: Vec<i64> = segmentation_runs::table
        .filter(segmentation_runs::finished_at.lt(cutoff))
        .filter(
            segmentation_runs::status
                .ne(crate::segmentation::status::RunStatus::Published.as_str()),
        )
        .select(segmentation_runs::id)
        .load(conn)?;
    Ok(
        diesel::delete(segment_memberships::table.filter(segment_memberships::run_id.eq_any(runs)))
            .execute(conn)? as u64,
    )
}

/// How many consent events the rule would remove (for checks and tests).
pub fn superseded_consent_events(conn: &mut DbConnection, cutoff: NaiveDateTime) -> DbResult<i64> {
    let count: Count = diesel::sql_query(format!(
        "SELECT COUNT(*) AS n FROM consent_events WHERE {SUPERSEDED_CONSENT}"
    ))
    .bind::<Timestamp, _>(cutoff)
    .get_result(conn)?;
    Ok(count.n)
}

/// Applies retention; with `dry_run` the same work runs and is rolled back, so the counts are
/// exactly what an application would remove, and nothing (not even a trail entry) remains.
pub fn apply(
    db: &Db,
    cutoffs: Cutoffs,
    dry_run: bool,
    actor: &Actor,
    policy_version: &str,
) -> DbResult<RetentionReport> {
    let now = super::now();
    let mut outcome: Option<Removed> = None;
    let result = db.write(|conn| {
        let removed = apply_in(conn, &cutoffs, now, actor, policy_version)?;
        outcome = Some(removed);
        if dry_run {
            Err(DbError::Query(diesel::result::Error::RollbackTransaction))
        } else {
            Ok(())
        }
    });
    match result {
        Ok(()) => {}
        Err(DbError::Query(diesel::result::Error::RollbackTransaction)) if dry_run => {}
        Err(e) => return Err(e),
    }
    Ok(RetentionReport {
        dry_run,
        applied_at: now,
        cutoffs,
        removed: outcome.expect("the transaction ran"),
        notes: standing_notes(),
    })
}
