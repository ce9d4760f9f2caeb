//! The KPI evaluation log (append-only) and the reads KPI evaluation needs: customer ids, the
//! transactions of a period pair, and the customers whose first purchase falls in a period.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::dsl::{exists, max, not};
use diesel::prelude::*;

use super::schema::{customers, kpi_evaluations, transactions};
use super::{DbConnection, DbResult};
use crate::kpi::{Kpi, PeriodKind};

/// One row of the evaluation log.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = kpi_evaluations)]
pub struct EvaluationRecord {
    pub id: i64,
    pub kpi: String,
    pub definition_version: String,
    pub policy_version: String,
    pub run_id: Option<i64>,
    /// The label the segment had when evaluated (`all` for the whole population).
    pub segment: String,
    /// The segment's number within `run_id`: with the run, the key of its series (`None` for
    /// `all`, and for rows logged before series were keyed so whose segment is unknown).
    pub segment_number: Option<i32>,
    pub period_kind: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub value: Option<f64>,
    pub undefined_reason: Option<String>,
    pub basis: i64,
    pub target: Option<f64>,
    pub alert_threshold: Option<f64>,
    pub status: String,
    pub evaluated_at: NaiveDateTime,
    pub evaluated_by: String,
    /// The process that made a scheduled evaluation (`None` when a person or the CLI asked).
    pub worker_id: Option<String>,
    /// The schedule claim a scheduled evaluation was made under.
    pub claim_id: Option<i64>,
}

impl EvaluationRecord {
    /// The period kind the row was evaluated for; `None` for a kind this version does not
    /// know.
    pub fn kind(&self) -> Option<PeriodKind> {
        PeriodKind::parse(&self.period_kind).ok()
    }
}

/// Every customer's internal id, ascending.
pub fn customer_ids(conn: &mut DbConnection) -> DbResult<Vec<i64>> {
    Ok(customers::table
        .select(customers::id)
        .order(customers::id.asc())
        .load(conn)?)
}

/// Streams `(customer id, day of the transaction, amount, order id)` of every transaction in
/// `[from, to)` to `f`, in no particular order (read from the covering `transactions_period`
/// index).
pub fn for_each_transaction(
    conn: &mut DbConnection,
    from: NaiveDateTime,
    to: NaiveDateTime,
    mut f: impl FnMut(i64, NaiveDate, f64, Option<String>),
) -> DbResult<()> {
    let range = transactions::occurred_at
        .ge(from)
        .and(transactions::occurred_at.lt(to));
    match conn {
        // SQLite keeps timestamps as text `YYYY-MM-DD HH:MM:SS[.f]`: reading the date from
        // its first ten bytes is several times faster than a full timestamp parse per row.
        DbConnection::Sqlite(c) => {
            let rows = transactions::table
                .filter(range)
                .select((
                    transactions::customer_id,
                    diesel::dsl::sql::<diesel::sql_types::Text>("occurred_at"),
                    transactions::amount,
                    transactions::order_id,
                ))
                .load_iter::<(i64, String, f64, Option<String>), diesel::connection::DefaultLoadingMode>(c)?;
            for row in rows {
                let (customer, at, amount, order) = row?;
                let day = date_prefix(&at).ok_or_else(|| {
                    diesel::result::Error::DeserializationError(
                        format!("transaction of customer {customer}: bad timestamp {at:?}").into(),
                    )
                })?;
                f(customer, day, amount, order);
            }
        }
        DbConnection::Postgres(c) => {
            let rows = transactions::table
                .filter(range)
                .select((
                    transactions::customer_id,
                    transactions::occurred_at,
                    transactions::amount,
                    transactions::order_id,
                ))
                .load_iter::<(i64, NaiveDateTime, f64, Option<String>), diesel::connection::DefaultLoadingMode>(c)?;
            for row in rows {
                let (customer, at, amount, order) = row?;
                f(customer, at.date(), amount, order);
            }
        }
    }
    Ok(())
}

