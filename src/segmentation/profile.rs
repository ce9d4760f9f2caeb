//! Segment profiles: who is in each segment, in the original units a marketer reads, and how
//! the segment differs from the whole population.
//!
//! For every feature a segment gets:
//! - numeric: its mean against the population's (original units, after imputation), the lift
//!   (ratio of the two) and the *standardised difference*: the difference of the means of the
//!   model column, i.e. in population standard deviations (of `ln(1 + x)` for log features);
//! - categorical: its most frequent category, and the category whose share departs most from
//!   the population's, with both shares, the lift and the standardised difference
//!   `(p_segment − p_population) / √(p_population (1 − p_population))`.
//!
//! Features are ranked by the absolute standardised difference; the strongest (at least
//! [`NAME_THRESHOLD`]) make the proposed name, e.g. "Recent big spenders".
//! Distinctness is the distance between segment centres in the model space (standard-deviation
//! units): a segment whose nearest neighbour is close is hard to treat differently.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use super::preprocess::{ColumnValues, FeatureColumn, FittedFeature, Preprocessed};
use super::{Result, SegmentationError, segment_centres};

/// Standardised difference from which a feature enters a proposed name.
pub const NAME_THRESHOLD: f64 = 0.5;
/// Standardised difference from which "high"/"low" become "very high"/"very low".
pub const STRONG_THRESHOLD: f64 = 1.0;

/// One feature of one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureSummary {
    /// A numeric feature.
    Numeric {
        /// Segment mean (original units); `None` for an empty segment.
        segment_mean: Option<f64>,
        /// Population mean (original units).
        population_mean: f64,
        /// `segment_mean / population_mean`; `None` when undefined.
        lift: Option<f64>,
    },
    /// A categorical feature.
    Categorical {
        /// Most frequent category in the segment (first in sorted order on ties).
        segment_mode: Option<String>,
        /// Most frequent category in the population.
        population_mode: String,
        /// The category whose share departs most from the population's.
        category: String,
        /// Its share in the segment.
        segment_share: Option<f64>,
        /// Its share in the population.
        population_share: f64,
        /// `segment_share / population_share`.
        lift: Option<f64>,
    },
}

/// A feature's profile in a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureProfile {
    /// Feature name.
    pub feature: String,
    /// Means or shares.
    pub summary: FeatureSummary,
    /// Difference from the population in standard-deviation units (0 for an empty segment).
    pub standardised_difference: f64,
}

/// One segment's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentProfile {
    /// The segment label.
    pub segment: usize,
    /// Members.
    pub size: usize,
    /// Members as a share of the population.
    pub share: f64,
    /// Every feature, in feature order.
    pub features: Vec<FeatureProfile>,
    /// Feature names, most distinguishing first (at most `top`).
    pub top_features: Vec<String>,
    /// A descriptive name, unique among the segments; users may change it.
    pub proposed_name: String,
    /// The closest other non-empty segment and the distance between centres (std units).
    pub nearest: Option<(usize, f64)>,
}

/// Profiles of all segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profiles {
    /// Population size.
    pub population: usize,
    /// One per segment label `0..n_segments`.
    pub segments: Vec<SegmentProfile>,
    /// The smallest distance between two non-empty segments' centres (std units), with the
    /// pair; `None` with fewer than two non-empty segments.
    pub min_centre_distance: Option<(usize, usize, f64)>,
}

fn numeric_values(values: &[Option<f64>], rows: &[usize], fill: Option<f64>) -> Vec<f64> {
    rows.iter()
        .map(|&r| {
            values[r]
                .or(fill)
                .expect("preprocessing kept only rows with a value or a fill")
        })
        .collect()
}

