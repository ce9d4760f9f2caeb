//! Cluster quality scores (as `sklearn.metrics`) and the choice of k by silhouette.
//!
//! Labels may be any `usize` values; like scikit-learn's `LabelEncoder` they are mapped to
//! dense indices in sorted order first, so a sample that misses a segment is handled.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use ndarray::{Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::kmeans::{self, KMeansFit, KMeansParams};
use super::{Result, SegmentationError, validate_matrix};

/// Silhouette sample size used when the caller has no preference: exact silhouette costs
/// O(n²) distances, 10,000 rows is 10⁸ of them (a fraction of a second on two cores).
pub const DEFAULT_SILHOUETTE_SAMPLE: usize = 10_000;

/// Dense labels `0..m` (in sorted order of the original values) and `m`.
fn encode(labels: &[usize]) -> (Vec<usize>, usize) {
    // Segment labels are small (below the number of segments): one pass marks the labels
    // present and one maps them, instead of sorting a copy of a million labels.
    let max = labels.iter().copied().max().unwrap_or(0);
    if max <= labels.len().max(1024) {
        let mut present = vec![false; max + 1];
        for &l in labels {
            present[l] = true;
        }
        let mut dense = vec![usize::MAX; max + 1];
        let mut m = 0;
        for (d, _) in dense.iter_mut().zip(&present).filter(|(_, p)| **p) {
            *d = m;
            m += 1;
        }
        return (labels.iter().map(|&l| dense[l]).collect(), m);
    }
    let mut uniq: Vec<usize> = labels.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let map: HashMap<usize, usize> = uniq.iter().enumerate().map(|(i, &l)| (l, i)).collect();
    (labels.iter().map(|l| map[l]).collect(), uniq.len())
}

/// Validates data and labels for a score that needs 2..=n-1 segments; returns dense labels.
fn prepare(
    x: &ArrayView2<'_, f64>,
    labels: &[usize],
    metric: &'static str,
) -> Result<(Vec<usize>, usize)> {
    validate_matrix(x)?;
    if labels.len() != x.nrows() {
        return Err(SegmentationError::LabelMismatch(format!(
            "{} labels for {} rows",
            labels.len(),
            x.nrows()
        )));
    }
    let (dense, m) = encode(labels);
    if m < 2 || m >= x.nrows() {
        return Err(SegmentationError::DegenerateLabels { metric, found: m });
    }
    Ok((dense, m))
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// Mean silhouette coefficient over all rows, exact (O(n²) distances; parallel over rows).
/// Rows alone in their segment score 0, as in scikit-learn.
pub fn silhouette(x: &ArrayView2<'_, f64>, labels: &[usize]) -> Result<f64> {
    let (dense, m) = prepare(x, labels, "silhouette")?;
    let data = x.as_standard_layout();
    let d = x.ncols();
    let flat = data.as_slice().expect("standard layout");
    let mut sizes = vec![0usize; m];
    for &l in &dense {
        sizes[l] += 1;
    }
    let n = dense.len();
    let scores: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|i| {
            let xi = &flat[i * d..(i + 1) * d];
            let mut sums = vec![0.0; m];
            for (j, xj) in flat.chunks_exact(d).enumerate() {
                sums[dense[j]] += dist(xi, xj);
            }
            let own = dense[i];
            if sizes[own] == 1 {
                return 0.0;
            }
            let a = sums[own] / (sizes[own] - 1) as f64;
            let b = (0..m)
                .filter(|&c| c != own)
                .map(|c| sums[c] / sizes[c] as f64)
                .fold(f64::INFINITY, f64::min);
            let denom = a.max(b);
            if denom > 0.0 { (b - a) / denom } else { 0.0 }
        })
        .collect();
    Ok(scores.iter().sum::<f64>() / n as f64)
}

/// `size` distinct row indices out of `n`, drawn with a seeded ChaCha8 generator, sorted.
pub fn sample_indices(n: usize, size: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut idx = rand::seq::index::sample(&mut rng, n, size.min(n)).into_vec();
    idx.sort_unstable();
    idx
}

/// Silhouette on a seeded sample of at most `sample_size` rows (exact when `n ≤ sample_size`).
/// Like scikit-learn's `silhouette_score(..., sample_size=...)`, distances are taken within
/// the sample only.
pub fn silhouette_sampled(
    x: &ArrayView2<'_, f64>,
    labels: &[usize],
    sample_size: usize,
    seed: u64,
) -> Result<f64> {
    if sample_size < 2 {
        return Err(SegmentationError::InvalidParameter {
            name: "silhouette_sample",
            reason: format!("must be at least 2, got {sample_size}"),
        });
    }
    if labels.len() != x.nrows() {
        return Err(SegmentationError::LabelMismatch(format!(
            "{} labels for {} rows",
            labels.len(),
            x.nrows()
        )));
    }
    if x.nrows() <= sample_size {
        return silhouette(x, labels);
    }
    let idx = sample_indices(x.nrows(), sample_size, seed);
    let sub = x.select(Axis(0), &idx);
    let sub_labels: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
    silhouette(&sub.view(), &sub_labels)
}

