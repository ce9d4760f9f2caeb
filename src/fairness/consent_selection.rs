//! Consent-selection bias: who consents is not random. Does the consented population (the
//! customers a run may use) differ from the whole customer base on a protected attribute?
//!
//! For each attribute, Pearson's χ² of the 2 × G table consent status (consented / not) ×
//! group, with the bias-corrected Cramér's V, Benjamini-Hochberg adjusted across the
//! attributes tested together; counts below the minimum cell size are suppressed (with
//! complementary suppression, the two row totals being public as consent coverage), and so is
//! every share or ratio that would reveal one. Each group's representation compares its share
//! of the consented population with its share of all customers: a relative difference of
//! -0.12 reads "the consented population under-represents this group by 12 % against all
//! customers".
//!
//! Protected attributes of non-consenting customers enter only these aggregate counts, and only
//! when the policy's `[consent_selection]` allows it (see `policies/policy.toml`).

use serde::{Deserialize, Serialize};

use super::FairnessError;
use super::audit::{ProtectedAttribute, PublishedTable, publish_table};
use super::stats::{
    Independence, NotTestable, benjamini_hochberg, cramers_v_corrected, pearson_chi_square,
};
use super::suppression::suppress;
use super::table::ContingencyTable;
use super::verdict::FairnessThresholds;

/// Row of the consented customers in [`SelectionAttribute::table`].
pub const CONSENTED: u32 = 0;
/// Row of the other customers.
pub const NOT_CONSENTED: u32 = 1;

/// One group's place in the consented population against all customers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSelection {
    pub group: String,
    /// Share of the consented population in this group; `null` when suppressed.
    pub share_consented: Option<f64>,
    /// Share of all customers in this group; `null` when suppressed.
    pub share_all: Option<f64>,
    /// `share_consented / share_all - 1`: negative when the group is under-represented among
    /// the consented; `null` when undefined or suppressed.
    pub relative_difference: Option<f64>,
    /// Some figure of this group is hidden to protect a small count.
    pub suppressed: bool,
}

/// The test of one attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectionAttribute {
    pub attribute: String,
    /// Rows: consented, not consented; columns: the attribute's groups.
    pub table: PublishedTable,
    pub groups: Vec<GroupSelection>,
    pub not_testable: Option<NotTestable>,
    pub chi_square: Option<f64>,
    pub dof: Option<u64>,
    pub p_value: Option<f64>,
    /// Benjamini-Hochberg adjusted across the attributes of this test.
    pub p_value_adjusted: Option<f64>,
    pub cramers_v_corrected: Option<f64>,
    /// The adjusted p-value is below the significance level.
    pub significant: bool,
    /// The group most under-represented among the consented, among groups of at least the
    /// minimum cell size (every under-represented share has its over-represented counterpart,
    /// so this names the group left out). Named even when its figures are withheld: the
    /// direction alone reveals no count.
    pub most_distorted: Option<String>,
    /// One plain sentence, e.g. "The consented population under-represents sex female by
    /// 12 % against all customers (significant, p = 0.0021 after adjustment, V = 0.08)."
    pub sentence: String,
}

/// Consent-selection bias on every protected attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentSelectionReport {
    /// Customers on file.
    pub customers: u64,
    /// Customers in the consented (audited) population.
    pub consented: u64,
    pub attributes: Vec<SelectionAttribute>,
    /// The sentence of the significant attribute with the largest effect, or a sentence saying
    /// that no attribute differs significantly.
    pub headline: String,
    /// As in the audit: false if some small count could not be protected.
    pub suppression_complete: bool,
    pub min_cell_size: u64,
}

