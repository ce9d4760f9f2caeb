//! The segment map: a 2-D principal-component projection of (a sample of) the customers and
//! of the segment centres, each axis labelled by the features with the strongest loadings.
//!
//! PCA here is the eigen-decomposition of the sample covariance matrix (divisor n − 1, as
//! scikit-learn's `explained_variance_`) of the model matrix. The matrix is `d × d` with d
//! the number of model columns (tens at most), so a cyclic Jacobi eigen-solver written here
//! is exact to rounding and avoids a LAPACK dependency; the covariance itself is one parallel
//! pass over the rows. Sign convention (scikit-learn's `svd_flip` with
//! `u_based_decision=False`): in each component the loading of largest magnitude is positive,
//! so the map does not flip between runs.

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::quality::sample_indices;
use super::{Result, SegmentationError, validate_matrix};

/// A fitted projection onto (up to) two principal axes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pca {
    /// Column means of the fitted data.
    pub mean: Vec<f64>,
    /// Principal axes (unit vectors), `min(2, d)` of them, each of length d.
    pub components: Vec<Vec<f64>>,
    /// Variance along each axis (eigenvalues of the covariance).
    pub explained_variance: Vec<f64>,
    /// Share of the total variance along each axis.
    pub explained_variance_ratio: Vec<f64>,
}

/// Symmetric eigen-decomposition by cyclic Jacobi rotations; returns eigenvalues and
/// eigenvectors (as rows), in decreasing eigenvalue order.
fn jacobi_eigh(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|p| (0..n).filter(move |&q| q != p).map(move |q| (p, q)))
            .map(|(p, q)| a[p * n + q] * a[p * n + q])
            .sum();
        if off <= scale * 1e-32 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A ← Jᵀ A J with J the rotation in the (p, q) plane.
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[p * n + k];
                    let aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]).then(i.cmp(&j)));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let vectors = order
        .iter()
        .map(|&i| (0..n).map(|k| v[k * n + i]).collect())
        .collect();
    (values, vectors)
}

/// Rows per parallel work item of the covariance pass (fixed for determinism).
const CHUNK_ROWS: usize = 4096;

impl Pca {
    /// Fits the two leading principal axes of `x` (needs at least two rows).
    pub fn fit(x: &ArrayView2<'_, f64>) -> Result<Pca> {
        validate_matrix(x)?;
        let (n, d) = x.dim();
        if n < 2 {
            return Err(SegmentationError::InvalidParameter {
                name: "population",
                reason: "a map needs at least two customers".into(),
            });
        }
        let std = x.as_standard_layout();
        let data = std.as_slice().expect("standard layout");
        let mean = super::column_means(x);
        let parts: Vec<Vec<f64>> = data
            .par_chunks(CHUNK_ROWS * d)
            .map(|rows| {
                let mut c = vec![0.0; d * d];
                let mut centred = vec![0.0; d];
                for row in rows.chunks_exact(d) {
                    for ((o, v), m) in centred.iter_mut().zip(row).zip(&mean) {
                        *o = v - m;
                    }
                    for i in 0..d {
                        for j in i..d {
                            c[i * d + j] += centred[i] * centred[j];
                        }
                    }
                }
                c
            })
            .collect();
        let mut cov = vec![0.0; d * d];
        for p in &parts {
            for (a, v) in cov.iter_mut().zip(p) {
                *a += v;
            }
        }
        for i in 0..d {
            for j in i..d {
                let v = cov[i * d + j] / (n - 1) as f64;
                cov[i * d + j] = v;
                cov[j * d + i] = v;
            }
        }
        let total: f64 = (0..d).map(|i| cov[i * d + i]).sum();
        let (values, vectors) = jacobi_eigh(cov, d);
        let m = d.min(2);
        let components: Vec<Vec<f64>> = vectors
            .into_iter()
            .take(m)
            .map(|mut v| {
                let (imax, _) = v.iter().enumerate().fold((0, 0.0f64), |(bi, bv), (i, &x)| {
                    if x.abs() > bv { (i, x.abs()) } else { (bi, bv) }
                });
                if v[imax] < 0.0 {
                    v.iter_mut().for_each(|x| *x = -*x);
                }
                v
            })
            .collect();
        let explained_variance: Vec<f64> = values.iter().take(m).map(|v| v.max(0.0)).collect();
        let explained_variance_ratio = explained_variance
            .iter()
            .map(|v| if total > 0.0 { v / total } else { 0.0 })
            .collect();
        Ok(Pca {
            mean,
            components,
            explained_variance,
            explained_variance_ratio,
        })
    }

