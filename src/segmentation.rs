//! The numerical core of a segmentation run: pure functions on plain Rust types.
//!
//! The pipeline a run follows, one module per stage:
//! - [`preprocess`]: raw attribute columns → a dense, standardised, one-hot encoded matrix,
//!   with the fitted transform (to report in original units and to store with the run) and a
//!   record of how missing values were handled;
//! - [`kmeans`] (our own, parallel, sklearn-compatible), [`mixture`] (GMM and DBSCAN through
//!   linfa), [`rfm`] (quintile scores and named segments) and [`rules`] (attribute filters):
//!   each produces a [`Clustering`] or plain labels;
//! - [`quality`]: silhouette, Calinski-Harabasz, Davies-Bouldin, adjusted Rand index, and the
//!   choice of k by silhouette;
//! - [`pca`]: the 2-D segment map with axes labelled by their strongest loadings;
//! - [`profile`]: sizes, shares, lifts, distinguishing features, proposed names, distinctness.
//!
//! Nothing here touches the database, the network or the clock; the caller freezes the
//! population (consent) and persists the results.

pub mod attributes;
pub mod explain;
pub mod kmeans;
pub mod matching;
pub mod mixture;
pub mod pca;
pub mod pipeline;
pub mod preprocess;
pub mod profile;
pub mod quality;
#[cfg(test)]
mod reference;
pub mod rfm;
pub mod rules;
pub mod settings;
pub mod status;
pub mod valuation;

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

/// Everything that can go wrong in the segmentation core, with messages fit to show a user.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SegmentationError {
    /// The population (or a column) has no rows.
    #[error("the population is empty: there is nothing to segment")]
    Empty,
    /// No features were given.
    #[error("no features were selected")]
    NoFeatures,
    /// Columns of different lengths were passed together.
    #[error("feature '{feature}' has {found} values but the population has {expected} customers")]
    LengthMismatch {
        /// The offending feature.
        feature: String,
        /// The population size (length of the first column).
        expected: usize,
        /// The length of this column.
        found: usize,
    },
    /// A value is NaN or infinite where a number is required.
    #[error("feature '{feature}' has a non-finite value (NaN or infinity) for row {row}")]
    NonFinite {
        /// The offending feature (or `column N` for a bare matrix).
        feature: String,
        /// Zero-based row index.
        row: usize,
    },
    /// A value that cannot go through log1p (below -1).
    #[error(
        "feature '{feature}' is log-transformed but row {row} has value {value} (must be > -1)"
    )]
    LogDomain {
        /// The offending feature.
        feature: String,
        /// Zero-based row index.
        row: usize,
        /// The value found.
        value: f64,
    },
    /// The same feature name was given twice.
    #[error("feature '{0}' is listed twice")]
    DuplicateFeature(String),
    /// A missing-value rule that has no meaning for the feature's kind.
    #[error(
        "missing-value rule {rule:?} cannot be applied to categorical feature '{feature}'; use ImputeMode or ExcludeCustomer"
    )]
    RuleNotApplicable {
        /// The feature.
        feature: String,
        /// The rule asked for.
        rule: preprocess::MissingRule,
    },
    /// Every customer was excluded (or a feature has no observed value to impute from).
    #[error("feature '{0}' has no observed values to fit on")]
    NoObservedValues(String),
    /// k outside 1..=n (or below 2 where a quality score needs two clusters).
    #[error("invalid number of clusters k = {k} for {n} customers: {reason}")]
    InvalidK {
        /// The k asked for.
        k: usize,
        /// The number of customers.
        n: usize,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A parameter outside its domain.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name as the user knows it.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Labels and data disagree in length, or labels are out of range.
    #[error("labels do not match the data: {0}")]
    LabelMismatch(String),
    /// A quality score needs at least two clusters (and fewer than n).
    #[error("{metric} needs between 2 and n - 1 distinct segments, found {found}")]
    DegenerateLabels {
        /// Which score.
        metric: &'static str,
        /// How many distinct labels were found.
        found: usize,
    },
    /// DBSCAN refused because the population is over its bound.
    #[error(
        "DBSCAN is limited to {limit} customers (got {n}): its neighbourhood queries grow with n and \
         can take quadratic time and memory; use k-means or a Gaussian mixture, or segment a sample"
    )]
    TooLargeForDbscan {
        /// Population size.
        n: usize,
        /// The bound.
        limit: usize,
    },
    /// linfa failed (for example a singular covariance in a Gaussian mixture).
    #[error("{algorithm} failed: {message}")]
    Algorithm {
        /// The algorithm.
        algorithm: &'static str,
        /// linfa's message.
        message: String,
    },
    /// A rule set is malformed; names the rule and the field.
    #[error("rule '{rule}': {message}")]
    Rule {
        /// The rule's name (or its position if it has none).
        rule: String,
        /// What is wrong.
        message: String,
    },
}

