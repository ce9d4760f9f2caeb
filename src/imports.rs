//! Imports of customers, transactions and consent events from CSV: the file's shape, the
//! rules each row must follow, type inference for customer attributes, and the report. Pure
//! domain code: it reads CSV from any `Read` and hands out validated rows; storage
//! (`db::imports`) writes them and adds the checks that need the database (known customers,
//! erased ids, the ledger's order).
//!
//! Files are streamed and never held whole: the first pass validates every row and infers
//! attribute types, keeping only the ids needed to find duplicates; a second pass parses
//! again and hands rows to storage in batches. Most imports do both in one walk, writing
//! as they check (`app::imports`): customers with the types seen so far
//! (`customers::Checker`), going back to two passes if a type changes part-way.

pub mod consents;
pub mod customers;
pub mod guard;
pub mod rejected;
pub mod spool;
pub mod transactions;

pub use guard::{ShapeError, ShapeErrorKind, ShapeGuard};

use std::collections::HashMap;
use std::io::Read;

use serde::Serialize;

/// The three kinds of file fairseg imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportKind {
    Customers,
    Transactions,
    Consents,
}

impl ImportKind {
    pub const ALL: [ImportKind; 3] = [
        ImportKind::Customers,
        ImportKind::Transactions,
        ImportKind::Consents,
    ];

    pub fn parse(raw: &str) -> Result<ImportKind, String> {
        match raw.trim() {
            "customers" => Ok(ImportKind::Customers),
            "transactions" => Ok(ImportKind::Transactions),
            "consents" => Ok(ImportKind::Consents),
            other => Err(format!(
                "unknown import kind `{other}`: use `customers`, `transactions` or `consents`"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::Customers => "customers",
            ImportKind::Transactions => "transactions",
            ImportKind::Consents => "consents",
        }
    }

    /// The header a file of this kind starts with (required columns first).
    pub fn expected_header(self) -> &'static str {
        match self {
            ImportKind::Customers => "customer_id followed by any attribute columns",
            ImportKind::Transactions => "customer_id,occurred_at,amount[,quantity][,order_id]",
            ImportKind::Consents => {
                "customer_id,purpose,status,recorded_at[,source][,notice_version]"
            }
        }
    }
}

/// How an import treats bad rows and erased customers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Import the good rows and reject the bad ones, instead of importing nothing.
    pub skip_invalid: bool,
    /// Accept ids of customers who were erased.
    pub allow_erased: bool,
    /// How large a file's cells and how wide its rows may be.
    pub limits: ImportLimits,
}

/// Limits on the shape of an imported file (settings `import-max-cell-bytes` and
/// `import-max-columns`), enforced while the file is read, so a hostile file cannot make the
/// parser hold a huge cell or row in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Largest value of one cell, in bytes.
    pub max_cell_bytes: usize,
    /// Most attribute columns of a customer file (the id column not counted); a row of any
    /// kind of file may have at most this many fields plus one.
    pub max_attribute_columns: usize,
}

impl ImportLimits {
    pub const DEFAULT: ImportLimits = ImportLimits {
        max_cell_bytes: 64 * 1024,
        max_attribute_columns: 500,
    };

    fn max_fields(&self) -> usize {
        self.max_attribute_columns.saturating_add(1)
    }
}

impl Default for ImportLimits {
    fn default() -> ImportLimits {
        ImportLimits::DEFAULT
    }
}

/// The type of a column: inferred for customer attributes, fixed for the other kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Id,
    Number,
    Category,
    Date,
    /// A date or an RFC 3339 time.
    Instant,
    Text,
}

impl ColumnKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnKind::Id => "id",
            ColumnKind::Number => "number",
            ColumnKind::Category => "category",
            ColumnKind::Date => "date",
            ColumnKind::Instant => "instant",
            ColumnKind::Text => "text",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ColumnReport {
    /// The column's name as the file's header gives it.
    pub name: String,
    pub kind: ColumnKind,
    /// Whether the policy lists it as a protected attribute (stored apart).
    pub protected: bool,
    /// How many rows have no value in it (empty, `?` or `NA`).
    pub missing: u64,
}

