//! Segmentation runs, their segments, memberships and strategies.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{
    attribute_columns, customers, segment_memberships, segment_strategies, segmentation_runs,
    segments,
};
use super::{DbConnection, DbResult};
use crate::segmentation::settings::{ColumnKind, KnownColumn};
use crate::segmentation::status::{RunStatus, UnknownStatus};

// A run's status is stored as its name: the conversion lives here, at the storage edge.
impl TryFrom<String> for RunStatus {
    type Error = UnknownStatus;

    fn try_from(stored: String) -> Result<RunStatus, UnknownStatus> {
        stored.parse()
    }
}

impl From<RunStatus> for String {
    fn from(status: RunStatus) -> String {
        status.as_str().to_owned()
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = segmentation_runs)]
pub struct RunRow {
    pub id: i64,
    pub algorithm: String,
    pub settings: String,
    pub purpose: String,
    pub policy_version: String,
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub status: RunStatus,
    pub stage: String,
    pub progress: f64,
    pub error: Option<String>,
    pub population_at: Option<NaiveDateTime>,
    pub included: Option<i64>,
    pub excluded: Option<String>,
    pub summary: Option<String>,
    pub previous_run_id: Option<i64>,
    pub stability_ari: Option<f64>,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
    pub published_by: Option<String>,
    pub published_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = segments)]
pub struct SegmentRow {
    pub run_id: i64,
    pub segment: i32,
    pub name: String,
    pub proposed_name: String,
    pub size: i64,
    pub profile: String,
    pub valuation: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = segment_strategies)]
pub struct StrategyRow {
    pub run_id: i64,
    pub segment: i32,
    pub channel: String,
    pub offer: String,
    pub service_level: String,
    pub favourable: bool,
    pub recorded_by: String,
    pub recorded_at: NaiveDateTime,
}

/// The next run id; call inside `Db::write`.
pub fn next_run_id(conn: &mut DbConnection) -> DbResult<i64> {
    use diesel::dsl::max;
    let current: Option<i64> = segmentation_runs::table
        .select(max(segmentation_runs::id))
        .first(conn)?;
    Ok(current.unwrap_or(0) + 1)
}

pub fn insert_run(conn: &mut DbConnection, run: &RunRow) -> DbResult<()> {
    diesel::insert_into(segmentation_runs::table)
        .values(run.clone())
        .execute(conn)?;
    Ok(())
}

/// What an audit's pages and the dashboards' run choices need of a run: not its settings or
/// its summary (180 KB at a million customers), which each view used to read and throw away
/// (on PostgreSQL, about 0.6 ms of the server's CPU per read).
#[derive(Debug, Clone, Queryable, Selectable, PartialEq)]
#[diesel(table_name = segmentation_runs)]
pub struct RunHead {
    pub id: i64,
    pub algorithm: String,
    #[diesel(deserialize_as = String)]
    pub status: RunStatus,
    pub previous_run_id: Option<i64>,
    pub published_at: Option<NaiveDateTime>,
}

pub fn run_head(conn: &mut DbConnection, id: i64) -> DbResult<Option<RunHead>> {
    Ok(segmentation_runs::table
        .find(id)
        .select(RunHead::as_select())
        .first(conn)
        .optional()?)
}

/// A run's segment names by segment number, without their profiles and valuations.
pub fn segment_names(conn: &mut DbConnection, run_id: i64) -> DbResult<Vec<(i32, String)>> {
    Ok(segments::table
        .filter(segments::run_id.eq(run_id))
        .order(segments::segment.asc())
        .select((segments::segment, segments::name))
        .load(conn)?)
}

pub fn run(conn: &mut DbConnection, id: i64) -> DbResult<Option<RunRow>> {
    Ok(segmentation_runs::table
        .find(id)
        .select(RunRow::as_select())
        .first(conn)
        .optional()?)
}

/// The newest runs first.
pub fn runs(conn: &mut DbConnection, limit: i64) -> DbResult<Vec<RunRow>> {
    Ok(segmentation_runs::table
        .order(segmentation_runs::id.desc())
        .limit(limit)
        .select(RunRow::as_select())
        .load(conn)?)
}

