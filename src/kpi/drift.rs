//! Drift between the population at segmentation time (the reference) and now (the current
//! population): per feature, the population stability index and the two-sample
//! Kolmogorov–Smirnov test; for the segmentation as a whole, the shift in segment shares.
//!
//! PSI = Σ_i (c_i − r_i) · ln(c_i / r_i) over bins i, where r_i and c_i are the reference and
//! current shares of bin i. Bins come from the reference sample's deciles (numpy's default
//! `linear` quantiles at 0.1, …, 0.9; duplicate edges from ties merged), each bin right-closed
//! `(e_{i−1}, e_i]`. A share of zero would make the logarithm infinite, so every share is
//! floored at `epsilon` (default 1e-4, i.e. one customer in ten thousand) before the sum; the
//! shares are not renormalised, which keeps a bin that empties out visible in the index.

use serde::{Deserialize, Serialize};

use super::KpiError;
use super::ks::{KsResult, ks_2samp};

/// Thresholds for drift, normally from the governance policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DriftThresholds {
    psi_warn: f64,
    psi_act: f64,
    ks_alpha: f64,
    epsilon: f64,
    bins: usize,
}

impl DriftThresholds {
    /// `psi_warn ≤ psi_act`, both positive; `ks_alpha` in (0, 1); `epsilon` in (0, 0.01];
    /// `bins` ≥ 2.
    pub fn new(
        psi_warn: f64,
        psi_act: f64,
        ks_alpha: f64,
        epsilon: f64,
        bins: usize,
    ) -> Result<Self, KpiError> {
        if !(psi_warn > 0.0 && psi_warn <= psi_act && psi_act.is_finite()) {
            return Err(KpiError::InvalidParameter(format!(
                "PSI thresholds must satisfy 0 < warn <= act, got warn {psi_warn}, act {psi_act}"
            )));
        }
        if !(ks_alpha > 0.0 && ks_alpha < 1.0) {
            return Err(KpiError::InvalidParameter(format!(
                "KS alpha must be in (0, 1), got {ks_alpha}"
            )));
        }
        if !(epsilon > 0.0 && epsilon <= 0.01) {
            return Err(KpiError::InvalidParameter(format!(
                "PSI epsilon must be in (0, 0.01], got {epsilon}"
            )));
        }
        if bins < 2 {
            return Err(KpiError::InvalidParameter(format!(
                "PSI needs at least 2 bins, got {bins}"
            )));
        }
        Ok(Self {
            psi_warn,
            psi_act,
            ks_alpha,
            epsilon,
            bins,
        })
    }

    /// PSI at or above which drift is worth a warning.
    pub fn psi_warn(&self) -> f64 {
        self.psi_warn
    }

    /// PSI at or above which drift calls for action.
    pub fn psi_act(&self) -> f64 {
        self.psi_act
    }

    /// Significance level of the KS test.
    pub fn ks_alpha(&self) -> f64 {
        self.ks_alpha
    }

    /// Floor applied to bin shares.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Number of quantile bins (10 = deciles).
    pub fn bins(&self) -> usize {
        self.bins
    }

    /// The level of a PSI value.
    pub fn level(&self, psi: f64) -> DriftLevel {
        if psi >= self.psi_act {
            DriftLevel::Act
        } else if psi >= self.psi_warn {
            DriftLevel::Warn
        } else {
            DriftLevel::Stable
        }
    }
}

impl Default for DriftThresholds {
    /// The conventional PSI 0.1 warn / 0.2 act, KS at 5 %, epsilon 1e-4, deciles.
    fn default() -> Self {
        Self {
            psi_warn: 0.1,
            psi_act: 0.2,
            ks_alpha: 0.05,
            epsilon: 1e-4,
            bins: 10,
        }
    }
}

/// How far a distribution has moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftLevel {
    /// PSI below the warning threshold.
    Stable,
    /// PSI at or above the warning threshold.
    Warn,
    /// PSI at or above the action threshold.
    Act,
}

/// Quantile bins fitted on a reference sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PsiBins {
    /// Interior edges, strictly increasing; there are `edges.len() + 1` bins.
    edges: Vec<f64>,
}

impl PsiBins {
    /// Edges at the reference's quantiles 1/bins, …, (bins−1)/bins, duplicates merged.
    pub fn from_reference(reference: &[f64], bins: usize) -> Result<Self, KpiError> {
        let mut sorted = finite_sample(reference, "reference")?;
        if bins < 2 {
            return Err(KpiError::InvalidParameter(format!(
                "PSI needs at least 2 bins, got {bins}"
            )));
        }
        sorted.sort_unstable_by(f64::total_cmp);
        let mut edges: Vec<f64> = (1..bins)
            .map(|i| quantile_linear(&sorted, i as f64 / bins as f64))
            .collect();
        edges.dedup();
        Ok(Self { edges })
    }