/// One problem with one row (or with the header, line 1).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RowError {
    /// The line where the record starts (1 is the header).
    pub line: u64,
    /// The column (header name) at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The offending value; never given for protected attributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub reason: String,
}

impl RowError {
    pub fn new(line: u64, column: Option<&str>, reason: impl Into<String>) -> RowError {
        RowError {
            line,
            column: column.map(str::to_string),
            value: None,
            reason: reason.into(),
        }
    }

    pub fn with_value(mut self, value: &str) -> RowError {
        const MAX: usize = 100;
        let shown = if value.len() > MAX {
            let mut end = MAX;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &value[..end])
        } else {
            value.to_string()
        };
        self.value = Some(shown);
        self
    }
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(c) = &self.column {
            write!(f, ", column `{c}`")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// How many errors a report lists; `errors_total` counts them all.
pub const MAX_LISTED_ERRORS: usize = 100;

/// What an import read, imported and rejected, and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub kind: ImportKind,
    /// The file's name (no directories).
    pub file: String,
    /// Data rows read (the header not counted).
    pub rows_read: u64,
    pub rows_imported: u64,
    pub rows_rejected: u64,
    /// Customers: how many were new and how many changed (re-imports).
    pub customers_created: u64,
    pub customers_updated: u64,
    pub columns: Vec<ColumnReport>,
    /// The first errors, in line order within each pass (at most 100).
    pub errors: Vec<RowError>,
    pub errors_total: u64,
    /// The import's id in the import log, once it is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_id: Option<String>,
}

impl ImportReport {
    pub fn new(kind: ImportKind, file: &str) -> ImportReport {
        ImportReport {
            kind,
            file: file.to_string(),
            rows_read: 0,
            rows_imported: 0,
            rows_rejected: 0,
            customers_created: 0,
            customers_updated: 0,
            columns: Vec::new(),
            errors: Vec::new(),
            errors_total: 0,
            import_id: None,
        }
    }

    pub fn push_error(&mut self, e: RowError) {
        self.errors_total += 1;
        if self.errors.len() < MAX_LISTED_ERRORS {
            self.errors.push(e);
        }
    }

    /// A one-line summary of why the import failed.
    pub fn failure_summary(&self) -> String {
        match self.errors.first() {
            Some(first) if self.errors_total == 1 => {
                format!("{}: {first}; nothing was imported", self.file)
            }
            Some(first) => format!(
                "{}: {} errors, the first at {first}; nothing was imported",
                self.file, self.errors_total
            ),
            None => format!("{}: nothing was imported", self.file),
        }
    }
}

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file has errors: nothing was imported (or, with `skip_invalid`, the header itself
    /// is wrong). The report names each error.
    #[error("{}", .0.failure_summary())]
    Invalid(Box<ImportReport>),
    #[error("cannot read {file}: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("cannot write the rejected rows to {file}: {reason}")]
    RejectedFile { file: String, reason: String },
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

/// Whether a cell holds no value: empty, `?` or `NA`.
pub fn is_missing(value: &str) -> bool {
    matches!(value.trim(), "" | "?" | "NA")
}

/// A CSV reader as imports use it: headers read by hand, rows of any length (checked per row).
pub fn csv_reader<R: Read>(input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input)
}

