//! A segmentation run's computation, stage by stage, on the population its caller froze and
//! loaded: preprocess, cluster, profile, map, value, compare with the published run. The
//! caller (`crate::app::runs`) reads the data, stores the progress and the results, and
//! appends to the trail; nothing here touches the database or the clock.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use super::SegmentationError;
use super::attributes::{AttributeValue, extract};
use super::explain::{MemberDetail, RunModel};
use super::kmeans::{self, KMeansParams};
use super::mixture::{self, DbscanParams, GmmParams};
use super::pca::{SegmentMap, segment_map};
use super::preprocess::{
    ColumnValues, FeatureColumn, FeatureKind, FittedTransform, MissingReport, Preprocessed,
};
use super::profile::{Profiles, SegmentProfile, profile};
use super::quality::{self, KScore, adjusted_rand_index, choose_k_observed};
use super::rfm::{RfmSegment, rfm};
use super::settings::{FeatureSource, KChoice, RunAlgorithm, RunSettings};
use super::valuation::{
    MemberActivity, SegmentActivity, Valuation, ValuationParams, value_segments,
};
use crate::consent::coverage::Tally;
use crate::customers::features::{BehaviouralFeatures, WindowActivity};
use crate::policy::Policy;

/// What can stop the clustering stage.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Segmentation(#[from] SegmentationError),
    /// The algorithm left fewer non-empty segments than were asked for: the run fails
    /// rather than pass off a smaller segmentation as the one requested.
    #[error(
        "asked for {asked} segments, but the data gave only {got} non-empty one(s): the customers are too few or too alike for k = {asked}; ask for fewer segments or other features"
    )]
    TooFewSegments { asked: usize, got: usize },
}

/// Wall-clock time of each stage, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Timings {
    pub load: u64,
    pub preprocess: u64,
    pub cluster: u64,
    pub profile: u64,
    pub persist: u64,
}

/// Quality scores of a clustering (absent where undefined, e.g. a single segment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Quality {
    pub silhouette: Option<f64>,
    pub calinski_harabasz: Option<f64>,
    pub davies_bouldin: Option<f64>,
    pub inertia: Option<f64>,
    pub iterations: Option<usize>,
}

/// A sample of a numeric feature's values at run time: the reference drift is measured
/// against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureReference {
    pub feature: String,
    pub values: Vec<f64>,
}

/// What a run stores about itself beyond its segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub k: usize,
    /// For a range of k: every candidate's scores; the chosen k has the best silhouette.
    pub k_candidates: Vec<KScore>,
    pub quality: Quality,
    pub timings_ms: Timings,
    pub missing: MissingReport,
    pub transform: Option<FittedTransform>,
    pub map: Option<SegmentMap>,
    pub reference: Vec<FeatureReference>,
    /// The as-of date of the behavioural features and the valuation.
    pub as_of: chrono::NaiveDate,
}

/// Counts of the customers a run left out, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    pub no_consent: u64,
    pub withdrawn: u64,
    pub expired: u64,
    pub missing_values: u64,
}