    /// Coordinates of the rows of `x` on the axes (`n × 2`; the second column is 0 when
    /// the data have a single column).
    pub fn project(&self, x: &ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        if x.ncols() != self.mean.len() {
            return Err(SegmentationError::LabelMismatch(format!(
                "{} columns to project, the map was fitted on {}",
                x.ncols(),
                self.mean.len()
            )));
        }
        let mut out = Array2::zeros((x.nrows(), 2));
        for (mut o, row) in out.outer_iter_mut().zip(x.outer_iter()) {
            for (a, comp) in self.components.iter().enumerate() {
                o[a] = row
                    .iter()
                    .zip(&self.mean)
                    .zip(comp)
                    .map(|((v, m), c)| (v - m) * c)
                    .sum();
            }
        }
        Ok(out)
    }
}

/// A feature and its loading on an axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loading {
    /// Model column name (a feature, or `feature=category`).
    pub feature: String,
    /// Its weight in the axis (the axis is a unit vector).
    pub loading: f64,
}

/// One axis of the map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapAxis {
    /// Share of the variance this axis shows.
    pub explained_variance_ratio: f64,
    /// The strongest loadings, largest magnitude first.
    pub top_loadings: Vec<Loading>,
    /// A label for the axis, e.g. `+monetary +frequency −recency`.
    pub label: String,
}

/// What the segment map draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMap {
    /// Sampled row indices (into the model matrix), sorted.
    pub rows: Vec<usize>,
    /// Their coordinates.
    pub points: Vec<[f64; 2]>,
    /// Their segments.
    pub labels: Vec<usize>,
    /// Coordinates of each segment centre.
    pub centres: Vec<[f64; 2]>,
    /// The axes (one or two).
    pub axes: Vec<MapAxis>,
}

