//! Storing imports: the lookups an import's checks need (erased ids, known customers, the
//! consent ledger's latest events), the bulk writes of its rows (`write_rows!`: COPY on
//! PostgreSQL, multi-row INSERTs on SQLite), the import log, and the import log's reading.
//! The use case (the walks over the file, the checks, the trail) is `app::imports`.
//!
//! Large files (see `bulk`) take a faster path on SQLite, with the same outcome: the customers'
//! ids are read in one scan instead of per batch, and the table's secondary indexes are
//! dropped before the rows go in and built again after them, inside the same transaction (a
//! duplicate key fails the build, the import and its rollback, which restores the index);
//! on SQLite the build sorts on worker threads.
//! Timestamps are bound as text made once (`Stamp`).

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::customers::{IdTable, next_id};
use super::schema::{
    attribute_columns, consent_events, customer_protected, customers, erased_customers, imports,
    transactions,
};
use super::{DbConnection, DbResult};
use crate::imports::ImportReport;
use crate::imports::customers::CustomerColumns;

/// A timestamp bound with its SQLite text made beforehand (for rows, on the reading thread):
/// diesel formats a `NaiveDateTime` for SQLite (`%F %T%.f`) on every bind, parsing the format
/// each time, which a million-row import felt. The text is the same as diesel's, so reading back is unchanged; PostgreSQL
/// gets the timestamp itself.
#[derive(Debug, Clone, diesel::expression::AsExpression)]
#[diesel(sql_type = diesel::sql_types::Timestamp)]
pub struct Stamp {
    at: NaiveDateTime,
    sqlite: std::sync::Arc<str>,
}

/// diesel's SQLite timestamp format, parsed once.
pub fn stamp_format() -> Vec<chrono::format::Item<'static>> {
    chrono::format::StrftimeItems::new("%F %T%.f").collect()
}

impl Stamp {
    pub fn new(at: NaiveDateTime, format: &[chrono::format::Item<'static>]) -> Stamp {
        Stamp {
            at,
            sqlite: at.format_with_items(format.iter()).to_string().into(),
        }
    }
}

impl diesel::serialize::ToSql<diesel::sql_types::Timestamp, diesel::sqlite::Sqlite> for Stamp {
    fn to_sql<'b>(
        &'b self,
        out: &mut diesel::serialize::Output<'b, '_, diesel::sqlite::Sqlite>,
    ) -> diesel::serialize::Result {
        out.set_value(&*self.sqlite);
        Ok(diesel::serialize::IsNull::No)
    }
}

impl diesel::serialize::ToSql<diesel::sql_types::Timestamp, diesel::pg::Pg> for Stamp {
    fn to_sql<'b>(
        &'b self,
        out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
    ) -> diesel::serialize::Result {
        diesel::serialize::ToSql::<diesel::sql_types::Timestamp, diesel::pg::Pg>::to_sql(
            &self.at, out,
        )
    }
}

/// A new customer: ids assigned by the caller, attributes as stored JSON.
pub struct NewCustomer {
    pub id: i64,
    pub external_id: String,
    pub pseudonym: String,
    pub attributes: String,
    /// The protected attributes (stored apart), when the file has any.
    pub protected: Option<String>,
}

/// Whether anybody was ever erased (most databases: nobody, and the per-batch check is skipped).
pub fn any_erased(conn: &mut DbConnection) -> DbResult<bool> {
    Ok(erased_customers::table
        .select(erased_customers::pseudonym)
        .first::<String>(conn)
        .optional()?
        .is_some())
}

/// The pseudonyms among `pseudonyms` of customers who were erased.
pub fn erased_among(conn: &mut DbConnection, pseudonyms: &[&str]) -> DbResult<HashSet<String>> {
    Ok(erased_customers::table
        .filter(erased_customers::pseudonym.eq_any(pseudonyms))
        .select(erased_customers::pseudonym)
        .load(conn)?
        .into_iter()
        .collect())
}

/// `external id -> (id, stored attributes)` of the customers among `ids` that exist.
pub fn existing_customers(
    conn: &mut DbConnection,
    ids: &[&str],
) -> DbResult<HashMap<String, (i64, String)>> {
    Ok(customers::table
        .filter(customers::external_id.eq_any(ids))
        .select((customers::external_id, customers::id, customers::attributes))
        .load::<(String, i64, String)>(conn)?
        .into_iter()
        .map(|(e, id, a)| (e, (id, a)))
        .collect())
}

