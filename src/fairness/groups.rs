//! Protected attributes as group columns: one small integer code per member, plus the level
//! names. Interning once keeps tabulation of a million members to a single pass over `u32`s.

use std::collections::HashMap;

use super::FairnessError;

/// The reported name of the group of members whose value is missing.
///
/// Missing values are never dropped: a segmentation that treats "unknown sex" differently is
/// exactly the kind of pattern an audit must surface.
pub const MISSING_GROUP: &str = "(missing)";

/// The code of a missing value among interned labels ([`GroupColumn::from_interned`]).
pub const NO_LABEL: u32 = u32::MAX;

/// Name separator of intersection groups, e.g. `"F × 25-34"`.
pub const INTERSECTION_SEPARATOR: &str = " × ";

/// Age-style bands built from the policy's cut points.
///
/// Cut points `[18, 25, 35]` give the bands `"<18"`, `"18-24"`, `"25-34"`, `"35+"`: a value `x`
/// falls in the band whose lower cut is the largest cut `<= x`. Integer cut points get the
/// familiar inclusive labels; fractional ones get half-open labels such as `"1.5 to <2.5"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bands {
    cuts: Vec<f64>,
    labels: Vec<String>,
}

impl Bands {
    /// Validates the cut points (non-empty, finite, strictly increasing) and builds the labels.
    pub fn new(cuts: &[f64]) -> Result<Self, FairnessError> {
        if cuts.is_empty() {
            return Err(FairnessError::NoBands);
        }
        if cuts.iter().any(|c| !c.is_finite()) || cuts.windows(2).any(|w| w[0] >= w[1]) {
            return Err(FairnessError::InvalidBands(cuts.to_vec()));
        }
        let integral = cuts.iter().all(|c| c.fract() == 0.0 && c.abs() < 1e15);
        let mut labels = Vec::with_capacity(cuts.len() + 1);
        labels.push(format!("<{}", cuts[0]));
        for w in cuts.windows(2) {
            labels.push(if integral {
                format!("{}-{}", w[0], w[1] - 1.0)
            } else {
                format!("{} to <{}", w[0], w[1])
            });
        }
        labels.push(format!("{}+", cuts[cuts.len() - 1]));
        Ok(Self {
            cuts: cuts.to_vec(),
            labels,
        })
    }

    /// The cut points, as validated.
    pub fn cuts(&self) -> &[f64] {
        &self.cuts
    }

    /// Band labels, lowest first; there is one more band than cut points.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Index of the band holding `x` (which must be finite).
    pub fn band_of(&self, x: f64) -> usize {
        self.cuts.partition_point(|&c| c <= x)
    }
}

/// One protected attribute (or an intersection of two) as a column of group codes.
///
/// Invariant: every code indexes `levels`. The missing group, if any member lacks a value, is a
/// level named [`MISSING_GROUP`] like any other.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupColumn {
    levels: Vec<String>,
    codes: Vec<u32>,
}

impl GroupColumn {
    /// Interns string labels; `None` becomes the [`MISSING_GROUP`] level. Levels are kept in
    /// order of first appearance, so reports list groups in a stable, data-given order.
    pub fn from_labels<S: AsRef<str>>(labels: &[Option<S>]) -> Result<Self, FairnessError> {
        let mut index: HashMap<&str, u32> = HashMap::new();
        let mut levels: Vec<String> = Vec::new();
        let mut missing: Option<u32> = None;
        let mut codes = Vec::with_capacity(labels.len());
        for label in labels {
            let code = match label {
                None => *missing.get_or_insert_with(|| {
                    levels.push(MISSING_GROUP.to_owned());
                    (levels.len() - 1) as u32
                }),
                Some(s) => {
                    let s = s.as_ref();
                    if s == MISSING_GROUP {
                        return Err(FairnessError::ReservedLabel(s.to_owned()));
                    }
                    *index.entry(s).or_insert_with(|| {
                        levels.push(s.to_owned());
                        (levels.len() - 1) as u32
                    })
                }
            };
            codes.push(code);
        }
        Ok(Self { levels, codes })
    }

    /// [`from_labels`](Self::from_labels) for labels interned as they were read: `codes[i]`
    /// indexes `labels`, or is [`NO_LABEL`] for a missing value. The same column as
    /// `from_labels` of the labels the codes stand for (levels in order of first appearance),
    /// built without hashing a string per member.
    pub fn from_interned(labels: &[String], codes: &[u32]) -> Result<Self, FairnessError> {
        // Slot `labels.len()` stands for the missing value.
        let mut level_of = vec![u32::MAX; labels.len() + 1];
        let mut levels: Vec<String> = Vec::new();
        let mut out = Vec::with_capacity(codes.len());
        for &c in codes {
            let slot = if c == NO_LABEL {
                labels.len()
            } else {
                c as usize
            };
            let level = &mut level_of[slot];
            if *level == u32::MAX {
                let name = match labels.get(slot) {
                    None => MISSING_GROUP,
                    Some(s) if s == MISSING_GROUP => {
                        return Err(FairnessError::ReservedLabel(s.clone()));
                    }
                    Some(s) => s,
                };
                levels.push(name.to_owned());
                *level = (levels.len() - 1) as u32;
            }
            out.push(*level);
        }
        Ok(Self { levels, codes: out })
    }

