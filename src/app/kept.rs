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

use chrono::NaiveDateTime;

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
}