/// The stored protected attributes of the customers among `ids` that have any.
pub fn protected_of(conn: &mut DbConnection, ids: &[i64]) -> DbResult<HashMap<i64, String>> {
    Ok(customer_protected::table
        .filter(customer_protected::customer_id.eq_any(ids))
        .select((
            customer_protected::customer_id,
            customer_protected::attributes,
        ))
        .load::<(i64, String)>(conn)?
        .into_iter()
        .collect())
}

/// Stores a re-imported customer's merged attributes.
pub fn update_attributes(
    conn: &mut DbConnection,
    id: i64,
    attributes: &str,
    at: NaiveDateTime,
) -> DbResult<()> {
    diesel::update(customers::table.find(id))
        .set((
            customers::attributes.eq(attributes),
            customers::updated_at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Stores a re-imported customer's merged protected attributes.
pub fn replace_protected(conn: &mut DbConnection, id: i64, attributes: String) -> DbResult<()> {
    diesel::delete(customer_protected::table.find(id)).execute(conn)?;
    diesel::insert_into(customer_protected::table)
        .values((
            customer_protected::customer_id.eq(id),
            customer_protected::attributes.eq(attributes),
        ))
        .execute(conn)?;
    Ok(())
}

/// How new customers go in on PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerCopy {
    Plain,
    /// `COPY … FREEZE`: the tables were emptied by [`truncate_empty_customers`] in this
    /// transaction.
    Frozen,
}

/// Writes new customers, and their protected attributes apart. PostgreSQL: one binary COPY
/// per table, encoded here ([`write_binary_customers`]), with FREEZE when `copy` says so.
pub fn insert_customers(
    conn: &mut DbConnection,
    rows: Vec<NewCustomer>,
    now: &Stamp,
    copy: CustomerCopy,
) -> DbResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    if let DbConnection::Postgres(c) = conn {
        return copy_customers(c, &rows, now.at, copy == CustomerCopy::Frozen);
    }
    let mut protected = Vec::new();
    let customers = rows.into_iter().map(|c| {
        if let Some(p) = c.protected {
            protected.push((
                customer_protected::customer_id.eq(c.id),
                customer_protected::attributes.eq(p),
            ));
        }
        (
            customers::id.eq(c.id),
            customers::external_id.eq(c.external_id),
            customers::pseudonym.eq(c.pseudonym),
            customers::attributes.eq(c.attributes),
            customers::created_at.eq(now.clone()),
            customers::updated_at.eq(now.clone()),
        )
    });
    write_rows!(conn, customers::table, customers)?;
    write_rows!(conn, customer_protected::table, protected)?;
    Ok(())
}

/// PostgreSQL: empties `customers` and `customer_protected` with TRUNCATE, so that the first
/// import's rows can go in by `COPY … FREEZE` (allowed only into a table created or truncated
/// in the same transaction). Frozen rows are written once: without FREEZE, the first reader
/// after the commit (a segment run, or checking the protected attributes' key to the
/// customers at the end of this import, whose index-only scans need the pages marked
/// all-visible) rewrites every page to note that the rows' transaction committed.
///
/// Only for an import into an empty table that has dropped the keys of other tables to it
/// (`DroppedIndexes` with `Primary::Drop`), which also holds both tables locked against
/// every other session until the commit; the tables are checked empty again under that
/// lock, and nothing is truncated unless they are. The only difference another session can
/// notice: one reading with a snapshot older than the commit (`REPEATABLE READ`) sees the
/// new customers, where it would have gone on seeing an empty table. fairseg's own such
/// reader (`app::audits::ProtectedSnapshot`, beside a run) is checked against the trail, which
/// the import appends to, and read again.
///
/// Returns how the customers go in: `Frozen` after the truncation, else `Plain` (SQLite, or
/// tables that are not empty after all).
pub fn truncate_empty_customers(conn: &mut DbConnection) -> DbResult<CustomerCopy> {
    use diesel::connection::SimpleConnection;
    let DbConnection::Postgres(c) = conn else {
        return Ok(CustomerCopy::Plain);
    };
    #[derive(QueryableByName)]
    struct Any {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        rows: bool,
    }
    // The lock is already held (the dropped keys); taking it again only makes that explicit.
    c.batch_execute("LOCK TABLE customers, customer_protected IN ACCESS EXCLUSIVE MODE")?;
    let any = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM customers) OR EXISTS (SELECT 1 FROM customer_protected) \
         AS rows",
    )
    .get_result::<Any>(c)?;
    if any.rows {
        return Ok(CustomerCopy::Plain);
    }
    c.batch_execute("TRUNCATE customers, customer_protected")?;
    Ok(CustomerCopy::Frozen)
}

