//! Audits of stored segmentation runs, the override of a failed audit, and the publish gate.
//!
//! This is the one place that reads protected attributes for an audit, and the one place that
//! decides whether a run may be published:
//!
//! - [`audit_run`] loads a run's members, their protected attributes (kept apart in
//!   `customer_protected`), the values of the features the run used (for proxies) and the
//!   `favourable` flags of the run's strategies (for the four-fifths rule), calls [`audit`],
//!   and stores the (already suppressed) report with a trail entry `audit.completed`; a draft
//!   run becomes audited in the same transaction.
//! - [`override_audit`] records a compliance officer's written justification for publishing
//!   a run whose audit failed or was inconclusive (`audit.overridden`).
//! - [`publish_run`] publishes an audited run whose latest audit passed or warned, or was
//!   overridden, and retires the run published before it (`segmentation.published`). If the
//!   strategies changed since the audit (so its four-fifths result is stale), the run is
//!   audited again first and the gate applies to the fresh audit.
//!
//! **Which attributes and intersections are audited.** Every protected attribute of the policy
//! that at least one member has a value for (numeric ones in the policy's bands; members
//! without a value form the reported group "(missing)"), and the intersection of every pair of
//! categorical protected attributes present (e.g. sex × ethnicity). Banded attributes are left
//! out of intersections: bands × categories give many small cells that suppression would hide
//! anyway.
//!
//! **Feature values for proxies.** Numeric features a member has no value for are imputed with
//! the members' mean (so they add nothing to η); categorical ones form a "(missing)" category.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::NaiveDateTime;
use serde::Serialize;

use super::consent_selection::{ConsentSelectionReport, consent_selection};
use super::{
    AuditInput, AuditReport, Bands, FairnessError, FairnessThresholds, Feature, FeatureValues,
    GroupColumn, ProtectedAttribute, Segment, Verdict, audit,
};
use crate::db::audits::{self as store, AuditRow, OverrideRow};
use crate::db::segmentation::{self as runs, RunRow};
use crate::db::{self, Db, DbConnection, DbError};
use crate::policy::{AttributeKind, Policy};
use crate::segmentation::attributes::{AttributeValue, extract, extract_json};
use crate::segmentation::pipeline::{RunFeatures, RunSummary};
use crate::segmentation::preprocess::ColumnValues;
use crate::segmentation::settings::{FeatureSource, RunSettings};
use crate::segmentation::status::RunStatus;
use crate::trail::{Actor, NewEntry};

/// The shortest justification an override accepts, in characters.
pub const MIN_JUSTIFICATION_CHARS: usize = 20;

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

/// A stored audit with what the pages and the API show beside it.
#[derive(Debug, Clone)]
pub struct StoredAudit {
    pub row: AuditRow,
    pub report: AuditReport,
    pub overrides: Vec<OverrideRow>,
    /// The run's strategies changed since the audit: its four-fifths result is stale.
    pub stale_strategies: bool,
    pub run: RunRow,
    /// Segment names by segment number.
    pub segment_names: BTreeMap<i32, String>,
}

/// The policy's fairness settings as audit thresholds.
pub fn thresholds(policy: &Policy) -> FairnessThresholds {
    let f = &policy.fairness;
    FairnessThresholds {
        alpha: f.significance_level,
        cramers_v_warn: f.effect_size_warn,
        cramers_v_fail: f.effect_size_fail,
        four_fifths_ratio: f.four_fifths_ratio,
        min_cell_size: u64::from(f.min_cell_size),
        proxy_limit: f.proxy_limit,
        monte_carlo_samples: f.monte_carlo_samples as usize,
        confidence_level: 0.95,
        seed: f.seed,
    }
}

/// The favourable segments of a run's strategies, as stored with an audit.
fn favourable_fingerprint(conn: &mut DbConnection, run_id: i64) -> db::DbResult<String> {
    let favourable: Vec<i32> = runs::strategies(conn, run_id)?
        .into_iter()
        .filter(|s| s.favourable)
        .map(|s| s.segment)
        .collect();
    Ok(serde_json::to_string(&favourable).expect("integers serialise"))
}

