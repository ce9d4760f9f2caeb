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
        if self.number && parse_number(v).is_none() {
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

/// The first pass: checks every row (field count, UTF-8, the id, duplicate ids) and infers
/// each attribute's type. Holds the ids seen, nothing else per row.
pub fn scan<R: Read + Send>(
    input: R,
    file: &str,
    policy: &Policy,
) -> Result<(CustomerColumns, Scan), ImportError> {
    let mut reader = csv_reader(input);
    let header = read_header(&mut reader, KIND).map_err(|e| Scan::header_failure(KIND, file, e))?;
    let mut columns = CustomerColumns::from_header(header, policy)
        .map_err(|e| Scan::header_failure(KIND, file, e))?;
    let mut scan = Scan::new(KIND, file);
    let mut inference = vec![Inference::new(); columns.attributes.len()];
    let mut seen: HashMap<Box<str>, u64, foldhash::fast::RandomState> = HashMap::default();
    scan_records(
        reader,
        &columns.header,
        file,
        &mut scan,
        |scan, line, record| {
            let fields = match record_fields(record, &columns.header, line) {
                Ok(f) => f,
                Err(e) => return scan.reject(vec![e]),
            };
            let id = match parse_id(fields[columns.id], &columns, line) {
                Ok(id) => id,
                Err(e) => return scan.reject(vec![e]),
            };
            if let Some(first) = seen.get(id.as_str()) {
                return scan.reject(vec![
                    RowError::new(
                        line,
                        Some(&columns.header[columns.id]),
                        format!("duplicate customer id: it is already on line {first}"),
                    )
                    .with_value(id.as_str()),
                ]);
            }
            seen.insert(id.as_str().into(), line);
            for (a, inf) in columns.attributes.iter().zip(inference.iter_mut()) {
                inf.see(fields[a.index]);
            }
        },
    )?;
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