/// The two COPYs of [`insert_customers`] on PostgreSQL.
fn copy_customers(
    c: &mut diesel::PgConnection,
    rows: &[NewCustomer],
    now: NaiveDateTime,
    freeze: bool,
) -> DbResult<()> {
    use diesel::pg::CopyFormat;
    use std::io::Write;
    let now = pg_timestamp(now);
    let to_error = |e: std::io::Error| diesel::result::Error::SerializationError(Box::new(e));
    diesel::copy_from(customers::table)
        .from_raw_data(
            (
                customers::id,
                customers::external_id,
                customers::pseudonym,
                customers::attributes,
                customers::created_at,
                customers::updated_at,
            ),
            |sink: &mut dyn Write| -> Result<(), diesel::result::Error> {
                let mut out = std::io::BufWriter::with_capacity(1 << 16, sink);
                write_binary_customers(&mut out, rows, now)
                    .and_then(|()| out.flush())
                    .map_err(to_error)
            },
        )
        .with_format(CopyFormat::Binary)
        .with_freeze(freeze)
        .execute(c)?;
    if rows.iter().any(|r| r.protected.is_some()) {
        diesel::copy_from(customer_protected::table)
            .from_raw_data(
                (
                    customer_protected::customer_id,
                    customer_protected::attributes,
                ),
                |sink: &mut dyn Write| -> Result<(), diesel::result::Error> {
                    let mut out = std::io::BufWriter::with_capacity(1 << 16, sink);
                    write_binary_protected(&mut out, rows)
                        .and_then(|()| out.flush())
                        .map_err(to_error)
                },
            )
            .with_format(CopyFormat::Binary)
            .with_freeze(freeze)
            .execute(c)?;
    }
    Ok(())
}

/// A timestamp as PostgreSQL's binary format has it: microseconds since 2000-01-01.
fn pg_timestamp(at: NaiveDateTime) -> i64 {
    let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a valid date");
    (at - epoch).num_microseconds().unwrap_or(i64::MAX)
}

/// The binary format's header: the signature, the flags and the header extension's length.
fn write_binary_header(out: &mut impl std::io::Write) -> std::io::Result<()> {
    out.write_all(b"PGCOPY\n\xff\r\n\0")?;
    out.write_all(&0i32.to_be_bytes())?;
    out.write_all(&0i32.to_be_bytes())
}

fn write_binary_text(out: &mut impl std::io::Write, text: &str) -> std::io::Result<()> {
    let len = i32::try_from(text.len()).map_err(std::io::Error::other)?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(text.as_bytes())
}

/// `rows` in `COPY customers (id bigint, external_id text, pseudonym text, attributes text,
/// created_at timestamp, updated_at timestamp) FROM STDIN (FORMAT binary)`'s format: per row
/// the field count, then each field's length and big-endian value; then the trailer.
fn write_binary_customers(
    out: &mut impl std::io::Write,
    rows: &[NewCustomer],
    now: i64,
) -> std::io::Result<()> {
    write_binary_header(out)?;
    let mut stamps = [0u8; 24];
    stamps[0..4].copy_from_slice(&8i32.to_be_bytes());
    stamps[4..12].copy_from_slice(&now.to_be_bytes());
    stamps[12..16].copy_from_slice(&8i32.to_be_bytes());
    stamps[16..24].copy_from_slice(&now.to_be_bytes());
    for row in rows {
        out.write_all(&6i16.to_be_bytes())?;
        out.write_all(&8i32.to_be_bytes())?;
        out.write_all(&row.id.to_be_bytes())?;
        write_binary_text(out, &row.external_id)?;
        write_binary_text(out, &row.pseudonym)?;
        write_binary_text(out, &row.attributes)?;
        out.write_all(&stamps)?;
    }
    out.write_all(&(-1i16).to_be_bytes())
}

/// The protected attributes of `rows` that have any, in `COPY customer_protected
/// (customer_id bigint, attributes text) FROM STDIN (FORMAT binary)`'s format.
fn write_binary_protected(
    out: &mut impl std::io::Write,
    rows: &[NewCustomer],
) -> std::io::Result<()> {
    write_binary_header(out)?;
    for row in rows {
        if let Some(protected) = &row.protected {
            out.write_all(&2i16.to_be_bytes())?;
            out.write_all(&8i32.to_be_bytes())?;
            out.write_all(&row.id.to_be_bytes())?;
            write_binary_text(out, protected)?;
        }
    }
    out.write_all(&(-1i16).to_be_bytes())
}

