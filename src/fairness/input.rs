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

use std::borrow::Cow;
use std::collections::HashMap;

use super::{
    Bands, FairnessError, FairnessThresholds, Feature, FeatureValues, GroupColumn, NO_LABEL,
    ProtectedAttribute, Segment,
};
use crate::policy::{AttributeKind, Policy};
use crate::segmentation::attributes::AttributeValue;
use crate::segmentation::pipeline::RunFeatures;
use crate::segmentation::preprocess::{ColumnValues, FeatureKind, MissingRule, numeric_fill_of};
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

fn label_of(value: &serde_json::Value) -> Option<Cow<'_, str>> {
    match value {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(Cow::Borrowed(s)),
        serde_json::Value::Number(n) => Some(Cow::Owned(n.to_string())),
        serde_json::Value::Bool(b) => Some(Cow::Owned(b.to_string())),
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

/// A column of labels per member, interned as it is read: one code per member
/// ([`NO_LABEL`]: no value) and each distinct label once, so a million members' "F" and "M"
/// are two strings, not a million.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels {
    codes: Vec<u32>,
    levels: Vec<String>,
    index: HashMap<String, u32>,
}

impl Labels {
    /// Labels from plain values (`None`: no value).
    pub fn from_values<S: AsRef<str>>(values: &[Option<S>]) -> Labels {
        let mut labels = Labels {
            codes: vec![NO_LABEL; values.len()],
            ..Labels::default()
        };
        for (i, v) in values.iter().enumerate() {
            labels.codes[i] = v.as_ref().map_or(NO_LABEL, |s| labels.intern(s.as_ref()));
        }
        labels
    }

    /// The plain values (`None`: no value).
    pub fn values(&self) -> Vec<Option<&str>> {
        self.codes
            .iter()
            .map(|&c| self.levels.get(c as usize).map(String::as_str))
            .collect()
    }

    fn intern(&mut self, label: &str) -> u32 {
        // Protected attributes have a handful of labels: comparing them costs less than
        // hashing; the index serves columns with many.
        if self.levels.len() <= 8 {
            if let Some(c) = self.levels.iter().position(|l| l == label) {
                return c as u32;
            }
        } else if let Some(&c) = self.index.get(label) {
            return c;
        }
        let code = self.levels.len() as u32;
        self.levels.push(label.to_owned());
        self.index.insert(label.to_owned(), code);
        code
    }

    /// Sets member `i` of `n`, allocating the codes at the first value.
    fn set(&mut self, i: usize, n: usize, label: Option<&str>) {
        match label {
            Some(label) => {
                if self.codes.len() < n {
                    self.codes.resize(n, NO_LABEL);
                }
                self.codes[i] = self.intern(label);
            }
            None if !self.codes.is_empty() => self.codes[i] = NO_LABEL,
            None => {}
        }
    }

    fn present(&self) -> bool {
        self.codes.iter().any(|&c| c != NO_LABEL)
    }

    /// The members' groups (the same column as [`GroupColumn::from_labels`] of the values).
    pub fn groups(&self) -> Result<GroupColumn, FairnessError> {
        GroupColumn::from_interned(&self.levels, &self.codes)
    }
}

/// A column of values per member, built by position.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Labels(Labels),
    Numbers(Vec<Option<f64>>),
}

impl Column {
    /// An empty column for a protected attribute; allocated at its first value
    /// ([`Column::set`]), so the policy's attributes that no customer has cost nothing.
    pub fn for_attribute(kind: AttributeKind) -> Column {
        match kind {
            AttributeKind::Numeric => Column::Numbers(Vec::new()),
            AttributeKind::Categorical => Column::Labels(Labels::default()),
        }
    }

    /// An empty column for a feature, not yet allocated ([`Column::allocate`]).
    pub fn for_feature(kind: FeatureKind) -> Column {
        match kind {
            FeatureKind::Categorical => Column::Labels(Labels::default()),
            FeatureKind::Numeric { .. } => Column::Numbers(Vec::new()),
        }
    }

    /// Makes room for `n` members, all without a value.
    pub fn allocate(&mut self, n: usize) {
        match self {
            Column::Labels(l) => l.codes = vec![NO_LABEL; n],
            Column::Numbers(v) => *v = vec![None; n],
        }
    }

