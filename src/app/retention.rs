//! Applying the policy's retention periods: inactive customers erased, old transactions and
//! superseded consent events deleted, expired memberships and KPI evaluations dropped, each
//! step in the trail, all in one transaction.

use chrono::NaiveDateTime;
use serde_json::json;

use crate::db::trail as trail_store;
use crate::db::{self, Db, DbConnection, DbError, DbResult, dsr, kpi, retention as store};
use crate::policy::Policy;
use crate::retention::{Cutoffs, Removed, RetentionReport, cutoffs, standing_notes};
use crate::trail::{Actor, NewEntry};

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Why a retention transaction ended without committing.
enum Stop {
    /// A dry run: the counts of what would have gone.
    DryRun(Removed),
    Failed(DbError),
}

impl From<DbError> for Stop {
    fn from(e: DbError) -> Stop {
        Stop::Failed(e)
    }
}

/// Applies retention as of now; with `dry_run` the same work runs and is rolled back, so the
/// counts are exactly what an application would remove, and nothing (not even a trail entry)
/// remains.
pub fn apply(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    dry_run: bool,
) -> Result<RetentionReport, RetentionError> {
    let now = db::now();
    let cutoffs = cutoffs(&policy.retention, now);
    let outcome = db.write(|conn| {
        let removed = remove(conn, &cutoffs, now, actor, &policy.version)?;
        if dry_run {
            Err(Stop::DryRun(removed))
        } else {
            Ok(removed)
        }
    });
    let removed = match outcome {
        Ok(removed) | Err(Stop::DryRun(removed)) => removed,
        Err(Stop::Failed(e)) => return Err(e.into()),
    };
    Ok(RetentionReport {
        dry_run,
        applied_at: now,
        cutoffs,
        removed,
        notes: standing_notes(),
    })
}

/// Deletes what is past retention, inside the caller's write transaction, and appends the
/// trail entries: one per erased customer (by pseudonym) and `retention.applied` with counts.
fn remove(
    conn: &mut DbConnection,
    cutoffs: &Cutoffs,
    now: NaiveDateTime,
    actor: &Actor,
    policy_version: &str,
) -> DbResult<Removed> {
    let mut removed = Removed::default();
    for (id, pseudonym) in store::inactive_customers(conn, cutoffs.inactive_customers)? {
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
    removed.transactions = store::delete_transactions_before(conn, cutoffs.transactions)?;
    removed.segment_memberships = store::expired_memberships(conn, cutoffs.segment_memberships)?;
    removed.consent_events = store::delete_superseded_consent_events(conn, cutoffs.consent_events)?;
    removed.kpi_evaluations = kpi::delete_evaluated_before(conn, cutoffs.kpi_evaluations)? as u64;
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
