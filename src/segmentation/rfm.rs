//! RFM: quintile scores for recency, frequency and monetary value, and the named segments.
//!
//! # Scores
//! Each measure is ranked with ties broken by input order (pandas `rank(method="first")`),
//! then cut into five equal-count bins of ranks (pandas `qcut(rank, 5)`). In integers: with
//! n customers, the customer of rank r (1-based) gets bin b = the smallest b in 1..=5 with
//! `5·(r − 1) ≤ b·(n − 1)`. This equals pandas' result for every n checked (2..3000; the
//! fixture keeps 2..80). Frequency and monetary score b (more is better); recency scores
//! `6 − b`, so the most recent customers (fewest days since their last purchase) score 5.
//! A single customer scores bin 1 (recency 5).
//!
//! # Segments
//! Named from the recency and frequency scores by the widely used R–F grid (monetary value is
//! scored and reported, but tracks frequency closely and does not change the name). The grid
//! partitions all 25 (R, F) cells; first matching row wins:
//!
//! | segment             | R     | F     | who they are                                  |
//! |---------------------|-------|-------|-----------------------------------------------|
//! | Champions           | 5     | 4–5   | bought recently, buy often                    |
//! | Loyal               | 3–4   | 4–5   | buy often, fairly recently                    |
//! | Cannot lose them    | 1–2   | 5     | bought most often, but long ago               |
//! | At risk             | 1–2   | 3–4   | bought often, long ago                        |
//! | Potential loyalists | 4–5   | 2–3   | recent, a few purchases                       |
//! | New customers       | 5     | 1     | just made a first purchase                    |
//! | Promising           | 4     | 1     | recent, one purchase                          |
//! | Need attention      | 3     | 3     | middling on both                              |
//! | About to sleep      | 3     | 1–2   | middling recency, rarely buy                  |
//! | Hibernating         | 1–2   | 1–2   | long ago, rarely (except R 1, F 1)            |
//! | Lost                | 1     | 1     | lowest recency and frequency                  |

use serde::{Deserialize, Serialize};

use super::{Result, SegmentationError};

/// One customer's scores, each in 1..=5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RfmScore {
    /// Recency score: 5 = most recent.
    pub r: u8,
    /// Frequency score: 5 = most frequent.
    pub f: u8,
    /// Monetary score: 5 = highest value.
    pub m: u8,
}

impl RfmScore {
    /// The usual three-digit cell code, e.g. `"545"`.
    pub fn code(&self) -> String {
        format!("{}{}{}", self.r, self.f, self.m)
    }
}

/// The named RFM segments, in the order of the grid above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RfmSegment {
    /// R 5, F 4–5.
    Champions,
    /// R 3–4, F 4–5.
    Loyal,
    /// R 1–2, F 5.
    CannotLoseThem,
    /// R 1–2, F 3–4.
    AtRisk,
    /// R 4–5, F 2–3.
    PotentialLoyalists,
    /// R 5, F 1.
    NewCustomers,
    /// R 4, F 1.
    Promising,
    /// R 3, F 3.
    NeedAttention,
    /// R 3, F 1–2.
    AboutToSleep,
    /// R 1–2, F 1–2 except (1, 1).
    Hibernating,
    /// R 1, F 1.
    Lost,
}

impl RfmSegment {
    /// All segments; a segment's label in a [`RfmResult`] is its index here.
    pub const ALL: [RfmSegment; 11] = [
        RfmSegment::Champions,
        RfmSegment::Loyal,
        RfmSegment::CannotLoseThem,
        RfmSegment::AtRisk,
        RfmSegment::PotentialLoyalists,
        RfmSegment::NewCustomers,
        RfmSegment::Promising,
        RfmSegment::NeedAttention,
        RfmSegment::AboutToSleep,
        RfmSegment::Hibernating,
        RfmSegment::Lost,
    ];

