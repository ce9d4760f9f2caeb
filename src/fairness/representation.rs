//! Who ends up where: representation ratios, selection rates under the four-fifths rule, and
//! the fair-clustering balance of each segment.

use serde::{Deserialize, Serialize};

use super::stats::{Independence, Interval, pearson_chi_square, wilson_interval};
use super::table::ContingencyTable;

/// A group's share in one segment relative to its share in the audited population.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Representation {
    /// (share in segment) / (share in population); 1 means proportional representation.
    pub ratio: f64,
    /// Wilson interval of the in-segment share, divided by the population share. The population
    /// share is the whole audited population, not a sample, so it is treated as known.
    pub interval: Interval,
}

/// Representation of every segment × group cell, row-major; `None` where the segment or the
/// group is empty (the ratio is undefined there).
pub fn representation(table: &ContingencyTable, alpha: f64) -> Vec<Option<Representation>> {
    let rt = table.row_totals();
    let ct = table.col_totals();
    let n = table.total() as f64;
    let mut out = Vec::with_capacity(table.counts().len());
    for (r, &seg) in rt.iter().enumerate() {
        for (c, &grp) in ct.iter().enumerate() {
            if seg == 0 || grp == 0 {
                out.push(None);
                continue;
            }
            let pop_share = grp as f64 / n;
            let x = table.get(r, c);
            let w = wilson_interval(x, seg, alpha);
            out.push(Some(Representation {
                ratio: (x as f64 / seg as f64) / pop_share,
                interval: Interval {
                    lower: w.lower / pop_share,
                    upper: w.upper / pop_share,
                },
            }));
        }
    }
    out
}

/// One group's selection into favourable segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectionRate {
    pub group: String,
    /// Members of the group in favourable segments.
    pub selected: u64,
    /// Members of the group in the audited population.
    pub size: u64,
    /// `selected / size`.
    pub rate: f64,
    /// `rate / rate of the reference group`.
    pub ratio: f64,
    /// Whether the group is large enough (at least the minimum cell size) to be judged; smaller
    /// groups are shown but neither chosen as reference nor counted as violations.
    pub eligible: bool,
    /// Eligible and below the four-fifths limit.
    pub violation: bool,
    /// p-value of the difference between this group's selection rate and the reference
    /// group's (Pearson chi-square on the 2 × 2 table selected/not × group/reference),
    /// Bonferroni-adjusted over the eligible groups compared. `None` for the reference group and
    /// ineligible groups.
    pub p_value: Option<f64>,
}

/// The four-fifths (adverse impact) rule over the favourable segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FourFifths {
    /// The eligible group with the highest selection rate.
    pub reference_group: String,
    pub rates: Vec<SelectionRate>,
    /// Lowest ratio among eligible groups.
    pub min_ratio: f64,
    /// The limit applied (0.8 by default).
    pub limit: f64,
}

impl FourFifths {
    /// Groups violating the rule.
    pub fn violations(&self) -> impl Iterator<Item = &SelectionRate> {
        self.rates.iter().filter(|r| r.violation)
    }
}

/// Selection rates into the favourable segments (`favourable[r]` for table row `r`). `None` when
/// no segment is favourable, or no group is large enough to serve as reference.
pub fn four_fifths(
    table: &ContingencyTable,
    favourable: &[bool],
    limit: f64,
    min_group_size: u64,
) -> Option<FourFifths> {
    if !favourable.iter().any(|&f| f) {
        return None;
    }
    let ct = table.col_totals();
    let mut rates: Vec<SelectionRate> = (0..table.cols())
        .filter(|&c| ct[c] > 0)
        .map(|c| {
            let selected: u64 = (0..table.rows())
                .filter(|&r| favourable[r])
                .map(|r| table.get(r, c))
                .sum();
            SelectionRate {
                group: table.groups()[c].clone(),
                selected,
                size: ct[c],
                rate: selected as f64 / ct[c] as f64,
                ratio: f64::NAN,
                eligible: ct[c] >= min_group_size.max(1),
                violation: false,
                p_value: None,
            }
        })
        .collect();
    let reference = rates
        .iter()
        .filter(|r| r.eligible)
        .max_by(|a, b| a.rate.total_cmp(&b.rate))?
        .clone();
    let compared = rates
        .iter()
        .filter(|r| r.eligible && r.group != reference.group)
        .count();
    let mut min_ratio = f64::INFINITY;
    for r in &mut rates {
        if r.eligible && r.group != reference.group {
            let p = selection_difference_p(r, &reference);
            r.p_value = Some((p * compared as f64).min(1.0));
        }
        r.ratio = if reference.rate > 0.0 {
            r.rate / reference.rate
        } else {
            // Nobody is selected at all: every group is treated alike.
            1.0
        };
        if r.eligible {
            r.violation = r.ratio < limit;
            min_ratio = min_ratio.min(r.ratio);
        }
    }
    Some(FourFifths {
        reference_group: reference.group,
        rates,
        min_ratio,
        limit,
    })
}

/// p-value of Pearson's chi-square test on selected/not selected × group/reference (1 when the
/// 2 × 2 table is degenerate, e.g. nobody or everybody selected).
fn selection_difference_p(group: &SelectionRate, reference: &SelectionRate) -> f64 {
    let t = ContingencyTable::from_counts(
        vec![0, 1],
        vec!["selected".to_owned(), "not selected".to_owned()],
        vec![
            group.selected,
            group.size - group.selected,
            reference.selected,
            reference.size - reference.selected,
        ],
    )
    .expect("2 × 2 by construction");
    match pearson_chi_square(&t) {
        Independence::Tested(c) => c.p_value,
        Independence::NotTestable(_) => 1.0,
    }
}

