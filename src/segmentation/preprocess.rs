//! Preprocessing: raw attribute columns → the standardised model matrix, and the fitted
//! transform that produced it.
//!
//! Order of operations, per feature:
//! 1. customers missing a feature whose rule is [`MissingRule::ExcludeCustomer`] are dropped
//!    (all such features first, so imputation statistics come from the customers who stay);
//! 2. missing values are imputed in *original units* (mean, median or mode of the observed
//!    values of the remaining customers);
//! 3. numeric features marked `log1p` go through `ln(1 + x)` (skewed amounts);
//! 4. numeric features are standardised with their mean and population standard deviation, as
//!    scikit-learn's `StandardScaler`; a constant column gets scale 1 (it becomes all zeros);
//! 5. categorical features are one-hot encoded with categories in sorted (byte) order, as
//!    scikit-learn's `OneHotEncoder`; the 0/1 indicators are not rescaled, so a category
//!    difference weighs like about one standard deviation of a numeric feature.

use std::collections::{BTreeMap, HashSet};

use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Result, SegmentationError};

/// What to do with a customer whose value for a feature is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingRule {
    /// Leave the customer out of the run (counted as excluded for missing values).
    ExcludeCustomer,
    /// Replace with the mean of the observed values (numeric only).
    ImputeMean,
    /// Replace with the median of the observed values (numeric only).
    ImputeMedian,
    /// Replace with the most frequent observed value (smallest value / first category on ties).
    ImputeMode,
}

/// Whether a feature is a number or a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// A number; `log1p` applies `ln(1 + x)` before standardising (for skewed amounts).
    Numeric {
        /// Apply `ln(1 + x)` first.
        log1p: bool,
    },
    /// A category, one-hot encoded.
    Categorical,
}

/// How one feature enters the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Attribute name, as shown to users.
    pub name: String,
    /// Numeric (optionally log-transformed) or categorical.
    pub kind: FeatureKind,
    /// The rule for missing values.
    pub missing: MissingRule,
}

impl FeatureSpec {
    /// A numeric feature, customers missing it excluded.
    pub fn numeric(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: FeatureKind::Numeric { log1p: false },
            missing: MissingRule::ExcludeCustomer,
        }
    }

    /// A numeric feature transformed by `ln(1 + x)`, customers missing it excluded.
    pub fn log_numeric(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: FeatureKind::Numeric { log1p: true },
            missing: MissingRule::ExcludeCustomer,
        }
    }

    /// A categorical feature, customers missing it excluded.
    pub fn categorical(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: FeatureKind::Categorical,
            missing: MissingRule::ExcludeCustomer,
        }
    }

    /// The same feature with another missing-value rule.
    pub fn with_missing(mut self, rule: MissingRule) -> Self {
        self.missing = rule;
        self
    }
}

/// The raw values of one feature, one per customer (`None` = missing).
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValues {
    /// Numbers.
    Numeric(Vec<Option<f64>>),
    /// Categories.
    Categorical(Vec<Option<String>>),
}

impl ColumnValues {
    fn len(&self) -> usize {
        match self {
            ColumnValues::Numeric(v) => v.len(),
            ColumnValues::Categorical(v) => v.len(),
        }
    }

    fn is_missing(&self, row: usize) -> bool {
        match self {
            ColumnValues::Numeric(v) => v[row].is_none(),
            ColumnValues::Categorical(v) => v[row].is_none(),
        }
    }
}

/// A feature's spec with its raw values.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureColumn {
    /// How the feature enters the model.
    pub spec: FeatureSpec,
    /// One value per customer.
    pub values: ColumnValues,
}

/// How one feature was fitted; enough to transform new data and to read centres back in
/// original units. Serialisable so it can be stored with the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FittedFeature {
    /// A standardised numeric feature.
    Numeric {
        /// Feature name.
        name: String,
        /// Whether `ln(1 + x)` was applied before standardising.
        log1p: bool,
        /// Mean after the optional log.
        mean: f64,
        /// Population standard deviation after the optional log (1 for a constant column).
        scale: f64,
        /// The value (original units) that replaced missing values, if imputation applied.
        fill: Option<f64>,
    },
    /// A one-hot encoded categorical feature.
    Categorical {
        /// Feature name.
        name: String,
        /// Categories in column order (sorted).
        categories: Vec<String>,
        /// The category that replaced missing values, if imputation applied.
        fill: Option<String>,
    },
}

