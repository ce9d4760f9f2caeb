//! Matching the segments of two runs by their centres, so that a re-run that finds the same
//! groups can be shown (and, later, named) as the same segments: the minimum-cost assignment
//! of the Hungarian method on centre distances.
//!
//! Written by hand (the shortest-augmenting-path form with potentials, O(n² m)): no crate we
//! depend on has it, and it is small. Matched against scipy's `linear_sum_assignment` in
//! `tests/fixtures/reference/segmentation/linear_sum_assignment.json`.

/// The minimum-cost assignment of rows to columns of a rectangular `cost` matrix (rows of equal
/// length, finite), as scipy's `linear_sum_assignment`: `min(rows, cols)` pairs `(row, col)`,
/// by ascending row, each row and column used at most once.
pub fn linear_sum_assignment(cost: &[Vec<f64>]) -> Vec<(usize, usize)> {
    let n = cost.len();
    let m = cost.first().map_or(0, Vec::len);
    if n == 0 || m == 0 {
        return Vec::new();
    }
    if n > m {
        let t: Vec<Vec<f64>> = (0..m)
            .map(|j| (0..n).map(|i| cost[i][j]).collect())
            .collect();
        let mut pairs: Vec<(usize, usize)> = linear_sum_assignment(&t)
            .into_iter()
            .map(|(j, i)| (i, j))
            .collect();
        pairs.sort_unstable();
        return pairs;
    }
    // 1-based potentials u (rows), v (columns); p[j] = row assigned to column j (0 = none).
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; m + 1];
    let mut p = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=m {
                if used[j] {
                    continue;
                }
                let cur = cost[i0 - 1][j - 1] - u[i0] - v[j];
                if cur < minv[j] {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if minv[j] < delta {
                    delta = minv[j];
                    j1 = j;
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut pairs: Vec<(usize, usize)> = (1..=m)
        .filter(|&j| p[j] != 0)
        .map(|j| (p[j] - 1, j - 1))
        .collect();
    pairs.sort_unstable();
    pairs
}

/// For each centre of the new run, the centre of the old run it is matched to and their
/// Euclidean distance, by minimum total distance; `None` for new centres left over when the new
/// run has more segments.
pub fn match_centres(old: &[Vec<f64>], new: &[Vec<f64>]) -> Vec<Option<(usize, f64)>> {
    let distance = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt()
    };
    let cost: Vec<Vec<f64>> = new
        .iter()
        .map(|b| old.iter().map(|a| distance(a, b)).collect())
        .collect();
    let mut out = vec![None; new.len()];
    for (b, a) in linear_sum_assignment(&cost) {
        out[b] = Some((a, cost[b][a]));
    }
    out
}

/// Centres farther apart than this (standard deviations) are not the same segment found again.
pub const SAME_SEGMENT_DISTANCE: f64 = 0.5;

/// A segment's centre over `features`: its standardised difference from the population on
/// each (0 where the profile lacks the feature).
pub fn centre_of(profile: &super::profile::SegmentProfile, features: &[String]) -> Vec<f64> {
    features
        .iter()
        .map(|f| {
            profile
                .features
                .iter()
                .find(|x| &x.feature == f)
                .map_or(0.0, |x| x.standardised_difference)
        })
        .collect()
}

/// Names carried over from the previous run: each new segment matched (minimum total centre
/// distance over the features both runs profile) to a previous segment within
/// [`SAME_SEGMENT_DISTANCE`] takes that segment's current name, so "Champions" stays
/// "Champions" when a re-run finds it again. `None` for the others, and for a carried name
/// that another new segment already proposes.
pub fn carried_names(
    previous: &[(String, super::profile::SegmentProfile)],
    new: &[super::profile::SegmentProfile],
) -> Vec<Option<String>> {
    let features: Vec<String> = match (previous.first(), new.first()) {
        (Some((_, p)), Some(n)) => p
            .features
            .iter()
            .map(|f| f.feature.clone())
            .filter(|f| n.features.iter().any(|x| &x.feature == f))
            .collect(),
        _ => return vec![None; new.len()],
    };
    if features.is_empty() {
        return vec![None; new.len()];
    }
    let old: Vec<Vec<f64>> = previous
        .iter()
        .map(|(_, p)| centre_of(p, &features))
        .collect();
    let centres: Vec<Vec<f64>> = new.iter().map(|p| centre_of(p, &features)).collect();
    let matched = match_centres(&old, &centres);
    let mut out: Vec<Option<String>> = matched
        .iter()
        .map(|m| {
            m.filter(|&(_, d)| d <= SAME_SEGMENT_DISTANCE)
                .map(|(i, _)| previous[i].0.clone())
        })
        .collect();
    for i in 0..out.len() {
        let clash = out[i].as_ref().is_some_and(|name| {
            new.iter()
                .enumerate()
                .any(|(j, p)| j != i && out[j].is_none() && &p.proposed_name == name)
        });
        if clash {
            out[i] = None;
        }
    }
    out
}

/// RFM segments whose customers are slipping away.
const AT_RISK_NAMES: [&str; 5] = [
    "At risk",
    "Cannot lose them",
    "About to sleep",
    "Hibernating",
    "Lost",
];

/// Revenue growth below this marks a declining segment (the valuation's growth band).
pub const DECLINE: f64 = -0.05;

/// Whether a segment is at risk or declining: an RFM at-risk name (as proposed by the run),
/// or revenue falling by more than 5 % against the window before.
pub fn is_at_risk(proposed_name: &str, revenue_growth: Option<f64>) -> bool {
    AT_RISK_NAMES.contains(&proposed_name) || revenue_growth.is_some_and(|g| g < DECLINE)
}

/// Customers who moved from a segment of the old run that was not at risk into one of the new
/// run that is, and their lifetime value at their old segment's value per customer.
/// `crosstab[a][b]` counts customers in old segment `a` and new segment `b`.
pub fn value_moved_into_risk(
    crosstab: &[Vec<u64>],
    old_value_per_customer: &[f64],
    old_at_risk: &[bool],
    new_at_risk: &[bool],
) -> (u64, f64) {
    let mut customers = 0;
    let mut value = 0.0;
    for (a, row) in crosstab.iter().enumerate() {
        if old_at_risk[a] {
            continue;
        }
        for (b, &n) in row.iter().enumerate() {
            if new_at_risk[b] {
                customers += n;
                value += n as f64 * old_value_per_customer[a];
            }
        }
    }
    (customers, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn value_moves_only_from_healthy_into_at_risk_segments() {
        // Old: Champions (LTV 100), At risk (LTV 20). New: Champions, At risk.
        let crosstab = vec![vec![80, 20], vec![5, 40]];
        let (n, v) =
            value_moved_into_risk(&crosstab, &[100.0, 20.0], &[false, true], &[false, true]);
        assert_eq!(n, 20);
        assert!((v - 2000.0).abs() < 1e-9);
        assert!(is_at_risk("Hibernating", None));
        assert!(is_at_risk("Segment 2", Some(-0.2)));
        assert!(!is_at_risk("Champions", Some(0.1)));
    }

    const REFERENCE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/reference/segmentation/linear_sum_assignment.json"
    ));

    #[test]
    fn assignments_match_scipy_linear_sum_assignment() {
        let cases: Value = serde_json::from_str(REFERENCE).unwrap();
        let cases = cases["cases"].as_array().unwrap();
        assert!(cases.len() >= 30);
        for case in cases {
            let cost: Vec<Vec<f64>> = serde_json::from_value(case["cost"].clone()).unwrap();
            let rows: Vec<usize> = serde_json::from_value(case["row_ind"].clone()).unwrap();
            let cols: Vec<usize> = serde_json::from_value(case["col_ind"].clone()).unwrap();
            let want: Vec<(usize, usize)> = rows.into_iter().zip(cols).collect();
            let got = linear_sum_assignment(&cost);
            let total: f64 = got.iter().map(|&(i, j)| cost[i][j]).sum();
            let want_total = case["total"].as_f64().unwrap();
            assert!(
                (total - want_total).abs() <= 1e-9 * want_total.abs().max(1.0),
                "{}: total {total} vs {want_total}",
                case["name"]
            );
            assert_eq!(got, want, "{}", case["name"]);
        }
    }

    #[test]
    fn a_rerun_that_finds_the_same_groups_in_another_order_is_matched_back() {
        let old = vec![vec![0.0, 0.0], vec![5.0, 5.0], vec![-4.0, 3.0]];
        let new = vec![vec![-4.1, 3.2], vec![0.1, -0.1], vec![5.2, 4.9]];
        let m = match_centres(&old, &new);
        let order: Vec<usize> = m.iter().map(|x| x.unwrap().0).collect();
        assert_eq!(order, vec![2, 0, 1]);
        // A greedy nearest match would give both new centres to old 0 here; the assignment
        // does not.
        let old = vec![vec![0.0], vec![3.0]];
        let new = vec![vec![1.0], vec![-1.0], vec![10.0]];
        let m = match_centres(&old, &new);
        assert_eq!(m[0].unwrap().0, 1);
        assert_eq!(m[1].unwrap().0, 0);
        assert_eq!(m[2], None);
    }
}
