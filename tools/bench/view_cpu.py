"""CPU per view: the `fairseg serve` process's user + system CPU time (from /proc/PID/stat)
over N views of each page by one client, after one warm-up view, on the demo database of
tools/bench/dashboards.py (built once with the release binary, reused). The figure a
dashboard's throughput rests on: two cores serve at most about 2,000 / (ms per view) views
per second, whatever the concurrency.

    cargo build --release && python3 tools/bench/view_cpu.py [--customers 1000000]
        [--paths "/segments /kpi /audits/AUDIT /"] [--views 200] [--binary PATH]

`AUDIT` in a path stands for the newest audit's id. Run two binaries in turn (--binary) in the
same minutes to compare: on a machine with hyperthreads the CPU time of a view moves with
what the other thread runs.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import dashboards  # noqa: E402
from dashboards import demo_database, request, start_server, token  # noqa: E402


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--paths", default="/segments /kpi /audits/AUDIT /")
    ap.add_argument("--views", type=int, default=200)
    ap.add_argument("--binary", default=None)
    args = ap.parse_args()
    if args.binary:
        dashboards.BIN = args.binary
    demo = demo_database(args.customers, reuse=True)
    users = {u["role"]: u for u in demo["users"]}
    server, base = start_server(demo["database_path"])
    try:
        t = token(base, users["compliance"])
        _, body = request(base + "/api/v1/audits", t)
        audits = json.loads(body)
        audits = audits.get("audits", audits) if isinstance(audits, dict) else audits
        audit = max(a["id"] for a in audits)
        print(f"binary {dashboards.BIN}, load average {os.getloadavg()[0]:.2f}")
        for path in args.paths.replace("AUDIT", str(audit)).split():
            request(base + path, t)
            c0, w0 = cpu_seconds(server.pid), time.perf_counter()
            size = 0
            for _ in range(args.views):
                size = len(request(base + path, t)[1])
            c1, w1 = cpu_seconds(server.pid), time.perf_counter()
            print(f"{path:32s} CPU {1000 * (c1 - c0) / args.views:6.2f} ms/view  "
                  f"wall {1000 * (w1 - w0) / args.views:6.2f} ms/view  {size:,} bytes")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