/// Reads the header line: names trimmed, a leading byte-order mark stripped, no empty or
/// repeated names. An empty file is an error.
pub fn read_header<R: Read>(
    reader: &mut csv::Reader<R>,
    kind: ImportKind,
) -> Result<Vec<String>, RowError> {
    let mut record = csv::ByteRecord::new();
    let has = reader.read_byte_record(&mut record).map_err(|e| {
        let mut error = csv_error(e, &[]);
        if error.line == 0 {
            error.line = 1;
        }
        if !error.reason.contains("the header") && error.line == 1 {
            error.reason = format!("the header cannot be read: {}", error.reason);
        }
        error
    })?;
    if !has || record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
        return Err(RowError::new(
            1,
            None,
            format!(
                "the file is empty: expected a header line ({})",
                kind.expected_header()
            ),
        ));
    }
    let mut names: Vec<String> = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
        let field = if i == 0 {
            field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field)
        } else {
            field
        };
        let name = std::str::from_utf8(field)
            .map_err(|_| RowError::new(1, None, "the header is not valid UTF-8"))?
            .trim()
            .to_string();
        if name.is_empty() {
            return Err(RowError::new(
                1,
                None,
                format!("column {} of the header has no name", i + 1),
            ));
        }
        if names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            return Err(RowError::new(
                1,
                Some(&name),
                "the column appears twice in the header",
            ));
        }
        names.push(name);
    }
    Ok(names)
}

/// The position of each named column in a header, and the check that no required one is
/// missing and no unknown one is present.
/// The report of a file with a fixed set of columns (transactions, consents), in file order;
/// `kind` names each known column's type.
pub fn fixed_column_reports(
    header: &[String],
    at: &std::collections::HashMap<&'static str, usize>,
    kind: impl Fn(&str) -> ColumnKind,
) -> Vec<ColumnReport> {
    let mut cols: Vec<(usize, &str)> = at.iter().map(|(k, i)| (*i, *k)).collect();
    cols.sort();
    cols.into_iter()
        .map(|(i, k)| ColumnReport {
            name: header[i].clone(),
            kind: kind(k),
            protected: false,
            missing: 0,
        })
        .collect()
}

pub fn locate_columns(
    header: &[String],
    required: &[&'static str],
    optional: &[&'static str],
    kind: ImportKind,
) -> Result<HashMap<&'static str, usize>, RowError> {
    let mut found = HashMap::new();
    for (i, name) in header.iter().enumerate() {
        let known = required
            .iter()
            .chain(optional)
            .find(|k| k.eq_ignore_ascii_case(name));
        match known {
            Some(k) => {
                found.insert(*k, i);
            }
            None => {
                return Err(RowError::new(
                    1,
                    Some(name),
                    format!(
                        "unknown column; a {} file has the columns {}",
                        kind.as_str(),
                        kind.expected_header()
                    ),
                ));
            }
        }
    }
    for r in required {
        if !found.contains_key(r) {
            return Err(RowError::new(
                1,
                Some(r),
                format!(
                    "the header lacks the required column `{r}`; a {} file has the columns {}",
                    kind.as_str(),
                    kind.expected_header()
                ),
            ));
        }
    }
    Ok(found)
}

/// The fields of one record as text, or an error naming the line: wrong field count or
/// invalid UTF-8.
pub fn record_fields<'r>(
    record: &'r csv::ByteRecord,
    header: &[String],
    line: u64,
) -> Result<Vec<&'r str>, RowError> {
    if record.len() != header.len() {
        return Err(RowError::new(
            line,
            None,
            format!(
                "the row has {} fields, the header has {}",
                record.len(),
                header.len()
            ),
        ));
    }
    let mut fields = Vec::with_capacity(record.len());
    for (i, f) in record.iter().enumerate() {
        match std::str::from_utf8(f) {
            Ok(s) if s.contains('\0') => {
                return Err(RowError::new(
                    line,
                    Some(&header[i]),
                    "the value contains a NUL character",
                ));
            }
            Ok(s) => fields.push(s),
            Err(_) => {
                return Err(RowError::new(
                    line,
                    Some(&header[i]),
                    "the value is not valid UTF-8",
                ));
            }
        }
    }
    Ok(fields)
}

