//! Which target applies to a KPI in a segment, the policy's alert rules, and how many
//! customers a figure rests on.

use super::{ALL_SEGMENT, Aggregates, AlertRules, DriftThresholds, Kpi, KpiError, Objective};
use crate::policy::KpiSpec;

/// Count and sum KPIs: they scale with a segment's size, so overall targets apply to `all`
/// only and a segment needs its own override.
pub fn is_extensive(kpi: Kpi) -> bool {
    matches!(
        kpi,
        Kpi::SegmentSize | Kpi::ActiveCustomers | Kpi::NewCustomers | Kpi::Revenue | Kpi::Orders
    )
}

/// The objective of `kpi` in `segment` under the policy: the segment's override, else the
/// overall target (for `all`, and for ratio KPIs in every segment).
pub fn objective(spec: &KpiSpec, kpi: Kpi, segment: &str) -> Option<Objective> {
    let target = spec
        .segments
        .get(segment)
        .and_then(|m| m.get(kpi.name()))
        .or_else(|| {
            if segment == ALL_SEGMENT || !is_extensive(kpi) {
                spec.targets.get(kpi.name())
            } else {
                None
            }
        })?;
    Objective::for_kpi(kpi, target.target, target.alert).ok()
}

/// Alert rules and drift thresholds of the policy (validated when the policy was loaded).
pub fn rules(spec: &KpiSpec) -> Result<AlertRules, KpiError> {
    let drift = DriftThresholds::new(
        spec.psi_warn,
        spec.psi_act,
        spec.ks_alpha,
        1e-4,
        spec.psi_bins,
    )?;
    AlertRules::new(spec.consecutive_periods, spec.min_stability_ari, drift)
}

/// The number of customers a KPI's figure rests on: the segment's size for `segment_size`,
/// new customers for `new_customers`, customers active in P−1 for retention and churn,
/// active customers for the rest. When that number is zero the figure says "nobody", and it
/// rests on the whole segment instead.
pub fn basis(kpi: Kpi, a: &Aggregates) -> u64 {
    let relevant = match kpi {
        Kpi::SegmentSize => a.customers,
        Kpi::NewCustomers => a.new,
        Kpi::RetentionRate | Kpi::ChurnRate => a.active_previous,
        _ => a.active,
    };
    if relevant == 0 { a.customers } else { relevant }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn basis_is_the_customers_a_figure_rests_on() {
        let a = Aggregates {
            customers: 100,
            active: 8,
            active_previous: 0,
            new: 0,
            ..Default::default()
        };
        assert_eq!(basis(Kpi::SegmentSize, &a), 100);
        assert_eq!(basis(Kpi::AverageOrderValue, &a), 8);
        assert_eq!(basis(Kpi::NewCustomers, &a), 100);
        assert_eq!(basis(Kpi::RetentionRate, &a), 100);
    }

    #[test]
    fn extensive_targets_apply_to_segments_only_by_override() {
        let mut spec = KpiSpec::default();
        spec.targets.insert(
            "revenue".into(),
            crate::policy::KpiTarget {
                target: 10.0,
                alert: 5.0,
            },
        );
        spec.targets.insert(
            "retention_rate".into(),
            crate::policy::KpiTarget {
                target: 0.4,
                alert: 0.3,
            },
        );
        assert!(objective(&spec, Kpi::Revenue, "all").is_some());
        assert!(objective(&spec, Kpi::Revenue, "Loyal").is_none());
        assert!(objective(&spec, Kpi::RetentionRate, "Loyal").is_some());
        spec.segments.insert(
            "Loyal".into(),
            BTreeMap::from([(
                "revenue".to_owned(),
                crate::policy::KpiTarget {
                    target: 3.0,
                    alert: 1.0,
                },
            )]),
        );
        assert_eq!(
            objective(&spec, Kpi::Revenue, "Loyal").unwrap().target(),
            3.0
        );
    }
}
