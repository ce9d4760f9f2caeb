//! The import use case: a file checked by `crate::imports` and written inside one write
//! transaction, with the checks that need the database (erased ids, unknown customers, the
//! consent ledger's order), the import log row and the trail entries. All of a file or
//! nothing, unless `skip_invalid` is asked for. Storage (lookups, bulk writes by COPY or
//! multi-row INSERT, the SQLite tuning) is `db::imports`.
//!
//! Customers and transactions (without `skip_invalid`) are checked and written in one walk
//! over the file (`one_walk`): the checks run on a reading thread while this one writes, and
//! a file found bad leaves nothing. Consents, imports with `skip_invalid` (whose rejected
//! rows must be known before any is written) and customers files whose types settle late
//! take two passes: the first checks (`crate::imports`), the second is read and parsed on a
//! second thread while this one writes (`second_pass`).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use chrono::NaiveDateTime;
use serde_json::json;

use crate::customers::{CustomerId, Pseudonymizer};
use crate::db::customers::{IdTable, next_id};
use crate::db::imports::{
    self as store, CustomerCopy, DroppedIndexes, ImportLogRow, KnownCustomers, NewConsentEvent,
    NewCustomer, NewTransaction, Primary, SqliteTuning, Stamp, bulk, stamp_format,
};
use crate::db::{Backend, Db, DbConnection, DbError, DbResult, KeyChecks, trail as trail_store};
use crate::imports::consents::{self, ConsentColumns, ConsentRow};
use crate::imports::customers::{self as cust, CustomerColumns};
use crate::imports::rejected::RejectedWriter;
use crate::imports::transactions::{self as transaction_csv, TransactionColumns, TransactionRow};
use crate::imports::{
    ColumnKind, ImportError, ImportKind, ImportLimits, ImportOptions, ImportReport, ReadAhead,
    RowError, Scan, ShapeGuard, csv_reader, is_blank, is_missing, next_record, read_ahead,
    read_header, record_fields,
};
use crate::policy::Policy;
use crate::trail::{Actor, NewEntry};

/// Rows handed from the reading thread to the writing one at a time, and so rows per round of
/// database checks and per write: SQLite writes them as one multi-row INSERT (its bind-parameter
/// limit), PostgreSQL as one COPY, where a bigger batch saves round trips.
fn batch_rows(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => crate::db::SQLITE_ROWS,
        Backend::Postgres => 10_000,
    }
}

/// Who checks that the customers a file's rows name exist: customers and transactions imports
/// check every row themselves (`unknown_customer`, ids assigned inside the transaction), so
/// SQLite's own check of each row's foreign key is skipped; consents keep it.
fn key_checks(kind: ImportKind) -> KeyChecks {
    match kind {
        ImportKind::Customers | ImportKind::Transactions => KeyChecks::ByImport,
        ImportKind::Consents => KeyChecks::ByDatabase,
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
    // Without `skip_invalid`, customers and transactions are checked and written in one
    // walk over the file (consents keep two passes: the ledger's order is checked per batch).
    if !req.options.skip_invalid {
        match req.kind {
            ImportKind::Customers => {
                if let Some(report) = import_customers_in_one_walk(ctx, req, &file)? {
                    return Ok(report);
                }
            }
            ImportKind::Transactions => return import_transactions_in_one_walk(ctx, req, &file),
            ImportKind::Consents => {}
        }
    }
    let input = open(req.path, &file, req.options.limits)?;
    let started = std::time::Instant::now();
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
    let batch = batch_rows(ctx.db.backend());
    let scanned = started.elapsed();
    ctx.db.write_import(key_checks(req.kind), |conn| {
        let mut pass = Pass {
            writing: std::time::Duration::ZERO,
            batch,
            report: scan.report.clone(),
            bad_lines: &scan.bad_lines,
            rejected,
            rejected_error: None,
            now: crate::db::now(),
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
            store::record_attribute_columns(conn, c, pass.now)?;
        }
        pass.report.import_id = Some(pass.import_id.clone());
        log_import(conn, ctx, req, &pass)?;
        // Where the time went, for whoever tunes imports (`RUST_LOG=fairseg=info`): the first
        // pass, then the second (reading beside writing), of which the writer's own share.
        tracing::info!(
            rows = pass.report.rows_read,
            first_pass_ms = scanned.as_millis(),
            second_pass_ms = (started.elapsed() - scanned).as_millis(),
            writing_ms = pass.writing.as_millis(),
            "import written"
        );
        Ok(pass.report)
    })
}

/// The second pass's state.
struct Pass<'s> {
    /// Rows per batch (`batch_rows`).
    batch: usize,
    report: ImportReport,
    bad_lines: &'s HashMap<u64, (Option<String>, String)>,
    rejected: Option<RejectedWriter<BufWriter<File>>>,
    rejected_error: Option<String>,
    now: NaiveDateTime,
    import_id: String,
    /// Rows refused by the database checks (unknown customer, erased id, ledger order).
    db_errors: u64,
    /// Time the writing thread spent checking and writing batches (not waiting for them).
    writing: std::time::Duration,
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

/// What the reading thread hands the writing one: up to a batch of parsed rows, and the rows
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
    let batch = pass.batch;
    read_ahead(
        "import-parse",
        CHUNKS_IN_FLIGHT,
        move |lanes| {
            let walk = Walk {
                kind,
                header,
                bad_lines,
                keep_records,
                batch,
            };
            read_chunks(input, walk, parse, lanes)
        },
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
            let began = std::time::Instant::now();
            let flushed = flush(conn, &mut chunk.rows, pass);
            pass.writing += began.elapsed();
            flushed
        },
        |e| DbError::Thread(e.to_string()),
    )
}

