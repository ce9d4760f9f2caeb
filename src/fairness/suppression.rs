//! Small-cell suppression with complementary suppression.
//!
//! Published: every table's cells and group totals (unless suppressed), the segment sizes and
//! the number of members (always public: segment sizes are shown on marketing pages anyway).
//! Those figures are tied by linear relations: each row sums to its segment size, each column
//! to its group total, the group totals to the population, and, for an intersection `A × B`,
//! the cells of `F × *` in a segment sum to the cell `F` of table `A` in that segment.
//!
//! Primary suppression hides every count `c` with `0 < c < min_cell_size`. A suppressed figure
//! can be recovered exactly iff its unit vector lies in the span of the relations restricted to
//! the suppressed figures (the published ones being constants). We check that by reducing the
//! relation matrix to row echelon form: a suppressed figure is derivable iff it is a pivot whose
//! row has no entry in a free column. While some primary figure is derivable, we also suppress
//! the smallest published figure that shares a relation with it (complementary suppression),
//! preferring non-zero counts so that every suppressed value can move both up and down. Linear
//! algebra is the right test here (rather than "at least two suppressed per row"), because with
//! linked intersection tables a row-and-column rule still leaves cells recoverable.
//!
//! Not covered, deliberately: the test statistics (χ², V, p-values) are exact functions of all
//! counts, so in principle they narrow a suppressed count down to a few candidates. Statistical
//! disclosure practice treats such model outputs as non-disclosive; a policy that wants more
//! should round them where they are displayed.

use serde::{Deserialize, Serialize};

use super::table::ContingencyTable;

/// Why a figure is hidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suppression {
    /// Published.
    None,
    /// Below the minimum cell size.
    Primary,
    /// Hidden so that a primary figure cannot be worked out from totals.
    Complementary,
}

impl Suppression {
    /// True unless published.
    pub fn is_suppressed(self) -> bool {
        self != Suppression::None
    }
}

/// Suppression marks of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSuppression {
    /// Row-major, like the table's counts.
    pub cells: Vec<Suppression>,
    /// One per group.
    pub group_totals: Vec<Suppression>,
}

/// An intersection table (`part`) whose groups each belong to one group of table `whole`.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub whole: usize,
    pub part: usize,
    /// For each group (column) of `part`, the column of `whole` it belongs to.
    pub group_of: Vec<usize>,
}

/// Suppresses small counts in a family of tables over the same segments (attributes and their
/// intersections), jointly, so that no suppressed count follows from the published ones of any
/// table. Returns the marks per table, plus `false` if some primary figure stayed derivable
/// because nothing was left to suppress (e.g. a one-group table, whose cell is its public
/// segment size).
pub fn suppress(
    tables: &[&ContingencyTable],
    links: &[Link],
    min_cell_size: u64,
) -> (Vec<TableSuppression>, bool) {
    suppress_with(tables, links, min_cell_size, Margins::RowsPublic)
}

/// Suppresses small counts of one table whose row *and* column totals are public, such as the
/// cross-table of two runs (each margin adds up to a segment size shown elsewhere): a column
/// total is then never hidden, nor chosen as a complementary figure, so hiding one other cell
/// per row is not enough — each small cell needs partners in its row and in its column.
/// Returns the table's marks (its `group_totals` all published) and whether suppression is
/// complete, as [`suppress`].
pub fn suppress_two_way(table: &ContingencyTable, min_cell_size: u64) -> (TableSuppression, bool) {
    let (mut marks, complete) = suppress_with(&[table], &[], min_cell_size, Margins::BothPublic);
    (marks.remove(0), complete)
}

/// Which totals of a table a reader already knows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Margins {
    /// Segment sizes are public; group totals are published unless suppressed.
    RowsPublic,
    /// Both are public.
    BothPublic,
}