/// A new transaction.
pub struct NewTransaction {
    pub id: i64,
    pub customer_id: i64,
    pub occurred_at: Stamp,
    pub amount: f64,
    pub quantity: Option<i64>,
    pub order_id: Option<String>,
}

pub fn insert_transactions(
    conn: &mut DbConnection,
    rows: Vec<NewTransaction>,
    now: &Stamp,
) -> DbResult<()> {
    let rows = rows.into_iter().map(|t| {
        (
            transactions::id.eq(t.id),
            transactions::customer_id.eq(t.customer_id),
            transactions::occurred_at.eq(t.occurred_at),
            transactions::amount.eq(t.amount),
            transactions::quantity.eq(t.quantity),
            transactions::order_id.eq(t.order_id),
            transactions::imported_at.eq(now.clone()),
        )
    });
    write_rows!(conn, transactions::table, rows)?;
    Ok(())
}

/// A new event of the consent ledger.
pub struct NewConsentEvent {
    pub id: i64,
    pub customer_id: i64,
    pub purpose: String,
    pub status: &'static str,
    pub recorded_at: NaiveDateTime,
    pub source: Option<String>,
    pub notice_version: Option<String>,
}

pub fn insert_consent_events(
    conn: &mut DbConnection,
    rows: Vec<NewConsentEvent>,
    recorded_by: &str,
    entered_at: NaiveDateTime,
) -> DbResult<()> {
    let rows = rows.into_iter().map(|e| {
        (
            consent_events::id.eq(e.id),
            consent_events::customer_id.eq(e.customer_id),
            consent_events::purpose.eq(e.purpose),
            consent_events::status.eq(e.status),
            consent_events::recorded_at.eq(e.recorded_at),
            consent_events::source.eq(e.source),
            consent_events::notice_version.eq(e.notice_version),
            // COPY takes owned values (no borrow may outlive its statement).
            consent_events::recorded_by.eq(recorded_by.to_string()),
            consent_events::entered_at.eq(entered_at),
        )
    });
    write_rows!(conn, consent_events::table, rows)?;
    Ok(())
}

/// `(customer, purpose) -> the latest recorded_at` in the ledger of the given customers.
pub fn latest_consents(
    conn: &mut DbConnection,
    customers: &[i64],
) -> DbResult<HashMap<(i64, String), NaiveDateTime>> {
    Ok(consent_events::table
        .filter(consent_events::customer_id.eq_any(customers))
        .group_by((consent_events::customer_id, consent_events::purpose))
        .select((
            consent_events::customer_id,
            consent_events::purpose,
            diesel::dsl::max(consent_events::recorded_at),
        ))
        .load::<(i64, String, Option<NaiveDateTime>)>(conn)?
        .into_iter()
        .filter_map(|(c, p, t)| t.map(|t| ((c, p), t)))
        .collect())
}

/// Every customer's internal id by external id (`KnownCustomers::All`), shared with the
/// thread that checks a file, which looks each row's customer up there instead of the writer.
pub type CustomerIds = std::sync::Arc<HashMap<Box<str>, i64, foldhash::fast::RandomState>>;

/// The internal ids of the customers a file names. A file of many rows reads the whole
/// table's ids once (one scan); a small one looks up each batch's ids.
pub enum KnownCustomers {
    All(CustomerIds),
    PerBatch,
}

/// Files with at least this many rows, and at least a quarter as many rows as there are
/// customers, read all the ids at once.
const SCAN_ALL_FROM: u64 = 20_000;

impl KnownCustomers {
    pub fn for_file(conn: &mut DbConnection, rows: u64) -> DbResult<KnownCustomers> {
        let customers = next_id(conn, IdTable::Customers)? - 1;
        let customers = u64::try_from(customers).unwrap_or(0);
        if rows < SCAN_ALL_FROM || rows.saturating_mul(4) < customers {
            return Ok(KnownCustomers::PerBatch);
        }
        let mut all = HashMap::with_capacity_and_hasher(
            usize::try_from(customers).unwrap_or(0),
            foldhash::fast::RandomState::default(),
        );
        for row in customers::table
            .select((customers::external_id, customers::id))
            .load_iter::<(String, i64), diesel::connection::DefaultLoadingMode>(conn)?
        {
            let (external, id) = row?;
            all.insert(external.into_boxed_str(), id);
        }
        Ok(KnownCustomers::All(std::sync::Arc::new(all)))
    }

