"""The million-customer workload, side by side with its references in one run: a million customers.

Data shape (the one users bring): 1,000,000 customers x 8 numeric attributes written with six
decimals (f0..f7: the overlapping mixture of tools/bench/kmeans_data.py on different scales),
plus `sex` (a protected, binary attribute: F/M), every customer with an active `segmentation`
consent. The CSV files are written once into $MILLION_BENCH_DIR (default
target/million-bench) and not timed.

Measured in the same session, each figure the median of --repeats runs:
1. import: `fairseg import customers customers.csv` into a fresh SQLite database (validation,
   pseudonyms, protected attributes apart, import log and trail), wall time and rows/s, against
   sqlite3's own `.import --csv` of the same file into a fresh database file;
2. segment: `fairseg segment --algorithm kmeans --k 8 --seed 1 --json` as a process on a fresh
   copy of the imported database (customers and consents): wall time, peak RSS (getrusage of
   the child), the stage timings it reports (load, preprocess, cluster, profile, persist,
   audit), against scikit-learn's `KMeans(n_clusters=8, n_init=1, algorithm="lloyd",
   random_state=1).fit(X)` on the same standardised matrix.

    cargo build --release && python3 tools/bench/million.py [--n 1000000] [--repeats 3]
        [--skip-import]
"""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
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
SEED = 1


def env(db):
    return dict(os.environ, FAIRSEG_DATABASE_URL=db, FAIRSEG_POLICIES=POLICIES, RUST_LOG="warn")


def run_child(cmd, environ=None):
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environ)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{cmd[0]} {cmd[1]} failed ({code}):\n{stderr}")
    return wall, usage.ru_maxrss / 1024.0, stdout


def write_data(n, directory):
    cpath = os.path.join(directory, f"customers-{n}.csv")
    gpath = os.path.join(directory, f"consents-{n}.csv")
    if os.path.exists(cpath) and os.path.exists(gpath):
        return cpath, gpath
    os.makedirs(directory, exist_ok=True)
    x = make(n)
    raw = x * np.arange(1, 9) * 10.0 + np.arange(8) * 100.0
    frame = pd.DataFrame(raw, columns=FEATURES)
    frame.insert(0, "customer_id", [f"C{i:07d}" for i in range(n)])
    rng = np.random.default_rng(16)
    frame["sex"] = np.where(rng.random(n) < 0.5, "F", "M")
    frame.to_csv(cpath + ".tmp", index=False, float_format="%.6f")
    os.rename(cpath + ".tmp", cpath)
    pd.DataFrame({
        "customer_id": frame["customer_id"],
        "purpose": "segmentation",
        "status": "granted",
        "recorded_at": "2026-01-15T09:00:00Z",
    }).to_csv(gpath, index=False)
    return cpath, gpath


def remove_db(path):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def import_fairseg(cpath, db, binary=BIN):
    remove_db(db)
    subprocess.run([binary, "migrate"], env=env(db), capture_output=True, check=True)
    os.sync()
    wall, rss, _ = run_child([binary, "import", "customers", cpath], env(db))
    return wall, rss


def import_sqlite3(cpath, db):
    remove_db(db)
    os.sync()
    wall, rss, _ = run_child(["sqlite3", db, ".import --csv " + cpath + " customers"])
    return wall, rss


def segmented_db(n, directory, cpath, gpath):
    db = os.path.join(directory, f"segment-{n}.db")
    if os.path.exists(db):
        subprocess.run([BIN, "migrate"], env=env(db), capture_output=True, check=True)
    else:
        tmp = db + ".tmp"
        remove_db(tmp)
        subprocess.run([BIN, "import", "customers", cpath], env=env(tmp), capture_output=True,
                       check=True)
        subprocess.run([BIN, "import", "consents", gpath], env=env(tmp), capture_output=True,
                       check=True)
        os.rename(tmp, db)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(tmp + suffix):
                os.rename(tmp + suffix, db + suffix)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


def fresh_copy(db, directory):
    target = os.path.join(directory, "run.db")
    remove_db(target)
    shutil.copyfile(db, target)
    os.sync()
    return target


def segment_fairseg(db, binary=BIN):
    wall, rss, out = run_child(
        [binary, "segment", "--algorithm", "kmeans", "--k", "8", "--features", ",".join(FEATURES),
         "--seed", str(SEED), "--json"], env(db))
    report = json.loads(out)
    return wall, rss, report