/// What the reading side of `second_pass` goes by.
struct Walk<'a> {
    kind: ImportKind,
    header: &'a [String],
    /// Rows the first pass rejected: `line -> (column, reason)`.
    bad_lines: &'a HashMap<u64, (Option<String>, String)>,
    /// Whether the records of rejected rows are kept (for the rejected-rows file).
    keep_records: bool,
    batch: usize,
}

/// The reading side of `second_pass`. Stops at the end of the file, at a record the parser
/// cannot read (which ended the first pass too), or when the writer has stopped listening.
fn read_chunks<T>(
    input: Input,
    walk: Walk<'_>,
    mut parse: impl FnMut(&[&str], u64) -> Result<T, Vec<RowError>>,
    lanes: ReadAhead<Chunk<T>>,
) {
    let Walk {
        kind,
        header,
        bad_lines,
        keep_records,
        batch,
    } = walk;
    let mut reader = csv_reader(input);
    let _ = read_header(&mut reader, kind);
    let mut record = csv::ByteRecord::new();
    let empty = || empty_chunk(&lanes, batch);
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
        if chunk.rows.len() >= batch && !lanes.send(std::mem::replace(&mut chunk, empty())) {
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
    line: u64,
    id: CustomerId,
    pseudonym: String,
    attributes: String,
    protected: Option<String>,
}

impl PreparedCustomer {
    /// `kind_of` gives each attribute's type by its position in `columns.attributes`.
    fn new(
        ctx: &ImportContext<'_>,
        columns: &CustomerColumns,
        fields: &[&str],
        id: CustomerId,
        line: u64,
        kind_of: impl Fn(usize) -> ColumnKind + Copy,
    ) -> PreparedCustomer {
        let has_protected = columns.attributes.iter().any(|a| a.protected);
        PreparedCustomer {
            line,
            pseudonym: ctx.pseudonyms.pseudonym(&id),
            attributes: cust::fields_json(columns, fields, false, kind_of),
            protected: has_protected.then(|| cust::fields_json(columns, fields, true, kind_of)),
            id,
        }
    }
}

/// The writing side of a customers import: the checks against the database (erased ids,
/// customers already stored) and the writes of each batch.
struct CustomerWriter<'c> {
    ctx: &'c ImportContext<'c>,
    req: &'c ImportRequest<'c>,
    columns: &'c CustomerColumns,
    next: i64,
    any_customers: bool,
    any_erased: bool,
    has_protected: bool,
    now: Stamp,
    /// The indexes dropped for a bulk import, made again by `finish`.
    dropped: Option<(DroppedIndexes, DroppedIndexes)>,
    /// How the new customers go in on PostgreSQL.
    copy: CustomerCopy,
    /// Whether the written pages are held in memory (`store::hold_written_pages`).
    held: bool,
}

