//! Calendar periods over which KPIs are evaluated: ISO weeks, months and quarters.
//!
//! A [`Period`] is half-open, `[start, end)`, so consecutive periods tile the calendar
//! without overlap and `end` of one period is `start` of the next.

use std::fmt;

use chrono::{Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use serde::{Deserialize, Serialize};

use super::KpiError;

/// The length of a KPI period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    /// ISO 8601 week, Monday to Sunday.
    Week,
    /// Calendar month.
    Month,
    /// Calendar quarter (January–March, April–June, …).
    Quarter,
}

impl PeriodKind {
    /// Every kind, shortest first.
    pub const ALL: [PeriodKind; 3] = [PeriodKind::Week, PeriodKind::Month, PeriodKind::Quarter];

    /// The name used in settings and on the command line (`week`, `month`, `quarter`).
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
            PeriodKind::Quarter => "quarter",
        }
    }

    /// Parses `week`, `month` or `quarter` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, KpiError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "week" => Ok(PeriodKind::Week),
            "month" => Ok(PeriodKind::Month),
            "quarter" => Ok(PeriodKind::Quarter),
            _ => Err(KpiError::UnknownPeriodKind(s.to_owned())),
        }
    }
}

impl fmt::Display for PeriodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One calendar period `[start, end)`.
///
/// Only constructible through [`Period::containing`] and its neighbours, so `start` is always
/// aligned to the kind (a Monday, the 1st of a month, the 1st of a quarter) and `end` is the
/// start of the following period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Period {
    kind: PeriodKind,
    start: NaiveDate,
    end: NaiveDate,
}

impl Period {
    /// The period of `kind` that contains `date`.
    pub fn containing(kind: PeriodKind, date: NaiveDate) -> Result<Self, KpiError> {
        let start = match kind {
            PeriodKind::Week => {
                let back = u64::from(date.weekday().num_days_from_monday());
                date.checked_sub_days(Days::new(back))
            }
            PeriodKind::Month => date.with_day(1),
            PeriodKind::Quarter => {
                let first_month = (date.month0() / 3) * 3 + 1;
                NaiveDate::from_ymd_opt(date.year(), first_month, 1)
            }
        }
        .ok_or(KpiError::DateOutOfRange(date))?;
        let end = Self::advance(kind, start).ok_or(KpiError::DateOutOfRange(date))?;
        Ok(Period { kind, start, end })
    }

    fn advance(kind: PeriodKind, start: NaiveDate) -> Option<NaiveDate> {
        match kind {
            PeriodKind::Week => start.checked_add_days(Days::new(7)),
            PeriodKind::Month => start.checked_add_months(Months::new(1)),
            PeriodKind::Quarter => start.checked_add_months(Months::new(3)),
        }
    }

    /// The kind of this period.
    pub fn kind(&self) -> PeriodKind {
        self.kind
    }

    /// First day of the period (inclusive).
    pub fn start(&self) -> NaiveDate {
        self.start
    }

    /// First day after the period (exclusive).
    pub fn end(&self) -> NaiveDate {
        self.end
    }

    /// Last day of the period (inclusive), for display.
    pub fn last_day(&self) -> NaiveDate {
        self.end
            .pred_opt()
            .expect("end is after start, so it has a predecessor")
    }

