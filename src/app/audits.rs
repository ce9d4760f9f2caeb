//! Audits of stored segmentation runs, the override of a failed audit, and the publish gate.
//!
//! This is the one place that reads protected attributes for an audit, and the one place that
//! decides whether a run may be published:
//!
//! - [`audit_run`] loads a run's members, their protected attributes (kept apart in
//!   `customer_protected`), the values of the features the run used (for proxies) and the
//!   `favourable` flags of the run's strategies (for the four-fifths rule), calls
//!   [`fairness::audit`], and stores the (already suppressed) report with a trail entry
//!   `audit.completed`; a draft run becomes audited in the same transaction.
//! - [`override_audit`] records a compliance officer's written justification for publishing
//!   a run whose audit failed or was inconclusive (`audit.overridden`).
//! - [`publish_run`] publishes an audited run whose latest audit passed or warned, or was
//!   overridden, and retires the run published before it (`segmentation.published`). If the
//!   strategies changed since the audit (so its four-fifths result is stale), the run is
//!   audited again first and the gate applies to the fresh audit.
//!
//! What the audit looks at, and how values are cleaned, is in [`fairness::input`]; the gate's
//! rule is [`fairness::gate`].

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use chrono::NaiveDateTime;
use serde::Serialize;

use super::consent::LedgerPast;
use super::kept::{Kept, Span};
use super::parsed::Parsed;
use super::runs::RunOutcome;
use super::side_by_side;
use crate::db::audits::{self as store, AuditHead, AuditRow, OverrideRow};
use crate::db::segmentation::{self as runs, RunHead, RunRow};
use crate::db::{self, Db, DbConnection, DbError};
use crate::fairness::consent_selection::{ConsentSelectionReport, consent_selection};
use crate::fairness::input::{self, Column, Positions, in_sorted, thresholds};
use crate::fairness::{self, AuditInput, AuditReport, FairnessError, ProtectedAttribute, Verdict};
use crate::policy::Policy;
use crate::segmentation::attributes::{AttributeValue, extract, extract_json};
use crate::segmentation::pipeline::{RunFeatures, RunSummary};
use crate::segmentation::settings::{FeatureSource, RunSettings};
use crate::segmentation::status::RunStatus;
use crate::trail::{Actor, NewEntry};

pub use crate::fairness::gate::{Gate, MIN_JUSTIFICATION_CHARS, needs_override, passes_gate};

