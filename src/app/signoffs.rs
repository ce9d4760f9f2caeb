//! Signing off a fairness audit, and checking a signed report later.
//!
//! [`sign`] freezes the audit as its canonical JSON and its printable HTML (signature block
//! filled), stores both with their hashes and appends `audit.signed` to the trail with the
//! content hash, in one transaction. A stale audit (strategies changed since) or a superseded
//! one (the run was audited again) is refused: the officer signs what the gate uses now.
//!
//! [`statuses`] and [`one`] recompute the hashes of what is stored ([`Integrity`]) and compare
//! the signed report with the live one ([`Live`]).
//!
//! How the audit is presented (its API JSON, its printable page) belongs to the web layer; it
//! comes in through [`Presenter`], so the JSON frozen here is exactly what the API serves.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::Value;

use crate::app::audits::{self as service, AuditError, StoredAudit};
use crate::db::audits as audit_store;
use crate::db::segmentation as runs;
use crate::db::signoffs::{self as store, SignoffRow};
use crate::db::{self, Db, DbConnection, DbError};
use crate::fairness::signoff::{
    Integrity, Statement, StatementError, changed_fields, content_hash,
};
use crate::policy::Policy;
use crate::trail::{Actor, NewEntry};

/// The audit's outward forms, supplied by the web layer.
pub trait Presenter {
    /// The audit as `GET /api/v1/audits/{id}` serves it, in canonical form
    /// ([`canonical_json`](crate::fairness::signoff::canonical_json)): the bytes a sign-off hashes, and what each view of a sign-off
    /// compares with what was signed.
    fn canonical_json(&self, audit: &StoredAudit) -> Arc<str>;
    /// The printable report with the signature block filled.
    fn printable(&self, audit: &StoredAudit, signature: &Signature) -> Result<String, String>;
}

/// Who signs: the signed-in user and their role.
#[derive(Debug, Clone)]
pub struct Signer {
    pub email: String,
    pub role: String,
}

/// The signature block of a signed report.
#[derive(Debug, Clone, Serialize)]
pub struct Signature {
    pub audit_id: i64,
    pub seq: i32,
    pub signed_by: String,
    pub signer_role: String,
    pub signed_at: NaiveDateTime,
    pub statement: String,
    pub content_hash: String,
}