impl Excluded {
    pub fn as_pairs(&self) -> [(&'static str, u64); 4] {
        [
            ("no_consent", self.no_consent),
            ("withdrawn", self.withdrawn),
            ("expired", self.expired),
            ("missing_values", self.missing_values),
        ]
    }
}

/// The values of a run's features for its members, as the run read them: member order
/// (ascending customer id), one column per feature in the run's order, with the members'
/// segments. The fairness audit that follows a run in the same process takes the members from
/// here when the stored memberships are still all there, and measures proxies on these values
/// instead of reading and parsing every member's attributes again.
#[derive(Debug, Clone, Default)]
pub struct RunFeatures {
    /// The run they are of.
    pub run_id: i64,
    /// The trail entry that recorded the run's completion, with its members: memberships are
    /// only ever removed by changes the trail records after it.
    pub stored_at_seq: i64,
    /// The members' internal customer ids, ascending.
    pub ids: Vec<i64>,
    /// Each member's segment (same order as `ids`), as the run stored it.
    pub segments: Vec<i32>,
    /// Per feature (run order): its name and one value per member.
    pub columns: Vec<(String, ColumnValues)>,
}

const REFERENCE_SAMPLE: usize = 5_000;
const TOP_FEATURES: usize = 3;

/// The frozen population and the data of its members.
pub struct Population {
    pub at: NaiveDateTime,
    /// Included customers' internal ids, ascending.
    pub ids: Vec<i64>,
    pub tally: Tally,
    pub columns: Vec<FeatureColumn>,
    /// Per included customer (same order as `ids`).
    pub activity: Vec<(BehaviouralFeatures, WindowActivity)>,
    pub reachable: Vec<bool>,
}

/// The attribute features of a run, in the run's order.
pub fn attribute_features(settings: &RunSettings) -> Vec<&str> {
    settings
        .features
        .iter()
        .filter(|f| f.source == FeatureSource::Attribute)
        .map(|f| f.spec.name.as_str())
        .collect()
}

/// One empty column of `n` values per attribute feature, to be filled in population order.
pub fn empty_attribute_columns(settings: &RunSettings, n: usize) -> Vec<ColumnValues> {
    settings
        .features
        .iter()
        .filter(|f| f.source == FeatureSource::Attribute)
        .map(|f| match f.spec.kind {
            FeatureKind::Categorical => ColumnValues::Categorical(vec![None; n]),
            FeatureKind::Numeric { .. } => ColumnValues::Numeric(vec![None; n]),
        })
        .collect()
}

/// Reads the `wanted` attributes of the customer at population position `p` from its stored
/// JSON into `columns`; `values` is scratch space, one per wanted attribute.
pub fn fill_attributes(
    json: &str,
    wanted: &[&str],
    p: usize,
    values: &mut [AttributeValue],
    columns: &mut [ColumnValues],
) -> Result<(), String> {
    extract(json, wanted, values).map_err(|e| e.to_string())?;
    for (column, value) in columns.iter_mut().zip(values.iter_mut()) {
        match column {
            ColumnValues::Numeric(v) => v[p] = value.number(),
            ColumnValues::Categorical(v) => v[p] = std::mem::take(value).into_label(),
        }
    }
    Ok(())
}

/// The run's feature columns in its order: behavioural ones from the members' activity,
/// attribute ones as read (one per attribute feature, in order).
pub fn feature_columns(
    settings: &RunSettings,
    activity: &[(BehaviouralFeatures, WindowActivity)],
    attribute_columns: Vec<ColumnValues>,
) -> Vec<FeatureColumn> {
    let mut attribute_columns = attribute_columns.into_iter();
    settings
        .features
        .iter()
        .map(|f| {
            let name = f.spec.name.as_str();
            let values = match f.source {
                FeatureSource::Behavioural => {
                    ColumnValues::Numeric(activity.iter().map(|(b, _)| b.get(name)).collect())
                }
                FeatureSource::Attribute => attribute_columns
                    .next()
                    .expect("one column per attribute feature"),
            };
            FeatureColumn {
                spec: f.spec.clone(),
                values,
            }
        })
        .collect()
}

/// Renumbers labels densely (empty segments dropped), keeping their order; returns the new
/// labels and, per new label, the old one.
fn dense(labels: &[usize], n_segments: usize) -> (Vec<usize>, Vec<usize>) {
    let mut used = vec![false; n_segments];
    for &l in labels {
        used[l] = true;
    }
    let mut map = vec![usize::MAX; n_segments];
    let mut old = Vec::new();
    for (l, &u) in used.iter().enumerate() {
        if u {
            map[l] = old.len();
            old.push(l);
        }
    }
    (labels.iter().map(|&l| map[l]).collect(), old)
}

/// A clustering with its labels made dense, before profiling.
pub struct Clustered {
    /// One label per model row (`pre.rows` indexes the population), in `0..n_segments`.
    pub labels: Vec<usize>,
    pub n_segments: usize,
    /// Names the algorithm gives its segments (DBSCAN, RFM, rules), instead of proposed ones.
    pub fixed_names: Option<Vec<String>>,
    pub k_candidates: Vec<KScore>,
    pub quality: Quality,
    /// What explains each membership (centres, mixture), in dense segment order.
    pub model: RunModel,
    /// Per model row, what the model cannot reproduce (RFM scores, DBSCAN's place); none for
    /// k-means, Gaussian mixtures and rules.
    pub details: Option<Vec<MemberDetail>>,
}

/// Rows of `rows` in the order `old` (dense label → old label).
fn reorder<T: Clone>(rows: &[T], old: &[usize]) -> Vec<T> {
    old.iter().map(|&l| rows[l].clone()).collect()
}

/// Clusters the preprocessed population with the run's algorithm, telling `progress` how far
/// the clustering has come as a fraction in [0, 1] where the algorithm can say (k-means
/// iterations and k candidates; mixtures, DBSCAN, RFM and rules report nothing until done).
pub fn cluster(
    settings: &RunSettings,
    policy: &Policy,
    pre: &Preprocessed,
    columns: &[FeatureColumn],
    progress: &mut dyn FnMut(f64),
) -> Result<Clustered, ClusterError> {
    let seg = &policy.segmentation;
    let x = pre.matrix.view();
    let mut k_candidates = Vec::new();
    let mut quality = Quality {
        silhouette: None,
        calinski_harabasz: None,
        davies_bouldin: None,
        inertia: None,
        iterations: None,
    };
    let mut details = None;
    let (labels, n_segments, fixed_names, model): (
        Vec<usize>,
        usize,
        Option<Vec<String>>,
        RunModel,
    ) = match settings.algorithm {
        RunAlgorithm::Kmeans => {
            let fit = match settings.k.expect("validated") {
                KChoice::Fixed(k) => {
                    kmeans::fit_observed(&x, &KMeansParams::new(k, settings.seed), progress)?
                }
                KChoice::Range { min, max } => {
                    let chosen = choose_k_observed(
                        &x,
                        min..=max,
                        settings.seed,
                        seg.silhouette_sample,
                        progress,
                    )?;
                    k_candidates = chosen.scores;
                    chosen.fit
                }
            };
            quality.inertia = Some(fit.inertia);
            quality.iterations = Some(fit.iterations);
            let k = fit.centres.nrows();
            let centres = fit.centres.rows().into_iter().map(|r| r.to_vec()).collect();
            (fit.labels, k, None, RunModel::Kmeans { centres })
        }
        RunAlgorithm::Gmm => {
            let KChoice::Fixed(k) = settings.k.expect("validated") else {
                unreachable!("validation allows a range of k for k-means only")
            };
            let (c, model) = mixture::gmm_with_model(&x, &GmmParams::new(k, settings.seed))?;
            quality.inertia = Some(c.inertia);
            quality.iterations = Some(c.iterations);
            (c.labels, c.n_segments, None, model)
        }
        RunAlgorithm::Dbscan => {
            let params = DbscanParams {
                eps: settings.eps.expect("validated"),
                min_points: settings.min_points.expect("validated"),
            };
            let c = mixture::dbscan(&x, &params)?;
            details = Some(mixture::dbscan_points(&x, &params));
            let mut names: Vec<String> = (0..c.n_segments)
                .map(|i| format!("Cluster {}", i + 1))
                .collect();
            if let Some(noise) = c.noise {
                names[noise] = "Noise (no dense region)".into();
            }
            (
                c.labels,
                c.n_segments,
                Some(names),
                RunModel::Dbscan {
                    eps: params.eps,
                    min_points: params.min_points,
                },
            )
        }
        RunAlgorithm::Rfm => {
            let col = |name: &str| -> Vec<f64> {
                let i = settings
                    .features
                    .iter()
                    .position(|f| f.spec.name == name)
                    .expect("rfm features");
                let ColumnValues::Numeric(v) = &columns[i].values else {
                    unreachable!("behavioural features are numeric")
                };
                pre.rows.iter().map(|&r| v[r].unwrap_or(0.0)).collect()
            };
            let result = rfm(&col("recency_days"), &col("frequency"), &col("monetary"))?;
            let names = RfmSegment::ALL
                .iter()
                .map(|s| s.name().to_owned())
                .collect();
            details = Some(result.scores.into_iter().map(MemberDetail::Rfm).collect());
            (
                result.labels,
                RfmSegment::ALL.len(),
                Some(names),
                RunModel::Rfm,
            )
        }
        RunAlgorithm::Rules => {
            let rules = settings.rules.as_ref().expect("validated");
            let assignment = rules.assign(columns)?;
            let labels = pre.rows.iter().map(|&r| assignment.labels[r]).collect();
            let n = assignment.names.len();
            (labels, n, Some(assignment.names), RunModel::Rules)
        }
    };
    let (labels, old_labels) = dense(&labels, n_segments);
    let n_segments = old_labels.len();
    if let Some(KChoice::Fixed(asked)) = settings.k
        && matches!(settings.algorithm, RunAlgorithm::Kmeans | RunAlgorithm::Gmm)
        && n_segments < asked
    {
        return Err(ClusterError::TooFewSegments {
            asked,
            got: n_segments,
        });
    }
    let fixed_names: Option<Vec<String>> =
        fixed_names.map(|names| old_labels.iter().map(|&l| names[l].clone()).collect());
    let model = match model {
        RunModel::Kmeans { centres } => RunModel::Kmeans {
            centres: reorder(&centres, &old_labels),
        },
        RunModel::Gmm {
            weights,
            means,
            covariances,
        } => RunModel::Gmm {
            weights: reorder(&weights, &old_labels),
            means: reorder(&means, &old_labels),
            covariances: reorder(&covariances, &old_labels),
        },
        other => other,
    };
    Ok(Clustered {
        labels,
        n_segments,
        fixed_names,
        k_candidates,
        quality,
        model,
        details,
    })
}

/// A clustering profiled, mapped and valued.
pub struct Profiled {
    pub quality: Quality,
    pub profiles: Profiles,
    pub map: Option<SegmentMap>,
    pub valuations: Vec<Valuation>,
}

/// Quality scores, profiles, the map and the valuation of each segment.
pub fn profile_segments(
    settings: &RunSettings,
    policy: &Policy,
    pre: &Preprocessed,
    population: &Population,
    clustered: Clustered,
) -> Result<Profiled, SegmentationError> {
    let seg = &policy.segmentation;
    let x = pre.matrix.view();
    let Clustered {
        labels,
        n_segments,
        mut quality,
        ..
    } = clustered;
    if (2..pre.matrix.nrows()).contains(&n_segments) {
        let sample =
            quality::sample_indices(pre.matrix.nrows(), seg.silhouette_sample, settings.seed);
        let xs = pre.matrix.select(ndarray::Axis(0), &sample);
        let ls: Vec<usize> = sample.iter().map(|&i| labels[i]).collect();
        quality.silhouette = quality::silhouette(&xs.view(), &ls).ok();
        quality.calinski_harabasz = quality::calinski_harabasz(&x, &labels).ok();
        quality.davies_bouldin = quality::davies_bouldin(&x, &labels).ok();
    }
    let profiles: Profiles = profile(&population.columns, pre, &labels, n_segments, TOP_FEATURES)?;
    let (centres, _) = super::segment_centres(&x, &labels, n_segments);
    let map = segment_map(
        &x,
        &labels,
        &centres.view(),
        &pre.transform.column_names(),
        seg.map_sample,
        settings.seed,
        2,
    )
    .ok();
    let mut members = vec![SegmentActivity::default(); n_segments];
    for (&row, &label) in pre.rows.iter().zip(&labels) {
        let (features, window) = &population.activity[row];
        members[label].add(&MemberActivity {
            revenue: features.monetary,
            orders: features.frequency,
            recent_revenue: window.recent_revenue,
            recent_orders: window.recent_orders,
            prior_revenue: window.prior_revenue,
            reachable: population.reachable[row],
        });
    }
    let distinctness: Vec<Option<f64>> = profiles
        .segments
        .iter()
        .map(|s| match settings.algorithm {
            RunAlgorithm::Kmeans | RunAlgorithm::Gmm | RunAlgorithm::Dbscan => {
                s.nearest.map(|(_, d)| d)
            }
            RunAlgorithm::Rfm | RunAlgorithm::Rules => None,
        })
        .collect();
    let valuations: Vec<Valuation> = value_segments(
        &members,
        &distinctness,
        &ValuationParams {
            window_days: seg.valuation_window_days,
            gross_margin: seg.gross_margin,
            annual_discount_rate: seg.annual_discount_rate,
            cost_per_customer: seg.cost_per_customer,
            cost_per_order: seg.cost_per_order,
            min_segment_size: seg.min_segment_size,
            min_reachable_share: seg.min_reachable_share,
            min_distinctness: seg.min_distinctness,
            min_cell_size: u64::from(policy.fairness.min_cell_size),
        },
    );
    Ok(Profiled {
        quality,
        profiles,
        map,
        valuations,
    })
}

/// (customer id, segment) per member, by customer id: `labels` per model row, `rows` the
/// model rows' places in the population, `ids` the population's ids.
pub fn memberships(rows: &[usize], labels: &[usize], ids: &[i64]) -> Vec<(i64, i32)> {
    rows.iter()
        .zip(labels)
        .map(|(&row, &label)| (ids[row], label as i32))
        .collect()
}

/// Names of the new segments as (name, proposed name). Segments the algorithm names keep
/// those names; otherwise segments found again keep the names the previous (published) run's
/// segments have now (`previous`: its segments' names and profiles).
pub fn segment_names(
    algorithm: RunAlgorithm,
    fixed_names: Option<&[String]>,
    profiles: &[SegmentProfile],
    previous: Option<&[(String, SegmentProfile)]>,
) -> Vec<(String, String)> {
    let carried: Vec<Option<String>> = match (previous, algorithm) {
        (Some(before), RunAlgorithm::Kmeans | RunAlgorithm::Gmm | RunAlgorithm::Dbscan)
            if fixed_names.is_none() =>
        {
            super::matching::carried_names(before, profiles)
        }
        _ => vec![None; profiles.len()],
    };
    profiles
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let name = fixed_names.map_or_else(|| p.proposed_name.clone(), |n| n[i].clone());
            (carried[i].clone().unwrap_or_else(|| name.clone()), name)
        })
        .collect()
}

