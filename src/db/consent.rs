//! Storage of the consent ledger: appending events, a customer's history, and the bulk
//! questions asked of a whole population (coverage counts, who may be processed at an
//! instant). The rules themselves live in `crate::consent`.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use super::schema::{consent_events, customers};
use super::{DbConnection, DbResult};
use crate::consent::coverage::{LatestEvents, Tally};
use crate::consent::{ConsentStatus, Event, validity};
use crate::customers::CustomerId;
use crate::policy::PurposeSpec;

/// A stored ledger event.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = consent_events)]
pub struct EventRow {
    pub id: i64,
    pub customer_id: i64,
    pub purpose: String,
    pub status: String,
    pub recorded_at: NaiveDateTime,
    pub source: Option<String>,
    pub notice_version: Option<String>,
    pub recorded_by: String,
    pub entered_at: NaiveDateTime,
}

impl EventRow {
    /// The event as the ledger rules see it; `None` for a status the schema would not let in.
    pub fn event(&self) -> Option<Event> {
        ConsentStatus::parse(&self.status).ok().map(|status| Event {
            status,
            recorded_at: self.recorded_at,
        })
    }
}

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub customer_id: i64,
    pub purpose: &'a str,
    pub status: ConsentStatus,
    pub recorded_at: NaiveDateTime,
    pub source: Option<&'a str>,
    pub notice_version: Option<&'a str>,
    pub recorded_by: &'a str,
}

/// A customer as the ledger refers to them: the internal id and the pseudonym.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct CustomerRef {
    pub id: i64,
    pub pseudonym: String,
}

pub fn customer_by_external_id(
    conn: &mut DbConnection,
    id: &CustomerId,
) -> DbResult<Option<CustomerRef>> {
    Ok(customers::table
        .filter(customers::external_id.eq(id.as_str()))
        .select((customers::id, customers::pseudonym))
        .first(conn)
        .optional()?)
}

pub fn customer_by_pseudonym(
    conn: &mut DbConnection,
    pseudonym: &str,
) -> DbResult<Option<CustomerRef>> {
    Ok(customers::table
        .filter(customers::pseudonym.eq(pseudonym))
        .select((customers::id, customers::pseudonym))
        .first(conn)
        .optional()?)
}

/// When the latest event for this customer and purpose was recorded.
pub fn latest_recorded_at(
    conn: &mut DbConnection,
    customer_id: i64,
    purpose: &str,
) -> DbResult<Option<NaiveDateTime>> {
    use diesel::dsl::max;
    Ok(consent_events::table
        .filter(consent_events::customer_id.eq(customer_id))
        .filter(consent_events::purpose.eq(purpose))
        .select(max(consent_events::recorded_at))
        .first(conn)?)
}

/// Appends an event with the next free id. Call it inside `Db::write`, after checking the
/// order (`consent::check_order`) against `latest_recorded_at` in the same transaction.
pub fn insert(conn: &mut DbConnection, new: &NewEvent<'_>) -> DbResult<EventRow> {
    let id = super::customers::next_id(conn, super::customers::IdTable::ConsentEvents)?;
    let row = EventRow {
        id,
        customer_id: new.customer_id,
        purpose: new.purpose.to_string(),
        status: new.status.as_str().to_string(),
        recorded_at: new.recorded_at,
        source: new.source.map(str::to_string),
        notice_version: new.notice_version.map(str::to_string),
        recorded_by: new.recorded_by.to_string(),
        entered_at: super::now(),
    };
    diesel::insert_into(consent_events::table)
        .values((
            consent_events::id.eq(row.id),
            consent_events::customer_id.eq(row.customer_id),
            consent_events::purpose.eq(&row.purpose),
            consent_events::status.eq(&row.status),
            consent_events::recorded_at.eq(row.recorded_at),
            consent_events::source.eq(&row.source),
            consent_events::notice_version.eq(&row.notice_version),
            consent_events::recorded_by.eq(&row.recorded_by),
            consent_events::entered_at.eq(row.entered_at),
        ))
        .execute(conn)?;
    Ok(row)
}

/// A customer's events for every purpose, in ledger order (oldest first, ties by entry).
pub fn history(conn: &mut DbConnection, customer_id: i64) -> DbResult<Vec<EventRow>> {
    Ok(consent_events::table
        .filter(consent_events::customer_id.eq(customer_id))
        .order((consent_events::recorded_at.asc(), consent_events::id.asc()))
        .select(EventRow::as_select())
        .load(conn)?)
}

/// The number of customers on file. Coverage counts are of today's customers: an erased
/// customer leaves the history too.
pub fn population(conn: &mut DbConnection) -> DbResult<u64> {
    let n: i64 = customers::table.count().get_result(conn)?;
    Ok(n.max(0) as u64)
}

