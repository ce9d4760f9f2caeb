//! The segment × group contingency table.

use std::collections::HashMap;

use super::FairnessError;
use super::groups::GroupColumn;

/// Counts of members per segment (rows) and group (columns), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ContingencyTable {
    segments: Vec<u32>,
    groups: Vec<String>,
    counts: Vec<u64>,
}

/// Segment ids up to this bound are looked up in a dense array; larger (sparse) ids in a hash
/// map. Dense lookup is what keeps a million-member tabulation at a few milliseconds.
const DENSE_SEGMENT_ID_LIMIT: u32 = 1 << 20;

impl ContingencyTable {
    /// A table of `rows` segments numbered from 0 and groups `g0`, `g1`, … from counts in
    /// row-major order: a fixture for tests.
    #[cfg(test)]
    pub fn numbered(rows: usize, counts: Vec<u64>) -> ContingencyTable {
        let cols = counts.len() / rows;
        ContingencyTable::from_counts(
            (0..rows as u32).collect(),
            (0..cols).map(|c| format!("g{c}")).collect(),
            counts,
        )
        .unwrap()
    }

    /// Builds a table directly from counts (row-major, `segments.len() × groups.len()`).
    pub fn from_counts(
        segments: Vec<u32>,
        groups: Vec<String>,
        counts: Vec<u64>,
    ) -> Result<Self, FairnessError> {
        if counts.len() != segments.len() * groups.len() {
            return Err(FairnessError::LengthMismatch {
                what: "table counts".to_owned(),
                expected: segments.len() * groups.len(),
                found: counts.len(),
            });
        }
        Ok(Self {
            segments,
            groups,
            counts,
        })
    }

    /// Tabulates members: `membership[i]` is member `i`'s segment id, which must be one of
    /// `segments` (the table's rows, in that order); `groups` gives each member's group.
    pub fn tabulate(
        segments: &[u32],
        membership: &[u32],
        groups: &GroupColumn,
    ) -> Result<Self, FairnessError> {
        if membership.len() != groups.len() {
            return Err(FairnessError::LengthMismatch {
                what: "group column".to_owned(),
                expected: membership.len(),
                found: groups.len(),
            });
        }
        let lookup = SegmentLookup::new(segments)?;
        let k = groups.levels().len();
        let mut counts = vec![0u64; segments.len() * k];
        for (index, (&seg, &g)) in membership.iter().zip(groups.codes()).enumerate() {
            let row = lookup.row(seg).ok_or(FairnessError::UnknownSegment {
                index,
                segment: seg,
            })?;
            counts[row * k + g as usize] += 1;
        }
        Ok(Self {
            segments: segments.to_vec(),
            groups: groups.levels().to_vec(),
            counts,
        })
    }

    /// Segment ids, one per row.
    pub fn segments(&self) -> &[u32] {
        &self.segments
    }

    /// Group names, one per column.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// Row-major counts.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Number of rows (segments).
    pub fn rows(&self) -> usize {
        self.segments.len()
    }

    /// Number of columns (groups).
    pub fn cols(&self) -> usize {
        self.groups.len()
    }

    /// Count in row `r`, column `c`.
    pub fn get(&self, r: usize, c: usize) -> u64 {
        self.counts[r * self.cols() + c]
    }

    /// Row totals (segment sizes).
    pub fn row_totals(&self) -> Vec<u64> {
        self.counts
            .chunks(self.cols().max(1))
            .map(|r| r.iter().sum())
            .take(self.rows())
            .collect()
    }

    /// Column totals (group sizes in the audited population).
    pub fn col_totals(&self) -> Vec<u64> {
        let mut t = vec![0u64; self.cols()];
        for row in self.counts.chunks(self.cols().max(1)) {
            for (t, &x) in t.iter_mut().zip(row) {
                *t += x;
            }
        }
        t
    }

