"""Dashboards under one client: p50/p99 of each page at a given population.

Builds a demo database with the release binary (`fairseg demo --no-serve --customers N`: the
generated customers, transactions and consent ledger, runs, audits and KPI evaluations), starts
`target/release/fairseg serve` on it, signs in (bearer tokens from /api/v1/auth/token) and
requests each page N times in a row with one client after one warm-up request (the first view
after a start fills the caches that later views use: that first time is reported apart).

Pages: /segments, /kpi, /audits/{id} (the latest audit), the run page /segmentations/{id} (the
published run), the members API's first page (`limit=100`, JSON) and /kpi/drift.

    cargo build --release && python3 tools/bench/dashboards.py [--customers 200000]
        [--requests 200] [--db target/dashboards-bench/demo-200000.db] [--reuse]
        [--starts 2] [--binary /path/to/other/fairseg]

`--starts N` starts the server N times in a row on the same database and measures every page in
each (a restart, or a second server behind a load balancer, is what the second start sees);
`--binary` runs another build (e.g. main's, for a before/after on the same database).

`--postgres` builds the demo database on PostgreSQL instead, in a throwaway cluster of its own
(tools/bench/postgres.py's Server: initdb, a free port of 127.0.0.1, trust authentication),
one database `demo_N` per population; with `--reuse` the cluster lives in
target/dashboards-bench/postgres (or `--pg-dir`) and is kept, so a demo is built once:

    python3 tools/bench/dashboards.py --postgres --customers 1000000 --reuse
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "target", "release", "fairseg")
POLICIES = os.path.join(ROOT, "policies")


def env(db):
    return dict(os.environ, FAIRSEG_DATABASE_URL=db, FAIRSEG_POLICIES=POLICIES, RUST_LOG="warn",
                PGGSSENCMODE="disable")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, token=None, body=None):
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, r.read()


def timed(url, token):
    t = time.perf_counter()
    status, body = request(url, token)
    elapsed = (time.perf_counter() - t) * 1000
    if status != 200:
        raise SystemExit(f"{url}: HTTP {status}")
    return elapsed, body


def percentile(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, int(round(p / 100 * len(values) + 0.5)) - 1))
    return values[k]


def build_demo(customers, url, users_file):
    """`fairseg demo --no-serve --json` into `url`; its JSON summary saved in `users_file`."""
    t = time.perf_counter()
    proc = subprocess.run(
        [BIN, "demo", "--no-serve", "--json", "--customers", str(customers),
         "--database-url", url],
        env=env(url), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    with open(users_file, "w") as f:
        f.write(proc.stdout)
    print(f"built the demo database ({customers} customers) in "
          f"{time.perf_counter() - t:.1f} s", file=sys.stderr)


def demo_database(customers, db=None, reuse=False, postgres=None):
    """The demo database of `customers` customers, built with the release binary unless `reuse`
    finds one; returns the demo's JSON summary (users, data) with `database_path` added (the
    SQLite file, or the PostgreSQL URL when `postgres`, a tools/bench/postgres.py Server, is
    given)."""
    out_dir = os.path.join(ROOT, "target", "dashboards-bench")
    os.makedirs(out_dir, exist_ok=True)
    if postgres is not None:
        name = f"demo_{customers}"
        db = postgres.url(name)
        users_file = os.path.join(postgres.tmp, f"{name}.users.json")
        if not (reuse and postgres.exists(name) and os.path.exists(users_file)):
            build_demo(customers, postgres.fresh(name), users_file)
    else:
        db = db or os.path.join(out_dir, f"demo-{customers}.db")
        users_file = db + ".users.json"
        if not (reuse and os.path.exists(db) and os.path.exists(users_file)):
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(db + suffix):
                    os.remove(db + suffix)
            build_demo(customers, db, users_file)
    demo = json.load(open(users_file))
    print(f"data: {json.dumps(demo['data'])}", file=sys.stderr)
    demo["database_path"] = db
    return demo


def postgres_server(args):
    """A throwaway PostgreSQL server for `--postgres` (kept in `--pg-dir` with `--reuse`), or
    None."""
    if not args.postgres:
        return None
    from postgres import Server  # noqa: E402  (numpy and pandas only when asked)
    directory = None
    if args.reuse:
        directory = args.pg_dir or os.path.join(ROOT, "target", "dashboards-bench", "postgres")
    return Server(directory, args.pg_setting)


def add_postgres_arguments(ap):
    ap.add_argument("--postgres", action="store_true",
                    help="build the demo on a throwaway PostgreSQL server and serve it there")
    ap.add_argument("--pg-dir", default=None,
                    help="with --postgres --reuse: where the kept cluster lives")
    ap.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                    help="a server setting for --postgres, e.g. log_min_duration_statement=20 "
                         "(the log is in the cluster directory)")


def start_server(db, public_url=None, extra_env=None):
    """`fairseg serve` on `db`, on a free port, once /healthz answers: (process, base URL)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [BIN, "serve", "--addr", f"127.0.0.1:{port}"],
        env=dict(env(db), FAIRSEG_PUBLIC_URL=public_url or base, **(extra_env or {})),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while True:
        try:
            request(base + "/healthz")
            return server, base
        except Exception:
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start: " + server.stderr.read().decode())
            time.sleep(0.2)


