#!/usr/bin/env python3
"""The consent page (`/consent`, a compliance officer) at N customers: its first view after a
start, the next, and the first view after each of two consent events recorded now through the
API (what a busy preference centre does all day).

The page shows each purpose's counts at twelve month ends and now, and the consent-selection
test at the same instants. A consent event recorded now changes only "now": the month ends are
kept per process and only the last instant is counted again.

Works on a copy of the dashboards demo database (`tools/bench/dashboards.py` builds it; the
copy is deleted after), so the demo itself is not changed.

    python3 tools/bench/consent_page.py [--customers 1000000]
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from dashboards import demo_database, request, start_server, token  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=200000)
    args = parser.parse_args()
    demo = demo_database(args.customers, reuse=True)
    users = {u["role"]: u for u in demo["users"]}
    with tempfile.TemporaryDirectory(dir=os.path.dirname(demo["database_path"])) as tmp:
        db = os.path.join(tmp, "consent-page.db")
        shutil.copy(demo["database_path"], db)
        server, base = start_server(db)
        try:
            bearer = token(base, users["compliance"])

            def view(label):
                started = time.perf_counter()
                request(base + "/consent", bearer)
                print(f"{label:32s} {time.perf_counter() - started:8.3f} s", flush=True)

            view("first view after the start")
            view("next view")
            for n, status in enumerate(["withdrawn", "granted"]):
                status_code, _ = request(
                    base + "/api/v1/consents",
                    bearer,
                    {"customer_id": "C000123", "purpose": "segmentation", "status": status},
                )
                assert status_code == 201, status_code
                view(f"after consent event {n + 1} (now)")
                view("next view")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
