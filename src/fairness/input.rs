//! Building an [`AuditInput`] from what storage holds: values read per member by position,
//! protected attributes as audit groups, the run's features for proxies, and the policy's
//! thresholds. Pure: the application layer reads the rows and hands them over.
//!
//! **Which attributes and intersections are audited.** Every protected attribute of the policy
//! that at least one member has a value for (numeric ones in the policy's bands; members
//! without a value form the reported group "(missing)"), and the intersection of every pair of
//! categorical protected attributes present (e.g. sex × ethnicity). Banded attributes are left
//! out of intersections: bands × categories give many small cells that suppression would hide
//! anyway.
//!
//! **Feature values for proxies.** Numeric features a member has no value for are imputed the
//! way the run imputed them (the members' mean, median or mode, by the run's missing-value
//! rule), so the audit measures the feature the run clustered on; categorical ones form a
//! "(missing)" category.

use super::{
    Bands, FairnessError, FairnessThresholds, Feature, FeatureValues, GroupColumn,
    ProtectedAttribute, Segment,
};
use crate::policy::{AttributeKind, Policy};
use crate::segmentation::attributes::AttributeValue;
use crate::segmentation::pipeline::RunFeatures;
use crate::segmentation::preprocess::{ColumnValues, FeatureKind, MissingRule, numeric_fill};
use crate::segmentation::settings::{FeatureSource, RunSettings};

/// The policy's fairness settings as audit thresholds.
pub fn thresholds(policy: &Policy) -> FairnessThresholds {
    let f = &policy.fairness;
    FairnessThresholds {
        alpha: f.significance_level,
        cramers_v_warn: f.effect_size_warn,
        cramers_v_fail: f.effect_size_fail,
        four_fifths_ratio: f.four_fifths_ratio,
        min_cell_size: u64::from(f.min_cell_size),
        proxy_limit: f.proxy_limit,
        monte_carlo_samples: f.monte_carlo_samples as usize,
        confidence_level: 0.95,
        seed: f.seed,
    }
}

/// The favourable segments of a run's strategies as stored with an audit: when they differ
/// from the run's strategies now, the audit's four-fifths result is stale.
pub fn favourable_fingerprint(favourable: &[i32]) -> String {
    serde_json::to_string(favourable).expect("integers serialise")
}

/// The audited segments: those the run has and those a member is in, with whether their
/// strategy is favourable; ascending.
pub fn segments(run_segments: &[i32], members: &[(i64, i32)], favourable: &[i32]) -> Vec<Segment> {
    let mut ids = run_segments.to_vec();
    for &(_, s) in members {
        if !ids.contains(&s) {
            ids.push(s);
        }
    }
    ids.sort_unstable();
    ids.iter()
        .map(|&s| Segment {
            id: s as u32,
            favourable: favourable.contains(&s),
        })
        .collect()
}

/// Every pair of categorical attributes, in order.
pub fn intersections(categorical: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, a) in categorical.iter().enumerate() {
        for b in &categorical[i + 1..] {
            out.push((a.clone(), b.clone()));
        }
    }
    out
}

fn label_of(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number_of(value: &serde_json::Value) -> Option<f64> {
    match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|x| x.is_finite())
}

/// A column of values per member, built by position.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Labels(Vec<Option<String>>),
    Numbers(Vec<Option<f64>>),
}

impl Column {
    /// An empty column for a protected attribute; allocated at its first value
    /// ([`Column::set`]), so the policy's attributes that no customer has cost nothing.
    pub fn for_attribute(kind: AttributeKind) -> Column {
        match kind {
            AttributeKind::Numeric => Column::Numbers(Vec::new()),
            AttributeKind::Categorical => Column::Labels(Vec::new()),
        }
    }

    /// A column of `n` missing values for a feature.
    pub fn for_feature(kind: FeatureKind, n: usize) -> Column {
        match kind {
            FeatureKind::Categorical => Column::Labels(vec![None; n]),
            FeatureKind::Numeric { .. } => Column::Numbers(vec![None; n]),
        }
    }

    /// Sets member `i` of `n` from a JSON value.
    pub fn set(&mut self, i: usize, n: usize, value: &serde_json::Value) {
        match self {
            Column::Labels(v) => {
                if let Some(label) = label_of(value) {
                    v.resize(n, None);
                    v[i] = Some(label);
                } else if !v.is_empty() {
                    v[i] = None;
                }
            }
            Column::Numbers(v) => {
                if let Some(x) = number_of(value) {
                    v.resize(n, None);
                    v[i] = Some(x);
                } else if !v.is_empty() {
                    v[i] = None;
                }
            }
        }
    }

