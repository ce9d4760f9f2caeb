//! The consent state kept beside the ledger (`db::consent_state`) always equals a full
//! recomputation from the ledger: random ledgers built through every writer (recording,
//! imports with back-filled and same-instant events, erasure, new customers), checked after
//! every step, and the answers built on it (who is active, coverage counts) equal the
//! ledger's at now and at instants around the events.

use std::collections::BTreeMap;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use fairseg::app::consent::{Recording, Who, record};
use fairseg::consent::ConsentStatus;
use fairseg::customers::CustomerId;
use fairseg::db::consent_state::{self, StateRow};
use fairseg::db::schema::consent_events;
use fairseg::trail::Actor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::helpers::{DemoCustomer, TestApp, spawn_app, stderr};

const PURPOSES: [&str; 3] = ["segmentation", "marketing_email", "analytics"];

/// The latest event of each customer × purpose, recomputed from the whole ledger.
fn recomputed(app: &TestApp) -> Vec<StateRow> {
    let events: Vec<(i64, i64, String, String, NaiveDateTime)> = app
        .db
        .read(|c| {
            Ok(consent_events::table
                .select((
                    consent_events::id,
                    consent_events::customer_id,
                    consent_events::purpose,
                    consent_events::status,
                    consent_events::recorded_at,
                ))
                .load(c)?)
        })
        .unwrap();
    let mut latest: BTreeMap<(i64, String), StateRow> = BTreeMap::new();
    for (id, customer_id, purpose, status, recorded_at) in events {
        let row = StateRow {
            customer_id,
            purpose: purpose.clone(),
            granted: status == "granted",
            recorded_at,
            event_id: id,
        };
        latest
            .entry((customer_id, purpose))
            .and_modify(|l| {
                if (recorded_at, id) > (l.recorded_at, l.event_id) {
                    *l = row.clone();
                }
            })
            .or_insert(row);
    }
    latest.into_values().collect()
}

fn assert_state_equals_ledger(app: &TestApp, context: &str) {
    let state = app.db.read(consent_state::all).unwrap();
    assert_eq!(state, recomputed(app), "{context}");
    let now = fairseg::db::now();
    // Now, and instants around the events (grants lapsing, events dated after the instant).
    let instants = [
        now,
        now - TimeDelta::days(1),
        now - TimeDelta::days(200),
        now - TimeDelta::days(400),
        now - TimeDelta::days(800),
    ];
    for (name, spec) in &app.policy.purposes {
        for &at in &instants {
            let (from_state, from_ledger) = app
                .db
                .read(|c| {
                    Ok((
                        consent_state::active_customers(c, name, spec, at)?,
                        fairseg::db::consent::active_customers(c, name, spec, at)?,
                    ))
                })
                .unwrap();
            assert_eq!(
                from_state, from_ledger,
                "{context}: active for {name} at {at}"
            );
            let (from_state, from_ledger) = app
                .db
                .read(|c| {
                    Ok((
                        consent_state::tally_at(c, name, spec, at)?,
                        fairseg::db::consent::tally_at(c, name, spec, at)?,
                    ))
                })
                .unwrap();
            assert_eq!(
                from_state, from_ledger,
                "{context}: counts for {name} at {at}"
            );
        }
    }
}

/// The coverage counts the home and consent pages show (kept per process between changes)
/// equal a count from the ledger after every step: no step leaves a stale count behind.
fn assert_coverage_equals_ledger(app: &TestApp, context: &str) {
    let now = fairseg::db::now();
    // Fixed past instants, as the month ends of the consent page are: an event back-filled
    // before one of them must change its count at once.
    let today = now.date().and_hms_opt(0, 0, 0).unwrap();
    let instants = [
        today - TimeDelta::days(400),
        today - TimeDelta::days(30),
        today,
        now,
    ];
    let history = fairseg::app::consent::coverage_history(&app.db, &app.policy, &instants).unwrap();
    for (purpose, tallies) in history {
        let spec = &app.policy.purposes[&purpose];
        let from_ledger = app
            .db
            .read(|c| fairseg::db::consent::tally_history(c, &purpose, spec, &instants))
            .unwrap();
        assert_eq!(tallies, from_ledger, "{context}: history of {purpose}");
    }
    // The consent page's consent-selection history counts the same active customers at each
    // instant as the ledger does.
    let selection =
        fairseg::app::audits::consent_selection_history(&app.db, &app.policy, &instants).unwrap();
    let purpose = &app.policy.segmentation.purpose;
    let spec = &app.policy.purposes[purpose];
    let on_file = app.db.read(fairseg::db::consent::population).unwrap();
    if app.policy.consent_selection.enabled && on_file > 0 {
        assert_eq!(
            selection.len(),
            instants.len(),
            "{context}: selection history"
        );
        for (report, &at) in selection.iter().zip(&instants) {
            let active = app
                .db
                .read(|c| fairseg::db::consent::active_customers(c, purpose, spec, at))
                .unwrap();
            assert_eq!(
                (report.customers, report.consented),
                (on_file, active.len() as u64),
                "{context}: consent selection at {at}"
            );
        }
    }
    let shown = fairseg::app::consent::coverage(&app.db, &app.policy, now).unwrap();
    for purpose in shown {
        let spec = &app.policy.purposes[&purpose.purpose];
        let from_ledger = app
            .db
            .read(|c| fairseg::db::consent::tally_at(c, &purpose.purpose, spec, now))
            .unwrap();
        assert_eq!(
            purpose.tally, from_ledger,
            "{context}: coverage of {}",
            purpose.purpose
        );
    }
}

