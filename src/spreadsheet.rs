//! The one CSV writer of every export meant for spreadsheets (members, activation exports,
//! the audit CSV, the KPI log): it neutralises formula injection as OWASP recommends. A cell
//! that begins with `=`, `+`, `-`, `@`, a tab or a carriage return would be run as a formula
//! by Excel, LibreOffice or Google Sheets (`=HYPERLINK(...)`, `=cmd|' /C calc'!A0`); such a
//! cell is written with a leading `'`, which spreadsheets show as text. Plain numbers (`-1.5`,
//! `+3e-2`) are left alone: they cannot be formulas, and analysts need them as numbers.
//!
//! Files meant to be read back by fairseg (the rejected rows of an import) keep their values
//! exactly and do not use this writer.

use std::borrow::Cow;
use std::io::Write;

/// The characters that make a spreadsheet read a cell as a formula.
const FORMULA_STARTS: [u8; 6] = [b'=', b'+', b'-', b'@', b'\t', b'\r'];

/// The cell as a spreadsheet must receive it.
pub fn neutralise(cell: &[u8]) -> Cow<'_, [u8]> {
    match cell.first() {
        Some(b) if FORMULA_STARTS.contains(b) && !is_plain_number(cell) => {
            let mut out = Vec::with_capacity(cell.len() + 1);
            out.push(b'\'');
            out.extend_from_slice(cell);
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(cell),
    }
}

/// A number as fairseg writes them: sign, digits, a point, an exponent; nothing else.
fn is_plain_number(cell: &[u8]) -> bool {
    cell.iter()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
        && std::str::from_utf8(cell)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
}

/// A `csv::Writer` whose every cell goes through [`neutralise`].
pub struct Writer<W: Write> {
    inner: csv::Writer<W>,
}

impl<W: Write> Writer<W> {
    pub fn from_writer(out: W) -> Writer<W> {
        Writer {
            inner: csv::Writer::from_writer(out),
        }
    }

    /// Writes one record, each cell neutralised.
    pub fn write_record<I, T>(&mut self, record: I) -> csv::Result<()>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        let cells: Vec<T> = record.into_iter().collect();
        self.inner
            .write_record(cells.iter().map(|c| neutralise(c.as_ref())))
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }

    /// The output, flushed.
    pub fn into_inner(self) -> std::io::Result<W> {
        self.inner.into_inner().map_err(|e| e.into_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(cell: &str) -> String {
        String::from_utf8(neutralise(cell.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn formula_cells_are_prefixed_with_a_quote() {
        for (raw, written) in [
            ("=1+1", "'=1+1"),
            ("+SUM(A1)", "'+SUM(A1)"),
            ("-2+3", "'-2+3"),
            ("@cmd", "'@cmd"),
            ("\t=x", "'\t=x"),
            ("\r=x", "'\r=x"),
            (
                "=HYPERLINK(\"http://evil.example\")",
                "'=HYPERLINK(\"http://evil.example\")",
            ),
            ("-inf", "'-inf"),
            ("-", "'-"),
        ] {
            assert_eq!(text(raw), written, "{raw:?}");
        }
    }

    #[test]
    fn plain_values_and_numbers_are_unchanged() {
        for raw in [
            "",
            "C1",
            "a=b",
            "-1.5",
            "+3e-2",
            "-0",
            "12",
            "2024-01-01",
            "x@y.z",
        ] {
            assert_eq!(text(raw), raw, "{raw:?}");
        }
    }

    #[test]
    fn the_writer_neutralises_every_cell_and_still_quotes_csv() {
        let mut w = Writer::from_writer(Vec::new());
        w.write_record(["id", "note"]).unwrap();
        w.write_record(["=2*3", "a,\"b\""]).unwrap();
        let out = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(out, "id,note\n'=2*3,\"a,\"\"b\"\"\"\n");
    }
}
