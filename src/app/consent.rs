//! Consent use cases: recording an event (with its trail entry, in one transaction), reading a
//! customer's consents, issuing preference links, and coverage counts. Inputs arrive parsed
//! (purpose checked against the policy, status and time typed); the order rule is checked here,
//! inside the write transaction, against what is already stored.

use std::sync::LazyLock;

use chrono::{NaiveDateTime, TimeDelta, Utc};
use serde_json::json;

use super::kept::{Kept, Span};
use crate::consent::coverage::Tally;
use crate::consent::link::{LinkClaims, PreferenceLinks};
use crate::consent::{self, ConsentState, ConsentStatus, Event, check_order, state_at, validity};
use crate::customers::CustomerId;
use crate::db::consent::{self as store, CustomerRef, EventRow, NewEvent};
use crate::db::{Db, DbConnection, DbError, DbResult, trail as trail_store};
use crate::policy::{LegalBasis, Policy};
use crate::time::format_instant;
use crate::trail::{Actor, NewEntry};

#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error("no customer with that id is on file")]
    UnknownCustomer,
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Which customer: by the id the company knows them by (staff), or by pseudonym (a
/// preference link).
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    External(&'a CustomerId),
    Pseudonym(&'a str),
}

fn lookup(conn: &mut DbConnection, who: Who<'_>) -> DbResult<Option<CustomerRef>> {
    match who {
        Who::External(id) => store::customer_by_external_id(conn, id),
        Who::Pseudonym(p) => store::customer_by_pseudonym(conn, p),
    }
}

fn find(conn: &mut DbConnection, who: Who<'_>) -> Result<CustomerRef, ConsentError> {
    lookup(conn, who)?.ok_or(ConsentError::UnknownCustomer)
}

/// An event to record, already parsed.
#[derive(Debug, Clone)]
pub struct Recording<'a> {
    /// A purpose of the policy.
    pub purpose: &'a str,
    pub status: ConsentStatus,
    pub recorded_at: NaiveDateTime,
    pub source: Option<&'a str>,
    pub notice_version: Option<&'a str>,
    /// A staff e-mail, or `customer` for the preference page.
    pub recorded_by: &'a str,
}

/// What recording produced: the stored event and the customer's state for that purpose now.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub event: EventRow,
    pub state: ConsentState,
}

/// Appends an event and its trail entry (`consent.recorded`, subject the customer's
/// pseudonym) in one transaction. An event dated before the latest one for the same customer
/// and purpose is refused, naming `recorded_at`.
pub fn record(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    who: Who<'_>,
    rec: &Recording<'_>,
) -> Result<Recorded, ConsentError> {
    let spec = consent::purpose(policy, rec.purpose).map_err(|message| ConsentError::Invalid {
        field: "purpose",
        message,
    })?;
    let now = crate::db::now();
    consent::check_not_future(rec.recorded_at, now).map_err(|message| ConsentError::Invalid {
        field: "recorded_at",
        message,
    })?;
    let event = db.write(|conn| -> Result<_, ConsentError> {
        let customer = find(conn, who)?;
        let latest = store::latest_recorded_at(conn, customer.id, rec.purpose)?;
        check_order(latest, rec.recorded_at).map_err(|message| ConsentError::Invalid {
            field: "recorded_at",
            message,
        })?;
        let event = store::insert(
            conn,
            &NewEvent {
                customer_id: customer.id,
                purpose: rec.purpose,
                status: rec.status,
                recorded_at: rec.recorded_at,
                source: rec.source,
                notice_version: rec.notice_version,
                recorded_by: rec.recorded_by,
            },
        )?;
        crate::db::consent_state::apply_events_from(conn, event.id)?;
        trail_store::append(
            conn,
            NewEntry::new(
                actor,
                "consent.recorded",
                &customer.pseudonym,
                json!({
                    "purpose": rec.purpose,
                    "status": rec.status.as_str(),
                    "recorded_at": format_instant(rec.recorded_at),
                    "source": rec.source,
                    "notice_version": rec.notice_version,
                }),
            ),
            &policy.version,
        )?;
        Ok(event)
    })?;
    let state = consent::state_of_latest(
        &Event {
            status: rec.status,
            recorded_at: rec.recorded_at,
        },
        now.max(rec.recorded_at),
        validity(spec),
    );
    Ok(Recorded { event, state })
}

/// A customer's state for one purpose of the policy.
#[derive(Debug, Clone)]
pub struct PurposeState {
    pub purpose: String,
    pub description: String,
    pub legal_basis: LegalBasis,
    pub state: ConsentState,
    /// Whether the customer's data may be used for the purpose.
    pub permits: bool,
}

/// A customer's consent history and their state per purpose at an instant.
#[derive(Debug, Clone)]
pub struct CustomerConsents {
    pub pseudonym: String,
    pub events: Vec<EventRow>,
    pub states: Vec<PurposeState>,
}

