//! Storage of disclosures (activation exports, member lists) and who was in each, for the
//! objection check in `crate::consent::objections`.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{consent_events, customers, disclosure_members, disclosures};
use super::{DbConnection, DbResult};
use crate::consent::ConsentStatus;
use crate::consent::objections::{Disclosure, DisclosureKind, LedgerEvent};

/// Ids per `IN` list.
const CHUNK: usize = 500;

type MemberValues = (
    diesel::dsl::Eq<disclosure_members::disclosure_id, i64>,
    diesel::dsl::Eq<disclosure_members::customer_id, i64>,
);

/// A disclosure about to be recorded.
pub struct NewDisclosure<'a> {
    pub kind: DisclosureKind,
    pub run_id: i64,
    pub segment: Option<i32>,
    pub channel: Option<&'a str>,
    pub purposes: &'a [String],
    pub at: NaiveDateTime,
    pub by: &'a str,
    pub customers: &'a [i64],
}

/// Records a disclosure and its customers; call inside `Db::write`, in the transaction that
/// reads the members. Returns its id.
pub fn insert(conn: &mut DbConnection, d: &NewDisclosure<'_>) -> DbResult<i64> {
    use diesel::dsl::max;
    let id = disclosures::table
        .select(max(disclosures::id))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0)
        + 1;
    diesel::insert_into(disclosures::table)
        .values((
            disclosures::id.eq(id),
            disclosures::kind.eq(d.kind.as_str()),
            disclosures::run_id.eq(d.run_id),
            disclosures::segment.eq(d.segment),
            disclosures::channel.eq(d.channel),
            disclosures::purposes.eq(serde_json::to_string(d.purposes).expect("strings serialise")),
            disclosures::disclosed_at.eq(d.at),
            disclosures::disclosed_by.eq(d.by),
        ))
        .execute(conn)?;
    let rows = d.customers.iter().map(|&c| -> MemberValues {
        (
            disclosure_members::disclosure_id.eq(id),
            disclosure_members::customer_id.eq(c),
        )
    });
    write_rows!(conn, disclosure_members::table, rows)?;
    Ok(id)
}

/// Every disclosure with its customers, oldest first.
pub fn all(conn: &mut DbConnection) -> DbResult<Vec<Disclosure>> {
    let heads: Vec<(i64, String, i64, String, NaiveDateTime)> = disclosures::table
        .order(disclosures::id.asc())
        .select((
            disclosures::id,
            disclosures::kind,
            disclosures::run_id,
            disclosures::purposes,
            disclosures::disclosed_at,
        ))
        .load(conn)?;
    let mut members: HashMap<i64, Vec<i64>> = HashMap::new();
    let rows = disclosure_members::table
        .select((
            disclosure_members::disclosure_id,
            disclosure_members::customer_id,
        ))
        .load_iter::<(i64, i64), diesel::connection::DefaultLoadingMode>(conn)?;
    for row in rows {
        let (d, c) = row?;
        members.entry(d).or_default().push(c);
    }
    Ok(heads
        .into_iter()
        .map(|(id, kind, run_id, purposes, at)| Disclosure {
            id,
            // The column's CHECK admits only the two kinds.
            kind: DisclosureKind::parse(&kind).unwrap_or(DisclosureKind::MemberList),
            run_id,
            at,
            purposes: serde_json::from_str(&purposes).unwrap_or_default(),
            customers: members.remove(&id).unwrap_or_default(),
        })
        .collect())
}

/// Every consent event, as the objection check needs it.
pub fn ledger(conn: &mut DbConnection) -> DbResult<Vec<LedgerEvent>> {
    let rows = consent_events::table
        .select((
            consent_events::id,
            consent_events::customer_id,
            consent_events::purpose,
            consent_events::status.eq(ConsentStatus::Withdrawn.as_str()),
            consent_events::recorded_at,
            consent_events::entered_at,
        ))
        .load_iter::<(i64, i64, String, bool, NaiveDateTime, NaiveDateTime), diesel::connection::DefaultLoadingMode>(conn)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, customer_id, purpose, withdrawn, recorded_at, entered_at) = row?;
        out.push(LedgerEvent {
            id,
            customer_id,
            purpose,
            withdrawn,
            recorded_at,
            entered_at,
        });
    }
    Ok(out)
}

/// External ids of the given customers still on file.
pub fn external_ids(conn: &mut DbConnection, ids: &[i64]) -> DbResult<HashMap<i64, String>> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<(i64, String)> = customers::table
            .filter(customers::id.eq_any(chunk))
            .select((customers::id, customers::external_id))
            .load(conn)?;
        out.extend(rows);
    }
    Ok(out)
}
