"""Reference vectors for src/segmentation (scikit-learn / pandas / numpy).

Writes JSON into tests/fixtures/reference/segmentation/. Run from the repository root:

    python3 tools/reference/segmentation.py

Each file holds its inputs and the expected outputs, so the Rust tests need nothing else.
"""

import json
import os

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_score,
)
from sklearn.preprocessing import OneHotEncoder, StandardScaler

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "reference", "segmentation")


def dump(name, obj):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(obj, f, indent=1, allow_nan=False)
        f.write("\n")


def preprocess():
    rng = np.random.default_rng(1)
    n = 40
    amount = np.round(rng.lognormal(4.0, 1.0, n), 2).astype(object)
    visits = rng.integers(0, 30, n).astype(float).astype(object)
    age = rng.integers(18, 80, n).astype(float).astype(object)
    region = rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    const = np.full(n, 3.5).astype(object)
    for i in (3, 17, 25):
        amount[i] = None
    for i in (5, 6):
        visits[i] = None
    for i in (9, 30):
        age[i] = None
    for i in (2, 11, 33):
        region[i] = None
    keep = np.array([a is not None for a in age])
    df = pd.DataFrame({"amount": amount, "visits": visits, "age": age, "const": const, "region": region})
    kept = df[keep].reset_index(drop=True)
    num = pd.DataFrame({
        "amount": SimpleImputer(strategy="median").fit_transform(kept[["amount"]].astype(float))[:, 0],
        "visits": SimpleImputer(strategy="mean").fit_transform(kept[["visits"]].astype(float))[:, 0],
        "age": kept["age"].astype(float),
        "const": kept["const"].astype(float),
    })
    fills = {
        "amount": float(np.nanmedian(kept["amount"].astype(float))),
        "visits": float(np.nanmean(kept["visits"].astype(float))),
    }
    num["amount"] = np.log1p(num["amount"])
    scaler = StandardScaler().fit(num)
    z = scaler.transform(num)
    reg = SimpleImputer(strategy="most_frequent").fit_transform(kept[["region"]].astype(object))
    enc = OneHotEncoder(sparse_output=False).fit(reg)
    onehot = enc.transform(reg)
    matrix = np.hstack([z, onehot])
    dump("preprocess.json", {
        "columns": {k: [None if pd.isna(v) else v for v in df[k].tolist()] for k in df.columns},
        "kept_rows": [int(i) for i in np.flatnonzero(keep)],
        "fills": {**fills, "region": str(SimpleImputer(strategy="most_frequent").fit(kept[["region"]].astype(object)).statistics_[0])},
        "means": scaler.mean_.tolist(),
        "scales": scaler.scale_.tolist(),
        "categories": enc.categories_[0].tolist(),
        "matrix": matrix.tolist(),
    })


def quality():
    rng = np.random.default_rng(2)
    cases = []
    # Overlapping 3-D clusters, k-means labels.
    x = np.vstack([rng.normal(c, 1.3, size=(60, 3)) for c in ([0, 0, 0], [2, 1, 0], [0, 3, 1], [3, 3, 3])])
    labels = KMeans(4, n_init=1, random_state=0).fit(x).labels_
    cases.append(("kmeans_4", x, labels))
    # A singleton cluster and non-contiguous label values.
    x2 = rng.normal(size=(30, 2))
    l2 = np.where(np.arange(30) < 14, 3, 7)
    l2[29] = 11
    cases.append(("singleton_noncontiguous", x2, l2))
    # Duplicate points within clusters (zero distances).
    x3 = np.array([[0.0, 0.0]] * 5 + [[1.0, 1.0]] * 4 + [[0.5, 2.0], [0.6, 2.1], [0.4, 1.9]])
    l3 = np.array([0] * 5 + [1] * 4 + [2] * 3)
    cases.append(("duplicates", x3, l3))
    out = []
    for name, x, l in cases:
        out.append({
            "name": name,
            "x": x.tolist(),
            "labels": [int(v) for v in l],
            "silhouette": float(silhouette_score(x, l)),
            "calinski_harabasz": float(calinski_harabasz_score(x, l)),
            "davies_bouldin": float(davies_bouldin_score(x, l)),
        })
    ari = []
    a = rng.integers(0, 4, 200)
    b = np.where(rng.random(200) < 0.7, a, rng.integers(0, 5, 200))
    pairs = [
        ("noisy_copy", a, b),
        ("relabelled", a, (a + 2) % 4 * 3),
        ("all_same_vs_all_distinct", np.zeros(50, int), np.arange(50)),
        ("independent", rng.integers(0, 3, 300), rng.integers(0, 6, 300)),
        ("both_all_same", np.zeros(10, int), np.ones(10, int) * 4),
    ]
    for name, a, b in pairs:
        ari.append({"name": name, "a": [int(v) for v in a], "b": [int(v) for v in b], "ari": float(adjusted_rand_score(a, b))})
    dump("quality.json", {"scores": out, "ari": ari})