/// Everything that can stop a sign-off or the reading of one.
#[derive(Debug, thiserror::Error)]
pub enum SignoffError {
    #[error(transparent)]
    Statement(#[from] StatementError),
    #[error("audit {0} does not exist")]
    AuditNotFound(i64),
    #[error("audit {audit_id} has no sign-off {seq}")]
    SignoffNotFound { audit_id: i64, seq: i32 },
    #[error(
        "audit {audit_id} is superseded: run {run_id} was audited again (audit {latest_id}, {at} UTC); sign the latest audit instead"
    )]
    Superseded {
        audit_id: i64,
        run_id: i64,
        latest_id: i64,
        at: String,
    },
    #[error(
        "audit {audit_id} is stale: the segments' strategies changed after it, so its four-fifths result no longer holds; audit run {run_id} again and sign the new audit"
    )]
    Stale { audit_id: i64, run_id: i64 },
    #[error(
        "audit {0} changed while it was being signed (an override, a publication or a new audit); reload it and sign again"
    )]
    ChangedWhileSigning(i64),
    #[error("the printable report could not be rendered: {0}")]
    Render(String),
    #[error(transparent)]
    Audit(AuditError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<AuditError> for SignoffError {
    fn from(e: AuditError) -> SignoffError {
        match e {
            AuditError::AuditNotFound(id) => SignoffError::AuditNotFound(id),
            AuditError::Db(e) => SignoffError::Db(e),
            other => SignoffError::Audit(other),
        }
    }
}

/// The favourable segments of a run's strategies now, in the form an audit stores them.
fn favourable_now(conn: &mut DbConnection, run_id: i64) -> db::DbResult<String> {
    let favourable: Vec<i32> = runs::strategies(conn, run_id)?
        .into_iter()
        .filter(|s| s.favourable)
        .map(|s| s.segment)
        .collect();
    Ok(serde_json::to_string(&favourable).expect("integers serialise"))
}

/// Refuses a superseded audit: the run's latest audit must be this one.
fn check_latest(conn: &mut DbConnection, audit: &StoredAudit) -> Result<(), SignoffError> {
    let latest = audit_store::latest_head_of_run(conn, audit.row.run_id)?;
    match latest {
        Some(l) if l.id != audit.row.id => Err(SignoffError::Superseded {
            audit_id: audit.row.id,
            run_id: audit.row.run_id,
            latest_id: l.id,
            at: l.created_at.format("%Y-%m-%d %H:%M").to_string(),
        }),
        _ => Ok(()),
    }
}

/// Refuses an audit that may not be signed: stale (strategies changed since) or superseded
/// (the run was audited again).
pub fn check_signable(db: &Db, audit: &StoredAudit) -> Result<(), SignoffError> {
    if audit.stale_strategies {
        return Err(SignoffError::Stale {
            audit_id: audit.row.id,
            run_id: audit.row.run_id,
        });
    }
    db.read(|conn| Ok(check_latest(conn, audit)))?
}

/// Signs off an audit (see the module documentation). The caller has checked `audits:sign`.
#[tracing::instrument(skip(db, policy, presenter, statement))]
pub fn sign(
    db: &Db,
    policy: &Policy,
    presenter: &dyn Presenter,
    signer: &Signer,
    audit_id: i64,
    statement: &str,
) -> Result<SignoffRow, SignoffError> {
    let statement = Statement::parse(statement)?;
    let audit = service::load(db, audit_id)?;
    check_signable(db, &audit)?;
    let report_json = presenter.canonical_json(&audit);
    let hash = content_hash(report_json.as_bytes());
    let signed_at = db::now();
    let actor = Actor::user(&signer.email);
    db.write(|conn| -> Result<SignoffRow, SignoffError> {
        // What was read above must still be what the gate sees now.
        check_latest(conn, &audit)?;
        let run = runs::run(conn, audit.row.run_id)?;
        let overrides = audit_store::overrides(conn, audit_id)?;
        if run.is_none_or(|r| r.status != audit.run.status)
            || overrides.len() != audit.overrides.len()
            || favourable_now(conn, audit.row.run_id)? != audit.row.strategies
        {
            return Err(SignoffError::ChangedWhileSigning(audit_id));
        }
        let (id, seq) = store::next_ids(conn, audit_id)?;
        let signature = Signature {
            audit_id,
            seq,
            signed_by: signer.email.clone(),
            signer_role: signer.role.clone(),
            signed_at,
            statement: statement.as_str().to_owned(),
            content_hash: hash.clone(),
        };
        let report_html = presenter
            .printable(&audit, &signature)
            .map_err(SignoffError::Render)?;
        let html_hash = content_hash(report_html.as_bytes());
        let trail_seq = db::trail::append(
            conn,
            NewEntry::new(
                &actor,
                "audit.signed",
                format!("run:{}", audit.row.run_id),
                serde_json::json!({
                    "audit_id": audit_id,
                    "signoff": seq,
                    "signer": signer.email,
                    "role": signer.role,
                    "statement": signature.statement,
                    "content_hash": hash,
                    "html_hash": html_hash,
                }),
            ),
            &policy.version,
        )?;
        let row = SignoffRow {
            id,
            audit_id,
            seq,
            signed_by: signature.signed_by,
            signer_role: signature.signer_role,
            signed_at,
            statement: signature.statement,
            policy_version: policy.version.clone(),
            report_json: report_json.to_string(),
            report_html,
            content_hash: hash,
            html_hash,
            trail_seq,
        };
        store::insert(conn, &row)?;
        Ok(row)
    })
}

/// How the live audit compares with the signed report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Live {
    /// The live report is byte for byte the signed one.
    Same,
    /// The same audit reads differently now (its run was published or retired, an override
    /// was recorded, the strategies changed): the top-level fields that differ.
    Changed { fields: Vec<String> },
    /// The run was audited again after the signature.
    Superseded {
        audit_id: i64,
        #[serde(serialize_with = "utc")]
        at: NaiveDateTime,
    },
}

fn utc<S: serde::Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string())
}

