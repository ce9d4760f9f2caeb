//! The consent state: per customer × purpose, the latest event of the ledger, kept current by
//! every writer of the ledger so that "who may be processed now" and "how many are in each
//! state now" are answered without reading the whole ledger.
//!
//! Writers call [`apply_events_from`] with the first event id they appended (ids are taken as
//! `max + 1` inside the write transaction, so every id from there on is theirs) and
//! [`forget`] when they delete a customer's events (erasure). [`rebuild`] recomputes the whole
//! state from the ledger. Each change bumps [`version`], which caches of figures computed from
//! the state are keyed by.
//!
//! The state holds no expiry: a grant lapses `consent_validity_days` after it was recorded, so
//! "active at t" is `granted AND t − validity < recorded_at ≤ t`, worked out at each question.
//! A customer whose latest event is dated after `t` (an event dated a few minutes ahead, or a
//! question about the past) is answered from their ledger events, so every answer equals the
//! ledger's (`db::consent`); questions about a distant past should ask the ledger directly.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};

use super::schema::{consent_events, consent_state, consent_state_version, customers};
use super::{DbConnection, DbResult};
use crate::consent::coverage::{LatestEvents, Tally};
use crate::consent::{ConsentStatus, Event, validity};
use crate::policy::{LegalBasis, Policy, PurposeSpec};

/// An instant before any event (both backends store year 1; `NaiveDateTime::MIN` they do not).
fn beginning() -> NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a valid date")
}

/// One customer × purpose's latest event.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = consent_state)]
pub struct StateRow {
    pub customer_id: i64,
    pub purpose: String,
    pub granted: bool,
    pub recorded_at: NaiveDateTime,
    pub event_id: i64,
}

/// The latest event per customer × purpose among the ledger's events with `id >= first`.
const LATEST_FROM: &str = "SELECT customer_id, purpose, granted, recorded_at, id FROM (
    SELECT customer_id, purpose, status = 'granted' AS granted, recorded_at, id,
        ROW_NUMBER() OVER (PARTITION BY customer_id, purpose ORDER BY recorded_at DESC, id DESC) AS n
    FROM consent_events WHERE id >= $1
) latest WHERE n = 1";

/// Takes the ledger's events with `id >= first_event_id` into the state: each replaces the
/// state of its customer × purpose if it is later (recorded later, or at the same instant and
/// entered later), so events appended out of time order (back-filled) are right too. Call it
/// in the transaction that appended the events, with the first id it appended.
pub fn apply_events_from(conn: &mut DbConnection, first_event_id: i64) -> DbResult<()> {
    // `ON CONFLICT … DO UPDATE … WHERE` is the same statement on SQLite and PostgreSQL.
    let sql = format!(
        "INSERT INTO consent_state (customer_id, purpose, granted, recorded_at, event_id) \
         {LATEST_FROM} \
         ON CONFLICT (customer_id, purpose) DO UPDATE SET granted = excluded.granted, \
         recorded_at = excluded.recorded_at, event_id = excluded.event_id \
         WHERE excluded.recorded_at > consent_state.recorded_at \
         OR (excluded.recorded_at = consent_state.recorded_at \
         AND excluded.event_id > consent_state.event_id)"
    );
    // `$1` is a parameter on SQLite too.
    let changed = diesel::sql_query(sql)
        .bind::<BigInt, _>(first_event_id)
        .execute(conn)?;
    if changed > 0 {
        bump(conn)?;
    }
    Ok(())
}

/// Recomputes the whole state from the ledger.
pub fn rebuild(conn: &mut DbConnection) -> DbResult<()> {
    diesel::delete(consent_state::table).execute(conn)?;
    apply_events_from(conn, i64::MIN)?;
    bump(conn)
}

/// Drops a customer's state, after their events were deleted (erasure).
pub fn forget(conn: &mut DbConnection, customer_id: i64) -> DbResult<()> {
    diesel::delete(consent_state::table.filter(consent_state::customer_id.eq(customer_id)))
        .execute(conn)?;
    bump(conn)
}

fn bump(conn: &mut DbConnection) -> DbResult<()> {
    diesel::update(consent_state_version::table.filter(consent_state_version::id.eq(1)))
        .set(consent_state_version::version.eq(consent_state_version::version + 1))
        .execute(conn)?;
    Ok(())
}

/// A number that changes whenever the state does.
pub fn version(conn: &mut DbConnection) -> DbResult<i64> {
    Ok(consent_state_version::table
        .filter(consent_state_version::id.eq(1))
        .select(consent_state_version::version)
        .first(conn)?)
}

