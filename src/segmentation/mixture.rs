//! Gaussian mixture and DBSCAN through linfa-clustering, behind [`Clustering`].
//!
//! Both run on the model matrix from [`super::preprocess`]. The Gaussian mixture uses full
//! covariances, is initialised by linfa's k-means from a ChaCha8 generator seeded with the
//! run's seed (so the same seed gives the same memberships), and assigns each customer to its
//! most likely component. DBSCAN's noise points get their own label, the last one, recorded
//! in [`Clustering::noise`].

use linfa::DatasetBase;
use linfa::ParamGuard;
use linfa::prelude::{Fit, Predict, Transformer};
use linfa_clustering::{Dbscan, GaussianMixtureModel};
use ndarray::ArrayView2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::explain::{MemberDetail, PointKind, RunModel};
use super::{
    Algorithm, Clustering, Result, SegmentationError, inertia_of, segment_centres, validate_matrix,
};

/// Parameters of a Gaussian mixture fit (defaults as scikit-learn's `GaussianMixture`).
#[derive(Debug, Clone, PartialEq)]
pub struct GmmParams {
    /// Number of components, `1..=n`.
    pub k: usize,
    /// Seed of the initialisation.
    pub seed: u64,
    /// Maximum EM iterations (100).
    pub max_iter: u64,
    /// Convergence threshold on the change of the mean log-likelihood bound (1e-3).
    pub tol: f64,
    /// Added to covariance diagonals to keep them positive definite (1e-6).
    pub reg_covar: f64,
}

impl GmmParams {
    /// k components, the given seed, defaults otherwise.
    pub fn new(k: usize, seed: u64) -> Self {
        Self {
            k,
            seed,
            max_iter: 100,
            tol: 1e-3,
            reg_covar: 1e-6,
        }
    }
}

/// Fits a Gaussian mixture and labels each row with its most likely component. Centres are
/// the component means.
pub fn gmm(x: &ArrayView2<'_, f64>, params: &GmmParams) -> Result<Clustering> {
    gmm_with_model(x, params).map(|(c, _)| c)
}

/// [`gmm`], with the fitted mixture (weights, means, full covariances, by component) that
/// explains each member's posterior.
pub fn gmm_with_model(
    x: &ArrayView2<'_, f64>,
    params: &GmmParams,
) -> Result<(Clustering, RunModel)> {
    validate_matrix(x)?;
    let n = x.nrows();
    if params.k == 0 || params.k > n {
        return Err(SegmentationError::InvalidK {
            k: params.k,
            n,
            reason: "the number of components must be between 1 and the number of customers",
        });
    }
    let failed = |e: String| SegmentationError::Algorithm {
        algorithm: "Gaussian mixture",
        message: e,
    };
    let data = DatasetBase::from(x.to_owned());
    let model =
        GaussianMixtureModel::params_with_rng(params.k, ChaCha8Rng::seed_from_u64(params.seed))
            .max_n_iterations(params.max_iter)
            .tolerance(params.tol)
            .reg_covariance(params.reg_covar)
            .n_runs(1)
            .fit(&data)
            .map_err(|e| failed(e.to_string()))?;
    let labels: Vec<usize> = model.predict(x).to_vec();
    let centres = model.means().to_owned();
    let fitted = RunModel::Gmm {
        weights: model.weights().to_vec(),
        means: centres.rows().into_iter().map(|r| r.to_vec()).collect(),
        covariances: model
            .covariances()
            .outer_iter()
            .map(|c| c.rows().into_iter().map(|r| r.to_vec()).collect())
            .collect(),
    };
    Ok((
        Clustering {
            algorithm: Algorithm::Gmm,
            inertia: inertia_of(x, &labels, &centres),
            labels,
            n_segments: params.k,
            noise: None,
            centres,
            iterations: 0,
        },
        fitted,
    ))
}

/// DBSCAN refuses populations above this size. linfa's DBSCAN answers one k-d-tree range
/// query per point and materialises each neighbourhood; with an ε wide enough to find
/// clusters in 8 standardised dimensions the tree prunes little and the time grows
/// quadratically: measured on the benchmark data (ε = 1.2, min_points = 10) 0.26 s for
/// 10,000 rows and 4.2 s for 40,000, so about 30 s at this bound and some 45 minutes at a
/// million, with neighbourhood lists of dense regions growing with n as well. Beyond it, use
/// k-means or a Gaussian mixture, or run DBSCAN on a sample.
pub const DBSCAN_MAX_CUSTOMERS: usize = 100_000;

