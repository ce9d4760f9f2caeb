//! `transactions.csv`: `customer_id,occurred_at,amount`, optionally `quantity` and `order_id`.
//! Whether the customer exists is for storage to say; everything else is checked here.

use std::collections::HashMap;
use std::io::Read;

use chrono::NaiveDateTime;

use super::{
    ColumnKind, ColumnReport, ImportError, ImportKind, RowError, Scan, csv_reader,
    fixed_column_reports, is_missing, locate_columns, read_header, record_fields, scan_records,
};
use crate::customers::CustomerId;
use crate::time::parse_instant;

const KIND: ImportKind = ImportKind::Transactions;
const REQUIRED: [&str; 3] = ["customer_id", "occurred_at", "amount"];
const OPTIONAL: [&str; 2] = ["quantity", "order_id"];

#[derive(Debug, Clone)]
pub struct TransactionColumns {
    pub header: Vec<String>,
    at: HashMap<&'static str, usize>,
}

impl TransactionColumns {
    pub fn from_header(header: Vec<String>) -> Result<TransactionColumns, RowError> {
        let at = locate_columns(&header, &REQUIRED, &OPTIONAL, KIND)?;
        Ok(TransactionColumns { header, at })
    }

    fn reports(&self) -> Vec<ColumnReport> {
        let kind = |name: &str| match name {
            "customer_id" => ColumnKind::Id,
            "occurred_at" => ColumnKind::Instant,
            "amount" | "quantity" => ColumnKind::Number,
            _ => ColumnKind::Text,
        };
        fixed_column_reports(&self.header, &self.at, kind)
    }
}

/// One purchase.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionRow {
    pub line: u64,
    pub customer: CustomerId,
    pub occurred_at: NaiveDateTime,
    pub amount: f64,
    pub quantity: Option<i64>,
    pub order_id: Option<String>,
}

/// Parses one record; every problem of the row is reported, each with its column.
pub fn parse_row(
    fields: &[&str],
    cols: &TransactionColumns,
    line: u64,
) -> Result<TransactionRow, Vec<RowError>> {
    let mut errors = Vec::new();
    let col = |name: &str| cols.at.get(name).map(|i| (*i, fields[*i]));
    let err = |i: usize, raw: &str, reason: String| {
        RowError::new(line, Some(&cols.header[i]), reason).with_value(raw)
    };
    let (i, raw) = col("customer_id").expect("required");
    let customer = CustomerId::parse(raw)
        .map_err(|r| errors.push(err(i, raw, r)))
        .ok();
    let (i, raw) = col("occurred_at").expect("required");
    let occurred_at = parse_instant(raw)
        .map_err(|r| errors.push(err(i, raw, r)))
        .ok();
    let (i, raw) = col("amount").expect("required");
    let amount = match raw.trim().parse::<f64>() {
        Ok(a) if a.is_finite() => Some(a),
        _ => {
            errors.push(err(i, raw, format!("`{}` is not a number", raw.trim())));
            None
        }
    };
    let quantity = match col("quantity") {
        Some((_, raw)) if is_missing(raw) => None,
        Some((i, raw)) => match raw.trim().parse::<i64>() {
            Ok(q) => Some(q),
            Err(_) => {
                errors.push(err(
                    i,
                    raw,
                    format!("`{}` is not a whole number", raw.trim()),
                ));
                None
            }
        },
        None => None,
    };
    let order_id = col("order_id")
        .map(|(_, raw)| raw.trim())
        .filter(|raw| !is_missing(raw))
        .map(str::to_string);
    match (customer, occurred_at, amount) {
        (Some(customer), Some(occurred_at), Some(amount)) if errors.is_empty() => {
            Ok(TransactionRow {
                line,
                customer,
                occurred_at,
                amount,
                quantity,
                order_id,
            })
        }
        _ => Err(errors),
    }
}

/// Reads the header and the columns it names.
pub fn columns<R: Read>(
    reader: &mut csv::Reader<R>,
    file: &str,
) -> Result<TransactionColumns, ImportError> {
    read_header(reader, KIND)
        .and_then(TransactionColumns::from_header)
        .map_err(|e| Scan::header_failure(KIND, file, e))
}

