//! The objection check: replays every recorded disclosure (activation exports, member lists)
//! against the consent ledger and reports each customer who was in a disclosure although, by
//! then, their latest event for a barring purpose was a withdrawal (an objection, under
//! legitimate interest). Pure: storage builds the inputs.
//!
//! "By then" means known to the system by then: an event counts for a disclosure only if it
//! was recorded (`recorded_at`) and entered (`entered_at`) at or before the disclosure, so a
//! withdrawal back-dated after the fact is not reported as a leak it could not have prevented.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

/// What a disclosure was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisclosureKind {
    /// Members exported for activation on a channel.
    ActivationExport,
    /// A member list read or downloaded.
    MemberList,
}

impl DisclosureKind {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            DisclosureKind::ActivationExport => "activation_export",
            DisclosureKind::MemberList => "member_list",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "activation_export" => Some(DisclosureKind::ActivationExport),
            "member_list" => Some(DisclosureKind::MemberList),
            _ => None,
        }
    }
}

/// One disclosure with who was in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Disclosure {
    pub id: i64,
    pub kind: DisclosureKind,
    pub run_id: i64,
    pub at: NaiveDateTime,
    /// A withdrawal for any of these purposes bars a customer from the disclosure.
    pub purposes: Vec<String>,
    pub customers: Vec<i64>,
}

/// One ledger event, as the check needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEvent {
    pub id: i64,
    pub customer_id: i64,
    pub purpose: String,
    pub withdrawn: bool,
    pub recorded_at: NaiveDateTime,
    pub entered_at: NaiveDateTime,
}

/// A customer in a disclosure after withdrawing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leak {
    pub disclosure_id: i64,
    pub kind: DisclosureKind,
    pub run_id: i64,
    pub disclosed_at: NaiveDateTime,
    pub customer_id: i64,
    pub purpose: String,
    /// When the withdrawal that should have kept the customer out was recorded.
    pub withdrawn_at: NaiveDateTime,
}

/// The result of replaying every disclosure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectionReport {
    /// Disclosures replayed.
    pub disclosures: u64,
    /// Customer inclusions checked (a customer in two disclosures counts twice).
    pub inclusions: u64,
    /// Consent events the replay looked at.
    pub events: u64,
    pub leaks: Vec<Leak>,
}

impl ObjectionReport {
    /// No disclosure included anybody who had withdrawn.
    pub fn clean(&self) -> bool {
        self.leaks.is_empty()
    }
}