def sklearn_fit(x):
    t = time.perf_counter()
    km = KMeans(n_clusters=8, init="k-means++", n_init=1, algorithm="lloyd",
                random_state=SEED).fit(x)
    return time.perf_counter() - t, km.inertia_


def median(values):
    return statistics.median(values)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-import", action="store_true")
    p.add_argument("--skip-segment", action="store_true")
    p.add_argument("--compare", metavar="BIN",
                   help="also run this fairseg binary's import and segment (e.g. main's), "
                        "alternating with ours in the same minutes")
    a = p.parse_args()
    directory = os.environ.get("MILLION_BENCH_DIR", os.path.join(ROOT, "target", "million-bench"))
    cpath, gpath = write_data(a.n, directory)
    print(f"{a.n} customers x 8 numeric attributes (six decimals) + sex, "
          f"{os.path.getsize(cpath) / 1e6:.1f} MB")

    if not a.skip_import:
        db = os.path.join(directory, "import.db")
        binaries = [BIN] + ([a.compare] if a.compare else [])
        ours, theirs = {b: [] for b in binaries}, []
        for r in range(a.repeats):
            # Alternating which goes first, so neither always follows the other.
            for b in binaries if r % 2 == 0 else binaries[::-1]:
                wall, rss = import_fairseg(cpath, db, b)
                ours[b].append(wall)
                name = "" if b == BIN else " (compare)"
                print(f"import run {r}: fairseg{name} {wall:.2f} s ({a.n / wall:,.0f} rows/s, "
                      f"{rss:.0f} MiB) load {os.getloadavg()[0]:.1f}")
            ref, _ = import_sqlite3(cpath, db + ".sqlite3")
            theirs.append(ref)
            print(f"import run {r}: sqlite3 .import {ref:.2f} s ({a.n / ref:,.0f} rows/s) "
                  f"| ratio {ours[BIN][-1] / ref:.2f}")
        remove_db(db)
        remove_db(db + ".sqlite3")
        s = median(theirs)
        for b in binaries:
            m = median(ours[b])
            print(f"import median ({b}): fairseg {m:.2f} s = {a.n / m:,.0f} rows/s; sqlite3 "
                  f".import {s:.2f} s = {a.n / s:,.0f} rows/s; ratio {m / s:.2f} (target >= "
                  f"300,000 rows/s and <= 1.3)")

    if not a.skip_segment:
        db = segmented_db(a.n, directory, cpath, gpath)
        raw = pd.read_csv(cpath, usecols=FEATURES)[FEATURES].to_numpy()
        x = StandardScaler().fit_transform(raw)
        stages = ["load", "preprocess", "cluster", "profile", "persist", "audit"]
        print(f"{'run':>3} {'fairseg':>8} {'MiB':>5} "
              + " ".join(f"{s:>8}" for s in stages)
              + f" {'inertia':>14} | {'sklearn fit':>11} {'inertia':>14} | ratio")
        binaries = [BIN] + ([a.compare] if a.compare else [])
        rows = {b: [] for b in binaries}
        for r in range(a.repeats):
            # Alternating which goes first, so neither always follows the fit.
            for b in binaries if r % 2 == 0 else binaries[::-1]:
                wall, rss, report = segment_fairseg(fresh_copy(db, directory), b)
                fit, inertia = sklearn_fit(x)
                t = report["timings_ms"]
                rows[b].append((wall, rss, fit, *[t.get(s, 0) for s in stages]))
                name = "" if b == BIN else " (compare)"
                print(f"{r:>3} {wall:>7.2f}s {rss:>5.0f} "
                      + " ".join(f"{t.get(s, 0):>8}" for s in stages)
                      + f" {report['quality']['inertia']:>14.1f} | {fit:>10.2f}s "
                      + f"{inertia:>14.1f} | {wall / fit:.2f}{name} load {os.getloadavg()[0]:.1f}")
        for b in binaries:
            med = [median(c) for c in zip(*rows[b])]
            wall, rss, fit = med[:3]
            print(f"segment median ({b}): fairseg {wall:.2f} s, peak {rss:.0f} MiB; "
                  f"scikit-learn fit {fit:.2f} s; ratio {wall / fit:.2f} (target <= 2.0, "
                  f"goal 1.5, < 500 MiB)")
            print("stage medians (ms): " + ", ".join(
                f"{s} {v:.0f}" for s, v in zip(stages, med[3:])))


if __name__ == "__main__":
    main()
