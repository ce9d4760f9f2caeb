#!/usr/bin/env python3
"""pandas counterpart of benches/kpi.rs: every KPI for December 2024, for `all` and 8
segments, over the same 1,000,000 customers x 10,000,000 transactions.

Reads the raw little-endian columns that `cargo bench --bench kpi` writes (default
target/kpi-bench, or $KPI_BENCH_DIR / the first argument), times the computation (not the
file read), and checks that the numbers agree with the Rust result in rust_result.json.

Run from the repository root after the Rust bench:  python3 tools/bench/kpi.py
"""

import json
import os
import sys
import time

import numpy as np
import pandas as pd
from scipy import stats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARGIN, MAX_LIFETIME = 1.0, 60.0  # ClvParams::default()


def load(directory):
    return pd.DataFrame({
        "customer": np.fromfile(os.path.join(directory, "customer.u32"), dtype="<u4"),
        "day": np.fromfile(os.path.join(directory, "day.i32"), dtype="<i4"),
        "amount": np.fromfile(os.path.join(directory, "amount.f64"), dtype="<f8"),
    }), np.fromfile(os.path.join(directory, "segment.u8"), dtype="u1")


def ratio(num, den):
    return float(num) / float(den) if den else None


def kpis(customers, active, active_prev, retained, new, orders, repeaters, revenue):
    churn = ratio(active_prev - retained, active_prev)
    if active == 0 or active_prev == 0:
        clv = None
    else:
        lifetime = MAX_LIFETIME if churn * MAX_LIFETIME <= 1 else 1 / churn
        clv = revenue / active * MARGIN * lifetime
    return {
        "segment_size": float(customers), "active_customers": float(active),
        "new_customers": float(new), "revenue": float(revenue), "orders": float(orders),
        "average_order_value": ratio(revenue, orders),
        "revenue_per_customer": ratio(revenue, active),
        "purchase_frequency": ratio(orders, active),
        "repeat_purchase_rate": ratio(repeaters, active),
        "retention_rate": ratio(retained, active_prev), "churn_rate": churn,
        "customer_lifetime_value": clv,
    }


def evaluate(df, segment, start, end, prev_start):
    """The way a data scientist would write it: group-bys on a DataFrame."""
    n_segments = int(segment.max()) + 1
    first = df.groupby("customer")["day"].min()
    in_p = df[(df["day"] >= start) & (df["day"] < end)]
    in_prev = df[(df["day"] >= prev_start) & (df["day"] < start)]
    per_customer = in_p.groupby("customer").agg(orders=("amount", "size"), revenue=("amount", "sum"))
    per_customer["segment"] = segment[per_customer.index.to_numpy()]
    per_customer["new"] = first.reindex(per_customer.index).to_numpy() >= start
    prev_customers = pd.Index(in_prev["customer"].unique())
    per_customer["retained"] = per_customer.index.isin(prev_customers)
    per_customer["repeater"] = per_customer["orders"] >= 2
    by_seg = per_customer.groupby("segment").agg(
        active=("orders", "size"), orders=("orders", "sum"), revenue=("revenue", "sum"),
        new=("new", "sum"), retained=("retained", "sum"), repeaters=("repeater", "sum"))
    prev_by_seg = pd.Series(segment[prev_customers.to_numpy()]).value_counts()
    sizes = np.bincount(segment, minlength=n_segments)
    out = {}
    rows = [("all", None)] + [(f"segment_{s}", s) for s in range(n_segments)]
    for name, s in rows:
        if s is None:
            agg = by_seg.sum()
            customers, active_prev = len(segment), len(prev_customers)
        else:
            agg = by_seg.loc[s] if s in by_seg.index else pd.Series(0, index=by_seg.columns)
            customers, active_prev = sizes[s], int(prev_by_seg.get(s, 0))
        out[name] = kpis(customers, int(agg["active"]), active_prev, int(agg["retained"]),
                         int(agg["new"]), int(agg["orders"]), int(agg["repeaters"]),
                         float(agg["revenue"]))
    return out


def psi(reference, current, bins=10, epsilon=1e-4):
    edges = np.unique(np.quantile(reference, np.arange(1, bins) / bins))

    def shares(x):
        return np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1) / len(x)

    r = np.maximum(shares(reference), epsilon)
    c = np.maximum(shares(current), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def main():
    directory = (sys.argv[1] if len(sys.argv) > 1
                 else os.environ.get("KPI_BENCH_DIR", os.path.join(ROOT, "target", "kpi-bench")))
    t = time.perf_counter()
    df, segment = load(directory)
    load_s = time.perf_counter() - t
    start = (pd.Timestamp("2024-12-01") - pd.Timestamp("1970-01-01")).days
    end = (pd.Timestamp("2025-01-01") - pd.Timestamp("1970-01-01")).days
    prev_start = (pd.Timestamp("2024-11-01") - pd.Timestamp("1970-01-01")).days
    times = []
    for _ in range(3):
        t = time.perf_counter()
        result = evaluate(df, segment, start, end, prev_start)
        times.append(time.perf_counter() - t)
    compute_s = sorted(times)[1]
    print(f"pandas {pd.__version__}: {len(segment)} customers, {len(df)} transactions")
    print(f"{'step (median of 3)':<52} {'seconds':>10}")
    print(f"{'read raw columns':<52} {load_s:>10.3f}")
    print(f"{'evaluate December 2024, all + 8 segments':<52} {compute_s:>10.3f}")

    amount = df["amount"].to_numpy()
    reference, current = amount[:1_000_000], amount[1_000_000:2_000_000] * 1.02
    times = []
    for _ in range(3):
        t = time.perf_counter()
        drift_psi = psi(reference, current)
        ks = stats.ks_2samp(reference, current)
        times.append(time.perf_counter() - t)
    drift_s = sorted(times)[1]
    print(f"{'drift of one feature, 1M vs 1M (numpy PSI + scipy KS)':<52} {drift_s:>10.3f}")
    print(f"  psi {drift_psi:.6f}, ks D {ks.statistic:.6f}, p {ks.pvalue:e}")

    rust_path = os.path.join(directory, "rust_result.json")
    if os.path.exists(rust_path):
        with open(rust_path) as f:
            rust = json.load(f)
        worst = 0.0
        for seg in rust["segments"]:
            for kpi, ours in seg["values"].items():
                theirs = result[seg["segment"]][kpi]
                if (ours is None) != (theirs is None):
                    raise SystemExit(f"{seg['segment']} {kpi}: rust {ours}, pandas {theirs}")
                if ours is not None and ours != theirs:
                    worst = max(worst, abs(ours - theirs) / max(abs(theirs), 1e-300))
        print(f"max relative difference from the Rust result over all KPIs and segments: {worst:.2e}")
        d = rust["drift"]
        for name, ours, theirs in [("psi", d["psi"], drift_psi),
                                   ("ks statistic", d["ks_statistic"], float(ks.statistic)),
                                   ("ks p-value", d["ks_pvalue"], float(ks.pvalue))]:
            rel = abs(ours - theirs) / max(abs(theirs), 1e-300)
            print(f"drift {name}: rust {ours:.12e}, python {theirs:.12e}, relative difference {rel:.1e}")
            worst = max(worst, rel)
        if worst > 1e-9:
            raise SystemExit("Rust and pandas disagree")
        print(f"Rust time for the same KPI step: {rust['seconds']['total']:.3f} s "
              f"(validate + first purchase + evaluate); drift {rust['seconds']['drift']:.3f} s")


if __name__ == "__main__":
    main()