fn status(rng: &mut ChaCha8Rng) -> ConsentStatus {
    if rng.gen_bool(0.65) {
        ConsentStatus::Granted
    } else {
        ConsentStatus::Withdrawn
    }
}

/// An instant up to about 2.5 years back (past the validity of every purpose), to the second.
fn past(rng: &mut ChaCha8Rng, now: NaiveDateTime) -> NaiveDateTime {
    let t = now - TimeDelta::seconds(rng.gen_range(0..900 * 86_400));
    t - TimeDelta::nanoseconds(i64::from(t.and_utc().timestamp_subsec_nanos()))
}

async fn random_ledger(seed: u64, steps: usize) {
    let app = spawn_app().await;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pseudonyms = fairseg::startup::pseudonymizer(&app.db).unwrap();
    let mut customers: Vec<String> = Vec::new();
    let mut next_customer = 1;
    let now = fairseg::db::now();
    for step in 0..steps {
        let roll = rng.gen_range(0..100);
        if customers.len() < 3 || roll < 10 {
            let id = format!("C{next_customer}");
            next_customer += 1;
            app.add_customer(&id, "{}");
            customers.push(id);
            continue;
        }
        let customer = customers[rng.gen_range(0..customers.len())].clone();
        let purpose = PURPOSES[rng.gen_range(0..PURPOSES.len())];
        let what = if roll < 60 {
            // A grant, a withdrawal or a re-grant through the use case; one dated before the
            // latest event of its customer × purpose is refused and changes nothing.
            let recorded_at = past(&mut rng, now);
            let rec = Recording {
                purpose,
                status: status(&mut rng),
                recorded_at,
                source: Some("test"),
                notice_version: None,
                recorded_by: "test",
            };
            let id = CustomerId::parse(&customer).unwrap();
            let outcome = record(
                &app.db,
                &app.policy,
                &Actor::cli(),
                Who::External(&id),
                &rec,
            );
            format!(
                "record {customer} {purpose} {recorded_at}: {}",
                outcome.is_ok()
            )
        } else if roll < 68 {
            // A customer loaded directly with events in no particular order (back-filled),
            // some at the same instant.
            let id = format!("C{next_customer}");
            next_customer += 1;
            let mut consents = Vec::new();
            let mut last = past(&mut rng, now);
            for _ in 0..rng.gen_range(1..6) {
                if !rng.gen_bool(0.3) {
                    last = past(&mut rng, now);
                }
                let p = PURPOSES[rng.gen_range(0..PURPOSES.len())];
                consents.push((p, status(&mut rng).as_str(), last));
            }
            let n = consents.len();
            app.insert_demo_customer(DemoCustomer {
                id: &id,
                attributes: serde_json::json!({}),
                protected: serde_json::json!({}),
                created_at: now,
                transactions: vec![],
                consents,
            });
            customers.push(id.clone());
            format!("load {id} with {n} events")
        } else if roll < 90 {
            // An import: several events, some for the same customer × purpose out of time order
            // within the file (back-filled), some at the same instant, some refused.
            let mut csv = String::from("customer_id,purpose,status,recorded_at\n");
            let n = rng.gen_range(1..12);
            let mut last = past(&mut rng, now);
            for _ in 0..n {
                let c = &customers[rng.gen_range(0..customers.len())];
                let p = PURPOSES[rng.gen_range(0..PURPOSES.len())];
                if !rng.gen_bool(0.3) {
                    last = past(&mut rng, now);
                }
                let s = status(&mut rng).as_str();
                csv.push_str(&format!(
                    "{c},{p},{s},{}\n",
                    fairseg::time::format_instant(last)
                ));
            }
            let file = app.dir.path().join(format!("consents-{seed}-{step}.csv"));
            std::fs::write(&file, &csv).unwrap();
            let out = app.cli(&[
                "import",
                "consents",
                file.to_str().unwrap(),
                "--skip-invalid",
            ]);
            assert!(out.status.success(), "{}", stderr(&out));
            format!("import {n} events")
        } else {
            let erased = customers.swap_remove(rng.gen_range(0..customers.len()));
            fairseg::app::dsr::erase(
                &app.db,
                &pseudonyms,
                &app.policy.version,
                &Actor::cli(),
                &erased,
            )
            .unwrap();
            format!("erase {erased}")
        };
        let state = app.db.read(consent_state::all).unwrap();
        assert_eq!(state, recomputed(&app), "seed {seed}, step {step} ({what})");
        assert_coverage_equals_ledger(&app, &format!("seed {seed}, step {step} ({what})"));
        if step % 25 == 0 {
            assert_state_equals_ledger(&app, &format!("seed {seed}, step {step} ({what})"));
        }
    }
    assert_state_equals_ledger(&app, &format!("seed {seed}, at the end"));
    let states = recomputed(&app);
    assert!(
        states.len() >= 15 && states.iter().any(|s| !s.granted),
        "seed {seed}: the random ledger should hold grants and withdrawals of many customers ({} states)",
        states.len()
    );
    // A rebuild from the ledger gives the same state.
    let before = app.db.read(consent_state::all).unwrap();
    app.db
        .write::<_, fairseg::db::DbError>(consent_state::rebuild)
        .unwrap();
    assert_eq!(app.db.read(consent_state::all).unwrap(), before);
}