/// The whole state, by customer and purpose (for checks against the ledger).
pub fn all(conn: &mut DbConnection) -> DbResult<Vec<StateRow>> {
    Ok(consent_state::table
        .order((
            consent_state::customer_id.asc(),
            consent_state::purpose.asc(),
        ))
        .select(StateRow::as_select())
        .load(conn)?)
}

/// The latest event at or before `at` of each customer whose state is dated after `at`,
/// from the ledger: the customers the state cannot answer for at `at`.
fn later_than(conn: &mut DbConnection, purpose: &str, at: NaiveDateTime) -> DbResult<LatestEvents> {
    let ids: Vec<i64> = consent_state::table
        .filter(consent_state::purpose.eq(purpose))
        .filter(consent_state::recorded_at.gt(at))
        .select(consent_state::customer_id)
        .load(conn)?;
    latest_in_ledger(conn, purpose, at, &ids)
}

/// The latest event at or before `at` of each of `ids`, from the ledger.
fn latest_in_ledger(
    conn: &mut DbConnection,
    purpose: &str,
    at: NaiveDateTime,
    ids: &[i64],
) -> DbResult<LatestEvents> {
    let mut latest = LatestEvents::default();
    for chunk in ids.chunks(500) {
        // By customer only, purpose and time checked here: given `purpose = ?` too, SQLite
        // (without statistics) walks the whole purpose in its time index instead of looking
        // up these few customers.
        let rows: Vec<(i64, i64, String, String, NaiveDateTime)> = consent_events::table
            .filter(consent_events::customer_id.eq_any(chunk))
            .select((
                consent_events::customer_id,
                consent_events::id,
                consent_events::purpose,
                consent_events::status,
                consent_events::recorded_at,
            ))
            .load(conn)?;
        for (customer_id, event_id, of, status, recorded_at) in rows {
            if of != purpose || recorded_at > at {
                continue;
            }
            if let Ok(status) = ConsentStatus::parse(&status) {
                latest.offer(
                    customer_id,
                    event_id,
                    Event {
                        status,
                        recorded_at,
                    },
                );
            }
        }
    }
    Ok(latest)
}

/// The internal ids of the customers whose data may be used for `purpose` at `at`, ascending:
/// the same answer as `db::consent::active_customers`, from the state.
pub fn active_customers(
    conn: &mut DbConnection,
    purpose: &str,
    spec: &PurposeSpec,
    at: NaiveDateTime,
) -> DbResult<Vec<i64>> {
    let validity = validity(spec);
    let later = later_than(conn, purpose, at)?;
    let mut ids = match spec.legal_basis {
        LegalBasis::Consent => {
            let mut ids = granted_between(conn, purpose, at - validity, at)?;
            ids.extend(later.permitted(at, validity, spec.legal_basis, Vec::new()));
            ids
        }
        LegalBasis::LegitimateInterest => {
            // Everyone except those whose latest event at `at` is an objection.
            let objected: HashSet<i64> = consent_state::table
                .filter(consent_state::purpose.eq(purpose))
                .filter(consent_state::granted.eq(false))
                .filter(consent_state::recorded_at.le(at))
                .select(consent_state::customer_id)
                .load::<i64>(conn)?
                .into_iter()
                .collect();
            let all_ids: Vec<i64> = customers::table
                .select(customers::id)
                .order(customers::id.asc())
                .load(conn)?;
            let undecided: HashSet<i64> = consent_state::table
                .filter(consent_state::purpose.eq(purpose))
                .filter(consent_state::recorded_at.gt(at))
                .select(consent_state::customer_id)
                .load::<i64>(conn)?
                .into_iter()
                .collect();
            let allowed_later: HashSet<i64> = later
                .permitted(at, validity, spec.legal_basis, undecided.iter().copied())
                .into_iter()
                .collect();
            all_ids
                .into_iter()
                .filter(|id| {
                    if undecided.contains(id) {
                        allowed_later.contains(id)
                    } else {
                        !objected.contains(id)
                    }
                })
                .collect()
        }
    };
    ids.sort_unstable();
    Ok(ids)
}