/// Replays `disclosures` against `events` (any order).
pub fn check(disclosures: &[Disclosure], events: &[LedgerEvent]) -> ObjectionReport {
    // Events per (customer, purpose), in ledger order.
    let mut by_key: HashMap<(i64, &str), Vec<&LedgerEvent>> = HashMap::new();
    for e in events {
        by_key
            .entry((e.customer_id, e.purpose.as_str()))
            .or_default()
            .push(e);
    }
    for list in by_key.values_mut() {
        list.sort_by_key(|e| (e.recorded_at, e.id));
    }
    let mut leaks = Vec::new();
    let mut inclusions = 0u64;
    for d in disclosures {
        for &customer in &d.customers {
            inclusions += 1;
            for purpose in &d.purposes {
                let Some(list) = by_key.get(&(customer, purpose.as_str())) else {
                    continue;
                };
                let latest = list
                    .iter()
                    .rev()
                    .find(|e| e.recorded_at <= d.at && e.entered_at <= d.at);
                if let Some(e) = latest.filter(|e| e.withdrawn) {
                    leaks.push(Leak {
                        disclosure_id: d.id,
                        kind: d.kind,
                        run_id: d.run_id,
                        disclosed_at: d.at,
                        customer_id: customer,
                        purpose: purpose.clone(),
                        withdrawn_at: e.recorded_at,
                    });
                }
            }
        }
    }
    ObjectionReport {
        disclosures: disclosures.len() as u64,
        inclusions,
        events: events.len() as u64,
        leaks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeDelta};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn t(minutes: i64) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            + TimeDelta::minutes(minutes)
    }

    fn event(id: i64, customer: i64, withdrawn: bool, at: i64) -> LedgerEvent {
        LedgerEvent {
            id,
            customer_id: customer,
            purpose: "segmentation".into(),
            withdrawn,
            recorded_at: t(at),
            entered_at: t(at),
        }
    }

    fn disclosure(id: i64, at: i64, customers: Vec<i64>) -> Disclosure {
        Disclosure {
            id,
            kind: DisclosureKind::ActivationExport,
            run_id: 1,
            at: t(at),
            purposes: vec!["segmentation".into()],
            customers,
        }
    }

    /// What a correct export does: includes exactly those whose latest known event is a grant.
    fn honest_export(id: i64, at: i64, events: &[LedgerEvent], customers: i64) -> Disclosure {
        let included = (0..customers)
            .filter(|&c| {
                events
                    .iter()
                    .filter(|e| e.customer_id == c && e.recorded_at <= t(at))
                    .max_by_key(|e| (e.recorded_at, e.id))
                    .is_some_and(|e| !e.withdrawn)
            })
            .collect();
        disclosure(id, at, included)
    }

    #[test]
    fn a_customer_exported_after_withdrawing_is_a_leak() {
        let events = [event(1, 7, false, 0), event(2, 7, true, 10)];
        let report = check(
            &[disclosure(1, 5, vec![7]), disclosure(2, 20, vec![7])],
            &events,
        );
        assert_eq!(report.leaks.len(), 1);
        let leak = &report.leaks[0];
        assert_eq!((leak.disclosure_id, leak.customer_id), (2, 7));
        assert_eq!(leak.withdrawn_at, t(10));
        assert!(!report.clean());
    }

    #[test]
    fn a_grant_after_the_withdrawal_readmits_and_a_backdated_withdrawal_is_not_a_leak() {
        let mut backdated = event(3, 8, true, 5);
        backdated.entered_at = t(30);
        let events = [
            event(1, 7, true, 0),
            event(2, 7, false, 10),
            event(4, 8, false, 0),
            backdated,
        ];
        let report = check(&[disclosure(1, 20, vec![7, 8])], &events);
        assert!(report.clean(), "{:?}", report.leaks);
        assert_eq!(report.inclusions, 2);
    }

    #[test]
    fn random_ledgers_replay_clean_and_every_planted_leak_is_found() {
        let mut rng = StdRng::seed_from_u64(20261201);
        for round in 0..200 {
            let customers = rng.gen_range(1..40);
            let mut events = Vec::new();
            let mut id = 0;
            for c in 0..customers {
                let mut at = 0;
                for _ in 0..rng.gen_range(0..5) {
                    at += rng.gen_range(1..50);
                    id += 1;
                    events.push(event(id, c, rng.gen_bool(0.4), at));
                }
            }
            let disclosures: Vec<Disclosure> = (0..rng.gen_range(1..6))
                .map(|d| honest_export(d, rng.gen_range(0..250), &events, customers))
                .collect();
            let report = check(&disclosures, &events);
            assert!(report.clean(), "round {round}: {:?}", report.leaks);

            // Plant a leak: someone whose latest event by then is a withdrawal.
            let mut planted = disclosures.clone();
            let Some(w) = events.iter().find(|e| e.withdrawn) else {
                continue;
            };
            let later = events
                .iter()
                .filter(|e| e.customer_id == w.customer_id && e.recorded_at > w.recorded_at)
                .map(|e| e.recorded_at)
                .min()
                .unwrap_or(t(10_000));
            let at = w.recorded_at + (later - w.recorded_at) / 2;
            planted.push(Disclosure {
                id: 99,
                kind: DisclosureKind::MemberList,
                run_id: 1,
                at,
                purposes: vec!["segmentation".into()],
                customers: vec![w.customer_id],
            });
            let report = check(&planted, &events);
            assert_eq!(report.leaks.len(), 1, "round {round}");
            assert_eq!(report.leaks[0].disclosure_id, 99);
            assert_eq!(report.leaks[0].customer_id, w.customer_id);
        }
    }
}
