#!/usr/bin/env python3
"""pandas counterpart of benches/kpi_sqlite.rs: every KPI for December 2024, for `all` and 8
segments, from the same SQLite database (1,000,000 customers x 10,000,000 transactions), as a
data scientist would write it: read what is needed with SQL (the two months' transactions,
each customer's first purchase, the memberships of consented members), then group with pandas.
Times the whole thing, reads included.

Run from the repository root after the Rust bench:  python3 tools/bench/kpi_sqlite.py [DB]
"""

import os
import sqlite3
import sys
import time

import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARGIN, MAX_LIFETIME = 0.30, 60.0  # policy kpi.clv_margin, kpi.clv_max_lifetime_periods


def evaluate(con):
    start, end, prev = "2024-12-01 00:00:00", "2025-01-01 00:00:00", "2024-11-01 00:00:00"
    tx = pd.read_sql_query(
        "SELECT customer_id, occurred_at, amount FROM transactions WHERE occurred_at >= ? AND occurred_at < ?",
        con, params=(prev, end))
    first = pd.read_sql_query(
        "SELECT customer_id, MIN(occurred_at) AS first FROM transactions GROUP BY customer_id", con)
    members = pd.read_sql_query(
        "SELECT m.customer_id, m.segment FROM segment_memberships m JOIN segmentation_runs r ON r.id = m.run_id "
        "WHERE r.status = 'published'", con)
    # Consent: the latest segmentation event per customer is a grant.
    consent = pd.read_sql_query(
        "SELECT customer_id, status FROM consent_events WHERE purpose = 'segmentation' ORDER BY recorded_at, id", con)
    live = consent.groupby("customer_id")["status"].last()
    members = members[members["customer_id"].map(live).eq("granted")]
    n_customers = pd.read_sql_query("SELECT COUNT(*) AS n FROM customers", con)["n"][0]

    seg = members.set_index("customer_id")["segment"]
    tx["segment"] = tx["customer_id"].map(seg)
    cur = tx[tx["occurred_at"] >= start]
    old = tx[tx["occurred_at"] < start]
    firsts = first.set_index("customer_id")["first"]

    def kpis(cur, old, customers):
        active = cur["customer_id"].unique()
        prev_active = old["customer_id"].unique()
        per = cur.groupby("customer_id").size()
        revenue = cur["amount"].sum()
        orders = len(cur)
        retained = len(set(active) & set(prev_active))
        new = int((firsts.reindex(active) >= start).sum())
        a, p = len(active), len(prev_active)
        churn = (p - retained) / p if p else None
        return {
            "segment_size": customers, "active_customers": a, "new_customers": new,
            "revenue": revenue, "orders": orders,
            "average_order_value": revenue / orders if orders else None,
            "revenue_per_customer": revenue / a if a else None,
            "purchase_frequency": orders / a if a else None,
            "repeat_purchase_rate": (per >= 2).sum() / a if a else None,
            "retention_rate": retained / p if p else None, "churn_rate": churn,
            "customer_lifetime_value": (revenue / a * MARGIN * (MAX_LIFETIME if churn * MAX_LIFETIME <= 1 else 1 / churn))
            if a and p else None,
        }

    out = {"all": kpis(cur, old, int(n_customers))}
    sizes = members.groupby("segment").size()
    for s, size in sizes.items():
        out[f"Segment {s}"] = kpis(cur[cur["segment"] == s], old[old["segment"] == s], int(size))
    return out


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "kpi-bench", "kpi.db")
    times = []
    for _ in range(3):
        con = sqlite3.connect(path)
        t = time.perf_counter()
        result = evaluate(con)
        times.append(time.perf_counter() - t)
        con.close()
    times.sort()
    a = result["all"]
    print(f"pandas (sqlite3 + pandas {pd.__version__}): 9 segments x 12 KPIs for 2024-12: "
          f"median {times[1]:.2f} s, best {times[0]:.2f} s over 3 runs")
    print(f"  all: active_customers {a['active_customers']}, new_customers {a['new_customers']}, "
          f"revenue {a['revenue']:.2f}, retention_rate {a['retention_rate']}")


if __name__ == "__main__":
    main()