impl FittedFeature {
    /// The feature's name.
    pub fn name(&self) -> &str {
        match self {
            FittedFeature::Numeric { name, .. } | FittedFeature::Categorical { name, .. } => name,
        }
    }

    /// Number of model columns it occupies.
    pub fn width(&self) -> usize {
        match self {
            FittedFeature::Numeric { .. } => 1,
            FittedFeature::Categorical { categories, .. } => categories.len(),
        }
    }
}

/// A feature value read back from model space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginalValue {
    /// A number in original units.
    Numeric(f64),
    /// The share of each category (for a centre: the share of members in each category).
    Categorical(Vec<(String, f64)>),
}

/// The fitted preprocessing, in feature order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedTransform {
    /// One entry per input feature.
    pub features: Vec<FittedFeature>,
}

impl FittedTransform {
    /// Names of the model matrix columns: the feature name, or `feature=category`.
    pub fn column_names(&self) -> Vec<String> {
        self.features
            .iter()
            .flat_map(|f| match f {
                FittedFeature::Numeric { name, .. } => vec![name.clone()],
                FittedFeature::Categorical {
                    name, categories, ..
                } => categories.iter().map(|c| format!("{name}={c}")).collect(),
            })
            .collect()
    }

    /// Number of model matrix columns.
    pub fn width(&self) -> usize {
        self.features.iter().map(FittedFeature::width).sum()
    }

    /// Reads a model-space row (e.g. a centre) back in original units: numeric values are
    /// un-standardised (and `exp(x) − 1` undone for log features; note that for those the
    /// value is the back-transformed mean of the logs, a geometric-type mean).
    pub fn to_original(&self, row: &[f64]) -> Result<Vec<OriginalValue>> {
        if row.len() != self.width() {
            return Err(SegmentationError::LabelMismatch(format!(
                "a model row has {} columns, the transform produces {}",
                row.len(),
                self.width()
            )));
        }
        let mut at = 0;
        Ok(self
            .features
            .iter()
            .map(|f| match f {
                FittedFeature::Numeric {
                    log1p, mean, scale, ..
                } => {
                    let v = row[at] * scale + mean;
                    at += 1;
                    OriginalValue::Numeric(if *log1p { v.exp_m1() } else { v })
                }
                FittedFeature::Categorical { categories, .. } => {
                    let shares = categories
                        .iter()
                        .zip(&row[at..at + categories.len()])
                        .map(|(c, &v)| (c.clone(), v))
                        .collect();
                    at += categories.len();
                    OriginalValue::Categorical(shares)
                }
            })
            .collect())
    }

    /// Applies this fitted transform to new data with the same features (the stored transform
    /// of a run applied to another population). Missing values are filled with the fitted fill
    /// value, or the customer is excluded if the feature had no fill; unseen categories encode
    /// as all zeros. Returns the matrix and the kept row indices.
    pub fn transform(&self, columns: &[FeatureColumn]) -> Result<(Array2<f64>, Vec<usize>)> {
        if columns.len() != self.features.len() {
            return Err(SegmentationError::LabelMismatch(format!(
                "{} columns given, the transform has {} features",
                columns.len(),
                self.features.len()
            )));
        }
        let n = check_columns(columns)?;
        for (c, f) in columns.iter().zip(&self.features) {
            if c.spec.name != f.name() {
                return Err(SegmentationError::LabelMismatch(format!(
                    "column '{}' given where the transform expects '{}'",
                    c.spec.name,
                    f.name()
                )));
            }
        }
        let rows: Vec<usize> = (0..n)
            .filter(|&r| {
                columns.iter().zip(&self.features).all(|(c, f)| {
                    let has_fill = match f {
                        FittedFeature::Numeric { fill, .. } => fill.is_some(),
                        FittedFeature::Categorical { fill, .. } => fill.is_some(),
                    };
                    has_fill || !c.values.is_missing(r)
                })
            })
            .collect();
        let mut m = Array2::zeros((rows.len(), self.width()));
        let mut at = 0;
        for (c, f) in columns.iter().zip(&self.features) {
            match (f, &c.values) {
                (
                    FittedFeature::Numeric {
                        name,
                        log1p,
                        mean,
                        scale,
                        fill,
                    },
                    ColumnValues::Numeric(v),
                ) => {
                    for (i, &r) in rows.iter().enumerate() {
                        let raw = v[r].or(*fill).expect("rows without fill were excluded");
                        m[[i, at]] = (forward(name, r, raw, *log1p)? - mean) / scale;
                    }
                }
                (
                    FittedFeature::Categorical {
                        categories, fill, ..
                    },
                    ColumnValues::Categorical(v),
                ) => {
                    for (i, &r) in rows.iter().enumerate() {
                        let cat = v[r]
                            .as_ref()
                            .or(fill.as_ref())
                            .expect("rows without fill were excluded");
                        if let Ok(j) = categories.binary_search(cat) {
                            m[[i, at + j]] = 1.0;
                        }
                    }
                }
                _ => {
                    return Err(SegmentationError::LabelMismatch(format!(
                        "feature '{}' has values of another kind than when fitted",
                        f.name()
                    )));
                }
            }
            at += f.width();
        }
        Ok((m, rows))
    }
}

