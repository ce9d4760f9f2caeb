//! The demo: its accounts, its data, and the story it tells on that data (a segmentation the
//! fairness gate stops, one it lets through, an activation export, the objection check, the
//! KPI history).

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use crate::app::accounts;
use crate::app::audits;
use crate::app::kpis::KpisError;
use crate::app::objections::{self, ObjectionCheck};
use crate::app::runs;
use crate::app::signoffs::{self, Presenter, Signer, SignoffError};
use crate::customers::{CustomerId, Pseudonymizer};
use crate::db::{Db, DbResult, secrets, trail as trail_store};
use crate::demo::{self, DemoData, DemoSummary, HISTORY_DAYS};
use crate::policy::Policy;
use crate::trail::{Actor, NewEntry};

/// Marks a database as made by `demo`, so a later `demo` may replace it but never a real one.
const DEMO_MARKER: &str = "demo_database";

const DEMO_USERS: [(&str, &str); 4] = [
    ("admin@fairseg.demo", "admin"),
    ("compliance@fairseg.demo", "compliance"),
    ("marketing@fairseg.demo", "marketing"),
    ("analyst@fairseg.demo", "analyst"),
];

/// Whether `demo` made this database.
pub fn is_demo_database(db: &Db) -> DbResult<bool> {
    Ok(db.read(|c| secrets::find(c, DEMO_MARKER))?.is_some())
}

/// Whether the database holds no accounts yet (a PostgreSQL database the demo may fill: it never
/// drops a PostgreSQL database, so it only fills a fresh one).
pub fn has_no_accounts(db: &Db) -> DbResult<bool> {
    Ok(db.read(crate::db::users::UserRow::count)? == 0)
}

/// Marks a new database as the demo's.
pub fn mark_demo_database(db: &Db) -> DbResult<()> {
    db.write(|c| secrets::get_or_create(c, DEMO_MARKER, || "true".into()).map(|_| ()))
}

/// A demo account and its password, shown once.
#[derive(Debug, Clone, Serialize)]
pub struct DemoUser {
    pub email: &'static str,
    pub role: &'static str,
    pub password: String,
}

/// One account per role, each with a fresh password.
pub fn create_users(db: &Db, policy: &Policy) -> Result<Vec<DemoUser>, accounts::AccountError> {
    DEMO_USERS
        .iter()
        .map(|&(email, role)| {
            let password = password();
            accounts::create_user(db, policy, &Actor::system(), email, role, password.clone())?;
            Ok(DemoUser {
                email,
                role,
                password,
            })
        })
        .collect()
}

/// A fresh, readable password per demo run: the demo must not ship known credentials.
fn password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    let groups: Vec<String> = (0..3)
        .map(|_| {
            (0..4)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect()
        })
        .collect();
    format!("demo-{}", groups.join("-"))
}

/// Writes the data set in one transaction, with one trail entry.
pub fn load(
    db: &Db,
    data: &DemoData,
    pseudonyms: &Pseudonymizer,
    actor: &Actor,
    policy_version: &str,
) -> DbResult<DemoSummary> {
    let pseudonym_of: Vec<String> = data
        .customers
        .iter()
        .map(|c| {
            pseudonyms
                .pseudonym(&CustomerId::parse(&c.external_id).expect("generated ids are valid"))
        })
        .collect();
    db.write(|conn| {
        let summary = crate::db::demo::insert(conn, data, &pseudonym_of, crate::db::now())?;
        trail_store::append(
            conn,
            NewEntry::new(
                actor,
                "demo.loaded",
                "demo",
                serde_json::to_value(summary).unwrap_or_default(),
            ),
            policy_version,
        )?;
        Ok(summary)
    })
}

/// One of the demo's segmentations and what the gate made of it.
#[derive(Debug, Clone)]
pub struct DemoRun {
    pub run_id: i64,
    pub features: Vec<String>,
    pub segments: usize,
    pub included: u64,
    pub audit_id: i64,
    pub verdict: crate::fairness::Verdict,
    pub reason: String,
    pub published: bool,
}

impl DemoRun {
    /// The run as `demo --json` reports it.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "run_id": self.run_id, "features": self.features, "segments": self.segments,
            "published": self.published,
            "audit": {"id": self.audit_id, "verdict": self.verdict, "reason": self.reason},
        })
    }
}

/// What the demo made of its data.
#[derive(Debug)]
pub struct DemoStory {
    pub loaded: DemoSummary,
    pub runs: Vec<DemoRun>,
    /// The consent-selection headline of the last audit.
    pub consent_selection: Option<String>,
    pub objections: ObjectionCheck,
}

