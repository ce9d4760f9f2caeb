//! A reader that watches the CSV's shape as bytes go by, ahead of the CSV parser: a quoted
//! field still open at the end of the file, a cell larger than the limit, a row with more
//! fields than the limit. The `csv` crate accepts the first (it ends the record at the end of
//! the file, swallowing every row after the stray quote into one value) and would hold the
//! others in memory whole; the guard stops the read with a [`ShapeError`] naming the line and
//! field instead, which `next_record` turns into a located row error.
//!
//! The states follow `csv_core`'s reader for the settings imports use (comma, double quote,
//! doubled quotes as escapes, CR, LF or CRLF ending a record), and lines are counted as
//! `csv_core` counts them (LF bytes), so the lines named agree with the parser's.

use std::io::{self, Read};

use super::ImportLimits;

/// A shape problem found while reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    /// The line where the offending field (or the open quote) starts.
    pub line: u64,
    /// The field's position in its row, from 0.
    pub field: usize,
    pub kind: ShapeErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShapeErrorKind {
    /// A quoted field was still open at the end of the file.
    UnterminatedQuote,
    /// A cell is longer than the limit (in bytes).
    CellTooLarge { limit: usize },
    /// A row has more fields than the limit.
    TooManyFields { limit: usize },
}

impl ShapeError {
    /// What is wrong, for people.
    pub fn reason(&self) -> String {
        match self.kind {
            ShapeErrorKind::UnterminatedQuote => format!(
                "a quoted value opened on line {} is never closed (a `\"` is missing before the end of the file)",
                self.line
            ),
            ShapeErrorKind::CellTooLarge { limit } => format!(
                "the value is longer than {limit} bytes (the limit is the setting import-max-cell-bytes)"
            ),
            ShapeErrorKind::TooManyFields { limit } => format!(
                "the {} has more than {limit} fields (the limit is the setting import-max-columns, plus the id)",
                if self.line == 1 { "header" } else { "row" }
            ),
        }
    }
}

impl std::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason())
    }
}

impl std::error::Error for ShapeError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a field (or of a record).
    StartField,
    /// In an unquoted field.
    InField,
    /// In a quoted field.
    InQuoted,
    /// Just after a `"` inside a quoted field: a second `"` is an escaped quote, anything
    /// else closes the quotes.
    QuoteInQuoted,
}

/// Wraps the input of a CSV reader; see the module documentation.
pub struct ShapeGuard<R> {
    inner: R,
    limits: ImportLimits,
    state: State,
    /// Lines start at 1; LF bytes seen so far + 1.
    line: u64,
    field: usize,
    field_line: u64,
    field_bytes: usize,
    /// Once set, every read fails with it.
    failed: Option<ShapeError>,
}

impl<R> ShapeGuard<R> {
    pub fn new(inner: R, limits: ImportLimits) -> ShapeGuard<R> {
        ShapeGuard {
            inner,
            limits,
            state: State::StartField,
            line: 1,
            field: 0,
            field_line: 1,
            field_bytes: 0,
            failed: None,
        }
    }

    fn error(&self, kind: ShapeErrorKind) -> ShapeError {
        ShapeError {
            line: self.field_line,
            field: self.field,
            kind,
        }
    }

    fn next_field(&mut self) -> Result<(), ShapeError> {
        self.field += 1;
        self.field_line = self.line;
        if self.field >= self.limits.max_fields() {
            return Err(self.error(ShapeErrorKind::TooManyFields {
                limit: self.limits.max_fields(),
            }));
        }
        self.state = State::StartField;
        Ok(())
    }

    fn end_record(&mut self) {
        self.field = 0;
        self.state = State::StartField;
    }

    fn content(&mut self) -> Result<(), ShapeError> {
        self.field_bytes += 1;
        if self.field_bytes > self.limits.max_cell_bytes {
            return Err(self.error(ShapeErrorKind::CellTooLarge {
                limit: self.limits.max_cell_bytes,
            }));
        }
        Ok(())
    }

