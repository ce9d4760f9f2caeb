//! `customers.csv`: `customer_id` and any attribute columns. Attribute types are inferred over
//! the whole file (number if every value present parses as a finite number, date if every
//! value present is `YYYY-MM-DD`, category otherwise); `?`, `NA` and empty cells are missing
//! values. Columns the policy lists as protected are kept apart and never echoed in errors.

use std::collections::HashMap;
use std::io::Read;

use serde_json::{Map, Value};

use super::{
    ColumnKind, ColumnReport, ImportError, ImportKind, RowError, Scan, csv_reader, is_missing,
    read_header, record_fields, scan_records,
};
use crate::customers::CustomerId;
use crate::policy::Policy;

const KIND: ImportKind = ImportKind::Customers;
pub const ID_COLUMN: &str = "customer_id";

/// An attribute column of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeColumn {
    /// Position in the record.
    pub index: usize,
    /// The name in the file's header.
    pub header: String,
    /// The name it is stored under: the policy's name for protected attributes, else the header.
    pub name: String,
    pub protected: bool,
    pub kind: ColumnKind,
}

/// Where the id and each attribute are in a customers file.
#[derive(Debug, Clone)]
pub struct CustomerColumns {
    pub header: Vec<String>,
    pub id: usize,
    pub attributes: Vec<AttributeColumn>,
}

