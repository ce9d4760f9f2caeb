#!/usr/bin/env python3
"""pandas counterpart of benches/consent_state.rs: the consent state of 1,000,000 customers
at one instant, from the same SQLite file the Rust bench wrote (default
target/consent-bench/consent.db, or $CONSENT_BENCH_DIR / the first argument).

What a data team would do instead of fairseg: read the ledger table into pandas, keep the
latest event per customer and purpose at or before the instant, classify it (granted /
withdrawn / expired, with the policy's validity periods) and count; list the customers whose
consent permits processing. Times the read and the computation separately (median of 5 runs
each) and checks that the figures agree with rust_result.json.

Run from the repository root after the Rust bench:  python3 tools/bench/consent_state.py
"""

import json
import os
import sqlite3
import statistics
import sys
import time
import tomllib

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPEATS = 5


def timed(f):
    times, result = [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main():
    directory = (sys.argv[1] if len(sys.argv) > 1 else
                 os.environ.get("CONSENT_BENCH_DIR", os.path.join(ROOT, "target", "consent-bench")))
    with open(os.path.join(directory, "rust_result.json")) as f:
        rust = json.load(f)
    with open(os.path.join(ROOT, "policies", "policy.toml"), "rb") as f:
        purposes = tomllib.load(f)["purposes"]
    at = pd.Timestamp(rust["at"])
    db = sqlite3.connect(os.path.join(directory, "consent.db"))

    def read():
        events = pd.read_sql_query(
            "SELECT id, customer_id, purpose, status, recorded_at FROM consent_events", db)
        events["recorded_at"] = pd.to_datetime(events["recorded_at"], format="ISO8601")
        ids = pd.read_sql_query("SELECT id FROM customers", db)["id"].to_numpy()
        return events, ids

    read_time, (events, ids) = timed(read)
    print(f"pandas read: {len(events)} events, {len(ids)} customers, median {read_time:.3f} s")

    def compute():
        known = events[events["recorded_at"] <= at]
        latest = (known.sort_values(["purpose", "customer_id", "recorded_at", "id"])
                  .drop_duplicates(["purpose", "customer_id"], keep="last"))
        out = {}
        for name, spec in purposes.items():
            mine = latest[latest["purpose"] == name]
            granted = mine["status"] == "granted"
            lapsed = mine["recorded_at"] + pd.Timedelta(days=spec["consent_validity_days"]) <= at
            tally = {
                "granted": int((granted & ~lapsed).sum()),
                "withdrawn": int((~granted).sum()),
                "expired": int((granted & lapsed).sum()),
                "never_asked": int(len(ids) - len(mine)),
            }
            if spec["legal_basis"] == "consent":
                active = np.sort(mine.loc[granted & ~lapsed, "customer_id"].to_numpy())
            else:
                withdrawn = mine.loc[~granted, "customer_id"].to_numpy()
                active = np.sort(ids[~np.isin(ids, withdrawn)])
            out[name] = (tally, active)
        return out

    compute_time, result = timed(compute)
    print(f"pandas states of all {len(purposes)} purposes at {rust['at']}: median {compute_time:.3f} s "
          f"(read + compute {read_time + compute_time:.3f} s)")
    ok = True
    for name, (tally, active) in result.items():
        same = (tally == rust[f"tally_{name}"]
                and len(active) == rust[f"active_{name}"]["count"]
                and int(active.sum()) == rust[f"active_{name}"]["id_sum"])
        ok &= same
        print(f"  {name}: {tally}, {len(active)} active — {'agrees' if same else 'DIFFERS'} with fairseg")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
