//! The rejected-rows file of `--skip-invalid`: each rejected record with its original columns,
//! then `line`, `column` and `reason`.

use std::io::Write;

/// Writes rejected rows as CSV.
pub struct RejectedWriter<W: Write> {
    writer: csv::Writer<W>,
    width: usize,
}

impl<W: Write> RejectedWriter<W> {
    pub fn new(out: W, header: &[String]) -> csv::Result<RejectedWriter<W>> {
        let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(out);
        let mut row: Vec<&str> = header.iter().map(String::as_str).collect();
        row.extend(["line", "column", "reason"]);
        writer.write_record(&row)?;
        Ok(RejectedWriter {
            writer,
            width: header.len(),
        })
    }

    /// One rejected record: its fields as read (padded or cut to the header's width), and why.
    pub fn write(
        &mut self,
        record: &csv::ByteRecord,
        line: u64,
        column: Option<&str>,
        reason: &str,
    ) -> csv::Result<()> {
        let mut row: Vec<&[u8]> = (0..self.width)
            .map(|i| record.get(i).unwrap_or(b""))
            .collect();
        let line = line.to_string();
        row.push(line.as_bytes());
        row.push(column.unwrap_or("").as_bytes());
        row.push(reason.as_bytes());
        self.writer.write_record(&row)
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_rows_keep_their_fields_and_say_why() {
        let mut out = Vec::new();
        {
            let header = vec!["customer_id".to_string(), "amount".to_string()];
            let mut w = RejectedWriter::new(&mut out, &header).unwrap();
            let rec = csv::ByteRecord::from(vec!["A", "ten, or so"]);
            w.write(&rec, 2, Some("amount"), "`ten, or so` is not a number")
                .unwrap();
            w.finish().unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "customer_id,amount,line,column,reason\nA,\"ten, or so\",2,amount,\"`ten, or so` is not a number\"\n"
        );
    }
}