/// Tests whether the consented customers (`consented[i]`) differ from all customers on each
/// attribute; every attribute's column is parallel to `consented` and covers every customer on
/// file.
pub fn consent_selection(
    consented: &[bool],
    attributes: &[ProtectedAttribute],
    t: &FairnessThresholds,
) -> Result<ConsentSelectionReport, FairnessError> {
    let status: Vec<u32> = consented
        .iter()
        .map(|&c| if c { CONSENTED } else { NOT_CONSENTED })
        .collect();
    let rows = [CONSENTED, NOT_CONSENTED];
    let mut tables = Vec::with_capacity(attributes.len());
    for a in attributes {
        tables.push(ContingencyTable::tabulate(&rows, &status, a.groups())?);
    }
    let tests: Vec<Independence> = tables.iter().map(pearson_chi_square).collect();
    let tested: Vec<(usize, f64)> = tests
        .iter()
        .enumerate()
        .filter_map(|(i, x)| match x {
            Independence::Tested(c) => Some((i, c.p_value)),
            Independence::NotTestable(_) => None,
        })
        .collect();
    let adjusted_list = benjamini_hochberg(&tested.iter().map(|&(_, p)| p).collect::<Vec<_>>());
    let mut adjusted = vec![None; tables.len()];
    for (&(i, _), &q) in tested.iter().zip(&adjusted_list) {
        adjusted[i] = Some(q);
    }
    let refs: Vec<&ContingencyTable> = tables.iter().collect();
    let (marks, complete) = suppress(&refs, &[], t.min_cell_size);

    let mut out = Vec::with_capacity(tables.len());
    for (((a, table), test), (mark, p_adj)) in attributes
        .iter()
        .zip(&tables)
        .zip(&tests)
        .zip(marks.iter().zip(&adjusted))
    {
        let rt = table.row_totals();
        let ct = table.col_totals();
        let n = table.total();
        let mut groups = Vec::with_capacity(table.cols());
        // The raw relative difference of each group large enough to judge, to name the most
        // under-represented one even when its figure must be withheld.
        let mut raw = Vec::with_capacity(table.cols());
        for (c, name) in table.groups().iter().enumerate() {
            // A share reveals its count (the row totals and the population are public); the
            // relative difference reveals the cell given the total and the other way round.
            let cell_hidden = mark.cells[c].is_suppressed();
            let total_hidden = mark.group_totals[c].is_suppressed();
            let share_consented = (rt[0] > 0).then(|| table.get(0, c) as f64 / rt[0] as f64);
            let share_all = (n > 0).then(|| ct[c] as f64 / n as f64);
            let relative_difference = match (share_consented, share_all) {
                (Some(sc), Some(sa)) if sa > 0.0 => Some(sc / sa - 1.0),
                _ => None,
            };
            if ct[c] >= t.min_cell_size.max(1) {
                raw.push((c, relative_difference));
            }
            groups.push(GroupSelection {
                group: name.clone(),
                share_consented: share_consented.filter(|_| !cell_hidden),
                share_all: share_all.filter(|_| !total_hidden),
                relative_difference: relative_difference.filter(|_| !cell_hidden && !total_hidden),
                suppressed: cell_hidden || total_hidden,
            });
        }
        let (not_testable, chi, dof, p, vc) = match test {
            Independence::Tested(c) => (
                None,
                Some(c.statistic),
                Some(c.dof),
                Some(c.p_value),
                cramers_v_corrected(c.statistic, c.n, c.rows, c.cols),
            ),
            Independence::NotTestable(why) => (Some(*why), None, None, None, None),
        };
        let significant = p_adj.is_some_and(|q| q < t.alpha);
        let most_distorted = raw
            .iter()
            .filter_map(|&(c, d)| d.map(|d| (&groups[c], d)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let sentence = sentence(
            a.name(),
            most_distorted,
            not_testable,
            significant,
            *p_adj,
            vc,
        );
        out.push(SelectionAttribute {
            attribute: a.name().to_owned(),
            table: publish_table(table, mark, t.min_cell_size),
            most_distorted: most_distorted.map(|(g, _)| g.group.clone()),
            groups,
            not_testable,
            chi_square: chi,
            dof,
            p_value: p,
            p_value_adjusted: *p_adj,
            cramers_v_corrected: vc,
            significant,
            sentence,
        });
    }
    let headline = out
        .iter()
        .filter(|a| a.significant)
        .max_by(|a, b| {
            a.cramers_v_corrected
                .unwrap_or(0.0)
                .total_cmp(&b.cramers_v_corrected.unwrap_or(0.0))
        })
        .map(|a| a.sentence.clone())
        .unwrap_or_else(|| {
            "The consented population does not differ significantly from all customers on any protected attribute.".to_owned()
        });
    Ok(ConsentSelectionReport {
        customers: consented.len() as u64,
        consented: consented.iter().filter(|&&c| c).count() as u64,
        attributes: out,
        headline,
        suppression_complete: complete,
        min_cell_size: t.min_cell_size,
    })
}

fn sentence(
    attribute: &str,
    most: Option<(&GroupSelection, f64)>,
    not_testable: Option<NotTestable>,
    significant: bool,
    p_adj: Option<f64>,
    v: Option<f64>,
) -> String {
    if let Some(why) = not_testable {
        return format!("{attribute}: not testable, {}.", why.phrase());
    }
    let stats = format!(
        "p = {:.4} after adjustment, V = {:.3}",
        p_adj.unwrap_or(f64::NAN),
        v.unwrap_or(0.0)
    );
    match most {
        Some((g, d)) if significant => {
            let verb = if d < 0.0 {
                "under-represents"
            } else {
                "over-represents"
            };
            let by = match g.relative_difference {
                Some(_) => format!(" by {:.0} %", d.abs() * 100.0),
                None => " (by how much is withheld: it would reveal a small count)".to_owned(),
            };
            format!(
                "The consented population {verb} {attribute} {}{by} against all customers (significant, {stats}).",
                g.group,
            )
        }
        _ => format!(
            "The consented population does not differ significantly from all customers on {attribute} ({stats})."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds(min: u64) -> FairnessThresholds {
        FairnessThresholds {
            alpha: 0.05,
            cramers_v_warn: 0.1,
            cramers_v_fail: 0.3,
            four_fifths_ratio: 0.8,
            min_cell_size: min,
            proxy_limit: 0.3,
            monte_carlo_samples: 0,
            confidence_level: 0.95,
            seed: 1,
        }
    }

    /// Customers from a 2 × G table of counts (row 0 consented).
    pub(crate) fn customers(
        counts: &[[u64; 2]],
        labels: &[&str],
    ) -> (Vec<bool>, Vec<Option<String>>) {
        let mut consented = Vec::new();
        let mut groups = Vec::new();
        for (g, row) in counts.iter().enumerate() {
            for (s, &k) in row.iter().enumerate() {
                for _ in 0..k {
                    consented.push(s == 0);
                    groups.push(Some(labels[g].to_owned()));
                }
            }
        }
        (consented, groups)
    }

    #[test]
    fn fewer_women_among_the_consented_is_named_with_its_share() {
        // 400 women, 200 of them consented; 400 men, 300 consented.
        let (c, g) = customers(&[[200, 200], [300, 100]], &["female", "male"]);
        let a = ProtectedAttribute::categorical("sex", &g).unwrap();
        let r = consent_selection(&c, &[a], &thresholds(10)).unwrap();
        let s = &r.attributes[0];
        assert!(s.significant);
        assert_eq!(s.most_distorted.as_deref(), Some("female"));
        // share consented 200/500 = 0.4 against 0.5: -20 %.
        let f = &s.groups[0];
        assert!((f.relative_difference.unwrap() + 0.2).abs() < 1e-12);
        assert!(
            r.headline
                .starts_with("The consented population under-represents sex female by 20 %"),
            "{}",
            r.headline
        );
    }

    #[test]
    fn independent_consent_is_not_significant() {
        let (c, g) = customers(&[[300, 100], [300, 100]], &["female", "male"]);
        let a = ProtectedAttribute::categorical("sex", &g).unwrap();
        let r = consent_selection(&c, &[a], &thresholds(10)).unwrap();
        assert!(!r.attributes[0].significant);
        assert!(r.headline.contains("does not differ significantly"));
    }

    #[test]
    fn a_small_group_reveals_no_count_and_no_share() {
        let (c, g) = customers(
            &[[300, 100], [300, 100], [3, 1]],
            &["female", "male", "other"],
        );
        let a = ProtectedAttribute::categorical("sex", &g).unwrap();
        let r = consent_selection(&c, &[a], &thresholds(10)).unwrap();
        let s = &r.attributes[0];
        let other = s.groups.iter().find(|g| g.group == "other").unwrap();
        assert!(other.suppressed);
        assert_eq!(other.relative_difference, None);
        for g in &s.groups {
            let cell = s.table.counts[0][s.groups.iter().position(|x| x.group == g.group).unwrap()];
            if cell.is_none() {
                assert_eq!(g.share_consented, None, "{g:?}");
                assert_eq!(g.relative_difference, None, "{g:?}");
            }
        }
        for row in &s.table.counts {
            for x in row.iter().flatten() {
                assert!(*x == 0 || *x >= 10, "count {x} published");
            }
        }
        for x in s.table.group_totals.iter().flatten() {
            assert!(*x == 0 || *x >= 10, "group total {x} published");
        }
    }

    #[test]
    fn everyone_consented_is_not_testable() {
        let (c, g) = customers(&[[30, 0], [40, 0]], &["female", "male"]);
        let a = ProtectedAttribute::categorical("sex", &g).unwrap();
        let r = consent_selection(&c, &[a], &thresholds(10)).unwrap();
        assert_eq!(
            r.attributes[0].not_testable,
            Some(NotTestable::SingleSegment)
        );
        assert!(!r.attributes[0].significant);
    }
}