/// Everything that can stop an audit, an override or a publication.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("run {0} does not exist")]
    RunNotFound(i64),
    #[error("audit {0} does not exist")]
    AuditNotFound(i64),
    #[error("run {id} is {status}: {message}")]
    WrongState {
        id: i64,
        status: String,
        message: &'static str,
    },
    #[error("run {0} has no members to audit")]
    NoMembers(i64),
    #[error(
        "run {run_id} cannot be published: its audit {audit_id} is {verdict} ({reason}); a compliance officer must record an override with a written justification first"
    )]
    Gate {
        run_id: i64,
        audit_id: i64,
        verdict: Verdict,
        reason: String,
    },
    #[error("audit {audit_id} is {verdict}: only a failed or inconclusive audit needs an override")]
    NothingToOverride { audit_id: i64, verdict: Verdict },
    #[error(
        "the justification must say in writing why publishing is acceptable: at least {MIN_JUSTIFICATION_CHARS} characters, got {0}"
    )]
    ShortJustification(usize),
    #[error("stored {what} cannot be read: {message}")]
    Corrupt { what: String, message: String },
    #[error(transparent)]
    Fairness(#[from] FairnessError),
    #[error(transparent)]
    Db(#[from] DbError),
}

type Result<T, E = AuditError> = std::result::Result<T, E>;

/// A stored audit with what the pages and the API show beside it.
#[derive(Debug, Clone)]
pub struct StoredAudit {
    pub row: AuditRow,
    /// Shared with every other view of the same stored report ([`Parsed`]).
    pub report: Arc<AuditReport>,
    pub overrides: Vec<OverrideRow>,
    /// The run's strategies changed since the audit: its four-fifths result is stale.
    pub stale_strategies: bool,
    pub run: RunHead,
    /// Segment names by segment number.
    pub segment_names: BTreeMap<i32, String>,
}

impl StoredAudit {
    /// Where the run stands at the publish gate with this audit.
    pub fn gate(&self) -> Gate {
        Gate::decide(self.report.verdict, !self.overrides.is_empty())
    }

    /// The audit as CSV, one figure per line.
    pub fn csv(&self) -> String {
        fairness::export::csv(&fairness::export::Audit {
            id: self.row.id,
            run_id: self.row.run_id,
            policy_version: &self.row.policy_version,
            report: &self.report,
            stale_strategies: self.stale_strategies,
            overrides: self
                .overrides
                .iter()
                .map(|o| fairness::export::Override {
                    by: &o.overridden_by,
                    at: o.overridden_at,
                    justification: &o.justification,
                })
                .collect(),
        })
    }
}

/// An audit just made and stored.
#[derive(Debug, Clone)]
pub struct Audited {
    pub id: i64,
    pub run_id: i64,
    pub verdict: Verdict,
    pub reason: String,
    pub report: AuditReport,
}

/// One audit in the history, without its report.
#[derive(Debug, Clone)]
pub struct Listed {
    pub head: AuditHead,
    pub verdict: Verdict,
    pub overridden: bool,
}

/// The favourable segments of a run's strategies, as stored with an audit.
fn favourable_fingerprint(conn: &mut DbConnection, run_id: i64) -> db::DbResult<String> {
    Ok(input::favourable_fingerprint(&favourable(conn, run_id)?))
}

fn favourable(conn: &mut DbConnection, run_id: i64) -> db::DbResult<Vec<i32>> {
    Ok(runs::strategies(conn, run_id)?
        .into_iter()
        .filter(|s| s.favourable)
        .map(|s| s.segment)
        .collect())
}

/// Reads a run and everything its audit looks at, and builds the audit's input.
pub fn load_input(conn: &mut DbConnection, policy: &Policy, run: &RunRow) -> Result<AuditInput> {
    load_input_with(conn, policy, run, None)
}

/// [`load_input`], taking the feature values from `known` (those the run itself read, when the
/// audit follows the run in the same process) if they are the run's features for exactly its
/// stored members; otherwise they are read from storage.
pub fn load_input_with(
    conn: &mut DbConnection,
    policy: &Policy,
    run: &RunRow,
    known: Option<&RunFeatures>,
) -> Result<AuditInput> {
    let members = runs::memberships(conn, run.id)?;
    if members.is_empty() {
        return Err(AuditError::NoMembers(run.id));
    }
    let ids: Vec<i64> = members.iter().map(|&(id, _)| id).collect();
    let protected = protected_columns(conn, policy, &ids)?;
    build_input(conn, policy, run, known, &members, &ids, protected)
}

/// The audit's input from the run's `members` (with their `ids`) and their `protected`
/// attribute columns, already read.
fn build_input(
    conn: &mut DbConnection,
    policy: &Policy,
    run: &RunRow,
    known: Option<&RunFeatures>,
    members: &[(i64, i32)],
    ids: &[i64],
    protected: ProtectedColumns<'_>,
) -> Result<AuditInput> {
    let corrupt = |what: &str, e: serde_json::Error| AuditError::Corrupt {
        what: format!("{what} of run {}", run.id),
        message: e.to_string(),
    };
    let settings: RunSettings =
        serde_json::from_str(&run.settings).map_err(|e| corrupt("settings", e))?;
    let n = members.len();
    let positions = Positions::new(ids);

    let favourable = favourable(conn, run.id)?;
    let run_segments: Vec<i32> = runs::segments(conn, run.id)?
        .iter()
        .map(|s| s.segment)
        .collect();
    let segments = input::segments(&run_segments, members, &favourable);
    let membership = members.iter().map(|&(_, s)| s as u32).collect();

    let (attributes, categorical) = input::protected_attributes(policy, protected)?;
    let intersections = input::intersections(&categorical);

    // The features the run used, for proxies. Proxies are associations with protected
    // attributes: without any, there is nothing to load the features for.
    let mut columns = input::feature_columns(&settings);
    if attributes.is_empty() {
        columns.clear();
    }
    // The attribute features the run itself read are taken from it, not read again.
    let known = known.filter(|k| input::known_fits(k, ids, &columns));
    let from_known: Vec<bool> = settings
        .features
        .iter()
        .map(|f| known.is_some() && f.source == FeatureSource::Attribute)
        .collect();
    for ((_, column), &taken) in columns.iter_mut().zip(&from_known) {
        if !taken {
            column.allocate(n);
        }
    }
    if settings.needs_behaviour() && !columns.is_empty() {
        let as_of = match run.summary.as_deref() {
            Some(s) => {
                serde_json::from_str::<RunSummary>(s)
                    .map_err(|e| corrupt("summary", e))?
                    .as_of
            }
            None => settings.as_of.unwrap_or_else(|| db::now().date()),
        };
        let behavioural = input::features_from(&settings, FeatureSource::Behavioural);
        for (id, features, _) in
            db::features::activity_for_all(conn, as_of, policy.segmentation.valuation_window_days)?
        {
            let Some(i) = positions.at(id) else { continue };
            for &c in &behavioural {
                let (name, column) = &mut columns[c];
                column.set_number(i, features.get(name));
            }
        }
    }
    let attribute_features = input::features_from(&settings, FeatureSource::Attribute);
    if !attribute_features.is_empty() && known.is_none() && !columns.is_empty() {
        let names: Vec<String> = attribute_features
            .iter()
            .map(|&c| columns[c].0.clone())
            .collect();
        let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut values = vec![AttributeValue::Missing; wanted.len()];
        runs::for_each_attributes(conn, |id, json| {
            let Some(i) = positions.at(id) else { return };
            if extract(json, &wanted, &mut values).is_err() {
                return;
            }
            for (&c, value) in attribute_features.iter().zip(values.iter_mut()) {
                columns[c].1.set_attribute(i, std::mem::take(value));
            }
        })?;
    }
    let mut features = Vec::with_capacity(columns.len());
    for (i, (name, column)) in columns.into_iter().enumerate() {
        features.extend(match known {
            Some(k) if from_known[i] => {
                input::known_feature(name, &k.columns[i].1, settings.missing)?
            }
            _ => input::feature(name, column, settings.missing)?,
        });
    }
    Ok(AuditInput {
        segments,
        membership,
        attributes,
        intersections,
        features,
    })
}

/// One column of values per protected attribute of the policy, by name.
type ProtectedColumns<'p> = Vec<(&'p str, Column)>;

