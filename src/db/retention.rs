//! The deletions retention is made of; `crate::app::retention` decides what and when.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamp};

use super::schema::{consent_events, customers, transactions};
use super::{DbConnection, DbResult};

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

/// Inactive customers (id, pseudonym): created before the cut-off, with no transaction and no
/// consent event at or after it.
pub fn inactive_customers(
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

/// Deletes the transactions that occurred before the cut-off.
pub fn delete_transactions_before(conn: &mut DbConnection, cutoff: NaiveDateTime) -> DbResult<u64> {
    Ok(
        diesel::delete(transactions::table.filter(transactions::occurred_at.lt(cutoff)))
            .execute(conn)? as u64,
    )
}

/// Deletes the consent events past the cut-off that a later event of the same customer and
/// purpose supersedes.
/// The latest event of each customer × purpose is never deleted, so the consent state
/// (`db::consent_state`) is unchanged.
pub fn delete_superseded_consent_events(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
) -> DbResult<u64> {
    Ok(diesel::sql_query(format!(
        "DELETE FROM consent_events WHERE {SUPERSEDED_CONSENT}"
    ))
    .bind::<Timestamp, _>(cutoff)
    .execute(conn)? as u64)
}

/// Deletes the memberships of runs that finished before the cut-off, except the published
/// run's: dashboards and exports are served from it. The runs themselves (settings, counts,
/// segment profiles) stay as the record of what was done.
pub fn expired_memberships(conn: &mut DbConnection, cutoff: NaiveDateTime) -> DbResult<u64> {
    use super::schema::{segment_memberships, segmentation_runs};
    let runs: Vec<i64> = segmentation_runs::table
        .filter(segmentation_runs::finished_at.lt(cutoff))
        .filter(
            segmentation_runs::status
                .ne(crate::segmentation::status::RunStatus::Published.as_str()),
        )
        .select(segmentation_runs::id)
        .load(conn)?;
    super::segmentation::forget_live_sizes(conn, &runs)?;
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