/// How missing values of one feature were handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureMissing {
    /// Feature name.
    pub feature: String,
    /// The rule applied.
    pub rule: MissingRule,
    /// Customers (of the whole input) missing this feature.
    pub missing: usize,
    /// Values filled in among the customers kept.
    pub imputed: usize,
    /// Customers excluded because this feature was missing (a customer missing several
    /// excluding features is counted under each).
    pub excluded: usize,
}

/// The record of the missing-value rules' application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingReport {
    /// Customers given.
    pub customers_in: usize,
    /// Customers left out for missing values (each counted once).
    pub customers_excluded: usize,
    /// Per feature, in feature order.
    pub per_feature: Vec<FeatureMissing>,
}

/// The model matrix and everything needed to explain it.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessed {
    /// `kept customers × model columns`, row-major (standard layout).
    pub matrix: Array2<f64>,
    /// For each matrix row, the index of the customer in the input columns.
    pub rows: Vec<usize>,
    /// The fitted transform.
    pub transform: FittedTransform,
    /// How missing values were handled.
    pub missing: MissingReport,
}

/// Validates lengths, names and values; returns the number of customers.
fn check_columns(columns: &[FeatureColumn]) -> Result<usize> {
    let first = columns.first().ok_or(SegmentationError::NoFeatures)?;
    let n = first.values.len();
    if n == 0 {
        return Err(SegmentationError::Empty);
    }
    let mut seen = HashSet::new();
    for c in columns {
        if !seen.insert(c.spec.name.as_str()) {
            return Err(SegmentationError::DuplicateFeature(c.spec.name.clone()));
        }
        if c.values.len() != n {
            return Err(SegmentationError::LengthMismatch {
                feature: c.spec.name.clone(),
                expected: n,
                found: c.values.len(),
            });
        }
        let kind_ok = matches!(
            (&c.spec.kind, &c.values),
            (FeatureKind::Numeric { .. }, ColumnValues::Numeric(_))
                | (FeatureKind::Categorical, ColumnValues::Categorical(_))
        );
        if !kind_ok {
            return Err(SegmentationError::InvalidParameter {
                name: "features",
                reason: format!(
                    "feature '{}' is declared {:?} but its values are of the other kind",
                    c.spec.name, c.spec.kind
                ),
            });
        }
        if let ColumnValues::Numeric(v) = &c.values
            && let Some(row) = v.iter().position(|x| x.is_some_and(|x| !x.is_finite()))
        {
            return Err(SegmentationError::NonFinite {
                feature: c.spec.name.clone(),
                row,
            });
        }
    }
    Ok(n)
}

/// The optional log step, with its domain check.
fn forward(name: &str, row: usize, v: f64, log1p: bool) -> Result<f64> {
    if !log1p {
        return Ok(v);
    }
    if v <= -1.0 {
        return Err(SegmentationError::LogDomain {
            feature: name.to_owned(),
            row,
            value: v,
        });
    }
    Ok(v.ln_1p())
}