    /// The display name.
    pub fn name(self) -> &'static str {
        match self {
            RfmSegment::Champions => "Champions",
            RfmSegment::Loyal => "Loyal",
            RfmSegment::CannotLoseThem => "Cannot lose them",
            RfmSegment::AtRisk => "At risk",
            RfmSegment::PotentialLoyalists => "Potential loyalists",
            RfmSegment::NewCustomers => "New customers",
            RfmSegment::Promising => "Promising",
            RfmSegment::NeedAttention => "Need attention",
            RfmSegment::AboutToSleep => "About to sleep",
            RfmSegment::Hibernating => "Hibernating",
            RfmSegment::Lost => "Lost",
        }
    }

    /// The segment of a score, by the grid in the module documentation.
    pub fn of(score: RfmScore) -> RfmSegment {
        match (score.r, score.f) {
            (5, 4..=5) => RfmSegment::Champions,
            (3..=4, 4..=5) => RfmSegment::Loyal,
            (1..=2, 5) => RfmSegment::CannotLoseThem,
            (1..=2, 3..=4) => RfmSegment::AtRisk,
            (4..=5, 2..=3) => RfmSegment::PotentialLoyalists,
            (5, 1) => RfmSegment::NewCustomers,
            (4, 1) => RfmSegment::Promising,
            (3, 3) => RfmSegment::NeedAttention,
            (3, 1..=2) => RfmSegment::AboutToSleep,
            (1, 1) => RfmSegment::Lost,
            _ => RfmSegment::Hibernating,
        }
    }

    /// Index in [`RfmSegment::ALL`].
    pub fn label(self) -> usize {
        RfmSegment::ALL
            .iter()
            .position(|&s| s == self)
            .expect("listed")
    }
}

/// Scores and segments of every customer, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RfmResult {
    /// Each customer's scores.
    pub scores: Vec<RfmScore>,
    /// Each customer's segment.
    pub segments: Vec<RfmSegment>,
    /// Each customer's segment as an index into [`RfmSegment::ALL`] (for profiles).
    pub labels: Vec<usize>,
}

/// Quintile bins 1..=5 of `values` (higher value, higher bin), ties by input order.
pub fn quintiles(values: &[f64], measure: &str) -> Result<Vec<u8>> {
    if values.is_empty() {
        return Err(SegmentationError::Empty);
    }
    if let Some(row) = values.iter().position(|v| !v.is_finite()) {
        return Err(SegmentationError::NonFinite {
            feature: measure.to_owned(),
            row,
        });
    }
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    // A stable sort keeps input order among equal values: rank(method="first").
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut bins = vec![0u8; n];
    for (pos, &i) in order.iter().enumerate() {
        // Rank r = pos + 1; smallest b with 5(r − 1) ≤ b(n − 1).
        let b = (1..=5u8)
            .find(|&b| 5 * pos <= usize::from(b) * (n - 1))
            .expect("b = 5 always qualifies");
        bins[i] = b;
    }
    Ok(bins)
}