    /// Interior edges.
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// Share of `sample` in each bin (not floored).
    pub fn shares(&self, sample: &[f64]) -> Result<Vec<f64>, KpiError> {
        let sample = finite_sample(sample, "sample")?;
        let mut counts = vec![0u64; self.edges.len() + 1];
        for &x in &sample {
            // Number of edges strictly below x: bins are right-closed (e_{i−1}, e_i].
            counts[self.edges.partition_point(|&e| e < x)] += 1;
        }
        let n = sample.len() as f64;
        Ok(counts.into_iter().map(|c| c as f64 / n).collect())
    }
}

/// numpy's default (`method="linear"`) quantile of a sorted sample, including its way of
/// interpolating from the upper neighbour when the fraction is ≥ 0.5.
fn quantile_linear(sorted: &[f64], q: f64) -> f64 {
    let pos = (sorted.len() - 1) as f64 * q;
    let lo = pos.floor();
    let t = pos - lo;
    let lo = lo as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

fn finite_sample(x: &[f64], name: &'static str) -> Result<Vec<f64>, KpiError> {
    if x.is_empty() {
        return Err(KpiError::EmptySample(name));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(KpiError::NonFiniteSample(name));
    }
    Ok(x.to_vec())
}

/// PSI between two share vectors of equal length, each share floored at `epsilon`.
pub fn psi_from_shares(reference: &[f64], current: &[f64], epsilon: f64) -> Result<f64, KpiError> {
    if reference.len() != current.len() {
        return Err(KpiError::LengthMismatch {
            column: "current shares",
            expected: reference.len(),
            found: current.len(),
        });
    }
    if reference
        .iter()
        .chain(current)
        .any(|s| !(s.is_finite() && *s >= 0.0))
    {
        return Err(KpiError::InvalidParameter(
            "shares must be finite and non-negative".into(),
        ));
    }
    Ok(reference
        .iter()
        .zip(current)
        .map(|(&r, &c)| {
            let (r, c) = (r.max(epsilon), c.max(epsilon));
            (c - r) * (c / r).ln()
        })
        .sum())
}

/// PSI of `current` against `reference`, with bins from the reference's quantiles.
pub fn psi(
    reference: &[f64],
    current: &[f64],
    thresholds: &DriftThresholds,
) -> Result<f64, KpiError> {
    let bins = PsiBins::from_reference(reference, thresholds.bins)?;
    let r = bins.shares(reference)?;
    let c = bins.shares(current)?;
    psi_from_shares(&r, &c, thresholds.epsilon)
}

/// Drift of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    /// Feature name.
    pub feature: String,
    /// Population stability index.
    pub psi: f64,
    /// Level of the PSI against the thresholds.
    pub level: DriftLevel,
    /// Two-sample KS test, reference against current.
    pub ks: KsResult,
    /// Whether the KS p-value is below alpha. With hundreds of thousands of customers even a
    /// negligible shift is significant, so this is reported, not used to recommend action.
    pub ks_significant: bool,
}

/// PSI and KS of one feature between the reference and the current population.
pub fn feature_drift(
    feature: &str,
    reference: &[f64],
    current: &[f64],
    thresholds: &DriftThresholds,
) -> Result<FeatureDrift, KpiError> {
    let psi = psi(reference, current, thresholds)?;
    let ks = ks_2samp(reference, current)?;
    Ok(FeatureDrift {
        feature: feature.to_owned(),
        psi,
        level: thresholds.level(psi),
        ks_significant: ks.p_value < thresholds.ks_alpha,
        ks,
    })
}

/// Shift in segment sizes between the published run and now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentShift {
    /// PSI over segment shares.
    pub psi: f64,
    /// Level of that PSI.
    pub level: DriftLevel,
    /// Share of each segment at segmentation time.
    pub reference_shares: Vec<f64>,
    /// Share of each segment now.
    pub current_shares: Vec<f64>,
}

