"""Reference behavioural features (recency, frequency, monetary, average order value, tenure)
of the CDNOW customers as of 1998-06-30, computed with pandas, for
src/customers/features.rs (test `cdnow_features_match_pandas`).

CDNOW has no order ids, so each transaction is one order. Days are calendar days from the
purchase day to the as-of date. Run from the repository root:
    python3 tools/reference/features.py
"""
import json

import pandas as pd

AS_OF = pd.Timestamp("1998-06-30")

df = pd.read_csv(
    "tests/fixtures/cdnow/CDNOW_master.txt",
    sep=r"\s+",
    dtype={"customer_id": str, "date": str},
)
df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
df = df[df["date"] <= AS_OF]
g = df.groupby("customer_id")
features = pd.DataFrame(
    {
        "recency_days": (AS_OF - g["date"].max()).dt.days,
        "frequency": g.size(),
        "monetary": g["dollar_value"].sum(),
        "tenure_days": (AS_OF - g["date"].min()).dt.days,
    }
)
features["average_order_value"] = features["monetary"] / features["frequency"]
sample = features.iloc[::500]
out = {
    "as_of": AS_OF.strftime("%Y-%m-%d"),
    "customers": int(len(features)),
    "sum_recency_days": int(features["recency_days"].sum()),
    "sum_frequency": int(features["frequency"].sum()),
    "sum_monetary": float(features["monetary"].sum()),
    "sum_tenure_days": int(features["tenure_days"].sum()),
    "sample": [
        {
            "customer_id": cid,
            "recency_days": int(r.recency_days),
            "frequency": int(r.frequency),
            "monetary": float(r.monetary),
            "average_order_value": float(r.average_order_value),
            "tenure_days": int(r.tenure_days),
        }
        for cid, r in sample.iterrows()
    ],
}
with open("tests/fixtures/reference/features_cdnow.json", "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print(f"{out['customers']} customers, {len(out['sample'])} in the sample")