/// A sign-off with what a view recomputed of it.
#[derive(Debug, Clone)]
pub struct SignoffStatus {
    pub row: SignoffRow,
    pub integrity: Integrity,
    pub live: Live,
}

fn status(
    conn: &mut DbConnection,
    row: SignoffRow,
    live_json: &str,
    superseded: Option<(i64, NaiveDateTime)>,
) -> db::DbResult<SignoffStatus> {
    let trail = store::trail_hashes(conn, row.trail_seq)?;
    let integrity = checked(&row, trail.as_ref().map(|(c, h)| (c.as_str(), h.as_str())));
    let live = match superseded {
        Some((audit_id, at)) => Live::Superseded { audit_id, at },
        None if row.report_json == live_json => Live::Same,
        None => {
            let signed: Value = serde_json::from_str(&row.report_json).unwrap_or(Value::Null);
            let live: Value = serde_json::from_str(live_json).unwrap_or(Value::Null);
            Live::Changed {
                fields: changed_fields(&signed, &live),
            }
        }
    };
    Ok(SignoffStatus {
        row,
        integrity,
        live,
    })
}

/// [`Integrity::check`] of a stored sign-off, remembered per process for exactly the bytes it
/// was given: the check hashes the signed JSON and HTML (a quarter of a megabyte) with
/// SHA-256 on every view of a signed report, and its answer is a function of those bytes
/// alone. The key is a keyed hash of every input (seeded per process, so it cannot be
/// steered from outside), so any change to a stored byte is checked afresh.
fn checked(row: &SignoffRow, trail: Option<(&str, &str)>) -> Integrity {
    const KEPT: usize = 64;
    static CHECKED: LazyLock<Mutex<HashMap<u64, Integrity>>> = LazyLock::new(Default::default);
    static SEED: LazyLock<foldhash::quality::RandomState> = LazyLock::new(Default::default);
    let key = SEED.hash_one((
        &row.report_json,
        &row.content_hash,
        &row.report_html,
        &row.html_hash,
        trail,
    ));
    if let Some(known) = CHECKED.lock().ok().and_then(|c| c.get(&key).copied()) {
        return known;
    }
    let integrity = Integrity::check(
        &row.report_json,
        &row.content_hash,
        &row.report_html,
        &row.html_hash,
        trail,
    );
    if let Ok(mut kept) = CHECKED.lock() {
        if kept.len() >= KEPT {
            kept.clear();
        }
        kept.insert(key, integrity);
    }
    integrity
}

/// The run's newer audit, if the run was audited again after `audit`.
fn newer_audit(
    conn: &mut DbConnection,
    audit: &StoredAudit,
) -> db::DbResult<Option<(i64, NaiveDateTime)>> {
    Ok(audit_store::latest_head_of_run(conn, audit.row.run_id)?
        .filter(|l| l.id != audit.row.id)
        .map(|l| (l.id, l.created_at)))
}

/// The sign-offs of an audit (oldest first), each checked against its hashes and the live
/// report.
pub fn statuses(
    db: &Db,
    presenter: &dyn Presenter,
    audit: &StoredAudit,
) -> Result<Vec<SignoffStatus>, SignoffError> {
    Ok(db.read(|conn| {
        let rows = store::of_audit(conn, audit.row.id)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let live_json = presenter.canonical_json(audit);
        let newer = newer_audit(conn, audit)?;
        rows.into_iter()
            .map(|row| status(conn, row, &live_json, newer))
            .collect()
    })?)
}

/// One sign-off of an audit, checked, with the audit as it is now.
pub fn one(
    db: &Db,
    presenter: &dyn Presenter,
    audit_id: i64,
    seq: i32,
) -> Result<(StoredAudit, SignoffStatus), SignoffError> {
    let audit = service::load(db, audit_id)?;
    let live_json = presenter.canonical_json(&audit);
    let status = db.read(|conn| {
        let Some(row) = store::find(conn, audit_id, seq)? else {
            return Ok(None);
        };
        let newer = newer_audit(conn, &audit)?;
        status(conn, row, &live_json, newer).map(Some)
    })?;
    let status = status.ok_or(SignoffError::SignoffNotFound { audit_id, seq })?;
    Ok((audit, status))
}
