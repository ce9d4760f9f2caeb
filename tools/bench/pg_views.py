"""What one dashboard view costs on PostgreSQL: fairseg's CPU, the database server's CPU and
wall time per view (one client, 200 views after 20 to warm up), and the statements behind it
(pg_stat_statements: calls and execution time per view, the eight costliest).

The demo database of tools/bench/dashboards.py --postgres (the kept cluster of
`load.py --postgres --reuse`, built on first use), served by one `fairseg serve`; the pages are
/segments, /kpi and the latest audit report (or `--pages`), read with a compliance officer's
token.

    cargo build --release && python3 tools/bench/pg_views.py [--customers 1000000] [--binary PATH]
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import dashboards
from dashboards import demo_database, request, start_server, token
from postgres import Server

def cpu_of(pids):
    t = 0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            t += int(f[11]) + int(f[12])
        except FileNotFoundError:
            pass
    return t / os.sysconf("SC_CLK_TCK")

def pg_pids():
    """Every PostgreSQL process of the machine: run nothing else on it meanwhile."""
    out = subprocess.run(["pgrep", "-f", "postgres"], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]

ap = argparse.ArgumentParser()
ap.add_argument("--customers", type=int, default=1_000_000)
ap.add_argument("--binary", default=None, help="the fairseg binary to serve (default: release)")
ap.add_argument("--pages", default="/segments,/kpi,/audits/{audit}",
                help="comma-separated paths; {audit} is the latest audit's id")
args = ap.parse_args()
if args.binary:
    dashboards.BIN = args.binary
s = Server(os.path.join(dashboards.ROOT, "target", "dashboards-bench", "postgres"),
           ["shared_preload_libraries=pg_stat_statements"])
try:
    demo = demo_database(args.customers, reuse=True, postgres=s)
    users = {u["role"]: u for u in demo["users"]}
    url = demo["database_path"]
    s.psql(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    proc, base = start_server(url)
    try:
        tok = token(base, users["compliance"])
        _, body = request(base + "/api/v1/audits", tok)
        audits = json.loads(body); audits = audits.get("audits", audits) if isinstance(audits, dict) else audits
        audit = max(a["id"] for a in audits)
        def get(path):
            req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + tok})
            urllib.request.urlopen(req).read()
        for path in [p.format(audit=audit) for p in args.pages.split(",")]:
            for _ in range(20): get(path)
            s.psql(url, "SELECT pg_stat_statements_reset()")
            n = 200
            f0, p0, t0 = cpu_of([proc.pid]), cpu_of(pg_pids()), time.perf_counter()
            for _ in range(n): get(path)
            f1, p1, t1 = cpu_of([proc.pid]), cpu_of(pg_pids()), time.perf_counter()
            print(f"{path}: wall {1000*(t1-t0)/n:.2f} ms, fairseg CPU {1000*(f1-f0)/n:.2f} ms, postgres CPU {1000*(p1-p0)/n:.2f} ms per view", flush=True)
            out = subprocess.run(["psql", "-XAt", url, "-c",
                "SELECT calls/200.0, round((total_exec_time/200)::numeric, 3), round((total_plan_time/200)::numeric,3), left(regexp_replace(query, '\\s+', ' ', 'g'), 110) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8"],
                capture_output=True, text=True, env=dict(os.environ, PGGSSENCMODE="disable")).stdout
            print(out, flush=True)
    finally:
        proc.terminate(); proc.wait()
finally:
    s.stop()
