//! The sign-in throttle's counters (`auth::throttle` decides with them).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::sign_in_throttle;
use super::{DbConnection, DbResult};
use crate::auth::throttle::Record;

/// The record of each of `subjects` that has one.
pub fn records(conn: &mut DbConnection, subjects: &[String]) -> DbResult<Vec<Record>> {
    let rows: Vec<(i32, NaiveDateTime, Option<NaiveDateTime>)> = sign_in_throttle::table
        .filter(sign_in_throttle::subject.eq_any(subjects))
        .select((
            sign_in_throttle::failures,
            sign_in_throttle::last_failure,
            sign_in_throttle::locked_until,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(failures, last_failure, locked_until)| Record {
            failures: failures.max(0) as u32,
            last_failure,
            locked_until,
        })
        .collect())
}

/// The record of `subject`, if any.
pub fn record(conn: &mut DbConnection, subject: &str) -> DbResult<Option<Record>> {
    Ok(records(conn, &[subject.to_owned()])?.pop())
}

/// Replaces the record of `subject`; call inside `Db::write`.
pub fn put(conn: &mut DbConnection, subject: &str, record: &Record) -> DbResult<()> {
    remove(conn, subject)?;
    diesel::insert_into(sign_in_throttle::table)
        .values((
            sign_in_throttle::subject.eq(subject),
            sign_in_throttle::failures.eq(record.failures.min(i32::MAX as u32) as i32),
            sign_in_throttle::last_failure.eq(record.last_failure),
            sign_in_throttle::locked_until.eq(record.locked_until),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn remove(conn: &mut DbConnection, subject: &str) -> DbResult<()> {
    diesel::delete(sign_in_throttle::table.filter(sign_in_throttle::subject.eq(subject)))
        .execute(conn)?;
    Ok(())
}

/// Forgets records whose last failure is before `before` and that lock nobody out.
pub fn prune(conn: &mut DbConnection, before: NaiveDateTime) -> DbResult<usize> {
    Ok(diesel::delete(
        sign_in_throttle::table
            .filter(sign_in_throttle::last_failure.lt(before))
            .filter(
                sign_in_throttle::locked_until
                    .is_null()
                    .or(sign_in_throttle::locked_until.lt(before)),
            ),
    )
    .execute(conn)?)
}