fn states_of(policy: &Policy, events: &[EventRow], at: NaiveDateTime) -> Vec<PurposeState> {
    policy
        .purposes
        .iter()
        .map(|(name, spec)| {
            let of_purpose: Vec<Event> = events
                .iter()
                .filter(|e| &e.purpose == name)
                .filter_map(EventRow::event)
                .collect();
            let state = state_at(&of_purpose, at, validity(spec));
            PurposeState {
                purpose: name.clone(),
                description: spec.description.clone(),
                legal_basis: spec.legal_basis,
                permits: state.permits(spec.legal_basis),
                state,
            }
        })
        .collect()
}

/// A customer's consents as staff see them: each view is written to the trail
/// (`consent.viewed`, subject the pseudonym), since it shows individual-level data.
pub fn view(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    customer: &CustomerId,
    at: NaiveDateTime,
) -> Result<CustomerConsents, ConsentError> {
    let (customer, events) = db.write(|conn| -> Result<_, ConsentError> {
        let customer = find(conn, Who::External(customer))?;
        let events = store::history(conn, customer.id)?;
        trail_store::append(
            conn,
            NewEntry::new(
                actor,
                "consent.viewed",
                &customer.pseudonym,
                json!({"at": format_instant(at)}),
            ),
            &policy.version,
        )?;
        Ok((customer, events))
    })?;
    Ok(CustomerConsents {
        states: states_of(policy, &events, at),
        pseudonym: customer.pseudonym,
        events,
    })
}

/// A customer's own consents, for their preference page (no staff involved, so no trail
/// entry: recording a withdrawal is what the trail must show).
pub fn own(
    db: &Db,
    policy: &Policy,
    pseudonym: &str,
    at: NaiveDateTime,
) -> Result<CustomerConsents, ConsentError> {
    let found = db.read(|conn| {
        let Some(customer) = lookup(conn, Who::Pseudonym(pseudonym))? else {
            return Ok(None);
        };
        let events = store::history(conn, customer.id)?;
        Ok(Some((customer, events)))
    })?;
    let (customer, events) = found.ok_or(ConsentError::UnknownCustomer)?;
    Ok(CustomerConsents {
        states: states_of(policy, &events, at),
        pseudonym: customer.pseudonym,
        events,
    })
}

/// Issues a preference link for a customer, with a trail entry (`consent.link_issued`).
pub fn issue_link(
    db: &Db,
    policy: &Policy,
    links: &PreferenceLinks,
    actor: &Actor,
    customer: &CustomerId,
    ttl: TimeDelta,
) -> Result<(String, LinkClaims), ConsentError> {
    db.write(|conn| {
        let customer = find(conn, Who::External(customer))?;
        let (token, claims) = links.issue(&customer.pseudonym, Utc::now(), ttl);
        trail_store::append(
            conn,
            NewEntry::new(
                actor,
                "consent.link_issued",
                &customer.pseudonym,
                json!({"link_id": claims.jti, "expires_at": format_instant(claims.expires_at())}),
            ),
            &policy.version,
        )?;
        Ok((token, claims))
    })
}

/// Coverage of one purpose at an instant.
#[derive(Debug, Clone)]
pub struct PurposeCoverage {
    pub purpose: String,
    pub description: String,
    pub legal_basis: LegalBasis,
    pub tally: Tally,
}

/// The counts per purpose of the policy at `at`. Near now (within a day) the consent state
/// answers; further back, the ledger (the same counts, from a different source).
pub fn coverage(
    db: &Db,
    policy: &Policy,
    at: NaiveDateTime,
) -> Result<Vec<PurposeCoverage>, ConsentError> {
    let near_now = at >= crate::db::now() - TimeDelta::days(1);
    Ok(db.read(|conn| {
        policy
            .purposes
            .iter()
            .map(|(name, spec)| {
                Ok(PurposeCoverage {
                    purpose: name.clone(),
                    description: spec.description.clone(),
                    legal_basis: spec.legal_basis,
                    tally: if near_now {
                        current_tally(conn, db, policy, name, at)?
                    } else {
                        store::tally_at(conn, name, spec, at)?
                    },
                })
            })
            .collect::<Result<Vec<_>, DbError>>()
    })?)
}

/// The slot of a purpose's kept counts: the database's URL and the purpose.
type DatabaseAndPurpose = (String, String);

/// A purpose's counts at `at` (near now) from the consent state.
///
/// The home page and the consent page show them on every view, and counting is a walk of the
/// purpose's whole state (about 40 ms at 200,000 customers, 200 ms at a million). The counts
/// change only when the state does (its version), when customers are added (the highest
/// customer id; erasure is the only removal, and it changes the version), or when time
/// passes an instant at which a grant lapses or a future-dated event takes effect
/// ([`changes_after`](crate::db::consent_state::changes_after)). So each process keeps the
/// counts until one of those happens.
fn current_tally(
    conn: &mut DbConnection,
    db: &Db,
    policy: &Policy,
    purpose: &str,
    at: NaiveDateTime,
) -> DbResult<Tally> {
    use crate::db::consent_state as state;
    /// The policy version, the state's version and the highest customer id.
    type Versions = (String, i64, Option<i64>);
    static COUNTED: LazyLock<Kept<DatabaseAndPurpose, Versions, Tally>> =
        LazyLock::new(Kept::default);
    let spec = &policy.purposes[purpose];
    let versions = (
        policy.version.clone(),
        state::version(conn)?,
        store::last_customer_id(conn)?,
    );
    COUNTED.get_or_compute(
        (db.url().to_string(), purpose.to_owned()),
        versions,
        Some(at),
        || {
            let tally = state::tally_at(conn, purpose, spec, at)?;
            let until = state::changes_after(conn, purpose, spec, at)?;
            Ok((tally, Some(Span { from: at, until })))
        },
    )
}