/// Parameters of DBSCAN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DbscanParams {
    /// Neighbourhood radius ε (Euclidean, in model units), > 0.
    pub eps: f64,
    /// Points (the point itself included) within ε that make a point core, ≥ 2; as
    /// scikit-learn's `min_samples`.
    pub min_points: usize,
}

/// Runs DBSCAN. Clusters are numbered in discovery order; noise points, if any, get the label
/// after the last cluster, given in [`Clustering::noise`]. Deterministic: no seed needed.
pub fn dbscan(x: &ArrayView2<'_, f64>, params: &DbscanParams) -> Result<Clustering> {
    validate_matrix(x)?;
    let n = x.nrows();
    if n > DBSCAN_MAX_CUSTOMERS {
        return Err(SegmentationError::TooLargeForDbscan {
            n,
            limit: DBSCAN_MAX_CUSTOMERS,
        });
    }
    if !(params.eps > 0.0 && params.eps.is_finite()) {
        return Err(SegmentationError::InvalidParameter {
            name: "eps",
            reason: format!("must be a positive number, got {}", params.eps),
        });
    }
    if params.min_points < 2 {
        return Err(SegmentationError::InvalidParameter {
            name: "min_points",
            reason: format!("must be at least 2, got {}", params.min_points),
        });
    }
    let checked = Dbscan::params(params.min_points)
        .tolerance(params.eps)
        .check()
        .map_err(|e| SegmentationError::Algorithm {
            algorithm: "DBSCAN",
            message: e.to_string(),
        })?;
    let raw = checked.transform(x);
    let clusters = raw.iter().flatten().max().map_or(0, |m| m + 1);
    let has_noise = raw.iter().any(Option::is_none);
    let labels: Vec<usize> = raw.iter().map(|l| l.unwrap_or(clusters)).collect();
    let n_segments = clusters + usize::from(has_noise);
    let (centres, _) = segment_centres(x, &labels, n_segments);
    Ok(Clustering {
        algorithm: Algorithm::Dbscan,
        inertia: inertia_of(x, &labels, &centres),
        labels,
        n_segments,
        noise: has_noise.then_some(clusters),
        centres,
        iterations: 0,
    })
}

