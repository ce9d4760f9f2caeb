//! Counts computed from the whole database, kept per process until what they rest on changes.
//!
//! Some figures a page shows on every view take a walk of a million rows (a purpose's consent
//! counts, their month-end history, the consent-selection history). They change only when a
//! version they rest on changes (the consent state, the ledger's or the customers' highest id,
//! the trail head, the policy) or when time passes an instant at which they would (a grant
//! lapses, a future-dated event takes effect). So each process keeps the newest answer per
//! slot (a database and what was asked of it) with those versions as its key, for the span of
//! time in which it holds, and computes it again when either no longer matches.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use chrono::{NaiveDateTime, TimeDelta};

use crate::db::{self, Db, DbError};

/// The most slots one kept map holds.
const MAX_SLOTS: usize = 512;

/// When a kept answer holds: from the instant it was computed for until the next instant at
/// which it could change (`None`: until a version changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from: NaiveDateTime,
    pub until: Option<NaiveDateTime>,
}

impl Span {
    fn holds_at(&self, at: NaiveDateTime) -> bool {
        self.from <= at && self.until.is_none_or(|until| at < until)
    }
}

/// The newest answer per slot `S`, valid while its versions `K` are the current ones.
pub struct Kept<S, K, V> {
    kept: Mutex<HashMap<S, Entry<K, V>>>,
}

struct Entry<K, V> {
    versions: K,
    span: Option<Span>,
    value: V,
}

impl<S, K, V> Default for Kept<S, K, V> {
    fn default() -> Self {
        Kept {
            kept: Mutex::new(HashMap::new()),
        }
    }
}

impl<S: Eq + Hash, K: Clone, V: Clone> Kept<S, K, V> {
    /// The kept answer for `slot` and the versions it was computed from, when it holds at `at`
    /// (any instant when `at` is `None`). The lock is not held while the caller checks them.
    fn lookup(&self, slot: &S, at: Option<NaiveDateTime>) -> Option<(K, V)> {
        let kept = self.kept.lock().ok()?;
        kept.get(slot)
            .filter(|entry| match (entry.span, at) {
                (Some(span), Some(at)) => span.holds_at(at),
                (Some(_), None) => false,
                (None, _) => true,
            })
            .map(|entry| (entry.versions.clone(), entry.value.clone()))
    }

    fn keep(&self, slot: S, versions: K, span: Option<Span>, value: &V) {
        if let Ok(mut kept) = self.kept.lock() {
            // Slots are few by design (a database and what its pages ask); a page whose
            // parameters come from the request could still name many, so past this many the
            // old answers go and are computed again when asked.
            if kept.len() >= MAX_SLOTS && !kept.contains_key(&slot) {
                kept.clear();
            }
            kept.insert(
                slot,
                Entry {
                    versions,
                    span,
                    value: value.clone(),
                },
            );
        }
    }

    /// The kept answer for `slot` when `still_holds` says the versions it was computed from
    /// still describe the database and it holds at `at`; else `compute`'s, kept in its place
    /// with the versions and span it returns. `compute` must read its versions before the
    /// data it computes from, so a change made meanwhile is seen by the next check. Both are
    /// handed `with` (a connection, say).
    pub fn get_or_compute_checked<C: ?Sized, E>(
        &self,
        slot: S,
        at: Option<NaiveDateTime>,
        with: &mut C,
        still_holds: impl FnOnce(&K, &mut C) -> Result<bool, E>,
        compute: impl FnOnce(&mut C) -> Result<(K, V, Option<Span>), E>,
    ) -> Result<V, E> {
        if let Some((versions, value)) = self.lookup(&slot, at)
            && still_holds(&versions, with)?
        {
            return Ok(value);
        }
        let (versions, value, span) = compute(with)?;
        self.keep(slot, versions, span, &value);
        Ok(value)
    }
}

impl<S: Eq + Hash, K: Clone + Eq, V: Clone> Kept<S, K, V> {
    /// The kept answer for `slot` when it was computed from `versions` and holds at `at`
    /// (any instant when `at` is `None`); else `compute`'s, which is kept in its place with
    /// the span it returns (`None`: it holds at any instant).
    pub fn get_or_compute<E>(
        &self,
        slot: S,
        versions: K,
        at: Option<NaiveDateTime>,
        compute: impl FnOnce() -> Result<(V, Option<Span>), E>,
    ) -> Result<V, E> {
        if let Some((kept, value)) = self.lookup(&slot, at)
            && kept == versions
        {
            return Ok(value);
        }
        let (value, span) = compute()?;
        self.keep(slot, versions, span, &value);
        Ok(value)
    }
}