/// Reads the next record; `Ok(None)` at the end. A record the CSV parser cannot read (an
/// unclosed quote, say) is an error for its line.
pub fn next_record<R: Read>(
    reader: &mut csv::Reader<R>,
    record: &mut csv::ByteRecord,
    header: &[String],
) -> Result<Option<u64>, RowError> {
    match reader.read_byte_record(record) {
        Ok(true) => Ok(Some(record.position().map_or(0, |p| p.line()))),
        Ok(false) => Ok(None),
        Err(e) => Err(csv_error(e, header)),
    }
}

/// A CSV reading error as a row error: the shape errors of [`ShapeGuard`] with their own
/// line and column, others at the line the parser reports.
fn csv_error(e: csv::Error, header: &[String]) -> RowError {
    if let csv::ErrorKind::Io(io) = e.kind()
        && let Some(shape) = io.get_ref().and_then(|i| i.downcast_ref::<ShapeError>())
    {
        let column = header.get(shape.field).map(String::as_str);
        let mut error = RowError::new(
            shape.line,
            column,
            format!("{}; the file was not read past it", shape.reason()),
        );
        if column.is_none() && !matches!(shape.kind, ShapeErrorKind::TooManyFields { .. }) {
            error.reason = format!("field {}: {}", shape.field + 1, error.reason);
        }
        return error;
    }
    let line = e.position().map_or(0, |p| p.line());
    RowError::new(line, None, format!("the CSV cannot be read: {e}"))
}

/// Whether a record is a blank line (skipped, as spreadsheet exports often end with one).
pub fn is_blank(record: &csv::ByteRecord) -> bool {
    record.len() == 1 && record[0].iter().all(u8::is_ascii_whitespace)
}

/// The file name shown in reports and the trail: no directories.
pub fn display_name(path_or_name: &str) -> String {
    let name = path_or_name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(path_or_name)
        .trim();
    let name: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
    if name.is_empty() {
        "upload.csv".to_string()
    } else {
        name
    }
}

