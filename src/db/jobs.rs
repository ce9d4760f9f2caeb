//! Work shared by several processes on one database: the claim of a queued run (with its
//! lease), the heartbeat that renews it, the runs whose lease ran out, and the once-only claim
//! of a scheduled period; on PostgreSQL, the notice that a run is waiting (`announce`,
//! `Listener`).

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::schema::{schedule_claims, segmentation_runs};
use super::{DbConnection, DbResult};
use crate::segmentation::status::RunStatus;

const QUEUED: &str = "queued";
const RUNNING: &str = "running";

/// A run held (or once held) by a worker.
#[derive(Debug, Clone, Queryable, Selectable, PartialEq)]
#[diesel(table_name = segmentation_runs)]
pub struct Held {
    pub id: i64,
    #[diesel(deserialize_as = String)]
    pub status: RunStatus,
    pub worker_id: Option<String>,
    pub lease_until: Option<NaiveDateTime>,
    pub attempts: i32,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// Claims the oldest queued run nobody holds for `worker`, until `lease_until`, and returns it
/// with its number of attempts (this one included); call inside
/// `Db::write`. On PostgreSQL the row is taken with `FOR UPDATE SKIP LOCKED`, so a claim never
/// waits on a run another transaction has locked; on SQLite the write transaction is already
/// exclusive.
pub fn claim_next(
    conn: &mut DbConnection,
    worker: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> DbResult<Option<(i64, i32)>> {
    let id = match conn {
        DbConnection::Postgres(c) => diesel::sql_query(
            "SELECT id FROM segmentation_runs WHERE status = 'queued' AND worker_id IS NULL \
             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .get_result::<IdRow>(c)
        .optional()?
        .map(|r| r.id),
        DbConnection::Sqlite(c) => segmentation_runs::table
            .filter(segmentation_runs::status.eq(QUEUED))
            .filter(segmentation_runs::worker_id.is_null())
            .order(segmentation_runs::id.asc())
            .select(segmentation_runs::id)
            .first::<i64>(c)
            .optional()?,
    };
    let Some(id) = id else {
        return Ok(None);
    };
    claim(conn, id, worker, now, lease_until)?;
    let attempts = segmentation_runs::table
        .find(id)
        .select(segmentation_runs::attempts)
        .first(conn)?;
    Ok(Some((id, attempts)))
}

/// Marks run `id` held by `worker` (one more attempt).
pub fn claim(
    conn: &mut DbConnection,
    id: i64,
    worker: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> DbResult<()> {
    diesel::update(segmentation_runs::table.find(id))
        .set((
            segmentation_runs::worker_id.eq(worker),
            segmentation_runs::claimed_at.eq(now),
            segmentation_runs::lease_until.eq(lease_until),
            segmentation_runs::attempts.eq(segmentation_runs::attempts + 1),
        ))
        .execute(conn)?;
    Ok(())
}

/// Extends the lease of every unfinished run `worker` holds; returns how many.
pub fn renew(conn: &mut DbConnection, worker: &str, lease_until: NaiveDateTime) -> DbResult<usize> {
    Ok(diesel::update(
        segmentation_runs::table
            .filter(segmentation_runs::worker_id.eq(worker))
            .filter(segmentation_runs::status.eq_any([QUEUED, RUNNING])),
    )
    .set(segmentation_runs::lease_until.eq(lease_until))
    .execute(conn)?)
}

/// Unfinished runs whose holder stopped: held by another worker with a lease that ended
/// before `now`, or running with no holder at all (left by a version without leases).
pub fn abandoned(conn: &mut DbConnection, me: &str, now: NaiveDateTime) -> DbResult<Vec<Held>> {
    Ok(segmentation_runs::table
        .filter(segmentation_runs::status.eq_any([QUEUED, RUNNING]))
        .filter(
            segmentation_runs::worker_id
                .ne(me)
                .and(segmentation_runs::lease_until.lt(now))
                .or(segmentation_runs::worker_id
                    .is_null()
                    .and(segmentation_runs::status.eq(RUNNING))),
        )
        .order(segmentation_runs::id.asc())
        .select(Held::as_select())
        .load(conn)?)
}

/// Unfinished runs `worker` holds.
pub fn held_by(conn: &mut DbConnection, worker: &str) -> DbResult<Vec<Held>> {
    Ok(segmentation_runs::table
        .filter(segmentation_runs::status.eq_any([QUEUED, RUNNING]))
        .filter(segmentation_runs::worker_id.eq(worker))
        .select(Held::as_select())
        .load(conn)?)
}

/// The PostgreSQL channel on which a process says a run waits to be claimed.
const RUNS_CHANNEL: &str = "fairseg_runs";

/// Tells every process listening (`Listener`) that a run waits to be claimed; call in the
/// transaction that queues it: PostgreSQL delivers the notice when that commits, and not if it
/// rolls back. Nothing on SQLite, where idle workers poll.
pub fn announce(conn: &mut DbConnection) -> DbResult<()> {
    if let DbConnection::Postgres(c) = conn {
        diesel::sql_query(format!("NOTIFY {RUNS_CHANNEL}")).execute(c)?;
    }
    Ok(())
}

/// A connection of its own that listens for `announce` (PostgreSQL only).
pub struct Listener {
    conn: diesel::PgConnection,
}

impl Listener {
    /// Opens the connection and listens; `None` on SQLite.
    pub fn open(db: &super::Db) -> DbResult<Option<Listener>> {
        let Some(mut conn) = db.dedicated_postgres()? else {
            return Ok(None);
        };
        diesel::sql_query(format!("LISTEN {RUNS_CHANNEL}")).execute(&mut conn)?;
        Ok(Some(Listener { conn }))
    }

    /// Waits up to `timeout` for a notice; returns whether one came (several that came
    /// together count once). Looks at what the server sent every few milliseconds, without a
    /// round trip: libpq reads the socket without blocking.
    pub fn wait(&mut self, timeout: std::time::Duration) -> DbResult<bool> {
        const LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(20);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let mut any = false;
            for notice in self.conn.notifications_iter() {
                notice?;
                any = true;
            }
            if any {
                return Ok(true);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            std::thread::sleep(LOOK_EVERY.min(deadline - now));
        }
    }
}

/// Puts a claimed run that never started back in the queue for any worker.
pub fn release(conn: &mut DbConnection, id: i64) -> DbResult<()> {
    diesel::update(
        segmentation_runs::table
            .find(id)
            .filter(segmentation_runs::status.eq(QUEUED)),
    )
    .set((
        segmentation_runs::worker_id.eq(None::<String>),
        segmentation_runs::lease_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    announce(conn)
}

/// What a scheduled claim is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot<'a> {
    pub task: &'a str,
    pub period_kind: &'a str,
    pub period_start: NaiveDate,
    pub evaluation: &'a str,
}

/// Claims `slot` for `worker` unless a claim of it exists; returns the claim's id when this
/// call made it. A claim left unfinished since before `stale_before` (its process died
/// mid-work) is taken over. Call inside `Db::write`, whose lock makes the check and the
/// insert one step; the unique key keeps the slot single even so.
pub fn claim_slot(
    conn: &mut DbConnection,
    slot: &Slot<'_>,
    worker: &str,
    now: NaiveDateTime,
    stale_before: NaiveDateTime,
) -> DbResult<Option<i64>> {
    let existing: Option<(i64, Option<NaiveDateTime>, NaiveDateTime)> = schedule_claims::table
        .filter(schedule_claims::task.eq(slot.task))
        .filter(schedule_claims::period_kind.eq(slot.period_kind))
        .filter(schedule_claims::period_start.eq(slot.period_start))
        .filter(schedule_claims::evaluation.eq(slot.evaluation))
        .select((
            schedule_claims::id,
            schedule_claims::finished_at,
            schedule_claims::claimed_at,
        ))
        .first(conn)
        .optional()?;
    match existing {
        Some((id, None, claimed_at)) if claimed_at < stale_before => {
            diesel::update(schedule_claims::table.find(id))
                .set((
                    schedule_claims::worker_id.eq(worker),
                    schedule_claims::claimed_at.eq(now),
                ))
                .execute(conn)?;
            Ok(Some(id))
        }
        Some(_) => Ok(None),
        None => {
            let id = schedule_claims::table
                .select(diesel::dsl::max(schedule_claims::id))
                .first::<Option<i64>>(conn)?
                .unwrap_or(0)
                + 1;
            diesel::insert_into(schedule_claims::table)
                .values((
                    schedule_claims::id.eq(id),
                    schedule_claims::task.eq(slot.task),
                    schedule_claims::period_kind.eq(slot.period_kind),
                    schedule_claims::period_start.eq(slot.period_start),
                    schedule_claims::evaluation.eq(slot.evaluation),
                    schedule_claims::worker_id.eq(worker),
                    schedule_claims::claimed_at.eq(now),
                ))
                .execute(conn)?;
            Ok(Some(id))
        }
    }
}

/// Marks a claim's work done.
pub fn finish_slot(conn: &mut DbConnection, id: i64, at: NaiveDateTime) -> DbResult<()> {
    diesel::update(schedule_claims::table.find(id))
        .set(schedule_claims::finished_at.eq(at))
        .execute(conn)?;
    Ok(())
}

/// Gives a claim up (its work failed), so a later tick claims it again.
pub fn release_slot(conn: &mut DbConnection, id: i64) -> DbResult<()> {
    diesel::delete(schedule_claims::table.find(id)).execute(conn)?;
    Ok(())
}
