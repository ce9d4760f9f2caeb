"""Shared data for the k-means benchmark (benches/kmeans.rs and tools/bench/kmeans.py).

A deliberately messy customer-like population: 1,000,000 rows x 8 features drawn from a
mixture of 8 anisotropic Gaussians whose means are close compared to their spreads, plus two
skewed (log-normal) amount-like columns and mixing weights that are far from equal. The
clusters overlap heavily, so Lloyd's algorithm needs many iterations (no toy blobs).

The columns are standardised (mean 0, population std 1, like StandardScaler) and written
row-major as little-endian float64 to `<out>.f64`, with a tiny JSON sidecar giving the shape.

    python3 tools/bench/kmeans_data.py [--n 1000000] [--out /tmp/fairseg_kmeans_1m]
"""

import argparse
import json
import os

import numpy as np


def make(n: int, seed: int = 20240607) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d, k = 8, 8
    means = rng.normal(0.0, 1.2, size=(k, d))
    weights = rng.dirichlet(np.full(k, 2.0))
    comp = rng.choice(k, size=n, p=weights)
    x = np.empty((n, d))
    for j in range(k):
        idx = np.flatnonzero(comp == j)
        a = rng.normal(0.0, 1.0, size=(d, d)) * 0.6
        cov = a @ a.T + np.diag(rng.uniform(0.3, 1.5, size=d))
        x[idx] = rng.multivariate_normal(means[j], cov, size=idx.size)
    # Two skewed, amount-like features (log-normal), as real spend/frequency columns are.
    x[:, 6] = np.exp(0.5 * x[:, 6])
    x[:, 7] = np.exp(0.4 * x[:, 7])
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return np.ascontiguousarray(x, dtype="<f8")


def ensure(n: int, out: str) -> np.ndarray:
    path = out + ".f64"
    if os.path.exists(path) and os.path.exists(out + ".json"):
        meta = json.load(open(out + ".json"))
        if meta["rows"] == n:
            return np.fromfile(path, dtype="<f8").reshape(meta["rows"], meta["cols"])
    x = make(n)
    x.tofile(path)
    json.dump({"rows": x.shape[0], "cols": x.shape[1]}, open(out + ".json", "w"))
    return x


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--out", default="/tmp/fairseg_kmeans_1m")
    a = p.parse_args()
    x = ensure(a.n, a.out)
    print(f"{a.out}.f64: {x.shape[0]} x {x.shape[1]} float64")