/// The value a numeric feature's missing entries take under `rule`, from its observed values
/// (none may be missing): the mean, the median or the mode. `ExcludeCustomer` leaves no gap to
/// fill in a run; elsewhere (an audit re-reading values) it falls back to the mean.
pub fn numeric_fill(rule: MissingRule, observed: Vec<f64>) -> Option<f64> {
    if observed.is_empty() {
        return None;
    }
    Some(match rule {
        MissingRule::ImputeMedian => median(observed),
        MissingRule::ImputeMode => numeric_mode(observed),
        MissingRule::ImputeMean | MissingRule::ExcludeCustomer => {
            observed.iter().sum::<f64>() / observed.len() as f64
        }
    })
}

/// [`numeric_fill`] of the values an iterator yields, without collecting them when the rule
/// takes their mean (the same sum in the same order, so the same figure).
pub fn numeric_fill_of<I>(rule: MissingRule, observed: I) -> Option<f64>
where
    I: Iterator<Item = f64> + Clone,
{
    match rule {
        MissingRule::ImputeMean | MissingRule::ExcludeCustomer => {
            let n = observed.clone().count();
            (n > 0).then(|| observed.sum::<f64>() / n as f64)
        }
        MissingRule::ImputeMedian | MissingRule::ImputeMode => {
            numeric_fill(rule, observed.collect())
        }
    }
}

/// Median as numpy / pandas (mean of the two middle values for an even count). The middle
/// values are selected, not sorted into place: under `total_cmp` the n-th value is the same
/// either way.
fn median(mut v: Vec<f64>) -> f64 {
    let n = v.len();
    let (below, &mut upper, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        upper
    } else {
        let lower = below
            .iter()
            .copied()
            .max_by(f64::total_cmp)
            .expect("an even count of at least two");
        (lower + upper) / 2.0
    }
}

/// Most frequent value; the smallest on ties (as scikit-learn's `SimpleImputer`).
fn numeric_mode(mut v: Vec<f64>) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    let (mut best, mut best_n) = (v[0], 0usize);
    let mut i = 0;
    while i < v.len() {
        let j = i + v[i..].iter().take_while(|&&x| x == v[i]).count();
        if j - i > best_n {
            best = v[i];
            best_n = j - i;
        }
        i = j;
    }
    best
}

/// A numeric feature's fitted statistics over the rows kept.
struct NumericFit {
    log1p: bool,
    mean: f64,
    scale: f64,
    fill: Option<f64>,
    imputed: usize,
}

/// The fill, mean and scale of one numeric column over `rows`: the same sums, in the same
/// order, as over the column's transformed values collected first (so the same figures),
/// without collecting them.
fn fit_numeric(c: &FeatureColumn, v: &[Option<f64>], rows: &[usize]) -> Result<NumericFit> {
    let name = &c.spec.name;
    let FeatureKind::Numeric { log1p } = c.spec.kind else {
        unreachable!("kinds were checked")
    };
    // The observed values are gathered only when some are missing.
    let needs_fill = rows.iter().any(|&r| v[r].is_none());
    let (fill, imputed) = if needs_fill {
        let observed: Vec<f64> = rows.iter().filter_map(|&r| v[r]).collect();
        if observed.is_empty() {
            return Err(SegmentationError::NoObservedValues(name.clone()));
        }
        let imputed = rows.len() - observed.len();
        let fill = match c.spec.missing {
            MissingRule::ImputeMean => observed.iter().sum::<f64>() / observed.len() as f64,
            MissingRule::ImputeMedian => median(observed),
            MissingRule::ImputeMode => numeric_mode(observed),
            MissingRule::ExcludeCustomer => unreachable!("excluded rows are gone"),
        };
        (Some(fill), imputed)
    } else {
        (None, 0)
    };
    let value = |r: usize| v[r].or(fill).expect("filled");
    // The first pass checks the transform (the first row out of its domain is named).
    let sum = rows
        .iter()
        .map(|&r| forward(name, r, value(r), log1p))
        .sum::<Result<f64>>()?;
    let len = rows.len() as f64;
    let mean = sum / len;
    let transformed = |r: usize| {
        let x = value(r);
        if log1p { x.ln_1p() } else { x }
    };
    let var = rows
        .iter()
        .map(|&r| {
            let x = transformed(r);
            (x - mean) * (x - mean)
        })
        .sum::<f64>()
        / len;
    // scikit-learn's `_is_constant_feature`: variance within rounding error of 0.
    let eps = f64::EPSILON;
    let constant = var <= len * eps * var + (len * mean * eps).powi(2);
    let scale = if constant { 1.0 } else { var.sqrt() };
    Ok(NumericFit {
        log1p,
        mean,
        scale,
        fill,
        imputed,
    })
}