def pca():
    rng = np.random.default_rng(3)
    n, d = 150, 5
    base = rng.normal(size=(n, 2))
    mix = np.array([[1.0, 0.8, 0.0, -0.5, 0.2], [0.0, 0.3, 1.0, 0.7, -0.9]])
    x = base @ mix + 0.3 * rng.normal(size=(n, d))
    x = StandardScaler().fit_transform(x)
    p = PCA(n_components=2, svd_solver="full").fit(x)
    dump("pca.json", {
        "x": x.tolist(),
        "components": p.components_.tolist(),
        "explained_variance_ratio": p.explained_variance_ratio_.tolist(),
        "projected": p.transform(x).tolist(),
    })


def rfm():
    rng = np.random.default_rng(4)
    cases = []
    for n in (7, 13, 23, 100):
        rec = rng.integers(0, 40, n).astype(float)
        freq = rng.integers(1, 6, n).astype(float)  # many ties
        mon = np.round(rng.lognormal(3, 1, n), 2)
        s = pd.DataFrame({"r": rec, "f": freq, "m": mon})
        r = pd.qcut(s["r"].rank(method="first"), 5, labels=[5, 4, 3, 2, 1]).astype(int)
        f = pd.qcut(s["f"].rank(method="first"), 5, labels=[1, 2, 3, 4, 5]).astype(int)
        m = pd.qcut(s["m"].rank(method="first"), 5, labels=[1, 2, 3, 4, 5]).astype(int)
        cases.append({"recency": rec.tolist(), "frequency": freq.tolist(), "monetary": mon.tolist(),
                      "r": r.tolist(), "f": f.tolist(), "m": m.tolist()})
    # qcut's edges are floating-point quantiles of the ranks; our integer rule matches them for
    # every n up to 3000 (checked once by hand); the fixture keeps n = 2..80.
    qcut_bins = {}
    for n in range(2, 81):
        ranks = pd.Series(np.arange(1, n + 1, dtype=float))
        qcut_bins[str(n)] = pd.qcut(ranks, 5, labels=[1, 2, 3, 4, 5]).astype(int).tolist()
    dump("rfm.json", {"cases": cases, "qcut_bins": qcut_bins})


def linear_sum_assignment_cases():
    """Minimum-cost assignments (scipy.optimize.linear_sum_assignment) of random square and
    rectangular cost matrices, as centre distances would give."""
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(20261201)
    cases = []
    for i in range(40):
        n = int(rng.integers(1, 9))
        m = int(rng.integers(1, 9)) if i % 2 else n
        cost = rng.uniform(0, 10, size=(n, m))
        rows, cols = linear_sum_assignment(cost)
        cases.append({
            "name": f"case{i}",
            "cost": cost.tolist(),
            "row_ind": rows.tolist(),
            "col_ind": cols.tolist(),
            "total": float(cost[rows, cols].sum()),
        })
    dump("linear_sum_assignment.json", {"cases": cases})


if __name__ == "__main__":
    preprocess()
    quality()
    pca()
    rfm()
    linear_sum_assignment_cases()
    print("wrote", os.path.abspath(OUT))
