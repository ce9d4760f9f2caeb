//! Consent coverage: how many customers are in each state for a purpose at an instant, worked
//! out from the latest event of each customer, and how those counts may be shown without
//! revealing a small group.

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta};
use serde::Serialize;

use super::{ConsentState, ConsentStatus, Event, state_of_latest};
use crate::policy::LegalBasis;

/// The number of customers in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub granted: u64,
    pub withdrawn: u64,
    pub expired: u64,
    pub never_asked: u64,
}

impl Tally {
    pub fn add(&mut self, state: &ConsentState) {
        match state {
            ConsentState::Granted { .. } => self.granted += 1,
            ConsentState::Withdrawn { .. } => self.withdrawn += 1,
            ConsentState::Expired { .. } => self.expired += 1,
            ConsentState::NeverAsked => self.never_asked += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.granted + self.withdrawn + self.expired + self.never_asked
    }

    /// The counts in display order: granted, withdrawn, expired, never asked.
    pub fn counts(&self) -> [u64; 4] {
        [self.granted, self.withdrawn, self.expired, self.never_asked]
    }
}

/// The latest event of each customer for one purpose, as events stream in from the ledger in
/// any order. Customers are indexed by their internal id, which the server assigns densely
/// (1, 2, 3, …), so a vector indexed by id is both the smallest and the fastest map.
#[derive(Debug, Clone, Default)]
pub struct LatestEvents {
    slots: Vec<Option<Latest>>,
    customers_with_events: u64,
}

#[derive(Debug, Clone, Copy)]
struct Latest {
    recorded_at: NaiveDateTime,
    event_id: i64,
    status: ConsentStatus,
}

impl LatestEvents {
    /// Room for customer ids up to `max_customer_id`.
    pub fn with_capacity(max_customer_id: i64) -> LatestEvents {
        LatestEvents {
            slots: vec![None; usize::try_from(max_customer_id.max(0)).unwrap_or(0) + 1],
            customers_with_events: 0,
        }
    }

    /// Takes one event into account: it replaces the customer's latest one if it was recorded
    /// later, or at the same instant but entered later (a higher event id).
    pub fn offer(&mut self, customer_id: i64, event_id: i64, event: Event) {
        let Ok(index) = usize::try_from(customer_id) else {
            return;
        };
        if index >= self.slots.len() {
            self.slots.resize(index + 1, None);
        }
        let slot = &mut self.slots[index];
        match slot {
            Some(l) if (l.recorded_at, l.event_id) >= (event.recorded_at, event_id) => {}
            Some(l) => {
                *l = Latest {
                    recorded_at: event.recorded_at,
                    event_id,
                    status: event.status,
                }
            }
            None => {
                self.customers_with_events += 1;
                *slot = Some(Latest {
                    recorded_at: event.recorded_at,
                    event_id,
                    status: event.status,
                });
            }
        }
    }

    fn states(
        &self,
        at: NaiveDateTime,
        validity: TimeDelta,
    ) -> impl Iterator<Item = (i64, ConsentState)> + '_ {
        self.slots.iter().enumerate().filter_map(move |(id, slot)| {
            slot.map(|l| {
                let event = Event {
                    status: l.status,
                    recorded_at: l.recorded_at,
                };
                (id as i64, state_of_latest(&event, at, validity))
            })
        })
    }

    /// The counts at `at`, given that only events at or before `at` were offered and that
    /// `population` customers are on file (those without an event were never asked).
    pub fn tally(&self, at: NaiveDateTime, validity: TimeDelta, population: u64) -> Tally {
        let mut tally = Tally::default();
        for (_, state) in self.states(at, validity) {
            tally.add(&state);
        }
        tally.never_asked = population.saturating_sub(self.customers_with_events);
        tally
    }

    /// The customers among `all_ids` (ascending) whose consent permits processing at `at`
    /// under `basis`, ascending. Only events at or before `at` may have been offered.
    pub fn permitted(
        &self,
        at: NaiveDateTime,
        validity: TimeDelta,
        basis: LegalBasis,
        all_ids: impl IntoIterator<Item = i64>,
    ) -> Vec<i64> {
        match basis {
            // Only customers with an active grant: no need to look at anyone else.
            LegalBasis::Consent => self
                .states(at, validity)
                .filter(|(_, s)| s.permits(basis))
                .map(|(id, _)| id)
                .collect(),
            LegalBasis::LegitimateInterest => all_ids
                .into_iter()
                .filter(|&id| {
                    let latest = usize::try_from(id).ok().and_then(|i| self.slots.get(i));
                    match latest.copied().flatten() {
                        Some(l) => l.status != ConsentStatus::Withdrawn,
                        None => true,
                    }
                })
                .collect(),
        }
    }
}

/// A count as it may be shown: exactly, or as `<N` when it is positive but below the policy's
/// minimum cell size (or hidden alongside such a count so it cannot be worked out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ShownCount {
    /// The count, or null when it is suppressed.
    pub count: Option<u64>,
    /// What to display: the count, or `<N` when suppressed.
    pub display: String,
}