    /// Number of days in the period.
    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days()
    }

    /// Whether `date` falls in `[start, end)`.
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.start <= date && date < self.end
    }

    /// `[start, end)` as day numbers (days since 1970-01-01), the form transactions use.
    pub fn day_range(&self) -> (i32, i32) {
        (day_number(self.start), day_number(self.end))
    }

    /// The period of the same kind immediately before this one.
    pub fn previous(&self) -> Result<Self, KpiError> {
        let day_before = self
            .start
            .pred_opt()
            .ok_or(KpiError::DateOutOfRange(self.start))?;
        Self::containing(self.kind, day_before)
    }

    /// The period of the same kind immediately after this one.
    pub fn next(&self) -> Result<Self, KpiError> {
        Self::containing(self.kind, self.end)
    }

    /// Every period of `kind` from the one containing `from` to the one containing `to`,
    /// both included, in order. This is what a back-fill evaluates.
    pub fn between(
        kind: PeriodKind,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Self>, KpiError> {
        if from > to {
            return Err(KpiError::EmptyDateRange { from, to });
        }
        let last = Self::containing(kind, to)?;
        let mut period = Self::containing(kind, from)?;
        let mut out = vec![period];
        while period != last {
            period = period.next()?;
            out.push(period);
        }
        Ok(out)
    }

    /// The last period of `kind` that has ended by `today` (the one before the period
    /// containing `today`): what dashboards show by default, since the current period is
    /// still filling up.
    pub fn last_complete(kind: PeriodKind, today: NaiveDate) -> Result<Self, KpiError> {
        Self::containing(kind, today)?.previous()
    }

    /// The first period of `kind` that starts on or after `date`.
    pub fn first_from(kind: PeriodKind, date: NaiveDate) -> Result<Self, KpiError> {
        let p = Self::containing(kind, date)?;
        if p.start < date { p.next() } else { Ok(p) }
    }

    /// How many whole periods of `kind` start on or after `since` and have ended by `today`.
    pub fn complete_since(kind: PeriodKind, since: NaiveDate, today: NaiveDate) -> usize {
        let Ok(mut p) = Self::first_from(kind, since) else {
            return 0;
        };
        let mut n = 0;
        while p.end <= today {
            n += 1;
            match p.next() {
                Ok(next) => p = next,
                Err(_) => break,
            }
        }
        n
    }

    /// How much of the period an evaluation made at `at` saw: the days begun by then
    /// (0 before the start, all of them once the period has ended). An evaluation made
    /// before the end is partial: the period's transactions were not all in yet.
    pub fn coverage_at(&self, at: NaiveDateTime) -> Coverage {
        let days = self.days();
        let begun = (at.date() - self.start).num_days() + 1;
        let complete = at >= self.end.and_time(NaiveTime::MIN);
        Coverage {
            days_covered: if complete { days } else { begun.clamp(0, days) },
            days,
            complete,
        }
    }

    /// A short human label: `2024-W03` (ISO week-numbering year), `2024-01`, `2024-Q1`.
    pub fn label(&self) -> String {
        match self.kind {
            PeriodKind::Week => {
                let iso = self.start.iso_week();
                format!("{}-W{:02}", iso.year(), iso.week())
            }
            PeriodKind::Month => format!("{}-{:02}", self.start.year(), self.start.month()),
            PeriodKind::Quarter => {
                format!("{}-Q{}", self.start.year(), self.start.month0() / 3 + 1)
            }
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// How much of a period one evaluation covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Days of the period begun when it was evaluated.
    pub days_covered: i64,
    /// Days in the period.
    pub days: i64,
    /// Whether the period had ended when it was evaluated.
    pub complete: bool,
}

impl Coverage {
    /// `partial (N of M days)` for a partial period, `None` for a complete one.
    pub fn partial_label(&self) -> Option<String> {
        (!self.complete).then(|| format!("partial ({} of {} days)", self.days_covered, self.days))
    }
}

const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => panic!("1970-01-01 is a valid date"),
};

/// Days since 1970-01-01 (negative before it), the compact day form used by transactions.
pub fn day_number(date: NaiveDate) -> i32 {
    // chrono's NaiveDate range is about ±262,000 years, i.e. under 10^8 days: fits in i32.
    i32::try_from((date - EPOCH).num_days()).expect("chrono dates fit in i32 days")
}

/// The date of a day number; `None` outside chrono's date range.
pub fn date_of_day(day: i32) -> Option<NaiveDate> {
    if day >= 0 {
        EPOCH.checked_add_days(Days::new(day.unsigned_abs().into()))
    } else {
        EPOCH.checked_sub_days(Days::new(day.unsigned_abs().into()))
    }
}

/// Whether `date` is a Monday (the start of an ISO week).
pub fn is_monday(date: NaiveDate) -> bool {
    date.weekday() == Weekday::Mon
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn month_containing_and_neighbours_cross_year_boundaries() {
        let p = Period::containing(PeriodKind::Month, d(2024, 12, 31)).unwrap();
        assert_eq!((p.start(), p.end()), (d(2024, 12, 1), d(2025, 1, 1)));
        assert_eq!(p.next().unwrap().start(), d(2025, 1, 1));
        let jan = Period::containing(PeriodKind::Month, d(2025, 1, 1)).unwrap();
        assert_eq!(jan.previous().unwrap(), p);
        assert_eq!(jan.label(), "2025-01");
    }

    #[test]
    fn february_length_follows_leap_years() {
        let leap = Period::containing(PeriodKind::Month, d(2024, 2, 29)).unwrap();
        assert_eq!(leap.days(), 29);
        assert_eq!(leap.end(), d(2024, 3, 1));
        let common = Period::containing(PeriodKind::Month, d(2023, 2, 14)).unwrap();
        assert_eq!(common.days(), 28);
        // 1900 is not a leap year, 2000 is.
        assert_eq!(
            Period::containing(PeriodKind::Month, d(1900, 2, 1))
                .unwrap()
                .days(),
            28
        );
        assert_eq!(
            Period::containing(PeriodKind::Month, d(2000, 2, 1))
                .unwrap()
                .days(),
            29
        );
        // The month before March 2024 is the 29-day February.
        let march = Period::containing(PeriodKind::Month, d(2024, 3, 31)).unwrap();
        assert_eq!(march.previous().unwrap(), leap);
    }

    #[test]
    fn quarters_align_to_january_april_july_october() {
        let cases = [
            (d(2024, 1, 1), d(2024, 1, 1), d(2024, 4, 1), "2024-Q1"),
            (d(2024, 3, 31), d(2024, 1, 1), d(2024, 4, 1), "2024-Q1"),
            (d(2024, 4, 1), d(2024, 4, 1), d(2024, 7, 1), "2024-Q2"),
            (d(2024, 8, 15), d(2024, 7, 1), d(2024, 10, 1), "2024-Q3"),
            (d(2024, 12, 31), d(2024, 10, 1), d(2025, 1, 1), "2024-Q4"),
        ];
        for (date, start, end, label) in cases {
            let q = Period::containing(PeriodKind::Quarter, date).unwrap();
            assert_eq!(
                (q.start(), q.end(), q.label().as_str()),
                (start, end, label),
                "{date}"
            );
        }
        // Q1 of a leap year has 91 days, of a common year 90.
        assert_eq!(
            Period::containing(PeriodKind::Quarter, d(2024, 2, 1))
                .unwrap()
                .days(),
            91
        );
        assert_eq!(
            Period::containing(PeriodKind::Quarter, d(2023, 2, 1))
                .unwrap()
                .days(),
            90
        );
        let q1 = Period::containing(PeriodKind::Quarter, d(2025, 2, 1)).unwrap();
        assert_eq!(q1.previous().unwrap().label(), "2024-Q4");
    }

    #[test]
    fn iso_weeks_start_on_monday_and_use_the_iso_year() {
        // 2025-01-01 is a Wednesday; its ISO week starts Monday 2024-12-30 and is 2025-W01.
        let w = Period::containing(PeriodKind::Week, d(2025, 1, 1)).unwrap();
        assert_eq!((w.start(), w.end()), (d(2024, 12, 30), d(2025, 1, 6)));
        assert!(is_monday(w.start()));
        assert_eq!(w.label(), "2025-W01");
        // Sunday belongs to the week that started six days earlier.
        let sun = Period::containing(PeriodKind::Week, d(2024, 3, 3)).unwrap();
        assert_eq!(sun.start(), d(2024, 2, 26));
        // 2020 has 53 ISO weeks; 2021-01-03 (Sunday) is still in 2020-W53.
        assert_eq!(
            Period::containing(PeriodKind::Week, d(2021, 1, 3))
                .unwrap()
                .label(),
            "2020-W53"
        );
        // A week spanning 29 February.
        let leap = Period::containing(PeriodKind::Week, d(2024, 2, 29)).unwrap();
        assert_eq!((leap.start(), leap.end()), (d(2024, 2, 26), d(2024, 3, 4)));
        assert_eq!(leap.previous().unwrap().start(), d(2024, 2, 19));
    }

    #[test]
    fn between_lists_every_period_touching_the_range() {
        let months = Period::between(PeriodKind::Month, d(2023, 11, 15), d(2024, 2, 1)).unwrap();
        let labels: Vec<_> = months.iter().map(Period::label).collect();
        assert_eq!(labels, ["2023-11", "2023-12", "2024-01", "2024-02"]);
        for pair in months.windows(2) {
            assert_eq!(pair[0].end(), pair[1].start());
        }
        let one = Period::between(PeriodKind::Quarter, d(2024, 5, 1), d(2024, 5, 2)).unwrap();
        assert_eq!(one.len(), 1);
        let weeks = Period::between(PeriodKind::Week, d(2024, 12, 25), d(2025, 1, 8)).unwrap();
        assert_eq!(weeks.len(), 3);
        assert!(matches!(
            Period::between(PeriodKind::Month, d(2024, 2, 1), d(2024, 1, 1)),
            Err(KpiError::EmptyDateRange { .. })
        ));
    }

    #[test]
    fn the_last_complete_period_is_the_one_before_today() {
        // On the first day of a month that month has barely begun: the last complete one is
        // the month before.
        let m = Period::last_complete(PeriodKind::Month, d(2026, 12, 1)).unwrap();
        assert_eq!(m.label(), "2026-11");
        let m = Period::last_complete(PeriodKind::Month, d(2026, 11, 30)).unwrap();
        assert_eq!(m.label(), "2026-10");
        let w = Period::last_complete(PeriodKind::Week, d(2025, 1, 1)).unwrap();
        assert_eq!(w.label(), "2024-W52");
        let q = Period::last_complete(PeriodKind::Quarter, d(2025, 4, 1)).unwrap();
        assert_eq!(q.label(), "2025-Q1");
    }

    #[test]
    fn coverage_says_how_much_of_a_period_an_evaluation_saw() {
        let dec = Period::containing(PeriodKind::Month, d(2026, 12, 1)).unwrap();
        let at = |y, m, day, h| d(y, m, day).and_hms_opt(h, 0, 0).unwrap();
        let c = dec.coverage_at(at(2026, 12, 1, 2));
        assert_eq!((c.days_covered, c.days, c.complete), (1, 31, false));
        assert_eq!(c.partial_label().unwrap(), "partial (1 of 31 days)");
        // The last day is not over until midnight.
        let c = dec.coverage_at(at(2026, 12, 31, 23));
        assert_eq!((c.days_covered, c.complete), (31, false));
        let c = dec.coverage_at(at(2027, 1, 1, 0));
        assert!(c.complete && c.partial_label().is_none());
        assert_eq!(c.days_covered, 31);
        // Evaluated ahead of the period: nothing of it seen.
        assert_eq!(dec.coverage_at(at(2026, 11, 20, 9)).days_covered, 0);
    }

    #[test]
    fn complete_periods_since_publication_count_whole_periods_only() {
        // Published on 1 December: December counts once it has ended.
        let k = PeriodKind::Month;
        assert_eq!(Period::complete_since(k, d(2026, 12, 1), d(2026, 12, 1)), 0);
        assert_eq!(Period::complete_since(k, d(2026, 12, 1), d(2027, 1, 1)), 1);
        // Published mid-month: that month does not count, the next three do.
        assert_eq!(Period::complete_since(k, d(2026, 11, 15), d(2027, 3, 1)), 3);
        assert_eq!(
            Period::first_from(k, d(2026, 11, 15)).unwrap().label(),
            "2026-12"
        );
        assert_eq!(
            Period::complete_since(k, d(2026, 11, 15), d(2026, 11, 30)),
            0
        );
    }

    #[test]
    fn day_numbers_round_trip_and_match_the_unix_epoch() {
        assert_eq!(day_number(d(1970, 1, 1)), 0);
        assert_eq!(day_number(d(1969, 12, 31)), -1);
        assert_eq!(day_number(d(2000, 3, 1)), 11_017);
        for day in [-100_000, -1, 0, 1, 19_782, 2_000_000] {
            assert_eq!(day_number(date_of_day(day).unwrap()), day);
        }
        let p = Period::containing(PeriodKind::Month, d(1970, 2, 10)).unwrap();
        assert_eq!(p.day_range(), (31, 59));
    }

    #[test]
    fn kinds_parse_and_out_of_range_dates_are_errors() {
        assert_eq!(PeriodKind::parse(" Month ").unwrap(), PeriodKind::Month);
        assert!(matches!(
            PeriodKind::parse("year"),
            Err(KpiError::UnknownPeriodKind(_))
        ));
        let first = Period::containing(PeriodKind::Month, NaiveDate::MIN).unwrap();
        assert!(first.previous().is_err());
        assert!(Period::containing(PeriodKind::Month, NaiveDate::MAX).is_err());
    }
}