/// The highest internal customer id: it grows with every customer added.
pub fn last_customer_id(conn: &mut DbConnection) -> DbResult<Option<i64>> {
    use diesel::dsl::max;
    Ok(customers::table.select(max(customers::id)).first(conn)?)
}

/// The highest id in the ledger: it grows with every event appended.
pub fn last_event_id(conn: &mut DbConnection) -> DbResult<Option<i64>> {
    use diesel::dsl::max;
    Ok(consent_events::table
        .select(max(consent_events::id))
        .first(conn)?)
}

/// The internal ids of every customer on file, ascending.
pub fn customer_ids(conn: &mut DbConnection) -> DbResult<Vec<i64>> {
    use diesel::dsl::{max, min};
    // Ids without gaps (as many as the span from the smallest to the largest) are that span:
    // a count and two ends of the key's index, in one read transaction, instead of a million
    // rows.
    let span = conn.transaction(|conn| -> DbResult<Option<(i64, i64)>> {
        let n: i64 = customers::table.count().get_result(conn)?;
        let lo: Option<i64> = customers::table.select(min(customers::id)).first(conn)?;
        let hi: Option<i64> = customers::table.select(max(customers::id)).first(conn)?;
        Ok(lo.zip(hi).filter(|&(lo, hi)| hi - lo + 1 == n))
    })?;
    if let Some((lo, hi)) = span {
        return Ok((lo..=hi).collect());
    }
    Ok(customers::table
        .select(customers::id)
        .order(customers::id.asc())
        .load::<i64>(conn)?)
}

fn max_customer_id(conn: &mut DbConnection) -> DbResult<i64> {
    use diesel::dsl::max;
    Ok(customers::table
        .select(max(customers::id))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0))
}

/// Streams the purpose's events recorded at or before `at` (in no particular order) into the
/// latest event per customer. One indexed range scan; nothing is sorted.
fn latest_events(
    conn: &mut DbConnection,
    purpose: &str,
    at: NaiveDateTime,
) -> DbResult<LatestEvents> {
    let mut latest = LatestEvents::with_capacity(max_customer_id(conn)?);
    let rows = consent_events::table
        .filter(consent_events::purpose.eq(purpose))
        .filter(consent_events::recorded_at.le(at))
        .select((
            consent_events::customer_id,
            consent_events::id,
            consent_events::status.eq(ConsentStatus::Granted.as_str()),
            consent_events::recorded_at,
        ))
        .load_iter::<(i64, i64, bool, NaiveDateTime), diesel::connection::DefaultLoadingMode>(
            conn,
        )?;
    for row in rows {
        let (customer_id, event_id, granted, recorded_at) = row?;
        latest.offer(customer_id, event_id, event_of(granted, recorded_at));
    }
    Ok(latest)
}

fn event_of(granted: bool, recorded_at: NaiveDateTime) -> Event {
    Event {
        status: if granted {
            ConsentStatus::Granted
        } else {
            ConsentStatus::Withdrawn
        },
        recorded_at,
    }
}

/// The internal ids of the customers whose data may be used for `purpose` at `at`, ascending:
/// under consent, those whose latest event at or before `at` is a grant that has not lapsed;
/// under legitimate interest, every customer on file except those whose latest event is an
/// objection (withdrawal). This is the population a segmentation run for the purpose may use;
/// freeze it once per run and keep `at` with it.
pub fn active_customers(
    conn: &mut DbConnection,
    purpose: &str,
    spec: &PurposeSpec,
    at: NaiveDateTime,
) -> DbResult<Vec<i64>> {
    let latest = latest_events(conn, purpose, at)?;
    let all_ids = match spec.legal_basis {
        crate::policy::LegalBasis::Consent => Vec::new(),
        crate::policy::LegalBasis::LegitimateInterest => customers::table
            .select(customers::id)
            .order(customers::id.asc())
            .load::<i64>(conn)?,
    };
    Ok(latest.permitted(at, validity(spec), spec.legal_basis, all_ids))
}

/// `active_customers` and `tally_at` from one pass over the ledger: the population a run may
/// use and the counts of everyone else by state.
pub fn population_at(
    conn: &mut DbConnection,
    purpose: &str,
    spec: &PurposeSpec,
    at: NaiveDateTime,
) -> DbResult<(Vec<i64>, Tally)> {
    let population = population(conn)?;
    let latest = latest_events(conn, purpose, at)?;
    let tally = latest.tally(at, validity(spec), population);
    let all_ids = match spec.legal_basis {
        crate::policy::LegalBasis::Consent => Vec::new(),
        crate::policy::LegalBasis::LegitimateInterest => customers::table
            .select(customers::id)
            .order(customers::id.asc())
            .load::<i64>(conn)?,
    };
    Ok((
        latest.permitted(at, validity(spec), spec.legal_basis, all_ids),
        tally,
    ))
}

