"""What a data scientist would use instead of fairseg's k-means, on the same data.

Counterpart of benches/kmeans.rs. Both read the population written by kmeans_data.py
(1,000,000 x 8 standardised, overlapping clusters) from /tmp/fairseg_kmeans_1m.f64.

Measures:
1. scikit-learn `KMeans(n_clusters=8, init="k-means++", n_init=1, algorithm="lloyd",
   random_state=seed).fit(X)` for a few seeds: time, iterations, inertia;
2. the same from fixed initial centres (scikit-learn's own k-means++ for seed 0, written to
   /tmp/fairseg_kmeans_1m_init.f64 so the Rust bench starts from the very same centres);
3. the pipeline a data scientist would write: pandas reads the 1M x 8 table from SQLite,
   StandardScaler, the same KMeans fit, 1M memberships written back to SQLite with to_sql.

    python3 tools/bench/kmeans.py            # then: cargo bench --bench kmeans
"""

import json
import os
import sqlite3
import sys
import time

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(__file__))
from kmeans_data import ensure  # noqa: E402

BASE = "/tmp/fairseg_kmeans_1m"
K = 8
SEEDS = tuple(range(10))


def fit(x, seed, init="k-means++"):
    t = time.perf_counter()
    km = KMeans(n_clusters=K, init=init, n_init=1, algorithm="lloyd", random_state=seed).fit(x)
    return time.perf_counter() - t, km


def make_sqlite(x, path):
    """The population as a customers table (setup, not timed as part of the pipeline)."""
    if os.path.exists(path):
        os.remove(path)
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    df.insert(0, "customer_id", np.arange(1, x.shape[0] + 1))
    with sqlite3.connect(path) as conn:
        df.to_sql("customers", conn, index=False)


def pipeline(path, seed):
    stages = {}
    t0 = time.perf_counter()
    with sqlite3.connect(path) as conn:
        df = pd.read_sql("SELECT * FROM customers", conn)
        stages["load"] = time.perf_counter() - t0
        t = time.perf_counter()
        features = [c for c in df.columns if c != "customer_id"]
        x = StandardScaler().fit_transform(df[features].to_numpy())
        stages["preprocess"] = time.perf_counter() - t
        t = time.perf_counter()
        km = KMeans(n_clusters=K, init="k-means++", n_init=1, algorithm="lloyd", random_state=seed).fit(x)
        stages["cluster"] = time.perf_counter() - t
        t = time.perf_counter()
        out = pd.DataFrame({"customer_id": df["customer_id"], "segment": km.labels_})
        out.to_sql("memberships", conn, index=False, if_exists="replace")
        conn.commit()
        stages["persist"] = time.perf_counter() - t
    stages["total"] = time.perf_counter() - t0
    return stages


def main():
    x = ensure(1_000_000, BASE)
    print(f"data: {x.shape[0]} x {x.shape[1]} standardised, k = {K}")
    results = {"sklearn": []}
    print(f"{'what':<44}{'seconds':>9}{'iters':>7}{'inertia':>18}")
    for seed in SEEDS:
        dt, km = fit(x, seed)
        results["sklearn"].append({"seed": seed, "seconds": dt, "iterations": int(km.n_iter_), "inertia": float(km.inertia_)})
        print(f"{'sklearn KMeans fit, seed ' + str(seed):<44}{dt:>9.3f}{km.n_iter_:>7}{km.inertia_:>18.3f}")
    times = sorted(r["seconds"] for r in results["sklearn"])
    inertias = sorted(r["inertia"] for r in results["sklearn"])
    iters = sum(r["iterations"] for r in results["sklearn"])
    print(f"sklearn over {len(SEEDS)} seeds: median {times[len(times) // 2]:.3f}s, total {sum(times):.3f}s "
          f"for {iters} iterations ({1000 * sum(times) / iters:.1f} ms/iteration incl. init); "
          f"inertia median {inertias[len(inertias) // 2]:.3f}, best {inertias[0]:.3f}")
    init, _ = kmeans_plusplus(x, K, random_state=0)
    np.ascontiguousarray(init, dtype="<f8").tofile(BASE + "_init.f64")
    dt, km = fit(x, 0, init=init)
    results["sklearn_fixed_init"] = {"seconds": dt, "iterations": int(km.n_iter_), "inertia": float(km.inertia_)}
    print(f"{'sklearn KMeans fit, fixed init':<44}{dt:>9.3f}{km.n_iter_:>7}{km.inertia_:>18.3f}")
    db = BASE + ".sqlite"
    if not os.path.exists(db):
        make_sqlite(x, db)
    stages = pipeline(db, 0)
    results["pandas_pipeline"] = stages
    print("pandas + sklearn + SQLite pipeline: " + ", ".join(f"{k} {v:.3f}s" for k, v in stages.items()))
    with open(BASE + "_python.json", "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
