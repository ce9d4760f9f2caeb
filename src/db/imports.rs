//! Storing imports: the second pass over a file the first pass (`crate::imports`) validated,
//! in batches of multi-row INSERTs inside one write transaction, with the checks that need the
//! database (erased ids, unknown customers, the consent ledger's order), the import log row
//! and the trail entries. All of a file or nothing, unless `skip_invalid` is asked for.
//!
//! Large files (see `bulk`) take a faster path on SQLite, with the same outcome: the customers'
//! ids are read in one scan instead of per batch, and the table's secondary indexes are
//! dropped before the rows go in and built again after them, inside the same transaction (a
//! duplicate key fails the build, the import and its rollback, which restores the index).
//! Full batches go through one cached prepared statement; timestamps are bound as text made
//! once (`Stamp`). The file is read and parsed on a second thread while this one writes
//! (`second_pass`).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::json;

use super::customers::{IdTable, next_id};
use super::schema::{
    attribute_columns, consent_events, customer_protected, customers, erased_customers, imports,
    transactions,
};
use super::{Db, DbConnection, DbError, DbResult, trail as trail_store};
use crate::customers::Pseudonymizer;
use crate::imports::consents::{self, ConsentColumns, ConsentRow};
use crate::imports::customers::{self as cust, CustomerColumns, CustomerRow};
use crate::imports::rejected::RejectedWriter;
use crate::imports::transactions::{self as transaction_csv, TransactionColumns, TransactionRow};
use crate::imports::{
    ImportError, ImportKind, ImportLimits, ImportOptions, ImportReport, ReadAhead, RowError,
    ShapeGuard, csv_reader, is_blank, next_record, read_ahead, read_header, record_fields,
};
use crate::policy::Policy;
use crate::trail::{Actor, NewEntry};

/// Rows per INSERT statement: well below SQLite's and PostgreSQL's bind-parameter limits.
const BATCH: usize = 500;

/// A timestamp bound with its SQLite text made beforehand (for rows, on the reading thread):
/// diesel formats a `NaiveDateTime` for SQLite (`%F %T%.f`) on every bind, parsing the format
/// each time, which a million-row import felt. The text is the same as diesel's, so reading back is unchanged; PostgreSQL
/// gets the timestamp itself.
#[derive(Debug, Clone, diesel::expression::AsExpression)]
#[diesel(sql_type = diesel::sql_types::Timestamp)]
struct Stamp {
    at: NaiveDateTime,
    sqlite: std::sync::Arc<str>,
}

/// diesel's SQLite timestamp format, parsed once.
fn stamp_format() -> Vec<chrono::format::Item<'static>> {
    chrono::format::StrftimeItems::new("%F %T%.f").collect()
}