/// A name people would give a segment, from its most distinguishing features: words for the
/// behavioural features ("Recent big spenders", "Lapsed occasional customers"), and "with …"
/// for the others ("Customers with high price sensitivity").
fn segment_name(features: &[&FeatureProfile]) -> String {
    let mut adjectives: Vec<String> = Vec::new();
    let mut noun: Option<&str> = None;
    let mut with: Vec<String> = Vec::new();
    for f in features {
        let d = f.standardised_difference;
        let strong = d.abs() >= STRONG_THRESHOLD;
        match &f.summary {
            FeatureSummary::Numeric { .. } => {
                let high = d > 0.0;
                match (f.feature.as_str(), high) {
                    ("recency_days" | "recency", true) => {
                        adjectives.push(if strong { "long-lapsed" } else { "lapsed" }.into())
                    }
                    ("recency_days" | "recency", false) => adjectives.push("recent".into()),
                    ("frequency", true) => adjectives.push("frequent".into()),
                    ("frequency", false) => adjectives.push("occasional".into()),
                    ("tenure_days" | "tenure", true) => adjectives.push("long-standing".into()),
                    ("tenure_days" | "tenure", false) => adjectives.push("new".into()),
                    ("monetary" | "average_order_value", true) if noun.is_none() => {
                        noun = Some("big spenders")
                    }
                    ("monetary" | "average_order_value", false) if noun.is_none() => {
                        noun = Some("low spenders")
                    }
                    (other, _) => {
                        let level = match (high, strong) {
                            (true, true) => "very high",
                            (true, false) => "high",
                            (false, true) => "very low",
                            (false, false) => "low",
                        };
                        with.push(format!("{level} {}", words(other)));
                    }
                }
            }
            FeatureSummary::Categorical { category, .. } => {
                let feature = words(&f.feature);
                if d > 0.0 {
                    with.push(format!("{} {feature}", words(category)));
                } else {
                    with.push(format!("rarely {} {feature}", words(category)));
                }
            }
        }
    }
    if adjectives.is_empty() && noun.is_none() && with.is_empty() {
        return "Typical customers".into();
    }
    let mut name = adjectives.join(" ");
    if !name.is_empty() {
        name.push(' ');
    }
    name.push_str(noun.unwrap_or("customers"));
    if !with.is_empty() {
        name.push_str(" with ");
        name.push_str(&with.join(" and "));
    }
    capitalise(&name)
}