    /// Sets member `i` (of a column already allocated) from an attribute value.
    pub fn set_attribute(&mut self, i: usize, value: AttributeValue) {
        match self {
            Column::Labels(v) => {
                v[i] = value.into_label().filter(|s| !s.trim().is_empty());
            }
            Column::Numbers(v) => v[i] = value.number().filter(|x| x.is_finite()),
        }
    }

    /// Sets member `i` of a numeric column; labels are left alone.
    pub fn set_number(&mut self, i: usize, value: Option<f64>) {
        if let Column::Numbers(v) = self {
            v[i] = value;
        }
    }

    /// The values at positions `at` of this column, in that order (`None`: no value), so that
    /// values read once for every customer serve a subset of them too. A column nobody has a
    /// value in stays unallocated.
    pub fn pick(&self, at: &[Option<usize>]) -> Column {
        fn pick<T: Clone>(v: &[Option<T>], at: &[Option<usize>]) -> Vec<Option<T>> {
            if v.is_empty() {
                return Vec::new();
            }
            at.iter()
                .map(|p| p.and_then(|p| v.get(p).cloned().flatten()))
                .collect()
        }
        match self {
            Column::Labels(v) => Column::Labels(pick(v, at)),
            Column::Numbers(v) => Column::Numbers(pick(v, at)),
        }
    }

    fn present(&self) -> bool {
        match self {
            Column::Labels(v) => v.iter().any(Option::is_some),
            Column::Numbers(v) => v.iter().any(Option::is_some),
        }
    }
}

/// Position of each customer id among the members (ascending ids).
pub struct Positions(Vec<u32>);

impl Positions {
    pub fn new(ids: &[i64]) -> Positions {
        let max = ids.iter().copied().max().unwrap_or(0).max(0) as usize;
        let mut position = vec![u32::MAX; max + 1];
        for (i, &id) in ids.iter().enumerate() {
            if id >= 0 {
                position[id as usize] = i as u32;
            }
        }
        Positions(position)
    }

    /// The member's position, `None` if `id` is not a member.
    pub fn at(&self, id: i64) -> Option<usize> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.0.get(i))
            .filter(|&&p| p != u32::MAX)
            .map(|&p| p as usize)
    }
}

/// For each of `all` (ascending), whether it is among `subset` (ascending).
pub fn in_sorted(all: &[i64], subset: &[i64]) -> Vec<bool> {
    let mut j = 0;
    all.iter()
        .map(|&id| {
            while j < subset.len() && subset[j] < id {
                j += 1;
            }
            j < subset.len() && subset[j] == id
        })
        .collect()
}

/// The protected attributes read into `columns` as audit groups (numeric ones in the policy's
/// bands), leaving out attributes nobody has; with the names of the categorical ones.
pub fn protected_attributes(
    policy: &Policy,
    columns: Vec<(&str, Column)>,
) -> Result<(Vec<ProtectedAttribute>, Vec<String>), FairnessError> {
    let mut attributes = Vec::new();
    let mut categorical = Vec::new();
    for (name, column) in columns.into_iter().filter(|(_, c)| c.present()) {
        match column {
            Column::Labels(labels) => {
                attributes.push(ProtectedAttribute::categorical(name, &labels)?);
                categorical.push(name.to_owned());
            }
            Column::Numbers(values) => {
                let bands = Bands::new(&policy.protected_attributes[name].bands)?;
                attributes.push(ProtectedAttribute::numeric(name, &values, &bands)?);
            }
        }
    }
    Ok((attributes, categorical))
}

/// One empty column per feature of the run, in run order.
pub fn feature_columns(settings: &RunSettings, n: usize) -> Vec<(String, Column)> {
    settings
        .features
        .iter()
        .map(|f| (f.spec.name.clone(), Column::for_feature(f.spec.kind, n)))
        .collect()
}

/// Whether `known` holds the features of exactly these members, of the same kinds.
pub fn known_fits(known: &RunFeatures, ids: &[i64], columns: &[(String, Column)]) -> bool {
    known.ids == ids
        && known.columns.len() == columns.len()
        && known.columns.iter().zip(columns).all(|((a, va), (b, vb))| {
            a == b
                && matches!(
                    (va, vb),
                    (ColumnValues::Numeric(_), Column::Numbers(_))
                        | (ColumnValues::Categorical(_), Column::Labels(_))
                )
        })
}

