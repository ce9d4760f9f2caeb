//! `consents.csv`: `customer_id,purpose,status,recorded_at`, optionally `source` and
//! `notice_version`. Purposes must be the policy's; events per customer × purpose must come
//! in time order within the file (storage checks them against the ledger as well).

use std::collections::HashMap;
use std::io::Read;

use chrono::NaiveDateTime;

use super::{
    ColumnKind, ColumnReport, ImportError, ImportKind, RowError, Scan, csv_reader,
    fixed_column_reports, is_missing, locate_columns, read_header, record_fields, scan_records,
};
use crate::consent::{self, ConsentStatus, check_order};
use crate::customers::CustomerId;
use crate::policy::Policy;
use crate::time::parse_instant;

const KIND: ImportKind = ImportKind::Consents;
const REQUIRED: [&str; 4] = ["customer_id", "purpose", "status", "recorded_at"];
const OPTIONAL: [&str; 2] = ["source", "notice_version"];

#[derive(Debug, Clone)]
pub struct ConsentColumns {
    pub header: Vec<String>,
    at: HashMap<&'static str, usize>,
}

impl ConsentColumns {
    pub fn from_header(header: Vec<String>) -> Result<ConsentColumns, RowError> {
        let at = locate_columns(&header, &REQUIRED, &OPTIONAL, KIND)?;
        Ok(ConsentColumns { header, at })
    }

    /// The header name of a known column.
    pub fn header_of<'a>(&'a self, name: &'a str) -> &'a str {
        self.at.get(name).map_or(name, |i| self.header[*i].as_str())
    }

    fn reports(&self) -> Vec<ColumnReport> {
        let kind = |name: &str| match name {
            "customer_id" => ColumnKind::Id,
            "recorded_at" => ColumnKind::Instant,
            "purpose" | "status" => ColumnKind::Category,
            _ => ColumnKind::Text,
        };
        fixed_column_reports(&self.header, &self.at, kind)
    }
}

/// One consent event as the file gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentRow {
    pub line: u64,
    pub customer: CustomerId,
    /// A purpose of the policy.
    pub purpose: String,
    pub status: ConsentStatus,
    pub recorded_at: NaiveDateTime,
    pub source: Option<String>,
    pub notice_version: Option<String>,
}

pub fn parse_row(
    fields: &[&str],
    cols: &ConsentColumns,
    line: u64,
    policy: &Policy,
) -> Result<ConsentRow, Vec<RowError>> {
    let mut errors = Vec::new();
    let col = |name: &str| cols.at.get(name).map(|i| (*i, fields[*i]));
    let err = |i: usize, raw: &str, reason: String| {
        RowError::new(line, Some(&cols.header[i]), reason).with_value(raw)
    };
    let (i, raw) = col("customer_id").expect("required");
    let customer = CustomerId::parse(raw)
        .map_err(|r| errors.push(err(i, raw, r)))
        .ok();
    let (i, raw) = col("purpose").expect("required");
    let purpose = consent::purpose(policy, raw)
        .map(|_| raw.trim().to_string())
        .map_err(|r| errors.push(err(i, raw, r)))
        .ok();
    let (i, raw) = col("status").expect("required");
    let status = ConsentStatus::parse(raw)
        .map_err(|r| errors.push(err(i, raw, r)))
        .ok();
    let (i, raw) = col("recorded_at").expect("required");
    let recorded_at = parse_instant(raw)
        .map_err(|r| errors.push(err(i, raw, r)))
        .ok();
    let optional = |name: &str| {
        col(name)
            .map(|(_, raw)| raw.trim())
            .filter(|raw| !is_missing(raw))
            .map(str::to_string)
    };
    match (customer, purpose, status, recorded_at) {
        (Some(customer), Some(purpose), Some(status), Some(recorded_at)) => Ok(ConsentRow {
            line,
            customer,
            purpose,
            status,
            recorded_at,
            source: optional("source"),
            notice_version: optional("notice_version"),
        }),
        _ => Err(errors),
    }
}