impl Stamp {
    fn new(at: NaiveDateTime, format: &[chrono::format::Item<'static>]) -> Stamp {
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

/// One import to run.
pub struct ImportRequest<'a> {
    pub kind: ImportKind,
    /// The CSV file to read (twice).
    pub path: &'a Path,
    /// The name shown in the report, the log and the trail.
    pub file_name: &'a str,
    pub options: ImportOptions,
    /// With `skip_invalid`: where to write the rejected rows, with reasons.
    pub rejected: Option<&'a Path>,
    pub actor: &'a Actor,
}

/// What the import needs besides the request.
pub struct ImportContext<'a> {
    pub db: &'a Db,
    pub policy: &'a Policy,
    pub pseudonyms: &'a Pseudonymizer,
}

enum Columns {
    Customers(CustomerColumns),
    Transactions(TransactionColumns),
    Consents(ConsentColumns),
}

impl Columns {
    fn header(&self) -> &[String] {
        match self {
            Columns::Customers(c) => &c.header,
            Columns::Transactions(c) => &c.header,
            Columns::Consents(c) => &c.header,
        }
    }
}

/// The file, read through the shape guard (unterminated quotes, cell and row limits).
type Input = ShapeGuard<BufReader<File>>;

fn open(path: &Path, file: &str, limits: ImportLimits) -> Result<Input, ImportError> {
    File::open(path)
        .map(|f| ShapeGuard::new(BufReader::with_capacity(1 << 16, f), limits))
        .map_err(|e| ImportError::Unreadable {
            file: file.to_string(),
            reason: e.to_string(),
        })
}

/// Runs an import: validates the whole file, then writes it in one transaction.
#[tracing::instrument(skip_all, fields(kind = req.kind.as_str(), file = req.file_name))]
pub fn import(
    ctx: &ImportContext<'_>,
    req: &ImportRequest<'_>,
) -> Result<ImportReport, ImportError> {
    let file = crate::imports::display_name(req.file_name);
    let input = open(req.path, &file, req.options.limits)?;
    let (columns, scan) = match req.kind {
        ImportKind::Customers => {
            cust::scan(input, &file, ctx.policy).map(|(c, s)| (Columns::Customers(c), s))?
        }
        ImportKind::Transactions => {
            transaction_csv::scan(input, &file).map(|(c, s)| (Columns::Transactions(c), s))?
        }
        ImportKind::Consents => {
            consents::scan(input, &file, ctx.policy).map(|(c, s)| (Columns::Consents(c), s))?
        }
    };
    if scan.report.errors_total > 0 && !req.options.skip_invalid {
        return Err(ImportError::Invalid(Box::new(scan.report)));
    }
    let rejected = match (req.options.skip_invalid, req.rejected) {
        (true, Some(path)) => {
            let f = File::create(path).map_err(|e| ImportError::RejectedFile {
                file: path.display().to_string(),
                reason: e.to_string(),
            })?;
            Some(
                RejectedWriter::new(BufWriter::new(f), columns.header()).map_err(|e| {
                    ImportError::RejectedFile {
                        file: path.display().to_string(),
                        reason: e.to_string(),
                    }
                })?,
            )
        }
        _ => None,
    };
    let rejected_failure = |reason| ImportError::RejectedFile {
        file: req
            .rejected
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        reason,
    };
    ctx.db.write(|conn| {
        let mut pass = Pass {
            report: scan.report.clone(),
            bad_lines: &scan.bad_lines,
            rejected,
            rejected_error: None,
            now: super::now(),
            import_id: uuid::Uuid::now_v7().to_string(),
            db_errors: 0,
        };
        let input = match open(req.path, &file, req.options.limits) {
            Ok(input) => input,
            Err(e) => {
                let mut report = pass.report;
                report.push_error(RowError::new(0, None, e.to_string()));
                return Err(ImportError::Invalid(Box::new(report)));
            }
        };
        let mut tuned = SqliteTuning::apply(conn)?;
        let outcome = match &columns {
            Columns::Customers(c) => write_customers(conn, ctx, req, c, input, &mut pass),
            Columns::Transactions(c) => write_transactions(conn, c, input, &mut pass),
            Columns::Consents(c) => write_consents(conn, ctx, req, c, input, &mut pass),
        };
        tuned.restore(conn)?;
        outcome?;
        if pass.db_errors > 0 && !req.options.skip_invalid {
            return Err(ImportError::Invalid(Box::new(pass.report)));
        }
        let finished = match pass.rejected.take() {
            Some(w) => w.finish().map_err(|e| e.to_string()),
            None => Ok(()),
        };
        if let Some(e) = pass.rejected_error.take().or(finished.err()) {
            return Err(rejected_failure(e));
        }
        if let Columns::Customers(c) = &columns {
            record_attribute_columns(conn, c, pass.now)?;
        }
        pass.report.import_id = Some(pass.import_id.clone());
        log_import(conn, ctx, req, &pass)?;
        Ok(pass.report)
    })
}

/// The second pass's state.
struct Pass<'s> {
    report: ImportReport,
    bad_lines: &'s HashMap<u64, (Option<String>, String)>,
    rejected: Option<RejectedWriter<BufWriter<File>>>,
    rejected_error: Option<String>,
    now: NaiveDateTime,
    import_id: String,
    /// Rows refused by the database checks (unknown customer, erased id, ledger order).
    db_errors: u64,
}