fn suppress_with(
    tables: &[&ContingencyTable],
    links: &[Link],
    min_cell_size: u64,
    margins: Margins,
) -> (Vec<TableSuppression>, bool) {
    // Figure layout: per table, its cells then its group totals.
    let mut offsets = Vec::with_capacity(tables.len());
    let mut values = Vec::new();
    for t in tables {
        offsets.push(values.len());
        values.extend_from_slice(t.counts());
        values.extend(t.col_totals());
    }
    let cell = |ti: usize, r: usize, c: usize| offsets[ti] + r * tables[ti].cols() + c;
    let total = |ti: usize, c: usize| offsets[ti] + tables[ti].rows() * tables[ti].cols() + c;

    let mut relations: Vec<Vec<(usize, f64)>> = Vec::new();
    for (ti, t) in tables.iter().enumerate() {
        for r in 0..t.rows() {
            relations.push((0..t.cols()).map(|c| (cell(ti, r, c), 1.0)).collect());
        }
        for c in 0..t.cols() {
            let mut rel: Vec<(usize, f64)> = (0..t.rows()).map(|r| (cell(ti, r, c), 1.0)).collect();
            rel.push((total(ti, c), -1.0));
            relations.push(rel);
        }
        relations.push((0..t.cols()).map(|c| (total(ti, c), 1.0)).collect());
    }
    for link in links {
        let (w, p) = (tables[link.whole], tables[link.part]);
        for a in 0..w.cols() {
            let parts: Vec<usize> = (0..p.cols()).filter(|&c| link.group_of[c] == a).collect();
            for r in 0..w.rows().min(p.rows()) {
                let mut rel: Vec<(usize, f64)> = parts
                    .iter()
                    .map(|&c| (cell(link.part, r, c), 1.0))
                    .collect();
                rel.push((cell(link.whole, r, a), -1.0));
                relations.push(rel);
            }
            let mut rel: Vec<(usize, f64)> =
                parts.iter().map(|&c| (total(link.part, c), 1.0)).collect();
            rel.push((total(link.whole, a), -1.0));
            relations.push(rel);
        }
    }
    let mut incidence = vec![Vec::new(); values.len()];
    for (ri, rel) in relations.iter().enumerate() {
        for &(f, _) in rel {
            incidence[f].push(ri);
        }
    }

    let mut public = vec![false; values.len()];
    if margins == Margins::BothPublic {
        for (ti, t) in tables.iter().enumerate() {
            for c in 0..t.cols() {
                public[total(ti, c)] = true;
            }
        }
    }
    let mut state: Vec<Suppression> = values
        .iter()
        .zip(&public)
        .map(|(&v, &public)| {
            if !public && v > 0 && v < min_cell_size {
                Suppression::Primary
            } else {
                Suppression::None
            }
        })
        .collect();
    let mut complete = true;
    // Complementary figures must not be derivable either: one that is acts as published and
    // can pin the primary figure next to it.
    loop {
        let exposed = derivable(&relations, &state);
        if exposed.is_empty() {
            break;
        }
        let suppressed_in = |ri: usize| {
            relations[ri]
                .iter()
                .filter(|&&(f, _)| state[f].is_suppressed())
                .count()
        };
        // A relation with a single hidden figure publishes it outright: fix those first. When
        // there are none, figures are pinned by combinations of relations, and any relation of
        // an exposed figure may help.
        let mut pool: Vec<usize> = (0..relations.len())
            .filter(|&ri| suppressed_in(ri) == 1)
            .collect();
        if pool.is_empty() {
            pool = exposed
                .iter()
                .flat_map(|&f| incidence[f].iter().copied())
                .collect();
        }
        // Prefer non-zero counts (a zero can only move up), then figures that give the most
        // lonely relations their second unknown (closing cycles), then the smallest count.
        let candidate = pool
            .iter()
            .flat_map(|&ri| relations[ri].iter().map(|&(f, _)| f))
            .filter(|&f| state[f] == Suppression::None && !public[f])
            .min_by_key(|&f| {
                let closes = incidence[f]
                    .iter()
                    .filter(|&&ri| suppressed_in(ri) == 1)
                    .count();
                (values[f] == 0, std::cmp::Reverse(closes), values[f], f)
            });
        match candidate {
            Some(f) => state[f] = Suppression::Complementary,
            None => {
                complete = false;
                break;
            }
        }
    }

    let marks = tables
        .iter()
        .enumerate()
        .map(|(ti, t)| {
            let cells = t.rows() * t.cols();
            let o = offsets[ti];
            TableSuppression {
                cells: state[o..o + cells].to_vec(),
                group_totals: state[o + cells..o + cells + t.cols()].to_vec(),
            }
        })
        .collect();
    (marks, complete)
}