/// Writes the standardised numeric features into `matrix`, row by row, blocks of rows in
/// parallel (`numeric_at`: column, matrix column and fit of each).
fn write_numeric(
    matrix: &mut Array2<f64>,
    columns: &[FeatureColumn],
    rows: &[usize],
    numeric_at: &[(usize, usize, NumericFit)],
) {
    const BLOCK: usize = 16_384;
    if numeric_at.is_empty() || rows.is_empty() {
        return;
    }
    let width = matrix.ncols();
    let cells = matrix
        .as_slice_mut()
        .expect("a new matrix is in standard layout");
    let values: Vec<&[Option<f64>]> = numeric_at
        .iter()
        .map(|&(ci, ..)| match &columns[ci].values {
            ColumnValues::Numeric(v) => v.as_slice(),
            ColumnValues::Categorical(_) => unreachable!("numeric columns only"),
        })
        .collect();
    cells
        .par_chunks_mut(width * BLOCK)
        .zip(rows.par_chunks(BLOCK))
        .for_each(|(block, block_rows)| {
            for (row, &r) in block.chunks_exact_mut(width).zip(block_rows) {
                for ((_, at, fit), v) in numeric_at.iter().zip(&values) {
                    let x = v[r].or(fit.fill).expect("filled");
                    let x = if fit.log1p { x.ln_1p() } else { x };
                    row[*at] = (x - fit.mean) / fit.scale;
                }
            }
        });
}