/// Centroids (`m × d`), sizes and the overall mean for dense labels.
fn centroids(x: &ArrayView2<'_, f64>, dense: &[usize], m: usize) -> (Array2<f64>, Vec<usize>) {
    super::segment_centres(x, dense, m)
}

/// Calinski-Harabasz (variance ratio) score; 1.0 when every segment is a single point value,
/// as scikit-learn.
pub fn calinski_harabasz(x: &ArrayView2<'_, f64>, labels: &[usize]) -> Result<f64> {
    let (dense, m) = prepare(x, labels, "Calinski-Harabasz")?;
    let n = x.nrows();
    let (cent, sizes) = centroids(x, &dense, m);
    let mean = super::column_means(x);
    let extra: f64 = cent
        .outer_iter()
        .zip(&sizes)
        .map(|(c, &s)| {
            s as f64
                * c.iter()
                    .zip(mean.iter())
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
        })
        .sum();
    let d = x.ncols();
    let centre = |l: usize| &cent.as_slice().expect("an owned matrix")[l * d..(l + 1) * d];
    // Added up from -0.0, as `Iterator::sum` does: the same figure as summing the rows' terms.
    let mut intra = -0.0_f64;
    super::rows_with(x, &dense, |r, l| {
        intra += r
            .iter()
            .zip(centre(l))
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>();
    });
    if intra == 0.0 {
        return Ok(1.0);
    }
    Ok(extra * (n - m) as f64 / (intra * (m - 1) as f64))
}