/// Fills the attribute features from `known` (see [`known_fits`]). Behavioural ones are left
/// to be read from storage as before (a customer without purchases is missing there, where
/// the run saw zeros). The same cleaning as values read from storage: non-finite numbers and
/// blank labels are missing.
pub fn take_known(columns: &mut [(String, Column)], known: &RunFeatures, settings: &RunSettings) {
    for (((_, column), (_, values)), _) in columns
        .iter_mut()
        .zip(&known.columns)
        .zip(&settings.features)
        .filter(|(_, f)| f.source == FeatureSource::Attribute)
    {
        match (column, values) {
            (Column::Numbers(out), ColumnValues::Numeric(v)) => {
                for (o, x) in out.iter_mut().zip(v) {
                    *o = x.filter(|x| x.is_finite());
                }
            }
            (Column::Labels(out), ColumnValues::Categorical(v)) => {
                for (o, x) in out.iter_mut().zip(v) {
                    *o = x.clone().filter(|s| !s.trim().is_empty());
                }
            }
            _ => unreachable!("kinds checked by known_fits"),
        }
    }
}

/// The indices of the run's features that come from `source`.
pub fn features_from(settings: &RunSettings, source: FeatureSource) -> Vec<usize> {
    settings
        .features
        .iter()
        .enumerate()
        .filter(|(_, f)| f.source == source)
        .map(|(i, _)| i)
        .collect()
}

/// The feature columns as audit features: missing numbers imputed by the run's rule, a numeric
/// feature nobody has left out.
pub fn features(
    columns: Vec<(String, Column)>,
    rule: MissingRule,
) -> Result<Vec<Feature>, FairnessError> {
    let mut features = Vec::new();
    for (name, column) in columns {
        let values = match column {
            Column::Labels(labels) => {
                FeatureValues::Categorical(GroupColumn::from_labels(&labels)?)
            }
            Column::Numbers(values) => {
                let known: Vec<f64> = values.iter().flatten().copied().collect();
                let Some(fill) = numeric_fill(rule, known) else {
                    continue;
                };
                FeatureValues::Numeric(values.iter().map(|v| v.unwrap_or(fill)).collect())
            }
        };
        features.push(Feature { name, values });
    }
    Ok(features)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(feature: &Feature) -> &[f64] {
        match &feature.values {
            FeatureValues::Numeric(v) => v,
            FeatureValues::Categorical(_) => panic!("numeric"),
        }
    }

    #[test]
    fn picking_members_keeps_their_values_and_leaves_unread_columns_unallocated() {
        let everyone = Column::Labels(vec![Some("F".into()), None, Some("M".into())]);
        let at = [Some(2), None, Some(1), Some(0)];
        let Column::Labels(picked) = everyone.pick(&at) else {
            panic!("labels stay labels")
        };
        assert_eq!(picked, vec![Some("M".into()), None, None, Some("F".into())]);
        let Column::Numbers(unread) = Column::Numbers(Vec::new()).pick(&at) else {
            panic!("numbers stay numbers")
        };
        assert!(unread.is_empty());
    }

    #[test]
    fn missing_feature_values_are_filled_as_the_run_filled_them() {
        let column = || {
            vec![(
                "recency_days".to_owned(),
                Column::Numbers(vec![Some(1.0), Some(2.0), Some(9.0), None, Some(2.0)]),
            )]
        };
        let filled = |rule| features(column(), rule).unwrap()[0].clone();
        assert_eq!(numbers(&filled(MissingRule::ImputeMean))[3], 3.5);
        assert_eq!(numbers(&filled(MissingRule::ImputeMedian))[3], 2.0);
        assert_eq!(numbers(&filled(MissingRule::ImputeMode))[3], 2.0);
        let nobody = vec![("x".to_owned(), Column::Numbers(vec![None, None]))];
        assert!(
            features(nobody, MissingRule::ImputeMean)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn positions_map_ids_to_member_order() {
        let p = Positions::new(&[2, 5, 9]);
        assert_eq!(p.at(2), Some(0));
        assert_eq!(p.at(5), Some(1));
        assert_eq!(p.at(9), Some(2));
        assert_eq!(p.at(3), None);
        assert_eq!(p.at(-1), None);
        assert_eq!(p.at(10), None);
    }

    #[test]
    fn in_sorted_marks_the_members_of_a_subset() {
        assert_eq!(
            in_sorted(&[1, 2, 4, 7, 9], &[2, 7, 8]),
            vec![false, true, false, true, false]
        );
        assert_eq!(in_sorted(&[1, 2], &[]), vec![false, false]);
    }

    #[test]
    fn intersections_pair_every_categorical_attribute_once() {
        let names = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(
            intersections(&names),
            [("a", "b"), ("a", "c"), ("b", "c")].map(|(x, y)| (x.to_owned(), y.to_owned()))
        );
    }
}