/// The policy's protected attributes of the customers `ids` (ascending), one column per
/// attribute in the order of `ids` (see [`input::protected_attributes`] for the audit groups).
/// This is the only reader of protected attributes.
fn protected_columns<'p>(
    conn: &mut DbConnection,
    policy: &'p Policy,
    ids: &[i64],
) -> Result<ProtectedColumns<'p>> {
    let n = ids.len();
    let positions = Positions::new(ids);
    let mut protected: Vec<(&str, Column)> = policy
        .protected_attributes
        .iter()
        .map(|(name, spec)| (name.as_str(), Column::for_attribute(spec.kind)))
        .collect();
    let protected_names: Vec<&str> = protected.iter().map(|(name, _)| *name).collect();
    // Rows come in storage order; each goes to its customer's position, and the customer
    // reported for unreadable attributes is the first by id, whatever the order.
    let names = &protected_names;
    let (read, (protected, parse_error)) = side_by_side::read_and_parse(
        |push| {
            store::for_each_protected(conn, |id, json| {
                if let Some(i) = positions.at(id) {
                    push((i as u32, id, json));
                }
            })
        },
        move |rows| {
            let mut parse_error: Option<(i64, serde_json::Error)> = None;
            let mut values = vec![serde_json::Value::Null; names.len()];
            for (i, id, json) in rows {
                match extract_json(&json, names, &mut values) {
                    Ok(()) => {
                        for ((_, column), value) in protected.iter_mut().zip(&values) {
                            // An absent name and a null read alike: no value.
                            if !value.is_null() {
                                column.set(i as usize, n, value);
                            }
                        }
                    }
                    Err(e) => {
                        if parse_error.as_ref().is_none_or(|(first, _)| id < *first) {
                            parse_error = Some((id, e));
                        }
                    }
                }
            }
            (protected, parse_error)
        },
    );
    read?;
    if let Some((id, e)) = parse_error {
        return Err(AuditError::Corrupt {
            what: format!("protected attributes of customer {id}"),
            message: e.to_string(),
        });
    }
    Ok(protected)
}

/// The policy's protected attributes of the customers `ids` (ascending), as audit groups
/// (numeric ones banded), leaving out attributes nobody has; with the names of the categorical
/// ones.
fn protected_attributes(
    conn: &mut DbConnection,
    policy: &Policy,
    ids: &[i64],
) -> Result<(Vec<ProtectedAttribute>, Vec<String>)> {
    let protected = protected_columns(conn, policy, ids)?;
    Ok(input::protected_attributes(policy, protected)?)
}

