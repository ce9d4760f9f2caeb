//! Proxies: how strongly each feature the segmentation used is associated with each protected
//! attribute. A segmentation that never saw "sex" can still sort by it through a feature that
//! tracks it; this is where the report says through which features bias can enter.

use serde::{Deserialize, Serialize};

use super::groups::GroupColumn;
use super::stats::{Independence, correlation_ratio, cramers_v, pearson_chi_square};
use super::table::ContingencyTable;

/// The association measure used for a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyMeasure {
    /// Cramér's V of the feature's categories against the attribute's groups.
    CramersV,
    /// Correlation ratio η of the numeric feature across the attribute's groups.
    CorrelationRatio,
}

impl ProxyMeasure {
    /// The measure's symbol in reports.
    pub fn symbol(self) -> &'static str {
        match self {
            ProxyMeasure::CramersV => "V",
            ProxyMeasure::CorrelationRatio => "η",
        }
    }
}

/// Cramér's V between two categorical columns of the same members (0 when either column has a
/// single category, as there is then no association to measure).
pub fn categorical_association(a: &GroupColumn, b: &GroupColumn) -> f64 {
    let (ka, kb) = (a.levels().len(), b.levels().len());
    let mut counts = vec![0u64; ka * kb];
    for (&x, &y) in a.codes().iter().zip(b.codes()) {
        counts[x as usize * kb + y as usize] += 1;
    }
    let table =
        ContingencyTable::from_counts((0..ka as u32).collect(), b.levels().to_vec(), counts)
            .expect("dimensions match by construction");
    match pearson_chi_square(&table) {
        Independence::Tested(c) => cramers_v(c.statistic, c.n, c.rows, c.cols),
        Independence::NotTestable(_) => 0.0,
    }
}

/// Correlation ratio η of a numeric feature across the groups (0 for a constant feature, which
/// cannot carry any group information).
pub fn numeric_association(values: &[f64], groups: &GroupColumn) -> f64 {
    correlation_ratio(values, groups.codes(), groups.levels().len()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feature_copying_the_attribute_is_a_perfect_proxy() {
        let sex = GroupColumn::from_labels(&[Some("F"), Some("M"), Some("F"), Some("M")]).unwrap();
        let copy = GroupColumn::from_labels(&[Some("x"), Some("y"), Some("x"), Some("y")]).unwrap();
        assert!((categorical_association(&copy, &sex) - 1.0).abs() < 1e-12);
        let unrelated =
            GroupColumn::from_labels(&[Some("x"), Some("x"), Some("y"), Some("y")]).unwrap();
        assert!(categorical_association(&unrelated, &sex).abs() < 1e-12);
        assert!((numeric_association(&[1.0, 5.0, 1.0, 5.0], &sex) - 1.0).abs() < 1e-12);
        assert!(numeric_association(&[1.0, 1.0, 5.0, 5.0], &sex).abs() < 1e-12);
        assert_eq!(numeric_association(&[2.0; 4], &sex), 0.0);
    }
}