/// An internal name in words (`price_sensitivity` → `price sensitivity`).
fn words(name: &str) -> String {
    name.replace('_', " ")
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// Profiles the segments of a run. `columns` are the raw columns given to
/// [`super::preprocess::fit_transform`], `pre` its result, `labels` one per model row in
/// `0..n_segments`; `top` is how many distinguishing features to list.
pub fn profile(
    columns: &[FeatureColumn],
    pre: &Preprocessed,
    labels: &[usize],
    n_segments: usize,
    top: usize,
) -> Result<Profiles> {
    let x: ArrayView2<'_, f64> = pre.matrix.view();
    let n = x.nrows();
    if n == 0 {
        return Err(SegmentationError::Empty);
    }
    if labels.len() != n {
        return Err(SegmentationError::LabelMismatch(format!(
            "{} labels for {} customers",
            labels.len(),
            n
        )));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l >= n_segments) {
        return Err(SegmentationError::LabelMismatch(format!(
            "label {bad} is not below n_segments = {n_segments}"
        )));
    }
    if columns.len() != pre.transform.features.len() {
        return Err(SegmentationError::LabelMismatch(format!(
            "{} columns given, preprocessing had {}",
            columns.len(),
            pre.transform.features.len()
        )));
    }
    let (centres, sizes) = segment_centres(&x, labels, n_segments);
    let pop_means: Vec<f64> = x
        .columns()
        .into_iter()
        .map(|c| c.sum() / n as f64)
        .collect();
    let mut per_segment: Vec<Vec<FeatureProfile>> = vec![Vec::new(); n_segments];
    let mut at = 0;
    for (col, fitted) in columns.iter().zip(&pre.transform.features) {
        match (fitted, &col.values) {
            (FittedFeature::Numeric { name, fill, .. }, ColumnValues::Numeric(v)) => {
                let vals = numeric_values(v, &pre.rows, *fill);
                let pop = vals.iter().sum::<f64>() / n as f64;
                let mut sums = vec![0.0; n_segments];
                for (val, &l) in vals.iter().zip(labels) {
                    sums[l] += val;
                }
                for (s, out) in per_segment.iter_mut().enumerate() {
                    let seg = (sizes[s] > 0).then(|| sums[s] / sizes[s] as f64);
                    out.push(FeatureProfile {
                        feature: name.clone(),
                        summary: FeatureSummary::Numeric {
                            segment_mean: seg,
                            population_mean: pop,
                            lift: seg.filter(|_| pop != 0.0).map(|m| m / pop),
                        },
                        standardised_difference: if sizes[s] > 0 {
                            centres[[s, at]] - pop_means[at]
                        } else {
                            0.0
                        },
                    });
                }
            }
            (
                FittedFeature::Categorical {
                    name, categories, ..
                },
                ColumnValues::Categorical(_),
            ) => {
                let w = categories.len();
                let argmax = |shares: &[f64]| {
                    shares
                        .iter()
                        .enumerate()
                        .fold(0, |b, (j, &p)| if p > shares[b] { j } else { b })
                };
                let pop_shares = &pop_means[at..at + w];
                let pop_mode = categories[argmax(pop_shares)].clone();
                for (s, out) in per_segment.iter_mut().enumerate() {
                    let seg_shares: Vec<f64> = (0..w).map(|j| centres[[s, at + j]]).collect();
                    let d: Vec<f64> = (0..w)
                        .map(|j| {
                            let p = pop_shares[j];
                            if sizes[s] == 0 || p <= 0.0 || p >= 1.0 {
                                0.0
                            } else {
                                (seg_shares[j] - p) / (p * (1.0 - p)).sqrt()
                            }
                        })
                        .collect();
                    let j = (0..w).fold(0, |b, j| if d[j].abs() > d[b].abs() { j } else { b });
                    let nonempty = sizes[s] > 0;
                    out.push(FeatureProfile {
                        feature: name.clone(),
                        summary: FeatureSummary::Categorical {
                            segment_mode: nonempty.then(|| categories[argmax(&seg_shares)].clone()),
                            population_mode: pop_mode.clone(),
                            category: categories[j].clone(),
                            segment_share: nonempty.then_some(seg_shares[j]),
                            population_share: pop_shares[j],
                            lift: nonempty.then_some(seg_shares[j] / pop_shares[j]),
                        },
                        standardised_difference: d[j],
                    });
                }
            }
            _ => {
                return Err(SegmentationError::LabelMismatch(format!(
                    "column '{}' does not match the fitted feature '{}'",
                    col.spec.name,
                    fitted.name()
                )));
            }
        }
        at += fitted.width();
    }
    // Distances between non-empty centres, in model (std) units.
    let dist = |a: usize, b: usize| {
        centres
            .row(a)
            .iter()
            .zip(centres.row(b))
            .map(|(p, q)| (p - q) * (p - q))
            .sum::<f64>()
            .sqrt()
    };
    let nonempty: Vec<usize> = (0..n_segments).filter(|&s| sizes[s] > 0).collect();
    let mut min_centre_distance: Option<(usize, usize, f64)> = None;
    for (i, &a) in nonempty.iter().enumerate() {
        for &b in &nonempty[i + 1..] {
            let dd = dist(a, b);
            if min_centre_distance.is_none_or(|(_, _, m)| dd < m) {
                min_centre_distance = Some((a, b, dd));
            }
        }
    }
    let mut used: Vec<String> = Vec::new();
    let segments = per_segment
        .into_iter()
        .enumerate()
        .map(|(s, features)| {
            let mut order: Vec<usize> = (0..features.len()).collect();
            order.sort_by(|&a, &b| {
                features[b]
                    .standardised_difference
                    .abs()
                    .total_cmp(&features[a].standardised_difference.abs())
                    .then(a.cmp(&b))
            });
            let top_features: Vec<String> = order
                .iter()
                .take(top)
                .map(|&i| features[i].feature.clone())
                .collect();
            let distinguishing: Vec<&FeatureProfile> = order
                .iter()
                .map(|&i| &features[i])
                .filter(|f| f.standardised_difference.abs() >= NAME_THRESHOLD)
                .collect();
            // Two features name a segment; when that name is taken, a third or fourth
            // tells the segments apart before a number has to.
            let mut name = String::new();
            for take in 2..=4 {
                name = if sizes[s] == 0 {
                    "Empty segment".to_owned()
                } else {
                    segment_name(&distinguishing[..distinguishing.len().min(take)])
                };
                if !used.contains(&name) || distinguishing.len() <= take {
                    break;
                }
            }
            let base = name.clone();
            let mut k = 2;
            while used.contains(&name) {
                name = format!("{base} ({k})");
                k += 1;
            }
            used.push(name.clone());
            let nearest = nonempty
                .iter()
                .filter(|&&o| o != s && sizes[s] > 0)
                .map(|&o| (o, dist(s, o)))
                .fold(None, |b: Option<(usize, f64)>, c| match b {
                    Some(bb) if bb.1 <= c.1 => Some(bb),
                    _ => Some(c),
                });
            SegmentProfile {
                segment: s,
                size: sizes[s],
                share: sizes[s] as f64 / n as f64,
                features,
                top_features,
                proposed_name: name,
                nearest,
            }
        })
        .collect();
    Ok(Profiles {
        population: n,
        segments,
        min_centre_distance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segmentation::preprocess::{FeatureSpec, MissingRule, fit_transform};
    use approx::assert_relative_eq;

    /// Eight customers, two obvious segments: big recent spenders in the north (0–3) and
    /// small, lapsed spenders mostly in the south (4–7).
    fn data() -> Vec<FeatureColumn> {
        vec![
            FeatureColumn {
                spec: FeatureSpec::numeric("monetary").with_missing(MissingRule::ImputeMean),
                values: ColumnValues::Numeric(
                    [900.0, 1100.0, 1000.0, 1000.0, 100.0, 120.0, 80.0]
                        .into_iter()
                        .map(Some)
                        .chain([None])
                        .collect(),
                ),
            },
            FeatureColumn {
                spec: FeatureSpec::numeric("recency"),
                values: ColumnValues::Numeric(
                    [5.0, 10.0, 7.0, 8.0, 300.0, 280.0, 320.0, 310.0]
                        .into_iter()
                        .map(Some)
                        .collect(),
                ),
            },
            FeatureColumn {
                spec: FeatureSpec::numeric("tenure"),
                values: ColumnValues::Numeric(
                    [3.0, 5.0, 4.0, 4.0, 3.0, 5.0, 4.0, 4.0]
                        .into_iter()
                        .map(Some)
                        .collect(),
                ),
            },
            FeatureColumn {
                spec: FeatureSpec::categorical("region"),
                values: ColumnValues::Categorical(
                    [
                        "north", "north", "north", "south", "south", "south", "south", "north",
                    ]
                    .into_iter()
                    .map(|s| Some(s.to_owned()))
                    .collect(),
                ),
            },
        ]
    }

    #[test]
    fn sizes_means_lifts_and_names() {
        let cols = data();
        let pre = fit_transform(&cols).unwrap();
        let labels = vec![0, 0, 0, 0, 1, 1, 1, 1];
        let p = profile(&cols, &pre, &labels, 2, 2).unwrap();
        assert_eq!(p.population, 8);
        assert_eq!((p.segments[0].size, p.segments[0].share), (4, 0.5));
        // monetary: the missing value of customer 7 is imputed with the mean of the other 7.
        let fill = (900.0 + 1100.0 + 1000.0 + 1000.0 + 100.0 + 120.0 + 80.0) / 7.0;
        let FeatureSummary::Numeric {
            segment_mean,
            population_mean,
            lift,
        } = &p.segments[1].features[0].summary
        else {
            panic!()
        };
        assert_relative_eq!(
            segment_mean.unwrap(),
            (100.0 + 120.0 + 80.0 + fill) / 4.0,
            max_relative = 1e-12
        );
        assert_relative_eq!(
            *population_mean,
            (4000.0 + 300.0 + fill) / 8.0,
            max_relative = 1e-12
        );
        assert_relative_eq!(
            lift.unwrap(),
            segment_mean.unwrap() / population_mean,
            max_relative = 1e-12
        );
        // Tenure does not differ: standardised difference 0, never in a name.
        assert_relative_eq!(
            p.segments[0].features[2].standardised_difference,
            0.0,
            epsilon = 1e-12
        );
        assert_eq!(p.segments[0].top_features.len(), 2);
        assert!(!p.segments[0].top_features.contains(&"tenure".to_owned()));
        // In a half/half split a segment mean lies within one population std of the mean.
        assert_eq!(p.segments[0].proposed_name, "Recent big spenders");
        assert_eq!(p.segments[1].proposed_name, "Lapsed low spenders");
        // Region: segment 0 is 3/4 north against 1/2 overall.
        let FeatureSummary::Categorical {
            segment_mode,
            category,
            segment_share,
            population_share,
            ..
        } = &p.segments[0].features[3].summary
        else {
            panic!()
        };
        assert_eq!(segment_mode.as_deref(), Some("north"));
        assert_eq!((category.as_str(), *population_share), ("north", 0.5));
        assert_eq!(*segment_share, Some(0.75));
        assert_relative_eq!(
            p.segments[0].features[3].standardised_difference,
            0.5,
            max_relative = 1e-12
        );
        // Distinctness: the two centres are far apart, and each is the other's nearest.
        let (a, b, d) = p.min_centre_distance.unwrap();
        assert_eq!((a, b), (0, 1));
        assert!(d > 2.0);
        assert_eq!(p.segments[0].nearest, Some((1, d)));
    }

    #[test]
    fn typical_empty_and_duplicate_names() {
        let cols = data();
        let pre = fit_transform(&cols).unwrap();
        // Alternating labels: nothing distinguishes the segments much; segment 2 is empty.
        let labels = vec![0, 1, 0, 1, 0, 1, 0, 1];
        let p = profile(&cols, &pre, &labels, 3, 3).unwrap();
        assert_eq!(p.segments[2].size, 0);
        assert_eq!(p.segments[2].proposed_name, "Empty segment");
        assert_eq!(p.segments[2].nearest, None);
        let names: Vec<&str> = p
            .segments
            .iter()
            .map(|s| s.proposed_name.as_str())
            .collect();
        let mut uniq = names.clone();
        uniq.dedup();
        assert_eq!(uniq.len(), names.len());
        assert!(profile(&cols, &pre, &labels, 1, 3).is_err());
        assert!(profile(&cols, &pre, &labels[..7], 3, 3).is_err());
    }
}
