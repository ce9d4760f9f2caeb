//! "Why am I in this segment?" (GDPR Art. 15(1)(h)): from what a run stored (its fitted
//! preprocessing, its model, and per member only what the model cannot reproduce) and one
//! customer's feature values as of the run, the explanation of that customer's membership:
//! the algorithm, the features with the customer's raw and standardised values, and by
//! algorithm the distances to the nearest centres (k-means), the posterior probabilities
//! (Gaussian mixture), the rule that matched (rules), the RFM scores (RFM) or the place in a
//! dense region (DBSCAN); and one plain-language sentence.
//!
//! Written by hand because the numbers must be the ones the run used: the standardisation is
//! [`FittedTransform`]'s, the distance is the Euclidean distance k-means minimised, and the
//! posterior is the full-covariance Gaussian density linfa's mixture assigns by. Nothing here
//! reads storage; words (feature labels, money) come from the caller's [`Wording`].
//!
//! What an explanation never holds: other customers' values, counts, or a segment's centre.

use serde::{Deserialize, Serialize};

use super::preprocess::{ColumnValues, FeatureColumn, FeatureSpec, FittedFeature, FittedTransform};
use super::rfm::RfmScore;
use super::rules::{CmpOp, Condition, RuleSet};
use super::settings::RunAlgorithm;

/// What a run stores to explain its memberships (JSON, one per run), in segment order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
pub enum RunModel {
    /// k-means centres in standardised (model) space, one row per segment.
    Kmeans { centres: Vec<Vec<f64>> },
    /// The Gaussian mixture: weights, means and full covariances (model space), per segment.
    Gmm {
        weights: Vec<f64>,
        means: Vec<Vec<f64>>,
        covariances: Vec<Vec<Vec<f64>>>,
    },
    /// DBSCAN's parameters; each member's place is a [`MemberDetail`].
    Dbscan { eps: f64, min_points: usize },
    /// RFM: each member's scores are a [`MemberDetail`] (ranked against the whole population).
    Rfm,
    /// Rules: the rules are in the run's settings and are evaluated again.
    Rules,
}

/// Where a point lies for DBSCAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    /// At least `min_points` customers (itself included) within ε.
    Core,
    /// Not core, but within ε of a core point: it joins that point's cluster.
    Border,
    /// Within ε of no core point.
    Noise,
}

/// What a run stores per member because the model cannot reproduce it from the member's own
/// data: RFM scores (quintiles are ranks in the whole population) and DBSCAN's point kind with
/// the distance to the nearest core point (core points lie at 0). Stored as short text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemberDetail {
    Rfm(RfmScore),
    Dbscan { point: PointKind, nearest_core: f64 },
}

impl MemberDetail {
    /// The stored form: `"534"` (R, F, M), `"core"`, `"border:0.8312"`, `"noise:1.7301"`.
    pub fn encode(&self) -> String {
        match self {
            MemberDetail::Rfm(s) => s.code(),
            MemberDetail::Dbscan {
                point,
                nearest_core,
            } => match point {
                PointKind::Core => "core".into(),
                PointKind::Border => format!("border:{nearest_core:.6}"),
                PointKind::Noise => format!("noise:{nearest_core:.6}"),
            },
        }
    }

    /// Reads the stored form back.
    pub fn parse(text: &str) -> Result<MemberDetail, String> {
        let bad = || format!("`{text}` is not a stored member detail");
        if text == "core" {
            return Ok(MemberDetail::Dbscan {
                point: PointKind::Core,
                nearest_core: 0.0,
            });
        }
        if let Some((kind, d)) = text.split_once(':') {
            let point = match kind {
                "border" => PointKind::Border,
                "noise" => PointKind::Noise,
                _ => return Err(bad()),
            };
            let nearest_core: f64 = d.parse().map_err(|_| bad())?;
            return Ok(MemberDetail::Dbscan {
                point,
                nearest_core,
            });
        }
        let digits: Vec<u8> = text
            .bytes()
            .map(|b| b.wrapping_sub(b'0'))
            .filter(|d| (1..=5).contains(d))
            .collect();
        match (text.len(), digits.as_slice()) {
            (3, &[r, f, m]) => Ok(MemberDetail::Rfm(RfmScore { r, f, m })),
            _ => Err(bad()),
        }
    }
}