/// The published run's head, if any: `published` without the settings and the summary.
pub fn published_head(conn: &mut DbConnection) -> DbResult<Option<RunHead>> {
    Ok(published_first()
        .select(RunHead::as_select())
        .first(conn)
        .optional()?)
}

/// The published run, if any (at most one is published at a time).
pub fn published(conn: &mut DbConnection) -> DbResult<Option<RunRow>> {
    Ok(published_first()
        .select(RunRow::as_select())
        .first(conn)
        .optional()?)
}

type SqlBackend = <DbConnection as diesel::Connection>::Backend;

/// Published runs, newest first: the one rule `published` and `published_head` share, so
/// that the dashboards and the run pages never disagree on which run is published.
fn published_first() -> segmentation_runs::BoxedQuery<'static, SqlBackend> {
    segmentation_runs::table
        .filter(segmentation_runs::status.eq(RunStatus::Published.as_str()))
        .order(segmentation_runs::id.desc())
        .into_boxed()
}

pub fn set_progress(conn: &mut DbConnection, id: i64, stage: &str, progress: f64) -> DbResult<()> {
    diesel::update(segmentation_runs::table.find(id))
        .set((
            segmentation_runs::stage.eq(stage),
            segmentation_runs::progress.eq(progress),
        ))
        .execute(conn)?;
    Ok(())
}

/// Marks a queued run running and records the instant its population was frozen at; returns
/// whether it was queued (only one executor can start a run).
pub fn start(conn: &mut DbConnection, id: i64, population_at: NaiveDateTime) -> DbResult<bool> {
    let started = diesel::update(
        segmentation_runs::table
            .find(id)
            .filter(segmentation_runs::status.eq(RunStatus::Queued.as_str())),
    )
    .set((
        segmentation_runs::status.eq(RunStatus::Running.as_str()),
        segmentation_runs::population_at.eq(population_at),
        segmentation_runs::stage.eq("load"),
        segmentation_runs::progress.eq(0.05),
    ))
    .execute(conn)?;
    Ok(started == 1)
}