    /// Uses codes that are already interned (as a database column of small integers would be).
    /// `None` becomes the [`MISSING_GROUP`] level, appended after `levels`.
    pub fn from_codes(levels: Vec<String>, codes: &[Option<u32>]) -> Result<Self, FairnessError> {
        if let Some(l) = levels.iter().find(|l| *l == MISSING_GROUP) {
            return Err(FairnessError::ReservedLabel(l.clone()));
        }
        let n_levels = levels.len();
        let missing_code = n_levels as u32;
        let mut any_missing = false;
        let mut out = Vec::with_capacity(codes.len());
        for (index, c) in codes.iter().enumerate() {
            match *c {
                Some(code) if (code as usize) < n_levels => out.push(code),
                Some(code) => {
                    return Err(FairnessError::CodeOutOfRange {
                        code,
                        index,
                        levels: n_levels,
                    });
                }
                None => {
                    any_missing = true;
                    out.push(missing_code);
                }
            }
        }
        let mut levels = levels;
        if any_missing {
            levels.push(MISSING_GROUP.to_owned());
        }
        Ok(Self { levels, codes: out })
    }

    /// Bands a numeric attribute. All bands are levels, even empty ones, so the report shows
    /// that nobody under 18 was audited rather than silently omitting the band.
    pub fn from_numeric(
        what: &str,
        values: &[Option<f64>],
        bands: &Bands,
    ) -> Result<Self, FairnessError> {
        let mut levels = bands.labels().to_vec();
        let missing_code = levels.len() as u32;
        let mut any_missing = false;
        let mut codes = Vec::with_capacity(values.len());
        for (index, v) in values.iter().enumerate() {
            match *v {
                Some(x) if x.is_finite() => codes.push(bands.band_of(x) as u32),
                Some(_) => {
                    return Err(FairnessError::NonFinite {
                        what: what.to_owned(),
                        index,
                    });
                }
                None => {
                    any_missing = true;
                    codes.push(missing_code);
                }
            }
        }
        if any_missing {
            levels.push(MISSING_GROUP.to_owned());
        }
        Ok(Self { levels, codes })
    }

    /// The intersection of two attributes: one group per observed combination, named
    /// `"a × b"`. Only observed combinations become groups, so 20 × 20 levels do not create 400
    /// empty columns.
    pub fn intersect(&self, other: &GroupColumn) -> Result<Self, FairnessError> {
        self.intersect_with_parts(other).map(|(column, _)| column)
    }

    /// [`intersect`](Self::intersect), also returning for each intersection group the codes of
    /// its two parts (the suppression of linked tables needs them).
    pub fn intersect_with_parts(
        &self,
        other: &GroupColumn,
    ) -> Result<(Self, Vec<(u32, u32)>), FairnessError> {
        if self.codes.len() != other.codes.len() {
            return Err(FairnessError::LengthMismatch {
                what: "intersection".to_owned(),
                expected: self.codes.len(),
                found: other.codes.len(),
            });
        }
        let kb = other.levels.len();
        let mut compact = vec![u32::MAX; self.levels.len() * kb];
        let mut levels = Vec::new();
        let mut parts = Vec::new();
        let mut codes = Vec::with_capacity(self.codes.len());
        for (&a, &b) in self.codes.iter().zip(&other.codes) {
            let slot = &mut compact[a as usize * kb + b as usize];
            if *slot == u32::MAX {
                *slot = levels.len() as u32;
                parts.push((a, b));
                levels.push(format!(
                    "{}{}{}",
                    self.levels[a as usize], INTERSECTION_SEPARATOR, other.levels[b as usize]
                ));
            }
            codes.push(*slot);
        }
        Ok((Self { levels, codes }, parts))
    }

    /// Group names, indexed by code.
    pub fn levels(&self) -> &[String] {
        &self.levels
    }

    /// One code per member.
    pub fn codes(&self) -> &[u32] {
        &self.codes
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// True when there are no members.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_labels_give_the_column_their_labels_give() {
        let labels = ["M".to_owned(), "F".to_owned(), "X".to_owned()];
        let codes = [1, NO_LABEL, 0, 1, NO_LABEL, 0];
        let plain: Vec<Option<&str>> = codes
            .iter()
            .map(|&c| labels.get(c as usize).map(String::as_str))
            .collect();
        let interned = GroupColumn::from_interned(&labels, &codes).unwrap();
        assert_eq!(interned, GroupColumn::from_labels(&plain).unwrap());
        assert_eq!(interned.levels(), ["F", MISSING_GROUP, "M"]);
        let reserved = [MISSING_GROUP.to_owned()];
        assert!(matches!(
            GroupColumn::from_interned(&reserved, &[0]),
            Err(FairnessError::ReservedLabel(_))
        ));
        // A label no member has is no level.
        assert_eq!(
            GroupColumn::from_interned(&reserved, &[NO_LABEL])
                .unwrap()
                .levels(),
            [MISSING_GROUP]
        );
    }