/// Fits PCA on all rows of the model matrix `x`, projects a seeded sample of at most
/// `sample_size` rows and the segment `centres` (model space), and labels each axis with its
/// `top` strongest loadings. `names` are the model column names.
pub fn segment_map(
    x: &ArrayView2<'_, f64>,
    labels: &[usize],
    centres: &ArrayView2<'_, f64>,
    names: &[String],
    sample_size: usize,
    seed: u64,
    top: usize,
) -> Result<SegmentMap> {
    if labels.len() != x.nrows() {
        return Err(SegmentationError::LabelMismatch(format!(
            "{} labels for {} rows",
            labels.len(),
            x.nrows()
        )));
    }
    if names.len() != x.ncols() {
        return Err(SegmentationError::LabelMismatch(format!(
            "{} column names for {} columns",
            names.len(),
            x.ncols()
        )));
    }
    let pca = Pca::fit(x)?;
    let rows = sample_indices(x.nrows(), sample_size, seed);
    let sample = x.select(Axis(0), &rows);
    let pts = pca.project(&sample.view())?;
    let cts = pca.project(centres)?;
    let axes = pca
        .components
        .iter()
        .zip(&pca.explained_variance_ratio)
        .map(|(comp, &ratio)| {
            let mut order: Vec<usize> = (0..comp.len()).collect();
            order.sort_by(|&a, &b| comp[b].abs().total_cmp(&comp[a].abs()).then(a.cmp(&b)));
            let top_loadings: Vec<Loading> = order
                .iter()
                .take(top.max(1))
                .map(|&i| Loading {
                    feature: names[i].clone(),
                    loading: comp[i],
                })
                .collect();
            let label = top_loadings
                .iter()
                .map(|l| format!("{}{}", if l.loading >= 0.0 { "+" } else { "−" }, l.feature))
                .collect::<Vec<_>>()
                .join(" ");
            MapAxis {
                explained_variance_ratio: ratio,
                top_loadings,
                label,
            }
        })
        .collect();
    Ok(SegmentMap {
        labels: rows.iter().map(|&r| labels[r]).collect(),
        rows,
        points: pts.outer_iter().map(|r| [r[0], r[1]]).collect(),
        centres: cts.outer_iter().map(|r| [r[0], r[1]]).collect(),
        axes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use serde_json::Value;

    const REFERENCE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/reference/segmentation/pca.json"
    ));

    use crate::segmentation::reference::matrix;

    #[test]
    fn matches_sklearn_pca_up_to_sign() {
        let r: Value = serde_json::from_str(REFERENCE).unwrap();
        let x = matrix(&r["x"]);
        let pca = Pca::fit(&x.view()).unwrap();
        let comps = matrix(&r["components"]);
        let proj = matrix(&r["projected"]);
        let got = pca.project(&x.view()).unwrap();
        for a in 0..2 {
            let sign = if pca.components[a][0] * comps[[a, 0]] < 0.0 {
                -1.0
            } else {
                1.0
            };
            for (g, e) in pca.components[a].iter().zip(comps.row(a)) {
                assert_relative_eq!(g * sign, *e, max_relative = 1e-9, epsilon = 1e-12);
            }
            assert_relative_eq!(
                pca.explained_variance_ratio[a],
                r["explained_variance_ratio"][a].as_f64().unwrap(),
                max_relative = 1e-9
            );
            for (g, e) in got.column(a).iter().zip(proj.column(a)) {
                assert_relative_eq!(g * sign, *e, max_relative = 1e-9, epsilon = 1e-12);
            }
            // Our convention: the largest-magnitude loading is positive.
            let big = pca.components[a]
                .iter()
                .copied()
                .fold(0.0f64, |b, v| if v.abs() > b.abs() { v } else { b });
            assert!(big > 0.0);
        }
    }

    #[test]
    fn map_projects_sample_and_centres_and_labels_axes() {
        let r: Value = serde_json::from_str(REFERENCE).unwrap();
        let x = matrix(&r["x"]);
        let labels: Vec<usize> = (0..x.nrows())
            .map(|i| usize::from(x[[i, 0]] > 0.0))
            .collect();
        let (centres, _) = crate::segmentation::segment_centres(&x.view(), &labels, 2);
        let names: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let map = segment_map(&x.view(), &labels, &centres.view(), &names, 40, 3, 2).unwrap();
        assert_eq!(map.points.len(), 40);
        assert_eq!(map.rows.len(), 40);
        assert_eq!(map.centres.len(), 2);
        assert_eq!(map.axes.len(), 2);
        assert_eq!(map.axes[0].top_loadings.len(), 2);
        // The label names the two largest-magnitude loadings with their signs.
        let pca = Pca::fit(&x.view()).unwrap();
        let mut idx: Vec<usize> = (0..5).collect();
        idx.sort_by(|&i, &j| {
            pca.components[0][j]
                .abs()
                .total_cmp(&pca.components[0][i].abs())
        });
        let sign = |v: f64| if v >= 0.0 { "+" } else { "−" };
        let expected = format!(
            "{}{} {}{}",
            sign(pca.components[0][idx[0]]),
            names[idx[0]],
            sign(pca.components[0][idx[1]]),
            names[idx[1]]
        );
        assert_eq!(map.axes[0].label, expected);
        assert!(pca.components[0][idx[0]] > 0.0);
        // A centre projects to the mean of its members' projections (projection is affine).
        let all = pca.project(&x.view()).unwrap();
        let members: Vec<usize> = (0..x.nrows()).filter(|&i| labels[i] == 1).collect();
        let mean0 = members.iter().map(|&i| all[[i, 0]]).sum::<f64>() / members.len() as f64;
        assert_relative_eq!(map.centres[1][0], mean0, max_relative = 1e-9);
        // The same seed draws the same sample.
        assert_eq!(
            map,
            segment_map(&x.view(), &labels, &centres.view(), &names, 40, 3, 2).unwrap()
        );
    }

    #[test]
    fn single_column_and_constant_data() {
        let x = ndarray::array![[1.0], [2.0], [4.0]];
        let pca = Pca::fit(&x.view()).unwrap();
        assert_eq!(pca.components, vec![vec![1.0]]);
        assert_relative_eq!(pca.explained_variance_ratio[0], 1.0);
        let flat = ndarray::array![[1.0, 1.0], [1.0, 1.0]];
        let pca = Pca::fit(&flat.view()).unwrap();
        assert_eq!(pca.explained_variance_ratio, vec![0.0, 0.0]);
        assert!(Pca::fit(&ndarray::array![[1.0, 2.0]].view()).is_err());
    }
}
