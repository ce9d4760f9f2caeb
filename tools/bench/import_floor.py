"""What the import targets' references cost once they store what fairseg must store.

Issue 16 asks for the customers import within 1.3 x sqlite3's `.import`, and issue 17 within
1.5 x `psql \\copy`, "validation, pseudonyms and the trail included". The references write the
file's columns into a table and nothing else. This bench asks each tool to do its own job with
one thing more that fairseg cannot do without: a pseudonym per customer (the identifier
activation partners hold and record consent by, so it is looked up and must be unique) and the
unique keys on the customer id and the pseudonym. The pseudonyms are computed beforehand in
Python (HMAC-SHA-256, 128 bits in hex, the shape of fairseg's) and not timed.

Each round, in the same minutes, on the million-customer file of tools/bench/million.py:
- SQLite (the `sqlite3` shell, default settings, as million.py's reference): `.import --csv`
  into a new table (the reference); the same columns with the customer id as a unique key;
  the same plus the pseudonym column and its unique key (keys built after the rows, in one
  transaction: the cheaper order); `fairseg import customers` into a fresh database.
- PostgreSQL (`--postgres`, a throwaway cluster as tools/bench/postgres.py starts it):
  `\\copy` into postgres.py's reference table (customer id as the primary key, typed numbers);
  the same with the pseudonym column and its unique index (built after the rows, in the same
  transaction); `fairseg import customers`.

    cargo build --release && python3 tools/bench/import_floor.py [--n 1000000] [--rounds 3]
        [--postgres [--locale C]]
"""

import argparse
import csv
import hashlib
import hmac
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from million import BIN, ROOT, import_fairseg, remove_db, write_data  # noqa: E402


def keyed_file(cpath, directory):
    """The customers file with a pseudonym after the id, without the header."""
    path = os.path.join(directory, os.path.basename(cpath).replace(".csv", "-pseudonyms.csv"))
    if os.path.exists(path):
        return path
    key = os.urandom(32)
    with open(cpath, newline="") as src, open(path + ".tmp", "w", newline="") as out:
        rows = csv.reader(src)
        next(rows)
        w = csv.writer(out, lineterminator="\n")
        for row in rows:
            digest = hmac.new(key, row[0].encode(), hashlib.sha256).hexdigest()[:32]
            w.writerow([row[0], "c_" + digest, *row[1:]])
    os.rename(path + ".tmp", path)
    return path


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True,
                   env=dict(os.environ, PGGSSENCMODE="disable"))
    return time.perf_counter() - t


def sqlite_round(cpath, kpath, header, directory):
    db = os.path.join(directory, "floor.db")
    cols = ", ".join(f'"{c}" TEXT' for c in header)
    times = {}
    remove_db(db)
    os.sync()
    times["sqlite3 .import (reference)"] = timed(["sqlite3", db, f".import --csv {cpath} customers"])
    remove_db(db)
    os.sync()
    times["+ unique customer id"] = timed([
        "sqlite3", db, f"CREATE TABLE customers ({cols})", "BEGIN",
        f".import --csv --skip 1 {cpath} customers",
        f'CREATE UNIQUE INDEX customers_id ON customers ("{header[0]}")', "COMMIT"])
    remove_db(db)
    os.sync()
    with_pseudonym = ", ".join(f'"{c}" TEXT' for c in [header[0], "pseudonym", *header[1:]])
    times["+ pseudonym and its unique key"] = timed([
        "sqlite3", db, f"CREATE TABLE customers ({with_pseudonym})", "BEGIN",
        f".import --csv {kpath} customers",
        f'CREATE UNIQUE INDEX customers_id ON customers ("{header[0]}")',
        "CREATE UNIQUE INDEX customers_pseudonym ON customers (pseudonym)", "COMMIT"])
    remove_db(db)
    times["fairseg import customers"], _ = import_fairseg(cpath, db)
    remove_db(db)
    return times


def postgres_round(server, cpath, kpath, header):
    from postgres import env as pg_env  # noqa: E402
    typed = ", ".join(f'"{c}" double precision' for c in header[1:-1])
    id_col, last = header[0], header[-1]
    times = {}
    url = server.fresh("floor")
    server.psql(url, f'CREATE TABLE customers ("{id_col}" text PRIMARY KEY, {typed}, "{last}" text)')
    times["psql \\copy (reference)"] = server.psql(url, f"\\copy customers FROM '{cpath}' CSV HEADER")
    url = server.fresh("floor")
    server.psql(url, f'CREATE TABLE customers ("{id_col}" text PRIMARY KEY, pseudonym text, '
                     f'{typed}, "{last}" text)')
    # The pseudonym's key built after the rows, in the same transaction: maintained row by
    # row during the COPY, random keys cost 2.9 x the reference instead.
    times["+ pseudonym and its unique key"] = timed([
        "psql", "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", url,
        "-c", f"\\copy customers FROM '{kpath}' CSV",
        "-c", "CREATE UNIQUE INDEX customers_pseudonym ON customers (pseudonym)"])
    url = server.fresh("floor")
    subprocess.run([BIN, "migrate"], env=pg_env(url), check=True, capture_output=True)
    t = time.perf_counter()
    subprocess.run([BIN, "import", "customers", cpath], env=pg_env(url), check=True,
                   capture_output=True)
    times["fairseg import customers"] = time.perf_counter() - t
    server.psql(server.admin, "DROP DATABASE floor")
    return times


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--postgres", action="store_true")
    p.add_argument("--locale", default="C", help="the throwaway cluster's locale (--postgres)")
    p.add_argument("--dir", default=os.environ.get(
        "MILLION_BENCH_DIR", os.path.join(ROOT, "target", "million-bench")))
    a = p.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    cpath, _ = write_data(a.n, a.dir)
    kpath = keyed_file(cpath, a.dir)
    with open(cpath, newline="") as f:
        header = next(csv.reader(f))
    print(f"{a.n:,} customers; load average before: {os.getloadavg()}", flush=True)
    server = None
    if a.postgres:
        from postgres import Server  # noqa: E402
        server = Server(locale=a.locale)
    results = {}
    try:
        with tempfile.TemporaryDirectory(dir=a.dir) as work:
            for r in range(a.rounds):
                times = (postgres_round(server, cpath, kpath, header) if server
                         else sqlite_round(cpath, kpath, header, work))
                reference = next(iter(times.values()))
                print(f"round {r + 1} (load {os.getloadavg()[0]:.2f}): " + "; ".join(
                    f"{k} {v:.2f} s = {v / reference:.2f} x" for k, v in times.items()),
                    flush=True)
                for k, v in times.items():
                    results.setdefault(k, []).append(v / reference)
    finally:
        if server:
            server.stop()
    print("median against the reference: " + "; ".join(
        f"{k} {statistics.median(v):.2f} x ({min(v):.2f}-{max(v):.2f})"
        for k, v in results.items()))


if __name__ == "__main__":
    main()