    /// Grand total.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The table without all-zero rows and columns (which have no expected counts and would
    /// make the chi-square statistic undefined), plus the indices that were dropped.
    pub fn without_empty(&self) -> (ContingencyTable, Vec<usize>, Vec<usize>) {
        let rt = self.row_totals();
        let ct = self.col_totals();
        let keep_r: Vec<usize> = (0..self.rows()).filter(|&r| rt[r] > 0).collect();
        let keep_c: Vec<usize> = (0..self.cols()).filter(|&c| ct[c] > 0).collect();
        let dropped_r = (0..self.rows()).filter(|&r| rt[r] == 0).collect();
        let dropped_c = (0..self.cols()).filter(|&c| ct[c] == 0).collect();
        let mut counts = Vec::with_capacity(keep_r.len() * keep_c.len());
        for &r in &keep_r {
            for &c in &keep_c {
                counts.push(self.get(r, c));
            }
        }
        (
            ContingencyTable {
                segments: keep_r.iter().map(|&r| self.segments[r]).collect(),
                groups: keep_c.iter().map(|&c| self.groups[c].clone()).collect(),
                counts,
            },
            dropped_r,
            dropped_c,
        )
    }
}

/// Maps segment ids to row indices.
pub(crate) enum SegmentLookup {
    Dense(Vec<u32>),
    Sparse(HashMap<u32, u32>),
}

impl SegmentLookup {
    pub(crate) fn new(segments: &[u32]) -> Result<Self, FairnessError> {
        let max = segments.iter().copied().max().unwrap_or(0);
        let mut lookup = if max < DENSE_SEGMENT_ID_LIMIT {
            SegmentLookup::Dense(vec![u32::MAX; max as usize + 1])
        } else {
            SegmentLookup::Sparse(HashMap::with_capacity(segments.len()))
        };
        for (row, &id) in segments.iter().enumerate() {
            let fresh = match &mut lookup {
                SegmentLookup::Dense(v) => {
                    let fresh = v[id as usize] == u32::MAX;
                    v[id as usize] = row as u32;
                    fresh
                }
                SegmentLookup::Sparse(m) => m.insert(id, row as u32).is_none(),
            };
            if !fresh {
                return Err(FairnessError::DuplicateSegment(id));
            }
        }
        Ok(lookup)
    }

    #[inline]
    pub(crate) fn row(&self, id: u32) -> Option<usize> {
        match self {
            SegmentLookup::Dense(v) => v
                .get(id as usize)
                .copied()
                .filter(|&r| r != u32::MAX)
                .map(|r| r as usize),
            SegmentLookup::Sparse(m) => m.get(&id).map(|&r| r as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabulates_members_by_segment_and_group() {
        let g =
            GroupColumn::from_labels(&[Some("F"), Some("M"), None, Some("F"), Some("F")]).unwrap();
        let t = ContingencyTable::tabulate(&[7, 3], &[3, 7, 7, 3, 7], &g).unwrap();
        assert_eq!(t.groups(), ["F", "M", "(missing)"]);
        // row 0 = segment 7: M, missing, F; row 1 = segment 3: F, F
        assert_eq!(t.counts(), [1, 1, 1, 2, 0, 0]);
        assert_eq!(t.row_totals(), [3, 2]);
        assert_eq!(t.col_totals(), [3, 1, 1]);
        assert_eq!(t.total(), 5);
    }

    #[test]
    fn sparse_segment_ids_work_too() {
        let g = GroupColumn::from_labels(&[Some("a"), Some("b")]).unwrap();
        let t = ContingencyTable::tabulate(&[4_000_000_000, 1], &[1, 4_000_000_000], &g).unwrap();
        assert_eq!(t.counts(), [0, 1, 1, 0]);
    }

    #[test]
    fn unknown_or_duplicate_segments_are_errors() {
        let g = GroupColumn::from_labels(&[Some("a"), Some("b")]).unwrap();
        assert_eq!(
            ContingencyTable::tabulate(&[1], &[1, 2], &g),
            Err(FairnessError::UnknownSegment {
                index: 1,
                segment: 2
            })
        );
        assert_eq!(
            ContingencyTable::tabulate(&[1, 1], &[1, 1], &g),
            Err(FairnessError::DuplicateSegment(1))
        );
        assert!(matches!(
            ContingencyTable::tabulate(&[1], &[1], &g),
            Err(FairnessError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn empty_rows_and_columns_are_dropped_and_reported() {
        let t = ContingencyTable::from_counts(
            vec![1, 2, 3],
            vec!["a".into(), "b".into(), "c".into()],
            vec![1, 0, 2, 0, 0, 0, 3, 0, 4],
        )
        .unwrap();
        let (r, dr, dc) = t.without_empty();
        assert_eq!(r.counts(), [1, 2, 3, 4]);
        assert_eq!(r.segments(), [1, 3]);
        assert_eq!(r.groups(), ["a", "c"]);
        assert_eq!(dr, [1]);
        assert_eq!(dc, [1]);
    }
}
