//! Stored drift measurements: a run's feature drift with the inputs it was measured from
//! (`drift_measurements`), one row per run, replaced by each new measurement.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::schema::drift_measurements;
use super::{DbConnection, DbResult};

/// What a run's feature drift was measured from; a stored measurement is read only when every
/// field but `valid_until` equals now's.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = drift_measurements)]
pub struct DriftInputs {
    pub run_id: i64,
    /// The day the behavioural features are computed as of.
    pub day: NaiveDate,
    /// The consent state's version.
    pub consent_version: i64,
    /// The trail's last entry that may have changed customer data.
    pub data_seq: i64,
    /// The next transaction id (it moves when transactions are loaded directly).
    pub next_transaction: i64,
    pub policy_version: String,
    /// The next instant, after the measurement, at which a grant lapsed or a future-dated
    /// consent event took effect (kept for information: a measurement counts the customers
    /// whose consent was active when it was made, and stands until the day, the data, the
    /// consent state or the policy changes).
    pub valid_until: Option<NaiveDateTime>,
}

/// The stored result (JSON) measured from `inputs` and when it was measured, if there is one.
pub fn stored(
    conn: &mut DbConnection,
    inputs: &DriftInputs,
) -> DbResult<Option<(String, NaiveDateTime)>> {
    use drift_measurements::dsl as d;
    let row: Option<(DriftInputs, String, NaiveDateTime)> = d::drift_measurements
        .filter(d::run_id.eq(inputs.run_id))
        .select((DriftInputs::as_select(), d::result, d::measured_at))
        .first(conn)
        .optional()?;
    Ok(row.and_then(|(stored, result, at)| {
        let same = DriftInputs {
            valid_until: inputs.valid_until,
            ..stored
        } == *inputs;
        same.then_some((result, at))
    }))
}

/// Keeps `result` (JSON) as the run's drift measured at `measured_at` from `inputs`, replacing
/// the run's previous measurement.
pub fn store(
    conn: &mut DbConnection,
    inputs: &DriftInputs,
    measured_at: NaiveDateTime,
    result: &str,
) -> DbResult<()> {
    use diesel::sql_types::{BigInt, Date, Nullable, Text, Timestamp};
    // The same upsert on SQLite and PostgreSQL; two processes measuring at once both win.
    diesel::sql_query(
        "INSERT INTO drift_measurements (run_id, day, consent_version, data_seq, \
         next_transaction, policy_version, valid_until, measured_at, result) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (run_id) DO UPDATE SET \
         day = excluded.day, consent_version = excluded.consent_version, \
         data_seq = excluded.data_seq, next_transaction = excluded.next_transaction, \
         policy_version = excluded.policy_version, valid_until = excluded.valid_until, \
         measured_at = excluded.measured_at, result = excluded.result",
    )
    .bind::<BigInt, _>(inputs.run_id)
    .bind::<Date, _>(inputs.day)
    .bind::<BigInt, _>(inputs.consent_version)
    .bind::<BigInt, _>(inputs.data_seq)
    .bind::<BigInt, _>(inputs.next_transaction)
    .bind::<Text, _>(&inputs.policy_version)
    .bind::<Nullable<Timestamp>, _>(inputs.valid_until)
    .bind::<Timestamp, _>(measured_at)
    .bind::<Text, _>(result)
    .execute(conn)?;
    Ok(())
}

/// When the stored measurement of run `run_id` was made, if there is one.
pub fn measured_at(conn: &mut DbConnection, run_id: i64) -> DbResult<Option<NaiveDateTime>> {
    use drift_measurements::dsl as d;
    Ok(d::drift_measurements
        .filter(d::run_id.eq(run_id))
        .select(d::measured_at)
        .first(conn)
        .optional()?)
}

/// Forgets every stored measurement (the next view measures again).
pub fn forget_all(conn: &mut DbConnection) -> DbResult<usize> {
    Ok(diesel::delete(drift_measurements::table).execute(conn)?)
}
