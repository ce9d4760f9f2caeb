#!/usr/bin/env python3
"""What a data scientist would run instead of fairseg's audit, on the same data.

    cargo bench --bench fairness_audit          # writes target/fairness_audit_bench.csv
    python3 tools/bench/fairness_audit.py target/fairness_audit_bench.csv

Per attribute (sex with missing as a group, age in the policy bands, origin, sex × age):
pandas crosstab, scipy chi2_contingency(correction=False), association(method="cramer"); the
correlation ratio of the numeric features and Cramér's V of the categorical one per attribute;
then, as a separate line, a numpy bootstrap of V (1000 multinomial tables) per attribute so the
resampling cost can be compared too.
"""

import sys
import time

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency
from scipy.stats.contingency import association

BANDS = [18, 25, 35, 45, 55, 65]
LABELS = ["<18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"]


def best_of(runs, f):
    best, out = float("inf"), None
    for _ in range(runs):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def prepare(df):
    sex = df["sex"].fillna("(missing)")
    age = pd.cut(df["age"], [-np.inf] + BANDS + [np.inf], right=False, labels=LABELS)
    age = age.cat.add_categories(["(missing)"]).fillna("(missing)").astype(str)
    origin = df["origin"].fillna("(missing)")
    return {"sex": sex, "age": age, "origin": origin, "sex × age": sex + " × " + age}


def tests(df, groups):
    out = {}
    for name, g in groups.items():
        t = pd.crosstab(df["segment"], g).to_numpy()
        t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
        stat, p, dof, _ = chi2_contingency(t, correction=False)
        out[name] = (stat, dof, p, association(t, method="cramer"))
    return out


def proxies(df, groups):
    out = {}
    for name in ("sex", "age", "origin"):
        g = groups[name]
        for feat in ("income", "tenure"):
            x = df[feat]
            total = ((x - x.mean()) ** 2).sum()
            grp = x.groupby(g)
            between = (grp.count() * (grp.mean() - x.mean()) ** 2).sum()
            out[(feat, name)] = np.sqrt(between / total)
        out[("channel", name)] = association(pd.crosstab(df["channel"], g).to_numpy(), method="cramer")
    return out


def bootstrap(df, groups, reps=1000, seed=1):
    rng = np.random.default_rng(seed)
    out = {}
    for name, g in groups.items():
        t = pd.crosstab(df["segment"], g).to_numpy()
        n = t.sum()
        draws = rng.multinomial(n, (t / n).ravel(), size=reps).reshape(reps, *t.shape)
        vs = []
        for d in draws:
            d = d[d.sum(axis=1) > 0][:, d.sum(axis=0) > 0]
            vs.append(association(d, method="cramer"))
        out[name] = np.percentile(vs, [2.5, 97.5])
    return out


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "target/fairness_audit_bench.csv"
    t_read, df = best_of(1, lambda: pd.read_csv(path, dtype={"sex": "string", "origin": "string", "channel": "string"}))
    print(f"python fairness audit, {len(df)} members (read csv {t_read * 1e3:.0f} ms, not counted)")
    t_prep, groups = best_of(3, lambda: prepare(df))
    t_tests, res = best_of(3, lambda: tests(df, groups))
    t_prox, prox = best_of(3, lambda: proxies(df, groups))
    t_boot, _ = best_of(1, lambda: bootstrap(df, groups))
    print(f"  fillna/cut/concat groups              {t_prep * 1e3:9.1f} ms")
    print(f"  crosstab + chi2_contingency + V x4   {t_tests * 1e3:9.1f} ms")
    print(f"  proxies (eta x2, V x1) x3 attributes {t_prox * 1e3:9.1f} ms")
    print(f"  total without resampling             {(t_prep + t_tests + t_prox) * 1e3:9.1f} ms")
    print(f"  numpy bootstrap of V, 1000 x4        {t_boot * 1e3:9.1f} ms")
    print()
    print(f"  {'attribute':<10} {'chi2':>12} {'dof':>4} {'p':>10} {'V':>8}")
    for name, (stat, dof, p, v) in res.items():
        print(f"  {name:<10} {stat:>12.4f} {dof:>4} {p:>10.3e} {v:>8.5f}")
    for (feat, name), v in prox.items():
        print(f"  proxy {feat:<8} ~ {name:<7} = {v:.5f}")


if __name__ == "__main__":
    main()