/// The customers whose state for `purpose` is a grant recorded in `(after, until]`, in no
/// particular order.
///
/// PostgreSQL sends them as one `bigint[]` (`array_agg`) in the binary format, about 12 bytes
/// an id: a million rows of one id each cost libpq a row apiece to receive and diesel one to
/// decode, which made this the slowest step of a million-customer run's load on PostgreSQL
/// (0.4-0.6 s against 0.14 s for the scan itself). SQLite steps through the rows.
fn granted_between(
    conn: &mut DbConnection,
    purpose: &str,
    after: NaiveDateTime,
    until: NaiveDateTime,
) -> DbResult<Vec<i64>> {
    match conn {
        DbConnection::Postgres(c) => {
            #[derive(QueryableByName)]
            struct Ids {
                #[diesel(sql_type = diesel::sql_types::Array<BigInt>)]
                ids: Vec<i64>,
            }
            Ok(diesel::sql_query(
                "SELECT COALESCE(array_agg(customer_id), '{}') AS ids FROM consent_state \
                 WHERE purpose = $1 AND granted = true AND recorded_at > $2 AND recorded_at <= $3",
            )
            .bind::<Text, _>(purpose)
            .bind::<Timestamp, _>(after)
            .bind::<Timestamp, _>(until)
            .get_result::<Ids>(c)?
            .ids)
        }
        DbConnection::Sqlite(_) => Ok(consent_state::table
            .filter(consent_state::purpose.eq(purpose))
            .filter(consent_state::granted.eq(true))
            .filter(consent_state::recorded_at.gt(after))
            .filter(consent_state::recorded_at.le(until))
            .select(consent_state::customer_id)
            .load(conn)?),
    }
}

/// [`active_customers`] of `purpose` under the policy's terms for it (its legal basis and
/// consent validity).
pub fn active_under(
    conn: &mut DbConnection,
    policy: &Policy,
    purpose: &str,
    at: NaiveDateTime,
) -> DbResult<Vec<i64>> {
    active_customers(conn, purpose, &policy.purposes[purpose], at)
}

/// Those of `ids` (ascending) whose data may be used for `purpose` at `at`, ascending: the
/// answer of `active_customers` restricted to them, reading only their state (a page of
/// members, not the whole population).
pub fn permitted_among(
    conn: &mut DbConnection,
    purpose: &str,
    spec: &PurposeSpec,
    at: NaiveDateTime,
    ids: &[i64],
) -> DbResult<Vec<i64>> {
    let validity = validity(spec);
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        // By customer only (the primary key), the purpose checked here: see
        // `latest_in_ledger`.
        let rows: Vec<(i64, String, bool, NaiveDateTime)> = consent_state::table
            .filter(consent_state::customer_id.eq_any(chunk))
            .select((
                consent_state::customer_id,
                consent_state::purpose,
                consent_state::granted,
                consent_state::recorded_at,
            ))
            .load(conn)?;
        let state: std::collections::HashMap<i64, (bool, NaiveDateTime)> = rows
            .into_iter()
            .filter(|(_, of, _, _)| of == purpose)
            .map(|(id, _, g, t)| (id, (g, t)))
            .collect();
        let undecided: Vec<i64> = chunk
            .iter()
            .copied()
            .filter(|id| state.get(id).is_some_and(|&(_, t)| t > at))
            .collect();
        let from_ledger: HashSet<i64> = latest_in_ledger(conn, purpose, at, &undecided)?
            .permitted(at, validity, spec.legal_basis, undecided.iter().copied())
            .into_iter()
            .collect();
        out.extend(chunk.iter().copied().filter(|id| match state.get(id) {
            Some(&(_, t)) if t > at => from_ledger.contains(id),
            Some(&(granted, t)) => {
                let event = Event {
                    status: if granted {
                        ConsentStatus::Granted
                    } else {
                        ConsentStatus::Withdrawn
                    },
                    recorded_at: t,
                };
                crate::consent::state_of_latest(&event, at, validity).permits(spec.legal_basis)
            }
            None => spec.legal_basis == LegalBasis::LegitimateInterest,
        }));
    }
    Ok(out)
}