/// Shorthand for results of this module.
pub type Result<T> = std::result::Result<T, SegmentationError>;

/// The clustering algorithms behind one result type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Lloyd's k-means with k-means++ initialisation ([`kmeans`]).
    Kmeans,
    /// Gaussian mixture with full covariances, hard assignment to the most likely component.
    Gmm,
    /// Density-based clustering; points in no dense region are noise.
    Dbscan,
}

/// The outcome of a clustering algorithm, whatever the algorithm.
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// Which algorithm produced it.
    pub algorithm: Algorithm,
    /// One label per row, in `0..n_segments`.
    pub labels: Vec<usize>,
    /// Number of segments, including the noise segment if there is one.
    pub n_segments: usize,
    /// For DBSCAN: the label given to noise points (always the last label), if any point is
    /// noise. `None` for the other algorithms.
    pub noise: Option<usize>,
    /// Segment centres (means of their members) in model space, `n_segments × n_features`.
    pub centres: Array2<f64>,
    /// Sum of squared distances of rows to their segment centre.
    pub inertia: f64,
    /// Iterations run (0 for DBSCAN, which is not iterative).
    pub iterations: usize,
}

/// Checks a model matrix: non-empty, at least one column, every value finite.
pub(crate) fn validate_matrix(x: &ArrayView2<'_, f64>) -> Result<()> {
    if x.nrows() == 0 {
        return Err(SegmentationError::Empty);
    }
    if x.ncols() == 0 {
        return Err(SegmentationError::NoFeatures);
    }
    if x.as_slice()
        .is_some_and(|flat| flat.iter().all(|v| v.is_finite()))
    {
        return Ok(());
    }
    for (row, r) in x.outer_iter().enumerate() {
        if let Some(col) = r.iter().position(|v| !v.is_finite()) {
            return Err(SegmentationError::NonFinite {
                feature: format!("column {col}"),
                row,
            });
        }
    }
    Ok(())
}

/// Means of the rows of each segment (`k × d`) and the segment sizes; an empty segment's
/// centre is all zeros.
pub fn segment_centres(
    x: &ArrayView2<'_, f64>,
    labels: &[usize],
    k: usize,
) -> (Array2<f64>, Vec<usize>) {
    let d = x.ncols();
    let mut sums = Array2::<f64>::zeros((k, d));
    let mut counts = vec![0usize; k];
    // Rows of a standard-layout matrix are slices: adding them as such costs a fraction of a
    // row view per row (the same additions in the same order).
    if let (Some(flat), Some(out)) = (x.as_slice(), sums.as_slice_mut())
        && d > 0
    {
        for (row, &l) in flat.chunks_exact(d).zip(labels) {
            counts[l] += 1;
            for (s, v) in out[l * d..(l + 1) * d].iter_mut().zip(row) {
                *s += v;
            }
        }
    } else {
        for (row, &l) in x.outer_iter().zip(labels) {
            counts[l] += 1;
            let mut s = sums.row_mut(l);
            s += &row;
        }
    }
    for (mut s, &c) in sums.outer_iter_mut().zip(&counts) {
        if c > 0 {
            s /= c as f64;
        }
    }
    (sums, counts)
}

/// The mean of each column, the same figures as ndarray's `mean_axis(Axis(0))` without a row
/// view per row. For a standard-layout matrix of two or more columns ndarray adds the rows in
/// order from zero and divides by their number, as here; otherwise (one column, where it sums
/// the column in an unrolled order, or another layout) it is asked itself.
pub(crate) fn column_means(x: &ArrayView2<'_, f64>) -> Vec<f64> {
    let (n, d) = x.dim();
    match x.as_slice() {
        Some(flat) if d >= 2 && n > 0 => {
            let mut sums = vec![0.0; d];
            for row in flat.chunks_exact(d) {
                for (s, v) in sums.iter_mut().zip(row) {
                    *s += v;
                }
            }
            sums.iter().map(|s| s / n as f64).collect()
        }
        _ => x
            .mean_axis(ndarray::Axis(0))
            .map(|m| m.to_vec())
            .unwrap_or_default(),
    }
}