impl<'c> CustomerWriter<'c> {
    /// `rows`: how many rows the file has (or about: it decides whether to take the bulk path).
    fn new(
        conn: &mut DbConnection,
        ctx: &'c ImportContext<'c>,
        req: &'c ImportRequest<'c>,
        columns: &'c CustomerColumns,
        rows: u64,
        now: NaiveDateTime,
    ) -> DbResult<CustomerWriter<'c>> {
        let next = next_id(conn, IdTable::Customers)?;
        // On an empty table (a first import) there is nobody to update: skip the lookups.
        let any_customers = next > 1;
        // A large import builds the pseudonym index (and, into an empty table, the external id
        // index and on PostgreSQL the primary keys) at the end; re-imported customers are
        // still found by external id, and updated by primary key.
        let dropped = if bulk(rows, next - 1) {
            let (keep, primary): (&[&str], _) = if any_customers {
                (&["customers_external_id"], Primary::Keep)
            } else {
                (&[], Primary::Drop)
            };
            // The customers' first: dropping their primary key takes the protected
            // attributes' key to it along (`finish` makes them again the other way round).
            let customers = DroppedIndexes::drop(conn, "customers", keep, primary)?;
            let protected = DroppedIndexes::drop(conn, "customer_protected", &[], primary)?;
            Some((customers, protected))
        } else {
            None
        };
        // Into empty tables without the keys of others to them (a first import), PostgreSQL
        // takes the rows frozen.
        let copy = match &dropped {
            Some(_) if !any_customers => store::truncate_empty_customers(conn)?,
            _ => CustomerCopy::Plain,
        };
        // The indexes made again at the end read the rows from memory.
        let held = dropped.is_some();
        if held {
            store::hold_written_pages(conn)?;
        }
        Ok(CustomerWriter {
            ctx,
            req,
            columns,
            next,
            any_customers,
            any_erased: store::any_erased(conn)?,
            has_protected: columns.attributes.iter().any(|a| a.protected),
            now: Stamp::new(now, &stamp_format()),
            dropped,
            copy,
            held,
        })
    }

    fn flush(
        &mut self,
        conn: &mut DbConnection,
        batch: &mut [Pending<PreparedCustomer>],
        pass: &mut Pass<'_>,
    ) -> DbResult<()> {
        let (ctx, req, columns) = (self.ctx, self.req, self.columns);
        let erased: HashSet<String> = if self.any_erased && !req.options.allow_erased {
            let pseudonyms: Vec<&str> = batch.iter().map(|p| p.row.pseudonym.as_str()).collect();
            store::erased_among(conn, &pseudonyms)?
        } else {
            HashSet::new()
        };
        let existing: HashMap<String, (i64, String)> = if self.any_customers {
            let ids: Vec<&str> = batch.iter().map(|p| p.row.id.as_str()).collect();
            store::existing_customers(conn, &ids)?
        } else {
            HashMap::new()
        };
        let existing_protected: HashMap<i64, String> = if self.has_protected && !existing.is_empty()
        {
            let ids: Vec<i64> = existing.values().map(|(id, _)| *id).collect();
            store::protected_of(conn, &ids)?
        } else {
            HashMap::new()
        };
        let mut new_rows = Vec::with_capacity(batch.len());
        for p in batch.iter_mut() {
            let PreparedCustomer {
                line,
                id,
                pseudonym,
                attributes,
                protected,
            } = &mut p.row;
            if erased.contains(pseudonym) {
                pass.refuse(
                    p.record.as_ref(),
                    RowError::new(
                        *line,
                        Some(&columns.header[columns.id]),
                        "this customer was erased; importing them again needs --allow-erased \
                         (API: allow_erased=true)",
                    ),
                );
                continue;
            }
            match existing.get(id.as_str()) {
                None => {
                    new_rows.push(NewCustomer {
                        id: self.next,
                        external_id: id.as_str().to_string(),
                        pseudonym: std::mem::take(pseudonym),
                        attributes: std::mem::take(attributes),
                        protected: protected.take(),
                    });
                    self.next += 1;
                    pass.report.customers_created += 1;
                }
                Some((id, stored)) => {
                    let (merged, mut changed) = cust::merge(stored, attributes);
                    if !changed.is_empty() {
                        store::update_attributes(conn, *id, &merged, pass.now)?;
                    }
                    if let Some(protected) = protected {
                        let stored = existing_protected.get(id).map_or("{}", String::as_str);
                        let (merged, names) = cust::merge(stored, protected);
                        if !names.is_empty() {
                            store::replace_protected(conn, *id, merged)?;
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
                            &ctx.policy.version,
                        )?;
                        pass.report.customers_updated += 1;
                    }
                }
            }
            pass.report.rows_imported += 1;
        }
        store::insert_customers(conn, new_rows, &self.now, self.copy)
    }

    /// Makes the dropped indexes again: the protected attributes' primary key before the
    /// customers' keys, whose check of the protected attributes' key merges the two.
    fn finish(self, conn: &mut DbConnection) -> DbResult<()> {
        if let Some((customers, protected)) = self.dropped {
            protected.restore(conn)?;
            customers.restore(conn)?;
        }
        if self.held {
            store::release_written_pages(conn)?;
        }
        Ok(())
    }
}