/// Trail actions that change neither which customers are on file nor their protected
/// attributes: an entry of one of these made after a [`ProtectedSnapshot`] leaves it current.
/// Every other action does not (see [`crate::trail::CUSTOMER_DATA_UNCHANGED_BY`]); publishing
/// a run changes no customer either. (Every use case that changes customers appends to the
/// trail in its transaction.)
static PROTECTED_UNAFFECTED_BY: LazyLock<Vec<&str>> = LazyLock::new(|| {
    [
        crate::trail::CUSTOMER_DATA_UNCHANGED_BY,
        &["segmentation.published"],
    ]
    .concat()
});

/// Every customer on file and their protected attributes, read in one snapshot while a run
/// executes (beside its preprocessing and clustering), for the consent-selection test of the
/// audit that follows it. The audit takes it only if no change to customers was recorded in
/// the trail since (see [`PROTECTED_UNAFFECTED_BY`]): then it is what the audit would read
/// itself, and otherwise the audit reads again.
#[derive(Debug, Clone)]
pub struct ProtectedSnapshot {
    /// The trail's head when it was read.
    trail_seq: i64,
    /// Every customer on file, ascending.
    all: Vec<i64>,
    /// One column per protected attribute of the policy, in the order of `all`.
    columns: Vec<(String, Column)>,
}

impl ProtectedSnapshot {
    /// Reads every customer's protected attributes in one snapshot; `None` when the policy's
    /// consent-selection test is off (the audit then reads its members' attributes only).
    pub fn read(db: &Db, policy: &Policy) -> Result<Option<ProtectedSnapshot>> {
        if !policy.consent_selection.enabled {
            return Ok(None);
        }
        db.snapshot(|conn| {
            let trail_seq = db::trail::head_seq(conn)?;
            let all = db::consent::customer_ids(conn)?;
            let columns = protected_columns(conn, policy, &all)?
                .into_iter()
                .map(|(name, column)| (name.to_owned(), column))
                .collect();
            Ok(Some(ProtectedSnapshot {
                trail_seq,
                all,
                columns,
            }))
        })
    }

    /// Whether nothing recorded since the snapshot changed what it holds.
    fn current(&self, conn: &mut DbConnection) -> db::DbResult<bool> {
        Ok(db::trail::last_seq_except(conn, &PROTECTED_UNAFFECTED_BY)? <= self.trail_seq)
    }

    /// The columns as [`protected_columns`] returns them, named by the policy.
    fn columns<'p>(&self, policy: &'p Policy) -> Option<ProtectedColumns<'p>> {
        let columns: ProtectedColumns<'p> = policy
            .protected_attributes
            .keys()
            .zip(&self.columns)
            .map(|(name, (read, column))| (name == read).then(|| (name.as_str(), column.clone())))
            .collect::<Option<_>>()?;
        (columns.len() == self.columns.len()).then_some(columns)
    }
}

/// The protected attributes of a run's members `ids` (ascending) and the run's
/// consent-selection bias: its members (the consented population at its start) against every
/// customer on file, on each protected attribute (`None` when the policy switches the test
/// off). Every customer's protected attributes are read once and serve both.
fn members_and_selection<'p>(
    conn: &mut DbConnection,
    policy: &'p Policy,
    ids: &[i64],
    snapshot: Option<&ProtectedSnapshot>,
) -> Result<(ProtectedColumns<'p>, Option<ConsentSelectionReport>)> {
    if !policy.consent_selection.enabled {
        return Ok((protected_columns(conn, policy, ids)?, None));
    }
    let snapshot = match snapshot {
        Some(s) if s.current(conn)? => s.columns(policy).map(|columns| (&s.all, columns)),
        _ => None,
    };
    let read;
    let (all, everyone) = match snapshot {
        Some(taken) => taken,
        None => {
            read = db::consent::customer_ids(conn)?;
            let everyone = protected_columns(conn, policy, &read)?;
            (&read, everyone)
        }
    };
    // A member erased since the run is no longer on file: no protected values, as when they
    // are read for the members alone.
    let on_file = Positions::new(all);
    let at: Vec<Option<usize>> = ids.iter().map(|&id| on_file.at(id)).collect();
    let of_members = everyone
        .iter()
        .map(|(name, column)| (*name, column.pick(&at)))
        .collect();
    let (attributes, _) = input::protected_attributes(policy, everyone)?;
    let consented = in_sorted(all, ids);
    let selection = consent_selection(&consented, &attributes, &thresholds(policy))?;
    Ok((of_members, Some(selection)))
}