/// Davies-Bouldin score (lower is better), as scikit-learn.
pub fn davies_bouldin(x: &ArrayView2<'_, f64>, labels: &[usize]) -> Result<f64> {
    let (dense, m) = prepare(x, labels, "Davies-Bouldin")?;
    let (cent, sizes) = centroids(x, &dense, m);
    let d = x.ncols();
    let centre = |l: usize| &cent.as_slice().expect("an owned matrix")[l * d..(l + 1) * d];
    let mut intra = vec![0.0; m];
    super::rows_with(x, &dense, |r, l| {
        intra[l] += r
            .iter()
            .zip(centre(l))
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt();
    });
    for (s, &c) in intra.iter_mut().zip(&sizes) {
        *s /= c as f64;
    }
    let cd = |i: usize, j: usize| {
        cent.row(i)
            .iter()
            .zip(cent.row(j))
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt()
    };
    let close = |v: f64| v.abs() <= 1e-8;
    let all_centres_equal = (0..m).all(|i| (0..m).all(|j| close(cd(i, j))));
    if intra.iter().all(|&v| close(v)) || all_centres_equal {
        return Ok(0.0);
    }
    let total: f64 = (0..m)
        .map(|i| {
            (0..m)
                .filter(|&j| j != i)
                .map(|j| {
                    let c = cd(i, j);
                    if c == 0.0 {
                        0.0
                    } else {
                        (intra[i] + intra[j]) / c
                    }
                })
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .sum();
    Ok(total / m as f64)
}

/// Adjusted Rand index between two labellings of the same rows (1 = identical partitions up
/// to renaming, about 0 = chance agreement). Used for stability between runs.
pub fn adjusted_rand_index(a: &[usize], b: &[usize]) -> Result<f64> {
    if a.is_empty() {
        return Err(SegmentationError::Empty);
    }
    if a.len() != b.len() {
        return Err(SegmentationError::LabelMismatch(format!(
            "{} labels against {} labels",
            a.len(),
            b.len()
        )));
    }
    let (da, ma) = encode(a);
    let (db, mb) = encode(b);
    let mut table = vec![0i128; ma * mb];
    for (&i, &j) in da.iter().zip(&db) {
        table[i * mb + j] += 1;
    }
    let n = a.len() as i128;
    let rows: Vec<i128> = (0..ma)
        .map(|i| table[i * mb..(i + 1) * mb].iter().sum())
        .collect();
    let cols: Vec<i128> = (0..mb)
        .map(|j| (0..ma).map(|i| table[i * mb + j]).sum())
        .collect();
    let sum_sq: i128 = table.iter().map(|v| v * v).sum();
    // Pair confusion matrix exactly as sklearn.metrics.pair_confusion_matrix, in integers.
    let tp = sum_sq - n;
    let fp: i128 = table
        .chunks_exact(mb)
        .map(|r| r.iter().zip(&cols).map(|(v, c)| v * c).sum::<i128>())
        .sum::<i128>()
        - sum_sq;
    let fneg: i128 = (0..ma)
        .map(|i| (0..mb).map(|j| table[i * mb + j] * rows[i]).sum::<i128>())
        .sum::<i128>()
        - sum_sq;
    let tn = n * n - fp - fneg - sum_sq;
    if fneg == 0 && fp == 0 {
        return Ok(1.0);
    }
    let num = 2.0 * (tp * tn - fneg * fp) as f64;
    let den = ((tp + fneg) * (fneg + tn) + (tp + fp) * (fp + tn)) as f64;
    Ok(num / den)
}

/// Scores of one candidate k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KScore {
    /// The number of clusters.
    pub k: usize,
    /// Mean silhouette on the seeded sample (higher is better); the criterion.
    pub silhouette: f64,
    /// Calinski-Harabasz on all rows (higher is better), shown beside it.
    pub calinski_harabasz: f64,
    /// Davies-Bouldin on all rows (lower is better), shown beside it.
    pub davies_bouldin: f64,
    /// k-means inertia.
    pub inertia: f64,
}

/// The outcome of choosing k: every candidate's scores and the chosen fit.
#[derive(Debug, Clone, PartialEq)]
pub struct KSelection {
    /// Scores in increasing k.
    pub scores: Vec<KScore>,
    /// The k with the highest silhouette (the smallest such k on ties).
    pub k: usize,
    /// The k-means fit for that k.
    pub fit: KMeansFit,
}

/// Fits k-means for each k in `ks` (same seed) and chooses the k with the highest silhouette,
/// computed on the same seeded sample of at most `silhouette_sample` rows for every k.
pub fn choose_k(
    x: &ArrayView2<'_, f64>,
    ks: RangeInclusive<usize>,
    seed: u64,
    silhouette_sample: usize,
) -> Result<KSelection> {
    choose_k_observed(x, ks, seed, silhouette_sample, &mut |_| {})
}

/// [`choose_k`], telling `progress` how far the candidates have come, as a fraction in [0, 1].
pub fn choose_k_observed(
    x: &ArrayView2<'_, f64>,
    ks: RangeInclusive<usize>,
    seed: u64,
    silhouette_sample: usize,
    progress: &mut dyn FnMut(f64),
) -> Result<KSelection> {
    validate_matrix(x)?;
    let n = x.nrows();
    if ks.is_empty() || *ks.start() < 2 || *ks.end() >= n {
        return Err(SegmentationError::InvalidK {
            k: if *ks.start() < 2 {
                *ks.start()
            } else {
                *ks.end()
            },
            n,
            reason: "a range of k to choose from must lie within 2..=n-1",
        });
    }
    let mut scores = Vec::new();
    let mut best: Option<(f64, KMeansFit)> = None;
    let candidates = ks.clone().count() as f64;
    for (done, k) in ks.enumerate() {
        let share = |within: f64| (done as f64 + within) / candidates;
        let fit =
            kmeans::fit_observed(x, &KMeansParams::new(k, seed), &mut |f| progress(share(f)))?;
        let score = KScore {
            k,
            silhouette: silhouette_sampled(x, &fit.labels, silhouette_sample, seed)?,
            calinski_harabasz: calinski_harabasz(x, &fit.labels)?,
            davies_bouldin: davies_bouldin(x, &fit.labels)?,
            inertia: fit.inertia,
        };
        if best.as_ref().is_none_or(|(s, _)| score.silhouette > *s) {
            best = Some((score.silhouette, fit));
        }
        scores.push(score);
        progress(share(1.0));
    }
    let (_, fit) = best.expect("non-empty range");
    Ok(KSelection {
        k: fit.centres.nrows(),
        scores,
        fit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use serde_json::Value;

    const REFERENCE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/reference/segmentation/quality.json"
    ));

    use crate::segmentation::reference::matrix;

    fn labels(v: &Value) -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    }

    #[test]
    fn encoding_maps_labels_to_their_rank_among_the_labels_present() {
        assert_eq!(encode(&[7, 2, 7, 5]), (vec![2, 0, 2, 1], 3));
        assert_eq!(encode(&[]), (vec![], 0));
        // Labels too large for a table go through the sorted path, with the same result.
        assert_eq!(encode(&[usize::MAX, 3, usize::MAX]), (vec![1, 0, 1], 2));
    }

    #[test]
    fn scores_match_sklearn_metrics() {
        let r: Value = serde_json::from_str(REFERENCE).unwrap();
        for case in r["scores"].as_array().unwrap() {
            let x = matrix(&case["x"]);
            let l = labels(&case["labels"]);
            let name = case["name"].as_str().unwrap();
            let s = silhouette(&x.view(), &l).unwrap();
            assert_relative_eq!(s, case["silhouette"].as_f64().unwrap(), max_relative = 1e-9);
            let ch = calinski_harabasz(&x.view(), &l).unwrap();
            assert_relative_eq!(
                ch,
                case["calinski_harabasz"].as_f64().unwrap(),
                max_relative = 1e-9
            );
            let db = davies_bouldin(&x.view(), &l).unwrap();
            assert_relative_eq!(
                db,
                case["davies_bouldin"].as_f64().unwrap(),
                max_relative = 1e-9
            );
            // The sampled silhouette with a sample at least n is the exact one.
            assert_eq!(
                silhouette_sampled(&x.view(), &l, x.nrows(), 1).unwrap(),
                s,
                "{name}"
            );
        }
    }

    #[test]
    fn ari_matches_sklearn() {
        let r: Value = serde_json::from_str(REFERENCE).unwrap();
        for case in r["ari"].as_array().unwrap() {
            let a = labels(&case["a"]);
            let b = labels(&case["b"]);
            let got = adjusted_rand_index(&a, &b).unwrap();
            assert_relative_eq!(
                got,
                case["ari"].as_f64().unwrap(),
                max_relative = 1e-9,
                epsilon = 1e-15
            );
        }
    }

    #[test]
    fn sampled_silhouette_is_seeded_and_uses_the_sample() {
        let r: Value = serde_json::from_str(REFERENCE).unwrap();
        let case = &r["scores"][0];
        let x = matrix(&case["x"]);
        let l = labels(&case["labels"]);
        let a = silhouette_sampled(&x.view(), &l, 100, 5).unwrap();
        assert_eq!(a, silhouette_sampled(&x.view(), &l, 100, 5).unwrap());
        // It is exactly the exact silhouette of that subset.
        let idx = sample_indices(x.nrows(), 100, 5);
        assert_eq!(idx.len(), 100);
        let sub = x.select(Axis(0), &idx);
        let sl: Vec<usize> = idx.iter().map(|&i| l[i]).collect();
        assert_eq!(a, silhouette(&sub.view(), &sl).unwrap());
        assert_ne!(sample_indices(x.nrows(), 100, 6), idx);
    }

    #[test]
    fn degenerate_labellings_are_refused() {
        let x = ndarray::array![[0.0], [1.0], [2.0]];
        assert!(matches!(
            silhouette(&x.view(), &[0, 0, 0]),
            Err(SegmentationError::DegenerateLabels { found: 1, .. })
        ));
        assert!(matches!(
            calinski_harabasz(&x.view(), &[0, 1, 2]),
            Err(SegmentationError::DegenerateLabels { found: 3, .. })
        ));
        assert!(matches!(
            davies_bouldin(&x.view(), &[0, 1]),
            Err(SegmentationError::LabelMismatch(_))
        ));
        assert_eq!(adjusted_rand_index(&[], &[]), Err(SegmentationError::Empty));
        assert!(adjusted_rand_index(&[0, 1], &[0]).is_err());
    }

    #[test]
    fn choose_k_prefers_the_true_number_of_blobs() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let centres = [[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]];
        let mut x = Array2::zeros((300, 2));
        for i in 0..300 {
            for f in 0..2 {
                let u: f64 = (0..3)
                    .map(|_| rand::Rng::r#gen::<f64>(&mut rng) - 0.5)
                    .sum();
                x[[i, f]] = centres[i % 3][f] + u;
            }
        }
        let sel = choose_k(&x.view(), 2..=6, 1, 200).unwrap();
        assert_eq!(sel.k, 3);
        assert_eq!(
            sel.scores.iter().map(|s| s.k).collect::<Vec<_>>(),
            vec![2, 3, 4, 5, 6]
        );
        let best = sel.scores.iter().find(|s| s.k == 3).unwrap();
        assert!(sel.scores.iter().all(|s| s.silhouette <= best.silhouette));
        // The other scores agree that 3 is best here.
        assert!(
            sel.scores
                .iter()
                .all(|s| s.davies_bouldin >= best.davies_bouldin)
        );
        assert!(choose_k(&x.view(), 1..=3, 1, 200).is_err());
        assert!(choose_k(&x.view(), 2..=300, 1, 200).is_err());
    }
}