/// Suppressed figures whose value follows from the published ones.
fn derivable(relations: &[Vec<(usize, f64)>], state: &[Suppression]) -> Vec<usize> {
    let mut column = vec![usize::MAX; state.len()];
    let mut vars = Vec::new();
    for (f, s) in state.iter().enumerate() {
        if s.is_suppressed() {
            column[f] = vars.len();
            vars.push(f);
        }
    }
    let nv = vars.len();
    let mut m: Vec<Vec<f64>> = relations
        .iter()
        .filter_map(|rel| {
            let mut row = vec![0.0; nv];
            let mut any = false;
            for &(f, coef) in rel {
                if column[f] != usize::MAX {
                    row[column[f]] += coef;
                    any = true;
                }
            }
            any.then_some(row)
        })
        .collect();
    const EPS: f64 = 1e-9;
    let mut pivots = Vec::new();
    let mut r = 0;
    for c in 0..nv {
        if r == m.len() {
            break;
        }
        let Some(p) = (r..m.len())
            .filter(|&i| m[i][c].abs() > EPS)
            .max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs()))
        else {
            continue;
        };
        m.swap(r, p);
        let pv = m[r][c];
        for x in &mut m[r] {
            *x /= pv;
        }
        let pivot_row = m[r].clone();
        for (i, row) in m.iter_mut().enumerate() {
            if i != r && row[c].abs() > EPS {
                let factor = row[c];
                for (x, &y) in row.iter_mut().zip(&pivot_row) {
                    *x -= factor * y;
                }
            }
        }
        pivots.push((r, c));
        r += 1;
    }
    pivots
        .into_iter()
        .filter(|&(r, c)| (0..nv).all(|j| j == c || m[r][j].abs() <= EPS))
        .map(|(_, c)| vars[c])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn table(rows: usize, counts: Vec<u64>) -> ContingencyTable {
        ContingencyTable::numbered(rows, counts)
    }

    /// Every table with non-negative integer cells that agrees with everything published
    /// (visible cells, visible group totals, segment sizes); returns the set of values each
    /// suppressed cell takes across them. Brute force, independent of the linear algebra.
    fn consistent_values(t: &ContingencyTable, s: &TableSuppression) -> Vec<BTreeSet<u64>> {
        let (rows, cols) = (t.rows(), t.cols());
        let rt = t.row_totals();
        let ct = t.col_totals();
        let hidden: Vec<usize> = (0..rows * cols)
            .filter(|&i| s.cells[i].is_suppressed())
            .collect();
        let mut seen = vec![BTreeSet::new(); hidden.len()];
        let mut cur = t.counts().to_vec();
        for &h in &hidden {
            cur[h] = 0;
        }
        #[expect(
            clippy::too_many_arguments,
            reason = "a recursive brute-force helper; a struct would only hide the state"
        )]
        fn rec(
            k: usize,
            hidden: &[usize],
            cur: &mut Vec<u64>,
            seen: &mut Vec<BTreeSet<u64>>,
            rt: &[u64],
            ct: &[u64],
            s: &TableSuppression,
            cols: usize,
        ) {
            if k == hidden.len() {
                let rows_ok = rt
                    .iter()
                    .enumerate()
                    .all(|(r, &x)| cur[r * cols..(r + 1) * cols].iter().sum::<u64>() == x);
                let cols_ok = (0..cols).all(|c| {
                    s.group_totals[c].is_suppressed()
                        || (0..rt.len()).map(|r| cur[r * cols + c]).sum::<u64>() == ct[c]
                });
                if rows_ok && cols_ok {
                    for (i, &h) in hidden.iter().enumerate() {
                        seen[i].insert(cur[h]);
                    }
                }
                return;
            }
            let h = hidden[k];
            let row = h / cols;
            let last_in_row = hidden.get(k + 1).is_none_or(|&next| next / cols != row);
            // Sum of the row's other cells so far (later hidden cells of the row are still 0).
            let others: u64 = (row * cols..(row + 1) * cols)
                .filter(|&i| i != h)
                .map(|i| cur[i])
                .sum();
            let Some(room) = rt[row].checked_sub(others) else {
                cur[h] = 0;
                return;
            };
            // The row sum is public, so the last hidden cell of a row is forced.
            let range = if last_in_row { room..=room } else { 0..=room };
            for v in range {
                cur[h] = v;
                rec(k + 1, hidden, cur, seen, rt, ct, s, cols);
            }
            cur[h] = 0;
        }
        rec(0, &hidden, &mut cur, &mut seen, &rt, &ct, s, cols);
        seen
    }

    fn assert_protected(t: &ContingencyTable, min: u64) -> TableSuppression {
        let (marks, complete) = suppress(&[t], &[], min);
        assert!(complete);
        let s = marks.into_iter().next().unwrap();
        for (i, &x) in t.counts().iter().enumerate() {
            if x > 0 && x < min {
                assert_eq!(s.cells[i], Suppression::Primary, "cell {i} = {x}");
            }
        }
        for (i, values) in consistent_values(t, &s).iter().enumerate() {
            assert!(
                values.len() >= 2,
                "suppressed cell #{i} is recoverable: {values:?}"
            );
        }
        s
    }

    #[test]
    fn with_both_margins_public_a_small_cell_is_hidden_in_its_row_and_its_column() {
        // One small cell (3) among counts in the hundreds: hiding one other cell of its row
        // leaves it recoverable from its column's public total; two-way suppression must hide
        // a rectangle.
        let t = table(3, vec![3, 120, 250, 140, 200, 90, 310, 180, 160]);
        let (s, complete) = suppress_two_way(&t, 10);
        assert!(complete);
        assert!(s.group_totals.iter().all(|g| !g.is_suppressed()));
        let hidden = |r: usize, c: usize| s.cells[r * 3 + c].is_suppressed();
        assert_eq!(s.cells[0], Suppression::Primary);
        assert!((1..3).any(|c| hidden(0, c)), "row partner");
        assert!((1..3).any(|r| hidden(r, 0)), "column partner");
        // With rows and columns known, a hidden rectangle through the small cell lets it move
        // by one while every margin stays the same: it has more than one possible value.
        let v = |r: usize, c: usize| t.counts()[r * 3 + c];
        let movable = (1..3).any(|r| {
            (1..3)
                .any(|c| hidden(0, c) && hidden(r, 0) && hidden(r, c) && v(0, c) > 0 && v(r, 0) > 0)
        });
        assert!(movable, "the small cell is recoverable: {s:?}");
    }

    #[test]
    fn a_lone_small_cell_gets_complementary_partners() {
        let s = assert_protected(&table(3, vec![3, 20, 15, 12, 18, 11, 14, 16, 19]), 5);
        let hidden = s.cells.iter().filter(|c| c.is_suppressed()).count();
        // A single small cell needs a 2 × 2 rectangle at least.
        assert!(hidden >= 4, "{s:?}");
        assert!(s.group_totals.iter().all(|g| !g.is_suppressed()));
    }

    #[test]
    fn small_groups_hide_their_total_too() {
        let s = assert_protected(&table(2, vec![2, 30, 25, 1, 28, 31]), 5);
        assert_eq!(s.group_totals[0], Suppression::Primary);
        // The grand total is public, so a second group total must go as well.
        assert!(s.group_totals.iter().filter(|g| g.is_suppressed()).count() >= 2);
    }

    #[test]
    fn tables_without_small_cells_are_untouched() {
        let (marks, complete) = suppress(&[&table(2, vec![10, 0, 30, 40])], &[], 10);
        assert!(complete);
        assert!(marks[0].cells.iter().all(|c| !c.is_suppressed()));
    }

    #[test]
    fn brute_force_finds_nothing_recoverable_in_many_small_tables() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        for _ in 0..60 {
            let rows = rng.gen_range(2..=3);
            let cols = rng.gen_range(2..=3);
            let counts: Vec<u64> = (0..rows * cols)
                .map(|_| {
                    if rng.gen_bool(0.35) {
                        rng.gen_range(1..4)
                    } else {
                        rng.gen_range(4..12)
                    }
                })
                .collect();
            assert_protected(&table(rows, counts), 4);
        }
    }

    #[test]
    fn intersection_cells_cannot_be_recovered_through_the_marginal_tables() {
        // Two segments; A = {F, M}; B = {x, y}; A×B has the four combinations F×x, F×y, M×x,
        // M×y. Only F×x in segment 0 (= 1) is below the minimum of 3.
        let seg = [[1u64, 4, 5, 3], [4, 3, 6, 5]];
        let marg = |s: [u64; 4]| ([s[0] + s[1], s[2] + s[3]], [s[0] + s[2], s[1] + s[3]]);
        let ab = table(2, seg.concat());
        let (a0, b0) = marg(seg[0]);
        let (a1, b1) = marg(seg[1]);
        let a = table(2, [a0, a1].concat());
        let b = table(2, [b0, b1].concat());
        let links = [
            Link {
                whole: 0,
                part: 2,
                group_of: vec![0, 0, 1, 1],
            },
            Link {
                whole: 1,
                part: 2,
                group_of: vec![0, 1, 0, 1],
            },
        ];
        let tables = [&a, &b, &ab];
        let (marks, complete) = suppress(&tables, &links, 3);
        assert!(complete);
        assert_eq!(marks[2].cells[0], Suppression::Primary);
        // Brute force over all intersection tables with the public segment sizes: keep those
        // that agree with every published cell and group total of all three tables, and
        // collect every value each hidden figure takes.
        let published_agree = |cand: &[[u64; 4]; 2]| {
            let (ca0, cb0) = marg(cand[0]);
            let (ca1, cb1) = marg(cand[1]);
            let cells = [[ca0, ca1].concat(), [cb0, cb1].concat(), cand.concat()];
            (0..3).all(|ti| {
                let t = tables[ti];
                let cols = t.cols();
                let cells_ok = (0..t.counts().len())
                    .all(|i| marks[ti].cells[i].is_suppressed() || cells[ti][i] == t.counts()[i]);
                let totals_ok = (0..cols).all(|c| {
                    marks[ti].group_totals[c].is_suppressed()
                        || cells[ti][c] + cells[ti][cols + c] == t.col_totals()[c]
                });
                cells_ok && totals_ok
            })
        };
        let fill = |n: u64| {
            let mut out = Vec::new();
            for x in 0..=n {
                for y in 0..=n - x {
                    for z in 0..=n - x - y {
                        out.push([x, y, z, n - x - y - z]);
                    }
                }
            }
            out
        };
        let mut seen: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); 3 * 8];
        for s0 in fill(13) {
            for s1 in fill(18) {
                let cand = [s0, s1];
                if !published_agree(&cand) {
                    continue;
                }
                let (ca0, cb0) = marg(s0);
                let (ca1, cb1) = marg(s1);
                let cells = [[ca0, ca1].concat(), [cb0, cb1].concat(), cand.concat()];
                for ti in 0..3 {
                    for (i, &v) in cells[ti].iter().enumerate() {
                        seen[ti * 8 + i].insert(v);
                    }
                }
            }
        }
        for ti in 0..3 {
            for (i, mark) in marks[ti].cells.iter().enumerate() {
                if *mark == Suppression::Primary {
                    assert!(
                        seen[ti * 8 + i].len() >= 2,
                        "table {ti} cell {i} is recoverable: {:?}",
                        seen[ti * 8 + i]
                    );
                }
            }
        }
    }
}