/// Shows one row of counts that add up to a known total (the customers on file). Counts
/// `0 < c < min_cell_size` are suppressed; if only one is, the smallest other positive count
/// is suppressed too, because otherwise the total minus the others would give it away.
pub fn shown_row(counts: &[u64], min_cell_size: u64) -> Vec<ShownCount> {
    let mut hidden: Vec<bool> = counts.iter().map(|&c| c > 0 && c < min_cell_size).collect();
    if hidden.iter().filter(|&&h| h).count() == 1 {
        let partner = counts
            .iter()
            .enumerate()
            .filter(|&(i, &c)| !hidden[i] && c > 0)
            .min_by_key(|&(_, &c)| c)
            .map(|(i, _)| i);
        if let Some(i) = partner {
            hidden[i] = true;
        }
    }
    counts
        .iter()
        .zip(hidden)
        .map(|(&c, h)| {
            if h {
                ShownCount {
                    count: None,
                    display: format!("<{min_cell_size}"),
                }
            } else {
                ShownCount {
                    count: Some(c),
                    display: c.to_string(),
                }
            }
        })
        .collect()
}

/// The ends of the last `months` calendar months up to `now`, oldest first: midnight UTC on the
/// first day of each following month, and `now` itself for the month in progress.
pub fn month_ends(now: NaiveDateTime, months: u32) -> Vec<NaiveDateTime> {
    let mut ends = vec![now];
    let mut first = NaiveDate::from_ymd_opt(now.year(), now.month(), 1).expect("day 1 exists");
    for _ in 1..months {
        let instant = first.and_hms_opt(0, 0, 0).expect("midnight exists");
        ends.push(instant);
        first = first
            .checked_sub_months(chrono::Months::new(1))
            .expect("a month earlier exists");
    }
    ends.reverse();
    ends
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_instant;

    fn t(s: &str) -> NaiveDateTime {
        parse_instant(s).unwrap()
    }
    fn ev(status: ConsentStatus, at: &str) -> Event {
        Event {
            status,
            recorded_at: t(at),
        }
    }
    const YEAR: TimeDelta = TimeDelta::days(365);
    use ConsentStatus::{Granted, Withdrawn};

    #[test]
    fn the_latest_event_wins_whatever_order_events_arrive_in() {
        let mut latest = LatestEvents::with_capacity(3);
        // Customer 1: granted, then withdrawn; offered newest first.
        latest.offer(1, 2, ev(Withdrawn, "2025-03-01"));
        latest.offer(1, 1, ev(Granted, "2025-01-01"));
        // Customer 2: two events at the same instant; the one entered last (id 4) wins.
        latest.offer(2, 4, ev(Withdrawn, "2025-02-01"));
        latest.offer(2, 3, ev(Granted, "2025-02-01"));
        // Customer 3: a grant that has lapsed by the instant.
        latest.offer(3, 5, ev(Granted, "2023-06-01"));
        let at = t("2025-06-01");
        assert_eq!(
            latest.tally(at, YEAR, 10),
            Tally {
                granted: 0,
                withdrawn: 2,
                expired: 1,
                never_asked: 7
            }
        );
        assert!(
            latest
                .permitted(at, YEAR, LegalBasis::Consent, 1..=10)
                .is_empty()
        );
        assert_eq!(
            latest.permitted(at, YEAR, LegalBasis::LegitimateInterest, 1..=5),
            vec![3, 4, 5],
            "under legitimate interest only an objection stops processing"
        );
    }

    #[test]
    fn active_grants_are_permitted_in_id_order() {
        let mut latest = LatestEvents::with_capacity(0);
        latest.offer(7, 1, ev(Granted, "2025-01-01"));
        latest.offer(2, 2, ev(Granted, "2025-01-02"));
        assert_eq!(
            latest.permitted(t("2025-02-01"), YEAR, LegalBasis::Consent, []),
            vec![2, 7]
        );
    }

    #[test]
    fn small_counts_are_hidden_with_a_partner_when_alone() {
        let row = shown_row(&[120, 3, 0, 400], 10);
        let display: Vec<&str> = row.iter().map(|c| c.display.as_str()).collect();
        assert_eq!(display, ["<10", "<10", "0", "400"]);
        assert_eq!(row[1].count, None);
        let row = shown_row(&[120, 3, 5, 400], 10);
        let display: Vec<&str> = row.iter().map(|c| c.display.as_str()).collect();
        assert_eq!(display, ["120", "<10", "<10", "400"]);
        let row = shown_row(&[0, 0, 0, 12], 10);
        assert!(row.iter().all(|c| c.count.is_some()));
    }

    #[test]
    fn month_ends_run_oldest_first_and_end_now() {
        let now = t("2025-03-15T12:00:00Z");
        assert_eq!(
            month_ends(now, 3),
            vec![t("2025-02-01"), t("2025-03-01"), now]
        );
        assert_eq!(month_ends(now, 1), vec![now]);
    }
}