fn write_customers(
    conn: &mut DbConnection,
    ctx: &ImportContext<'_>,
    req: &ImportRequest<'_>,
    columns: &CustomerColumns,
    input: Input,
    pass: &mut Pass<'_>,
) -> DbResult<()> {
    let mut writer = CustomerWriter::new(conn, ctx, req, columns, pass.report.rows_read, pass.now)?;
    second_pass(
        conn,
        input,
        ImportKind::Customers,
        &columns.header,
        pass,
        |fields, line| {
            let id = cust::row_id(fields, columns, line).map_err(|e| vec![e])?;
            Ok(PreparedCustomer::new(ctx, columns, fields, id, line, |i| {
                columns.attributes[i].kind
            }))
        },
        |conn, batch, pass| writer.flush(conn, batch, pass),
    )?;
    writer.finish(conn)
}

/// Why a one-walk import stopped short.
enum OneWalk {
    /// A type guessed while writing turned out wrong: the transaction is rolled back and the
    /// file imported in two passes.
    Retry,
    Failed(ImportError),
}

impl From<DbError> for OneWalk {
    fn from(e: DbError) -> OneWalk {
        OneWalk::Failed(ImportError::Db(e))
    }
}

impl From<ImportError> for OneWalk {
    fn from(e: ImportError) -> OneWalk {
        OneWalk::Failed(e)
    }
}

/// What the checking thread of a one-walk import found: the first pass's outcome, whether a
/// guessed type was wrong, and what the kind needs once the rows are in (`X`).
struct Walked<X> {
    scan: Scan,
    guessed_wrong: bool,
    extra: X,
}