fn label_of(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number_of(value: &serde_json::Value) -> Option<f64> {
    match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|x| x.is_finite())
}

/// A column of values per member, built by position.
enum Column {
    Labels(Vec<Option<String>>),
    Numbers(Vec<Option<f64>>),
}

impl Column {
    /// Sets member `i` of `n`; a column stays unallocated until its first value, so the
    /// policy's protected attributes that no customer has cost nothing.
    fn set(&mut self, i: usize, n: usize, value: &serde_json::Value) {
        match self {
            Column::Labels(v) => {
                if let Some(label) = label_of(value) {
                    v.resize(n, None);
                    v[i] = Some(label);
                } else if !v.is_empty() {
                    v[i] = None;
                }
            }
            Column::Numbers(v) => {
                if let Some(x) = number_of(value) {
                    v.resize(n, None);
                    v[i] = Some(x);
                } else if !v.is_empty() {
                    v[i] = None;
                }
            }
        }
    }

    fn set_attribute(&mut self, i: usize, value: AttributeValue) {
        match self {
            Column::Labels(v) => {
                v[i] = value.into_label().filter(|s| !s.trim().is_empty());
            }
            Column::Numbers(v) => v[i] = value.number().filter(|x| x.is_finite()),
        }
    }

    fn present(&self) -> bool {
        match self {
            Column::Labels(v) => v.iter().any(Option::is_some),
            Column::Numbers(v) => v.iter().any(Option::is_some),
        }
    }
}

/// Position of each customer id among the members (ascending ids), `u32::MAX` if not a member.
fn positions(ids: &[i64]) -> Vec<u32> {
    let max = ids.iter().copied().max().unwrap_or(0).max(0) as usize;
    let mut position = vec![u32::MAX; max + 1];
    for (i, &id) in ids.iter().enumerate() {
        if id >= 0 {
            position[id as usize] = i as u32;
        }
    }
    position
}