/// Consent-selection bias at each of `instants`: the customers whose consent for the
/// segmentation purpose is active at the instant against all customers on file now. Empty when
/// the policy switches the test off.
///
/// The consent page asks for twelve month ends and now on every view, and counting reads
/// every customer's protected attributes and the ledger at each instant (seconds at a
/// million customers). So each process keeps the pieces while they hold: the customers on
/// file with their protected attributes until a customer is added or changed; the month ends
/// until then too, or until an event is recorded that takes effect before the last of them
/// ([`LedgerPast`]); the last instant (now) until the consent state changes or time passes
/// the next instant at which the active set can (a lapse or a future-dated event). A consent
/// event recorded now costs only the last.
pub fn consent_selection_history(
    db: &Db,
    policy: &Policy,
    instants: &[NaiveDateTime],
) -> Result<Vec<ConsentSelectionReport>> {
    if !policy.consent_selection.enabled {
        return Ok(Vec::new());
    }
    let purpose = &policy.segmentation.purpose;
    let Some(spec) = policy.purposes.get(purpose) else {
        return Ok(Vec::new());
    };
    let Some((&last, past)) = instants.split_last() else {
        return Ok(Vec::new());
    };
    let mut conn = db.conn()?;
    let conn = &mut *conn;
    let on_file = customers_on_file(conn, db, policy)?;
    if on_file.ids.is_empty() {
        return Ok(Vec::new());
    }
    let t = thresholds(policy);
    let selection = |active: &[i64]| {
        consent_selection(&in_sorted(&on_file.ids, active), &on_file.attributes, &t)
    };

    type PastSlot = String;
    static PAST: LazyLock<Kept<PastSlot, LedgerPast, Vec<ConsentSelectionReport>>> =
        LazyLock::new(Kept::default);
    let mut reports = if past.is_empty() {
        Vec::new()
    } else {
        PAST.get_or_compute_checked(
            db.url().to_string(),
            None,
            conn,
            |kept, conn| Ok(kept.still_holds(conn, policy, past)?),
            |conn| {
                let versions = LedgerPast::read(conn, policy, past)?;
                let reports = db::consent::active_history(conn, purpose, spec, past)?
                    .iter()
                    .map(|active| selection(active))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok::<_, AuditError>((versions, reports, None))
            },
        )?
    };

    /// The policy, the consent state's version, and the trail head and highest customer id
    /// the customers on file were read at.
    type NowVersions = (String, i64, i64, Option<i64>);
    static NOW: LazyLock<Kept<String, NowVersions, ConsentSelectionReport>> =
        LazyLock::new(Kept::default);
    reports.push(NOW.get_or_compute(
        db.url().to_string(),
        (
            policy.version.clone(),
            db::consent_state::version(conn)?,
            on_file.trail_seq,
            on_file.last_customer,
        ),
        Some(last),
        || {
            let until = db::consent_state::changes_after(conn, purpose, spec, last)?;
            let active = db::consent_state::active_customers(conn, purpose, spec, last)?;
            Ok::<_, AuditError>((selection(&active)?, Some(Span { from: last, until })))
        },
    )?);
    Ok(reports)
}

/// Every customer on file (ascending) with the policy's protected attributes, and the
/// versions they were read at.
struct OnFile {
    ids: Vec<i64>,
    attributes: Vec<ProtectedAttribute>,
    trail_seq: i64,
    last_customer: Option<i64>,
}

/// [`OnFile`] now, kept per process until a customer is added or changed or the policy
/// changes (at a million customers reading it takes about a second).
fn customers_on_file(conn: &mut DbConnection, db: &Db, policy: &Policy) -> Result<Arc<OnFile>> {
    /// The policy, the trail head and the highest customer id when they were read.
    type Versions = (String, i64, Option<i64>);
    static ON_FILE: LazyLock<Kept<String, Versions, Arc<OnFile>>> = LazyLock::new(Kept::default);
    ON_FILE.get_or_compute_checked(
        db.url().to_string(),
        None,
        conn,
        |(policy_version, trail_seq, last_customer), conn| {
            Ok(*policy_version == policy.version
                && db::consent::last_customer_id(conn)? == *last_customer
                && !db::trail::any_since_except(
                    conn,
                    *trail_seq,
                    &super::consent::LEDGER_PAST_UNAFFECTED_BY,
                )?)
        },
        |conn| {
            let trail_seq = db::trail::head_seq(conn)?;
            let last_customer = db::consent::last_customer_id(conn)?;
            let ids = db::consent::customer_ids(conn)?;
            let attributes = if ids.is_empty() {
                Vec::new()
            } else {
                protected_attributes(conn, policy, &ids)?.0
            };
            let on_file = OnFile {
                ids,
                attributes,
                trail_seq,
                last_customer,
            };
            Ok::<_, AuditError>((
                (policy.version.clone(), trail_seq, last_customer),
                Arc::new(on_file),
                None,
            ))
        },
    )
}