/// One raw feature value of the customer as of the run (`None`: missing).
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Number(Option<f64>),
    Category(Option<String>),
}

/// Turns internal names and values into words; the web layer's labels and money format.
pub struct Wording<'a> {
    /// A feature's name in words, lower case for use inside a sentence ("total spent").
    pub label: &'a dyn Fn(&str) -> String,
    /// A feature's value in its unit ("€1,240.00", "12").
    pub value: &'a dyn Fn(&str, f64) -> String,
}

fn plain_label(name: &str) -> String {
    name.replace('_', " ")
}

fn plain_value(_: &str, v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl Wording<'static> {
    /// Names with spaces for underscores, numbers with at most two decimals.
    pub fn plain() -> Wording<'static> {
        Wording {
            label: &plain_label,
            value: &plain_value,
        }
    }
}

/// One feature of the customer as the run saw it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FeatureValue {
    pub feature: String,
    /// The value in original units (numeric features).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The category (categorical features).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The value was missing and the run filled it in (mean, median or mode).
    pub imputed: bool,
    /// `ln(1 + x)` was applied before standardising.
    pub log_transformed: bool,
    /// Standard deviations from the run's average customer (numeric features).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standardised: Option<f64>,
}

/// Another segment with the customer's distance to it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SegmentDistance {
    pub segment: usize,
    pub name: String,
    pub distance: f64,
}

/// k-means: Euclidean distances in standardised space.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CentreDistances {
    /// To the centre of the customer's own segment.
    pub own: f64,
    /// The nearest other centre, if there is another segment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_nearest: Option<SegmentDistance>,
}

/// A Gaussian mixture component's posterior probability for the customer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Posterior {
    pub segment: usize,
    pub name: String,
    pub probability: f64,
}

/// The rule that placed the customer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MatchedRule {
    /// The rule's position (from 1), none for the catch-all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    pub name: String,
    /// The rule's condition as text; for the catch-all, that no rule matched.
    pub text: String,
}

/// DBSCAN: where the customer lies.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Density {
    #[schema(value_type = String)]
    pub point: PointKind,
    /// Distance (standardised space) to the nearest core point; 0 for a core point.
    pub nearest_core: f64,
    pub eps: f64,
    pub min_points: usize,
}

/// The RFM scores, each 1..=5 (5 best) against the run's whole population.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RfmScores {
    pub recency: u8,
    pub frequency: u8,
    pub monetary: u8,
}

/// Why one customer is in one segment of one run.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Explanation {
    /// `kmeans`, `gmm`, `dbscan`, `rfm` or `rules`.
    pub algorithm: String,
    pub segment: usize,
    pub segment_name: String,
    pub features: Vec<FeatureValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distances: Option<CentreDistances>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub posteriors: Option<Vec<Posterior>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<MatchedRule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rfm: Option<RfmScores>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub density: Option<Density>,
    /// Whether the values recomputed today place the customer in the segment the run stored
    /// (false when their data changed since the run, e.g. a re-imported attribute).
    pub consistent: bool,
    /// The explanation in one plain-language sentence.
    pub sentence: String,
}

/// Why an explanation cannot be given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExplainError {
    #[error("the run stored no model to explain its segments with")]
    NoModel,
    #[error("the stored model does not fit the run's features: {0}")]
    Mismatch(String),
    #[error("the customer's value of `{0}` is missing and the run did not fill it in")]
    Missing(String),
    #[error("the run stored no {0} for this member")]
    NoDetail(&'static str),
}

/// What the explainer needs about the run.
pub struct Run<'a> {
    pub algorithm: RunAlgorithm,
    pub transform: &'a FittedTransform,
    pub model: &'a RunModel,
    /// Rule runs: the rules.
    pub rules: Option<&'a RuleSet>,
    /// Segment names, by segment number.
    pub names: &'a [String],
    /// The names the algorithm proposed (RFM cells, rule names), by segment number.
    pub proposed: &'a [String],
}

/// What the explainer needs about the customer.
pub struct Subject<'a> {
    /// The segment the run stored.
    pub segment: usize,
    /// Raw values, one per feature of the transform, in its order.
    pub values: &'a [RawValue],
    /// The stored per-member detail (RFM, DBSCAN).
    pub detail: Option<MemberDetail>,
}

