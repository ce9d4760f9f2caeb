"""The pandas counterpart of benches/import.rs: the same CSV files (written by
`cargo bench --bench import` into target/import-bench, or the directory given as the first
argument) read with pandas.read_csv and written with DataFrame.to_sql into a fresh SQLite file,
timed per file, median of three runs. No validation, type inference beyond pandas' own,
pseudonyms, protected-attribute split or trail: this is the floor a user would script instead.
A second figure adds the indexes fairseg's tables have (a unique customer id; transactions by
customer and by period), built after the rows as fairseg builds them, for a like-for-like store.
"""

import os
import sqlite3
import statistics
import sys
import tempfile
import time

import pandas as pd

REPEATS = 3


INDEXES = {
    "customers": ["CREATE UNIQUE INDEX customers_id ON customers (customer_id)"],
    "transactions": [
        "CREATE INDEX transactions_customer ON transactions (customer_id, occurred_at)",
        "CREATE INDEX transactions_period ON transactions (occurred_at, customer_id, amount, order_id)",
    ],
}


def run(path: str, table: str, con: sqlite3.Connection, indexed: bool) -> tuple[float, int]:
    started = time.perf_counter()
    frame = pd.read_csv(path, na_values=["?", "NA"], keep_default_na=True)
    frame.to_sql(table, con, if_exists="append", index=False, chunksize=100_000)
    if indexed:
        for sql in INDEXES[table]:
            con.execute(sql)
    con.commit()
    return time.perf_counter() - started, len(frame)


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "..", "target", "import-bench")
    directory = sys.argv[1] if len(sys.argv) > 1 else default
    customers = os.path.join(directory, "customers.csv")
    transactions = os.path.join(directory, "transactions.csv")
    if not (os.path.exists(customers) and os.path.exists(transactions)):
        sys.exit(f"run `cargo bench --bench import` first: no CSV files in {directory}")
    for indexed in (False, True):
        label = "pandas + indexes" if indexed else "pandas"
        times = {"customers": [], "transactions": []}
        rows = {}
        for n in range(REPEATS):
            with tempfile.TemporaryDirectory() as tmp:
                con = sqlite3.connect(os.path.join(tmp, "bench.db"))
                con.execute("PRAGMA journal_mode = WAL")
                con.execute("PRAGMA synchronous = NORMAL")
                for table, path in (("customers", customers), ("transactions", transactions)):
                    seconds, count = run(path, table, con, indexed)
                    times[table].append(seconds)
                    rows[table] = count
                con.close()
            print(
                f"  {label} run {n + 1}: customers {times['customers'][-1]:.2f} s, "
                f"transactions {times['transactions'][-1]:.2f} s"
            )
        for table in ("customers", "transactions"):
            m = statistics.median(times[table])
            print(
                f"{label} {table + ':':<14} median {m:.2f} s = {rows[table] / m:.0f} rows/s "
                f"(pandas {pd.__version__})"
            )


if __name__ == "__main__":
    main()
