//! The objection check: every recorded disclosure replayed against the consent ledger, the
//! outcome put in the trail.

use chrono::NaiveDateTime;
use serde_json::json;

use crate::consent::objections::{self, ObjectionReport};
use crate::db::{Db, DbError, disclosures, trail as trail_store};
use crate::policy::Policy;
use crate::trail::{Actor, NewEntry};

#[derive(Debug, thiserror::Error)]
pub enum ObjectionError {
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The objection check as shown: the report, and the external ids of leaked customers still on
/// file (individual-level: only for roles that read the trail).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectionCheck {
    #[serde(flatten)]
    pub report: ObjectionReport,
    pub clean: bool,
    pub checked_at: NaiveDateTime,
    /// External id per leaked customer id (absent once erased).
    pub external_ids: std::collections::BTreeMap<i64, String>,
}

/// Replays every recorded disclosure against the ledger (see [`objections`]) and puts
/// the outcome in the trail (`objections.checked`).
pub fn check_objections(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
) -> Result<ObjectionCheck, ObjectionError> {
    let (all, events) =
        db.read(|conn| Ok((disclosures::all(conn)?, disclosures::ledger(conn)?)))?;
    let report = objections::check(&all, &events);
    drop((all, events));
    let mut leaked: Vec<i64> = report.leaks.iter().map(|l| l.customer_id).collect();
    leaked.sort_unstable();
    leaked.dedup();
    let checked_at = crate::db::now();
    let external_ids = db.write(|conn| -> Result<_, ObjectionError> {
        let ids = disclosures::external_ids(conn, &leaked)?;
        trail_store::append(
            conn,
            NewEntry::new(
                actor,
                "objections.checked",
                "consent",
                json!({
                    "disclosures": report.disclosures,
                    "inclusions": report.inclusions,
                    "leaks": report.leaks.len(),
                }),
            ),
            &policy.version,
        )?;
        Ok(ids)
    })?;
    Ok(ObjectionCheck {
        clean: report.clean(),
        report,
        checked_at,
        external_ids: external_ids.into_iter().collect(),
    })
}
