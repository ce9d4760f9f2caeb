//! Two runs compared on the customers both contain: how their segments cross, which segment
//! of the second matches which of the first, and who moved into an at-risk segment, with
//! small counts suppressed.

use serde::Serialize;

use crate::db::segmentation::SegmentRow;
use crate::fairness::suppression::Suppression;
use crate::segmentation::matching;
use crate::segmentation::pipeline::{shared_segments, stability};
use crate::segmentation::profile::SegmentProfile;
use crate::segmentation::valuation::Valuation;

/// Two runs compared on the customers both contain.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Comparison {
    pub a: i64,
    pub b: i64,
    pub shared_customers: Option<u64>,
    pub shared_display: String,
    /// Adjusted Rand index on the shared customers (1 = the same partition).
    pub adjusted_rand_index: Option<f64>,
    /// Row per segment of `a` (its name, then one cell per segment of `b`): shared members,
    /// suppressed two-way (`<N` below the minimum cell size, `hidden` to protect one).
    pub crosstab: Vec<(String, Vec<String>)>,
    pub a_segments: Vec<String>,
    pub b_segments: Vec<String>,
    /// For each segment of `b`, the segment of `a` whose centre it is matched to (minimum total
    /// centre distance, Hungarian assignment on the profiles' standardised differences over the
    /// features both runs used), and the distance; `null` when left over or not comparable.
    pub matches: Vec<SegmentMatch>,
    /// Customers who moved from a segment of `a` that is not at risk into an at-risk or
    /// declining segment of `b`, and their lifetime value at their old segment's value per
    /// customer; `null` when that would reveal a suppressed count.
    pub moved_into_risk: Option<u64>,
    pub moved_value_into_risk: Option<f64>,
    pub moved_display: String,
}

/// One segment of the second run and its match in the first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SegmentMatch {
    pub segment: String,
    pub matched: Option<String>,
    pub distance: Option<f64>,
    pub at_risk: bool,
}

/// Centres (standardised differences per feature, over `features`), proposed names, value per
/// customer and revenue growth of a run's segments, from their stored profiles and valuations.
type SegmentFacts = (Vec<Vec<f64>>, Vec<String>, Vec<f64>, Vec<Option<f64>>);

fn segment_facts(rows: &[SegmentRow], features: &[String]) -> SegmentFacts {
    let mut centres = Vec::new();
    let (mut names, mut value, mut growth) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        let profile: Option<SegmentProfile> = serde_json::from_str(&r.profile).ok();
        centres.push(
            features
                .iter()
                .map(|f| {
                    profile
                        .as_ref()
                        .and_then(|p| p.features.iter().find(|x| &x.feature == f))
                        .map_or(0.0, |x| x.standardised_difference)
                })
                .collect(),
        );
        let v: Option<Valuation> = serde_json::from_str(&r.valuation).ok();
        names.push(r.proposed_name.clone());
        value.push(v.as_ref().map_or(0.0, |v| v.lifetime_value));
        growth.push(v.and_then(|v| v.revenue_growth));
    }
    (centres, names, value, growth)
}

fn feature_names(rows: &[SegmentRow]) -> Vec<String> {
    rows.first()
        .and_then(|r| serde_json::from_str::<SegmentProfile>(&r.profile).ok())
        .map(|p| p.features.into_iter().map(|f| f.feature).collect())
        .unwrap_or_default()
}

/// One run as the comparison reads it.
pub struct Side<'a> {
    pub id: i64,
    /// Its segments' names, in segment order.
    pub names: Vec<String>,
    /// (customer id, segment), by customer id.
    pub memberships: &'a [(i64, i32)],
    pub segments: &'a [SegmentRow],
}

