//! A KPI period set beside the period before it and the same period a year before, for the
//! whole population: the comparison people ask for first ("better than last month? than a year
//! ago?").

use chrono::{Datelike, NaiveDate};

use super::kpis::{KpisError, newest_matching};
use crate::db::Db;
use crate::db::kpi::{EvaluationRecord, LogFilter};
use crate::kpi::evaluate::ALL_SEGMENT;
use crate::kpi::period::Period;

/// The three periods compared, and per KPI (catalogue order) its newest evaluation in each.
#[derive(Debug, Clone)]
pub struct PeriodComparison {
    pub period: Period,
    pub previous: Option<Period>,
    pub year_before: Option<Period>,
    /// (KPI name, this period, the previous one, the same one a year before).
    pub rows: Vec<ComparedKpi>,
}

#[derive(Debug, Clone)]
pub struct ComparedKpi {
    pub kpi: &'static str,
    pub now: Option<EvaluationRecord>,
    pub previous: Option<EvaluationRecord>,
    pub year_before: Option<EvaluationRecord>,
}

/// The same period of the year before (the period containing the same day a year earlier).
fn year_before(p: &Period) -> Option<Period> {
    let s = p.start();
    let day = NaiveDate::from_ymd_opt(s.year() - 1, s.month(), s.day().min(28))?;
    Period::containing(p.kind(), day).ok()
}

/// `period` compared with the period before and the same one a year before, for `all`.
pub fn compare(db: &Db, period: Period) -> Result<PeriodComparison, KpisError> {
    let previous = period.previous().ok();
    let year = year_before(&period);
    let from = year.map(|y| y.start()).unwrap_or(period.start());
    let filter = LogFilter {
        period_kind: Some(period.kind()),
        segment: Some(ALL_SEGMENT.into()),
        from: Some(from),
        to: Some(period.start()),
        ..Default::default()
    };
    let mut conn = db.conn()?;
    let records = newest_matching(&mut conn, db, &filter)?;
    let find = |p: Option<Period>, kpi: &str| {
        p.and_then(|p| {
            records
                .iter()
                .find(|r| r.kpi == kpi && r.period_start == p.start() && r.run_id.is_none())
                .cloned()
        })
    };
    let rows = crate::kpi::Kpi::ALL
        .iter()
        .map(|k| ComparedKpi {
            kpi: k.name(),
            now: find(Some(period), k.name()),
            previous: find(previous, k.name()),
            year_before: find(year, k.name()),
        })
        .collect();
    Ok(PeriodComparison {
        period,
        previous,
        year_before: year,
        rows,
    })
}