/// The first pass: every row checked, nothing kept.
pub fn scan<R: Read + Send>(
    input: R,
    file: &str,
) -> Result<(TransactionColumns, Scan), ImportError> {
    let mut reader = csv_reader(input);
    let cols = columns(&mut reader, file)?;
    let mut scan = Scan::new(KIND, file);
    scan_records(
        reader,
        &cols.header,
        file,
        &mut scan,
        |scan, line, record| {
            let result = record_fields(record, &cols.header, line)
                .map_err(|e| vec![e])
                .and_then(|f| parse_row(&f, &cols, line));
            if let Err(errors) = result {
                scan.reject(errors);
            }
        },
    )?;
    let scan = finish_scan(&cols, file, scan)?;
    Ok((cols, scan))
}

/// The end of a first pass: a file without data rows is an error; the report names the
/// columns.
pub fn finish_scan(
    cols: &TransactionColumns,
    file: &str,
    mut scan: Scan,
) -> Result<Scan, ImportError> {
    if scan.report.rows_read == 0 {
        return Err(Scan::header_failure(
            KIND,
            file,
            RowError::new(2, None, "the file has a header but no data rows"),
        ));
    }
    scan.report.columns = cols.reports();
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(csv: &str) -> Vec<RowError> {
        match scan(csv.as_bytes(), "t.csv") {
            Ok((_, s)) => s.report.errors,
            Err(ImportError::Invalid(r)) => r.errors,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn errors_far_into_a_long_file_keep_their_lines_and_every_row_is_counted() {
        // Longer than several of the chunks the reading thread hands over.
        let mut csv = String::from("customer_id,occurred_at,amount\n");
        let mut bad = Vec::new();
        for i in 0..5000 {
            let line = i + 2;
            match i {
                1500 => {
                    csv.push_str("C1,2024-02-30,5\n");
                    bad.push(line);
                }
                4321 => {
                    csv.push_str("C1,2024-01-01,lots\n");
                    bad.push(line);
                }
                _ => csv.push_str(&format!("C{i},2024-01-01,{i}.5\n")),
            }
        }
        csv.push('\n');
        let (_, scan) = scan(csv.as_bytes(), "t.csv").unwrap();
        assert_eq!(scan.report.rows_read, 5000);
        assert_eq!(scan.report.rows_rejected, 2);
        let lines: Vec<u64> = scan.report.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, bad);
        assert_eq!(scan.report.errors[1].column.as_deref(), Some("amount"));
    }

    #[test]
    fn good_rows_parse_with_dates_or_rfc3339_times() {
        let csv = "customer_id,occurred_at,amount,quantity,order_id\n\
                   A,2024-03-01,12.50,2,O-1\n\
                   B,2024-03-01T10:00:00+02:00,3,,\n";
        let (cols, s) = scan(csv.as_bytes(), "t.csv").unwrap();
        assert_eq!(s.report.errors_total, 0);
        assert_eq!(s.report.rows_read, 2);
        let row = parse_row(&["B", "2024-03-01T10:00:00+02:00", "3", "", ""], &cols, 3).unwrap();
        assert_eq!(row.occurred_at.to_string(), "2024-03-01 08:00:00");
        assert_eq!((row.quantity, row.order_id), (None, None));
    }

    #[test]
    fn bad_amounts_and_dates_name_line_column_and_value() {
        let e = errors_of("customer_id,occurred_at,amount\nA,2024-13-01,ten\n");
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].line, e[0].column.as_deref()),
            (2, Some("occurred_at"))
        );
        assert_eq!(e[1].column.as_deref(), Some("amount"));
        assert_eq!(e[1].value.as_deref(), Some("ten"));
        assert!(e[1].reason.contains("not a number"));
    }

    #[test]
    fn a_wrong_header_is_refused() {
        let e = errors_of("customer,occurred_at,amount\nA,2024-01-01,1\n");
        assert_eq!((e[0].line, e[0].column.as_deref()), (1, Some("customer")));
        let e = errors_of("customer_id,amount\nA,1\n");
        assert_eq!(e[0].column.as_deref(), Some("occurred_at"));
    }
}