/// The date of a `YYYY-MM-DD…` text.
fn date_prefix(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

/// Customers with a transaction in `[from, to)` and none before `from`: their first purchase
/// ever falls in the period. One probe of the `(customer_id, occurred_at)` index per row of
/// the period, instead of a scan of the whole history.
pub fn first_purchasers(
    conn: &mut DbConnection,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> DbResult<Vec<i64>> {
    let earlier = diesel::alias!(transactions as earlier);
    Ok(transactions::table
        .filter(transactions::occurred_at.ge(from))
        .filter(transactions::occurred_at.lt(to))
        .filter(not(exists(
            earlier
                .filter(
                    earlier
                        .field(transactions::customer_id)
                        .eq(transactions::customer_id),
                )
                .filter(earlier.field(transactions::occurred_at).lt(from))
                // Only the indexed columns: the probe stays inside the covering index.
                .select(earlier.field(transactions::customer_id)),
        )))
        .select(transactions::customer_id)
        .distinct()
        .load(conn)?)
}

/// Rows per multi-row INSERT (17 values a row, under SQLite's 32,766 bound values).
const BATCH: usize = 1_000;

/// Appends evaluations; ids are assigned here (call inside `Db::write`).
pub fn append(conn: &mut DbConnection, rows: &mut [EvaluationRecord]) -> DbResult<()> {
    let current: Option<i64> = kpi_evaluations::table
        .select(max(kpi_evaluations::id))
        .first(conn)?;
    for (id, row) in (current.unwrap_or(0) + 1..).zip(rows.iter_mut()) {
        row.id = id;
    }
    for chunk in rows.chunks(BATCH) {
        // Multi-row INSERTs are backend-specific in diesel.
        match conn {
            DbConnection::Sqlite(c) => diesel::insert_into(kpi_evaluations::table)
                .values(chunk)
                .execute(c)?,
            DbConnection::Postgres(c) => diesel::insert_into(kpi_evaluations::table)
                .values(chunk)
                .execute(c)?,
        };
    }
    Ok(())
}

/// What to read from the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LogFilter {
    pub period_kind: Option<PeriodKind>,
    /// A segment label (`all` for the whole population).
    pub segment: Option<String>,
    pub run_id: Option<i64>,
    pub segment_number: Option<i32>,
    pub kpi: Option<Kpi>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

/// Log rows matching the filter, oldest first (by id).
pub fn log(conn: &mut DbConnection, filter: &LogFilter) -> DbResult<Vec<EvaluationRecord>> {
    Ok(matching(filter)
        .order(kpi_evaluations::id.asc())
        .select(EvaluationRecord::as_select())
        .load(conn)?)
}

/// How many log rows match the filter and the newest one's id: the log only grows, and shrinks
/// only by retention, so the pair changes whenever the rows do.
pub fn log_version(conn: &mut DbConnection, filter: &LogFilter) -> DbResult<(i64, Option<i64>)> {
    Ok(matching(filter)
        .select((diesel::dsl::count_star(), max(kpi_evaluations::id)))
        .first(conn)?)
}

type Backend = <DbConnection as diesel::Connection>::Backend;

fn matching(filter: &LogFilter) -> kpi_evaluations::BoxedQuery<'static, Backend> {
    let mut q = kpi_evaluations::table.into_boxed();
    if let Some(kind) = filter.period_kind {
        q = q.filter(kpi_evaluations::period_kind.eq(kind.as_str()));
    }
    if let Some(segment) = &filter.segment {
        q = q.filter(kpi_evaluations::segment.eq(segment.clone()));
    }
    if let Some(run_id) = filter.run_id {
        q = q.filter(kpi_evaluations::run_id.eq(run_id));
    }
    if let Some(number) = filter.segment_number {
        q = q.filter(kpi_evaluations::segment_number.eq(number));
    }
    if let Some(kpi) = filter.kpi {
        q = q.filter(kpi_evaluations::kpi.eq(kpi.name()));
    }
    if let Some(from) = filter.from {
        q = q.filter(kpi_evaluations::period_start.ge(from));
    }
    if let Some(to) = filter.to {
        q = q.filter(kpi_evaluations::period_start.le(to));
    }
    q
}

/// Every period of a kind in the log, newest first, as (start, last day, when it was last
/// evaluated): enough to tell complete periods from partial ones without reading the rows.
pub fn periods(
    conn: &mut DbConnection,
    kind: PeriodKind,
) -> DbResult<Vec<(NaiveDate, NaiveDate, NaiveDateTime)>> {
    let rows: Vec<(NaiveDate, NaiveDate, Option<NaiveDateTime>)> = kpi_evaluations::table
        .filter(kpi_evaluations::period_kind.eq(kind.as_str()))
        .group_by((kpi_evaluations::period_start, kpi_evaluations::period_end))
        .select((
            kpi_evaluations::period_start,
            kpi_evaluations::period_end,
            max(kpi_evaluations::evaluated_at),
        ))
        .order(kpi_evaluations::period_start.desc())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(start, end, at)| Some((start, end, at?)))
        .collect())
}

/// The runs whose segments appear in the log for a period kind, newest first.
pub fn runs_logged(conn: &mut DbConnection, kind: PeriodKind) -> DbResult<Vec<i64>> {
    let runs: Vec<Option<i64>> = kpi_evaluations::table
        .filter(kpi_evaluations::period_kind.eq(kind.as_str()))
        .filter(kpi_evaluations::run_id.is_not_null())
        .select(kpi_evaluations::run_id)
        .distinct()
        .load(conn)?;
    let mut runs: Vec<i64> = runs.into_iter().flatten().collect();
    runs.sort_unstable_by(|a, b| b.cmp(a));
    Ok(runs)
}

/// Number of rows in the log.
pub fn count(conn: &mut DbConnection) -> DbResult<i64> {
    Ok(kpi_evaluations::table.count().get_result(conn)?)
}

/// Deletes evaluations made before `cutoff` (retention); returns how many.
pub fn delete_evaluated_before(conn: &mut DbConnection, cutoff: NaiveDateTime) -> DbResult<usize> {
    Ok(
        diesel::delete(kpi_evaluations::table.filter(kpi_evaluations::evaluated_at.lt(cutoff)))
            .execute(conn)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_from_the_text_prefix() {
        assert_eq!(
            date_prefix("2024-12-01 13:45:00.123"),
            NaiveDate::from_ymd_opt(2024, 12, 1)
        );
        assert_eq!(date_prefix("2024-02-30 00:00:00"), None);
        assert_eq!(date_prefix("20241201"), None);
    }
}