/// What a page reads from the database, kept per process for as long as the database shows
/// the same data (PostgreSQL's snapshot, [`Db::shown_state`]) and time has not passed an
/// instant at which it would change.
///
/// A dashboard view reads a dozen statements' worth of data that change a few times a day;
/// with several servers on one database, a view costs the database about what it costs the
/// server. Kept this way, a view between two writes costs the database one statement, and
/// every process shows what the database holds: the mark is the database's own, so an answer
/// kept by one process is given up the moment another writes anything. On SQLite (no such
/// mark) every view computes its answer.
pub struct Shown<S, V> {
    kept: Kept<S, String, V>,
}

impl<S, V> Default for Shown<S, V> {
    fn default() -> Self {
        Shown {
            kept: Kept::default(),
        }
    }
}

impl<S: Eq + Hash, V: Clone> Shown<S, V> {
    /// The answer kept for `slot` when the database still shows the data it was computed from
    /// and it still holds now; else `compute`'s. `compute` is handed the instant it answers for
    /// and returns, beside its answer, the next instant after it at which the answer could
    /// change by time alone (a grant lapses); every answer is also computed again from the next
    /// day on, for pages that name today. It is kept only when the database showed the same
    /// data before and after it (so it read one state, and wrote nothing) and that instant is
    /// still to come.
    pub fn get_or_compute<E: From<DbError>>(
        &self,
        db: &Db,
        slot: S,
        compute: impl FnOnce(NaiveDateTime) -> Result<(V, Option<NaiveDateTime>), E>,
    ) -> Result<V, E> {
        self.get_or_compute_with(db::now, || db.shown_state(), slot, compute)
    }