/// Each point's place for DBSCAN, as the clustering defines it: core when at least
/// `min_points` points (itself included) lie within ε, with distance 0; otherwise border or
/// noise, with the distance to the nearest core point (border: within ε). One range query per
/// point and one nearest-neighbour query per non-core point, on k-d trees: about the cost of
/// DBSCAN itself, which is bounded by [`DBSCAN_MAX_CUSTOMERS`].
pub fn dbscan_points(x: &ArrayView2<'_, f64>, params: &DbscanParams) -> Vec<MemberDetail> {
    use linfa_nn::distance::L2Dist;
    use linfa_nn::{KdTree, NearestNeighbour};
    let standard = x.as_standard_layout().to_owned();
    let Ok(all) = KdTree.from_batch(&standard, L2Dist) else {
        return Vec::new();
    };
    let core: Vec<bool> = standard
        .rows()
        .into_iter()
        .map(|row| all.within_range(row, params.eps).map_or(0, |n| n.len()) >= params.min_points)
        .collect();
    let core_rows: Vec<usize> = (0..core.len()).filter(|&i| core[i]).collect();
    let core_points = standard.select(ndarray::Axis(0), &core_rows);
    let tree = KdTree.from_batch(&core_points, L2Dist).ok();
    standard
        .rows()
        .into_iter()
        .zip(&core)
        .map(|(row, &is_core)| {
            if is_core {
                return MemberDetail::Dbscan {
                    point: PointKind::Core,
                    nearest_core: 0.0,
                };
            }
            let nearest = tree
                .as_ref()
                .and_then(|t| t.k_nearest(row, 1).ok())
                .and_then(|n| {
                    n.first().map(|(p, _)| {
                        super::explain::distance(
                            p.as_slice().unwrap_or_default(),
                            row.as_slice().unwrap_or_default(),
                        )
                    })
                })
                .unwrap_or(f64::INFINITY);
            MemberDetail::Dbscan {
                point: if nearest <= params.eps {
                    PointKind::Border
                } else {
                    PointKind::Noise
                },
                nearest_core: nearest,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segmentation::quality::adjusted_rand_index;
    use ndarray::Array2;
    use rand::Rng;

    fn blobs(seed: u64) -> (Array2<f64>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centres = [[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]];
        let mut x = Array2::zeros((300, 2));
        let mut truth = vec![];
        for i in 0..300 {
            for f in 0..2 {
                let u: f64 = (0..4).map(|_| rng.r#gen::<f64>() - 0.5).sum();
                x[[i, f]] = centres[i % 3][f] + u;
            }
            truth.push(i % 3);
        }
        (x, truth)
    }

    /// Core points have `min_points` within ε (themselves included); 0.4 reaches the core point
    /// 0.2 at 0.2 ≤ ε (border); 5.0 is 4.8 from it (noise).
    #[test]
    fn dbscan_points_are_core_border_or_noise_with_the_nearest_core_distance() {
        let x = ndarray::array![[0.0], [0.1], [0.2], [0.4], [5.0]];
        let points = dbscan_points(
            &x.view(),
            &DbscanParams {
                eps: 0.25,
                min_points: 3,
            },
        );
        let kinds: Vec<String> = points.iter().map(MemberDetail::encode).collect();
        assert_eq!(
            kinds,
            ["core", "core", "core", "border:0.200000", "noise:4.800000"]
        );
    }

    #[test]
    fn gmm_recovers_blobs_and_is_seeded() {
        let (x, truth) = blobs(1);
        let a = gmm(&x.view(), &GmmParams::new(3, 5)).unwrap();
        assert!(adjusted_rand_index(&truth, &a.labels).unwrap() > 0.95);
        assert_eq!(a.algorithm, Algorithm::Gmm);
        assert_eq!(a.centres.dim(), (3, 2));
        assert_eq!(a, gmm(&x.view(), &GmmParams::new(3, 5)).unwrap());
        assert!(matches!(
            gmm(&x.view(), &GmmParams::new(301, 5)),
            Err(SegmentationError::InvalidK { .. })
        ));
    }

    #[test]
    fn dbscan_finds_blobs_and_marks_noise() {
        let (mut x, truth) = blobs(2);
        // One far outlier.
        x[[0, 0]] = 100.0;
        let c = dbscan(
            &x.view(),
            &DbscanParams {
                eps: 0.6,
                min_points: 5,
            },
        )
        .unwrap();
        let noise = c.noise.expect("the outlier is noise");
        assert_eq!(c.labels[0], noise);
        assert_eq!(noise, c.n_segments - 1);
        let members: Vec<usize> = (1..300).filter(|&i| c.labels[i] != noise).collect();
        let t: Vec<usize> = members.iter().map(|&i| truth[i]).collect();
        let l: Vec<usize> = members.iter().map(|&i| c.labels[i]).collect();
        assert!(adjusted_rand_index(&t, &l).unwrap() > 0.95);
        assert!(members.len() > 280);
    }

    #[test]
    fn dbscan_bounds_and_parameters() {
        let big = Array2::<f64>::zeros((DBSCAN_MAX_CUSTOMERS + 1, 1));
        let err = dbscan(
            &big.view(),
            &DbscanParams {
                eps: 1.0,
                min_points: 3,
            },
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("limited to 100000 customers"),
            "{err}"
        );
        let x = ndarray::array![[0.0], [1.0]];
        assert!(
            dbscan(
                &x.view(),
                &DbscanParams {
                    eps: 0.0,
                    min_points: 3
                }
            )
            .is_err()
        );
        assert!(
            dbscan(
                &x.view(),
                &DbscanParams {
                    eps: 1.0,
                    min_points: 1
                }
            )
            .is_err()
        );
        // Everything noise: a single noise segment.
        let c = dbscan(
            &x.view(),
            &DbscanParams {
                eps: 0.5,
                min_points: 2,
            },
        )
        .unwrap();
        assert_eq!(
            (c.n_segments, c.noise, c.labels.clone()),
            (1, Some(0), vec![0, 0])
        );
    }
}