/// Balance of one segment (Chierichetti et al. 2017, "Fair clustering through fairlets"):
/// min over groups of min(r, 1/r), r = (share in segment) / (share in population). 1 is
/// perfectly proportional; 0 means some group is absent from the segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Balance {
    pub value: f64,
    /// Column of the group attaining the minimum.
    pub group: usize,
}

/// Balance per segment (`None` for an empty segment) and the minimum over segments with the
/// row attaining it. Only groups with at least `min_group_size` members count: a group of three
/// people is absent from most segments by chance, which would pin every balance at 0 and say
/// nothing about the segmentation (and its figures would be suppressed anyway).
pub fn balance(
    table: &ContingencyTable,
    min_group_size: u64,
) -> (Vec<Option<Balance>>, Option<(usize, Balance)>) {
    let rt = table.row_totals();
    let ct = table.col_totals();
    let n = table.total() as f64;
    let per: Vec<Option<Balance>> = (0..table.rows())
        .map(|r| {
            if rt[r] == 0 {
                return None;
            }
            (0..table.cols())
                .filter(|&c| ct[c] > 0 && ct[c] >= min_group_size)
                .map(|c| {
                    let ratio = (table.get(r, c) as f64 / rt[r] as f64) / (ct[c] as f64 / n);
                    let value = if ratio > 0.0 {
                        ratio.min(1.0 / ratio)
                    } else {
                        0.0
                    };
                    Balance { value, group: c }
                })
                .min_by(|a, b| a.value.total_cmp(&b.value))
        })
        .collect();
    let min = per
        .iter()
        .enumerate()
        .filter_map(|(r, b)| b.map(|b| (r, b)))
        .min_by(|a, b| a.1.value.total_cmp(&b.1.value));
    (per, min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: usize, counts: Vec<u64>) -> ContingencyTable {
        ContingencyTable::numbered(rows, counts)
    }

    #[test]
    fn proportional_segments_have_ratio_one_and_balance_one() {
        let t = table(2, vec![10, 30, 20, 60]);
        for r in representation(&t, 0.05).into_iter().flatten() {
            assert!((r.ratio - 1.0).abs() < 1e-12);
            assert!(r.interval.contains(1.0));
        }
        let (per, min) = balance(&t, 1);
        assert!(per.iter().all(|b| (b.unwrap().value - 1.0).abs() < 1e-12));
        assert!((min.unwrap().1.value - 1.0).abs() < 1e-12);
    }

    #[test]
    fn representation_ratio_and_interval_follow_the_shares() {
        // Group 0 is 25 of 160 members (15.625%) but 50% of segment 0: ratio 3.2.
        let t = table(2, vec![20, 20, 5, 115]);
        let rep = representation(&t, 0.05);
        let r = rep[0].unwrap();
        assert!((r.ratio - 3.2).abs() < 1e-12);
        let w = wilson_interval(20, 40, 0.05);
        assert!((r.interval.lower - w.lower / 0.15625).abs() < 1e-12);
        assert!(
            r.interval.lower > 1.0,
            "over-representation is clear: {r:?}"
        );
    }

    #[test]
    fn balance_is_the_worst_group_in_the_worst_segment() {
        // Population shares 50/50. Segment 0: 80/20 -> r = 1.6, 0.4 -> balance 0.4.
        // Segment 1: 20/80 -> balance 0.4 as well; segment 2 is empty.
        let t = table(3, vec![80, 20, 20, 80, 0, 0]);
        let (per, min) = balance(&t, 1);
        assert!((per[0].unwrap().value - 0.4).abs() < 1e-12);
        assert_eq!(per[0].unwrap().group, 1);
        assert!(per[2].is_none());
        assert!((min.unwrap().1.value - 0.4).abs() < 1e-12);
        let absent = table(2, vec![10, 0, 10, 10]);
        assert_eq!(balance(&absent, 1).1.unwrap().1.value, 0.0);
        // A group below the minimum size does not drag every segment to 0.
        let tiny = table(2, vec![50, 1, 50, 0]);
        assert_eq!(balance(&tiny, 1).1.unwrap().1.value, 0.0);
        // Segment 1 is all g0 against a population share of 100/101: balance 100/101.
        let only_g0 = 100.0 / 101.0;
        assert!((balance(&tiny, 10).1.unwrap().1.value - only_g0).abs() < 1e-12);
    }

    #[test]
    fn four_fifths_names_the_reference_and_flags_low_ratios() {
        // Segment 0 favourable. Rates: g0 60/100 = 0.6, g1 40/100 = 0.4, g2 3/4 (too small).
        let t = table(2, vec![60, 40, 3, 40, 60, 1]);
        let ff = four_fifths(&t, &[true, false], 0.8, 10).unwrap();
        assert_eq!(ff.reference_group, "g0");
        let g1 = &ff.rates[1];
        assert!((g1.ratio - 0.4 / 0.6).abs() < 1e-12);
        assert!(g1.violation);
        assert!(!ff.rates[2].eligible && !ff.rates[2].violation);
        assert!((ff.min_ratio - 0.4 / 0.6).abs() < 1e-12);
        assert_eq!(ff.violations().count(), 1);
        // 60/100 vs 40/100: χ² = 8.0 on 1 dof, p = 0.004678; one group compared.
        assert!((g1.p_value.unwrap() - 0.004677734981047276).abs() < 1e-12);
        assert_eq!(ff.rates[0].p_value, None);
        assert!(four_fifths(&t, &[false, false], 0.8, 10).is_none());
    }
}
