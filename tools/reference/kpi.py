#!/usr/bin/env python3
"""Reference values for fairseg's `kpi` module.

Writes into tests/fixtures/reference/kpi/:
  ks.json     scipy.stats.ks_2samp (method="auto"), scipy.stats.kstwo.sf and
              scipy.special.smirnov, with cases chosen to hit every branch scipy takes
  psi.json    population stability index with decile bins (numpy), and PSI over segment shares
  cdnow.json  monthly KPIs of the real CDNOW transactions (pandas), January 1997 to June 1998

Run from the repository root:  python3 tools/reference/kpi.py
(scipy 1.17, numpy 2.4, pandas 3.0 were used for the committed files.)
"""

import json
import math
import os

import numpy as np
import pandas as pd
import scipy
from scipy import special, stats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "reference", "kpi")
EPSILON = 1e-4  # floor on bin shares in PSI, as DriftThresholds::default()


def generated(n, offset=0.0, scale=1.0, curve=0.0):
    """offset + scale*u + curve*u*u with u = i/n: bit-identical in numpy and Rust."""
    u = np.arange(n, dtype=np.float64) / n
    return offset + scale * u + curve * (u * u)


def ks_branch(n1, n2, d):
    """Which scipy code path produces the p-value (for coverage, mirrors _kolmogn)."""
    if max(n1, n2) <= 10000:
        return "exact-square" if n1 == n2 else "exact-inside"
    m, n = max(n1, n2), min(n1, n2)
    en = int(np.round(m * n / (m + n)))
    t = en * d
    if d <= 0.5 / en:
        return "asymp-below-support"
    if t <= 1:
        return "asymp-ruben-gambino-low"
    if t >= en - 1:
        return "asymp-ruben-gambino-high"
    if d >= 0.5:
        return "asymp-smirnov-x>=0.5"
    nxx = t * d
    if en <= 140:
        if nxx <= 0.754693:
            return "asymp-n<=140-durbin"
        if nxx <= 4:
            return "asymp-n<=140-pomeranz"
        return "asymp-n<=140-smirnov"
    if nxx >= 370:
        return "asymp-zero"
    if nxx >= 2.2:
        return "asymp-smirnov"
    if en <= 100000 and en * d**1.5 <= 1.4:
        return "asymp-durbin"
    return "asymp-pelz-good"