/// About how many data rows a file has, from the length of its lines in the first 64 KiB:
/// enough to choose the bulk path before the file has been read.
pub fn estimate_rows(path: &std::path::Path) -> u64 {
    const SAMPLE: usize = 64 * 1024;
    let Ok(mut f) = std::fs::File::open(path) else {
        return 0;
    };
    let total = f.metadata().map_or(0, |m| m.len());
    let mut head = vec![0u8; SAMPLE];
    let mut read = 0;
    while read < SAMPLE {
        match f.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let lines = head[..read].iter().filter(|b| **b == b'\n').count() as u64;
    if read == 0 || lines == 0 {
        return 0;
    }
    if (read as u64) >= total {
        return lines.saturating_sub(1);
    }
    (total.saturating_mul(lines) / read as u64).saturating_sub(1)
}

/// Records parsed ahead in the first pass, handed over a chunk at a time.
const RECORDS_PER_CHUNK: usize = 1024;
/// Chunks in flight: a few hundred kilobytes of file, so memory stays flat.
const CHUNKS_AHEAD: usize = 4;

/// What the CSV-reading thread hands over: records with their lines, and at the end of a
/// broken file the error that stopped it.
struct RecordChunk {
    records: Vec<(u64, csv::ByteRecord)>,
    filled: usize,
    broken: Option<RowError>,
}

/// The reading thread's ends of `read_ahead`: chunks out, used chunks back.
pub struct ReadAhead<T> {
    out: std::sync::mpsc::SyncSender<T>,
    back: std::sync::mpsc::Receiver<T>,
}

impl<T> ReadAhead<T> {
    /// A chunk the other side is done with, to refill instead of allocating a new one.
    pub fn reuse(&self) -> Option<T> {
        self.back.try_recv().ok()
    }

    /// Hands a chunk over; false once the other side has stopped listening.
    pub fn send(&self, chunk: T) -> bool {
        self.out.send(chunk).is_ok()
    }
}

/// Runs `read` on a thread of its own, named `name`, and `take` on the caller's thread for
/// each chunk it sends, in order; each chunk then goes back to be refilled. At most `ahead`
/// chunks wait, so memory stays flat however long the file. The first error of `take` ends
/// the walk (the reader stops at its next send); `no_thread` says why a thread could not start.
///
/// Both passes of an import use it: a file of a million rows is parsed on one core while the
/// other checks or writes the rows.
pub fn read_ahead<T: Send, E>(
    name: &str,
    ahead: usize,
    read: impl FnOnce(ReadAhead<T>) + Send,
    mut take: impl FnMut(&mut T) -> Result<(), E>,
    no_thread: impl FnOnce(std::io::Error) -> E,
) -> Result<(), E> {
    std::thread::scope(|scope| {
        let (out, received) = std::sync::mpsc::sync_channel(ahead);
        let (done, back) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(name.into())
            .spawn_scoped(scope, move || read(ReadAhead { out, back }))
            .map_err(no_thread)?;
        for mut chunk in received {
            take(&mut chunk)?;
            let _ = done.send(chunk);
        }
        Ok(())
    })
}

/// The first pass's walk over the data records after the header: `each` sees every record
/// that is not a blank line, in order, with its line, and the rows read are counted. A
/// record the parser cannot read is rejected and ends the walk (the parser cannot find the
/// next record after it). The CSV is parsed ahead on a thread of its own (`read_ahead`),
/// which takes the parse (about a third of the pass) off the critical path.
pub fn scan_records<R: Read + Send>(
    mut reader: csv::Reader<R>,
    header: &[String],
    file: &str,
    scan: &mut Scan,
    mut each: impl FnMut(&mut Scan, u64, &csv::ByteRecord),
) -> Result<(), ImportError> {
    read_ahead(
        "import-read",
        CHUNKS_AHEAD,
        move |lanes: ReadAhead<RecordChunk>| {
            loop {
                let mut chunk = lanes.reuse().unwrap_or_else(|| RecordChunk {
                    records: Vec::with_capacity(RECORDS_PER_CHUNK),
                    filled: 0,
                    broken: None,
                });
                chunk.filled = 0;
                let mut done = false;
                while chunk.filled < RECORDS_PER_CHUNK {
                    if chunk.records.len() == chunk.filled {
                        chunk.records.push((0, csv::ByteRecord::new()));
                    }
                    let (line, record) = &mut chunk.records[chunk.filled];
                    match next_record(&mut reader, record, header) {
                        Ok(Some(at)) => {
                            *line = at;
                            chunk.filled += 1;
                        }
                        Ok(None) => {
                            done = true;
                            break;
                        }
                        Err(e) => {
                            chunk.broken = Some(e);
                            done = true;
                            break;
                        }
                    }
                }
                if !lanes.send(chunk) || done {
                    return;
                }
            }
        },
        |chunk| {
            for (line, record) in &chunk.records[..chunk.filled] {
                if is_blank(record) {
                    continue;
                }
                scan.report.rows_read += 1;
                each(scan, *line, record);
            }
            if let Some(e) = chunk.broken.take() {
                scan.report.rows_read += 1;
                scan.reject(vec![e]);
            }
            Ok(())
        },
        |e| ImportError::Unreadable {
            file: file.to_string(),
            reason: format!("no thread to read it: {e}"),
        },
    )
}

/// A first-pass outcome shared by the kinds: the lines found bad (with their errors, for the
/// rejected-rows file) and the report so far.
#[derive(Debug)]
pub struct Scan {
    pub report: ImportReport,
    /// Bad data lines, with the column and reason of their first error.
    pub bad_lines: HashMap<u64, (Option<String>, String)>,
}

impl Scan {
    pub fn new(kind: ImportKind, file: &str) -> Scan {
        Scan {
            report: ImportReport::new(kind, file),
            bad_lines: HashMap::new(),
        }
    }

    pub fn reject(&mut self, errors: Vec<RowError>) {
        if let Some(first) = errors.first() {
            let reasons: Vec<&str> = errors.iter().map(|e| e.reason.as_str()).collect();
            self.bad_lines
                .entry(first.line)
                .or_insert((first.column.clone(), reasons.join("; ")));
            self.report.rows_rejected += 1;
        }
        for e in errors {
            self.report.push_error(e);
        }
    }

    /// A header-level failure: one error at line 1.
    pub fn header_failure(kind: ImportKind, file: &str, error: RowError) -> ImportError {
        let mut report = ImportReport::new(kind, file);
        report.push_error(error);
        ImportError::Invalid(Box::new(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: &str) -> Result<Vec<String>, RowError> {
        let mut r = csv_reader(text.as_bytes());
        read_header(&mut r, ImportKind::Customers)
    }

    #[test]
    fn missing_values_are_empty_question_marks_or_na() {
        for v in ["", " ", "?", "NA", " ? "] {
            assert!(is_missing(v), "{v:?}");
        }
        for v in ["0", "na", "none", "-"] {
            assert!(!is_missing(v), "{v:?}");
        }
    }

    #[test]
    fn a_byte_order_mark_is_stripped_from_the_header() {
        assert_eq!(
            header("\u{feff}customer_id,age\n").unwrap(),
            vec!["customer_id", "age"]
        );
    }

    #[test]
    fn empty_files_and_bad_headers_are_refused_at_line_one() {
        let e = header("").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.reason.contains("empty"), "{e}");
        let e = header("customer_id,a,A\n").unwrap_err();
        assert_eq!(e.column.as_deref(), Some("A"));
        assert!(e.reason.contains("twice"));
        let e = header("customer_id,,b\n").unwrap_err();
        assert!(e.reason.contains("no name"), "{e}");
    }

    #[test]
    fn unknown_and_missing_columns_are_named() {
        let h: Vec<String> = ["customer_id", "amount", "colour"]
            .map(String::from)
            .to_vec();
        let e = locate_columns(
            &h,
            &["customer_id", "occurred_at", "amount"],
            &[],
            ImportKind::Transactions,
        )
        .unwrap_err();
        assert_eq!(e.column.as_deref(), Some("colour"));
        let h: Vec<String> = ["customer_id", "amount"].map(String::from).to_vec();
        let e = locate_columns(
            &h,
            &["customer_id", "occurred_at", "amount"],
            &[],
            ImportKind::Transactions,
        )
        .unwrap_err();
        assert_eq!(e.column.as_deref(), Some("occurred_at"));
        assert!(e.reason.contains("lacks"));
    }

    #[test]
    fn quoted_records_report_the_line_where_they_start() {
        let text = "customer_id,note\nA,\"one,\ntwo\"\nB,x\n";
        let mut r = csv_reader(text.as_bytes());
        read_header(&mut r, ImportKind::Customers).unwrap();
        let mut rec = csv::ByteRecord::new();
        assert_eq!(next_record(&mut r, &mut rec, &[]).unwrap(), Some(2));
        assert_eq!(&rec[1], b"one,\ntwo");
        assert_eq!(next_record(&mut r, &mut rec, &[]).unwrap(), Some(4));
        assert_eq!(next_record(&mut r, &mut rec, &[]).unwrap(), None);
    }

    #[test]
    fn file_names_lose_their_directories() {
        assert_eq!(display_name("/tmp/x/customers.csv"), "customers.csv");
        assert_eq!(display_name("C:\\data\\c.csv"), "c.csv");
        assert_eq!(display_name(""), "upload.csv");
    }

    #[test]
    fn long_values_are_shortened_in_errors() {
        let e = RowError::new(2, Some("a"), "bad").with_value(&"é".repeat(80));
        assert!(e.value.unwrap().ends_with('…'));
    }
}