/// The feature values a run clustered, for its members (`rows` of the population kept,
/// `memberships` in the same order).
pub fn run_features(
    run_id: i64,
    stored_at_seq: i64,
    population: Population,
    rows: &[usize],
    memberships: &[(i64, i32)],
) -> RunFeatures {
    // Every customer kept: the columns are already in member order and move over as they are.
    let kept_all = rows.len() == population.ids.len();
    RunFeatures {
        run_id,
        stored_at_seq,
        ids: memberships.iter().map(|&(customer, _)| customer).collect(),
        segments: memberships.iter().map(|&(_, segment)| segment).collect(),
        columns: population
            .columns
            .into_iter()
            .map(|c| {
                let values = match c.values {
                    values if kept_all => values,
                    ColumnValues::Numeric(v) => {
                        ColumnValues::Numeric(rows.iter().map(|&r| v[r]).collect())
                    }
                    ColumnValues::Categorical(mut v) => {
                        ColumnValues::Categorical(rows.iter().map(|&r| v[r].take()).collect())
                    }
                };
                (c.spec.name, values)
            })
            .collect(),
    }
}

/// The segments of the customers both runs contain, as (segment in `before`, segment in
/// `after`); both lists (customer id, segment) sorted by customer id.
pub fn shared_segments(before: &[(i64, i32)], after: &[(i64, i32)]) -> Vec<(usize, usize)> {
    let mut shared = Vec::new();
    let mut j = 0;
    for &(customer, segment) in before {
        while j < after.len() && after[j].0 < customer {
            j += 1;
        }
        if j < after.len() && after[j].0 == customer {
            shared.push((segment as usize, after[j].1 as usize));
        }
    }
    shared
}

