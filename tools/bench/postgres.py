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
        [--transactions 10000000] [--segment] [--kpi] [--alternate OTHER_BINARY [--rounds N]]
        [--locale en_US.UTF-8]

`--locale` makes the throwaway cluster with that locale (default C); the locale must exist on
the machine (`locale -a`; Debian: the `locales` package and `locale-gen`).
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

# Another build of fairseg (e.g. main's, for before/after while this tree rebuilds).
BIN = os.environ.get("FAIRSEG_BIN", BIN)


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
    """A PostgreSQL cluster in a temporary directory, stopped and removed on exit; or, given
    `directory`, the cluster kept there (made on first use, started again later, stopped but
    kept on exit), so that a database built once serves later runs."""

    def __init__(self, directory=None, settings=(), locale="C"):
        self.bin = pg_bin()
        self.keep = directory is not None
        if self.keep:
            self.tmp = os.path.abspath(directory)
            os.makedirs(self.tmp, exist_ok=True)
        else:
            self.tmp = tempfile.mkdtemp(prefix="fairseg-pg-bench-")
        self.data = os.path.join(self.tmp, "data")
        self.port = free_port()
        self.as_pg = []
        if os.geteuid() == 0:
            shutil.chown(self.tmp, "postgres")
            self.as_pg = ["runuser", "-u", "postgres", "--"]
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")):
            subprocess.run(self.as_pg + [f"{self.bin}/initdb", "-D", self.data, "-A", "trust",
                                         "-U", "postgres", "-E", "UTF8", f"--locale={locale}"],
                           check=True, capture_output=True, cwd=self.tmp)
        options = " ".join(f"-c {s}" for s in settings)
        subprocess.run(self.as_pg + [
            f"{self.bin}/pg_ctl", "-D", self.data, "-l", os.path.join(self.tmp, "log"), "-w",
            "-o", f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 "
                  "-c max_wal_size=2GB -c shared_buffers=512MB -c log_min_duration_statement=200 "
                  f"{options}", "start"],
            check=True, capture_output=True, cwd=self.tmp)
        self.admin = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def exists(self, name):
        out = subprocess.run(
            ["psql", "-X", "-At", self.admin, "-c",
             f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
            check=True, capture_output=True, text=True,
            env=dict(os.environ, PGGSSENCMODE="disable")).stdout
        return out.strip() == "1"

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

    def cpu(self):
        """CPU seconds (user + system) of the server's ended backends so far: the postmaster
        reaps them, so its children's times grow by each finished session's."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            pid = int(f.readline())
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")

    def slow_statements(self, since=0):
        """Statements of at least 200 ms the server logged after byte `since` of its log."""
        with open(os.path.join(self.tmp, "log")) as f:
            f.seek(since)
            text = f.read()
        return [line.split("LOG:", 1)[-1].strip()[:160] for line in text.splitlines()
                if "duration:" in line]

    def log_size(self):
        return os.path.getsize(os.path.join(self.tmp, "log"))

    def stop(self):
        mode = "fast" if self.keep else "immediate"
        subprocess.run(self.as_pg + [f"{self.bin}/pg_ctl", "-D", self.data, "-m", mode,
                                     "stop"], capture_output=True, cwd=self.tmp)
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def env(url):
    return dict(os.environ, FAIRSEG_DATABASE_URL=url, FAIRSEG_POLICIES=POLICIES,
                RUST_LOG="warn,fairseg::app::imports=info", PGGSSENCMODE="disable")


def fairseg(url, *args, binary=BIN, server=None):
    """Runs fairseg; with `server`, prints fairseg's CPU, the server's and its slow statements."""
    before = (server.cpu(), server.log_size()) if server else None
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen([binary, *args], env=env(url), stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"fairseg {' '.join(args)} failed:\n{stderr}")
    if server:
        time.sleep(0.3)  # the backend ends just after the client hangs up
        print(f"    CPU: fairseg {usage.ru_utime + usage.ru_stime:.2f} s, "
              f"server {server.cpu() - before[0]:.2f} s", flush=True)
        for line in server.slow_statements(before[1]):
            print("    server:", line, flush=True)
    for line in stderr.splitlines():
        if "import written" in line:
            print("   ", line.split("INFO")[-1].strip(), flush=True)
    return seconds, stdout


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


def alternate(server, a, cpath):
    """The customers import by two binaries in turn, and `\\copy`, each round in one minute."""
    cols = ", ".join(f"{f} double precision" for f in FEATURES)
    for r in range(a.rounds):
        for name, binary in (("other", a.alternate), ("ours", BIN)):
            url = server.fresh("fairseg")
            fairseg(url, "migrate", binary=binary)
            seconds, _ = fairseg(url, "import", "customers", cpath, binary=binary, server=server)
            print(f"round {r + 1} {name} ({binary}): {seconds:.2f} s = {rate(a.n, seconds)}; "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
            server.psql(server.admin, "DROP DATABASE fairseg")
        raw = server.fresh("raw")
        server.psql(raw, f"CREATE TABLE customers (customer_id text PRIMARY KEY, {cols}, sex text)")
        before = server.cpu()
        seconds = server.psql(raw, f"\\copy customers FROM '{cpath}' CSV HEADER")
        time.sleep(0.3)
        print(f"round {r + 1} psql \\copy: {seconds:.2f} s = {rate(a.n, seconds)}; server CPU "
              f"{server.cpu() - before:.2f} s; load {os.getloadavg()[0]:.2f}", flush=True)
        server.psql(server.admin, "DROP DATABASE raw")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--transactions", type=int, default=10_000_000)
    p.add_argument("--segment", action="store_true")
    p.add_argument("--kpi", action="store_true")
    p.add_argument("--alternate", metavar="OTHER_BINARY",
                   help="only the customers import: this binary and ours in turn, --rounds "
                        "times each, with one \\copy per round (before/after in the same minutes)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--locale", default="C",
                   help="the cluster's locale (initdb --locale); many clusters and images run "
                        "en_US.UTF-8, under which text indexes sort by strcoll")
    p.add_argument("--dir", default=os.environ.get(
        "MILLION_BENCH_DIR", os.path.join(ROOT, "target", "million-bench")))
    a = p.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    cpath, gpath = write_data(a.n, a.dir)
    tpath = write_transactions(a.n, a.transactions, a.dir) if a.transactions else None
    print(f"load average before: {os.getloadavg()}", flush=True)
    server = Server(locale=a.locale)
    results = {}
    if a.alternate:
        try:
            alternate(server, a, cpath)
        finally:
            server.stop()
        print(f"load average after: {os.getloadavg()}")
        return
    try:
        # 1. customers
        url = server.fresh("fairseg")
        fairseg(url, "migrate")
        seconds, _ = fairseg(url, "import", "customers", cpath, server=server)
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
            seconds, _ = fairseg(url, "import", "transactions", tpath, server=server)
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
        # The reference's copies are measured: their disk is wanted for what follows.
        server.psql(server.admin, "DROP DATABASE raw")
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
                                     "--as-of", "2026-03-15", server=server)
                results[f"kpi_{name}_s"] = seconds
                print(f"fairseg kpi evaluate --period month --as-of 2026-03-15 on {name}: {seconds:.2f} s",
                      flush=True)
    finally:
        server.stop()
    print(f"load average after: {os.getloadavg()}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