def ks_cases():
    rng = np.random.default_rng(20240601)
    cases = []

    def add(name, a=None, b=None, gen_a=None, gen_b=None):
        full = lambda g: None if g is None else {"offset": 0.0, "scale": 1.0, "curve": 0.0, **g}
        gen_a, gen_b = full(gen_a), full(gen_b)
        xa = np.asarray(a, dtype=float) if a is not None else generated(**gen_a)
        xb = np.asarray(b, dtype=float) if b is not None else generated(**gen_b)
        r = stats.ks_2samp(xa, xb)
        branch = ks_branch(len(xa), len(xb), float(r.statistic))
        case = {
            "name": f"{name} [{branch}]",
            "statistic": float(r.statistic),
            "pvalue": float(r.pvalue),
            "exact": branch.startswith("exact"),
        }
        if a is not None:
            case["a"] = [float(v) for v in xa]
        else:
            case["gen_a"] = gen_a
        if b is not None:
            case["b"] = [float(v) for v in xb]
        else:
            case["gen_b"] = gen_b
        cases.append(case)
        return branch

    add("tiny", a=[1.0, 2.0, 3.0], b=[1.5, 2.5])
    add("small equal n", a=rng.normal(size=20), b=rng.normal(0.8, 1.0, size=20))
    add("small unequal n", a=rng.normal(size=7), b=rng.normal(0.3, 2.0, size=13))
    add("integer ties", a=rng.integers(0, 5, size=30), b=rng.integers(0, 7, size=45))
    add("one value each", a=[0.0], b=[1.0])
    add("medium unequal, small shift", a=rng.normal(size=500), b=rng.normal(0.2, 1.0, size=800))
    add("medium, tiny p", a=rng.exponential(size=300), b=rng.exponential(3.0, size=700))
    add("exact square n=10000", gen_a={"n": 10000, "scale": 1.0}, gen_b={"n": 10000, "scale": 1.02})
    add("exact inside 10000 vs 7001", gen_a={"n": 10000, "scale": 1.0},
        gen_b={"n": 7001, "scale": 1.01, "offset": -0.004})
    add("exact inside 1 vs 10000", a=[0.5], gen_b={"n": 10000, "scale": 1.0})
    add("exact inside 9999 vs 10000, large d", gen_a={"n": 9999, "scale": 1.0},
        gen_b={"n": 10000, "scale": 1.0, "offset": 0.3})
    add("exact inside 3 vs 7, disjoint", a=[5.0, 6.0, 7.0], b=[0.0, 1.0, 2.0, 3.0, 4.0, 8.5, 9.0])
    add("exact inside 2 vs 5000, identical support", a=[0.25, 0.75], gen_b={"n": 5000, "scale": 1.0})
    add("asymp n<=140 durbin", gen_a={"n": 50, "scale": 1.0}, gen_b={"n": 20000, "scale": 1.1})
    add("asymp n<=140 pomeranz", gen_a={"n": 100, "scale": 1.0}, gen_b={"n": 20000, "scale": 1.15})
    add("asymp n<=140 smirnov", gen_a={"n": 100, "scale": 1.0}, gen_b={"n": 20000, "scale": 1.6})
    add("asymp x>=0.5", gen_a={"n": 60, "scale": 1.0}, gen_b={"n": 20000, "scale": 3.0})
    add("asymp smirnov", gen_a={"n": 15000, "scale": 1.0}, gen_b={"n": 16000, "scale": 1.04})
    add("asymp pelz-good", gen_a={"n": 15000, "scale": 1.0}, gen_b={"n": 16000, "scale": 1.012})
    add("asymp durbin", gen_a={"n": 15000, "scale": 1.0}, gen_b={"n": 16000, "scale": 1.0, "offset": 0.0021})
    add("asymp large n pelz-good", gen_a={"n": 250000, "scale": 1.0},
        gen_b={"n": 260000, "scale": 1.0, "offset": 0.003})
    add("asymp zero", gen_a={"n": 15000, "scale": 1.0}, gen_b={"n": 16000, "scale": 1.0, "offset": 0.3})
    add("asymp curved", gen_a={"n": 12000, "scale": 1.0, "curve": 0.05},
        gen_b={"n": 30000, "scale": 1.0})
    add("asymp random vs grid", a=rng.uniform(size=400), gen_b={"n": 12000, "scale": 1.0})
    return cases


def kstwo_cases():
    out = []
    for n in [1, 2, 5, 10, 50, 100, 140, 141, 500, 5000, 100000, 200000]:
        for x in [0.3 / n, 0.7 / n, 1.0 / n, 1.5 / n, 0.001, 0.004, 0.01, 0.03, 0.05, 0.1,
                  0.2, 0.3, 0.45, 0.5, 0.6, 0.9, 0.99]:
            if not 0 < x < 1:
                continue
            out.append({"n": n, "x": x, "sf": float(stats.kstwo.sf(x, n))})
    return out


def smirnov_cases():
    out = []
    for n in [1, 2, 5, 50, 140, 1000, 100000, 1000000, 2000000]:
        for x in [0.0005, 0.002, 0.01, 0.05, 0.1, 0.3, 0.5, 0.75, 0.95]:
            out.append({"n": n, "x": x, "sf": float(special.smirnov(n, x))})
    return out


def psi_numpy(reference, current, bins=10):
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    edges = np.unique(np.quantile(reference, np.arange(1, bins) / bins))

    def shares(x):
        idx = np.searchsorted(edges, x, side="left")  # right-closed bins (e[i-1], e[i]]
        return np.bincount(idx, minlength=len(edges) + 1) / len(x)

    r = np.maximum(shares(reference), EPSILON)
    c = np.maximum(shares(current), EPSILON)
    return edges, float(np.sum((c - r) * np.log(c / r)))