/// How many customers are in each state for `purpose` at `at`.
pub fn tally_at(
    conn: &mut DbConnection,
    purpose: &str,
    spec: &PurposeSpec,
    at: NaiveDateTime,
) -> DbResult<Tally> {
    let population = population(conn)?;
    let latest = latest_events(conn, purpose, at)?;
    Ok(latest.tally(at, validity(spec), population))
}

/// The counts at each of `instants` (ascending), in one pass over the purpose's events in time
/// order: the latest event per customer is carried forward, and counted as each instant is
/// passed.
pub fn tally_history(
    conn: &mut DbConnection,
    purpose: &str,
    spec: &PurposeSpec,
    instants: &[NaiveDateTime],
) -> DbResult<Vec<Tally>> {
    let population = population(conn)?;
    let validity: TimeDelta = validity(spec);
    at_each_instant(conn, purpose, instants, |latest, at| {
        latest.tally(at, validity, population)
    })
}

/// The customers whose data may be used for `purpose` at each of `instants` (ascending), as
/// [`active_customers`] finds them, in one pass over the purpose's events in time order.
pub fn active_history(
    conn: &mut DbConnection,
    purpose: &str,
    spec: &PurposeSpec,
    instants: &[NaiveDateTime],
) -> DbResult<Vec<Vec<i64>>> {
    let validity: TimeDelta = validity(spec);
    let all_ids = match spec.legal_basis {
        crate::policy::LegalBasis::Consent => Vec::new(),
        crate::policy::LegalBasis::LegitimateInterest => customer_ids(conn)?,
    };
    at_each_instant(conn, purpose, instants, |latest, at| {
        latest.permitted(at, validity, spec.legal_basis, all_ids.iter().copied())
    })
}

/// `at_instant` of the latest event per customer at each of `instants` (ascending), from one
/// pass over the purpose's events in time order: the latest events are carried forward, and
/// looked at as each instant is passed.
fn at_each_instant<T>(
    conn: &mut DbConnection,
    purpose: &str,
    instants: &[NaiveDateTime],
    mut at_instant: impl FnMut(&LatestEvents, NaiveDateTime) -> T,
) -> DbResult<Vec<T>> {
    let Some(&last) = instants.last() else {
        return Ok(Vec::new());
    };
    let mut latest = LatestEvents::with_capacity(max_customer_id(conn)?);
    let mut out = Vec::with_capacity(instants.len());
    let rows = consent_events::table
        .filter(consent_events::purpose.eq(purpose))
        .filter(consent_events::recorded_at.le(last))
        .order((consent_events::recorded_at.asc(), consent_events::id.asc()))
        .select((
            consent_events::customer_id,
            consent_events::id,
            consent_events::status.eq(ConsentStatus::Granted.as_str()),
            consent_events::recorded_at,
        ))
        .load_iter::<(i64, i64, bool, NaiveDateTime), diesel::connection::DefaultLoadingMode>(
            conn,
        )?;
    for row in rows {
        let (customer_id, event_id, granted, recorded_at) = row?;
        while out.len() < instants.len() && recorded_at > instants[out.len()] {
            out.push(at_instant(&latest, instants[out.len()]));
        }
        latest.offer(customer_id, event_id, event_of(granted, recorded_at));
    }
    while out.len() < instants.len() {
        out.push(at_instant(&latest, instants[out.len()]));
    }
    Ok(out)
}

/// Whether the ledger gained an event after event `after` (all events when `None`) that
/// takes effect at or before `at`: a back-dated event, which changes what the ledger says of
/// the past. Reads the events appended since, by their key: the first such event by id, so
/// that PostgreSQL walks the key from `after` (asked as `EXISTS`, its planner expected a match
/// soon among the millions of events recorded before `at` and scanned them all, 210 ms a
/// call at a million customers, for the one answer a kept consent history needs per view).
pub fn any_event_since_effective_by(
    conn: &mut DbConnection,
    after: Option<i64>,
    at: NaiveDateTime,
) -> DbResult<bool> {
    Ok(consent_events::table
        .filter(consent_events::id.gt(after.unwrap_or(i64::MIN)))
        .filter(consent_events::recorded_at.le(at))
        .order(consent_events::id.asc())
        .select(consent_events::id)
        .first::<i64>(conn)
        .optional()?
        .is_some())
}