/// PSI over segment shares, from customer counts per segment (same segment order in both).
pub fn segment_shift(
    reference_counts: &[u64],
    current_counts: &[u64],
    thresholds: &DriftThresholds,
) -> Result<SegmentShift, KpiError> {
    let shares = |counts: &[u64], name: &'static str| -> Result<Vec<f64>, KpiError> {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Err(KpiError::EmptySample(name));
        }
        Ok(counts.iter().map(|&c| c as f64 / total as f64).collect())
    };
    let reference_shares = shares(reference_counts, "reference segment counts")?;
    let current_shares = shares(current_counts, "current segment counts")?;
    let psi = psi_from_shares(&reference_shares, &current_shares, thresholds.epsilon)?;
    Ok(SegmentShift {
        psi,
        level: thresholds.level(psi),
        reference_shares,
        current_shares,
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct PsiCase {
        name: String,
        reference: Vec<f64>,
        current: Vec<f64>,
        edges: Vec<f64>,
        psi: f64,
    }

    #[derive(Deserialize)]
    struct ShiftCase {
        reference: Vec<u64>,
        current: Vec<u64>,
        psi: f64,
    }

    #[derive(Deserialize)]
    struct Reference {
        epsilon: f64,
        psi: Vec<PsiCase>,
        segment_shift: Vec<ShiftCase>,
    }

    fn reference() -> Reference {
        serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/reference/kpi/psi.json"
        )))
        .unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
    }

    #[test]
    fn psi_matches_numpy_reference() {
        let r = reference();
        let t = DriftThresholds::default();
        assert_eq!(t.epsilon(), r.epsilon);
        assert!(r.psi.len() >= 5);
        for c in &r.psi {
            let bins = PsiBins::from_reference(&c.reference, 10).unwrap();
            assert_eq!(bins.edges().len(), c.edges.len(), "{}", c.name);
            for (ours, theirs) in bins.edges().iter().zip(&c.edges) {
                assert!(close(*ours, *theirs), "{}: edge {ours} vs {theirs}", c.name);
            }
            let got = psi(&c.reference, &c.current, &t).unwrap();
            assert!(close(got, c.psi), "{}: psi {got} vs {}", c.name, c.psi);
        }
    }

    #[test]
    fn segment_shift_matches_reference() {
        let r = reference();
        let t = DriftThresholds::default();
        for c in &r.segment_shift {
            let s = segment_shift(&c.reference, &c.current, &t).unwrap();
            assert!(close(s.psi, c.psi), "{} vs {}", s.psi, c.psi);
        }
    }

    #[test]
    fn identical_populations_do_not_drift_and_a_shift_does() {
        let t = DriftThresholds::default();
        let base: Vec<f64> = (0..1000).map(|i| f64::from(i) / 10.0).collect();
        assert_eq!(psi(&base, &base, &t).unwrap(), 0.0);
        let shifted: Vec<f64> = base.iter().map(|x| x + 30.0).collect();
        let d = feature_drift("recency", &base, &shifted, &t).unwrap();
        assert_eq!(d.level, DriftLevel::Act);
        assert!(d.ks_significant);
        assert!((d.ks.statistic - 0.3).abs() < 1e-12);
    }

    #[test]
    fn hand_worked_psi_with_an_emptied_bin() {
        // Shares 0.5/0.5 → 1.0/0.0: the empty bin is floored at 1e-4.
        // (1 − 0.5)·ln(2) + (1e-4 − 0.5)·ln(1e-4 / 0.5)
        let expected = 0.5 * 2f64.ln() + (1e-4 - 0.5) * (1e-4f64 / 0.5).ln();
        let got = psi_from_shares(&[0.5, 0.5], &[1.0, 0.0], 1e-4).unwrap();
        assert!((got - expected).abs() < 1e-15);
        assert!(got > 4.0);
    }

    #[test]
    fn thresholds_and_inputs_are_validated() {
        assert!(DriftThresholds::new(0.2, 0.1, 0.05, 1e-4, 10).is_err());
        assert!(DriftThresholds::new(0.1, 0.2, 1.0, 1e-4, 10).is_err());
        assert!(DriftThresholds::new(0.1, 0.2, 0.05, 0.0, 10).is_err());
        assert!(DriftThresholds::new(0.1, 0.2, 0.05, 1e-4, 1).is_err());
        let t = DriftThresholds::new(0.1, 0.25, 0.01, 1e-3, 5).unwrap();
        assert_eq!(t.level(0.09), DriftLevel::Stable);
        assert_eq!(t.level(0.1), DriftLevel::Warn);
        assert_eq!(t.level(0.25), DriftLevel::Act);
        assert_eq!(
            psi(&[], &[1.0], &t),
            Err(KpiError::EmptySample("reference"))
        );
        assert_eq!(
            psi(&[1.0], &[f64::INFINITY], &t),
            Err(KpiError::NonFiniteSample("sample"))
        );
        assert!(segment_shift(&[0, 0], &[1, 1], &t).is_err());
        assert!(segment_shift(&[1, 1], &[1, 1, 1], &t).is_err());
        // All-tied reference: one edge, two bins.
        let bins = PsiBins::from_reference(&[3.0; 50], 10).unwrap();
        assert_eq!(bins.edges(), &[3.0]);
        assert_eq!(bins.shares(&[3.0, 4.0]).unwrap(), vec![0.5, 0.5]);
    }
}