/// The adjusted Rand index between two runs' memberships on the customers both contain
/// (both lists sorted by customer id); `None` when fewer than two customers are shared.
pub fn stability(before: &[(i64, i32)], after: &[(i64, i32)]) -> Option<f64> {
    let (a, b): (Vec<usize>, Vec<usize>) = shared_segments(before, after).into_iter().unzip();
    if a.len() < 2 {
        return None;
    }
    adjusted_rand_index(&a, &b).ok()
}

/// A seeded sample of each numeric feature's values over the modelled rows.
pub fn reference_sample(
    columns: &[FeatureColumn],
    rows: &[usize],
    seed: u64,
) -> Vec<FeatureReference> {
    let sample = quality::sample_indices(rows.len(), REFERENCE_SAMPLE, seed);
    columns
        .iter()
        .filter_map(|c| match &c.values {
            ColumnValues::Numeric(v) => Some(FeatureReference {
                feature: c.spec.name.clone(),
                values: sample.iter().filter_map(|&i| v[rows[i]]).collect(),
            }),
            ColumnValues::Categorical(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_labels_drop_empty_segments_in_order() {
        let (labels, old) = dense(&[4, 0, 4, 2], 6);
        assert_eq!(labels, [2, 0, 2, 1]);
        assert_eq!(old, [0, 2, 4]);
    }

    #[test]
    fn stability_compares_only_shared_customers() {
        let before = [(1, 0), (2, 0), (3, 1), (4, 1), (9, 0)];
        // Same partition with the labels swapped, customer 9 gone, customer 5 new.
        let after = [(1, 1), (2, 1), (3, 0), (4, 0), (5, 0)];
        assert_eq!(stability(&before, &after), Some(1.0));
        assert_eq!(stability(&before[..1], &after), None);
    }
}