/// Fails an unfinished run; returns whether it was unfinished.
pub fn fail(conn: &mut DbConnection, id: i64, error: &str, at: NaiveDateTime) -> DbResult<bool> {
    let changed = diesel::update(segmentation_runs::table.find(id).filter(
        segmentation_runs::status.eq_any([RunStatus::Queued.as_str(), RunStatus::Running.as_str()]),
    ))
    .set((
        segmentation_runs::status.eq(RunStatus::Failed.as_str()),
        segmentation_runs::error.eq(error),
        segmentation_runs::finished_at.eq(at),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// What a finished run stores in one transaction with its move to draft.
pub struct Completed<'a> {
    pub included: i64,
    pub excluded: &'a str,
    pub summary: &'a str,
    pub segments: &'a [SegmentRow],
    /// JSON: what explains the memberships (`segmentation::explain::RunModel`).
    pub model: &'a str,
    pub previous_run_id: Option<i64>,
    pub stability_ari: Option<f64>,
    pub finished_at: NaiveDateTime,
}

/// Stores a run's memberships: (customer id, segment), any order, with per membership (same
/// order) what the model cannot reproduce (only RFM and DBSCAN runs have `details`). Written in
/// the transaction that then [`complete`]s the run (no key ties them to its segments, so the
/// memberships may come first); see [`write_memberships`] for how.
pub fn insert_memberships(
    conn: &mut DbConnection,
    id: i64,
    memberships: &[(i64, i32)],
    details: Option<&[String]>,
) -> DbResult<()> {
    write_memberships(conn, id, memberships, details)
}

/// Stores a run's segments and marks it done (a draft) with its results; its memberships are
/// written by [`insert_memberships`] in the same transaction.
pub fn complete(conn: &mut DbConnection, id: i64, done: &Completed<'_>) -> DbResult<()> {
    for segment in done.segments {
        diesel::insert_into(segments::table)
            .values(segment)
            .execute(conn)?;
    }
    diesel::update(segmentation_runs::table.find(id))
        .set((
            segmentation_runs::status.eq(RunStatus::Draft.as_str()),
            segmentation_runs::stage.eq("done"),
            segmentation_runs::progress.eq(1.0),
            segmentation_runs::included.eq(done.included),
            segmentation_runs::excluded.eq(done.excluded),
            segmentation_runs::summary.eq(done.summary),
            segmentation_runs::model.eq(done.model),
            segmentation_runs::previous_run_id.eq(done.previous_run_id),
            segmentation_runs::stability_ari.eq(done.stability_ari),
            segmentation_runs::finished_at.eq(done.finished_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Where a run's memberships are written on PostgreSQL before they become its partition of
/// `segment_memberships` (made, filled and renamed in the run's transaction: no other
/// transaction ever sees it under this name).
mod incoming {
    diesel::table! {
        segment_memberships_incoming (run_id, customer_id) {
            run_id -> BigInt,
            customer_id -> BigInt,
            segment -> Integer,
            detail -> Nullable<Text>,
        }
    }
}

/// COPYs `memberships` of run `id` (with their per-member details: RFM and DBSCAN runs) into
/// `segment_memberships_incoming`, made earlier in this transaction: one statement in
/// PostgreSQL's binary format, written here (a few bytes per row, where diesel's `Insertable`
/// rows cost a value and an encoding per column), with FREEZE: the rows are stored already
/// visible to every later transaction, so the first readers (the audit that follows the run)
/// do not mark each row's visibility on its page, and VACUUM has nothing to freeze later.
/// FREEZE is allowed because nobody else can see the table before this transaction commits.
fn copy_memberships(
    conn: &mut diesel::PgConnection,
    id: i64,
    memberships: &[(i64, i32)],
    details: Option<&[String]>,
) -> DbResult<usize> {
    use diesel::pg::CopyFormat;
    use incoming::segment_memberships_incoming as m;
    use std::io::Write;
    let written = diesel::copy_from(m::table)
        .from_raw_data(
            (m::run_id, m::customer_id, m::segment, m::detail),
            |sink: &mut dyn Write| -> Result<(), diesel::result::Error> {
                let mut out = std::io::BufWriter::with_capacity(1 << 16, sink);
                write_binary_memberships(&mut out, id, memberships, details)
                    .and_then(|()| out.flush())
                    .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
            },
        )
        .with_format(CopyFormat::Binary)
        .with_freeze(true)
        .execute(conn)?;
    Ok(written)
}

/// `memberships` of run `id` in `COPY … (FORMAT binary)`'s format, columns (run_id bigint,
/// customer_id bigint, segment integer, detail text): the header, each row as its field count
/// and each field's length and big-endian value (a NULL as length -1), and the trailer.
fn write_binary_memberships(
    out: &mut impl std::io::Write,
    id: i64,
    memberships: &[(i64, i32)],
    details: Option<&[String]>,
) -> std::io::Result<()> {
    out.write_all(b"PGCOPY\n\xff\r\n\0")?;
    out.write_all(&0i32.to_be_bytes())?; // flags
    out.write_all(&0i32.to_be_bytes())?; // header extension length
    let run = id.to_be_bytes();
    for (i, &(customer, segment)) in memberships.iter().enumerate() {
        let mut row = [0u8; 2 + 12 + 12 + 8];
        row[0..2].copy_from_slice(&4i16.to_be_bytes());
        row[2..6].copy_from_slice(&8i32.to_be_bytes());
        row[6..14].copy_from_slice(&run);
        row[14..18].copy_from_slice(&8i32.to_be_bytes());
        row[18..26].copy_from_slice(&customer.to_be_bytes());
        row[26..30].copy_from_slice(&4i32.to_be_bytes());
        row[30..34].copy_from_slice(&segment.to_be_bytes());
        out.write_all(&row)?;
        match details.and_then(|d| d.get(i)) {
            Some(text) => {
                let len = i32::try_from(text.len()).map_err(std::io::Error::other)?;
                out.write_all(&len.to_be_bytes())?;
                out.write_all(text.as_bytes())?;
            }
            None => out.write_all(&(-1i32).to_be_bytes())?,
        }
    }
    out.write_all(&(-1i16).to_be_bytes())
}

/// Writes `memberships` of run `id` (with their per-member details: RFM and DBSCAN runs) into
/// `$table`, a table with the columns of `segment_memberships`.
macro_rules! write_membership_rows {
    ($conn:expr, $table:ident, $id:expr, $memberships:expr, $details:expr) => {{
        use $table as m;
        match $details {
            Some(details) => {
                let rows = $memberships.iter().zip(details).map(
                    |(&(customer, segment), text): (&(i64, i32), &String)| {
                        (
                            m::run_id.eq($id),
                            m::customer_id.eq(customer),
                            m::segment.eq(segment),
                            m::detail.eq(text.clone()),
                        )
                    },
                );
                write_rows!($conn, m::table, rows)
            }
            None => {
                let rows = $memberships.iter().map(|&(customer, segment)| {
                    (
                        m::run_id.eq($id),
                        m::customer_id.eq(customer),
                        m::segment.eq(segment),
                    )
                });
                write_rows!($conn, m::table, rows)
            }
        }
    }};
}

/// Writes a run's memberships, in the caller's transaction.
///
/// SQLite: multi-row INSERTs into `segment_memberships`. PostgreSQL: `segment_memberships` is
/// partitioned by run (migration 2026-12-23-000201): the rows are COPYed into a bare table
/// whose CHECK says which run it holds, its primary key is built once from all of them (one
/// sort instead of a million insertions into the key's index, which took half the write),
/// and it is attached as the run's partition, the CHECK sparing PostgreSQL a scan to prove
/// that the rows belong there. Others see none of it before the commit, and a failure rolls
/// all of it back with the rest of the run's write.
fn write_memberships(
    conn: &mut DbConnection,
    id: i64,
    memberships: &[(i64, i32)],
    details: Option<&[String]>,
) -> DbResult<()> {
    use diesel::connection::SimpleConnection;
    match conn {
        DbConnection::Sqlite(_) => {
            write_membership_rows!(conn, segment_memberships, id, memberships, details)?;
        }
        DbConnection::Postgres(_) => {
            // `id` is a number: nothing of it needs quoting.
            conn.batch_execute(&format!(
                "CREATE TABLE segment_memberships_incoming (LIKE segment_memberships, \
                 CHECK (run_id = {id}))"
            ))?;
            let DbConnection::Postgres(c) = conn else {
                unreachable!("matched above")
            };
            copy_memberships(c, id, memberships, details)?;
            // The key's million entries sorted in memory (64 MB, the default, spills them to
            // temporary files), for this transaction only.
            conn.batch_execute(&format!(
                "SET LOCAL maintenance_work_mem = '256MB'; \
                 ALTER TABLE segment_memberships_incoming ADD CONSTRAINT \
                 segment_memberships_run_{id}_pkey PRIMARY KEY (run_id, customer_id); \
                 ALTER TABLE segment_memberships_incoming RENAME TO segment_memberships_run_{id}; \
                 ALTER TABLE segment_memberships ATTACH PARTITION segment_memberships_run_{id} \
                 FOR VALUES IN ({id});"
            ))?;
        }
    }
    Ok(())
}

/// A run's stored model (JSON), if it has one.
pub fn model(conn: &mut DbConnection, id: i64) -> DbResult<Option<String>> {
    Ok(segmentation_runs::table
        .find(id)
        .select(segmentation_runs::model)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten())
}

/// Filters memberships to one customer's: one lookup of the membership key (run, customer)
/// per run.
///
/// Memberships have no index by customer (a second index on a million-row write costs as much
/// as the rows themselves, and only these per-customer reads would use it): a customer's
/// memberships are found by asking each run, through the key, which is as quick for the
/// runs an organisation keeps. Every membership belongs to a run that exists (memberships are
/// written with their run, and runs are never deleted), so none is missed.
pub fn of_customer(
    customer: i64,
) -> diesel::dsl::And<
    diesel::dsl::EqAny<
        segment_memberships::run_id,
        diesel::dsl::Select<segmentation_runs::table, segmentation_runs::id>,
    >,
    diesel::dsl::Eq<segment_memberships::customer_id, i64>,
> {
    segment_memberships::run_id
        .eq_any(segmentation_runs::table.select(segmentation_runs::id))
        .and(segment_memberships::customer_id.eq(customer))
}

/// A customer's memberships with their stored detail: (run id, segment, detail), by run.
pub fn memberships_with_detail(
    conn: &mut DbConnection,
    customer: i64,
) -> DbResult<Vec<(i64, i32, Option<String>)>> {
    Ok(segment_memberships::table
        .filter(of_customer(customer))
        .order(segment_memberships::run_id.asc())
        .select((
            segment_memberships::run_id,
            segment_memberships::segment,
            segment_memberships::detail,
        ))
        .load(conn)?)
}

/// Replaces a finished run's stored summary.
pub fn set_summary(conn: &mut DbConnection, id: i64, summary: &str) -> DbResult<()> {
    diesel::update(segmentation_runs::table.find(id))
        .set(segmentation_runs::summary.eq(summary))
        .execute(conn)?;
    Ok(())
}

pub fn set_status(conn: &mut DbConnection, id: i64, status: RunStatus) -> DbResult<()> {
    diesel::update(segmentation_runs::table.find(id))
        .set(segmentation_runs::status.eq(status.as_str()))
        .execute(conn)?;
    Ok(())
}

/// Publishes `id` and retires the run published before it (returned).
pub fn publish(
    conn: &mut DbConnection,
    id: i64,
    by: &str,
    at: NaiveDateTime,
) -> DbResult<Option<i64>> {
    let previous = published(conn)?.map(|r| r.id);
    diesel::update(
        segmentation_runs::table
            .filter(segmentation_runs::status.eq(RunStatus::Published.as_str())),
    )
    .set(segmentation_runs::status.eq(RunStatus::Retired.as_str()))
    .execute(conn)?;
    diesel::update(segmentation_runs::table.find(id))
        .set((
            segmentation_runs::status.eq(RunStatus::Published.as_str()),
            segmentation_runs::published_by.eq(by),
            segmentation_runs::published_at.eq(at),
        ))
        .execute(conn)?;
    Ok(previous)
}

pub fn segments(conn: &mut DbConnection, run_id: i64) -> DbResult<Vec<SegmentRow>> {
    Ok(segments::table
        .filter(segments::run_id.eq(run_id))
        .order(segments::segment.asc())
        .select(SegmentRow::as_select())
        .load(conn)?)
}

pub fn rename_segment(
    conn: &mut DbConnection,
    run_id: i64,
    segment: i32,
    name: &str,
) -> DbResult<usize> {
    Ok(diesel::update(segments::table.find((run_id, segment)))
        .set(segments::name.eq(name))
        .execute(conn)?)
}

/// Every membership of a run as (customer id, segment), by customer id.
pub fn memberships(conn: &mut DbConnection, run_id: i64) -> DbResult<Vec<(i64, i32)>> {
    let rows = segment_memberships::table
        .filter(segment_memberships::run_id.eq(run_id))
        .order(segment_memberships::customer_id.asc())
        .select((
            segment_memberships::customer_id,
            segment_memberships::segment,
        ))
        .load_iter::<(i64, i32), diesel::connection::DefaultLoadingMode>(conn)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row?);
    }
    Ok(out)
}

/// A run's members with their external ids, optionally of one segment, by customer id.
pub fn members_with_ids(
    conn: &mut DbConnection,
    run_id: i64,
    segment: Option<i32>,
) -> DbResult<Vec<(i64, String, i32)>> {
    let mut q = segment_memberships::table
        .inner_join(customers::table.on(customers::id.eq(segment_memberships::customer_id)))
        .filter(segment_memberships::run_id.eq(run_id))
        .into_boxed();
    if let Some(s) = segment {
        q = q.filter(segment_memberships::segment.eq(s));
    }
    Ok(q.order(segment_memberships::customer_id.asc())
        .select((
            segment_memberships::customer_id,
            customers::external_id,
            segment_memberships::segment,
        ))
        .load(conn)?)
}

/// Up to `limit` of a run's members with their external ids after customer `after`, by
/// customer id: one range of the membership key, however large the run.
pub fn members_with_ids_after(
    conn: &mut DbConnection,
    run_id: i64,
    segment: Option<i32>,
    after: i64,
    limit: i64,
) -> DbResult<Vec<(i64, String, i32)>> {
    let mut q = segment_memberships::table
        .inner_join(customers::table.on(customers::id.eq(segment_memberships::customer_id)))
        .filter(segment_memberships::run_id.eq(run_id))
        .filter(segment_memberships::customer_id.gt(after))
        .into_boxed();
    if let Some(s) = segment {
        q = q.filter(segment_memberships::segment.eq(s));
    }
    Ok(q.order(segment_memberships::customer_id.asc())
        .limit(limit)
        .select((
            segment_memberships::customer_id,
            customers::external_id,
            segment_memberships::segment,
        ))
        .load(conn)?)
}

/// A customer's memberships as (run id, segment), newest run first.
pub fn memberships_of(conn: &mut DbConnection, customer: i64) -> DbResult<Vec<(i64, i32)>> {
    Ok(segment_memberships::table
        .filter(of_customer(customer))
        .order(segment_memberships::run_id.desc())
        .select((segment_memberships::run_id, segment_memberships::segment))
        .load(conn)?)
}

pub fn delete_memberships_of(conn: &mut DbConnection, customer: i64) -> DbResult<usize> {
    Ok(diesel::delete(segment_memberships::table.filter(of_customer(customer))).execute(conn)?)
}

pub fn record_strategy(conn: &mut DbConnection, row: &StrategyRow) -> DbResult<()> {
    diesel::delete(segment_strategies::table.find((row.run_id, row.segment))).execute(conn)?;
    diesel::insert_into(segment_strategies::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn strategies(conn: &mut DbConnection, run_id: i64) -> DbResult<Vec<StrategyRow>> {
    Ok(segment_strategies::table
        .filter(segment_strategies::run_id.eq(run_id))
        .order(segment_strategies::segment.asc())
        .select(StrategyRow::as_select())
        .load(conn)?)
}

/// The attribute columns imports have seen, with their kinds.
pub fn known_columns(conn: &mut DbConnection) -> DbResult<Vec<KnownColumn>> {
    let rows: Vec<(String, String, bool)> = attribute_columns::table
        .order(attribute_columns::name.asc())
        .select((
            attribute_columns::name,
            attribute_columns::kind,
            attribute_columns::protected,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(name, kind, protected)| KnownColumn {
            name,
            kind: match kind.as_str() {
                "number" => ColumnKind::Number,
                "date" => ColumnKind::Date,
                _ => ColumnKind::Category,
            },
            protected,
        })
        .collect())
}

/// Streams `(id, attributes JSON)` of every customer, by id, to `f`.
pub fn for_each_attributes(conn: &mut DbConnection, mut f: impl FnMut(i64, &str)) -> DbResult<()> {
    let rows = customers::table
        .order(customers::id.asc())
        .select((customers::id, customers::attributes))
        .load_iter::<(i64, String), diesel::connection::DefaultLoadingMode>(conn)?;
    for row in rows {
        let (id, attributes) = row?;
        f(id, &attributes);
    }
    Ok(())
}

/// Streams `(id, attributes JSON)` of every customer to `f` in no particular order, handing
/// each JSON text over, for readers that place rows by id and keep the text (no copy). The
/// table is read as it is stored (in id order it would be walked through the key's index,
/// one lookup per row); on PostgreSQL by COPY, each row handed over as it arrives
/// (`for_each_id_text!`).
pub fn for_each_attributes_owned(
    conn: &mut DbConnection,
    f: impl FnMut(i64, String),
) -> DbResult<()> {
    for_each_id_text!(conn, customers, id, attributes, f)
}

/// A run's live sizes as cached at consent-state `version`, if they are still valid at `now`.
pub fn cached_live_sizes(
    conn: &mut DbConnection,
    run_id: i64,
    version: i64,
    now: NaiveDateTime,
) -> DbResult<Option<Vec<u64>>> {
    use super::schema::run_live_sizes;
    let sizes: Option<String> = run_live_sizes::table
        .filter(run_live_sizes::run_id.eq(run_id))
        .filter(run_live_sizes::state_version.eq(version))
        .filter(run_live_sizes::valid_until.gt(now))
        .select(run_live_sizes::sizes)
        .first(conn)
        .optional()?;
    Ok(sizes.and_then(|s| serde_json::from_str(&s).ok()))
}

/// Keeps a run's live sizes computed at consent-state `version`, valid until `valid_until`.
pub fn cache_live_sizes(
    conn: &mut DbConnection,
    run_id: i64,
    version: i64,
    valid_until: NaiveDateTime,
    sizes: &[u64],
) -> DbResult<()> {
    use diesel::sql_types::{BigInt, Text, Timestamp};
    // The same upsert on SQLite and PostgreSQL; two views filling the cache at once both win.
    diesel::sql_query(
        "INSERT INTO run_live_sizes (run_id, state_version, valid_until, sizes) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (run_id) DO UPDATE SET \
         state_version = excluded.state_version, valid_until = excluded.valid_until, \
         sizes = excluded.sizes",
    )
    .bind::<BigInt, _>(run_id)
    .bind::<BigInt, _>(version)
    .bind::<Timestamp, _>(valid_until)
    .bind::<Text, _>(serde_json::to_string(sizes).expect("sizes serialise"))
    .execute(conn)?;
    Ok(())
}

/// Forgets the cached live sizes and reach of runs (their memberships changed).
pub fn forget_live_sizes(conn: &mut DbConnection, runs: &[i64]) -> DbResult<()> {
    use super::schema::{run_live_sizes, run_reach};
    diesel::delete(run_live_sizes::table.filter(run_live_sizes::run_id.eq_any(runs)))
        .execute(conn)?;
    diesel::delete(run_reach::table.filter(run_reach::run_id.eq_any(runs))).execute(conn)?;
    Ok(())
}

/// A run's reach (JSON) as cached at consent-state `version` under `policy_version`, if it is
/// still valid at `now`.
pub fn cached_reach(
    conn: &mut DbConnection,
    run_id: i64,
    version: i64,
    policy_version: &str,
    now: NaiveDateTime,
) -> DbResult<Option<String>> {
    use super::schema::run_reach;
    Ok(run_reach::table
        .filter(run_reach::run_id.eq(run_id))
        .filter(run_reach::state_version.eq(version))
        .filter(run_reach::policy_version.eq(policy_version))
        .filter(run_reach::valid_until.gt(now))
        .select(run_reach::reach)
        .first(conn)
        .optional()?)
}

/// Keeps a run's reach (JSON) counted at consent-state `version` under `policy_version`,
/// valid until `valid_until`.
pub fn cache_reach(
    conn: &mut DbConnection,
    run_id: i64,
    version: i64,
    policy_version: &str,
    valid_until: NaiveDateTime,
    reach: &str,
) -> DbResult<()> {
    use diesel::sql_types::{BigInt, Text, Timestamp};
    // The same upsert on SQLite and PostgreSQL; two views filling the cache at once both win.
    diesel::sql_query(
        "INSERT INTO run_reach (run_id, state_version, policy_version, valid_until, reach) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_id) DO UPDATE SET \
         state_version = excluded.state_version, policy_version = excluded.policy_version, \
         valid_until = excluded.valid_until, reach = excluded.reach",
    )
    .bind::<BigInt, _>(run_id)
    .bind::<BigInt, _>(version)
    .bind::<Text, _>(policy_version)
    .bind::<Timestamp, _>(valid_until)
    .bind::<Text, _>(reach)
    .execute(conn)?;
    Ok(())
}