    /// Every customer's id, when they were read at once.
    pub fn all(&self) -> Option<CustomerIds> {
        match self {
            KnownCustomers::All(all) => Some(all.clone()),
            KnownCustomers::PerBatch => None,
        }
    }

    /// The ids of a batch's customers that exist.
    pub fn batch<'s, 'r>(
        &'s self,
        conn: &mut DbConnection,
        ids: impl Iterator<Item = &'r str>,
    ) -> DbResult<Known<'s>> {
        match self {
            KnownCustomers::All(all) => Ok(Known::All(all)),
            KnownCustomers::PerBatch => {
                let ids: Vec<&str> = ids.collect::<HashSet<_>>().into_iter().collect();
                Ok(Known::Batch(
                    customers::table
                        .filter(customers::external_id.eq_any(&ids))
                        .select((customers::external_id, customers::id))
                        .load::<(String, i64)>(conn)?
                        .into_iter()
                        .collect(),
                ))
            }
        }
    }
}

/// The ids known for one batch.
pub enum Known<'a> {
    All(&'a HashMap<Box<str>, i64, foldhash::fast::RandomState>),
    Batch(HashMap<String, i64>),
}

impl Known<'_> {
    pub fn get(&self, external: &str) -> Option<&i64> {
        match self {
            Known::All(all) => all.get(external),
            Known::Batch(batch) => batch.get(external),
        }
    }
}