/// An import (without `skip_invalid`) in one walk over the file: the first pass's checks
/// (and, for customers, type inference) run on a reading thread, which hands the rows on as
/// it goes; the writer keeps pace on this one, inside the write transaction. A bad row stops
/// the writes, the walk goes on checking so that the report names every error, and nothing
/// is kept, as after a first pass that found errors. Returns `None` when the file must be
/// imported in two passes after all (a guessed type was wrong; nothing was kept).
///
/// `start` prepares the writer (the rows the file has, about, decide the bulk path) and what
/// it shares with the checking (`S`: the customers' ids of a transactions import); `check`
/// runs on a thread of its own, checking every record as the first pass does and handing the
/// good rows on while the file has no error; `flush` writes a batch; `finish`, once every row
/// is in, makes dropped indexes again and records what the kind records.
fn one_walk<T, W, S, X, Start, Check, Flush, Finish>(
    ctx: &ImportContext<'_>,
    req: &ImportRequest<'_>,
    file: &str,
    start: Start,
    check: Check,
    mut flush: Flush,
    finish: Finish,
) -> Result<Option<ImportReport>, ImportError>
where
    T: Send,
    S: Send,
    X: Send,
    Start: FnOnce(&mut DbConnection, u64, NaiveDateTime) -> DbResult<(W, S)>,
    Check: FnOnce(ReadAhead<Chunk<T>>, S) -> Result<Walked<X>, ImportError> + Send,
    Flush: FnMut(&mut W, &mut DbConnection, &mut [Pending<T>], &mut Pass<'_>) -> DbResult<()>,
    Finish: FnOnce(W, &mut DbConnection, X, NaiveDateTime) -> DbResult<()>,
{
    let started = std::time::Instant::now();
    let estimated = crate::imports::estimate_rows(req.path);
    let batch = batch_rows(ctx.db.backend());
    let no_bad_lines = HashMap::new();
    let outcome = ctx.db.write_import(key_checks(req.kind), |conn| {
        let mut pass = Pass {
            writing: std::time::Duration::ZERO,
            batch,
            report: ImportReport::new(req.kind, file),
            bad_lines: &no_bad_lines,
            rejected: None,
            rejected_error: None,
            now: crate::db::now(),
            import_id: uuid::Uuid::now_v7().to_string(),
            db_errors: 0,
        };
        let mut tuned = SqliteTuning::apply(conn)?;
        let (mut writer, shared) = start(conn, estimated, pass.now)?;
        let mut checked: Option<Result<Walked<X>, ImportError>> = None;
        let slot = &mut checked;
        let walked = read_ahead(
            "import-check",
            CHUNKS_IN_FLIGHT,
            move |lanes| *slot = Some(check(lanes, shared)),
            |chunk: &mut Chunk<T>| {
                let began = std::time::Instant::now();
                let flushed = flush(&mut writer, conn, &mut chunk.rows, &mut pass);
                pass.writing += began.elapsed();
                flushed
            },
            |e| DbError::Thread(e.to_string()),
        );
        walked?;
        let Walked {
            scan,
            guessed_wrong,
            extra,
        } = checked
            .take()
            .ok_or_else(|| DbError::Thread("the checking thread stopped early".into()))??;
        if scan.report.errors_total > 0 {
            return Err(OneWalk::Failed(ImportError::Invalid(Box::new(scan.report))));
        }
        if guessed_wrong {
            return Err(OneWalk::Retry);
        }
        finish(writer, conn, extra, pass.now)?;
        tuned.restore(conn)?;
        let written = std::mem::replace(&mut pass.report, ImportReport::new(req.kind, file));
        pass.report = merge_reports(scan.report, written);
        if pass.db_errors > 0 {
            return Err(OneWalk::Failed(ImportError::Invalid(Box::new(pass.report))));
        }
        pass.report.import_id = Some(pass.import_id.clone());
        log_import(conn, ctx, req, &pass)?;
        tracing::info!(
            rows = pass.report.rows_read,
            one_walk_ms = started.elapsed().as_millis(),
            writing_ms = pass.writing.as_millis(),
            "import written"
        );
        Ok(pass.report)
    });
    match outcome {
        Ok(report) => Ok(Some(report)),
        Err(OneWalk::Retry) => {
            tracing::info!("a column's type changed part-way: importing in two passes");
            Ok(None)
        }
        Err(OneWalk::Failed(e)) => Err(e),
    }
}

/// Customers in one walk (`one_walk`), each column written with the type its values so far
/// have: a column written as numbers that later shows a value that is not one sends the file
/// to the two passes.
fn import_customers_in_one_walk(
    ctx: &ImportContext<'_>,
    req: &ImportRequest<'_>,
    file: &str,
) -> Result<Option<ImportReport>, ImportError> {
    let mut reader = csv_reader(open(req.path, file, req.options.limits)?);
    let mut checker = cust::Checker::new(&mut reader, file, ctx.policy)?;
    checker.expect_rows(crate::imports::estimate_rows(req.path));
    let columns = checker.columns.clone();
    let batch = batch_rows(ctx.db.backend());
    one_walk(
        ctx,
        req,
        file,
        |conn, rows, now| CustomerWriter::new(conn, ctx, req, &columns, rows, now).map(|w| (w, ())),
        |lanes, ()| check_customers(ctx, reader, checker, file, batch, lanes),
        |writer, conn, rows, pass| writer.flush(conn, rows, pass),
        |writer, conn, columns, now| {
            writer.finish(conn)?;
            store::record_attribute_columns(conn, &columns, now)
        },
    )
}

/// Transactions in one walk (`one_walk`): they have no types to infer.
fn import_transactions_in_one_walk(
    ctx: &ImportContext<'_>,
    req: &ImportRequest<'_>,
    file: &str,
) -> Result<ImportReport, ImportError> {
    let mut reader = csv_reader(open(req.path, file, req.options.limits)?);
    let columns = transaction_csv::columns(&mut reader, file)?;
    let batch = batch_rows(ctx.db.backend());
    let walked = one_walk(
        ctx,
        req,
        file,
        |conn, rows, now| {
            let writer = TransactionWriter::new(conn, &columns, rows, now)?;
            let ids = writer.known_customers.all();
            Ok((writer, ids))
        },
        |lanes, ids| check_transactions(reader, &columns, file, batch, ids.as_deref(), lanes),
        |writer, conn, rows, pass| writer.flush(conn, rows, pass),
        |writer, conn, (), _| writer.finish(conn),
    )?;
    walked.ok_or_else(|| {
        ImportError::Db(DbError::Thread(
            "a transactions import cannot guess wrong".into(),
        ))
    })
}

/// A transaction on its way to the writer: its row, its time as stored, and its customer's
/// internal id when the checking thread found it (with every customer's id at hand: the
/// lookups of ten million rows kept the writer busy for seconds); otherwise the writer looks
/// the customer up, and refuses the row if there is none.
struct ParsedTransaction {
    row: TransactionRow,
    occurred_at: Stamp,
    customer_id: Option<i64>,
}

/// The checking side of `import_transactions_in_one_walk`. `ids`: every customer's id, when
/// the writer read them at once.
fn check_transactions(
    reader: csv::Reader<Input>,
    columns: &TransactionColumns,
    file: &str,
    batch: usize,
    ids: Option<&HashMap<Box<str>, i64, foldhash::fast::RandomState>>,
    lanes: ReadAhead<Chunk<ParsedTransaction>>,
) -> Result<Walked<()>, ImportError> {
    let format = stamp_format();
    let mut sending = true;
    let mut chunk = empty_chunk(&lanes, batch);
    let mut scan = Scan::new(ImportKind::Transactions, file);
    crate::imports::scan_records(
        reader,
        &columns.header,
        file,
        &mut scan,
        |scan, line, record| {
            let parsed = record_fields(record, &columns.header, line)
                .map_err(|e| vec![e])
                .and_then(|f| transaction_csv::parse_row(&f, columns, line));
            match parsed {
                Err(errors) => {
                    scan.reject(errors);
                    sending = false;
                }
                Ok(row) if sending => {
                    let occurred_at = Stamp::new(row.occurred_at, &format);
                    let customer_id = ids.and_then(|ids| ids.get(row.customer.as_str()).copied());
                    chunk.rows.push(Pending {
                        row: ParsedTransaction {
                            row,
                            occurred_at,
                            customer_id,
                        },
                        record: None,
                    });
                    if chunk.rows.len() >= batch {
                        let full = std::mem::replace(&mut chunk, empty_chunk(&lanes, batch));
                        sending = lanes.send(full);
                    }
                }
                Ok(_) => {}
            }
        },
    )?;
    if sending && !chunk.rows.is_empty() {
        lanes.send(chunk);
    }
    Ok(Walked {
        scan: transaction_csv::finish_scan(columns, file, scan)?,
        guessed_wrong: false,
        extra: (),
    })
}

/// A chunk to fill: one the writer is done with, or a new one.
fn empty_chunk<T>(lanes: &ReadAhead<Chunk<T>>, batch: usize) -> Chunk<T> {
    match lanes.reuse() {
        Some(mut used) => {
            used.rows.clear();
            used.rejected.clear();
            used
        }
        None => Chunk {
            rows: Vec::with_capacity(batch),
            rejected: Vec::new(),
        },
    }
}

/// The checking side of `import_customers_in_one_walk` (on a thread of its own; the CSV is
/// parsed on a third): checks every record as the first pass does and, while the file is
/// good and no guessed type has failed, hands on the rows, prepared with the types so far.
fn check_customers(
    ctx: &ImportContext<'_>,
    reader: csv::Reader<Input>,
    mut checker: cust::Checker,
    file: &str,
    batch: usize,
    lanes: ReadAhead<Chunk<PreparedCustomer>>,
) -> Result<Walked<CustomerColumns>, ImportError> {
    let attributes = checker.columns.attributes.len();
    // Columns whose values went out as numbers: if one turns out not to be a number column,
    // the rows written were wrong.
    let mut written_as_numbers = vec![false; attributes];
    let mut guessed_wrong = false;
    let mut sending = true;
    let mut chunk = empty_chunk(&lanes, batch);
    let header = checker.columns.header.clone();
    let mut scan = Scan::new(ImportKind::Customers, file);
    crate::imports::scan_records(reader, &header, file, &mut scan, |scan, line, record| {
        let Some((fields, id)) = checker.check(scan, line, record) else {
            sending = false;
            return;
        };
        if !sending {
            return;
        }
        if (0..attributes).any(|i| written_as_numbers[i] && !checker.numbers_so_far(i)) {
            guessed_wrong = true;
            sending = false;
            return;
        }
        let columns = &checker.columns;
        for (i, a) in columns.attributes.iter().enumerate() {
            if checker.numbers_so_far(i) && !is_missing(fields[a.index]) {
                written_as_numbers[i] = true;
            }
        }
        let numbers: &[bool] = &written_as_numbers;
        let kind_of = |i: usize| {
            if numbers[i] {
                ColumnKind::Number
            } else {
                ColumnKind::Category
            }
        };
        let row = PreparedCustomer::new(ctx, columns, &fields, id, line, kind_of);
        chunk.rows.push(Pending { row, record: None });
        if chunk.rows.len() >= batch {
            let full = std::mem::replace(&mut chunk, empty_chunk(&lanes, batch));
            sending = lanes.send(full);
        }
    })?;
    if sending && !chunk.rows.is_empty() {
        lanes.send(chunk);
    }
    let (columns, scan) = checker.finish(file, scan)?;
    Ok(Walked {
        scan,
        guessed_wrong,
        extra: columns,
    })
}

/// The first pass's report with the second's counts and errors after its own.
fn merge_reports(mut first: ImportReport, second: ImportReport) -> ImportReport {
    first.rows_imported += second.rows_imported;
    first.rows_rejected += second.rows_rejected;
    first.customers_created += second.customers_created;
    first.customers_updated += second.customers_updated;
    let unlisted = second.errors_total - second.errors.len() as u64;
    for e in second.errors {
        first.push_error(e);
    }
    first.errors_total += unlisted;
    first
}

fn unknown_customer(line: u64, column: &str) -> RowError {
    RowError::new(
        line,
        Some(column),
        "unknown customer: import them (customers.csv) before their transactions and consents",
    )
}

/// The writing side of a transactions import: the customers' ids, and the writes.
struct TransactionWriter {
    next: i64,
    known_customers: KnownCustomers,
    dropped: Option<DroppedIndexes>,
    now: Stamp,
    /// The id column's name in the file, for errors.
    id_header: String,
}

impl TransactionWriter {
    /// `rows`: how many rows the file has (or about: it decides the bulk path and whether
    /// every customer's id is read at once).
    fn new(
        conn: &mut DbConnection,
        columns: &TransactionColumns,
        rows: u64,
        now: NaiveDateTime,
    ) -> DbResult<TransactionWriter> {
        let next = next_id(conn, IdTable::Transactions)?;
        let known_customers = KnownCustomers::for_file(conn, rows)?;
        let dropped = if bulk(rows, next - 1) {
            // The primary key stays: ten million ascending ids kept current cost the server
            // no more than building their index after (29.0 s of server CPU either way).
            Some(DroppedIndexes::drop(
                conn,
                "transactions",
                &[],
                Primary::Keep,
            )?)
        } else {
            None
        };
        Ok(TransactionWriter {
            next,
            known_customers,
            dropped,
            now: Stamp::new(now, &stamp_format()),
            id_header: columns
                .header
                .iter()
                .find(|h| h.eq_ignore_ascii_case("customer_id"))
                .cloned()
                .unwrap_or_else(|| "customer_id".into()),
        })
    }

    fn flush(
        &mut self,
        conn: &mut DbConnection,
        batch: &mut [Pending<ParsedTransaction>],
        pass: &mut Pass<'_>,
    ) -> DbResult<()> {
        // Only the rows whose customer the checking thread did not find are looked up here.
        let unresolved = batch.iter().filter(|p| p.row.customer_id.is_none());
        let known = if unresolved.clone().next().is_some() {
            Some(
                self.known_customers
                    .batch(conn, unresolved.map(|p| p.row.row.customer.as_str()))?,
            )
        } else {
            None
        };
        let mut rows = Vec::with_capacity(batch.len());
        for p in batch.iter_mut() {
            let ParsedTransaction {
                row,
                occurred_at,
                customer_id,
            } = &mut p.row;
            let found = customer_id.or_else(|| {
                known
                    .as_ref()
                    .and_then(|k| k.get(row.customer.as_str()).copied())
            });
            let Some(customer) = found else {
                pass.refuse(
                    p.record.as_ref(),
                    unknown_customer(row.line, &self.id_header),
                );
                continue;
            };
            rows.push(NewTransaction {
                id: self.next,
                customer_id: customer,
                occurred_at: occurred_at.clone(),
                amount: row.amount,
                quantity: row.quantity,
                order_id: row.order_id.take(),
            });
            self.next += 1;
            pass.report.rows_imported += 1;
        }
        store::insert_transactions(conn, rows, &self.now)
    }

    /// Makes the dropped indexes again.
    fn finish(self, conn: &mut DbConnection) -> DbResult<()> {
        match self.dropped {
            Some(dropped) => dropped.restore(conn),
            None => Ok(()),
        }
    }
}

fn write_transactions(
    conn: &mut DbConnection,
    columns: &TransactionColumns,
    input: Input,
    pass: &mut Pass<'_>,
) -> DbResult<()> {
    let mut writer = TransactionWriter::new(conn, columns, pass.report.rows_read, pass.now)?;
    let format = stamp_format();
    second_pass(
        conn,
        input,
        ImportKind::Transactions,
        &columns.header,
        pass,
        |fields, line| {
            let row = transaction_csv::parse_row(fields, columns, line)?;
            let occurred_at = Stamp::new(row.occurred_at, &format);
            Ok(ParsedTransaction {
                row,
                occurred_at,
                customer_id: None,
            })
        },
        |conn, batch, pass| writer.flush(conn, batch, pass),
    )?;
    writer.finish(conn)
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
            let latest = store::latest_consents(conn, &internal)?;
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
                rows.push(NewConsentEvent {
                    id: next,
                    customer_id: *customer,
                    purpose: row.purpose.clone(),
                    status: row.status.as_str(),
                    recorded_at: row.recorded_at,
                    source: row.source.clone(),
                    notice_version: row.notice_version.clone(),
                });
                next += 1;
                pass.report.rows_imported += 1;
            }
            store::insert_consent_events(conn, rows, &recorded_by, pass.now)
        },
    )?;
    // The consent state takes in every event this import appended.
    crate::db::consent_state::apply_events_from(conn, first_event_id)
}

/// The import log row and the trail entry of a finished import.
fn log_import(
    conn: &mut DbConnection,
    ctx: &ImportContext<'_>,
    req: &ImportRequest<'_>,
    pass: &Pass<'_>,
) -> DbResult<()> {
    let r = &pass.report;
    store::log(
        conn,
        &ImportLogRow {
            id: &pass.import_id,
            kind: req.kind.as_str(),
            report: r,
            imported_by: req.actor.as_str(),
            occurred_at: pass.now,
        },
    )?;
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