impl Pass<'_> {
    fn write_rejected(
        &mut self,
        record: &csv::ByteRecord,
        line: u64,
        column: Option<&str>,
        reason: &str,
    ) {
        if let Some(w) = &mut self.rejected
            && let Err(e) = w.write(record, line, column, reason)
        {
            self.rejected_error.get_or_insert(e.to_string());
        }
    }

    fn refuse(&mut self, record: Option<&csv::ByteRecord>, error: RowError) {
        if let Some(record) = record {
            self.write_rejected(record, error.line, error.column.as_deref(), &error.reason);
        }
        self.db_errors += 1;
        self.report.rows_rejected += 1;
        self.report.push_error(error);
    }
}

/// A parsed row waiting in a batch, with its record when rejected rows are being written.
struct Pending<T> {
    row: T,
    record: Option<csv::ByteRecord>,
}

/// What the reading thread hands the writing one: up to `BATCH` parsed rows, and the rows
/// between them that cannot go in, in file order.
struct Chunk<T> {
    rows: Vec<Pending<T>>,
    rejected: Vec<Rejected>,
}

enum Rejected {
    /// A row the first pass found bad (already counted): only its record, for the
    /// rejected-rows file, with the column and reason of its first error.
    FirstPass {
        record: csv::ByteRecord,
        line: u64,
        column: Option<String>,
        reason: String,
    },
    /// A row that fails to parse now.
    Parse {
        record: csv::ByteRecord,
        errors: Vec<RowError>,
    },
}