pub fn columns<R: Read>(
    reader: &mut csv::Reader<R>,
    file: &str,
) -> Result<ConsentColumns, ImportError> {
    read_header(reader, KIND)
        .and_then(ConsentColumns::from_header)
        .map_err(|e| Scan::header_failure(KIND, file, e))
}

/// The first pass: every row checked, and the order of events per customer × purpose within
/// the file (keeping the latest instant of each pair seen).
pub fn scan<R: Read + Send>(
    input: R,
    file: &str,
    policy: &Policy,
) -> Result<(ConsentColumns, Scan), ImportError> {
    let mut reader = csv_reader(input);
    let cols = columns(&mut reader, file)?;
    let mut scan = Scan::new(KIND, file);
    let mut latest: HashMap<(Box<str>, Box<str>), (NaiveDateTime, u64)> = HashMap::new();
    scan_records(
        reader,
        &cols.header,
        file,
        &mut scan,
        |scan, line, record| {
            let row = match record_fields(record, &cols.header, line)
                .map_err(|e| vec![e])
                .and_then(|f| parse_row(&f, &cols, line, policy))
            {
                Ok(row) => row,
                Err(errors) => return scan.reject(errors),
            };
            let key: (Box<str>, Box<str>) =
                (row.customer.as_str().into(), row.purpose.as_str().into());
            let before = latest.get(&key).copied();
            if let Err(reason) = check_order(before.map(|(t, _)| t), row.recorded_at) {
                let first = before.map_or(0, |(_, l)| l);
                return scan.reject(vec![RowError::new(
                    line,
                    Some(cols.header_of("recorded_at")),
                    format!("{reason} (the earlier-listed event is on line {first})"),
                )]);
            }
            latest.insert(key, (row.recorded_at, line));
        },
    )?;
    if scan.report.rows_read == 0 {
        return Err(Scan::header_failure(
            KIND,
            file,
            RowError::new(2, None, "the file has a header but no data rows"),
        ));
    }
    scan.report.columns = cols.reports();
    Ok((cols, scan))
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

    fn errors_of(csv: &str) -> Vec<RowError> {
        match scan(csv.as_bytes(), "c.csv", &policy()) {
            Ok((_, s)) => s.report.errors,
            Err(ImportError::Invalid(r)) => r.errors,
            Err(e) => panic!("{e}"),
        }
    }

    const HEADER: &str = "customer_id,purpose,status,recorded_at\n";

    #[test]
    fn good_events_pass() {
        let e = errors_of(&format!(
            "{HEADER}A,segmentation,granted,2024-01-01\nA,segmentation,withdrawn,2024-02-01T00:00:00Z\n"
        ));
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn unknown_purposes_and_statuses_are_named() {
        let e = errors_of(&format!("{HEADER}A,telepathy,maybe,2024-01-01\n"));
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].column.as_deref(), Some("purpose"));
        assert!(e[0].reason.contains("unknown purpose"));
        assert_eq!(e[1].column.as_deref(), Some("status"));
        assert!(e[1].reason.contains("granted"));
    }

    #[test]
    fn a_withdrawal_older_than_the_grant_it_follows_is_refused() {
        let e = errors_of(&format!(
            "{HEADER}A,segmentation,granted,2024-03-01\nB,segmentation,granted,2024-01-01\nA,segmentation,withdrawn,2024-02-01\n"
        ));
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].line, e[0].column.as_deref()),
            (4, Some("recorded_at"))
        );
        assert!(e[0].reason.contains("line 2"), "{}", e[0].reason);
    }

    #[test]
    fn bad_dates_are_refused() {
        let e = errors_of(&format!("{HEADER}A,segmentation,granted,yesterday\n"));
        assert_eq!(e[0].column.as_deref(), Some("recorded_at"));
        assert!(e[0].reason.contains("not a date"));
    }
}