/// The customer's features as the run saw them and their model-space row.
pub fn standardise(
    transform: &FittedTransform,
    values: &[RawValue],
) -> Result<(Vec<FeatureValue>, Vec<f64>), ExplainError> {
    if values.len() != transform.features.len() {
        return Err(ExplainError::Mismatch(format!(
            "{} values given for {} features",
            values.len(),
            transform.features.len()
        )));
    }
    let mut row = Vec::with_capacity(transform.width());
    let mut out = Vec::with_capacity(values.len());
    for (f, v) in transform.features.iter().zip(values) {
        match (f, v) {
            (
                FittedFeature::Numeric {
                    name,
                    log1p,
                    mean,
                    scale,
                    fill,
                },
                RawValue::Number(x),
            ) => {
                let raw = x
                    .or(*fill)
                    .ok_or_else(|| ExplainError::Missing(name.clone()))?;
                let t = if *log1p { raw.ln_1p() } else { raw };
                let z = (t - mean) / scale;
                row.push(z);
                out.push(FeatureValue {
                    feature: name.clone(),
                    value: Some(raw),
                    category: None,
                    imputed: x.is_none(),
                    log_transformed: *log1p,
                    standardised: Some(z),
                });
            }
            (
                FittedFeature::Categorical {
                    name,
                    categories,
                    fill,
                },
                RawValue::Category(c),
            ) => {
                let cat = c
                    .as_ref()
                    .or(fill.as_ref())
                    .ok_or_else(|| ExplainError::Missing(name.clone()))?;
                row.extend(categories.iter().map(|k| f64::from(u8::from(k == cat))));
                out.push(FeatureValue {
                    feature: name.clone(),
                    value: None,
                    category: Some(cat.clone()),
                    imputed: c.is_none(),
                    log_transformed: false,
                    standardised: None,
                });
            }
            _ => {
                return Err(ExplainError::Mismatch(format!(
                    "feature `{}` has a value of another kind",
                    f.name()
                )));
            }
        }
    }
    Ok((out, row))
}

/// Euclidean distance.
pub fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// Posterior probabilities of the components of a full-covariance Gaussian mixture at `x`
/// (log-sum-exp normalised). Each covariance is factorised by Cholesky.
pub fn posteriors(
    x: &[f64],
    weights: &[f64],
    means: &[Vec<f64>],
    covariances: &[Vec<Vec<f64>>],
) -> Result<Vec<f64>, ExplainError> {
    let d = x.len();
    let mut logs = Vec::with_capacity(weights.len());
    for ((w, mu), cov) in weights.iter().zip(means).zip(covariances) {
        if mu.len() != d || cov.len() != d {
            return Err(ExplainError::Mismatch(format!(
                "a component has {} dimensions, the customer {d}",
                mu.len()
            )));
        }
        let l = cholesky(cov).ok_or_else(|| {
            ExplainError::Mismatch("a covariance is not positive definite".into())
        })?;
        // Solve L y = x − μ; the Mahalanobis distance is |y|².
        let mut y = vec![0.0; d];
        for i in 0..d {
            let s: f64 = (0..i).map(|j| l[i][j] * y[j]).sum();
            y[i] = (x[i] - mu[i] - s) / l[i][i];
        }
        let quad: f64 = y.iter().map(|v| v * v).sum();
        let log_det: f64 = 2.0 * (0..d).map(|i| l[i][i].ln()).sum::<f64>();
        let log_pdf = -0.5 * (d as f64 * (2.0 * std::f64::consts::PI).ln() + log_det + quad);
        logs.push(w.ln() + log_pdf);
    }
    let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = logs.iter().map(|l| (l - max).exp()).sum();
    Ok(logs.iter().map(|l| (l - max).exp() / total).collect())
}

/// Lower-triangular L with L Lᵀ = a; `None` when `a` is not positive definite.
fn cholesky(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let v = a[i][i] - s;
                if v.is_nan() || v <= 0.0 {
                    return None;
                }
                l[i][j] = v.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    Some(l)
}