/// How many customers are in each state for `purpose` at `at`: the same answer as
/// `db::consent::tally_at`, counted in the state.
pub fn tally_at(
    conn: &mut DbConnection,
    purpose: &str,
    spec: &PurposeSpec,
    at: NaiveDateTime,
) -> DbResult<Tally> {
    let validity = validity(spec);
    let population = super::consent::population(conn)?;
    let later = later_than(conn, purpose, at)?;
    let mut tally = later.tally(at, validity, 0);
    let counted = match conn {
        DbConnection::Postgres(_) => counts(conn, purpose, at - validity, at)?,
        // SQLite answers each count from a range of the state's index alone; one pass with
        // the three conditions reads every row of the purpose instead (108 -> 189 ms for a
        // million customers' population).
        DbConnection::Sqlite(_) => Counts {
            granted: count_range(conn, purpose, true, at - validity, at)?,
            expired: count_range(conn, purpose, true, beginning(), at - validity)?,
            withdrawn: count_range(conn, purpose, false, beginning(), at)?,
        },
    };
    tally.granted += counted.granted.max(0) as u64;
    tally.expired += counted.expired.max(0) as u64;
    tally.withdrawn += counted.withdrawn.max(0) as u64;
    let with_events = tally.granted + tally.expired + tally.withdrawn;
    tally.never_asked = population.saturating_sub(with_events);
    Ok(tally)
}

/// The states of `purpose` that are grants (or withdrawals) recorded in `(after, until]`.
fn count_range(
    conn: &mut DbConnection,
    purpose: &str,
    granted: bool,
    after: NaiveDateTime,
    until: NaiveDateTime,
) -> DbResult<i64> {
    Ok(consent_state::table
        .filter(consent_state::purpose.eq(purpose))
        .filter(consent_state::granted.eq(granted))
        .filter(consent_state::recorded_at.gt(after))
        .filter(consent_state::recorded_at.le(until))
        .count()
        .get_result(conn)?)
}

#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = BigInt)]
    granted: i64,
    #[diesel(sql_type = BigInt)]
    expired: i64,
    #[diesel(sql_type = BigInt)]
    withdrawn: i64,
}

/// The states of `purpose` recorded at or before `at`, counted in one pass: grants recorded
/// after `lapse` (active), grants recorded at or before it (expired), and withdrawals. On
/// PostgreSQL one scan of the purpose's state is cheaper than one per count (a million rows
/// each at a million customers).
fn counts(
    conn: &mut DbConnection,
    purpose: &str,
    lapse: NaiveDateTime,
    at: NaiveDateTime,
) -> DbResult<Counts> {
    // Each parameter first appears in its number's order: SQLite numbers `$N` by first
    // appearance, the same name twice being one parameter.
    Ok(diesel::sql_query(
        "SELECT \
           COUNT(CASE WHEN granted AND recorded_at > $1 AND recorded_at <= $2 THEN 1 END) AS granted, \
           COUNT(CASE WHEN granted AND recorded_at > $3 AND recorded_at <= $1 THEN 1 END) AS expired, \
           COUNT(CASE WHEN NOT granted AND recorded_at > $3 THEN 1 END) AS withdrawn \
         FROM consent_state WHERE purpose = $4 AND recorded_at <= $2",
    )
    .bind::<Timestamp, _>(lapse)
    .bind::<Timestamp, _>(at)
    .bind::<Timestamp, _>(beginning())
    .bind::<Text, _>(purpose)
    .get_result(conn)?)
}

/// `active_customers` and `tally_at` together: the population a run may use and the counts of
/// everyone else by state.
pub fn population_at(
    conn: &mut DbConnection,
    purpose: &str,
    spec: &PurposeSpec,
    at: NaiveDateTime,
) -> DbResult<(Vec<i64>, Tally)> {
    Ok((
        active_customers(conn, purpose, spec, at)?,
        tally_at(conn, purpose, spec, at)?,
    ))
}

/// The next instant after `at` at which the answer of `active_customers(purpose, at)` may
/// change without a write: the earliest lapse of an active grant or the earliest event dated
/// after `at`. `None` if nothing is pending.
pub fn changes_after(
    conn: &mut DbConnection,
    purpose: &str,
    spec: &PurposeSpec,
    at: NaiveDateTime,
) -> DbResult<Option<NaiveDateTime>> {
    use diesel::dsl::min;
    let validity = validity(spec);
    let lapse: Option<NaiveDateTime> = consent_state::table
        .filter(consent_state::purpose.eq(purpose))
        .filter(consent_state::recorded_at.gt(at - validity))
        .filter(consent_state::recorded_at.le(at))
        .filter(consent_state::granted.eq(true))
        .select(min(consent_state::recorded_at))
        .first(conn)?;
    let future: Option<NaiveDateTime> = consent_state::table
        .filter(consent_state::purpose.eq(purpose))
        .filter(consent_state::recorded_at.gt(at))
        .select(min(consent_state::recorded_at))
        .first(conn)?;
    Ok(match (lapse.map(|t| t + validity), future) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}
