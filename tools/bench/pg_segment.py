#!/usr/bin/env python3
"""`fairseg segment` on PostgreSQL against SQLite, two binaries alternating, on a kept cluster.

A throwaway PostgreSQL cluster kept in --keep (postgres.py's settings; made on first use) holds
the million workload (customers and consents imported once into database `base`, then
`VACUUM ANALYZE`); SQLite gets the same files once into --keep/base.db. Each round runs, in
turn, each of --which (`other`, `ours`: PostgreSQL on a fresh `CREATE DATABASE run TEMPLATE
base`; `other-sqlite`, `ours-sqlite`: a fresh copy of base.db) with
`segment --algorithm kmeans --k 8 --seed 1 --features f0..f7 --json`, and prints wall time,
stage timings, the load average and, on PostgreSQL, the md5 of every (customer, segment)
membership in id order (the same md5 = the same memberships). Delete --keep afterwards (about
3 GB).

    cargo build --release && python3 tools/bench/pg_segment.py \
        --other /work/main/target/release/fairseg [--rounds 2] [--which other,ours,ours-sqlite]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from million import BIN, FEATURES, ROOT, write_data  # noqa: E402
from postgres import Server, env  # noqa: E402


def run(binary, url, *args):
    t = time.perf_counter()
    p = subprocess.run([binary, *args], env=env(url), capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if p.returncode:
        sys.exit(f"{binary} {' '.join(args)} failed:\n{p.stderr}")
    return seconds, p.stdout


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--other", required=True, help="the other binary (e.g. main's)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--which", default="other,ours,other-sqlite,ours-sqlite")
    p.add_argument("--keep", default=os.path.join(ROOT, "target", "pg-segment-bench"))
    p.add_argument("--dir", default=os.path.join(ROOT, "target", "million-bench"))
    a = p.parse_args()
    binaries = {"other": a.other, "ours": BIN}
    cpath, gpath = write_data(1_000_000, a.dir)
    server = Server(a.keep)
    base_db = os.path.join(a.keep, "base.db")
    try:
        if not server.exists("base"):
            url = server.fresh("base")
            run(a.other, url, "migrate")
            run(a.other, url, "import", "customers", cpath)
            run(a.other, url, "import", "consents", gpath)
            server.psql(url, "VACUUM ANALYZE")
        if not os.path.exists(base_db):
            run(a.other, base_db, "import", "customers", cpath)
            run(a.other, base_db, "import", "consents", gpath)
        args = ["segment", "--algorithm", "kmeans", "--k", "8", "--features",
                ",".join(FEATURES), "--seed", "1", "--json"]
        for r in range(a.rounds):
            for name in a.which.split(","):
                binary = binaries[name.removesuffix("-sqlite")]
                md5 = ""
                if name.endswith("-sqlite"):
                    target = os.path.join(a.keep, "run.db")
                    shutil.copy(base_db, target)
                    seconds, out = run(binary, target, *args)
                    os.remove(target)
                else:
                    server.psql(server.admin, "DROP DATABASE IF EXISTS run")
                    server.psql(server.admin, "CREATE DATABASE run TEMPLATE base")
                    seconds, out = run(binary, server.url("run"), *args)
                    md5 = subprocess.run(
                        ["psql", "-XAt", server.url("run"), "-c",
                         "SELECT md5(string_agg(customer_id || ':' || segment, ',' "
                         "ORDER BY customer_id)) FROM segment_memberships"],
                        capture_output=True, text=True,
                        env=dict(os.environ, PGGSSENCMODE="disable")).stdout.strip()
                stages = json.loads(out).get("timings_ms")
                print(f"round {r + 1} {name}: {seconds:.2f} s; stages {stages}; "
                      f"load {os.getloadavg()[0]:.2f} {md5}", flush=True)
        server.psql(server.admin, "DROP DATABASE IF EXISTS run")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