impl CustomerColumns {
    pub fn from_header(header: Vec<String>, policy: &Policy) -> Result<CustomerColumns, RowError> {
        let id = header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(ID_COLUMN))
            .ok_or_else(|| {
                RowError::new(
                    1,
                    Some(ID_COLUMN),
                    format!(
                        "the header lacks the required column `{ID_COLUMN}` (found {})",
                        header
                            .iter()
                            .map(|h| format!("`{h}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
        let attributes = header
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != id)
            .map(|(index, h)| {
                let protected = policy.protected_attribute(h);
                AttributeColumn {
                    index,
                    header: h.clone(),
                    name: protected.map_or_else(|| h.clone(), |(name, _)| name.to_string()),
                    protected: protected.is_some(),
                    kind: ColumnKind::Category,
                }
            })
            .collect();
        Ok(CustomerColumns {
            header,
            id,
            attributes,
        })
    }

    pub fn reports(&self, missing: &[u64]) -> Vec<ColumnReport> {
        std::iter::once(ColumnReport {
            name: self.header[self.id].clone(),
            kind: ColumnKind::Id,
            protected: false,
            missing: 0,
        })
        .chain(
            self.attributes
                .iter()
                .zip(missing)
                .map(|(a, m)| ColumnReport {
                    name: a.header.clone(),
                    kind: a.kind,
                    protected: a.protected,
                    missing: *m,
                }),
        )
        .collect()
    }
}

/// What the values of one column could still be, as the first pass reads them.
#[derive(Debug, Clone, Copy)]
struct Inference {
    number: bool,
    date: bool,
    present: u64,
    missing: u64,
}

impl Inference {
    fn new() -> Inference {
        Inference {
            number: true,
            date: true,
            present: 0,
            missing: 0,
        }
    }

    fn see(&mut self, value: &str) {
        if is_missing(value) {
            self.missing += 1;
            return;
        }
        self.present += 1;
        let v = value.trim();
        if self.number && !is_number(v) {
            self.number = false;
        }
        if self.date && crate::time::parse_date(v).is_none() {
            self.date = false;
        }
    }

    fn kind(&self) -> ColumnKind {
        match (self.present, self.number, self.date) {
            (0, _, _) => ColumnKind::Category,
            (_, true, _) => ColumnKind::Number,
            (_, _, true) => ColumnKind::Date,
            _ => ColumnKind::Category,
        }
    }
}

fn parse_number(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Whether a trimmed value is a number as inference counts them (finite). Plain decimals
/// (`-?digits[.digits]`, at most 300 digits before the point) always are, and are recognised
/// without parsing them: this runs for every cell of files of millions of rows.
fn is_number(v: &str) -> bool {
    plain_decimal(v) || parse_number(v).is_some()
}

fn plain_decimal(v: &str) -> bool {
    let b = v.strip_prefix('-').unwrap_or(v).as_bytes();
    let int = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if int == 0 || int > 300 {
        return false;
    }
    match &b[int..] {
        [] => true,
        [b'.', frac @ ..] => !frac.is_empty() && frac.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// Appends the JSON of a number written as a plain decimal, when that text is what
/// serialising its parsed `f64` would give once trailing zeros of the fraction are dropped
/// (`12.500` gives `12.5`, `7` gives `7.0`); returns false, having appended nothing, for
/// anything else (exponents, signs other than a leading `-`, leading zeros, zero itself, more
/// than 15 significant digits, very small or large magnitudes), which takes the slow path.
///
/// Why this is exact: a decimal of at most 15 significant digits survives the round trip
/// through an `f64` (`f64::DIGITS`), so no shorter decimal maps to the same `f64` and the
/// shortest representation the serialiser prints has the same digits; the magnitudes allowed
/// are those it prints without an exponent. `attribute_json_numbers_match_the_serialiser`
/// checks it against the slow path.
fn push_plain_number(out: &mut String, v: &str) -> bool {
    let (negative, body) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    let digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (body.contains('.') && frac.is_empty()) {
        return false;
    }
    let frac = frac.trim_end_matches('0');
    let significant = if int == "0" {
        let zeros = frac.len() - frac.trim_start_matches('0').len();
        // 0.000ddd at most: smaller magnitudes are printed with an exponent.
        if frac.is_empty() || zeros > 3 {
            return false;
        }
        frac.len() - zeros
    } else {
        if int.starts_with('0') {
            return false;
        }
        int.len() + frac.len()
    };
    if significant > 15 {
        return false;
    }
    if negative {
        out.push('-');
    }
    out.push_str(int);
    out.push('.');
    out.push_str(if frac.is_empty() { "0" } else { frac });
    true
}

/// Appends the stored JSON of one attribute value of the given type: `null` when missing,
/// a number for number columns, else the trimmed text as a string.
fn push_value(out: &mut String, raw: &str, kind: ColumnKind) {
    if is_missing(raw) {
        out.push_str("null");
        return;
    }
    let v = raw.trim();
    match kind {
        ColumnKind::Number => {
            if !push_plain_number(out, v) {
                out.push_str(&parse_number(v).map_or(Value::Null, Value::from).to_string());
            }
        }
        _ => push_json_string(out, v),
    }
}

/// The first pass: checks every row (field count, UTF-8, the id, duplicate ids) and infers
/// each attribute's type. Holds the ids seen, nothing else per row.
pub fn scan<R: Read + Send>(
    input: R,
    file: &str,
    policy: &Policy,
) -> Result<(CustomerColumns, Scan), ImportError> {
    let mut reader = csv_reader(input);
    let mut checker = Checker::new(&mut reader, file, policy)?;
    let mut scan = Scan::new(KIND, file);
    let header = checker.columns.header.clone();
    scan_records(reader, &header, file, &mut scan, |scan, line, record| {
        checker.check(scan, line, record);
    })?;
    checker.finish(file, scan)
}

/// The first pass's checks, one record at a time: the columns, each attribute's type so far,
/// and the ids seen. An import may check and write in one walk (`app::imports`), asking after
/// each row what each column could still be.
pub struct Checker {
    pub columns: CustomerColumns,
    inference: Vec<Inference>,
    /// The line each id was first seen on.
    seen: HashMap<SeenId, u64, foldhash::fast::RandomState>,
}

/// A customer id as a key of the ids seen. Ids of up to 15 bytes (nearly all) are kept in the
/// key itself: a million ids on the heap made each lookup follow a pointer to a random place
/// to compare the id, which (with a second lookup to insert it) was about a third of the
/// checking thread's time at a million rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SeenId {
    /// The id's bytes, zero-padded, and its length in the last byte.
    Short([u8; 16]),
    Long(Box<str>),
}

impl SeenId {
    fn new(id: &str) -> SeenId {
        let bytes = id.as_bytes();
        match u8::try_from(bytes.len()) {
            Ok(len) if len < 16 => {
                let mut key = [0u8; 16];
                key[..bytes.len()].copy_from_slice(bytes);
                key[15] = len;
                SeenId::Short(key)
            }
            _ => SeenId::Long(id.into()),
        }
    }
}

impl Checker {
    /// Reads the header and finds the columns.
    pub fn new<R: Read>(
        reader: &mut csv::Reader<R>,
        file: &str,
        policy: &Policy,
    ) -> Result<Checker, ImportError> {
        let header = read_header(reader, KIND).map_err(|e| Scan::header_failure(KIND, file, e))?;
        let columns = CustomerColumns::from_header(header, policy)
            .map_err(|e| Scan::header_failure(KIND, file, e))?;
        Ok(Checker {
            inference: vec![Inference::new(); columns.attributes.len()],
            columns,
            seen: HashMap::default(),
        })
    }

    /// Makes room for the ids of about `rows` rows at once (growing the set of ids seen a
    /// step at a time rehashed it some twenty times over a million rows).
    pub fn expect_rows(&mut self, rows: u64) {
        const AT_MOST: u64 = 16_000_000;
        self.seen
            .reserve(usize::try_from(rows.min(AT_MOST)).unwrap_or(0));
    }

    /// Checks one record (not a blank line) and counts its values towards the types; a bad
    /// record is rejected into `scan`. Returns the fields and id of a good one.
    pub fn check<'r>(
        &mut self,
        scan: &mut Scan,
        line: u64,
        record: &'r csv::ByteRecord,
    ) -> Option<(Vec<&'r str>, CustomerId)> {
        let columns = &self.columns;
        let fields = match record_fields(record, &columns.header, line) {
            Ok(f) => f,
            Err(e) => {
                scan.reject(vec![e]);
                return None;
            }
        };
        let id = match parse_id(fields[columns.id], columns, line) {
            Ok(id) => id,
            Err(e) => {
                scan.reject(vec![e]);
                return None;
            }
        };
        match self.seen.entry(SeenId::new(id.as_str())) {
            std::collections::hash_map::Entry::Occupied(first) => {
                scan.reject(vec![
                    RowError::new(
                        line,
                        Some(&columns.header[columns.id]),
                        format!(
                            "duplicate customer id: it is already on line {}",
                            first.get()
                        ),
                    )
                    .with_value(id.as_str()),
                ]);
                return None;
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(line);
            }
        }
        for (a, inf) in columns.attributes.iter().zip(self.inference.iter_mut()) {
            inf.see(fields[a.index]);
        }
        Some((fields, id))
    }

    /// Whether every value of attribute `i` (in `columns.attributes` order) seen so far is
    /// a number.
    pub fn numbers_so_far(&self, i: usize) -> bool {
        self.inference[i].number
    }

    /// The columns with their inferred types and the first pass's outcome.
    pub fn finish(
        self,
        file: &str,
        mut scan: Scan,
    ) -> Result<(CustomerColumns, Scan), ImportError> {
        let Checker {
            mut columns,
            inference,
            ..
        } = self;
        if scan.report.rows_read == 0 {
            return Err(Scan::header_failure(
                KIND,
                file,
                RowError::new(2, None, "the file has a header but no data rows"),
            ));
        }
        for (a, inf) in columns.attributes.iter_mut().zip(&inference) {
            a.kind = inf.kind();
        }
        let missing: Vec<u64> = inference.iter().map(|i| i.missing).collect();
        scan.report.columns = columns.reports(&missing);
        Ok((columns, scan))
    }
}

/// The id of a record's fields, as the first pass checked it.
pub fn row_id(
    fields: &[&str],
    columns: &CustomerColumns,
    line: u64,
) -> Result<CustomerId, RowError> {
    parse_id(fields[columns.id], columns, line)
}

fn parse_id(raw: &str, columns: &CustomerColumns, line: u64) -> Result<CustomerId, RowError> {
    CustomerId::parse(raw).map_err(|reason| {
        RowError::new(line, Some(&columns.header[columns.id]), reason).with_value(raw)
    })
}

/// One customer as the file gives them: the id, and the attribute values in column order.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRow {
    pub line: u64,
    pub id: CustomerId,
    /// One value per attribute column, in the order of `CustomerColumns::attributes`.
    pub values: Vec<Value>,
}

/// Parses a record the first pass found good, with the inferred types.
pub fn parse_row(
    fields: &[&str],
    columns: &CustomerColumns,
    line: u64,
) -> Result<CustomerRow, RowError> {
    let id = parse_id(fields[columns.id], columns, line)?;
    let values = columns
        .attributes
        .iter()
        .map(|a| value_of(fields[a.index], a.kind))
        .collect();
    Ok(CustomerRow { line, id, values })
}

fn value_of(raw: &str, kind: ColumnKind) -> Value {
    if is_missing(raw) {
        return Value::Null;
    }
    let v = raw.trim();
    match kind {
        ColumnKind::Number => parse_number(v).map_or(Value::Null, Value::from),
        _ => Value::String(v.to_string()),
    }
}

/// The JSON object of a row's ordinary (`protected = false`) or protected attributes, as
/// stored. Written by hand: this runs once per row of files of millions.
pub fn attributes_json(columns: &CustomerColumns, row: &CustomerRow, protected: bool) -> String {
    let mut out = String::with_capacity(16 * row.values.len() + 2);
    out.push('{');
    let mut first = true;
    for (a, v) in columns.attributes.iter().zip(&row.values) {
        if a.protected != protected {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        push_json_string(&mut out, &a.name);
        out.push(':');
        match v {
            Value::String(s) => push_json_string(&mut out, s),
            other => out.push_str(&other.to_string()),
        }
    }
    out.push('}');
    out
}

/// The JSON object of a record's ordinary (`protected = false`) or protected attributes, as
/// stored, written from its fields with each attribute taken as the type `kind_of` gives it
/// (by position in `columns.attributes`). The same text as `attributes_json` of the parsed
/// row, without a `Value` per cell.
pub fn fields_json(
    columns: &CustomerColumns,
    fields: &[&str],
    protected: bool,
    kind_of: impl Fn(usize) -> ColumnKind,
) -> String {
    let mut out = String::with_capacity(16 * columns.attributes.len() + 2);
    out.push('{');
    let mut first = true;
    for (i, a) in columns.attributes.iter().enumerate() {
        if a.protected != protected {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        push_json_string(&mut out, &a.name);
        out.push(':');
        push_value(&mut out, fields[a.index], kind_of(i));
    }
    out.push('}');
    out
}

fn push_json_string(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&Value::String(s.to_string()).to_string());
    }
}

/// Merges a re-imported customer's values over what is stored; returns the merged object and
/// the names of the attributes whose value changed (names only: values of protected
/// attributes must not reach the trail).
pub fn merge(stored: &str, incoming: &str) -> (String, Vec<String>) {
    let mut current: Map<String, Value> = serde_json::from_str(stored).unwrap_or_default();
    let incoming: Map<String, Value> = serde_json::from_str(incoming).unwrap_or_default();
    let mut changed = Vec::new();
    for (k, v) in incoming {
        if current.get(&k) != Some(&v) {
            changed.push(k.clone());
            current.insert(k, v);
        }
    }
    (Value::Object(current).to_string(), changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_seen_are_equal_exactly_when_the_ids_are() {
        let ids = [
            "",
            "a",
            "a\u{0}",
            "C0000001",
            "C0000010",
            "123456789012345",
            "1234567890123456",
            "12345678901234567890",
            "é",
        ];
        for a in ids {
            for b in ids {
                assert_eq!(SeenId::new(a) == SeenId::new(b), a == b, "{a:?} {b:?}");
            }
        }
    }

    fn policy() -> Policy {
        Policy::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/policies"
        )))
        .unwrap()
    }

    #[test]
    fn types_are_inferred_and_missing_values_are_not_categories() {
        let csv = "customer_id,age,Sex,spend,since,city\n\
                   A,34,f,12.5,2024-01-02,Oslo\n\
                   B,?,m,NA,2024-02-03,?\n\
                   C,51,,3,,Bergen\n";
        let (cols, scan) = scan(csv.as_bytes(), "c.csv", &policy()).unwrap();
        assert_eq!(scan.report.errors_total, 0);
        let kinds: Vec<(&str, ColumnKind, bool, u64)> = scan
            .report
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.kind, c.protected, c.missing))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("customer_id", ColumnKind::Id, false, 0),
                ("age", ColumnKind::Number, true, 1),
                ("Sex", ColumnKind::Category, true, 1),
                ("spend", ColumnKind::Number, false, 1),
                ("since", ColumnKind::Date, false, 1),
                ("city", ColumnKind::Category, false, 1),
            ]
        );
        // Protected attributes are stored under the policy's name.
        assert_eq!(cols.attributes[1].name, "sex");
        let row = parse_row(&["B", "?", "m", "NA", "2024-02-03", "?"], &cols, 3).unwrap();
        assert_eq!(
            attributes_json(&cols, &row, false),
            r#"{"spend":null,"since":"2024-02-03","city":null}"#
        );
        assert_eq!(
            attributes_json(&cols, &row, true),
            r#"{"age":null,"sex":"m"}"#
        );
    }

    #[test]
    fn one_odd_value_makes_a_column_a_category() {
        let csv = "customer_id,x\nA,1\nB,2024-01-01\nC,inf\n";
        let (_, scan) = scan(csv.as_bytes(), "c.csv", &policy()).unwrap();
        assert_eq!(scan.report.columns[1].kind, ColumnKind::Category);
    }

    #[test]
    fn duplicate_ids_are_rejected_naming_the_first_line() {
        let csv = "customer_id,x\nA,1\nB,2\nA,3\n";
        let (_, scan) = scan(csv.as_bytes(), "c.csv", &policy()).unwrap();
        assert_eq!(scan.report.errors_total, 1);
        let e = &scan.report.errors[0];
        assert_eq!((e.line, e.column.as_deref()), (4, Some("customer_id")));
        assert!(e.reason.contains("line 2"), "{e}");
        assert_eq!(scan.report.rows_rejected, 1);
        assert!(scan.bad_lines.contains_key(&4));
    }

    #[test]
    fn a_missing_id_column_and_header_only_files_are_errors() {
        let Err(ImportError::Invalid(r)) = scan("name,x\nA,1\n".as_bytes(), "c.csv", &policy())
        else {
            panic!("expected a header error")
        };
        assert_eq!(r.errors[0].column.as_deref(), Some("customer_id"));
        let Err(ImportError::Invalid(r)) = scan("customer_id,x\n".as_bytes(), "c.csv", &policy())
        else {
            panic!("expected an error")
        };
        assert!(r.errors[0].reason.contains("no data rows"));
        assert_eq!(r.errors[0].line, 2);
    }

    #[test]
    fn wrong_field_counts_and_empty_ids_name_the_line() {
        let csv = "customer_id,x\nA,1,2\n,3\nB,4\n";
        let (_, scan) = scan(csv.as_bytes(), "c.csv", &policy()).unwrap();
        let lines: Vec<u64> = scan.report.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3]);
        assert!(scan.report.errors[0].reason.contains("3 fields"));
        assert!(scan.report.errors[1].reason.contains("empty"));
    }

    #[test]
    fn attribute_json_numbers_match_the_serialiser() {
        let slow = |v: &str| parse_number(v).map_or(Value::Null, Value::from).to_string();
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "00.5",
            "0.5",
            "-0.5",
            "0.0001",
            "0.00012",
            "0.00001",
            "7",
            "-7",
            "12.500000",
            "12.",
            ".5",
            "+1",
            "1e5",
            "1E-3",
            "123456789012345",
            "1234567890123456",
            "999999999999999.9",
            "100000000000000000000",
            "0.123456789012345",
            "0.1234567890123456",
            "338.652010",
            "-3.912146",
            "669.524942",
            "1.0",
            "10",
            "inf",
            "NaN",
            "1_0",
            "--1",
            "1.2.3",
            "9007199254740993",
            "0.3",
            "0.1",
            "2.675",
        ]
        .map(String::from)
        .to_vec();
        // Pseudo-random decimals of every length and scale.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = 1 + (x % 19) as usize;
            let mantissa = (x >> 8) % 10u64.pow(digits.min(19) as u32);
            let text = format!("{mantissa:0digits$}");
            let point = ((x >> 40) % (digits as u64 + 1)) as usize;
            let (i, f) = text.split_at(point);
            let i = if i.is_empty() { "0" } else { i };
            let sign = if x & 1 == 1 { "-" } else { "" };
            cases.push(if f.is_empty() {
                format!("{sign}{i}")
            } else {
                format!("{sign}{i}.{f}")
            });
        }
        let mut fast_taken = 0;
        for v in &cases {
            if plain_decimal(v) {
                assert!(parse_number(v).is_some(), "{v}");
            }
            assert_eq!(is_number(v), parse_number(v).is_some(), "{v}");
            let mut out = String::new();
            if push_plain_number(&mut out, v) {
                fast_taken += 1;
                assert_eq!(out, slow(v), "{v}");
            } else {
                assert!(out.is_empty());
            }
            let mut out = String::new();
            push_value(&mut out, v, ColumnKind::Number);
            assert_eq!(out, slow(v), "{v}");
        }
        assert!(fast_taken > 100_000, "{fast_taken}");
    }

    #[test]
    fn json_from_fields_is_the_json_of_the_parsed_row() {
        let csv = "customer_id,age,Sex,spend,since,city\nA,34,f,12.50,2024-01-02,\"Os\"\"lo\"\n";
        let (cols, _) = scan(csv.as_bytes(), "c.csv", &policy()).unwrap();
        for fields in [
            ["B", "?", "m", "NA", "2024-02-03", "?"],
            ["C", " 51 ", "", "1e3", "", "Os\"lo\\\n"],
            ["D", "0.000001", "x", "-0", "2024-01-01", "é"],
        ] {
            let row = parse_row(&fields, &cols, 3).unwrap();
            for protected in [false, true] {
                assert_eq!(
                    fields_json(&cols, &fields, protected, |i| cols.attributes[i].kind),
                    attributes_json(&cols, &row, protected)
                );
            }
        }
    }

    #[test]
    fn merging_reports_changed_names_only() {
        let (merged, changed) = merge(r#"{"a":1.0,"b":"x"}"#, r#"{"b":"y","c":null}"#);
        assert_eq!(changed, vec!["b", "c"]);
        let v: Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(v["a"], 1.0);
        assert_eq!(v["b"], "y");
        let (_, unchanged) = merge(r#"{"a":1.0}"#, r#"{"a":1.0}"#);
        assert!(unchanged.is_empty());
    }
}
