#!/usr/bin/env python3
"""Reference vectors for src/fairness: run once, commit the JSON.

    python3 tools/reference/fairness.py

Writes tests/fixtures/reference/fairness/*.json. Every value comes from scipy, statsmodels or
numpy (the bias-corrected Cramér's V by Bergsma's published formula, which no library ships).
"""

import json
import pathlib

import numpy as np
import scipy
import statsmodels
from scipy.optimize import brentq
from scipy.stats import chi2, chi2_contingency, ncx2
from scipy.stats.contingency import association
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests/fixtures/reference/fairness"
VERSIONS = {
    "numpy": np.__version__,
    "scipy": scipy.__version__,
    "statsmodels": statsmodels.__version__,
}


def write(name, cases):
    OUT.mkdir(parents=True, exist_ok=True)
    payload = {"generated_by": "tools/reference/fairness.py", "versions": VERSIONS, "cases": cases}
    (OUT / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")


def bergsma(stat, n, r, c):
    if n < 2:
        return None
    phi2 = max(0.0, stat / n - (r - 1) * (c - 1) / (n - 1))
    rt = r - (r - 1) ** 2 / (n - 1)
    ct = c - (c - 1) ** 2 / (n - 1)
    d = min(rt - 1, ct - 1)
    return float(np.sqrt(phi2 / d)) if d > 0 else None


def chi_case(name, table):
    t = np.asarray(table, dtype=np.int64)
    keep_r = t.sum(axis=1) > 0
    keep_c = t.sum(axis=0) > 0
    red = t[keep_r][:, keep_c]
    case = {
        "name": name,
        "counts": t.tolist(),
        "dropped_rows": [int(i) for i in np.flatnonzero(~keep_r)],
        "dropped_cols": [int(i) for i in np.flatnonzero(~keep_c)],
    }
    n = int(red.sum())
    if n == 0:
        case["not_testable"] = "empty"
        return case
    if red.shape[0] < 2:
        case["not_testable"] = "single_segment"
        return case
    if red.shape[1] < 2:
        case["not_testable"] = "single_group"
        return case
    res = chi2_contingency(red, correction=False)
    stat, p, dof, expected = res[0], res[1], res[2], res[3]
    r, c = red.shape
    case.update(
        {
            "statistic": float(stat),
            "dof": int(dof),
            "p_value": float(p),
            "n": n,
            "small_expected_fraction": float((expected < 5).mean()),
            "cramers_v": float(association(red, method="cramer")),
            "cramers_v_corrected": bergsma(float(stat), n, r, c),
        }
    )
    return case


def chi_cases():
    rng = np.random.default_rng(20240601)
    cases = [
        chi_case("2x2 textbook", [[10, 20], [30, 25]]),
        chi_case("3x4 moderate", [[120, 90, 40, 10], [80, 100, 60, 20], [30, 50, 90, 70]]),
        chi_case("independent exactly", [[10, 20, 30], [20, 40, 60]]),
        chi_case("very small counts", [[1, 0, 2], [0, 3, 1]]),
        chi_case("empty row", [[5, 7, 9], [0, 0, 0], [8, 2, 6]]),
        chi_case("empty column", [[5, 0, 9], [4, 0, 1], [8, 0, 6]]),
        chi_case("single segment", [[5, 7, 9]]),
        chi_case("single group", [[5], [7], [9]]),
        chi_case("single group after dropping", [[5, 0], [7, 0]]),
        chi_case("single segment after dropping", [[0, 0], [3, 4]]),
        chi_case("all zero", [[0, 0], [0, 0]]),
        chi_case("one member", [[1, 0], [0, 0]]),
        chi_case("huge n tiny effect", [[500500, 499500], [499500, 500500]]),
        chi_case("huge n strong effect", [[600000, 400000], [400000, 600000]]),
        chi_case("two members diagonal", [[1, 0], [0, 1]]),
        chi_case("8 segments x 5 groups planted",
            [[310, 280, 190, 95, 120], [600, 590, 410, 200, 180], [290, 310, 200, 120, 90],
             [450, 420, 300, 160, 150], [140, 160, 100, 40, 70], [320, 280, 210, 90, 100],
             [590, 610, 390, 210, 190], [300, 290, 180, 110, 110]]),
    ]
    for i in range(40):
        r = int(rng.integers(2, 9))
        c = int(rng.integers(2, 9))
        scale = float(rng.choice([0.5, 3, 20, 200, 5000]))
        lam = rng.gamma(1.0, scale, size=(r, c))
        t = rng.poisson(lam)
        if i % 7 == 0:
            t[int(rng.integers(0, r))] = 0
        if i % 11 == 0:
            t[:, int(rng.integers(0, c))] = 0
        cases.append(chi_case(f"random {i} ({r}x{c}, scale {scale})", t.tolist()))
    return cases


def sf_cases():
    out = []
    for x, dof in [
        (0.5, 1), (3.841458820694124, 1), (10.0, 1), (50.0, 1), (200.0, 1),
        (1.0, 2), (5.991464547107979, 2), (30.0, 4), (12.0, 7), (7.0, 7), (100.0, 28),
        (41.2, 3), (1e-6, 5), (0.01, 20), (300.0, 35), (1000.0, 35), (60.0, 60),
        (2.0, 60), (150.0, 120), (700.0, 3), (1200.0, 10),
    ]:
        out.append({"x": x, "dof": dof, "sf": float(chi2.sf(x, dof))})
    return out


def bh_cases():
    rng = np.random.default_rng(7)
    lists = [
        [0.01, 0.04, 0.03, 0.005],
        [0.5],
        [0.001, 0.001, 0.2, 0.2, 0.9],
        [1.0, 1.0, 0.99],
        [0.04, 0.045, 0.05, 0.01, 0.0, 0.3, 0.7],
        rng.uniform(size=25).tolist(),
        (rng.uniform(size=12) ** 4).tolist(),
    ]
    return [
        {"p": [float(v) for v in p], "adjusted": multipletests(p, method="fdr_bh")[1].tolist()}
        for p in lists
    ]


def wilson_cases():
    out = []
    for count, nobs, alpha in [
        (0, 10, 0.05), (10, 10, 0.05), (1, 10, 0.05), (5, 10, 0.05), (3, 7, 0.01),
        (250, 1000, 0.05), (1, 1, 0.05), (123456, 1000000, 0.05), (2, 3, 0.1),
        (49, 50, 0.05), (7, 1000, 0.001),
    ]:
        lo, hi = proportion_confint(count, nobs, alpha=alpha, method="wilson")
        out.append({"count": count, "nobs": nobs, "alpha": alpha, "lower": float(lo),
                    "upper": float(hi)})
    return out


def eta(values, groups):
    values = np.asarray(values, dtype=float)
    groups = np.asarray(groups)
    mean = values.mean()
    ss_total = ((values - mean) ** 2).sum()
    if ss_total == 0:
        return None
    ss_between = sum(
        (groups == g).sum() * (values[groups == g].mean() - mean) ** 2 for g in np.unique(groups)
    )
    return float(np.sqrt(ss_between / ss_total))


def eta_cases():
    rng = np.random.default_rng(11)
    cases = [
        {"values": [1.0, 2.0, 3.0, 4.0], "groups": [0, 0, 1, 1]},
        {"values": [5.0, 5.0, 5.0], "groups": [0, 1, 1]},
        {"values": [1.0, 2.0, 1.0, 2.0], "groups": [0, 0, 1, 1]},
        {"values": [3.0, 1.0, 4.0, 1.0, 5.0], "groups": [0, 0, 0, 0, 0]},
        {"values": [1e9 + 1.0, 1e9 + 2.0, 1e9 + 4.0, 1e9 + 8.0], "groups": [0, 1, 0, 1]},
    ]
    for k in (2, 3, 6):
        g = rng.integers(0, k, size=500)
        v = rng.normal(size=500) + 0.4 * g
        cases.append({"values": v.tolist(), "groups": g.tolist()})
    for c in cases:
        c["n_groups"] = int(max(c["groups"]) + 1)
        c["eta"] = eta(c["values"], c["groups"])
    return cases



def ncx2_cases():
    out = []
    for x, dof, lam in [
        (0.5, 1, 0.3), (3.84, 1, 2.0), (10.0, 1, 10.0), (1.0, 2, 0.01), (7.0, 7, 3.5),
        (30.0, 4, 20.0), (12.0, 21, 40.0), (100.0, 28, 60.0), (2.0, 60, 1.0),
        (1200.0, 10, 1000.0), (9000.0, 49, 8500.0), (4.1e5, 7, 4.0e5), (3.9e5, 7, 4.0e5),
        (1e-3, 3, 0.5), (50.0, 5, 200.0), (700.0, 3, 20.0),
    ]:
        out.append({"x": x, "dof": dof, "lambda": lam, "cdf": float(ncx2.cdf(x, dof, lam))})
    return out


def lambda_bound(stat, dof, target):
    """The noncentrality at which `stat` is the `target` quantile (0 if even 0 is too much)."""
    f = lambda lam: float(ncx2.cdf(stat, dof, lam)) - target
    if chi2.cdf(stat, dof) <= target:
        return 0.0
    hi = max(stat, dof, 1.0)
    while f(hi) > 0:
        hi *= 2
    return brentq(f, 0.0, hi, xtol=1e-13, rtol=1e-15, maxiter=500)


def v_interval_cases():
    """Test-inversion intervals of the bias-corrected V, on the chi-square cases' tables."""
    out = []
    for case in chi_cases():
        if "statistic" not in case:
            continue
        t = np.asarray(case["counts"])
        red = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
        r, c = red.shape
        n, stat, dof = case["n"], case["statistic"], case["dof"]
        if bergsma(stat, n, r, c) is None:
            continue
        lo = lambda_bound(stat, dof, 0.975)
        hi = lambda_bound(stat, dof, 0.025)
        out.append({
            "name": case["name"], "counts": case["counts"], "statistic": stat, "dof": dof,
            "n": n, "rows": r, "cols": c, "level": 0.95,
            "lambda_lower": lo, "lambda_upper": hi,
            "v": bergsma(stat, n, r, c),
            # V is at most 1: the upper end is capped there (or at the point, if a tiny
            # table's correction pushes the point above 1).
            "v_lower": bergsma(lo + dof, n, r, c),
            "v_upper": max(min(bergsma(hi + dof, n, r, c), 1.0), bergsma(stat, n, r, c)),
        })
    return out


def critical_cases():
    from scipy.stats import norm

    return [{"alpha": a, "z": float(norm.isf(a / 2))} for a in (0.05, 0.01, 0.1, 0.001, 0.2)]


def consent_selection_cases():
    """Consent status (row 0 consented, row 1 not) x groups of each attribute: chi-square
    without continuity correction, Bergsma's corrected V, BH across the attributes of a case,
    and each group's share of the consented against its share of all customers."""
    rng = np.random.default_rng(20261201)
    cases = []
    for case in range(25):
        attributes = []
        for a in range(int(rng.integers(1, 5))):
            k = int(rng.integers(2, 6))
            consent_rate = rng.uniform(0.2, 0.9, size=k) if case % 3 else np.full(k, 0.6)
            sizes = rng.integers(40, 600, size=k)
            consented = rng.binomial(sizes, consent_rate)
            consented = np.clip(consented, 10, sizes - 10)
            counts = np.array([consented, sizes - consented])
            stat, p, dof, _ = chi2_contingency(counts, correction=False)
            share_c = counts[0] / counts[0].sum()
            share_all = counts.sum(axis=0) / counts.sum()
            attributes.append({
                "counts": counts.tolist(),
                "statistic": float(stat),
                "p_value": float(p),
                "dof": int(dof),
                "cramers_v_corrected": bergsma(stat, int(counts.sum()), 2, k),
                "relative_difference": (share_c / share_all - 1).tolist(),
            })
        adjusted = multipletests([x["p_value"] for x in attributes], method="fdr_bh")[1]
        for x, q in zip(attributes, adjusted):
            x["p_value_adjusted"] = float(q)
        cases.append({"name": f"case{case}", "attributes": attributes})
    return cases


if __name__ == "__main__":
    write("chi_square", chi_cases())
    write("chi_square_sf", sf_cases())
    write("benjamini_hochberg", bh_cases())
    write("wilson", wilson_cases())
    write("correlation_ratio", eta_cases())
    write("normal_critical", critical_cases())
    write("noncentral_chi_square", ncx2_cases())
    write("cramers_v_interval", v_interval_cases())
    write("consent_selection", consent_selection_cases())
    print("wrote", OUT)
