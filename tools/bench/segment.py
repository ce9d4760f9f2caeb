"""End-to-end segmentation benchmark: `fairseg segment` against scikit-learn, in one
script, on the same data.

Data: the overlapping mixture of tools/bench/kmeans_data.py (1,000,000 x 8, 8 anisotropic
Gaussians with close means, two log-normal columns), turned into raw attribute values with
different scales, imported into a fresh fairseg SQLite database through `fairseg import` (every
customer with an active `segmentation` consent). Setup is cached in $SEGMENT_BENCH_DIR
(default target/segment-bench) and not timed.

Measured, each on a fresh copy of the database:
1. `fairseg segment --algorithm kmeans --k 8 --features f0..f7 --seed S --json` as a process:
   wall time, peak memory (max RSS from /usr/bin/time), the stage timings it reports
   (load, preprocess, cluster, profile, persist) and the inertia;
2. scikit-learn `KMeans(n_clusters=8, init="k-means++", n_init=1, algorithm="lloyd",
   random_state=S).fit(X)` on the same standardised data: time and inertia;
3. the pipeline a data scientist would write instead: pandas reads the customers and the
   consent ledger from the same SQLite file, keeps the consented ones, parses the attributes,
   StandardScaler, the same KMeans fit, 1,000,000 memberships written back with to_sql.

    cargo build --release && python3 tools/bench/segment.py [--n 1000000] [--seeds 0,1,2]
"""

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(__file__))
from kmeans_data import make  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "target", "release", "fairseg")
POLICIES = os.path.join(ROOT, "policies")
FEATURES = [f"f{i}" for i in range(8)]


def fairseg(db, *args):
    env = dict(os.environ, FAIRSEG_DATABASE_URL=db, FAIRSEG_POLICIES=POLICIES, RUST_LOG="warn")
    return subprocess.run([BIN, *args], env=env, capture_output=True, text=True, check=True)


def setup(n, directory):
    """A fairseg database with n consented customers x 8 attributes (cached)."""
    db = os.path.join(directory, f"customers-{n}.db")
    if os.path.exists(db):
        # A cached database from an older build: bring its schema up to date once, here,
        # rather than inside every timed run.
        fairseg(db, "migrate")
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return db
    os.makedirs(directory, exist_ok=True)
    x = make(n)
    # Raw attribute values on different scales, so standardisation has work to do.
    raw = x * np.arange(1, 9) * 10.0 + np.arange(8) * 100.0
    customers = pd.DataFrame(raw, columns=FEATURES).round(4)
    customers.insert(0, "customer_id", [f"C{i:07d}" for i in range(n)])
    cpath = os.path.join(directory, "customers.csv")
    customers.to_csv(cpath, index=False)
    consents = pd.DataFrame({
        "customer_id": customers["customer_id"],
        "purpose": "segmentation",
        "status": "granted",
        "recorded_at": "2026-01-15T09:00:00Z",
    })
    gpath = os.path.join(directory, "consents.csv")
    consents.to_csv(gpath, index=False)
    tmp = db + ".tmp"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(tmp + suffix):
            os.remove(tmp + suffix)
    t = time.perf_counter()
    fairseg(tmp, "import", "customers", cpath)
    fairseg(tmp, "import", "consents", gpath)
    print(f"setup: imported {n} customers and consents in {time.perf_counter() - t:.1f} s")
    # Fold the WAL into the file so a plain copy is a whole database.
    with sqlite3.connect(tmp) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.rename(tmp, db)
    return db


def fresh_copy(db, directory):
    target = os.path.join(directory, "run.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(target + suffix):
            os.remove(target + suffix)
    shutil.copyfile(db, target)
    # Flush the copy to disk now: otherwise the first fsync of the timed run (SQLite's
    # checkpoint) would pay for writing out the whole copied file.
    os.sync()
    return target


def run_fairseg(db, seed):
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", BIN, "segment", "--algorithm", "kmeans", "--k", "8",
         "--features", ",".join(FEATURES), "--seed", str(seed), "--json"],
        env=dict(os.environ, FAIRSEG_DATABASE_URL=db, FAIRSEG_POLICIES=POLICIES, RUST_LOG="warn"),
        capture_output=True, text=True, check=True)
    wall, rss_kib = out.stderr.strip().splitlines()[-1].split()
    report = json.loads(out.stdout)
    return float(wall), int(rss_kib) / 1024.0, report