    /// Feeds one byte; an error means the byte must not reach the parser.
    fn step(&mut self, b: u8) -> Result<(), ShapeError> {
        let terminator = b == b'\n' || b == b'\r';
        match self.state {
            State::StartField => {
                self.field_line = self.line;
                self.field_bytes = 0;
                match b {
                    b'"' => self.state = State::InQuoted,
                    b',' => self.next_field()?,
                    _ if terminator => self.end_record(),
                    _ => {
                        self.state = State::InField;
                        self.content()?;
                    }
                }
            }
            State::InField => match b {
                b',' => self.next_field()?,
                _ if terminator => self.end_record(),
                _ => self.content()?,
            },
            State::InQuoted => match b {
                b'"' => self.state = State::QuoteInQuoted,
                _ => self.content()?,
            },
            State::QuoteInQuoted => match b {
                b'"' => {
                    self.state = State::InQuoted;
                    self.content()?;
                }
                b',' => self.next_field()?,
                _ if terminator => self.end_record(),
                _ => {
                    self.state = State::InField;
                    self.content()?;
                }
            },
        }
        if b == b'\n' {
            self.line += 1;
        }
        Ok(())
    }

    fn fail(&mut self, e: ShapeError) -> io::Error {
        self.failed = Some(e.clone());
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

impl<R: Read> Read for ShapeGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            if self.state == State::InQuoted {
                // The quote opened where the field started.
                let e = self.error(ShapeErrorKind::UnterminatedQuote);
                return Err(self.fail(e));
            }
            return Ok(0);
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            if let Err(e) = self.step(b) {
                if i == 0 {
                    return Err(self.fail(e));
                }
                // Hand over the bytes before the offending one; the next read fails.
                self.failed = Some(e);
                return Ok(i);
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &[u8], limits: ImportLimits) -> Result<Vec<u8>, ShapeError> {
        let mut out = Vec::new();
        let mut g = ShapeGuard::new(text, limits);
        match g.read_to_end(&mut out) {
            Ok(_) => Ok(out),
            Err(e) => Err(e
                .get_ref()
                .and_then(|e| e.downcast_ref::<ShapeError>())
                .cloned()
                .expect("a shape error")),
        }
    }

    #[test]
    fn well_formed_files_pass_unchanged() {
        for text in [
            &b"customer_id,x\nA,1\nB,\"two, \"\"quoted\"\"\nlines\"\n"[..],
            b"a,b\r\nc,d\r\n",
            b"a,b\rc,d",
            b"a,\"\"\n",
            b"",
        ] {
            assert_eq!(read_all(text, ImportLimits::DEFAULT).unwrap(), text);
        }
    }

    #[test]
    fn an_unterminated_quote_is_an_error_where_it_opened() {
        let e = read_all(b"customer_id,x\nQ1,\"abc\nQ2,d\n", ImportLimits::DEFAULT).unwrap_err();
        assert_eq!(e.kind, ShapeErrorKind::UnterminatedQuote);
        assert_eq!((e.line, e.field), (2, 1));
        // Closed quotes around newlines are fine, and a quote inside an unquoted value is text.
        assert!(read_all(b"a,b\nx,\"1\n2\"\n", ImportLimits::DEFAULT).is_ok());
        assert!(read_all(b"a,b\nx,5\"6\n", ImportLimits::DEFAULT).is_ok());
    }

    #[test]
    fn large_cells_and_wide_rows_are_stopped_with_their_place() {
        let limits = ImportLimits {
            max_cell_bytes: 4,
            max_attribute_columns: 2,
        };
        let e = read_all(b"a,b\nx,12345\n", limits).unwrap_err();
        assert_eq!(e.kind, ShapeErrorKind::CellTooLarge { limit: 4 });
        assert_eq!((e.line, e.field), (2, 1));
        assert!(read_all(b"a,b\nx,1234\n", limits).is_ok());
        assert!(read_all(b"a,b\nx,\"12\"\"\"\n", limits).is_ok());
        let e = read_all(b"a,b,c\n1,2,3,4\n", limits).unwrap_err();
        assert_eq!(e.kind, ShapeErrorKind::TooManyFields { limit: 3 });
        assert_eq!((e.line, e.field), (2, 3));
    }
}
