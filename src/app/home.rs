//! The home page's to-dos: what is waiting for the signed-in role, area by area (audits
//! awaiting review, runs awaiting publication, KPI alerts, consent coverage, recent imports).
//! Each role sees every area it may use; the caller says which permissions it holds.

use chrono::NaiveDateTime;

use super::consent::ConsentError;
use super::kpis::{KpisError, Withheld, newest_matching};
use crate::db::{self, Db, DbError};
use crate::fairness::gate::Gate;
use crate::format;
use crate::kpi::period::Period;
use crate::policy::{Permission, Policy};
use crate::segmentation::status::RunStatus;

/// How pressing a to-do is: it decides the card's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Someone must act.
    Act,
    /// For information.
    Info,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Act => "act",
            Urgency::Info => "info",
        }
    }
}

/// One line of the home page: a sentence and where to act on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Todo {
    pub area: &'static str,
    pub text: String,
    pub href: String,
    pub urgency: Urgency,
}

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Consent(#[from] ConsentError),
    #[error(transparent)]
    Kpis(#[from] KpisError),
}

/// Everything the home page lists for a role that holds the permissions `can` answers yes to.
pub fn todos(
    db: &Db,
    policy: &Policy,
    can: impl Fn(Permission) -> bool,
    now: NaiveDateTime,
) -> Result<Vec<Todo>, HomeError> {
    let mut out = Vec::new();
    let min = policy.fairness.min_cell_size as u64;
    db.read(|c| {
        if can(Permission::AuditsRead) || can(Permission::SegmentsPublish) {
            audit_todos(c, &can, &mut out)?;
        }
        if can(Permission::CustomersImport) {
            let recent = db::imports::recent(c, 3)?;
            if recent.is_empty() {
                out.push(Todo {
                    area: "Imports",
                    text: "No file imported yet: load customers and transactions from CSV.".into(),
                    href: "/customers/import".into(),
                    urgency: Urgency::Info,
                });
            }
            for i in recent {
                out.push(Todo {
                    area: "Imports",
                    text: format!(
                        "{} ({}): {} of {} rows imported, {} rejected, by {} on {}.",
                        i.file_name,
                        format::label_lower(&i.kind),
                        format::int(i.rows_imported),
                        format::int(i.rows_read),
                        format::int(i.rows_rejected),
                        i.imported_by,
                        format::datetime(i.occurred_at)
                    ),
                    href: "/customers/import".into(),
                    urgency: if i.rows_rejected > 0 {
                        Urgency::Act
                    } else {
                        Urgency::Info
                    },
                });
            }
        }
        Ok(())
    })?;
    if can(Permission::KpiRead) {
        kpi_todos(db, policy.fairness.min_cell_size, &mut out)?;
    }
    if can(Permission::ConsentRecord) {
        for p in super::consent::coverage(db, policy, now)? {
            let total = p.tally.total();
            let text = if total == 0 {
                format!("{}: no customers yet.", format::label(&p.purpose))
            } else if p.tally.granted < min && p.tally.granted > 0 {
                format!(
                    "{}: fewer than {min} of {} customers agreed.",
                    format::label(&p.purpose),
                    format::int(total)
                )
            } else {
                format!(
                    "{}: {} of {} customers agreed ({}).",
                    format::label(&p.purpose),
                    format::int(p.tally.granted),
                    format::int(total),
                    format::percent(p.tally.granted as f64 / total as f64)
                )
            };
            out.push(Todo {
                area: "Consent",
                text,
                href: "/consent".into(),
                urgency: Urgency::Info,
            });
        }
    }
    Ok(out)
}

fn audit_todos(
    c: &mut db::DbConnection,
    can: &impl Fn(Permission) -> bool,
    out: &mut Vec<Todo>,
) -> db::DbResult<()> {
    let overridden = db::audits::overridden_ids(c)?;
    for run in db::segmentation::runs(c, 20)? {
        if run.status != RunStatus::Audited {
            continue;
        }
        let Some(audit) = db::audits::latest_head_of_run(c, run.id)? else {
            continue;
        };
        let Ok(verdict) = audit.verdict.parse() else {
            continue;
        };
        let gate = Gate::decide(verdict, overridden.contains(&audit.id));
        // Never a link the role cannot open.
        let href = if can(Permission::AuditsRead) {
            format!("/audits/{}", audit.id)
        } else if can(Permission::SegmentsRun) {
            format!("/segmentations/{}", run.id)
        } else {
            "/".into()
        };
        let verdict_words = match audit.verdict.as_str() {
            "fail" => "failed".to_owned(),
            "pass" => "passed".to_owned(),
            "warn" => "passed with a warning".to_owned(),
            other => format!("was {}", format::label_lower(other)),
        };
        if gate.publishable() {
            if can(Permission::SegmentsPublish) {
                out.push(Todo {
                    area: "Publication",
                    text: format!(
                        "Run {} ({}) is audited ({}{}) and awaits publication.",
                        run.id,
                        format::label(&run.algorithm),
                        verdict_words,
                        if gate == Gate::Overridden {
                            ", overridden"
                        } else {
                            ""
                        }
                    ),
                    href,
                    urgency: Urgency::Act,
                });
            }
        } else if can(Permission::AuditsOverride) {
            out.push(Todo {
                area: "Audits",
                text: format!(
                    "Audit {} of run {} {verdict_words}: review it, and record an override only if publishing is justified.",
                    audit.id, run.id
                ),
                href,
                urgency: Urgency::Act,
            });
        } else if can(Permission::AuditsRead) {
            out.push(Todo {
                area: "Audits",
                text: format!(
                    "Audit {} of run {} {verdict_words}: the run cannot be published without a compliance override.",
                    audit.id, run.id
                ),
                href,
                urgency: Urgency::Info,
            });
        }
    }
    Ok(())
}

/// The alerts of the newest period evaluated when complete, of any kind: the newest evaluation
/// of each KPI in it, as the KPI overview shows them (an alert raised by an evaluation since
/// replaced is not one, and a figure withheld for resting on too few customers has no status to
/// tell).
fn kpi_todos(db: &Db, min_cell_size: u32, out: &mut Vec<Todo>) -> Result<(), KpisError> {
    let withheld = Withheld::primary(min_cell_size);
    let mut conn = db.conn()?;
    let rows = newest_matching(
        &mut conn,
        db,
        &db::kpi::LogFilter {
            segment: Some(crate::kpi::evaluate::ALL_SEGMENT.into()),
            ..Default::default()
        },
    )?;
    // The newest period that was complete when evaluated, of any kind.
    let Some((newest, kind)) = rows
        .iter()
        .filter(|r| super::kpis::coverage(r).complete)
        .filter_map(|r| r.kind().map(|k| (r, k)))
        .max_by_key(|(r, _)| (r.period_end, r.period_start))
        .map(|(r, k)| ((r.period_kind.clone(), r.period_start, r.period_end), k))
    else {
        return Ok(());
    };
    let mut alerts: Vec<String> = Vec::new();
    for r in rows.iter().rev() {
        if (r.period_kind.clone(), r.period_start, r.period_end) == newest
            && r.status == "alert"
            && !withheld.contains(r)
            && !alerts.contains(&r.kpi)
        {
            alerts.push(r.kpi.clone());
        }
    }
    let Ok(period) = Period::containing(kind, newest.1) else {
        return Ok(());
    };
    let period = format::period(&period);
    out.push(if alerts.is_empty() {
        Todo {
            area: "KPIs",
            text: format!("No KPI alert for {period}."),
            href: "/kpi".into(),
            urgency: Urgency::Info,
        }
    } else {
        Todo {
            area: "KPIs",
            text: format!(
                "{} KPI alert{} for {period}: {}.",
                alerts.len(),
                if alerts.len() == 1 { "" } else { "s" },
                named(&alerts)
            ),
            href: "/kpi".into(),
            urgency: Urgency::Act,
        }
    });
    Ok(())
}

/// At most three KPI names, then how many more.
fn named(kpis: &[String]) -> String {
    let mut words: Vec<String> = kpis
        .iter()
        .take(3)
        .map(|k| format::label_lower(k))
        .collect();
    if kpis.len() > 3 {
        words.push(format!("and {} more", kpis.len() - 3));
    }
    words.join(", ")
}