def psi_from_counts(ref_counts, cur_counts):
    r = np.maximum(np.asarray(ref_counts, float) / np.sum(ref_counts), EPSILON)
    c = np.maximum(np.asarray(cur_counts, float) / np.sum(cur_counts), EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_cases():
    rng = np.random.default_rng(7)
    raw = [
        ("normal, no drift", rng.normal(size=400), rng.normal(size=300)),
        ("normal, mean shift", rng.normal(size=400), rng.normal(0.5, 1.0, size=350)),
        ("lognormal spend, scale change", rng.lognormal(3, 1, size=500), rng.lognormal(3.3, 1.2, size=500)),
        ("recency days with ties", rng.integers(0, 30, size=300), rng.integers(5, 40, size=250)),
        ("current all in the top bin", rng.normal(size=200), rng.normal(10.0, 0.1, size=50)),
        ("heavily tied reference", np.concatenate([np.zeros(150), rng.integers(1, 4, size=50)]),
         rng.integers(0, 4, size=120)),
    ]
    out = []
    for name, ref, cur in raw:
        edges, value = psi_numpy(ref, cur)
        out.append({
            "name": name,
            "reference": [float(v) for v in ref],
            "current": [float(v) for v in cur],
            "edges": [float(e) for e in edges],
            "psi": value,
        })
    shifts = [
        ([500, 300, 200], [480, 310, 210]),
        ([500, 300, 200], [200, 300, 500]),
        ([100, 0, 50, 850], [90, 10, 0, 900]),
        ([1, 1, 1, 1, 1, 1, 1, 1], [2, 1, 1, 1, 1, 1, 1, 0]),
    ]
    shift_out = [{"reference": r, "current": c, "psi": psi_from_counts(r, c)} for r, c in shifts]
    return out, shift_out


def cdnow():
    path = os.path.join(ROOT, "tests", "fixtures", "cdnow", "CDNOW_master.txt")
    df = pd.read_csv(path, sep=r"\s+", header=0,
                     names=["customer_id", "date", "number_of_cds", "dollar_value"],
                     dtype={"customer_id": np.int64, "date": str})
    df["month"] = pd.to_datetime(df["date"], format="%Y%m%d").dt.to_period("M")
    first_month = df.groupby("customer_id")["month"].min()
    n_customers = int(df["customer_id"].nunique())
    months = pd.period_range("1997-01", "1998-06", freq="M")
    active_sets = {m: set(df.loc[df["month"] == m, "customer_id"]) for m in months}
    active_sets[months[0] - 1] = set(df.loc[df["month"] == months[0] - 1, "customer_id"])
    rows = []
    for m in months:
        in_m = df[df["month"] == m]
        active = in_m["customer_id"].nunique()
        revenue = float(in_m["dollar_value"].sum())
        orders = len(in_m)  # no order id in CDNOW: one order per row
        per_customer = in_m.groupby("customer_id").size()
        prev = active_sets[m - 1]
        retained = len(prev & active_sets[m])
        retention = retained / len(prev) if prev else None
        rows.append({
            "month": str(m),
            "segment_size": n_customers,
            "active_customers": int(active),
            "new_customers": int((first_month == m).sum()),
            "revenue": revenue,
            "orders": int(orders),
            "average_order_value": revenue / orders if orders else None,
            "repeat_purchase_rate": float((per_customer >= 2).sum() / active) if active else None,
            "retention_rate": retention,
            "churn_rate": None if retention is None else 1.0 - retention,
        })
    return {"customers": n_customers, "transactions": int(len(df)), "months": rows}


def main():
    os.makedirs(OUT, exist_ok=True)
    ks = {"scipy": scipy.__version__, "ks_2samp": ks_cases(), "kstwo_sf": kstwo_cases(),
          "smirnov": smirnov_cases()}
    branches = sorted({c["name"].split("[")[1].rstrip("]") for c in ks["ks_2samp"]})
    print("ks_2samp branches covered:", branches)
    psi, shift = psi_cases()
    with open(os.path.join(OUT, "ks.json"), "w") as f:
        json.dump(ks, f)
    with open(os.path.join(OUT, "psi.json"), "w") as f:
        json.dump({"epsilon": EPSILON, "bins": 10, "psi": psi, "segment_shift": shift}, f)
    with open(os.path.join(OUT, "cdnow.json"), "w") as f:
        json.dump(cdnow(), f, indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
