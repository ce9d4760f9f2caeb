//! What the server's own KPI schedule evaluates on a given day.

use chrono::{NaiveDate, NaiveDateTime};

use super::{KpiError, Period, PeriodKind};

/// What a scheduled evaluation on `today` evaluates: the period containing yesterday, and
/// before it the last complete period when its newest evaluation (`last_evaluated_at`) was
/// made before it ended; left alone, a period evaluated for the last time while the server
/// was down on the day after it ended would stay partial for good.
pub fn scheduled_periods(
    kind: PeriodKind,
    today: NaiveDate,
    last_evaluated_at: Option<NaiveDateTime>,
) -> Result<Vec<Period>, KpiError> {
    let day = today.pred_opt().unwrap_or(today);
    let period = Period::containing(kind, day)?;
    let last = Period::last_complete(kind, today)?;
    let stale = last_evaluated_at.is_some_and(|at| !last.coverage_at(at).complete);
    Ok(if stale && last != period {
        vec![last, period]
    } else {
        vec![period]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_evaluates_a_last_period_left_partial_again() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        let labels = |today, at: Option<NaiveDateTime>| {
            scheduled_periods(PeriodKind::Month, today, at)
                .unwrap()
                .iter()
                .map(Period::label)
                .collect::<Vec<_>>()
        };
        let on_last_day = d(11, 30).and_hms_opt(12, 0, 0);
        let day_after = d(12, 1).and_hms_opt(0, 5, 0);
        // The day after the month ended: yesterday's month is the last complete one.
        assert_eq!(labels(d(12, 1), on_last_day), ["2026-11"]);
        // The server missed that day: November is evaluated again, then December so far.
        assert_eq!(labels(d(12, 3), on_last_day), ["2026-11", "2026-12"]);
        // November was evaluated complete, or never: December only.
        assert_eq!(labels(d(12, 3), day_after), ["2026-12"]);
        assert_eq!(labels(d(12, 3), None), ["2026-12"]);
    }
}