/// Calls `f` with each row of `x` and its label, as slices when the matrix has a standard
/// layout (no row view per row).
pub(crate) fn rows_with<L: Copy>(
    x: &ArrayView2<'_, f64>,
    labels: &[L],
    mut f: impl FnMut(&[f64], L),
) {
    match x.as_slice() {
        Some(flat) if x.ncols() > 0 => {
            for (row, &l) in flat.chunks_exact(x.ncols()).zip(labels) {
                f(row, l);
            }
        }
        _ => {
            for (row, &l) in x.outer_iter().zip(labels) {
                f(&row.to_vec(), l);
            }
        }
    }
}

/// Sum of squared distances of each row to its segment centre.
pub(crate) fn inertia_of(x: &ArrayView2<'_, f64>, labels: &[usize], centres: &Array2<f64>) -> f64 {
    x.outer_iter()
        .zip(labels)
        .map(|(row, &l)| {
            row.iter()
                .zip(centres.row(l))
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::kmeans::{KMeansParams, fit};
    use super::pca::segment_map;
    use super::preprocess::{ColumnValues, FeatureColumn, FeatureSpec, MissingRule, fit_transform};
    use super::profile::profile;
    use super::quality::silhouette_sampled;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The stages chained as a run uses them, on a small messy population.
    #[test]
    fn preprocess_cluster_profile_and_map_fit_together() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let n = 2000;
        let group: Vec<usize> = (0..n).map(|_| rng.gen_range(0..3)).collect();
        let spend: Vec<Option<f64>> = group
            .iter()
            .map(|&g| {
                (rng.r#gen::<f64>() > 0.02)
                    .then(|| [50.0, 400.0, 3000.0][g] * (0.5 + rng.r#gen::<f64>()))
            })
            .collect();
        let recency: Vec<Option<f64>> = group
            .iter()
            .map(|&g| {
                (rng.r#gen::<f64>() > 0.01)
                    .then(|| [300.0, 60.0, 10.0][g] + 30.0 * rng.r#gen::<f64>())
            })
            .collect();
        let region: Vec<Option<String>> = group
            .iter()
            .map(|&g| {
                Some(
                    if g == 2 && rng.r#gen::<f64>() < 0.8 {
                        "north"
                    } else {
                        "south"
                    }
                    .to_owned(),
                )
            })
            .collect();
        let cols = vec![
            FeatureColumn {
                spec: FeatureSpec::log_numeric("monetary").with_missing(MissingRule::ImputeMedian),
                values: ColumnValues::Numeric(spend),
            },
            FeatureColumn {
                spec: FeatureSpec::numeric("recency"),
                values: ColumnValues::Numeric(recency.clone()),
            },
            FeatureColumn {
                spec: FeatureSpec::categorical("region"),
                values: ColumnValues::Categorical(region),
            },
        ];
        let pre = fit_transform(&cols).unwrap();
        let excluded = recency.iter().filter(|r| r.is_none()).count();
        assert_eq!(pre.missing.customers_excluded, excluded);
        assert_eq!(pre.matrix.nrows(), n - excluded);
        let km = fit(&pre.matrix.view(), &KMeansParams::new(3, 1)).unwrap();
        let truth: Vec<usize> = pre.rows.iter().map(|&r| group[r]).collect();
        let ari = super::quality::adjusted_rand_index(&truth, &km.labels).unwrap();
        // The region indicator (20% of the big spenders live in the south) blurs the groups.
        assert!(ari > 0.75, "{ari}");
        assert!(silhouette_sampled(&pre.matrix.view(), &km.labels, 500, 1).unwrap() > 0.5);
        let prof = profile(&cols, &pre, &km.labels, 3, 2).unwrap();
        assert_eq!(
            prof.segments.iter().map(|s| s.size).sum::<usize>(),
            pre.matrix.nrows()
        );
        // The big spenders' segment is named for spending much or buying recently.
        let big = km.labels[pre.rows.iter().position(|&r| group[r] == 2).unwrap()];
        let name = &prof.segments[big].proposed_name;
        assert!(
            name.to_lowercase().contains("big spenders") || name.starts_with("Recent"),
            "{name}"
        );
        let map = segment_map(
            &pre.matrix.view(),
            &km.labels,
            &km.centres.view(),
            &pre.transform.column_names(),
            300,
            2,
            2,
        )
        .unwrap();
        assert_eq!((map.points.len(), map.centres.len()), (300, 3));
        assert!(map.axes[0].explained_variance_ratio > 0.5);
    }
}