/// A rule's condition as text: `monetary >= 500 and region in (north, east)`.
pub fn condition_text(c: &Condition, label: &dyn Fn(&str) -> String) -> String {
    let joined = |list: &[Condition], word: &str| {
        let parts: Vec<String> = list
            .iter()
            .map(|c| match c {
                Condition::All(_) | Condition::Any(_) => format!("({})", condition_text(c, label)),
                _ => condition_text(c, label),
            })
            .collect();
        parts.join(&format!(" {word} "))
    };
    match c {
        Condition::All(list) => joined(list, "and"),
        Condition::Any(list) => joined(list, "or"),
        Condition::Compare {
            attribute,
            op,
            value,
        } => {
            let op = match op {
                CmpOp::Lt => "<",
                CmpOp::Le => "≤",
                CmpOp::Gt => ">",
                CmpOp::Ge => "≥",
                CmpOp::Eq => "=",
                CmpOp::Ne => "≠",
            };
            format!("{} {op} {}", label(attribute), plain_value("", *value))
        }
        Condition::In { attribute, values } => {
            format!("{} is one of {}", label(attribute), values.join(", "))
        }
    }
}

fn quoted(name: &str) -> String {
    format!("'{name}'")
}

fn name_of(names: &[String], segment: usize) -> String {
    names
        .get(segment)
        .cloned()
        .unwrap_or_else(|| format!("Segment {}", segment + 1))
}

/// "your total spent (€1,240.00, 1.8 standard deviations above the average customer)".
fn describe_feature(f: &FeatureValue, wording: &Wording<'_>) -> String {
    let label = (wording.label)(&f.feature);
    match (f.value, f.standardised, &f.category) {
        (Some(v), Some(z), _) => {
            let shown = (wording.value)(&f.feature, v);
            let scale = if f.log_transformed {
                ", on a logarithmic scale"
            } else {
                ""
            };
            let relation = if z.abs() < 0.05 {
                "about the same as the average customer".to_owned()
            } else {
                format!(
                    "{:.1} standard deviations {} the average customer{scale}",
                    z.abs(),
                    if z > 0.0 { "above" } else { "below" }
                )
            };
            format!("your {label} ({shown}, {relation})")
        }
        (_, _, Some(c)) => format!("your {label} ({c})"),
        _ => format!("your {label}"),
    }
}

fn and_list(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Per feature, how much it pulls the customer towards `own` rather than `other`: the
/// difference of squared distances over the feature's model columns.
fn pull(transform: &FittedTransform, row: &[f64], own: &[f64], other: &[f64]) -> Vec<f64> {
    let mut at = 0;
    transform
        .features
        .iter()
        .map(|f| {
            let w = f.width();
            let p = (at..at + w)
                .map(|j| (row[j] - other[j]).powi(2) - (row[j] - own[j]).powi(2))
                .sum();
            at += w;
            p
        })
        .collect()
}

/// The (up to) two features that most explain the membership: those pulling most towards the
/// own segment when there is another, else those furthest from the average.
fn cited(features: &[FeatureValue], pull: Option<&[f64]>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..features.len()).collect();
    if let Some(p) = pull {
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        let positive: Vec<usize> = order.iter().copied().filter(|&i| p[i] > 0.0).collect();
        if !positive.is_empty() {
            return positive.into_iter().take(2).collect();
        }
    }
    let size = |f: &FeatureValue| f.standardised.map_or(0.0, f64::abs);
    order.sort_by(|&a, &b| size(&features[b]).total_cmp(&size(&features[a])));
    order.into_iter().take(2).collect()
}

fn check_width(transform: &FittedTransform, rows: &[Vec<f64>]) -> Result<(), ExplainError> {
    match rows.iter().find(|r| r.len() != transform.width()) {
        Some(r) => Err(ExplainError::Mismatch(format!(
            "a stored centre has {} columns, the preprocessing gives {}",
            r.len(),
            transform.width()
        ))),
        None => Ok(()),
    }
}