    /// Sets member `i` of `n` from a JSON value.
    pub fn set(&mut self, i: usize, n: usize, value: &serde_json::Value) {
        match self {
            Column::Labels(l) => l.set(i, n, label_of(value).as_deref()),
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
            Column::Labels(l) => {
                let label = value.into_label().filter(|s| !s.trim().is_empty());
                let n = l.codes.len();
                l.set(i, n, label.as_deref());
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
        match self {
            Column::Labels(l) if l.codes.is_empty() => Column::Labels(Labels::default()),
            Column::Labels(l) => Column::Labels(Labels {
                codes: at
                    .iter()
                    .map(|p| p.and_then(|p| l.codes.get(p).copied()).unwrap_or(NO_LABEL))
                    .collect(),
                levels: l.levels.clone(),
                index: l.index.clone(),
            }),
            Column::Numbers(v) if v.is_empty() => Column::Numbers(Vec::new()),
            Column::Numbers(v) => Column::Numbers(
                at.iter()
                    .map(|p| p.and_then(|p| v.get(p).copied().flatten()))
                    .collect(),
            ),
        }
    }

    fn present(&self) -> bool {
        match self {
            Column::Labels(l) => l.present(),
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
                attributes.push(ProtectedAttribute::from_column(name, labels.groups()?));
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

/// One column per feature of the run, in run order, not yet allocated.
pub fn feature_columns(settings: &RunSettings) -> Vec<(String, Column)> {
    settings
        .features
        .iter()
        .map(|f| (f.spec.name.clone(), Column::for_feature(f.spec.kind)))
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
        features.extend(feature(name, column, rule)?);
    }
    Ok(features)
}

/// One feature column as an audit feature; `None` for a numeric feature nobody has.
pub fn feature(
    name: String,
    column: Column,
    rule: MissingRule,
) -> Result<Option<Feature>, FairnessError> {
    let values = match column {
        Column::Labels(labels) => FeatureValues::Categorical(labels.groups()?),
        Column::Numbers(values) => {
            let Some(fill) = numeric_fill_of(rule, values.iter().flatten().copied()) else {
                return Ok(None);
            };
            FeatureValues::Numeric(values.iter().map(|v| v.unwrap_or(fill)).collect())
        }
    };
    Ok(Some(Feature { name, values }))
}

/// An attribute feature the run itself read (`values`, for exactly the audited members, see
/// [`known_fits`]) as an audit feature: the same as [`feature`] of a column read from storage,
/// with the same cleaning (non-finite numbers and blank labels are missing), without copying
/// the values into a column first.
pub fn known_feature(
    name: String,
    values: &ColumnValues,
    rule: MissingRule,
) -> Result<Option<Feature>, FairnessError> {
    let values = match values {
        ColumnValues::Numeric(v) => {
            let clean = |x: &Option<f64>| x.filter(|x| x.is_finite());
            let Some(fill) = numeric_fill_of(rule, v.iter().filter_map(clean)) else {
                return Ok(None);
            };
            FeatureValues::Numeric(v.iter().map(|x| clean(x).unwrap_or(fill)).collect())
        }
        ColumnValues::Categorical(v) => {
            let labels: Vec<Option<&str>> = v
                .iter()
                .map(|x| x.as_deref().filter(|s| !s.trim().is_empty()))
                .collect();
            FeatureValues::Categorical(GroupColumn::from_labels(&labels)?)
        }
    };
    Ok(Some(Feature { name, values }))
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
        let everyone = Column::Labels(Labels::from_values(&[Some("F"), None, Some("M")]));
        let at = [Some(2), None, Some(1), Some(0)];
        let Column::Labels(picked) = everyone.pick(&at) else {
            panic!("labels stay labels")
        };
        assert_eq!(picked.values(), vec![Some("M"), None, None, Some("F")]);
        let Column::Labels(unread) = Column::Labels(Labels::default()).pick(&at) else {
            panic!("labels stay labels")
        };
        assert!(unread.codes.is_empty());
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
    fn the_run_s_own_values_give_the_feature_values_read_from_storage_give() {
        let numbers = vec![Some(1.0), None, Some(f64::NAN), Some(4.0)];
        let labels = vec![
            Some("a".to_owned()),
            Some(" ".to_owned()),
            None,
            Some("b".to_owned()),
        ];
        for rule in [
            MissingRule::ImputeMean,
            MissingRule::ImputeMedian,
            MissingRule::ImputeMode,
            MissingRule::ExcludeCustomer,
        ] {
            // As read from storage: non-finite numbers and blank labels are no value.
            let mut read = Column::for_feature(FeatureKind::Numeric { log1p: false });
            read.allocate(numbers.len());
            for (i, x) in numbers.iter().enumerate() {
                read.set_number(i, x.filter(|x| x.is_finite()));
            }
            let known = ColumnValues::Numeric(numbers.clone());
            assert_eq!(
                known_feature("x".into(), &known, rule).unwrap(),
                feature("x".into(), read, rule).unwrap()
            );
            let mut read = Column::for_feature(FeatureKind::Categorical);
            read.allocate(labels.len());
            for (i, x) in labels.iter().enumerate() {
                let value = x
                    .clone()
                    .map_or(AttributeValue::Missing, AttributeValue::Text);
                read.set_attribute(i, value);
            }
            let known = ColumnValues::Categorical(labels.clone());
            assert_eq!(
                known_feature("c".into(), &known, rule).unwrap(),
                feature("c".into(), read, rule).unwrap()
            );
        }
        let nobody = ColumnValues::Numeric(vec![None, Some(f64::INFINITY)]);
        assert_eq!(
            known_feature("x".into(), &nobody, MissingRule::ImputeMean).unwrap(),
            None
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
