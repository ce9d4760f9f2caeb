#!/usr/bin/env python3
"""fairseg on PostgreSQL against its references, on a throwaway PostgreSQL server.

Starts a PostgreSQL cluster of its own (initdb in a temporary directory, a free port of
127.0.0.1, trust authentication: what scripts/test does), and removes it at the end. The same
server settings serve fairseg and the reference, so both see the same disk and WAL.

1. import customers: `fairseg import customers` of the million-workload file
   (tools/bench/million.py: customer_id, f0..f7 with six decimals, sex) into a fresh database,
   against `psql -c "\\copy raw FROM file CSV HEADER"` of the same file into a table of the
   same columns (customer_id text primary key, f0..f7 double precision, sex text);
2. import transactions: `fairseg import transactions` of a file of --transactions rows
   (customer_id, occurred_at, amount) for those customers, against `\\copy` into
   (customer_id text, occurred_at timestamp, amount double precision) with an index on
   (customer_id, occurred_at), as fairseg keeps one;
3. with --segment: consents imported, then `fairseg segment --algorithm kmeans --k 8 --seed 1`
   end to end on PostgreSQL and on SQLite (the same files imported into a fresh SQLite file);
4. with --kpi: `fairseg kpi evaluate --period month --as-of 2026-03-15` (March 2026) on PostgreSQL and on SQLite.

Each figure is one run (the machine is shared; the load average is printed beside them).

    cargo build --release && python3 tools/bench/postgres.py [--n 1000000]
        [--transactions 10000000] [--segment] [--kpi]
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(__file__))
from million import BIN, FEATURES, POLICIES, ROOT, write_data  # noqa: E402


def pg_bin():
    versions = sorted(
        (d for d in os.listdir("/usr/lib/postgresql") if d.isdigit()), key=int)
    if not versions:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    return os.path.join("/usr/lib/postgresql", versions[-1], "bin")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """A PostgreSQL cluster in a temporary directory, stopped and removed on exit."""

    def __init__(self):
        self.bin = pg_bin()
        self.tmp = tempfile.mkdtemp(prefix="fairseg-pg-bench-")
        self.data = os.path.join(self.tmp, "data")
        self.port = free_port()
        self.as_pg = []
        if os.geteuid() == 0:
            shutil.chown(self.tmp, "postgres")
            self.as_pg = ["runuser", "-u", "postgres", "--"]
        subprocess.run(self.as_pg + [f"{self.bin}/initdb", "-D", self.data, "-A", "trust",
                                     "-U", "postgres", "-E", "UTF8", "--locale=C"],
                       check=True, capture_output=True, cwd=self.tmp)
        subprocess.run(self.as_pg + [
            f"{self.bin}/pg_ctl", "-D", self.data, "-l", os.path.join(self.tmp, "log"), "-w",
            "-o", f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 "
                  "-c max_wal_size=2GB -c shared_buffers=512MB", "start"],
            check=True, capture_output=True, cwd=self.tmp)
        self.admin = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, name):
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def fresh(self, name):
        self.psql(self.admin, f"DROP DATABASE IF EXISTS {name}")
        self.psql(self.admin, f"CREATE DATABASE {name}")
        return self.url(name)

    def psql(self, url, command):
        t = time.perf_counter()
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", command],
                       check=True, capture_output=True, env=dict(os.environ, PGGSSENCMODE="disable"))
        return time.perf_counter() - t

    def stop(self):
        subprocess.run(self.as_pg + [f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate",
                                     "stop"], capture_output=True, cwd=self.tmp)
        shutil.rmtree(self.tmp, ignore_errors=True)


def env(url):
    return dict(os.environ, FAIRSEG_DATABASE_URL=url, FAIRSEG_POLICIES=POLICIES,
                RUST_LOG="warn,fairseg::app::imports=info", PGGSSENCMODE="disable")


def fairseg(url, *args):
    t = time.perf_counter()
    proc = subprocess.run([BIN, *args], env=env(url), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"fairseg {' '.join(args)} failed:\n{proc.stderr}")
    seconds = time.perf_counter() - t
    for line in proc.stderr.splitlines():
        if "import written" in line:
            print("   ", line.split("INFO")[-1].strip(), flush=True)
    return seconds, proc.stdout


def write_transactions(n_customers, n, directory):
    path = os.path.join(directory, f"transactions-{n_customers}-{n}.csv")
    if os.path.exists(path):
        return path
    rng = np.random.default_rng(17)
    with open(path + ".tmp", "w") as out:
        out.write("customer_id,occurred_at,amount\n")
        chunk = 1_000_000
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            ids = rng.integers(0, n_customers, m)
            days = rng.integers(0, 181, m)
            amounts = np.round(rng.gamma(2.0, 30.0, m) + 1.0, 2)
            frame = pd.DataFrame({
                "customer_id": [f"C{i:07d}" for i in ids],
                "occurred_at": (np.datetime64("2026-01-01") + days).astype(str),
                "amount": amounts,
            })
            frame.to_csv(out, header=False, index=False, float_format="%.2f")
    os.rename(path + ".tmp", path)
    return path


def rate(rows, seconds):
    return f"{rows / seconds:,.0f} rows/s"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--transactions", type=int, default=10_000_000)
    p.add_argument("--segment", action="store_true")
    p.add_argument("--kpi", action="store_true")
    p.add_argument("--dir", default=os.environ.get(
        "MILLION_BENCH_DIR", os.path.join(ROOT, "target", "million-bench")))
    a = p.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    cpath, gpath = write_data(a.n, a.dir)
    tpath = write_transactions(a.n, a.transactions, a.dir) if a.transactions else None
    print(f"load average before: {os.getloadavg()}", flush=True)
    server = Server()
    results = {}
    try:
        # 1. customers
        url = server.fresh("fairseg")
        fairseg(url, "migrate")
        seconds, _ = fairseg(url, "import", "customers", cpath)
        results["import_customers_s"] = seconds
        print(f"fairseg import customers ({a.n:,}): {seconds:.2f} s = {rate(a.n, seconds)}",
              flush=True)
        raw = server.fresh("raw")
        cols = ", ".join(f"{f} double precision" for f in FEATURES)
        server.psql(raw, f"CREATE TABLE customers (customer_id text PRIMARY KEY, {cols}, sex text)")
        seconds = server.psql(raw, f"\\copy customers FROM '{cpath}' CSV HEADER")
        results["copy_customers_s"] = seconds
        print(f"psql \\copy customers: {seconds:.2f} s = {rate(a.n, seconds)}; fairseg is "
              f"{results['import_customers_s'] / seconds:.2f}x", flush=True)
        # 2. transactions
        if tpath:
            seconds, _ = fairseg(url, "import", "transactions", tpath)
            results["import_transactions_s"] = seconds
            print(f"fairseg import transactions ({a.transactions:,}): {seconds:.2f} s = "
                  f"{rate(a.transactions, seconds)}", flush=True)
            server.psql(raw, "CREATE TABLE transactions (customer_id text, occurred_at "
                             "timestamp, amount double precision)")
            server.psql(raw, "CREATE INDEX transactions_customer ON transactions "
                             "(customer_id, occurred_at)")
            seconds = server.psql(raw, f"\\copy transactions FROM '{tpath}' CSV HEADER")
            results["copy_transactions_s"] = seconds
            print(f"psql \\copy transactions: {seconds:.2f} s = "
                  f"{rate(a.transactions, seconds)}; fairseg is "
                  f"{results['import_transactions_s'] / seconds:.2f}x", flush=True)
        # 3. segment, PostgreSQL then SQLite
        if a.segment or a.kpi:
            fairseg(url, "import", "consents", gpath)
            sqlite = os.path.join(server.tmp, "bench.db")
            fairseg(sqlite, "import", "customers", cpath)
            fairseg(sqlite, "import", "consents", gpath)
            if tpath:
                fairseg(sqlite, "import", "transactions", tpath)
        if a.segment:
            args = ["segment", "--algorithm", "kmeans", "--k", "8", "--features",
                    ",".join(FEATURES), "--seed", "1", "--json"]
            for name, target in (("postgres", url), ("sqlite", sqlite)):
                seconds, out = fairseg(target, *args)
                stages = json.loads(out).get("timings_ms")
                results[f"segment_{name}_s"] = seconds
                print(f"fairseg segment kmeans k=8 on {name}: {seconds:.2f} s; stages {stages}",
                      flush=True)
        if a.kpi:
            for name, target in (("postgres", url), ("sqlite", sqlite)):
                seconds, _ = fairseg(target, "kpi", "evaluate", "--period", "month",
                                     "--as-of", "2026-03-15")
                results[f"kpi_{name}_s"] = seconds
                print(f"fairseg kpi evaluate --period month --as-of 2026-03-15 on {name}: {seconds:.2f} s",
                      flush=True)
    finally:
        server.stop()
    print(f"load average after: {os.getloadavg()}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
