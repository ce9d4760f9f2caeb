//! What the evaluation log says of a figure once stored: which series it belongs to, how its
//! status is written, whether it is withheld, and how much of its period it covers.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use chrono::{NaiveDate, NaiveDateTime};

use super::{ALL_SEGMENT, Coverage, Period, PeriodKind, Status};

/// Status stored for a KPI without an objective.
pub const NO_TARGET: &str = "no_target";
/// Status shown for a suppressed figure.
pub const SUPPRESSED: &str = "suppressed";
/// Status shown for a figure of a period that had not ended when it was evaluated.
pub const PARTIAL: &str = "partial";

/// The status as stored in the log: a status against the target, or `no_target`.
pub fn stored_status(status: Option<Status>) -> &'static str {
    status.map_or(NO_TARGET, Status::as_str)
}

/// A stored status read back; `None` for a figure without an objective (or a status this
/// version does not know). A suppressed figure counts as undefined.
pub fn status_of(stored: &str) -> Option<Status> {
    match stored {
        "on_target" => Some(Status::OnTarget),
        "warning" => Some(Status::Warning),
        "alert" => Some(Status::Alert),
        "undefined" | SUPPRESSED => Some(Status::Undefined),
        _ => None,
    }
}

/// Whether a figure resting on `basis` customers is withheld under the policy's minimum cell
/// size.
pub fn is_suppressed(basis: i64, min_cell_size: u32) -> bool {
    basis < i64::from(min_cell_size)
}

/// Which of `figures` are withheld, each given as (group, basis). A figure resting on fewer
/// than `min_cell_size` customers is withheld (primary suppression). Figures of one group add
/// up to a published one — the segments of one run, for one KPI and period, beside `all` — so
/// a group with exactly one withheld figure would give it away by subtraction: there the
/// smallest other figure is withheld too (complementary suppression). Figures without a group
/// (`all`, say) only get primary suppression.
pub fn withheld<G: Hash + Eq>(figures: &[(Option<G>, i64)], min_cell_size: u32) -> Vec<bool> {
    let mut out: Vec<bool> = figures
        .iter()
        .map(|(_, basis)| is_suppressed(*basis, min_cell_size))
        .collect();
    let mut groups: HashMap<&G, Vec<usize>> = HashMap::new();
    for (i, (group, _)) in figures.iter().enumerate() {
        if let Some(g) = group {
            groups.entry(g).or_default().push(i);
        }
    }
    for members in groups.values() {
        if members.iter().filter(|&&i| out[i]).count() != 1 {
            continue;
        }
        let partner = members
            .iter()
            .filter(|&&i| !out[i])
            .min_by_key(|&&i| (figures[i].1, i));
        if let Some(&i) = partner {
            out[i] = true;
        }
    }
    out
}

/// The coverage of a logged figure of `kind` starting on `start`, evaluated at `at`; a row
/// whose period cannot be rebuilt counts as complete.
pub fn logged_coverage(kind: Option<PeriodKind>, start: NaiveDate, at: NaiveDateTime) -> Coverage {
    kind.and_then(|k| Period::containing(k, start).ok())
        .map(|p| p.coverage_at(at))
        .unwrap_or(Coverage {
            days_covered: 0,
            days: 0,
            complete: true,
        })
}

/// Which series a logged row belongs to: `all`, or a run's segment by number. A row logged
/// before series were keyed whose segment could not be recovered keeps its label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SeriesKey {
    All,
    Segment { run_id: i64, number: i32 },
    Label { run_id: Option<i64>, label: String },
}

impl SeriesKey {
    /// The series of a row with this segment label, run and segment number.
    pub fn new(segment: &str, run_id: Option<i64>, number: Option<i32>) -> SeriesKey {
        match (run_id, number) {
            _ if segment == ALL_SEGMENT => SeriesKey::All,
            (Some(run_id), Some(number)) => SeriesKey::Segment { run_id, number },
            (run_id, _) => SeriesKey::Label {
                run_id,
                label: segment.to_owned(),
            },
        }
    }
}

/// Unique segment names for the evaluator: a name that is empty, `all` or used twice gets
/// its segment number appended.
pub fn unique_names(segments: &[(i32, String)]) -> Vec<String> {
    let mut seen = HashSet::new();
    segments
        .iter()
        .map(|(number, name)| {
            let trimmed = name.trim();
            let mut candidate = trimmed.to_owned();
            if candidate.is_empty() || candidate == ALL_SEGMENT || seen.contains(&candidate) {
                candidate = format!("{trimmed} (segment {number})");
            }
            seen.insert(candidate.clone());
            candidate
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_small_segment_takes_the_next_smallest_with_it() {
        // all = 45 is shown; segment 2 (5 customers) alone withheld would be 45 - 40.
        let figures = [(None, 45), (Some(1), 40), (Some(1), 5), (Some(1), 30)];
        assert_eq!(withheld(&figures, 10), [false, false, true, true]);
    }

    #[test]
    fn two_small_segments_need_no_partner_and_groups_are_apart() {
        let figures = [
            (Some("jan"), 3),
            (Some("jan"), 4),
            (Some("jan"), 50),
            (Some("feb"), 60),
            (Some("feb"), 70),
            (None, 2),
        ];
        assert_eq!(
            withheld(&figures, 10),
            [true, true, false, false, false, true]
        );
    }

    #[test]
    fn a_group_of_one_has_no_partner_to_give() {
        assert_eq!(withheld(&[(Some(1), 3)], 10), [true]);
        assert_eq!(withheld(&[(Some(1), 30)], 10), [false]);
    }

    #[test]
    fn duplicate_or_reserved_segment_names_are_made_unique() {
        let names = unique_names(&[
            (0, "Loyal".into()),
            (1, "Loyal".into()),
            (2, "all".into()),
            (3, " ".into()),
        ]);
        assert_eq!(
            names,
            [
                "Loyal",
                "Loyal (segment 1)",
                "all (segment 2)",
                " (segment 3)"
            ]
        );
    }

    #[test]
    fn a_row_belongs_to_all_its_segment_or_its_label() {
        assert_eq!(SeriesKey::new("all", None, None), SeriesKey::All);
        assert_eq!(
            SeriesKey::new("Loyal", Some(4), Some(2)),
            SeriesKey::Segment {
                run_id: 4,
                number: 2
            }
        );
        assert_eq!(
            SeriesKey::new("Loyal", Some(4), None),
            SeriesKey::Label {
                run_id: Some(4),
                label: "Loyal".into()
            }
        );
    }

    #[test]
    fn stored_statuses_read_back() {
        for s in [
            Status::OnTarget,
            Status::Warning,
            Status::Alert,
            Status::Undefined,
        ] {
            assert_eq!(status_of(stored_status(Some(s))), Some(s));
        }
        assert_eq!(status_of(stored_status(None)), None);
        assert_eq!(status_of(SUPPRESSED), Some(Status::Undefined));
    }
}