def scientist_pipeline(db, seed):
    """pandas + scikit-learn, as a data scientist would do it against the same database."""
    stages = {}
    t0 = time.perf_counter()
    with sqlite3.connect(db) as conn:
        customers = pd.read_sql("SELECT id, attributes FROM customers", conn)
        events = pd.read_sql(
            "SELECT customer_id, status, recorded_at, id FROM consent_events "
            "WHERE purpose = 'segmentation'", conn)
        # The latest event per customer decides; grants lapse after 730 days.
        events = events.sort_values(["customer_id", "recorded_at", "id"])
        latest = events.groupby("customer_id").tail(1)
        recorded = pd.to_datetime(latest["recorded_at"])
        active = latest[(latest["status"] == "granted")
                        & (recorded > pd.Timestamp.now() - pd.Timedelta(days=730))]
        customers = customers[customers["id"].isin(active["customer_id"])]
        attributes = pd.json_normalize(customers["attributes"].map(json.loads))
        stages["load"] = time.perf_counter() - t0
        t = time.perf_counter()
        x = StandardScaler().fit_transform(attributes[FEATURES].to_numpy())
        stages["preprocess"] = time.perf_counter() - t
        t = time.perf_counter()
        km = KMeans(n_clusters=8, init="k-means++", n_init=1, algorithm="lloyd",
                    random_state=seed).fit(x)
        stages["cluster"] = time.perf_counter() - t
        t = time.perf_counter()
        out = pd.DataFrame({"run_id": 1, "customer_id": customers["id"].to_numpy(),
                            "segment": km.labels_})
        out.to_sql("bench_memberships", conn, index=False, if_exists="replace")
        stages["persist"] = time.perf_counter() - t
    stages["total"] = time.perf_counter() - t0
    return stages, km, x


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--seeds", default="0,1,2")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    directory = os.environ.get("SEGMENT_BENCH_DIR", os.path.join(ROOT, "target", "segment-bench"))
    db = setup(a.n, directory)
    print(f"{a.n} consented customers x 8 numeric features, k = 8 (overlapping clusters)")
    print(f"{'seed':>4} {'fairseg total':>13} {'peak MiB':>9} {'load':>6} {'prep':>6} "
          f"{'cluster':>8} {'profile':>8} {'persist':>8} {'audit':>6} {'inertia':>12} | "
          f"{'sklearn fit':>11} {'inertia':>12} | {'pandas+sklearn':>14}")
    rows = []
    for seed in seeds:
        wall, rss, report = run_fairseg(fresh_copy(db, directory), seed)
        t = report["timings_ms"]
        inertia = report["quality"]["inertia"]
        stages, km, x = scientist_pipeline(fresh_copy(db, directory), seed)
        rows.append((wall, rss, t["cluster"] / 1000.0, inertia, stages["cluster"], km.inertia_,
                     stages["total"], t.get("audit", 0) / 1000.0))
        print(f"{seed:>4} {wall:>12.2f}s {rss:>9.0f} {t['load'] / 1000:>6.2f} "
              f"{t['preprocess'] / 1000:>6.2f} {t['cluster'] / 1000:>8.2f} "
              f"{t['profile'] / 1000:>8.2f} {t['persist'] / 1000:>8.2f} "
              f"{t.get('audit', 0) / 1000:>6.2f} {inertia:>12.1f} | "
              f"{stages['cluster']:>10.2f}s {km.inertia_:>12.1f} | {stages['total']:>13.2f}s")
    m = np.array([r for r in rows])
    wall, rss, cluster, inertia, fit, sk_inertia, pipeline, audit = m.mean(axis=0)
    print()
    print(f"mean: fairseg cluster stage {cluster:.2f} s vs scikit-learn fit {fit:.2f} s "
          f"(ratio {cluster / fit:.2f}); inertia {inertia:.1f} vs {sk_inertia:.1f} "
          f"({(inertia / sk_inertia - 1) * 100:+.2f}%)")
    print(f"mean: whole `fairseg segment` {wall:.2f} s = {wall / fit:.2f} x the fit "
          f"(target <= 3x), of which the fairness audit that follows every run "
          f"{audit:.2f} s; peak memory {rss:.0f} MiB (target < 1024)")
    print(f"mean: pandas + scikit-learn pipeline {pipeline:.2f} s; fairseg is "
          f"{pipeline / wall:.2f} x as fast")


if __name__ == "__main__":
    main()