/// Scores and names customers from days since their last purchase, number of purchases and
/// total spend (one value per customer each).
pub fn rfm(recency_days: &[f64], frequency: &[f64], monetary: &[f64]) -> Result<RfmResult> {
    let n = recency_days.len();
    for (name, v) in [("frequency", frequency), ("monetary", monetary)] {
        if v.len() != n {
            return Err(SegmentationError::LengthMismatch {
                feature: name.into(),
                expected: n,
                found: v.len(),
            });
        }
    }
    let r = quintiles(recency_days, "recency")?;
    let f = quintiles(frequency, "frequency")?;
    let m = quintiles(monetary, "monetary")?;
    let scores: Vec<RfmScore> = (0..n)
        .map(|i| RfmScore {
            r: 6 - r[i],
            f: f[i],
            m: m[i],
        })
        .collect();
    let segments: Vec<RfmSegment> = scores.iter().map(|&s| RfmSegment::of(s)).collect();
    Ok(RfmResult {
        labels: segments.iter().map(|s| s.label()).collect(),
        scores,
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const REFERENCE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/reference/segmentation/rfm.json"
    ));

    fn floats(v: &Value) -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    }

    fn ints(v: &Value) -> Vec<u8> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect()
    }

    /// Ten customers worked by hand.
    ///
    /// With n = 10 the bin of rank r is the smallest b with 5(r − 1) ≤ 9b: ranks 1–2 → 1,
    /// 3–4 → 2, 5–6 → 3, 7–8 → 4, 9–10 → 5. Ties are ranked in input order: C and D both
    /// bought 10 days ago (C rank 3, D rank 4); B and F bought once (B 1, F 2); I and J three
    /// times (I 4, J 5); E and H four times (E 6, H 7). Recency scores 6 − bin.
    ///
    /// | cust | days | rank | R | purchases | rank | F | spend | rank | M | segment             |
    /// |------|------|------|---|-----------|------|---|-------|------|---|---------------------|
    /// | A    | 2    | 1    | 5 | 12        | 10   | 5 | 900   | 10   | 5 | Champions           |
    /// | B    | 5    | 2    | 5 | 1         | 1    | 1 | 40    | 2    | 1 | New customers       |
    /// | C    | 10   | 3    | 4 | 8         | 8    | 4 | 500   | 8    | 4 | Loyal               |
    /// | D    | 10   | 4    | 4 | 2         | 3    | 2 | 60    | 3    | 2 | Potential loyalists |
    /// | E    | 30   | 5    | 3 | 4         | 6    | 3 | 150   | 6    | 3 | Need attention      |
    /// | F    | 45   | 6    | 3 | 1         | 2    | 1 | 20    | 1    | 1 | About to sleep      |
    /// | G    | 90   | 7    | 2 | 10        | 9    | 5 | 700   | 9    | 5 | Cannot lose them    |
    /// | H    | 120  | 8    | 2 | 4         | 7    | 4 | 200   | 7    | 4 | At risk             |
    /// | I    | 200  | 9    | 1 | 3         | 4    | 2 | 90    | 4    | 2 | Hibernating         |
    /// | J    | 365  | 10   | 1 | 3         | 5    | 3 | 100   | 5    | 3 | At risk             |
    #[test]
    fn hand_worked_example() {
        let recency = [2.0, 5.0, 10.0, 10.0, 30.0, 45.0, 90.0, 120.0, 200.0, 365.0];
        let frequency = [12.0, 1.0, 8.0, 2.0, 4.0, 1.0, 10.0, 4.0, 3.0, 3.0];
        let monetary = [
            900.0, 40.0, 500.0, 60.0, 150.0, 20.0, 700.0, 200.0, 90.0, 100.0,
        ];
        let res = rfm(&recency, &frequency, &monetary).unwrap();
        let codes: Vec<String> = res.scores.iter().map(RfmScore::code).collect();
        assert_eq!(
            codes,
            [
                "555", "511", "444", "422", "333", "311", "255", "244", "122", "133"
            ]
        );
        let names: Vec<&str> = res.segments.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "Champions",
                "New customers",
                "Loyal",
                "Potential loyalists",
                "Need attention",
                "About to sleep",
                "Cannot lose them",
                "At risk",
                "Hibernating",
                "At risk",
            ]
        );
        assert_eq!(res.labels[0], 0);
        assert_eq!(RfmSegment::ALL[res.labels[6]], RfmSegment::CannotLoseThem);
    }

    #[test]
    fn matches_pandas_qcut_on_first_ranks() {
        let r: Value = serde_json::from_str(REFERENCE).unwrap();
        for case in r["cases"].as_array().unwrap() {
            let res = rfm(
                &floats(&case["recency"]),
                &floats(&case["frequency"]),
                &floats(&case["monetary"]),
            )
            .unwrap();
            assert_eq!(
                res.scores.iter().map(|s| s.r).collect::<Vec<_>>(),
                ints(&case["r"])
            );
            assert_eq!(
                res.scores.iter().map(|s| s.f).collect::<Vec<_>>(),
                ints(&case["f"])
            );
            assert_eq!(
                res.scores.iter().map(|s| s.m).collect::<Vec<_>>(),
                ints(&case["m"])
            );
        }
        for (n, bins) in r["qcut_bins"].as_object().unwrap() {
            let n: usize = n.parse().unwrap();
            let values: Vec<f64> = (1..=n).map(|v| v as f64).collect();
            assert_eq!(quintiles(&values, "x").unwrap(), ints(bins), "n = {n}");
        }
    }

    #[test]
    fn grid_covers_every_cell_and_all_names_occur() {
        let mut seen = std::collections::BTreeSet::new();
        for r in 1..=5 {
            for f in 1..=5 {
                seen.insert(RfmSegment::of(RfmScore { r, f, m: 3 }));
            }
        }
        assert_eq!(seen.len(), RfmSegment::ALL.len());
        assert_eq!(
            RfmSegment::of(RfmScore { r: 1, f: 1, m: 5 }),
            RfmSegment::Lost
        );
        assert_eq!(
            RfmSegment::of(RfmScore { r: 2, f: 1, m: 1 }),
            RfmSegment::Hibernating
        );
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(rfm(&[], &[], &[]), Err(SegmentationError::Empty));
        assert!(matches!(
            rfm(&[1.0], &[1.0, 2.0], &[1.0]),
            Err(SegmentationError::LengthMismatch { .. })
        ));
        assert_eq!(
            rfm(&[1.0, f64::NAN], &[1.0, 2.0], &[1.0, 2.0]),
            Err(SegmentationError::NonFinite {
                feature: "recency".into(),
                row: 1
            })
        );
        // One customer: bin 1 everywhere, so recency 5.
        let one = rfm(&[3.0], &[1.0], &[10.0]).unwrap();
        assert_eq!(one.scores[0], RfmScore { r: 5, f: 1, m: 1 });
    }
}