def token(base, user):
    _, body = request(base + "/api/v1/auth/token",
                      body={"email": user["email"], "password": user["password"]})
    return json.loads(body)["token"]


def measure(db, users, requests):
    """One server start on `db`: each page's first view, then `requests` views."""
    server, base = start_server(db)
    try:
        tokens = {role: token(base, users[role]) for role in ("compliance", "analyst")}
        # The first view after a start counts the published run's live sizes from the consent
        # state (later views read them from the cache until the state changes).
        cold, body = timed(base + "/api/v1/segmentations/published", tokens["compliance"])
        print(json.dumps({"live_sizes_first_count_ms": round(cold, 1)}), file=sys.stderr)
        run = json.loads(body)["run_id"]
        _, body = request(base + "/api/v1/audits", tokens["compliance"])
        audits = json.loads(body)
        audits = audits.get("audits", audits) if isinstance(audits, dict) else audits
        audit = max(a["id"] for a in audits)
        pages = [
            ("/segments", "compliance"),
            ("/kpi", "compliance"),
            (f"/audits/{audit}", "compliance"),
            (f"/segmentations/{run}", "analyst"),
            (f"/api/v1/segmentations/{run}/members?format=json&limit=100", "compliance"),
            ("/kpi/drift", "compliance"),
        ]
        results = []
        for path, role in pages:
            first, _ = timed(base + path, tokens[role])
            times = [timed(base + path, tokens[role])[0] for _ in range(requests)]
            row = {
                "page": path.replace(f"/audits/{audit}", "/audits/{id}").replace(
                    f"/{run}", "/{run}"),
                "first_ms": round(first, 1),
                "p50_ms": round(statistics.median(times), 1),
                "p99_ms": round(percentile(times, 99), 1),
                "max_ms": round(max(times), 1),
                "n": len(times),
            }
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
        return round(cold, 1), results
    finally:
        server.terminate()
        server.wait(timeout=30)


def main():
    global BIN
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--db", default=None)
    ap.add_argument("--reuse", action="store_true", help="keep an existing database")
    ap.add_argument("--starts", type=int, default=1,
                    help="server starts in a row on the database, each measured")
    ap.add_argument("--binary", default=None, help="the fairseg binary to run")
    add_postgres_arguments(ap)
    args = ap.parse_args()
    if args.binary:
        BIN = os.path.abspath(args.binary)
    server = postgres_server(args)
    try:
        demo = demo_database(args.customers, args.db, args.reuse, server)
        db = demo["database_path"]
        users = {u["role"]: u for u in demo["users"]}
        starts = []
        for i in range(args.starts):
            load = os.getloadavg()
            print(json.dumps({"start": i + 1, "load_average": load}), file=sys.stderr)
            cold, results = measure(db, users, args.requests)
            starts.append({"start": i + 1, "load_average": load,
                           "live_sizes_first_count_ms": cold, "pages": results})
    finally:
        if server is not None:
            server.stop()
    print(json.dumps({"customers": args.customers, "data": demo["data"], "binary": BIN,
                      "backend": "postgres" if args.postgres else "sqlite",
                      "requests": args.requests, "live_sizes_first_count_ms":
                      starts[0]["live_sizes_first_count_ms"], "pages": starts[0]["pages"],
                      "starts": starts}, indent=1))


if __name__ == "__main__":
    main()