/// The counts per purpose at each of `instants` (ascending).
///
/// The instants are month ends and the last is the moment asked about (usually now). The
/// past ones are counted from the whole ledger (about 10 s at a million customers), so each
/// process keeps them while they hold ([`LedgerPast`]): a consent event recorded now leaves
/// them as they are. The last is counted as [`coverage`] counts it.
pub fn coverage_history(
    db: &Db,
    policy: &Policy,
    instants: &[NaiveDateTime],
) -> Result<Vec<(String, Vec<Tally>)>, ConsentError> {
    let near_now = instants
        .last()
        .is_some_and(|&last| last >= crate::db::now() - TimeDelta::days(1));
    Ok(db.read(|conn| {
        policy
            .purposes
            .iter()
            .map(|(name, spec)| {
                let Some((&last, past)) = instants.split_last() else {
                    return Ok((name.clone(), Vec::new()));
                };
                let mut tallies = past_tallies(conn, db, policy, name, past)?;
                tallies.push(if near_now {
                    current_tally(conn, db, policy, name, last)?
                } else {
                    store::tally_at(conn, name, spec, last)?
                });
                Ok((name.clone(), tallies))
            })
            .collect::<Result<Vec<_>, DbError>>()
    })?)
}

/// A purpose's counts at past `instants`, from the ledger, kept per process (see
/// [`coverage_history`] and [`LedgerPast`]).
fn past_tallies(
    conn: &mut DbConnection,
    db: &Db,
    policy: &Policy,
    purpose: &str,
    instants: &[NaiveDateTime],
) -> DbResult<Vec<Tally>> {
    if instants.is_empty() {
        return Ok(Vec::new());
    }
    static COUNTED: LazyLock<Kept<DatabaseAndPurpose, LedgerPast, Vec<Tally>>> =
        LazyLock::new(Kept::default);
    COUNTED.get_or_compute_checked(
        (db.url().to_string(), purpose.to_owned()),
        None,
        conn,
        |kept, conn| kept.still_holds(conn, policy, instants),
        |conn| {
            let versions = LedgerPast::read(conn, policy, instants)?;
            let tallies = store::tally_history(conn, purpose, &policy.purposes[purpose], instants)?;
            Ok((versions, tallies, None))
        },
    )
}

/// Trail actions after which what the ledger says of past instants, and who is on file with
/// which protected attributes, are unchanged: those that change no customer data, a consent
/// event recorded through the server (one dated in the past is caught by
/// [`LedgerPast::still_holds`] from the ledger itself), and publishing a run.
pub(crate) static LEDGER_PAST_UNAFFECTED_BY: LazyLock<Vec<&str>> = LazyLock::new(|| {
    [
        crate::trail::CUSTOMER_DATA_UNCHANGED_BY,
        &["consent.recorded", "segmentation.published"],
    ]
    .concat()
});

/// What a figure about past instants computed from the ledger and the customers on file rests
/// on. Consent events arrive all the time, and nearly all take effect when they are recorded,
/// after every past instant; so such a figure stays true until a customer is added or
/// changed, the policy changes, or an event is recorded that takes effect at or before the
/// last of its instants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LedgerPast {
    policy_version: String,
    instants: Vec<NaiveDateTime>,
    trail_seq: i64,
    last_event: Option<i64>,
    last_customer: Option<i64>,
}

impl LedgerPast {
    /// The versions now: read before the data a figure is computed from, so that a change
    /// made while it is computed is seen by the next check.
    pub(crate) fn read(
        conn: &mut DbConnection,
        policy: &Policy,
        instants: &[NaiveDateTime],
    ) -> DbResult<LedgerPast> {
        Ok(LedgerPast {
            policy_version: policy.version.clone(),
            instants: instants.to_vec(),
            trail_seq: trail_store::head_seq(conn)?,
            last_event: store::last_event_id(conn)?,
            last_customer: store::last_customer_id(conn)?,
        })
    }

    /// Whether a figure computed at these versions is still what the database says of
    /// `instants`.
    pub(crate) fn still_holds(
        &self,
        conn: &mut DbConnection,
        policy: &Policy,
        instants: &[NaiveDateTime],
    ) -> DbResult<bool> {
        let Some(&last) = instants.last() else {
            return Ok(true);
        };
        Ok(self.policy_version == policy.version
            && self.instants == instants
            && store::last_customer_id(conn)? == self.last_customer
            && !trail_store::any_since_except(conn, self.trail_seq, &LEDGER_PAST_UNAFFECTED_BY)?
            && !store::any_event_since_effective_by(conn, self.last_event, last)?)
    }
}