/// Keeps the attribute columns seen and their inferred types.
pub fn record_attribute_columns(
    conn: &mut DbConnection,
    columns: &CustomerColumns,
    now: NaiveDateTime,
) -> DbResult<()> {
    for a in &columns.attributes {
        let updated = diesel::update(attribute_columns::table.find(&a.name))
            .set((
                attribute_columns::kind.eq(a.kind.as_str()),
                attribute_columns::protected.eq(a.protected),
                attribute_columns::updated_at.eq(now),
            ))
            .execute(conn)?;
        if updated == 0 {
            diesel::insert_into(attribute_columns::table)
                .values((
                    attribute_columns::name.eq(&a.name),
                    attribute_columns::kind.eq(a.kind.as_str()),
                    attribute_columns::protected.eq(a.protected),
                    attribute_columns::first_seen_at.eq(now),
                    attribute_columns::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// The import log's row of a finished import.
pub struct ImportLogRow<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub report: &'a ImportReport,
    pub imported_by: &'a str,
    pub occurred_at: NaiveDateTime,
}

pub fn log(conn: &mut DbConnection, row: &ImportLogRow<'_>) -> DbResult<()> {
    let r = row.report;
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    diesel::insert_into(imports::table)
        .values((
            imports::id.eq(row.id),
            imports::kind.eq(row.kind),
            imports::file_name.eq(&r.file),
            imports::rows_read.eq(as_i64(r.rows_read)),
            imports::rows_imported.eq(as_i64(r.rows_imported)),
            imports::rows_rejected.eq(as_i64(r.rows_rejected)),
            imports::imported_by.eq(row.imported_by),
            imports::occurred_at.eq(row.occurred_at),
            imports::report.eq(serde_json::to_string(r).unwrap_or_default()),
        ))
        .execute(conn)?;
    Ok(())
}

/// SQLite: a bigger page cache while a large import runs (index pages of a million rows stay
/// in memory), put back afterwards. PostgreSQL needs nothing.
pub struct SqliteTuning {
    previous: Option<i64>,
}

#[derive(QueryableByName)]
struct CacheSize {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    cache_size: i64,
}

impl SqliteTuning {
    pub fn apply(conn: &mut DbConnection) -> DbResult<SqliteTuning> {
        use diesel::connection::SimpleConnection;
        let DbConnection::Sqlite(c) = conn else {
            return Ok(SqliteTuning { previous: None });
        };
        let previous = diesel::sql_query("PRAGMA cache_size")
            .get_result::<CacheSize>(c)?
            .cache_size;
        c.batch_execute("PRAGMA cache_size = -262144")?;
        Ok(SqliteTuning {
            previous: Some(previous),
        })
    }

    pub fn restore(&mut self, conn: &mut DbConnection) -> DbResult<()> {
        use diesel::connection::SimpleConnection;
        if let (Some(previous), DbConnection::Sqlite(c)) = (self.previous.take(), conn) {
            c.batch_execute(&format!("PRAGMA cache_size = {previous}"))?;
        }
        Ok(())
    }
}

/// SQLite: the pages a bulk import writes stay in memory until its commit (up to
/// `HELD_WRITES_MIB`), instead of being spilled to the write-ahead log as soon as the page cache
/// is full or shrinks (`DroppedIndexes::restore` shrinks it to sort in small runs). Each index
/// built after the rows then reads the table from memory instead of reading back from the log
/// what was just written there: at a million customers (300 MB of pages) the two unique
/// indexes took 1.0 s instead of 1.8 s in the sqlite3 shell. The commit writes the same pages
/// to the log either way. A larger import spills past the limit as before. Undone by
/// `release_written_pages`; nothing on PostgreSQL.
pub fn hold_written_pages(conn: &mut DbConnection) -> DbResult<()> {
    use diesel::connection::SimpleConnection;
    let DbConnection::Sqlite(c) = conn else {
        return Ok(());
    };
    let page_size = diesel::sql_query("PRAGMA page_size")
        .get_result::<PageSize>(c)?
        .page_size
        .max(512);
    let pages = HELD_WRITES_MIB * 1024 * 1024 / page_size;
    c.batch_execute(&format!("PRAGMA cache_spill = {pages}"))?;
    Ok(())
}

/// Back to SQLite's default (spilling whenever the page cache is full), after
/// `hold_written_pages`.
pub fn release_written_pages(conn: &mut DbConnection) -> DbResult<()> {
    use diesel::connection::SimpleConnection;
    if let DbConnection::Sqlite(c) = conn {
        c.batch_execute("PRAGMA cache_spill = 1")?;
    }
    Ok(())
}

/// How much of a bulk import's writes SQLite holds in memory until the commit
/// (`hold_written_pages`): a million customers' rows and indexes are about 300 MB.
const HELD_WRITES_MIB: i64 = 384;

#[derive(QueryableByName)]
struct PageSize {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    page_size: i64,
}

/// The secondary indexes of a table (and on PostgreSQL its foreign keys), dropped for a bulk
/// insert and made again after it, in the same transaction. Building an index in one sorted
/// pass is several times faster than keeping it current row by row when the keys arrive in
/// random order (pseudonyms, the customers of transactions), and PostgreSQL checks a foreign
/// key added afterwards with one join instead of one lookup per row. An index or key that
/// cannot be made again (a duplicate key, a missing customer) fails the import, and the
/// rollback brings the old one back: both backends' schema changes are transactional. On
/// PostgreSQL the dropped index holds the table locked against readers until the import
/// commits, which is why only imports at least as large as the table take this path (`bulk`).
///
/// Into an empty table, PostgreSQL also drops the primary key (`Primary::Drop`), and the
/// foreign keys of other tables that lean on it (their tables are empty too: their rows would
/// name a row of this one): keeping a million sequential ids' index current cost the server
/// more than sorting them once. Not into a table with rows, whose re-imported rows are
/// updated by primary key.
pub struct DroppedIndexes {
    /// The statements that make them again (`CREATE INDEX`, `ALTER TABLE … ADD CONSTRAINT`),
    /// in order: indexes and the primary key before the keys, whose checks may use them.
    definitions: Vec<Remake>,
}

/// Whether `DroppedIndexes::drop` drops the table's primary key too (PostgreSQL only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Primary {
    Keep,
    /// Only for an empty table (see `DroppedIndexes`).
    Drop,
}

struct Remake {
    sql: String,
    /// A foreign key on the table's own primary key (`customer_protected.customer_id`): its
    /// rows were written in key order, so the check merges the two primary keys' indexes
    /// instead of hashing a million ids (0.35-0.48 s instead of 0.56-0.85 s at a million, on
    /// the shared machine); the planner, not knowing the order, picks the hash.
    by_merge: bool,
}

impl Remake {
    fn plain(sql: String) -> Remake {
        Remake {
            sql,
            by_merge: false,
        }
    }
}

#[derive(QueryableByName)]
struct IndexDefinition {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    sql: String,
}

#[derive(QueryableByName)]
struct KeyDefinition {
    /// The table that holds the key (quoted where it must be).
    #[diesel(sql_type = diesel::sql_types::Text)]
    owner: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    sql: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    on_primary_key: bool,
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl DroppedIndexes {
    /// Drops the table's named indexes except `keep` (indexes that back a PRIMARY KEY or
    /// UNIQUE constraint stay) and, on PostgreSQL, its foreign keys, and with `Primary::Drop`
    /// its primary key and the foreign keys that reference it.
    pub fn drop(
        conn: &mut DbConnection,
        table: &str,
        keep: &[&str],
        primary: Primary,
    ) -> DbResult<DroppedIndexes> {
        use diesel::connection::SimpleConnection;
        let mut definitions = Vec::new();
        match conn {
            DbConnection::Sqlite(c) => {
                let indexes = diesel::sql_query(
                    "SELECT name, sql FROM sqlite_master \
                     WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL ORDER BY name",
                )
                .bind::<diesel::sql_types::Text, _>(table)
                .load::<IndexDefinition>(c)?;
                for index in indexes {
                    if keep.contains(&index.name.as_str()) {
                        continue;
                    }
                    c.batch_execute(&format!("DROP INDEX {}", quoted(&index.name)))?;
                    definitions.push(Remake::plain(index.sql));
                }
            }
            DbConnection::Postgres(c) => {
                let indexes = diesel::sql_query(
                    "SELECT ic.relname::text AS name, pg_get_indexdef(ic.oid) AS sql \
                     FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid \
                     WHERE x.indrelid = $1::text::regclass \
                       AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid) \
                     ORDER BY 1",
                )
                .bind::<diesel::sql_types::Text, _>(table)
                .load::<IndexDefinition>(c)?;
                // The table's own foreign keys and, when its primary key goes, the keys of
                // other tables that reference it.
                let keys = diesel::sql_query(
                    "SELECT k.conrelid::regclass::text AS owner, k.conname::text AS name, \
                            pg_get_constraintdef(k.oid) AS sql, \
                            COALESCE(k.conkey = p.conkey, false) AS on_primary_key \
                     FROM pg_constraint k \
                     LEFT JOIN pg_constraint p ON p.conrelid = k.conrelid AND p.contype = 'p' \
                     WHERE k.contype = 'f' AND (k.conrelid = $1::text::regclass \
                        OR ($2 AND k.confrelid = $1::text::regclass \
                            AND k.conrelid <> $1::text::regclass)) \
                     ORDER BY 2",
                )
                .bind::<diesel::sql_types::Text, _>(table)
                .bind::<diesel::sql_types::Bool, _>(primary == Primary::Drop)
                .load::<KeyDefinition>(c)?;
                let primary_key = if primary == Primary::Drop {
                    diesel::sql_query(
                        "SELECT conname::text AS name, pg_get_constraintdef(oid) AS sql \
                         FROM pg_constraint WHERE conrelid = $1::text::regclass AND contype = 'p'",
                    )
                    .bind::<diesel::sql_types::Text, _>(table)
                    .load::<IndexDefinition>(c)?
                } else {
                    Vec::new()
                };
                let mut constraints = Vec::new();
                for key in keys {
                    c.batch_execute(&format!(
                        "ALTER TABLE {} DROP CONSTRAINT {}",
                        key.owner,
                        quoted(&key.name)
                    ))?;
                    constraints.push(Remake {
                        sql: format!(
                            "ALTER TABLE {} ADD CONSTRAINT {} {}",
                            key.owner,
                            quoted(&key.name),
                            key.sql
                        ),
                        by_merge: key.on_primary_key,
                    });
                }
                for key in primary_key {
                    c.batch_execute(&format!(
                        "ALTER TABLE {} DROP CONSTRAINT {}",
                        quoted(table),
                        quoted(&key.name)
                    ))?;
                    definitions.push(Remake::plain(format!(
                        "ALTER TABLE {} ADD CONSTRAINT {} {}",
                        quoted(table),
                        quoted(&key.name),
                        key.sql
                    )));
                }
                for index in indexes {
                    if keep.contains(&index.name.as_str()) {
                        continue;
                    }
                    c.batch_execute(&format!("DROP INDEX {}", quoted(&index.name)))?;
                    definitions.push(Remake::plain(index.sql));
                }
                // Indexes first: checking a key may use them.
                definitions.extend(constraints);
            }
        }
        Ok(DroppedIndexes { definitions })
    }

    pub fn restore(self, conn: &mut DbConnection) -> DbResult<()> {
        use diesel::connection::SimpleConnection;
        if self.definitions.is_empty() {
            return Ok(());
        }
        match conn {
            DbConnection::Postgres(c) => {
                // Sorting a million keys in memory rather than on disk; for this transaction only.
                c.batch_execute("SET LOCAL maintenance_work_mem = '256MB'")?;
                for remake in &self.definitions {
                    if remake.by_merge {
                        c.batch_execute("SET LOCAL enable_hashjoin = off")?;
                    }
                    c.batch_execute(&remake.sql)?;
                    if remake.by_merge {
                        c.batch_execute("SET LOCAL enable_hashjoin TO DEFAULT")?;
                    }
                }
                Ok(())
            }
            DbConnection::Sqlite(c) => {
                // SQLite sorts an index's keys in one list in memory, on the calling thread,
                // whenever temporary storage is in memory (`temp_store = MEMORY`, every
                // connection's setting): 10,000,000 transactions' keys made one 0.8 GB list
                // whose merge sort missed the CPU cache at nearly every step (25 s of CPU for
                // the period index alone, in the sqlite3 shell). With temporary files allowed
                // for the build, it sorts runs of a few MB (the page cache's size), on worker
                // threads, and merges them from temporary files: 11-12 s of CPU for the same
                // index, in 12 MB instead of 0.8 GB. The setting cannot change while a
                // temporary database is open (`Db::write_import` closes it before the transaction);
                // the build then sorts in memory as before.
                let previous = diesel::sql_query("PRAGMA cache_size")
                    .get_result::<CacheSize>(c)?
                    .cache_size;
                let temp_store = diesel::sql_query("PRAGMA temp_store")
                    .get_result::<TempStore>(c)?
                    .temp_store;
                let on_files = temp_store != TEMP_STORE_FILE
                    && match c.batch_execute("PRAGMA temp_store = FILE") {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(error = %e, "index builds sort in memory");
                            false
                        }
                    };
                c.batch_execute(&format!(
                    "PRAGMA threads = {SORT_THREADS}; PRAGMA cache_size = -{SORT_CACHE_KIB}"
                ))?;
                let built = self
                    .definitions
                    .iter()
                    .try_for_each(|remake| c.batch_execute(&remake.sql));
                c.batch_execute(&format!(
                    "PRAGMA threads = 0; PRAGMA cache_size = {previous}"
                ))?;
                if on_files {
                    c.batch_execute(&format!("PRAGMA temp_store = {temp_store}"))?;
                }
                Ok(built?)
            }
        }
    }
}

#[derive(QueryableByName)]
struct TempStore {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    temp_store: i32,
}

/// `PRAGMA temp_store`'s value for temporary files.
const TEMP_STORE_FILE: i32 = 1;

/// SQLite's worker threads for sorting an index's keys, and the page cache (KiB) while it
/// does, which sets the size of the runs they sort (`DroppedIndexes::restore`): the smaller
/// the run, the fewer cache misses in its sort (the period index of 10,000,000 transactions
/// in the sqlite3 shell, CPU: 17.6 s with runs of 64 MB, 12.8 s with 4 MB, 11.7-12.5 s with
/// 1-2 MB; SQLite's least is 1 MB).
const SORT_THREADS: u32 = 2;
const SORT_CACHE_KIB: u32 = 2 * 1024;

/// Whether an import of `rows` rows into a table of about `existing` rows is large enough to
/// drop the table's indexes and build them again after.
pub fn bulk(rows: u64, existing: i64) -> bool {
    rows >= SCAN_ALL_FROM && i64::try_from(rows).unwrap_or(i64::MAX) >= existing
}

/// One row of the import log.
#[derive(Debug, Clone, Queryable, serde::Serialize, utoipa::ToSchema)]
pub struct ImportLogEntry {
    pub id: String,
    pub kind: String,
    pub file_name: String,
    pub rows_read: i64,
    pub rows_imported: i64,
    pub rows_rejected: i64,
    pub imported_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: NaiveDateTime,
}

/// The latest imports, newest first.
pub fn recent(conn: &mut DbConnection, limit: i64) -> DbResult<Vec<ImportLogEntry>> {
    Ok(imports::table
        .order(imports::occurred_at.desc())
        .then_order_by(imports::id.desc())
        .select((
            imports::id,
            imports::kind,
            imports::file_name,
            imports::rows_read,
            imports::rows_imported,
            imports::rows_rejected,
            imports::imported_by,
            imports::occurred_at,
        ))
        .limit(limit)
        .load(conn)?)
}