#[tokio::test]
async fn the_state_equals_the_ledger_on_random_ledgers_seed_1() {
    random_ledger(1, 150).await;
}

#[tokio::test]
async fn the_state_equals_the_ledger_on_random_ledgers_seed_2() {
    random_ledger(2, 150).await;
}

#[tokio::test]
async fn the_state_equals_the_ledger_on_random_ledgers_seed_3() {
    random_ledger(3, 150).await;
}

#[tokio::test]
async fn an_event_back_filled_behind_a_later_one_leaves_the_state_alone() {
    let app = spawn_app().await;
    let t = |s: &str| fairseg::time::parse_instant(s).unwrap();
    // The withdrawal of March is entered after the grant of June (a direct load, which the
    // ledger's order check does not see): June's grant stays the latest event.
    app.insert_demo_customer(DemoCustomer {
        id: "C1",
        attributes: serde_json::json!({}),
        protected: serde_json::json!({}),
        created_at: t("2026-01-01"),
        transactions: vec![],
        consents: vec![
            ("segmentation", "granted", t("2026-06-01")),
            ("segmentation", "withdrawn", t("2026-03-01")),
        ],
    });
    let state = app.db.read(consent_state::all).unwrap();
    assert_eq!(state.len(), 1);
    assert!(state[0].granted);
    assert_eq!(state, recomputed(&app));
    let spec = &app.policy.purposes["segmentation"];
    let active_at = |at: &str| {
        app.db
            .read(|c| consent_state::active_customers(c, "segmentation", spec, t(at)))
            .unwrap()
    };
    assert_eq!(active_at("2026-07-01").len(), 1);
    // Between the two events, the withdrawal of March was the latest: nobody is active.
    assert!(active_at("2026-04-01").is_empty());
    assert_state_equals_ledger(&app, "back-filled");
}

#[tokio::test]
async fn a_back_filled_event_changes_the_consent_page_history_at_once() {
    let app = spawn_app().await;
    let t = |s: &str| fairseg::time::parse_instant(s).unwrap();
    app.insert_demo_customer(DemoCustomer {
        id: "C1",
        attributes: serde_json::json!({}),
        protected: serde_json::json!({}),
        created_at: t("2026-01-01"),
        transactions: vec![],
        consents: vec![("segmentation", "granted", t("2026-06-01"))],
    });
    let instants = [t("2026-04-01"), t("2026-07-01"), fairseg::db::now()];
    let history = |app: &TestApp| {
        fairseg::app::consent::coverage_history(&app.db, &app.policy, &instants)
            .unwrap()
            .into_iter()
            .find(|(p, _)| p == "segmentation")
            .unwrap()
            .1
    };
    assert_eq!(history(&app)[0].never_asked, 1);
    // A withdrawal of March entered now, behind June's grant: the state (and its version)
    // stay as they were, but on 1 April the customer had withdrawn.
    let c1 = app
        .db
        .read(|c| fairseg::db::customers::find_id(c, &CustomerId::parse("C1").unwrap()))
        .unwrap()
        .unwrap();
    app.db
        .write::<_, fairseg::db::DbError>(|c| {
            let e = fairseg::db::consent::insert(
                c,
                &fairseg::db::consent::NewEvent {
                    customer_id: c1,
                    purpose: "segmentation",
                    status: ConsentStatus::Withdrawn,
                    recorded_at: t("2026-03-01"),
                    source: None,
                    notice_version: None,
                    recorded_by: "test",
                },
            )?;
            consent_state::apply_events_from(c, e.id)
        })
        .unwrap();
    let after = history(&app);
    assert_eq!((after[0].never_asked, after[0].withdrawn), (0, 1));
    assert_eq!(after[1].granted, 1);
    assert_coverage_equals_ledger(&app, "back-filled");
}