/// Audits a run and stores the report; a draft run becomes audited. Runs that are audited,
/// published or retired can be audited again (after strategies changed, or under a new
/// policy); their status does not change.
#[tracing::instrument(skip(db, policy))]
pub fn audit_run(db: &Db, policy: &Policy, actor: &Actor, run_id: i64) -> Result<Audited> {
    audit_run_with(db, policy, actor, run_id, None)
}

/// [`audit_run`] right after the run executed in this process, with the feature values it
/// read (see [`load_input_with`]): the same report, without reading every member's attributes
/// again.
#[tracing::instrument(skip(db, policy, known))]
pub fn audit_run_with(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    run_id: i64,
    known: Option<&RunFeatures>,
) -> Result<Audited> {
    audit_run_beside(db, policy, actor, run_id, known, None)
}

/// The audit that follows a run just executed in this process: [`audit_run_with`] its
/// feature values, taking the protected attributes the run read beside its work
/// ([`ProtectedSnapshot`]) when nothing changed them since. The same report, sooner.
#[tracing::instrument(skip(db, policy, outcome), fields(run_id = outcome.run_id))]
pub fn audit_after_run(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    outcome: &RunOutcome,
) -> Result<Audited> {
    audit_run_beside(
        db,
        policy,
        actor,
        outcome.run_id,
        Some(&outcome.features),
        outcome.protected.as_ref(),
    )
}

fn audit_run_beside(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    run_id: i64,
    known: Option<&RunFeatures>,
    snapshot: Option<&ProtectedSnapshot>,
) -> Result<Audited> {
    let started = Instant::now();
    let run = db
        .read(|conn| runs::run(conn, run_id))?
        .ok_or(AuditError::RunNotFound(run_id))?;
    check_auditable(&run)?;
    let (input, strategies, selection) = {
        let mut conn = db.conn()?;
        // The members and their protected attributes are read once, for the audit and the
        // consent-selection test alike. Right after the run, its members are those it
        // stored unless some were removed since (an erasure, retention), which the trail
        // records: with no change to customer data recorded after the run's completion, they
        // are the members it holds (counting a million memberships again cost PostgreSQL
        // 100 ms, the rows just written not yet marked visible to all).
        let members = match known {
            Some(k)
                if k.run_id == run_id
                    && k.segments.len() == k.ids.len()
                    && !db::trail::any_since_except(
                        &mut conn,
                        k.stored_at_seq,
                        crate::trail::CUSTOMER_DATA_UNCHANGED_BY,
                    )? =>
            {
                k.ids
                    .iter()
                    .copied()
                    .zip(k.segments.iter().copied())
                    .collect()
            }
            _ => runs::memberships(&mut conn, run_id)?,
        };
        if members.is_empty() {
            return Err(AuditError::NoMembers(run_id));
        }
        let ids: Vec<i64> = members.iter().map(|&(id, _)| id).collect();
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "audit: members");
        let (protected, selection) = members_and_selection(&mut conn, policy, &ids, snapshot)?;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "audit: selection"
        );
        let input = build_input(&mut conn, policy, &run, known, &members, &ids, protected)?;
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "audit: input");
        let strategies = favourable_fingerprint(&mut conn, run_id)?;
        (input, strategies, selection)
    };
    let mut report = fairness::audit(&input, &thresholds(policy))?;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "audit: computed");
    report.consent_selection = selection;
    drop(input);
    let report_json = serde_json::to_string(&report).expect("reports serialise");
    let now = db::now();
    let duration_ms = started.elapsed().as_millis() as i64;
    let id = db.write(|conn| {
        // The run may have moved on while the audit computed (e.g. failed or been published).
        let current = runs::run(conn, run_id)?.ok_or(AuditError::RunNotFound(run_id))?;
        check_auditable(&current)?;
        let row = AuditRow {
            id: store::next_audit_id(conn)?,
            run_id,
            policy_version: policy.version.clone(),
            verdict: report.verdict.to_string(),
            reason: report.reason.clone(),
            members: report.members as i64,
            strategies,
            report: report_json,
            created_by: actor.as_str().to_owned(),
            created_at: now,
            duration_ms,
        };
        store::insert(conn, &row)?;
        if current.status == RunStatus::Draft {
            runs::set_status(conn, run_id, RunStatus::Audited)?;
        }
        db::trail::append(
            conn,
            NewEntry::new(
                actor,
                "audit.completed",
                format!("run:{run_id}"),
                serde_json::json!({
                    "audit_id": row.id,
                    "verdict": row.verdict,
                    "reason": row.reason,
                    "members": row.members,
                    "policy_version": row.policy_version,
                }),
            ),
            &policy.version,
        )?;
        Ok::<_, AuditError>(row.id)
    })?;
    Ok(Audited {
        id,
        run_id,
        verdict: report.verdict,
        reason: report.reason.clone(),
        report,
    })
}