/// Fits the preprocessing on `columns` and returns the model matrix.
pub fn fit_transform(columns: &[FeatureColumn]) -> Result<Preprocessed> {
    let n = check_columns(columns)?;
    for c in columns {
        if c.spec.kind == FeatureKind::Categorical
            && matches!(
                c.spec.missing,
                MissingRule::ImputeMean | MissingRule::ImputeMedian
            )
        {
            return Err(SegmentationError::RuleNotApplicable {
                feature: c.spec.name.clone(),
                rule: c.spec.missing,
            });
        }
    }
    // 1. Exclusions.
    let mut keep = vec![true; n];
    let mut per_feature = Vec::with_capacity(columns.len());
    for c in columns {
        let missing = (0..n).filter(|&r| c.values.is_missing(r)).count();
        let excluded = if c.spec.missing == MissingRule::ExcludeCustomer {
            (0..n)
                .filter(|&r| c.values.is_missing(r))
                .for_each(|r| keep[r] = false);
            missing
        } else {
            0
        };
        per_feature.push(FeatureMissing {
            feature: c.spec.name.clone(),
            rule: c.spec.missing,
            missing,
            imputed: 0,
            excluded,
        });
    }
    let rows: Vec<usize> = (0..n).filter(|&r| keep[r]).collect();
    if rows.is_empty() {
        return Err(SegmentationError::InvalidParameter {
            name: "missing",
            reason: format!("every one of the {n} customers was excluded for missing values"),
        });
    }
    let width: usize = columns
        .iter()
        .map(|c| match &c.values {
            ColumnValues::Numeric(_) => 1,
            ColumnValues::Categorical(v) => rows
                .iter()
                .filter_map(|&r| v[r].as_deref())
                .collect::<HashSet<_>>()
                .len()
                .max(1),
        })
        .sum();
    let mut matrix = Array2::<f64>::zeros((rows.len(), width));
    // The numeric columns' statistics, each on its own (in parallel): its failure, if any, is
    // raised where the column comes in the loop below, as when they were fitted in turn.
    let mut numeric_fits: Vec<Option<Result<NumericFit>>> = columns
        .par_iter()
        .map(|c| match &c.values {
            ColumnValues::Numeric(v) => Some(fit_numeric(c, v, &rows)),
            ColumnValues::Categorical(_) => None,
        })
        .collect();
    // (column, matrix column, fit) of each numeric feature, written into the matrix row by
    // row after the loop.
    let mut numeric_at: Vec<(usize, usize, NumericFit)> = Vec::new();
    let mut features = Vec::with_capacity(columns.len());
    let mut at = 0;
    for (ci, (c, report)) in columns.iter().zip(per_feature.iter_mut()).enumerate() {
        let name = &c.spec.name;
        match &c.values {
            ColumnValues::Numeric(_) => {
                let fit = numeric_fits[ci]
                    .take()
                    .expect("every numeric column was fitted")?;
                report.imputed = fit.imputed;
                features.push(FittedFeature::Numeric {
                    name: name.clone(),
                    log1p: fit.log1p,
                    mean: fit.mean,
                    scale: fit.scale,
                    fill: fit.fill,
                });
                numeric_at.push((ci, at, fit));
                at += 1;
            }
            ColumnValues::Categorical(v) => {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for &r in &rows {
                    if let Some(s) = v[r].as_deref() {
                        *counts.entry(s).or_default() += 1;
                    }
                }
                let observed: usize = counts.values().sum();
                let fill = if observed < rows.len() {
                    // BTreeMap order: the first category wins ties.
                    let (mode, _) = counts
                        .iter()
                        .fold(None, |best: Option<(&str, usize)>, (&c, &k)| match best {
                            Some((_, bk)) if bk >= k => best,
                            _ => Some((c, k)),
                        })
                        .ok_or_else(|| SegmentationError::NoObservedValues(name.clone()))?;
                    report.imputed = rows.len() - observed;
                    Some(mode.to_owned())
                } else {
                    None
                };
                let categories: Vec<String> = counts.keys().map(|s| (*s).to_owned()).collect();
                for (i, &r) in rows.iter().enumerate() {
                    let cat = v[r].as_ref().or(fill.as_ref()).expect("filled");
                    let j = categories.binary_search(cat).expect("category seen in fit");
                    matrix[[i, at + j]] = 1.0;
                }
                at += categories.len();
                features.push(FittedFeature::Categorical {
                    name: name.clone(),
                    categories,
                    fill,
                });
            }
        }
    }
    write_numeric(&mut matrix, columns, &rows, &numeric_at);
    Ok(Preprocessed {
        matrix,
        missing: MissingReport {
            customers_in: n,
            customers_excluded: n - rows.len(),
            per_feature,
        },
        rows,
        transform: FittedTransform { features },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use serde_json::Value;

    const REFERENCE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/reference/segmentation/preprocess.json"
    ));

    fn numeric(v: &Value) -> ColumnValues {
        ColumnValues::Numeric(v.as_array().unwrap().iter().map(Value::as_f64).collect())
    }

    fn reference_columns(r: &Value) -> Vec<FeatureColumn> {
        let c = &r["columns"];
        vec![
            FeatureColumn {
                spec: FeatureSpec::log_numeric("amount").with_missing(MissingRule::ImputeMedian),
                values: numeric(&c["amount"]),
            },
            FeatureColumn {
                spec: FeatureSpec::numeric("visits").with_missing(MissingRule::ImputeMean),
                values: numeric(&c["visits"]),
            },
            FeatureColumn {
                spec: FeatureSpec::numeric("age"),
                values: numeric(&c["age"]),
            },
            FeatureColumn {
                spec: FeatureSpec::numeric("const"),
                values: numeric(&c["const"]),
            },
            FeatureColumn {
                spec: FeatureSpec::categorical("region").with_missing(MissingRule::ImputeMode),
                values: ColumnValues::Categorical(
                    c["region"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                ),
            },
        ]
    }

    /// Columns fitted side by side and written in blocks of rows give, to the last bit, what
    /// fitting them in turn over their collected values gives (many blocks, missing values
    /// imputed and excluded, a log transform, a category between numbers).
    #[test]
    fn a_large_matrix_is_the_same_to_the_bit_as_fitted_column_by_column() {
        use rand::{Rng, SeedableRng};
        let n = 50_000;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut numbers = |missing: f64, scale: f64| -> ColumnValues {
            ColumnValues::Numeric(
                (0..n)
                    .map(|_| (!rng.gen_bool(missing)).then(|| rng.gen_range(0.0..1.0) * scale))
                    .collect(),
            )
        };
        let columns = vec![
            FeatureColumn {
                spec: FeatureSpec::numeric("a"),
                values: numbers(0.01, 10.0),
            },
            FeatureColumn {
                spec: FeatureSpec::log_numeric("b").with_missing(MissingRule::ImputeMedian),
                values: numbers(0.05, 1000.0),
            },
            FeatureColumn {
                spec: FeatureSpec::categorical("c"),
                values: ColumnValues::Categorical(
                    (0..n).map(|i| Some(["x", "y"][i % 2].to_owned())).collect(),
                ),
            },
            FeatureColumn {
                spec: FeatureSpec::numeric("d").with_missing(MissingRule::ImputeMean),
                values: numbers(0.02, -3.0),
            },
            FeatureColumn {
                spec: FeatureSpec::numeric("e"),
                values: ColumnValues::Numeric(vec![Some(7.0); n]),
            },
        ];
        let p = fit_transform(&columns).unwrap();
        let kept: Vec<usize> = (0..n)
            .filter(|&r| !columns[0].values.is_missing(r))
            .collect();
        assert_eq!(p.rows, kept);
        assert_eq!(p.matrix.dim(), (kept.len(), 6));
        // Column by column, as before: the values collected, then their mean and variance.
        let mut at = 0;
        for (c, fitted) in columns.iter().zip(&p.transform.features) {
            let ColumnValues::Numeric(v) = &c.values else {
                at += 2;
                continue;
            };
            let FittedFeature::Numeric { fill, .. } = fitted else {
                panic!("numeric")
            };
            let log1p = matches!(c.spec.kind, FeatureKind::Numeric { log1p: true });
            let col: Vec<f64> = kept
                .iter()
                .map(|&r| {
                    let x = v[r].or(*fill).unwrap();
                    if log1p { x.ln_1p() } else { x }
                })
                .collect();
            let len = col.len() as f64;
            let mean = col.iter().sum::<f64>() / len;
            let var = col.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / len;
            let scale = if c.spec.name == "e" { 1.0 } else { var.sqrt() };
            for (i, x) in col.iter().enumerate() {
                assert_eq!(
                    p.matrix[[i, at]].to_bits(),
                    ((x - mean) / scale).to_bits(),
                    "{} row {i}",
                    c.spec.name
                );
            }
            at += 1;
        }
        assert_eq!(at, 6);
    }

    #[test]
    fn matches_sklearn_imputer_scaler_and_one_hot() {
        let r: Value = serde_json::from_str(REFERENCE).unwrap();
        let p = fit_transform(&reference_columns(&r)).unwrap();
        let kept: Vec<usize> = r["kept_rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(p.rows, kept);
        let expected = r["matrix"].as_array().unwrap();
        assert_eq!(p.matrix.dim(), (expected.len(), 8));
        for (row, e) in p.matrix.outer_iter().zip(expected) {
            for (a, b) in row.iter().zip(e.as_array().unwrap()) {
                assert_relative_eq!(
                    *a,
                    b.as_f64().unwrap(),
                    max_relative = 1e-9,
                    epsilon = 1e-12
                );
            }
        }
        let FittedFeature::Numeric {
            fill, mean, scale, ..
        } = &p.transform.features[0]
        else {
            panic!()
        };
        assert_relative_eq!(
            fill.unwrap(),
            r["fills"]["amount"].as_f64().unwrap(),
            max_relative = 1e-12
        );
        assert_relative_eq!(*mean, r["means"][0].as_f64().unwrap(), max_relative = 1e-12);
        assert_relative_eq!(
            *scale,
            r["scales"][0].as_f64().unwrap(),
            max_relative = 1e-12
        );
        // The constant column: scale 1, all zeros, as StandardScaler.
        let FittedFeature::Numeric { scale, .. } = &p.transform.features[3] else {
            panic!()
        };
        assert_eq!(*scale, 1.0);
        assert!(p.matrix.column(3).iter().all(|&v| v == 0.0));
        let FittedFeature::Categorical {
            categories, fill, ..
        } = &p.transform.features[4]
        else {
            panic!()
        };
        assert_eq!(categories, &["east", "north", "south", "west"]);
        assert_eq!(fill.as_deref(), r["fills"]["region"].as_str());
        assert_eq!(
            p.transform.column_names(),
            [
                "amount",
                "visits",
                "age",
                "const",
                "region=east",
                "region=north",
                "region=south",
                "region=west"
            ]
        );
    }

    #[test]
    fn missing_value_handling_is_recorded() {
        let r: Value = serde_json::from_str(REFERENCE).unwrap();
        let p = fit_transform(&reference_columns(&r)).unwrap();
        assert_eq!(p.missing.customers_in, 40);
        assert_eq!(p.missing.customers_excluded, 2);
        let by_name = |n: &str| {
            p.missing
                .per_feature
                .iter()
                .find(|f| f.feature == n)
                .unwrap()
                .clone()
        };
        // amount: 3 missing, none of them among the 2 excluded customers.
        assert_eq!(
            (
                by_name("amount").missing,
                by_name("amount").imputed,
                by_name("amount").excluded
            ),
            (3, 3, 0)
        );
        assert_eq!(
            (
                by_name("age").missing,
                by_name("age").imputed,
                by_name("age").excluded
            ),
            (2, 0, 2)
        );
        assert_eq!(by_name("region").imputed, 3);
        assert_eq!(by_name("region").rule, MissingRule::ImputeMode);
    }

    #[test]
    fn transform_round_trips_to_original_units_and_applies_to_new_data() {
        let r: Value = serde_json::from_str(REFERENCE).unwrap();
        let cols = reference_columns(&r);
        let p = fit_transform(&cols).unwrap();
        // Row 0 of the input is kept as matrix row 0: reading it back gives the raw values.
        let back = p
            .transform
            .to_original(p.matrix.row(0).as_slice().unwrap())
            .unwrap();
        assert_eq!(back.len(), 5);
        let OriginalValue::Numeric(amount) = back[0] else {
            panic!()
        };
        assert_relative_eq!(amount, 77.14, max_relative = 1e-12);
        // The stored transform (through JSON) applied to the same data gives the same matrix.
        let stored: FittedTransform =
            serde_json::from_str(&serde_json::to_string(&p.transform).unwrap()).unwrap();
        let (m, rows) = stored.transform(&cols).unwrap();
        assert_eq!(rows, p.rows);
        for (a, b) in m.iter().zip(p.matrix.iter()) {
            assert_relative_eq!(*a, *b, max_relative = 1e-12, epsilon = 1e-15);
        }
    }

    #[test]
    fn bad_input_is_refused_with_the_feature_named() {
        let col = |name: &str, v: Vec<Option<f64>>| FeatureColumn {
            spec: FeatureSpec::numeric(name),
            values: ColumnValues::Numeric(v),
        };
        assert_eq!(fit_transform(&[]), Err(SegmentationError::NoFeatures));
        assert_eq!(
            fit_transform(&[col("a", vec![])]),
            Err(SegmentationError::Empty)
        );
        assert_eq!(
            fit_transform(&[col("a", vec![Some(1.0), Some(f64::NAN)])]),
            Err(SegmentationError::NonFinite {
                feature: "a".into(),
                row: 1
            })
        );
        assert_eq!(
            fit_transform(&[
                col("a", vec![Some(1.0)]),
                col("b", vec![Some(1.0), Some(2.0)])
            ]),
            Err(SegmentationError::LengthMismatch {
                feature: "b".into(),
                expected: 1,
                found: 2
            })
        );
        assert_eq!(
            fit_transform(&[col("a", vec![Some(1.0)]), col("a", vec![Some(1.0)])]),
            Err(SegmentationError::DuplicateFeature("a".into()))
        );
        let log = FeatureColumn {
            spec: FeatureSpec::log_numeric("refunds"),
            values: ColumnValues::Numeric(vec![Some(3.0), Some(-2.0)]),
        };
        assert!(matches!(
            fit_transform(&[log]),
            Err(SegmentationError::LogDomain { row: 1, .. })
        ));
        let cat = FeatureColumn {
            spec: FeatureSpec::categorical("region").with_missing(MissingRule::ImputeMean),
            values: ColumnValues::Categorical(vec![Some("n".into()), None]),
        };
        assert!(matches!(
            fit_transform(&[cat]),
            Err(SegmentationError::RuleNotApplicable { .. })
        ));
        let all_missing = col("a", vec![None, None]);
        assert!(fit_transform(&[all_missing]).is_err());
    }

    #[test]
    fn imputation_statistics() {
        assert_eq!(median(vec![3.0, 1.0, 2.0, 10.0]), 2.5);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(numeric_mode(vec![5.0, 1.0, 5.0, 1.0, 7.0]), 1.0);
        assert_eq!(numeric_mode(vec![5.0, 1.0, 5.0]), 5.0);
    }
}