/// Compares run `a` with run `b`; counts below `min_cell` are suppressed.
pub fn comparison(a: Side<'_>, b: Side<'_>, min_cell: u64) -> Comparison {
    let (a_names, b_names) = (a.names, b.names);
    let (ma, mb) = (a.memberships, b.memberships);
    let (rows_a, rows_b) = (a.segments, b.segments);
    let (a, b) = (a.id, b.id);
    let mut table = vec![vec![0u64; b_names.len()]; a_names.len()];
    let shared_pairs = shared_segments(ma, mb);
    for &(sa, sb) in &shared_pairs {
        table[sa][sb] += 1;
    }
    let shared = shared_pairs.len() as u64;
    let shown = published_crosstab(&table, min_cell);
    let fb = feature_names(rows_b);
    let features: Vec<String> = feature_names(rows_a)
        .into_iter()
        .filter(|f| fb.contains(f))
        .collect();
    let (ca, pa, va, ga) = segment_facts(rows_a, &features);
    let (cb, pb, _, gb) = segment_facts(rows_b, &features);
    let risk_a: Vec<bool> = pa
        .iter()
        .zip(&ga)
        .map(|(n, g)| matching::is_at_risk(n, *g))
        .collect();
    let risk_b: Vec<bool> = pb
        .iter()
        .zip(&gb)
        .map(|(n, g)| matching::is_at_risk(n, *g))
        .collect();
    let matched = if features.is_empty() {
        vec![None; cb.len()]
    } else {
        matching::match_centres(&ca, &cb)
    };
    let matches = b_names
        .iter()
        .zip(&matched)
        .zip(&risk_b)
        .map(|((name, m), &at_risk)| SegmentMatch {
            segment: name.clone(),
            matched: m.map(|(i, _)| a_names[i].clone()),
            distance: m.map(|(_, d)| d),
            at_risk,
        })
        .collect();
    let (moved, value) = matching::value_moved_into_risk(&table, &va, &risk_a, &risk_b);
    // Every contributing cell must be published, or the total would reveal a hidden one.
    let revealing = shown.iter().enumerate().any(|(r, row)| {
        !risk_a[r]
            && row
                .iter()
                .enumerate()
                .any(|(c, cell)| risk_b[c] && cell.parse::<u64>().is_err())
    });
    let (moved_into_risk, moved_value_into_risk, moved_display) = if revealing {
        (
            None,
            None,
            "withheld: it would reveal a small count".to_owned(),
        )
    } else {
        (
            Some(moved),
            Some(value),
            format!("{moved} customers, lifetime value {value:.2}"),
        )
    };
    let shared_shown = crate::consent::coverage::shown_row(&[shared], min_cell).remove(0);
    Comparison {
        a,
        b,
        shared_customers: shared_shown.count,
        shared_display: shared_shown.display,
        adjusted_rand_index: stability(ma, mb),
        crosstab: shown
            .into_iter()
            .zip(a_names.iter().cloned())
            .map(|(row, name)| (name, row))
            .collect(),
        a_segments: a_names,
        b_segments: b_names,
        matches,
        moved_into_risk,
        moved_value_into_risk,
        moved_display,
    }
}

/// The cross-table of two runs as it may be shown. Its rows add up to the first run's segment
/// sizes and its columns to the second's, both public, so small cells are suppressed two-way
/// (hiding one cell per row would leave a small cell recoverable from its column): `<N` for a
/// small count, `hidden` for a count hidden to protect one.
pub(crate) fn published_crosstab(table: &[Vec<u64>], min_cell: u64) -> Vec<Vec<String>> {
    let cols = table.first().map_or(0, Vec::len);
    if table.is_empty() || cols == 0 {
        return vec![Vec::new(); table.len()];
    }
    let counts = crate::fairness::ContingencyTable::from_counts(
        (0..table.len() as u32).collect(),
        (0..cols).map(|c| c.to_string()).collect(),
        table.concat(),
    )
    .expect("a rectangular table");
    let (marks, _) = crate::fairness::suppression::suppress_two_way(&counts, min_cell);
    table
        .iter()
        .enumerate()
        .map(|(r, row)| {
            row.iter()
                .enumerate()
                .map(|(c, &n)| match marks.cells[r * cols + c] {
                    Suppression::None => n.to_string(),
                    Suppression::Primary => format!("<{min_cell}"),
                    Suppression::Complementary => "hidden".to_owned(),
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_shared_cell_stays_hidden_with_both_margins_known() {
        // Run A's segments (rows) and run B's (columns) both have public sizes. One cell of 4
        // shared customers among hundreds.
        let table = vec![vec![4, 300, 220], vec![180, 260, 140], vec![90, 150, 410]];
        let shown = published_crosstab(&table, 10);
        assert_eq!(shown[0][0], "<10");
        let hidden = |r: usize, c: usize| shown[r][c] == "hidden" || shown[r][c] == "<10";
        assert!(
            (1..3).any(|c| hidden(0, c)),
            "no partner in the row: {shown:?}"
        );
        assert!(
            (1..3).any(|r| hidden(r, 0)),
            "no partner in the column: {shown:?}"
        );
        // With both margins known, a hidden rectangle through the small cell lets it move by
        // one while every margin stays the same: it has more than one possible value.
        let movable = (1..3).any(|r| {
            (1..3).any(|c| {
                hidden(0, c) && hidden(r, 0) && hidden(r, c) && table[0][c] > 0 && table[r][0] > 0
            })
        });
        assert!(movable, "recoverable: {shown:?}");
    }
}