fn check_auditable(run: &RunRow) -> Result<(), AuditError> {
    match run.status {
        status if status.has_segments() => Ok(()),
        _ => Err(AuditError::WrongState {
            id: run.id,
            status: run.status.to_string(),
            message: "only a finished run can be audited",
        }),
    }
}

/// The stored audit of a run, auditing it first if it has none.
pub fn audit_of_run(db: &Db, policy: &Policy, actor: &Actor, run_id: i64) -> Result<StoredAudit> {
    let existing = db.read(|conn| store::latest_head_of_run(conn, run_id))?;
    let id = match existing {
        Some(row) => row.id,
        None => audit_run(db, policy, actor, run_id)?.id,
    };
    load(db, id)
}

/// A stored audit with its overrides, its run and whether its four-fifths result is stale.
pub fn load(db: &Db, audit_id: i64) -> Result<StoredAudit> {
    let (row, overrides, run, segments, favourable) = db
        .read(|conn| {
            let Some(row) = store::find(conn, audit_id)? else {
                return Ok(None);
            };
            let overrides = store::overrides(conn, audit_id)?;
            let run = runs::run_head(conn, row.run_id)?;
            let segments = runs::segment_names(conn, row.run_id)?;
            let favourable = favourable(conn, row.run_id)?;
            Ok(Some((row, overrides, run, segments, favourable)))
        })?
        .ok_or(AuditError::AuditNotFound(audit_id))?;
    let run = run.ok_or(AuditError::RunNotFound(row.run_id))?;
    static REPORTS: LazyLock<Parsed<AuditReport>> = LazyLock::new(Parsed::default);
    let report = REPORTS.of(&row.report).map_err(|e| AuditError::Corrupt {
        what: format!("report of audit {audit_id}"),
        message: e.to_string(),
    })?;
    Ok(StoredAudit {
        stale_strategies: input::favourable_fingerprint(&favourable) != row.strategies,
        overrides,
        run,
        segment_names: segments.into_iter().collect(),
        report,
        row,
    })
}

/// The audit of the run before this one (the run's `previous_run_id`, else the newest earlier
/// audited run), for a side-by-side comparison.
pub fn previous(db: &Db, audit: &StoredAudit) -> Result<Option<StoredAudit>> {
    let id = db
        .read(|conn| store::previous_audit_id(conn, audit.row.run_id, audit.run.previous_run_id))?;
    id.map(|id| load(db, id)).transpose()
}

/// An audit and the audit of the run before it (see [`previous`]).
pub fn with_previous(db: &Db, audit_id: i64) -> Result<(StoredAudit, Option<StoredAudit>)> {
    let current = load(db, audit_id)?;
    let previous = previous(db, &current)?;
    Ok((current, previous))
}

/// The newest `limit` audits, newest first, and whether each was overridden.
pub fn history(db: &Db, limit: i64) -> Result<Vec<Listed>> {
    let (heads, overridden) =
        db.read(|c| Ok((store::list(c, limit)?, store::overridden_ids(c)?)))?;
    heads
        .into_iter()
        .map(|head| {
            Ok(Listed {
                verdict: parse_verdict(head.id, &head.verdict)?,
                overridden: overridden.contains(&head.id),
                head,
            })
        })
        .collect()
}

/// The id of a run's newest audit.
pub fn latest_of_run(db: &Db, run_id: i64) -> Result<Option<i64>> {
    Ok(db
        .read(|c| store::latest_head_of_run(c, run_id))?
        .map(|a| a.id))
}

fn verdict_of(row: &AuditRow) -> Result<Verdict> {
    parse_verdict(row.id, &row.verdict)
}

fn parse_verdict(audit_id: i64, stored: &str) -> Result<Verdict> {
    stored.parse().map_err(|message| AuditError::Corrupt {
        what: format!("verdict of audit {audit_id}"),
        message,
    })
}