/// Chunks in flight between the threads: enough to keep the writer busy, few enough that a
/// file of millions of rows is never held whole.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Walks the file again: rows the first pass rejected go to the rejected file, the others
/// are parsed and handed to `flush` in batches.
///
/// Reading and parsing (CSV, numbers, dates, pseudonyms, JSON) run on a thread of their own
/// beside the one that holds the connection and writes, so a large import keeps two cores
/// busy; the bounded channel between them keeps memory flat.
fn second_pass<T: Send>(
    conn: &mut DbConnection,
    input: Input,
    kind: ImportKind,
    header: &[String],
    pass: &mut Pass<'_>,
    parse: impl FnMut(&[&str], u64) -> Result<T, Vec<RowError>> + Send,
    mut flush: impl FnMut(&mut DbConnection, &mut [Pending<T>], &mut Pass<'_>) -> DbResult<()>,
) -> DbResult<()> {
    let bad_lines = pass.bad_lines;
    let keep_records = pass.rejected.is_some();
    read_ahead(
        "import-parse",
        CHUNKS_IN_FLIGHT,
        move |lanes| read_chunks(input, kind, header, bad_lines, keep_records, parse, lanes),
        |chunk: &mut Chunk<T>| {
            for rejected in chunk.rejected.drain(..) {
                match rejected {
                    Rejected::FirstPass {
                        record,
                        line,
                        column,
                        reason,
                    } => pass.write_rejected(&record, line, column.as_deref(), &reason),
                    Rejected::Parse { record, errors } => {
                        for e in errors {
                            pass.refuse(Some(&record), e);
                        }
                    }
                }
            }
            if chunk.rows.is_empty() {
                return Ok(());
            }
            flush(conn, &mut chunk.rows, pass)
        },
        |e| DbError::Thread(e.to_string()),
    )
}

/// The reading side of `second_pass`. Stops at the end of the file, at a record the parser
/// cannot read (which ended the first pass too), or when the writer has stopped listening.
fn read_chunks<T>(
    input: Input,
    kind: ImportKind,
    header: &[String],
    bad_lines: &HashMap<u64, (Option<String>, String)>,
    keep_records: bool,
    mut parse: impl FnMut(&[&str], u64) -> Result<T, Vec<RowError>>,
    lanes: ReadAhead<Chunk<T>>,
) {
    let mut reader = csv_reader(input);
    let _ = read_header(&mut reader, kind);
    let mut record = csv::ByteRecord::new();
    let empty = || match lanes.reuse() {
        Some(mut used) => {
            used.rows.clear();
            used.rejected.clear();
            used
        }
        None => Chunk {
            rows: Vec::with_capacity(BATCH),
            rejected: Vec::new(),
        },
    };
    let mut chunk = empty();
    while let Ok(Some(line)) = next_record(&mut reader, &mut record, header) {
        if is_blank(&record) {
            continue;
        }
        if let Some((column, reason)) = (!bad_lines.is_empty())
            .then(|| bad_lines.get(&line))
            .flatten()
        {
            if keep_records {
                chunk.rejected.push(Rejected::FirstPass {
                    record: record.clone(),
                    line,
                    column: column.clone(),
                    reason: reason.clone(),
                });
            }
            continue;
        }
        let parsed = record_fields(&record, header, line)
            .map_err(|e| vec![e])
            .and_then(|f| parse(&f, line));
        match parsed {
            Ok(row) => chunk.rows.push(Pending {
                row,
                record: keep_records.then(|| record.clone()),
            }),
            Err(errors) => chunk.rejected.push(Rejected::Parse {
                record: record.clone(),
                errors,
            }),
        }
        if chunk.rows.len() >= BATCH && !lanes.send(std::mem::replace(&mut chunk, empty())) {
            return;
        }
    }
    if !chunk.rows.is_empty() || !chunk.rejected.is_empty() {
        lanes.send(chunk);
    }
}

/// A customer row with what can be worked out before the database is asked: the pseudonym
/// and the stored JSON objects (made on the reading thread).
struct PreparedCustomer {
    row: CustomerRow,
    pseudonym: String,
    attributes: String,
    protected: Option<String>,
}

fn write_customers(
    conn: &mut DbConnection,
    ctx: &ImportContext<'_>,
    req: &ImportRequest<'_>,
    columns: &CustomerColumns,
    input: Input,
    pass: &mut Pass<'_>,
) -> DbResult<()> {
    let mut next = next_id(conn, IdTable::Customers)?;
    // On an empty table (a first import) there is nobody to update: skip the lookups.
    let any_customers = next > 1;
    let any_erased = erased_customers::table
        .select(erased_customers::pseudonym)
        .first::<String>(conn)
        .optional()?
        .is_some();
    let has_protected = columns.attributes.iter().any(|a| a.protected);
    let policy_version = ctx.policy.version.clone();
    let now = Stamp::new(pass.now, &stamp_format());
    // A large import builds the pseudonym index (and, into an empty table, the external id
    // index) at the end; re-imported customers are still found by external id.
    let dropped = if bulk(pass.report.rows_read, next - 1) {
        let keep: &[&str] = if any_customers {
            &["customers_external_id"]
        } else {
            &[]
        };
        Some(DroppedIndexes::drop(conn, "customers", keep)?)
    } else {
        None
    };
    second_pass(
        conn,
        input,
        ImportKind::Customers,
        &columns.header,
        pass,
        |fields, line| {
            let row = cust::parse_row(fields, columns, line).map_err(|e| vec![e])?;
            Ok(PreparedCustomer {
                pseudonym: ctx.pseudonyms.pseudonym(&row.id),
                attributes: cust::attributes_json(columns, &row, false),
                protected: has_protected.then(|| cust::attributes_json(columns, &row, true)),
                row,
            })
        },
        |conn, batch, pass| {
            let pseudonyms: Vec<&str> = batch.iter().map(|p| p.row.pseudonym.as_str()).collect();
            let erased: HashSet<String> = if any_erased && !req.options.allow_erased {
                erased_customers::table
                    .filter(erased_customers::pseudonym.eq_any(&pseudonyms))
                    .select(erased_customers::pseudonym)
                    .load(conn)?
                    .into_iter()
                    .collect()
            } else {
                HashSet::new()
            };
            let existing: HashMap<String, (i64, String)> = if any_customers {
                let ids: Vec<&str> = batch.iter().map(|p| p.row.row.id.as_str()).collect();
                customers::table
                    .filter(customers::external_id.eq_any(&ids))
                    .select((customers::external_id, customers::id, customers::attributes))
                    .load::<(String, i64, String)>(conn)?
                    .into_iter()
                    .map(|(e, id, a)| (e, (id, a)))
                    .collect()
            } else {
                HashMap::new()
            };
            let existing_protected: HashMap<i64, String> = if has_protected && !existing.is_empty()
            {
                let ids: Vec<i64> = existing.values().map(|(id, _)| *id).collect();
                customer_protected::table
                    .filter(customer_protected::customer_id.eq_any(&ids))
                    .select((
                        customer_protected::customer_id,
                        customer_protected::attributes,
                    ))
                    .load::<(i64, String)>(conn)?
                    .into_iter()
                    .collect()
            } else {
                HashMap::new()
            };
            let mut new_rows = Vec::with_capacity(batch.len());
            let mut new_protected = Vec::new();
            for p in batch.iter_mut() {
                let PreparedCustomer {
                    row,
                    pseudonym,
                    attributes,
                    protected,
                } = &mut p.row;
                if erased.contains(pseudonym) {
                    pass.refuse(
                        p.record.as_ref(),
                        RowError::new(
                            row.line,
                            Some(&columns.header[columns.id]),
                            "this customer was erased; importing them again needs --allow-erased \
                             (API: allow_erased=true)",
                        ),
                    );
                    continue;
                }
                match existing.get(row.id.as_str()) {
                    None => {
                        let id = next;
                        next += 1;
                        new_rows.push((
                            customers::id.eq(id),
                            customers::external_id.eq(row.id.as_str().to_string()),
                            customers::pseudonym.eq(std::mem::take(pseudonym)),
                            customers::attributes.eq(std::mem::take(attributes)),
                            customers::created_at.eq(now.clone()),
                            customers::updated_at.eq(now.clone()),
                        ));
                        if let Some(protected) = protected {
                            new_protected.push((
                                customer_protected::customer_id.eq(id),
                                customer_protected::attributes.eq(std::mem::take(protected)),
                            ));
                        }
                        pass.report.customers_created += 1;
                    }
                    Some((id, stored)) => {
                        let (merged, mut changed) = cust::merge(stored, attributes);
                        if !changed.is_empty() {
                            diesel::update(customers::table.find(*id))
                                .set((
                                    customers::attributes.eq(&merged),
                                    customers::updated_at.eq(pass.now),
                                ))
                                .execute(conn)?;
                        }
                        if let Some(protected) = protected {
                            let stored = existing_protected.get(id).map_or("{}", String::as_str);
                            let (merged, names) = cust::merge(stored, protected);
                            if !names.is_empty() {
                                diesel::delete(customer_protected::table.find(*id))
                                    .execute(conn)?;
                                diesel::insert_into(customer_protected::table)
                                    .values((
                                        customer_protected::customer_id.eq(*id),
                                        customer_protected::attributes.eq(merged),
                                    ))
                                    .execute(conn)?;
                                changed.extend(names);
                            }
                        }
                        if !changed.is_empty() {
                            trail_store::append(
                                conn,
                                NewEntry::new(
                                    req.actor,
                                    "customer.updated",
                                    &*pseudonym,
                                    json!({"changed": changed, "import": pass.import_id}),
                                ),
                                &policy_version,
                            )?;
                            pass.report.customers_updated += 1;
                        }
                    }
                }
                pass.report.rows_imported += 1;
            }
            if !new_rows.is_empty() {
                insert_rows!(conn, customers::table, new_rows, BATCH)?;
            }
            if !new_protected.is_empty() {
                insert_rows!(conn, customer_protected::table, new_protected, BATCH)?;
            }
            Ok(())
        },
    )?;
    match dropped {
        Some(dropped) => dropped.restore(conn),
        None => Ok(()),
    }
}

/// The internal ids of the customers a file names. A file of many rows reads the whole
/// table's ids once (one scan); a small one looks up each batch's ids.
enum KnownCustomers {
    All(HashMap<Box<str>, i64, foldhash::fast::RandomState>),
    PerBatch,
}

/// Files with at least this many rows, and at least a quarter as many rows as there are
/// customers, read all the ids at once.
const SCAN_ALL_FROM: u64 = 20_000;

impl KnownCustomers {
    fn for_file(conn: &mut DbConnection, rows: u64) -> DbResult<KnownCustomers> {
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
        Ok(KnownCustomers::All(all))
    }

    /// The ids of a batch's customers that exist.
    fn batch<'s, 'r>(
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
enum Known<'a> {
    All(&'a HashMap<Box<str>, i64, foldhash::fast::RandomState>),
    Batch(HashMap<String, i64>),
}

impl Known<'_> {
    fn get(&self, external: &str) -> Option<&i64> {
        match self {
            Known::All(all) => all.get(external),
            Known::Batch(batch) => batch.get(external),
        }
    }
}

fn unknown_customer(line: u64, column: &str) -> RowError {
    RowError::new(
        line,
        Some(column),
        "unknown customer: import them (customers.csv) before their transactions and consents",
    )
}

fn write_transactions(
    conn: &mut DbConnection,
    columns: &TransactionColumns,
    input: Input,
    pass: &mut Pass<'_>,
) -> DbResult<()> {
    let mut next = next_id(conn, IdTable::Transactions)?;
    let known_customers = KnownCustomers::for_file(conn, pass.report.rows_read)?;
    let dropped = if bulk(pass.report.rows_read, next - 1) {
        Some(DroppedIndexes::drop(conn, "transactions", &[])?)
    } else {
        None
    };
    let format = stamp_format();
    let now = Stamp::new(pass.now, &format);
    let id_header = columns.header[0..]
        .iter()
        .find(|h| h.eq_ignore_ascii_case("customer_id"))
        .cloned()
        .unwrap_or_else(|| "customer_id".into());
    second_pass(
        conn,
        input,
        ImportKind::Transactions,
        &columns.header,
        pass,
        |fields, line| {
            let row = transaction_csv::parse_row(fields, columns, line)?;
            let occurred_at = Stamp::new(row.occurred_at, &format);
            Ok((row, occurred_at))
        },
        |conn, batch, pass| {
            let known =
                known_customers.batch(conn, batch.iter().map(|p| p.row.0.customer.as_str()))?;
            let mut rows = Vec::with_capacity(batch.len());
            for p in batch.iter_mut() {
                let (row, occurred_at): &mut (TransactionRow, Stamp) = &mut p.row;
                let Some(customer) = known.get(row.customer.as_str()) else {
                    pass.refuse(p.record.as_ref(), unknown_customer(row.line, &id_header));
                    continue;
                };
                rows.push((
                    transactions::id.eq(next),
                    transactions::customer_id.eq(*customer),
                    transactions::occurred_at.eq(occurred_at.clone()),
                    transactions::amount.eq(row.amount),
                    transactions::quantity.eq(row.quantity),
                    transactions::order_id.eq(row.order_id.take()),
                    transactions::imported_at.eq(now.clone()),
                ));
                next += 1;
                pass.report.rows_imported += 1;
            }
            if !rows.is_empty() {
                insert_rows!(conn, transactions::table, rows, BATCH)?;
            }
            Ok(())
        },
    )?;
    match dropped {
        Some(dropped) => dropped.restore(conn),
        None => Ok(()),
    }
}

fn write_consents(
    conn: &mut DbConnection,
    ctx: &ImportContext<'_>,
    req: &ImportRequest<'_>,
    columns: &ConsentColumns,
    input: Input,
    pass: &mut Pass<'_>,
) -> DbResult<()> {
    let first_event_id = next_id(conn, IdTable::ConsentEvents)?;
    let mut next = first_event_id;
    let known_customers = KnownCustomers::for_file(conn, pass.report.rows_read)?;
    let recorded_by = req.actor.as_str().to_string();
    second_pass(
        conn,
        input,
        ImportKind::Consents,
        &columns.header,
        pass,
        |fields, line| consents::parse_row(fields, columns, line, ctx.policy),
        |conn, batch, pass| {
            let known =
                known_customers.batch(conn, batch.iter().map(|p| p.row.customer.as_str()))?;
            let internal: Vec<i64> = batch
                .iter()
                .filter_map(|p| known.get(p.row.customer.as_str()).copied())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let latest: HashMap<(i64, String), NaiveDateTime> = consent_events::table
                .filter(consent_events::customer_id.eq_any(&internal))
                .group_by((consent_events::customer_id, consent_events::purpose))
                .select((
                    consent_events::customer_id,
                    consent_events::purpose,
                    diesel::dsl::max(consent_events::recorded_at),
                ))
                .load::<(i64, String, Option<NaiveDateTime>)>(conn)?
                .into_iter()
                .filter_map(|(c, p, t)| t.map(|t| ((c, p), t)))
                .collect();
            let mut rows = Vec::with_capacity(batch.len());
            for p in batch.iter() {
                let row: &ConsentRow = &p.row;
                let Some(customer) = known.get(row.customer.as_str()) else {
                    pass.refuse(
                        p.record.as_ref(),
                        unknown_customer(row.line, columns.header_of("customer_id")),
                    );
                    continue;
                };
                let before = latest.get(&(*customer, row.purpose.clone())).copied();
                if let Err(reason) = crate::consent::check_order(before, row.recorded_at) {
                    pass.refuse(
                        p.record.as_ref(),
                        RowError::new(row.line, Some(columns.header_of("recorded_at")), reason),
                    );
                    continue;
                }
                rows.push((
                    consent_events::id.eq(next),
                    consent_events::customer_id.eq(*customer),
                    consent_events::purpose.eq(row.purpose.clone()),
                    consent_events::status.eq(row.status.as_str()),
                    consent_events::recorded_at.eq(row.recorded_at),
                    consent_events::source.eq(row.source.clone()),
                    consent_events::notice_version.eq(row.notice_version.clone()),
                    consent_events::recorded_by.eq(recorded_by.clone()),
                    consent_events::entered_at.eq(pass.now),
                ));
                next += 1;
                pass.report.rows_imported += 1;
            }
            if !rows.is_empty() {
                insert_rows!(conn, consent_events::table, rows, BATCH)?;
            }
            Ok(())
        },
    )?;
    // The consent state takes in every event this import appended.
    super::consent_state::apply_events_from(conn, first_event_id)
}

/// Keeps the attribute columns seen and their inferred types.
fn record_attribute_columns(
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

fn log_import(
    conn: &mut DbConnection,
    ctx: &ImportContext<'_>,
    req: &ImportRequest<'_>,
    pass: &Pass<'_>,
) -> DbResult<()> {
    let r = &pass.report;
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    diesel::insert_into(imports::table)
        .values((
            imports::id.eq(&pass.import_id),
            imports::kind.eq(req.kind.as_str()),
            imports::file_name.eq(&r.file),
            imports::rows_read.eq(as_i64(r.rows_read)),
            imports::rows_imported.eq(as_i64(r.rows_imported)),
            imports::rows_rejected.eq(as_i64(r.rows_rejected)),
            imports::imported_by.eq(req.actor.as_str()),
            imports::occurred_at.eq(pass.now),
            imports::report.eq(serde_json::to_string(r).unwrap_or_default()),
        ))
        .execute(conn)?;
    let action = match req.kind {
        ImportKind::Customers => "import.customers",
        ImportKind::Transactions => "import.transactions",
        ImportKind::Consents => "import.consents",
    };
    let mut detail = json!({
        "file": r.file,
        "rows_read": r.rows_read,
        "rows_imported": r.rows_imported,
        "rows_rejected": r.rows_rejected,
        "skip_invalid": req.options.skip_invalid,
        "allow_erased": req.options.allow_erased,
    });
    if req.kind == ImportKind::Customers {
        detail["customers_created"] = json!(r.customers_created);
        detail["customers_updated"] = json!(r.customers_updated);
    }
    trail_store::append(
        conn,
        NewEntry::new(req.actor, action, &pass.import_id, detail),
        &ctx.policy.version,
    )?;
    Ok(())
}

/// SQLite: a bigger page cache while a large import runs (index pages of a million rows stay
/// in memory), put back afterwards. PostgreSQL needs nothing.
struct SqliteTuning {
    previous: Option<i64>,
}

#[derive(QueryableByName)]
struct CacheSize {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    cache_size: i64,
}

impl SqliteTuning {
    fn apply(conn: &mut DbConnection) -> DbResult<SqliteTuning> {
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

    fn restore(&mut self, conn: &mut DbConnection) -> DbResult<()> {
        use diesel::connection::SimpleConnection;
        if let (Some(previous), DbConnection::Sqlite(c)) = (self.previous.take(), conn) {
            c.batch_execute(&format!("PRAGMA cache_size = {previous}"))?;
        }
        Ok(())
    }
}

/// SQLite: the secondary indexes of a table, dropped for a bulk insert and built again after
/// it, in the same transaction. Building an index in one sorted pass is several times faster
/// than keeping it current row by row when the keys arrive in random order (pseudonyms, the
/// customers of transactions). A unique index that cannot be built again (a duplicate key)
/// fails the import, and the rollback brings the old index back. PostgreSQL keeps its indexes.
struct DroppedIndexes {
    /// The `CREATE INDEX` statements, as the schema holds them.
    definitions: Vec<String>,
}

#[derive(QueryableByName)]
struct IndexDefinition {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    sql: String,
}

impl DroppedIndexes {
    /// Drops the table's named indexes except `keep` (SQLite's automatic indexes of PRIMARY
    /// KEY and UNIQUE column constraints cannot be dropped and stay).
    fn drop(conn: &mut DbConnection, table: &str, keep: &[&str]) -> DbResult<DroppedIndexes> {
        use diesel::connection::SimpleConnection;
        let DbConnection::Sqlite(c) = conn else {
            return Ok(DroppedIndexes {
                definitions: Vec::new(),
            });
        };
        let indexes = diesel::sql_query(
            "SELECT name, sql FROM sqlite_master \
             WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL ORDER BY name",
        )
        .bind::<diesel::sql_types::Text, _>(table)
        .load::<IndexDefinition>(c)?;
        let mut definitions = Vec::new();
        for index in indexes {
            if keep.contains(&index.name.as_str()) {
                continue;
            }
            c.batch_execute(&format!(
                "DROP INDEX \"{}\"",
                index.name.replace('"', "\"\"")
            ))?;
            definitions.push(index.sql);
        }
        Ok(DroppedIndexes { definitions })
    }

    fn restore(self, conn: &mut DbConnection) -> DbResult<()> {
        use diesel::connection::SimpleConnection;
        if let DbConnection::Sqlite(c) = conn {
            for sql in &self.definitions {
                c.batch_execute(sql)?;
            }
        }
        Ok(())
    }
}

/// Whether an import of `rows` rows into a table of about `existing` rows is large enough to
/// drop the table's indexes and build them again after.
fn bulk(rows: u64, existing: i64) -> bool {
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