/// Generates and loads `customers` customers from `seed`, then segments, audits, publishes,
/// signs off, exports and back-fills as a team would in its first weeks. `reports` renders the
/// audit that is signed off, as the web application shows it.
pub fn populate(
    db: &Db,
    policy: &Policy,
    pseudonyms: &Pseudonymizer,
    reports: &dyn Presenter,
    customers: usize,
    seed: u64,
) -> anyhow::Result<DemoStory> {
    let options = demo::options(policy, customers, seed, crate::db::now().date());
    let data = demo::generate(&options);
    let loaded = load(db, &data, pseudonyms, &Actor::system(), &policy.version)
        .context("loading the demo data")?;
    drop(data);
    // The first run segments on the planted proxy: its audit fails and the gate keeps it from
    // marketing (no override is ever made on the demo's behalf). The second run leaves the
    // proxy out, as an analyst would, and is published when its audit lets it through.
    let mut runs = Vec::new();
    let mut last_report = None;
    for request in [
        demo::segmentation_request(),
        demo::segmentation_request_without_proxy(),
    ] {
        // Executed here, held by this process so that a server on the same database leaves it.
        let (run_id, outcome) = crate::app::jobs::execute_here(
            db,
            policy,
            crate::config::JobSettings::default(),
            &Actor::system(),
            &request,
        )?;
        let outcome = outcome.context("segmenting the demo data")?;
        let audit = audits::audit_after_run(db, policy, &Actor::system(), &outcome)
            .context("auditing the demo segmentation")?;
        let published = audits::passes_gate(audit.verdict);
        if published {
            let done = audits::publish_run(db, policy, &Actor::system(), run_id)
                .context("publishing the demo segmentation")?;
            sign_off(db, policy, reports, done.audit_id)
                .context("signing off the published run's audit")?;
        }
        runs.push(DemoRun {
            run_id,
            features: request.features,
            segments: outcome.segments.len(),
            included: outcome.included,
            audit_id: audit.id,
            verdict: audit.verdict,
            reason: audit.reason,
            published,
        });
        last_report = Some(audit.report);
    }
    // Marketing's first activation export of the published run, so the objection check has a
    // disclosure to replay against the ledger.
    if let Some(run) = runs.iter().find(|r| r.published) {
        runs::read_members(
            db,
            policy,
            &Actor::system(),
            run.run_id,
            None,
            Some(policy.segmentation.default_channel.as_str()),
        )
        .context("the demo's activation export")?;
    }
    let objections = objections::check_objections(db, policy, &Actor::system())
        .context("the demo's objection check")?;
    let consent_selection = last_report
        .and_then(|report: crate::fairness::AuditReport| report.consent_selection)
        .map(|c| c.headline);
    // KPI history: every month of the demo history, per segment of the published run, so the
    // KPI charts are full from the start.
    let kpi_rows = backfill_kpis(db, policy, crate::db::now().date())
        .context("back-filling the demo KPI history")?;
    tracing::info!(rows = kpi_rows, "demo KPI history back-filled");
    Ok(DemoStory {
        loaded,
        runs,
        consent_selection,
        objections,
    })
}

/// The demo's compliance officer.
pub const DEMO_COMPLIANCE: &str = "compliance@fairseg.demo";

/// The compliance officer signs off the published run's audit, so the demo shows a signed,
/// frozen report. Returns the sign-off's content hash.
pub fn sign_off(
    db: &Db,
    policy: &Policy,
    reports: &dyn Presenter,
    audit_id: i64,
) -> Result<String, SignoffError> {
    let signer = Signer {
        email: DEMO_COMPLIANCE.into(),
        role: "compliance".into(),
    };
    let row = signoffs::sign(
        db,
        policy,
        reports,
        &signer,
        audit_id,
        "Reviewed the tables, the proxies and the consent-selection check of this audit before \
         publication: no dependence on a protected attribute that matters; the segments may be \
         used for the stated purposes.",
    )?;
    Ok(row.content_hash)
}

/// Back-fills the monthly KPI history of the demo data, from the first month of its history
/// to the month containing `today`, so the KPI charts are full from the start. Call it after
/// the demo segmentation is published to get per-segment history too. Returns the rows
/// appended.
pub fn backfill_kpis(
    db: &Db,
    policy: &Policy,
    today: chrono::NaiveDate,
) -> Result<usize, KpisError> {
    let from = today - chrono::TimeDelta::days(HISTORY_DAYS);
    let rows = crate::app::kpis::backfill(
        db,
        policy,
        &Actor::system(),
        from,
        today,
        crate::kpi::PeriodKind::Month,
    )?;
    Ok(rows.len())
}