/// Records a compliance officer's override of a failed or inconclusive audit. The caller has
/// checked the `audits:override` permission.
pub fn override_audit(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    audit_id: i64,
    justification: &str,
) -> Result<OverrideRow> {
    let justification =
        fairness::gate::justification(justification).map_err(AuditError::ShortJustification)?;
    let now = db::now();
    db.write(|conn| {
        let audit = store::find(conn, audit_id)?.ok_or(AuditError::AuditNotFound(audit_id))?;
        let verdict = verdict_of(&audit)?;
        if passes_gate(verdict) {
            return Err(AuditError::NothingToOverride { audit_id, verdict });
        }
        let row = OverrideRow {
            id: store::next_override_id(conn)?,
            audit_id,
            overridden_by: actor.as_str().to_owned(),
            justification: justification.to_owned(),
            overridden_at: now,
        };
        store::insert_override(conn, &row)?;
        db::trail::append(
            conn,
            NewEntry::new(
                actor,
                "audit.overridden",
                format!("run:{}", audit.run_id),
                serde_json::json!({
                    "audit_id": audit_id,
                    "override_id": row.id,
                    "verdict": audit.verdict,
                    "justification": row.justification,
                }),
            ),
            &policy.version,
        )?;
        Ok(row)
    })
}

/// What a publication did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Published {
    pub run_id: i64,
    pub audit_id: i64,
    #[schema(value_type = String)]
    pub verdict: Verdict,
    /// The override that allowed publishing a failed or inconclusive audit.
    pub override_id: Option<i64>,
    /// The run that was published before and is now retired.
    pub retired_run_id: Option<i64>,
    #[schema(value_type = String)]
    pub published_at: NaiveDateTime,
    /// The run was audited again first, because its strategies changed after the audit.
    pub reaudited: bool,
}

/// Publishes an audited run through the gate (see the module documentation).
pub fn publish_run(db: &Db, policy: &Policy, actor: &Actor, run_id: i64) -> Result<Published> {
    let run = db
        .read(|conn| runs::run(conn, run_id))?
        .ok_or(AuditError::RunNotFound(run_id))?;
    check_publishable(&run)?;
    let latest = db.read(|conn| store::latest_of_run(conn, run_id))?;
    let mut reaudited = false;
    match latest {
        Some(row) => {
            let current = db.read(|conn| favourable_fingerprint(conn, run_id))?;
            if current != row.strategies {
                audit_run(db, policy, actor, run_id)?;
                reaudited = true;
            }
        }
        None => {
            audit_run(db, policy, actor, run_id)?;
            reaudited = true;
        }
    }
    let now = db::now();
    db.write(|conn| {
        let run = runs::run(conn, run_id)?.ok_or(AuditError::RunNotFound(run_id))?;
        check_publishable(&run)?;
        let Some(audit) = store::latest_of_run(conn, run_id)? else {
            return Err(AuditError::WrongState {
                id: run_id,
                status: run.status.to_string(),
                message: "it has no audit",
            });
        };
        let verdict = verdict_of(&audit)?;
        let override_id = store::overrides(conn, audit.id)?.last().map(|o| o.id);
        if !Gate::decide(verdict, override_id.is_some()).publishable() {
            return Err(AuditError::Gate {
                run_id,
                audit_id: audit.id,
                verdict,
                reason: audit.reason,
            });
        }
        let retired = runs::publish(conn, run_id, actor.as_str(), now)?;
        db::trail::append(
            conn,
            NewEntry::new(
                actor,
                "segmentation.published",
                format!("run:{run_id}"),
                serde_json::json!({
                    "audit_id": audit.id,
                    "verdict": audit.verdict,
                    "override_id": override_id,
                    "retired_run_id": retired,
                }),
            ),
            &policy.version,
        )?;
        Ok(Published {
            run_id,
            audit_id: audit.id,
            verdict,
            override_id,
            retired_run_id: retired,
            published_at: now,
            reaudited,
        })
    })
}

fn check_publishable(run: &RunRow) -> Result<(), AuditError> {
    match run.status {
        RunStatus::Audited => Ok(()),
        RunStatus::Draft => Err(AuditError::WrongState {
            id: run.id,
            status: run.status.to_string(),
            message: "a run must be audited before it is published",
        }),
        RunStatus::Published => Err(AuditError::WrongState {
            id: run.id,
            status: run.status.to_string(),
            message: "it is already published",
        }),
        _ => Err(AuditError::WrongState {
            id: run.id,
            status: run.status.to_string(),
            message: "only an audited run can be published",
        }),
    }
}