/// Explains one customer's membership of one run.
pub fn explain(
    run: &Run<'_>,
    subject: &Subject<'_>,
    wording: &Wording<'_>,
) -> Result<Explanation, ExplainError> {
    let (features, row) = standardise(run.transform, subject.values)?;
    let own_name = name_of(run.names, subject.segment);
    let mut e = Explanation {
        algorithm: run.algorithm.as_str().to_owned(),
        segment: subject.segment,
        segment_name: own_name.clone(),
        features,
        distances: None,
        posteriors: None,
        rule: None,
        rfm: None,
        density: None,
        consistent: true,
        sentence: String::new(),
    };
    match (run.algorithm, run.model) {
        (RunAlgorithm::Kmeans, RunModel::Kmeans { centres }) => {
            check_width(run.transform, centres)?;
            let own = centres.get(subject.segment).ok_or_else(|| {
                ExplainError::Mismatch(format!("no centre for segment {}", subject.segment))
            })?;
            let d: Vec<f64> = centres.iter().map(|c| distance(&row, c)).collect();
            let next = (0..d.len())
                .filter(|&s| s != subject.segment)
                .min_by(|&a, &b| d[a].total_cmp(&d[b]));
            e.consistent = d
                .iter()
                .all(|&x| x >= d[subject.segment] - 1e-9 * (1.0 + x));
            e.distances = Some(CentreDistances {
                own: d[subject.segment],
                next_nearest: next.map(|s| SegmentDistance {
                    segment: s,
                    name: name_of(run.names, s),
                    distance: d[s],
                }),
            });
            let pulls = next.map(|s| pull(run.transform, &row, own, &centres[s]));
            let parts: Vec<String> = cited(&e.features, pulls.as_deref())
                .into_iter()
                .map(|i| describe_feature(&e.features[i], wording))
                .collect();
            let tail = match next {
                Some(s) => format!(
                    "the next closest group was {}",
                    quoted(&name_of(run.names, s))
                ),
                None => "there is no other group".to_owned(),
            };
            let verb = if parts.len() == 1 { "is" } else { "are" };
            e.sentence = format!(
                "You are in {} because {} {verb} closest to that group's typical customer; {tail}.",
                quoted(&own_name),
                and_list(&parts)
            );
        }
        (
            RunAlgorithm::Gmm,
            RunModel::Gmm {
                weights,
                means,
                covariances,
            },
        ) => {
            check_width(run.transform, means)?;
            let p = posteriors(&row, weights, means, covariances)?;
            let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b]));
            e.consistent = best == Some(subject.segment);
            let own_p = p.get(subject.segment).copied().unwrap_or(0.0);
            let next = (0..p.len())
                .filter(|&s| s != subject.segment)
                .max_by(|&a, &b| p[a].total_cmp(&p[b]));
            let parts: Vec<String> = cited(&e.features, None)
                .into_iter()
                .map(|i| describe_feature(&e.features[i], wording))
                .collect();
            let tail = match next {
                Some(s) => format!(
                    "; the next most likely group was {} ({})",
                    quoted(&name_of(run.names, s)),
                    percent(p[s])
                ),
                None => String::new(),
            };
            e.sentence = format!(
                "You are in {} because, given {}, the pattern of that group fits you best (probability {}){tail}.",
                quoted(&own_name),
                and_list(&parts),
                percent(own_p)
            );
            e.posteriors = Some(
                p.into_iter()
                    .enumerate()
                    .map(|(s, probability)| Posterior {
                        segment: s,
                        name: name_of(run.names, s),
                        probability,
                    })
                    .collect(),
            );
        }
        (RunAlgorithm::Dbscan, RunModel::Dbscan { eps, min_points }) => {
            let Some(MemberDetail::Dbscan {
                point,
                nearest_core,
            }) = subject.detail
            else {
                return Err(ExplainError::NoDetail("DBSCAN point kind"));
            };
            let d = (wording.value)("", nearest_core);
            e.sentence = match point {
                PointKind::Core => format!(
                    "You are in {} because at least {min_points} customers of the run, you included, have values within {} of yours (in standard deviations): you are in the heart of that dense group.",
                    quoted(&own_name),
                    (wording.value)("", *eps)
                ),
                PointKind::Border => format!(
                    "You are in {} because your values are within {d} of a customer at the heart of that dense group (the reach is {}).",
                    quoted(&own_name),
                    (wording.value)("", *eps)
                ),
                PointKind::Noise if !nearest_core.is_finite() => format!(
                    "You are in {} because the run found no dense group of customers at all.",
                    quoted(&own_name)
                ),
                PointKind::Noise if !nearest_core.is_finite() => format!(
                    "You are in {} because the run found no dense group of customers at all.",
                    quoted(&own_name)
                ),
                PointKind::Noise => format!(
                    "You are in {} because no dense group of customers is near your values: the nearest customer at the heart of a group is {d} away, beyond the reach of {}.",
                    quoted(&own_name),
                    (wording.value)("", *eps)
                ),
            };
            e.density = Some(Density {
                point,
                nearest_core,
                eps: *eps,
                min_points: *min_points,
            });
        }
        (RunAlgorithm::Rfm, RunModel::Rfm) => {
            let Some(MemberDetail::Rfm(s)) = subject.detail else {
                return Err(ExplainError::NoDetail("RFM score"));
            };
            e.consistent = run.proposed.get(subject.segment).map(String::as_str)
                == Some(super::rfm::RfmSegment::of(s).name());
            let shown = |name: &str, before: &str, after: &str| {
                e.features
                    .iter()
                    .find(|f| f.feature == name)
                    .and_then(|f| f.value)
                    .map(|v| format!(" ({before}{}{after})", (wording.value)(name, v)))
                    .unwrap_or_default()
            };
            e.sentence = format!(
                "You are in {} because, compared with all customers in the run, your recency score is {} of 5{}, your frequency score {} of 5{} and your monetary score {} of 5{}; 5 means the most recent, most frequent or highest.",
                quoted(&own_name),
                s.r,
                shown("recency_days", "last purchase ", ""),
                s.f,
                shown("frequency", "", " orders"),
                s.m,
                shown("monetary", "", " spent"),
            );
            e.rfm = Some(RfmScores {
                recency: s.r,
                frequency: s.f,
                monetary: s.m,
            });
        }
        (RunAlgorithm::Rules, RunModel::Rules) => {
            let rules = run.rules.ok_or(ExplainError::NoModel)?;
            let matched = match_rule(run.transform, rules, subject.values)?;
            let (rule, text) = match matched {
                Some(i) => (
                    Some(i + 1),
                    condition_text(&rules.rules[i].when, wording.label),
                ),
                None => (None, "no rule matched".to_owned()),
            };
            let name =
                matched.map_or_else(|| rules.otherwise.clone(), |i| rules.rules[i].name.clone());
            // Segments are numbered without the empty ones; the proposed name is the rule's.
            e.consistent = run.proposed.get(subject.segment) == Some(&name);
            e.sentence = match matched {
                Some(_) => format!(
                    "You are in {} because you match its rule: {text}.",
                    quoted(&own_name)
                ),
                None => format!(
                    "You are in {} because you match none of the rules before it ({}).",
                    quoted(&own_name),
                    rules
                        .rules
                        .iter()
                        .map(|r| quoted(&r.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            e.rule = Some(MatchedRule { rule, name, text });
        }
        _ => {
            return Err(ExplainError::Mismatch(format!(
                "a {} run with another algorithm's model",
                run.algorithm.as_str()
            )));
        }
    }
    if !e.consistent {
        e.sentence.push_str(
            " (Your data changed after this run, so these figures, recomputed from your data now, may not be the ones the run used.)",
        );
    }
    Ok(e)
}

fn percent(p: f64) -> String {
    format!("{:.0}%", p * 100.0)
}

/// The first rule the customer's values match (`None`: the catch-all), with the rules' own
/// evaluation on a one-customer population.
fn match_rule(
    transform: &FittedTransform,
    rules: &RuleSet,
    values: &[RawValue],
) -> Result<Option<usize>, ExplainError> {
    let columns: Vec<FeatureColumn> = transform
        .features
        .iter()
        .zip(values)
        .map(|(f, v)| FeatureColumn {
            spec: match f {
                FittedFeature::Numeric { name, .. } => FeatureSpec::numeric(name.clone()),
                FittedFeature::Categorical { name, .. } => FeatureSpec::categorical(name.clone()),
            },
            values: match v {
                RawValue::Number(x) => ColumnValues::Numeric(vec![*x]),
                RawValue::Category(c) => ColumnValues::Categorical(vec![c.clone()]),
            },
        })
        .collect();
    let assignment = rules
        .assign(&columns)
        .map_err(|e| ExplainError::Mismatch(e.to_string()))?;
    let label = assignment.labels[0];
    Ok((label < rules.rules.len()).then_some(label))
}

#[cfg(test)]
mod tests;