    /// [`Shown::get_or_compute`] with the clock and the database's mark given.
    fn get_or_compute_with<E: From<DbError>>(
        &self,
        clock: impl Fn() -> NaiveDateTime,
        mark: impl Fn() -> db::DbResult<Option<String>>,
        slot: S,
        compute: impl FnOnce(NaiveDateTime) -> Result<(V, Option<NaiveDateTime>), E>,
    ) -> Result<V, E> {
        let now = clock();
        let Some(before) = mark()? else {
            return Ok(compute(now)?.0);
        };
        if let Some((shown, value)) = self.kept.lookup(&slot, Some(now))
            && shown == before
        {
            return Ok(value);
        }
        let (value, changes_at) = compute(now)?;
        let tomorrow = (now.date() + TimeDelta::days(1)).and_time(chrono::NaiveTime::MIN);
        let until = changes_at.map_or(tomorrow, |at| at.min(tomorrow));
        if clock() < until && mark()?.as_ref() == Some(&before) {
            let span = Span {
                from: now,
                until: Some(until),
            };
            self.kept.keep(slot, before, Some(span), &value);
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use std::cell::Cell;

    fn at(hour: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 12, 1)
            .unwrap()
            .and_hms_opt(hour, 0, 0)
            .unwrap()
    }

    /// Asks `kept` for slot "db" and counts how often the answer had to be computed.
    fn ask(
        kept: &Kept<&'static str, i64, u32>,
        computed: &Cell<u32>,
        versions: i64,
        when: NaiveDateTime,
        until: Option<NaiveDateTime>,
    ) -> u32 {
        kept.get_or_compute("db", versions, Some(when), || {
            computed.set(computed.get() + 1);
            Ok::<_, ()>((computed.get(), Some(Span { from: when, until })))
        })
        .unwrap()
    }

    #[test]
    fn an_answer_is_kept_while_its_versions_match_and_its_span_holds() {
        let kept = Kept::default();
        let computed = Cell::new(0);
        assert_eq!(ask(&kept, &computed, 1, at(10), Some(at(12))), 1);
        assert_eq!(ask(&kept, &computed, 1, at(11), Some(at(12))), 1);
        // A grant lapsed at noon: the kept answer no longer holds.
        assert_eq!(ask(&kept, &computed, 1, at(12), None), 2);
        assert_eq!(ask(&kept, &computed, 1, at(20), None), 2);
        // The state changed: its version moved on.
        assert_eq!(ask(&kept, &computed, 2, at(20), None), 3);
        // An instant before the one the answer was computed for is never served from it.
        assert_eq!(ask(&kept, &computed, 2, at(19), None), 4);
    }

    #[test]
    fn each_slot_keeps_only_its_newest_answer() {
        let kept: Kept<&str, i64, u32> = Kept::default();
        for version in 0..100 {
            kept.get_or_compute("db", version, None, || Ok::<_, ()>((1, None)))
                .unwrap();
        }
        kept.get_or_compute("other", 0, None, || Ok::<_, ()>((2, None)))
            .unwrap();
        assert_eq!(kept.kept.lock().unwrap().len(), 2);
        // The old versions are gone, so asking for one computes it again.
        let again = kept
            .get_or_compute("db", 0, None, || Ok::<_, ()>((3, None)))
            .unwrap();
        assert_eq!(again, 3);
    }

    #[test]
    fn a_checked_answer_is_kept_until_the_check_fails() {
        let kept: Kept<&str, i64, u32> = Kept::default();
        let computed = Cell::new(0);
        let ask = |watermark: i64, holds: bool| {
            kept.get_or_compute_checked(
                "db",
                None,
                &mut (),
                |&kept_watermark, _| {
                    assert_eq!(kept_watermark, 10, "the check sees the kept versions");
                    Ok::<_, ()>(holds)
                },
                |_| {
                    computed.set(computed.get() + 1);
                    Ok((watermark, computed.get(), None))
                },
            )
            .unwrap()
        };
        assert_eq!(ask(10, true), 1);
        assert_eq!(ask(10, true), 1);
        assert_eq!(ask(10, false), 2);
        assert_eq!(computed.get(), 2);
    }

    #[test]
    fn a_failed_computation_keeps_nothing() {
        let kept: Kept<&str, i64, u32> = Kept::default();
        assert_eq!(
            kept.get_or_compute("db", 1, None, || Err::<(u32, _), _>("locked")),
            Err("locked")
        );
        assert_eq!(
            kept.get_or_compute("db", 1, None, || Ok::<_, &str>((7, None))),
            Ok(7)
        );
    }

    /// Asks `shown` at `now` with the database showing `mark`; the answer is the number of
    /// computations so far. Each computation sees `during` as the mark after it and says the
    /// answer changes by time at `changes_at`.
    fn ask_shown(
        shown: &Shown<&'static str, u32>,
        computed: &Cell<u32>,
        now: NaiveDateTime,
        mark: Option<&'static str>,
        during: Option<&'static str>,
        changes_at: Option<NaiveDateTime>,
    ) -> u32 {
        let marks = Cell::new(0);
        shown
            .get_or_compute_with(
                || now,
                || {
                    marks.set(marks.get() + 1);
                    Ok(if marks.get() == 1 { mark } else { during }.map(str::to_owned))
                },
                "page",
                |at| {
                    assert_eq!(at, now);
                    computed.set(computed.get() + 1);
                    Ok::<_, DbError>((computed.get(), changes_at))
                },
            )
            .unwrap()
    }

    #[test]
    fn slots_named_by_requests_cannot_grow_without_bound() {
        let kept: Kept<u32, i64, u32> = Kept::default();
        for slot in 0..(MAX_SLOTS as u32 * 3) {
            kept.get_or_compute(slot, 0, None, || Ok::<_, ()>((slot, None)))
                .unwrap();
            assert!(kept.kept.lock().unwrap().len() <= MAX_SLOTS);
        }
    }

    #[test]
    fn a_page_is_kept_while_the_database_shows_the_same_data_and_time_changes_nothing() {
        let shown = Shown::default();
        let computed = Cell::new(0);
        let lapse = Some(at(12));
        let same = |mark| (Some(mark), Some(mark));
        let ask = |now, (mark, during): (Option<&'static str>, Option<&'static str>)| {
            ask_shown(&shown, &computed, now, mark, during, lapse)
        };
        assert_eq!(ask(at(9), same("a")), 1);
        assert_eq!(
            ask(at(10), same("a")),
            1,
            "kept: same data, before the lapse"
        );
        // Someone wrote: the mark moved on.
        assert_eq!(ask(at(10), same("b")), 2);
        assert_eq!(ask(at(11), same("b")), 2);
        // A grant lapsed at noon: the same data no longer means the same page.
        assert_eq!(ask(at(12), same("b")), 3);
        // Computed while someone wrote: not kept, since it may mix both states.
        assert_eq!(ask(at(9), (Some("c"), Some("d"))), 4);
        assert_eq!(ask(at(9), same("c")), 5);
        assert_eq!(ask(at(9), same("c")), 5);
        // An answer is never served for an instant before the one it was computed for.
        assert_eq!(ask(at(8), same("c")), 6);
    }

    #[test]
    fn a_page_is_computed_again_from_the_next_day_and_always_without_a_mark() {
        let shown = Shown::default();
        let computed = Cell::new(0);
        let late = at(23) + TimeDelta::minutes(59);
        assert_eq!(
            ask_shown(&shown, &computed, late, Some("a"), Some("a"), None),
            1
        );
        assert_eq!(
            ask_shown(&shown, &computed, late, Some("a"), Some("a"), None),
            1
        );
        let next_day = at(0) + TimeDelta::days(1);
        assert_eq!(
            ask_shown(&shown, &computed, next_day, Some("a"), Some("a"), None),
            2
        );
        // SQLite: no mark, nothing kept.
        assert_eq!(ask_shown(&shown, &computed, next_day, None, None, None), 3);
        assert_eq!(ask_shown(&shown, &computed, next_day, None, None, None), 4);
        // A lapse already past when the computation ends: not kept.
        let past = Some(next_day - TimeDelta::seconds(1));
        assert_eq!(
            ask_shown(&shown, &computed, next_day, Some("b"), Some("b"), past),
            5
        );
        assert_eq!(
            ask_shown(&shown, &computed, next_day, Some("b"), Some("b"), past),
            6
        );
    }
}
