"""Load through the proxy: two `fairseg serve` processes on one database behind nginx running
deploy/nginx.conf (the file the suite's proxy test runs), and wrk with 64 connections reading
/segments, /kpi and the latest audit report in turn for 60 s.

The database is the demo database of tools/bench/dashboards.py (built once with the release
binary, reused with --reuse). Requests carry a compliance officer's bearer token, which any of
the two processes accepts (the signing key is in the database). Reported: requests per second,
wrk's latency percentiles (p50, p99), non-2xx answers and socket errors, and how many requests
each process answered (nginx's access log).

Needs nginx and wrk (Debian: nginx-light, wrk):

    cargo build --release && python3 tools/bench/load.py [--customers 200000] [--reuse]
        [--connections 64] [--seconds 60] [--binary PATH] [--postgres [--pg-dir DIR]]

`--postgres`: both processes on one PostgreSQL database, the demo built there as
tools/bench/dashboards.py --postgres builds it (a throwaway cluster; kept with --reuse).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import dashboards  # noqa: E402
from dashboards import (ROOT, add_postgres_arguments, demo_database, free_port,  # noqa: E402
                        postgres_server, request, start_server, token)

WRK_SCRIPT = """
local paths = {%s}
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i], {["Authorization"] = "Bearer %s"})
end
"""


def nginx_config(workdir, port, upstreams):
    """deploy/nginx.conf with only its addresses and log path changed, inside a minimal main
    configuration whose every path is in `workdir`."""
    site = open(os.path.join(ROOT, "deploy", "nginx.conf")).read()
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};", 1)
    site = site.replace("10.0.0.11:8080", upstreams[0], 1)
    site = site.replace("10.0.0.12:8080", upstreams[1], 1)
    access_log = os.path.join(workdir, "access.log")
    site = site.replace("/var/log/nginx/fairseg.access.log", access_log, 1)
    with open(os.path.join(workdir, "site.conf"), "w") as f:
        f.write(site)
    temp = os.path.join(workdir, "temp")
    os.makedirs(temp, exist_ok=True)
    main = (
        f"daemon off;\nworker_processes 1;\npid {workdir}/nginx.pid;\n"
        f"error_log {workdir}/error.log warn;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
        f"  scgi_temp_path {temp}/scgi;\n  include {workdir}/site.conf;\n}}\n"
    )
    path = os.path.join(workdir, "nginx.conf")
    with open(path, "w") as f:
        f.write(main)
    return path, access_log


def parse_wrk(text):
    """Requests/s, latency percentiles (ms), non-2xx/3xx answers and socket errors from wrk's
    report (printed with --latency)."""
    def ms(value, unit):
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    percentiles = {p: ms(v, u) for p, v, u in
                   re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       text)
    return {
        "requests": int(total.group(1)) if total else None,
        "requests_per_s": float(rps.group(1)) if rps else None,
        "p50_ms": percentiles.get("50"),
        "p99_ms": percentiles.get("99"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(map(int, socket.groups())) if socket else 0,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--db", default=None)
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--binary", default=None, help="the fairseg binary to run")
    add_postgres_arguments(ap)
    args = ap.parse_args()
    if args.binary:
        dashboards.BIN = os.path.abspath(args.binary)
    nginx, wrk = shutil.which("nginx") or "/usr/sbin/nginx", shutil.which("wrk")
    if not (os.path.exists(nginx) and wrk):
        raise SystemExit("needs nginx and wrk (Debian: apt-get install nginx-light wrk)")
    pg = postgres_server(args)
    workdir = tempfile.mkdtemp(prefix="fairseg-load-")
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    processes = []
    try:
        demo = demo_database(args.customers, args.db, args.reuse, pg)
        users = {u["role"]: u for u in demo["users"]}
        servers = [start_server(demo["database_path"], public,
                                {"FAIRSEG_TRUSTED_PROXIES": "127.0.0.1/32"}) for _ in range(2)]
        processes += [s for s, _ in servers]
        upstreams = [base.removeprefix("http://") for _, base in servers]
        conf, access_log = nginx_config(workdir, port, upstreams)
        processes.append(subprocess.Popen([nginx, "-p", workdir, "-c", conf],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.time() + 20
        while True:
            try:
                request(public + "/healthz")
                break
            except Exception:
                if time.time() > deadline:
                    raise SystemExit(open(os.path.join(workdir, "error.log")).read())
                time.sleep(0.2)
        bearer = token(public, users["compliance"])
        _, body = request(public + "/api/v1/audits", bearer)
        audits = json.loads(body)
        audits = audits.get("audits", audits) if isinstance(audits, dict) else audits
        audit = max(a["id"] for a in audits)
        paths = ["/segments", "/kpi", f"/audits/{audit}"]
        # One pass first: the first view after a start fills the caches (live sizes, drift).
        for p in paths:
            request(public + p, bearer)
        script = os.path.join(workdir, "paths.lua")
        with open(script, "w") as f:
            f.write(WRK_SCRIPT % (", ".join(f'"{p}"' for p in paths), bearer))
        load_before = os.getloadavg()
        out = subprocess.run(
            [wrk, "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--latency",
             "-s", script, public],
            capture_output=True, text=True, check=True).stdout
        print(out, file=sys.stderr)
        result = parse_wrk(out)
        log = open(access_log).read()
        result["answered_by"] = [log.count(f"upstream={u} ") for u in upstreams]
        result.update(customers=args.customers, data=demo["data"],
                      backend="postgres" if args.postgres else "sqlite",
                      connections=args.connections, seconds=args.seconds,
                      pages=["/segments", "/kpi", "/audits/{id}"],
                      load_average_before=load_before, load_average=os.getloadavg())
        print(json.dumps(result, indent=1))
    finally:
        for p in reversed(processes):
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(workdir, ignore_errors=True)
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
