//! Reading rows from storage and parsing their JSON take about as long as each other, so the
//! loads that do both (a run's attributes, an audit's protected attributes) run them side by
//! side: the calling thread reads and hands batches to a parsing thread.

use std::sync::mpsc::sync_channel;

/// One row for the parser: the customer's position in the population, its id, its JSON.
pub type Row = (u32, i64, String);

/// Runs `read`, which hands each row to the function it is given, on this thread, and
/// `parse`, which consumes the rows in the order they were read, on another; returns both
/// results. `parse` sees every row `read` handed over, unless it stops early.
pub fn read_and_parse<R, T: Send>(
    read: impl FnOnce(&mut dyn FnMut(Row)) -> R,
    parse: impl FnOnce(&mut dyn Iterator<Item = Row>) -> T + Send,
) -> (R, T) {
    const BATCH: usize = 8_192;
    let (batches, received) = sync_channel::<Vec<Row>>(4);
    std::thread::scope(|scope| {
        let parser = scope.spawn(move || parse(&mut received.into_iter().flatten()));
        let mut batch = Vec::with_capacity(BATCH);
        let read = read(&mut |row| {
            batch.push(row);
            if batch.len() == BATCH {
                // A failed send means the parser stopped early; it says why itself.
                let _ = batches.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
            }
        });
        if !batch.is_empty() {
            let _ = batches.send(batch);
        }
        drop(batches);
        (read, parser.join().expect("the parser does not panic"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_sees_every_row_in_the_order_read() {
        let (read, parsed) = read_and_parse(
            |push| {
                for i in 0..20_000u32 {
                    push((i, i64::from(i) * 2, i.to_string()));
                }
                "read"
            },
            |rows| rows.collect::<Vec<_>>(),
        );
        assert_eq!(read, "read");
        assert_eq!(parsed.len(), 20_000);
        assert!(
            parsed
                .iter()
                .enumerate()
                .all(|(i, (p, id, json))| *p as usize == i
                    && *id == 2 * i as i64
                    && *json == i.to_string())
        );
    }
}