/// Reads a run and everything its audit looks at, and builds the audit's input.
pub fn load_input(
    conn: &mut DbConnection,
    policy: &Policy,
    run: &RunRow,
) -> Result<AuditInput, AuditError> {
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
) -> Result<AuditInput, AuditError> {
    let corrupt = |what: &str, e: serde_json::Error| AuditError::Corrupt {
        what: format!("{what} of run {}", run.id),
        message: e.to_string(),
    };
    let settings: RunSettings =
        serde_json::from_str(&run.settings).map_err(|e| corrupt("settings", e))?;
    let members = runs::memberships(conn, run.id)?;
    if members.is_empty() {
        return Err(AuditError::NoMembers(run.id));
    }
    let n = members.len();
    let ids: Vec<i64> = members.iter().map(|&(id, _)| id).collect();
    let position = positions(&ids);
    let at = |id: i64| -> Option<usize> {
        usize::try_from(id)
            .ok()
            .and_then(|i| position.get(i))
            .filter(|&&p| p != u32::MAX)
            .map(|&p| p as usize)
    };

    // Segments and the favourable flags of their strategies.
    let favourable: Vec<i32> = runs::strategies(conn, run.id)?
        .into_iter()
        .filter(|s| s.favourable)
        .map(|s| s.segment)
        .collect();
    let mut segment_ids: Vec<i32> = runs::segments(conn, run.id)?
        .iter()
        .map(|s| s.segment)
        .collect();
    for &(_, s) in &members {
        if !segment_ids.contains(&s) {
            segment_ids.push(s);
        }
    }
    segment_ids.sort_unstable();
    let segments = segment_ids
        .iter()
        .map(|&s| Segment {
            id: s as u32,
            favourable: favourable.contains(&s),
        })
        .collect();
    let membership = members.iter().map(|&(_, s)| s as u32).collect();

    // Protected attributes, read only here.
    let (attributes, categorical) = protected_attributes(conn, policy, &ids)?;
    let mut intersections = Vec::new();
    for (i, a) in categorical.iter().enumerate() {
        for b in &categorical[i + 1..] {
            intersections.push((a.clone(), b.clone()));
        }
    }

    // The features the run used, for proxies.
    let mut columns: Vec<(String, Column)> = settings
        .features
        .iter()
        .map(|f| {
            let column = match f.spec.kind {
                crate::segmentation::preprocess::FeatureKind::Categorical => {
                    Column::Labels(vec![None; n])
                }
                crate::segmentation::preprocess::FeatureKind::Numeric { .. } => {
                    Column::Numbers(vec![None; n])
                }
            };
            (f.spec.name.clone(), column)
        })
        .collect();
    // Proxies are associations with protected attributes: without any, there is nothing to
    // load the features for.
    if attributes.is_empty() {
        columns.clear();
    }
    let known = known.filter(|k| {
        k.ids == ids
            && k.columns.len() == columns.len()
            && k.columns.iter().zip(&columns).all(|((a, va), (b, vb))| {
                a == b
                    && matches!(
                        (va, vb),
                        (ColumnValues::Numeric(_), Column::Numbers(_))
                            | (ColumnValues::Categorical(_), Column::Labels(_))
                    )
            })
    });
    if let Some(known) = known {
        // Attribute features only: behavioural ones are read below as before (a customer
        // without purchases is missing there, where the run saw zeros). The same cleaning as
        // values read from storage: non-finite numbers and blank labels are missing.
        for (((_, column), (_, values)), _) in columns
            .iter_mut()
            .zip(&known.columns)
            .zip(&settings.features)
            .filter(|(_, f)| f.source == FeatureSource::Attribute)
        {
            match (column, values) {
                (Column::Numbers(out), ColumnValues::Numeric(v)) => {
                    for (o, x) in out.iter_mut().zip(v) {
                        *o = x.filter(|x| x.is_finite());
                    }
                }
                (Column::Labels(out), ColumnValues::Categorical(v)) => {
                    for (o, x) in out.iter_mut().zip(v) {
                        *o = x.clone().filter(|s| !s.trim().is_empty());
                    }
                }
                _ => unreachable!("kinds checked above"),
            }
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
        let behavioural: Vec<usize> = settings
            .features
            .iter()
            .enumerate()
            .filter(|(_, f)| f.source == FeatureSource::Behavioural)
            .map(|(i, _)| i)
            .collect();
        for (id, features, _) in
            db::features::activity_for_all(conn, as_of, policy.segmentation.valuation_window_days)?
        {
            let Some(i) = at(id) else { continue };
            for &c in &behavioural {
                let (name, column) = &mut columns[c];
                if let Column::Numbers(v) = column {
                    v[i] = features.get(name);
                }
            }
        }
    }
    let attribute_features: Vec<usize> = settings
        .features
        .iter()
        .enumerate()
        .filter(|(_, f)| f.source == FeatureSource::Attribute)
        .map(|(i, _)| i)
        .collect();
    if !attribute_features.is_empty() && known.is_none() && !columns.is_empty() {
        let names: Vec<String> = attribute_features
            .iter()
            .map(|&c| columns[c].0.clone())
            .collect();
        let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut values = vec![AttributeValue::Missing; wanted.len()];
        runs::for_each_attributes(conn, |id, json| {
            let Some(i) = at(id) else { return };
            if extract(json, &wanted, &mut values).is_err() {
                return;
            }
            for (&c, value) in attribute_features.iter().zip(values.iter_mut()) {
                columns[c].1.set_attribute(i, std::mem::take(value));
            }
        })?;
    }
    let mut features = Vec::new();
    for (name, column) in columns {
        let values = match column {
            Column::Labels(labels) => {
                FeatureValues::Categorical(GroupColumn::from_labels(&labels)?)
            }
            Column::Numbers(values) => {
                let known: Vec<f64> = values.iter().flatten().copied().collect();
                if known.is_empty() {
                    continue;
                }
                let mean = known.iter().sum::<f64>() / known.len() as f64;
                FeatureValues::Numeric(values.iter().map(|v| v.unwrap_or(mean)).collect())
            }
        };
        features.push(Feature { name, values });
    }

    Ok(AuditInput {
        segments,
        membership,
        attributes,
        intersections,
        features,
    })
}

/// The policy's protected attributes of the customers `ids` (ascending), as audit groups
/// (numeric ones banded), leaving out attributes nobody has; with the names of the categorical
/// ones. This and the consent-selection test are the only readers of protected attributes.
fn protected_attributes(
    conn: &mut DbConnection,
    policy: &Policy,
    ids: &[i64],
) -> Result<(Vec<ProtectedAttribute>, Vec<String>), AuditError> {
    let n = ids.len();
    let position = positions(ids);
    let at = |id: i64| -> Option<usize> {
        usize::try_from(id)
            .ok()
            .and_then(|i| position.get(i))
            .filter(|&&p| p != u32::MAX)
            .map(|&p| p as usize)
    };
    let mut protected: Vec<(&str, Column)> = policy
        .protected_attributes
        .iter()
        .map(|(name, spec)| {
            // Allocated at the first value (`Column::set`).
            let column = match spec.kind {
                AttributeKind::Numeric => Column::Numbers(Vec::new()),
                AttributeKind::Categorical => Column::Labels(Vec::new()),
            };
            (name.as_str(), column)
        })
        .collect();
    let mut parse_error = None;
    let protected_names: Vec<&str> = protected.iter().map(|(name, _)| *name).collect();
    let mut protected_values = vec![serde_json::Value::Null; protected_names.len()];
    store::for_each_protected(conn, |id, json| {
        let Some(i) = at(id) else { return };
        match extract_json(json, &protected_names, &mut protected_values) {
            Ok(()) => {
                for ((_, column), value) in protected.iter_mut().zip(&protected_values) {
                    // An absent name and a null read alike: no value.
                    if !value.is_null() {
                        column.set(i, n, value);
                    }
                }
            }
            Err(e) => {
                parse_error.get_or_insert((id, e));
            }
        }
    })?;
    if let Some((id, e)) = parse_error {
        return Err(AuditError::Corrupt {
            what: format!("protected attributes of customer {id}"),
            message: e.to_string(),
        });
    }
    let mut attributes = Vec::new();
    let mut categorical = Vec::new();
    for (name, column) in protected.into_iter().filter(|(_, c)| c.present()) {
        match column {
            Column::Labels(labels) => {
                attributes.push(ProtectedAttribute::categorical(name, &labels)?);
                categorical.push(name.to_owned());
            }
            Column::Numbers(values) => {
                let bands = Bands::new(&policy.protected_attributes[name].bands)?;
                attributes.push(ProtectedAttribute::numeric(name, &values, &bands)?);
            }
        }
    }
    Ok((attributes, categorical))
}

/// Consent-selection bias of a run: its members (the consented population at its start)
/// against every customer on file, on each protected attribute. `None` when the policy
/// switches the test off.
pub fn consent_selection_of_run(
    conn: &mut DbConnection,
    policy: &Policy,
    run_id: i64,
) -> Result<Option<ConsentSelectionReport>, AuditError> {
    if !policy.consent_selection.enabled {
        return Ok(None);
    }
    let members: Vec<i64> = runs::memberships(conn, run_id)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let all = db::consent::customer_ids(conn)?;
    let (attributes, _) = protected_attributes(conn, policy, &all)?;
    let consented = in_sorted(&all, &members);
    Ok(Some(consent_selection(
        &consented,
        &attributes,
        &thresholds(policy),
    )?))
}

/// For each of `all` (ascending), whether it is among `subset` (ascending).
fn in_sorted(all: &[i64], subset: &[i64]) -> Vec<bool> {
    let mut j = 0;
    all.iter()
        .map(|&id| {
            while j < subset.len() && subset[j] < id {
                j += 1;
            }
            j < subset.len() && subset[j] == id
        })
        .collect()
}

/// Consent-selection bias at each of `instants`: the customers whose consent for the
/// segmentation purpose is active at the instant against all customers on file now. Empty when
/// the policy switches the test off.
pub fn consent_selection_history(
    db: &Db,
    policy: &Policy,
    instants: &[NaiveDateTime],
) -> Result<Vec<ConsentSelectionReport>, AuditError> {
    if !policy.consent_selection.enabled {
        return Ok(Vec::new());
    }
    let purpose = &policy.segmentation.purpose;
    let Some(spec) = policy.purposes.get(purpose) else {
        return Ok(Vec::new());
    };
    let t = thresholds(policy);
    let mut conn = db.conn()?;
    let all = db::consent::customer_ids(&mut conn)?;
    if all.is_empty() {
        return Ok(Vec::new());
    }
    let (attributes, _) = protected_attributes(&mut conn, policy, &all)?;
    let mut out = Vec::with_capacity(instants.len());
    for &at in instants {
        let active = db::consent::active_customers(&mut conn, purpose, spec, at)?;
        out.push(consent_selection(
            &in_sorted(&all, &active),
            &attributes,
            &t,
        )?);
    }
    Ok(out)
}

/// Audits a run and stores the report; a draft run becomes audited. Runs that are audited,
/// published or retired can be audited again (after strategies changed, or under a new
/// policy); their status does not change.
#[tracing::instrument(skip(db, policy))]
pub fn audit_run(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    run_id: i64,
) -> Result<AuditRow, AuditError> {
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
) -> Result<AuditRow, AuditError> {
    let started = Instant::now();
    let run = db
        .read(|conn| runs::run(conn, run_id))?
        .ok_or(AuditError::RunNotFound(run_id))?;
    check_auditable(&run)?;
    let (input, strategies, selection) = {
        let mut conn = db.conn()?;
        let input = load_input_with(&mut conn, policy, &run, known)?;
        let strategies = favourable_fingerprint(&mut conn, run_id)?;
        let selection = consent_selection_of_run(&mut conn, policy, run_id)?;
        (input, strategies, selection)
    };
    let mut report = audit(&input, &thresholds(policy))?;
    report.consent_selection = selection;
    drop(input);
    let report_json = serde_json::to_string(&report).expect("reports serialise");
    let now = db::now();
    let duration_ms = started.elapsed().as_millis() as i64;
    db.write::<_, DbError>(|conn| {
        // The run may have moved on while the audit computed (e.g. failed or been published).
        let current = runs::run(conn, run_id)?;
        let Some(current) = current else {
            return Ok(Err(AuditError::RunNotFound(run_id)));
        };
        if let Err(e) = check_auditable(&current) {
            return Ok(Err(e));
        }
        let row = AuditRow {
            id: store::next_audit_id(conn)?,
            run_id,
            policy_version: policy.version.clone(),
            verdict: report.verdict.to_string(),
            reason: report.reason.clone(),
            members: report.members as i64,
            strategies: strategies.clone(),
            report: report_json.clone(),
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
        Ok(Ok(row))
    })?
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
pub fn audit_of_run(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    run_id: i64,
) -> Result<StoredAudit, AuditError> {
    let existing = db.read(|conn| store::latest_of_run(conn, run_id))?;
    let row = match existing {
        Some(row) => row,
        None => audit_run(db, policy, actor, run_id)?,
    };
    load(db, row.id)
}

/// A stored audit with its overrides, its run and whether its four-fifths result is stale.
pub fn load(db: &Db, audit_id: i64) -> Result<StoredAudit, AuditError> {
    let (row, overrides, run, segments, strategies) = db
        .read(|conn| {
            let Some(row) = store::find(conn, audit_id)? else {
                return Ok(None);
            };
            let overrides = store::overrides(conn, audit_id)?;
            let run = runs::run(conn, row.run_id)?;
            let segments = runs::segments(conn, row.run_id)?;
            let strategies = runs::strategies(conn, row.run_id)?;
            Ok(Some((row, overrides, run, segments, strategies)))
        })?
        .ok_or(AuditError::AuditNotFound(audit_id))?;
    let run = run.ok_or(AuditError::RunNotFound(row.run_id))?;
    let report: AuditReport =
        serde_json::from_str(&row.report).map_err(|e| AuditError::Corrupt {
            what: format!("report of audit {audit_id}"),
            message: e.to_string(),
        })?;
    let favourable: Vec<i32> = strategies
        .iter()
        .filter(|s| s.favourable)
        .map(|s| s.segment)
        .collect();
    let stale_strategies =
        serde_json::to_string(&favourable).expect("integers serialise") != row.strategies;
    Ok(StoredAudit {
        stale_strategies,
        overrides,
        run,
        segment_names: segments.into_iter().map(|s| (s.segment, s.name)).collect(),
        report,
        row,
    })
}

/// The audit of the run before this one (the run's `previous_run_id`, else the newest earlier
/// audited run), for a side-by-side comparison.
pub fn previous(db: &Db, audit: &StoredAudit) -> Result<Option<StoredAudit>, AuditError> {
    let id = db
        .read(|conn| store::previous_audit_id(conn, audit.row.run_id, audit.run.previous_run_id))?;
    id.map(|id| load(db, id)).transpose()
}

/// Whether an audit lets its run be published without an override.
pub fn passes_gate(verdict: Verdict) -> bool {
    matches!(verdict, Verdict::Pass | Verdict::Warn)
}

fn verdict_of(row: &AuditRow) -> Result<Verdict, AuditError> {
    serde_json::from_value(serde_json::Value::String(row.verdict.clone())).map_err(|e| {
        AuditError::Corrupt {
            what: format!("verdict of audit {}", row.id),
            message: e.to_string(),
        }
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
) -> Result<OverrideRow, AuditError> {
    let justification = justification.trim();
    let chars = justification.chars().count();
    if chars < MIN_JUSTIFICATION_CHARS {
        return Err(AuditError::ShortJustification(chars));
    }
    let now = db::now();
    db.write::<_, DbError>(|conn| {
        let Some(audit) = store::find(conn, audit_id)? else {
            return Ok(Err(AuditError::AuditNotFound(audit_id)));
        };
        let verdict = match verdict_of(&audit) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if passes_gate(verdict) {
            return Ok(Err(AuditError::NothingToOverride { audit_id, verdict }));
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
        Ok(Ok(row))
    })?
}

/// What a publication did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Published {
    pub run_id: i64,
    pub audit_id: i64,
    pub verdict: String,
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
pub fn publish_run(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    run_id: i64,
) -> Result<Published, AuditError> {
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
    db.write::<_, DbError>(|conn| {
        let Some(run) = runs::run(conn, run_id)? else {
            return Ok(Err(AuditError::RunNotFound(run_id)));
        };
        if let Err(e) = check_publishable(&run) {
            return Ok(Err(e));
        }
        let Some(audit) = store::latest_of_run(conn, run_id)? else {
            return Ok(Err(AuditError::WrongState {
                id: run_id,
                status: run.status.to_string(),
                message: "it has no audit",
            }));
        };
        let verdict = match verdict_of(&audit) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let override_id = store::overrides(conn, audit.id)?.last().map(|o| o.id);
        if !passes_gate(verdict) && override_id.is_none() {
            return Ok(Err(AuditError::Gate {
                run_id,
                audit_id: audit.id,
                verdict,
                reason: audit.reason,
            }));
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
        Ok(Ok(Published {
            run_id,
            audit_id: audit.id,
            verdict: audit.verdict,
            override_id,
            retired_run_id: retired,
            published_at: now,
            reaudited,
        }))
    })?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pass_and_warn_pass_the_gate() {
        assert!(passes_gate(Verdict::Pass));
        assert!(passes_gate(Verdict::Warn));
        assert!(!passes_gate(Verdict::Fail));
        assert!(!passes_gate(Verdict::Inconclusive));
    }

    #[test]
    fn positions_map_ids_to_member_order() {
        let p = positions(&[2, 5, 9]);
        assert_eq!(p[2], 0);
        assert_eq!(p[5], 1);
        assert_eq!(p[9], 2);
        assert_eq!(p[3], u32::MAX);
    }

    #[test]
    fn in_sorted_marks_the_members_of_a_subset() {
        assert_eq!(
            in_sorted(&[1, 2, 4, 7, 9], &[2, 7, 8]),
            vec![false, true, false, true, false]
        );
        assert_eq!(in_sorted(&[1, 2], &[]), vec![false, false]);
    }
}