    #[test]
    fn policy_age_bands_have_the_familiar_labels() {
        let b = Bands::new(&[18.0, 25.0, 35.0, 45.0, 55.0, 65.0]).unwrap();
        assert_eq!(
            b.labels(),
            ["<18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
        );
        assert_eq!(b.band_of(17.99), 0);
        assert_eq!(b.band_of(18.0), 1);
        assert_eq!(b.band_of(24.9), 1);
        assert_eq!(b.band_of(25.0), 2);
        assert_eq!(b.band_of(64.0), 5);
        assert_eq!(b.band_of(65.0), 6);
        assert_eq!(b.band_of(120.0), 6);
    }

    #[test]
    fn fractional_bands_use_half_open_labels() {
        let b = Bands::new(&[1.5, 2.5]).unwrap();
        assert_eq!(b.labels(), ["<1.5", "1.5 to <2.5", "2.5+"]);
    }

    #[test]
    fn bands_reject_unsorted_duplicate_or_non_finite_cuts() {
        assert_eq!(Bands::new(&[]), Err(FairnessError::NoBands));
        assert!(matches!(
            Bands::new(&[25.0, 18.0]),
            Err(FairnessError::InvalidBands(_))
        ));
        assert!(matches!(
            Bands::new(&[18.0, 18.0]),
            Err(FairnessError::InvalidBands(_))
        ));
        assert!(matches!(
            Bands::new(&[18.0, f64::NAN]),
            Err(FairnessError::InvalidBands(_))
        ));
        assert!(matches!(
            Bands::new(&[f64::NEG_INFINITY, 3.0]),
            Err(FairnessError::InvalidBands(_))
        ));
    }

    #[test]
    fn missing_values_form_their_own_group() {
        let g = GroupColumn::from_labels(&[Some("F"), None, Some("M"), Some("F"), None]).unwrap();
        assert_eq!(g.levels(), ["F", MISSING_GROUP, "M"]);
        assert_eq!(g.codes(), [0, 1, 2, 0, 1]);
        let n = GroupColumn::from_numeric(
            "age",
            &[Some(30.0), None, Some(10.0)],
            &Bands::new(&[18.0]).unwrap(),
        )
        .unwrap();
        assert_eq!(n.levels(), ["<18", "18+", MISSING_GROUP]);
        assert_eq!(n.codes(), [1, 2, 0]);
        let c = GroupColumn::from_codes(vec!["a".into(), "b".into()], &[Some(1), None]).unwrap();
        assert_eq!(c.levels(), ["a", "b", MISSING_GROUP]);
        assert_eq!(c.codes(), [1, 2]);
    }

    #[test]
    fn bad_values_are_rejected_with_their_position() {
        assert_eq!(
            GroupColumn::from_labels(&[Some("(missing)")]),
            Err(FairnessError::ReservedLabel("(missing)".into()))
        );
        assert_eq!(
            GroupColumn::from_numeric(
                "age",
                &[Some(1.0), Some(f64::NAN)],
                &Bands::new(&[18.0]).unwrap()
            ),
            Err(FairnessError::NonFinite {
                what: "age".into(),
                index: 1
            })
        );
        assert!(matches!(
            GroupColumn::from_codes(vec!["a".into()], &[Some(0), Some(3)]),
            Err(FairnessError::CodeOutOfRange {
                code: 3,
                index: 1,
                ..
            })
        ));
    }

    #[test]
    fn intersections_name_observed_combinations_only() {
        let sex = GroupColumn::from_labels(&[Some("F"), Some("M"), Some("F"), None]).unwrap();
        let age = GroupColumn::from_numeric(
            "age",
            &[Some(30.0), Some(30.0), Some(50.0), Some(30.0)],
            &Bands::new(&[25.0, 35.0]).unwrap(),
        )
        .unwrap();
        let x = sex.intersect(&age).unwrap();
        assert_eq!(
            x.levels(),
            ["F × 25-34", "M × 25-34", "F × 35+", "(missing) × 25-34"]
        );
        assert_eq!(x.codes(), [0, 1, 2, 3]);
        let short = GroupColumn::from_labels(&[Some("F")]).unwrap();
        assert!(matches!(
            sex.intersect(&short),
            Err(FairnessError::LengthMismatch { .. })
        ));
    }
}
