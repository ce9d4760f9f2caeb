//! The SVG charts the pages draw on the server, as view models the templates place: the
//! representation ratios of an audit, a KPI's history, and consent states per purpose. The
//! arithmetic that maps values onto the drawing ([`Axis`]) and the way a line breaks where a
//! value is withheld ([`pieces`]) are written once here.

use chrono::{Datelike, NaiveDateTime};

use super::format;
use super::kpi::{EvaluationView, kpi_shown, status_words};
use crate::consent::coverage::{ShownCount, Tally};
use crate::fairness::audit::AttributeReport;
use crate::kpi::Kpi;
use crate::policy::Currency;

/// A linear map onto one direction of the drawing: `start` is where 0 lands, `start +
/// length` where 1 does (a negative length runs upwards).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axis {
    pub start: f64,
    pub length: f64,
}

impl Axis {
    /// The axis between `margin_start` and `margin_end` inside `size`.
    pub fn inside(size: f64, margin_start: f64, margin_end: f64) -> Axis {
        Axis {
            start: margin_start,
            length: size - margin_start - margin_end,
        }
    }

    /// The axis from the bottom margin up to the top margin of a drawing `size` high.
    pub fn upwards(size: f64, margin: f64) -> Axis {
        Axis {
            start: size - margin,
            length: -(size - 2.0 * margin),
        }
    }

    /// Where the fraction `t` of the axis lands, to a tenth of a pixel (finer is invisible,
    /// and the sixteen digits of an unrounded coordinate were most of an audit report's
    /// 190 KB and of the time spent writing it).
    pub fn at(self, t: f64) -> f64 {
        tenth(self.start + self.length * t)
    }

    /// Where `value` of `whole` lands (the i-th of n steps, a count of its maximum).
    pub fn share(self, value: f64, whole: f64) -> f64 {
        tenth(self.start + self.length * value / whole)
    }
}

fn tenth(px: f64) -> f64 {
    (px * 10.0).round() / 10.0
}

/// A point of a polyline, to a tenth of a pixel.
pub fn point(x: f64, y: f64) -> String {
    format!("{x:.1},{y:.1}")
}

/// The runs of consecutive points, each as its points: a missing (withheld or undefined)
/// value breaks the line rather than being drawn through.
pub fn pieces(points: impl IntoIterator<Item = Option<(f64, f64)>>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for p in points {
        match p {
            Some((x, y)) => current.push(point(x, y)),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Labels of a time axis: every third instant, counted back from the last one so the newest
/// is always named, as (x, date).
pub fn time_labels(instants: &[NaiveDateTime], x: impl Fn(usize) -> f64) -> Vec<(String, String)> {
    instants
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == (instants.len() - 1) % 3)
        .map(|(i, t)| (format!("{:.1}", x(i)), t.format("%Y-%m-%d").to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Representation ratios of an audit.

/// One row of the representation chart: a dot at the ratio, a whisker over its interval.
pub struct ChartRow {
    pub label: String,
    pub y: f64,
    pub x: Option<f64>,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    pub text: String,
    pub outside: bool,
}

pub struct ChartTick {
    pub x: f64,
    pub label: String,
}

/// A server-side SVG chart of representation ratios (1 = the group's population share).
pub struct RatioChart {
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub plot_right: f64,
    pub one_x: f64,
    pub rows: Vec<ChartRow>,
    pub ticks: Vec<ChartTick>,
    pub axis_y: f64,
}

const RATIO_MAX: f64 = 3.0;
const ROW_HEIGHT: f64 = 16.0;

/// The representation ratios of one attribute, by segment and group, with their intervals;
/// ratios above 3 are drawn at 3.
pub fn representation(a: &AttributeReport, segment_label: &dyn Fn(u32) -> String) -> RatioChart {
    let (left, plot_width) = (260.0, 380.0);
    let axis = Axis {
        start: left,
        length: plot_width,
    };
    let scale = |r: f64| axis.share(r.clamp(0.0, RATIO_MAX), RATIO_MAX);
    let rows: Vec<ChartRow> = a
        .representation
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (x, lo, hi) = if e.suppressed {
                (None, None, None)
            } else {
                (
                    e.ratio.map(scale),
                    e.interval.map(|iv| scale(iv.lower)),
                    e.interval.map(|iv| scale(iv.upper)),
                )
            };
            let text = match (e.suppressed, e.ratio, e.interval) {
                (true, _, _) => "suppressed".into(),
                (false, Some(r), Some(iv)) => {
                    format!("{r:.2} ({:.2}–{:.2})", iv.lower, iv.upper)
                }
                (false, Some(r), None) => format!("{r:.2}"),
                (false, None, _) => "n/a".into(),
            };
            let outside = match e.interval {
                Some(iv) if !e.suppressed => iv.lower > 1.0 || iv.upper < 1.0,
                _ => false,
            };
            ChartRow {
                label: format!("{} · {}", segment_label(e.segment), e.group),
                y: 20.0 + ROW_HEIGHT * i as f64,
                x,
                lo,
                hi,
                text,
                outside,
            }
        })
        .collect();
    let axis_y = 20.0 + ROW_HEIGHT * rows.len() as f64;
    RatioChart {
        width: left + plot_width + 150.0,
        height: axis_y + 30.0,
        left,
        plot_right: left + plot_width,
        one_x: scale(1.0),
        ticks: [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
            .iter()
            .map(|&t| ChartTick {
                x: scale(t),
                label: if t == RATIO_MAX {
                    format!("≥{t}")
                } else {
                    format!("{t}")
                },
            })
            .collect(),
        rows,
        axis_y,
    }
}

// ---------------------------------------------------------------------------------------------
// A KPI's history.

const KPI_W: f64 = 280.0;
const KPI_H: f64 = 170.0;
const KPI_PAD_L: f64 = 44.0;
const KPI_PAD_R: f64 = 12.0;
const KPI_PAD_T: f64 = 12.0;
const KPI_PAD_B: f64 = 24.0;

pub struct Dot {
    pub x: String,
    pub y: String,
    pub title: String,
}

/// One KPI's values over the periods of a series, with its target and alert threshold.
pub struct KpiChart {
    pub kpi: String,
    pub label: &'static str,
    pub formula: &'static str,
    /// Line segments between defined, unsuppressed values.
    pub lines: Vec<String>,
    pub dots: Vec<Dot>,
    pub target_y: Option<String>,
    pub alert_y: Option<String>,
    pub target: Option<String>,
    pub alert: Option<String>,
    /// The target and threshold as the line labels say them (short).
    pub target_short: Option<String>,
    pub alert_short: Option<String>,
    pub y_max: String,
    pub y_min: String,
    /// Value axis: ticks (y, label), and the unit it is in.
    pub y_ticks: Vec<(String, String)>,
    /// Time axis: ticks (x, label).
    pub x_ticks: Vec<(String, String)>,
    pub unit: String,
    /// Where the plot starts and ends (for the axis lines).
    pub plot_left: f64,
    pub plot_right: f64,
    pub plot_bottom: f64,
    pub first: String,
    pub last: String,
    pub latest: String,
    pub latest_status: String,
    pub latest_label: String,
    pub withheld: usize,
    pub width: f64,
    pub height: f64,
}

/// The value range a KPI chart shows: every value, the target and the threshold; from 0 when
/// the values are all well above it.
fn kpi_range(values: &[Option<f64>], target: Option<f64>, alert: Option<f64>) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in values
        .iter()
        .flatten()
        .chain(target.iter())
        .chain(alert.iter())
    {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if lo > 0.0 && lo < hi * 0.5 {
        lo = 0.0;
    }
    if hi - lo < 1e-12 {
        hi = lo + 1.0;
    }
    (lo, hi)
}

/// A round step that cuts `lo..hi` into about four: 1, 2, 2.5 or 5 times a power of ten.
fn nice_step(lo: f64, hi: f64) -> f64 {
    let raw = (hi - lo) / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// The history of one KPI in one series, complete periods only, oldest first.
pub fn kpi_history(k: &Kpi, series: &[EvaluationView], currency: &Currency) -> KpiChart {
    let kpi = k.name();
    let values: Vec<Option<f64>> = series.iter().map(|v| v.value).collect();
    let target = series.iter().rev().find_map(|v| v.target);
    let alert = series.iter().rev().find_map(|v| v.alert_threshold);
    let (lo, hi) = kpi_range(&values, target, alert);
    // Widen to round ticks at both ends.
    let step = nice_step(lo, hi);
    let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let n = series.len().max(1);
    let horizontal = Axis::inside(KPI_W, KPI_PAD_L, KPI_PAD_R);
    let vertical = Axis::inside(KPI_H, KPI_PAD_T, KPI_PAD_B);
    let x = |i: usize| {
        if n == 1 {
            KPI_W / 2.0
        } else {
            horizontal.share(i as f64, (n - 1) as f64)
        }
    };
    let y = |v: f64| vertical.at(1.0 - (v - lo) / (hi - lo));
    let lines = pieces(
        values
            .iter()
            .enumerate()
            .map(|(i, v)| v.map(|v| (x(i), y(v)))),
    )
    .into_iter()
    .filter(|p| p.len() > 1)
    .map(|p| p.join(" "))
    .collect();
    let dots = values
        .iter()
        .zip(series)
        .enumerate()
        .filter_map(|(i, (v, e))| {
            let v = (*v)?;
            Some(Dot {
                x: format!("{:.1}", x(i)),
                y: format!("{:.1}", y(v)),
                title: format!(
                    "{}: {} ({})",
                    format::date(&e.period_start),
                    kpi_shown(e, currency),
                    status_words(e)
                ),
            })
        })
        .collect();
    let y_ticks = (0..)
        .map(|i| lo + step * i as f64)
        .take_while(|v| *v <= hi + step * 1e-6)
        .map(|v| (format!("{:.1}", y(v)), format::kpi_tick(kpi, v, currency)))
        .collect();
    let monthly = series.iter().all(|v| v.period_start.day() == 1);
    let mut at: Vec<usize> = (0..3).map(|i| i * (n - 1) / 2).collect();
    at.dedup();
    let x_ticks = at
        .into_iter()
        .filter_map(|i| series.get(i).map(|v| (i, v)))
        .map(|(i, v)| {
            let day = v.period_start;
            (
                format!("{:.1}", x(i)),
                if monthly {
                    day.format("%b %Y").to_string()
                } else {
                    day.format("%-d %b %y").to_string()
                },
            )
        })
        .collect();
    let last = series.last();
    KpiChart {
        kpi: kpi.to_owned(),
        label: k.label(),
        formula: k.formula(),
        lines,
        dots,
        target_y: target.map(|t| format!("{:.1}", y(t))),
        alert_y: alert.map(|a| format!("{:.1}", y(a))),
        target: target.map(|t| format::kpi_value(kpi, t, currency)),
        alert: alert.map(|a| format::kpi_value(kpi, a, currency)),
        target_short: target.map(|t| format::kpi_tick(kpi, t, currency)),
        alert_short: alert.map(|a| format::kpi_tick(kpi, a, currency)),
        y_max: format::kpi_value(kpi, hi, currency),
        y_min: format::kpi_value(kpi, lo, currency),
        y_ticks,
        x_ticks,
        unit: format::kpi_unit(kpi, currency),
        plot_left: KPI_PAD_L,
        plot_right: KPI_W - KPI_PAD_R,
        plot_bottom: KPI_H - KPI_PAD_B,
        first: series
            .first()
            .map(|v| format::date(&v.period_start))
            .unwrap_or_default(),
        last: last
            .map(|v| format::date(&v.period_start))
            .unwrap_or_default(),
        latest: last.map(|v| kpi_shown(v, currency)).unwrap_or_default(),
        latest_status: last.map(|v| v.status.clone()).unwrap_or_default(),
        latest_label: last.map(status_words).unwrap_or_default(),
        withheld: series.iter().filter(|v| v.suppressed).count(),
        width: KPI_W,
        height: KPI_H,
    }
}

// ---------------------------------------------------------------------------------------------
// Consent states per purpose.

/// Colours and labels of the four consent states, in `Tally::counts` order.
pub const CONSENT_SERIES: [(&str, &str); 4] = [
    ("Granted", "#2e7d32"),
    ("Withdrawn", "#c62828"),
    ("Expired", "#ef6c00"),
    ("Never asked", "#757575"),
];

/// The size of a drawing with the same margin on every side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub width: f64,
    pub height: f64,
    pub pad: f64,
}

impl Frame {
    /// The horizontal axis inside the margins.
    pub fn x_axis(self) -> Axis {
        Axis::inside(self.width, self.pad, self.pad)
    }

    /// The vertical axis from the bottom margin up.
    pub fn y_axis(self) -> Axis {
        Axis::upwards(self.height, self.pad)
    }
}

pub struct BarSegment {
    pub x: String,
    pub width: String,
    pub colour: &'static str,
    pub title: String,
}

pub struct Line {
    pub colour: &'static str,
    pub label: &'static str,
    /// Polylines: a suppressed point breaks the line rather than showing its value.
    pub pieces: Vec<String>,
}

pub struct HistoryChart {
    pub lines: Vec<Line>,
    pub x_labels: Vec<(String, String)>,
    pub y_max: u64,
}

/// One stacked bar per purpose: shown counts as their share of the customers on file, and the
/// suppressed ones merged into one grey segment so no single small count can be measured.
pub fn consent_bar(tally: &Tally, cells: &[ShownCount]) -> Vec<BarSegment> {
    let total = tally.total().max(1) as f64;
    let mut segments = Vec::new();
    let mut x = 0.0;
    let mut hidden = 0u64;
    for ((count, shown), (label, colour)) in tally.counts().iter().zip(cells).zip(CONSENT_SERIES) {
        match shown.count {
            Some(c) if c > 0 => {
                let width = c as f64 / total * 100.0;
                segments.push(BarSegment {
                    x: format!("{x:.3}"),
                    width: format!("{width:.3}"),
                    colour,
                    title: format!("{label}: {c}"),
                });
                x += width;
            }
            Some(_) => {}
            None => hidden += count,
        }
    }
    if hidden > 0 {
        segments.push(BarSegment {
            x: format!("{x:.3}"),
            width: format!("{:.3}", hidden as f64 / total * 100.0),
            colour: "#bdbdbd",
            title: "Small counts, not shown".into(),
        });
    }
    segments
}

/// The four consent states of one purpose at each of `instants`, one line per state.
pub fn consent_history(
    frame: Frame,
    instants: &[NaiveDateTime],
    rows: &[Vec<ShownCount>],
) -> HistoryChart {
    let y_max = rows
        .iter()
        .flatten()
        .filter_map(|c| c.count)
        .max()
        .unwrap_or(0)
        .max(1);
    let n = instants.len().max(2) - 1;
    let x_of = |i: usize| frame.x_axis().share(i as f64, n as f64);
    let y_of = |v: u64| frame.y_axis().share(v as f64, y_max as f64);
    let lines = CONSENT_SERIES
        .iter()
        .enumerate()
        .map(|(s, (label, colour))| Line {
            colour,
            label,
            pieces: pieces(
                rows.iter()
                    .enumerate()
                    .map(|(i, row)| row[s].count.map(|v| (x_of(i), y_of(v)))),
            )
            .into_iter()
            .map(|p| p.join(" ") + " ")
            .collect(),
        })
        .collect();
    HistoryChart {
        lines,
        x_labels: time_labels(instants, x_of),
        y_max,
    }
}

/// A sparkline: one small line of a figure over periods, without axes, beside a sentence that
/// says what it shows (first and last value), which is what a screen reader reads.
#[derive(Clone)]
pub struct Sparkline {
    pub width: f64,
    pub height: f64,
    /// Runs of points (`x,y` strings), broken where a figure is withheld.
    pub lines: Vec<Vec<String>>,
    /// The newest point, marked with a dot.
    pub last: Option<(String, String)>,
    /// "Size: 40 in Jan 2025, 41 in Jun 2025".
    pub words: String,
}

/// A sparkline of `values` over `periods` (oldest first); `None` if fewer than two periods
/// have a figure, since a line needs two points.
pub fn sparkline(
    what: &str,
    periods: &[chrono::NaiveDate],
    values: &[Option<f64>],
    show: impl Fn(f64) -> String,
    period_name: impl Fn(chrono::NaiveDate) -> String,
) -> Option<Sparkline> {
    let shown: Vec<(usize, f64)> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .collect();
    if shown.len() < 2 {
        return None;
    }
    let (width, height) = (120.0, 28.0);
    let x = Axis::inside(width, 2.0, 2.0);
    let y = Axis::upwards(height, 3.0);
    let lo = shown.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = shown.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    // A flat series sits in the middle rather than on the floor.
    let level = |v: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
    let steps = (values.len() - 1).max(1) as f64;
    let place = |i: usize, v: f64| (x.share(i as f64, steps), y.at(level(v)));
    let lines = pieces(
        values
            .iter()
            .enumerate()
            .map(|(i, v)| v.map(|v| place(i, v))),
    );
    let &(last_i, last_v) = shown.last().expect("two or more");
    let (lx, ly) = place(last_i, last_v);
    let &(first_i, first_v) = shown.first().expect("two or more");
    let month = |i: usize| period_name(periods[i]);
    Some(Sparkline {
        width,
        height,
        lines,
        last: Some((format!("{lx:.1}"), format!("{ly:.1}"))),
        words: format!(
            "{what}: {} in {}, {} in {}",
            show(first_v),
            month(first_i),
            show(last_v),
            month(last_i)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_breaks_at_a_withheld_figure_and_needs_two_points() {
        let d = |m| chrono::NaiveDate::from_ymd_opt(2025, m, 1).unwrap();
        let periods = [d(1), d(2), d(3), d(4)];
        let name = |p: chrono::NaiveDate| p.format("%b").to_string();
        let s = sparkline(
            "Members",
            &periods,
            &[Some(10.0), None, Some(20.0), Some(30.0)],
            |v| format!("{v}"),
            name,
        )
        .unwrap();
        assert_eq!(s.lines.len(), 2, "one point, a gap, then two");
        assert_eq!(s.words, "Members: 10 in Jan, 30 in Apr");
        // The highest value at the top margin, the lowest at the bottom one.
        assert_eq!(s.lines[1][1], "118.0,3.0");
        assert_eq!(s.lines[0][0], "2.0,25.0");
        // A flat series sits in the middle.
        let flat = sparkline(
            "Members",
            &periods[..2],
            &[Some(5.0), Some(5.0)],
            |v| format!("{v}"),
            name,
        )
        .unwrap();
        assert_eq!(flat.lines[0], ["2.0,14.0", "118.0,14.0"]);
        assert!(
            sparkline(
                "Members",
                &periods,
                &[None, Some(1.0), None, None],
                |v| format!("{v}"),
                name
            )
            .is_none()
        );
    }

    #[test]
    fn an_axis_maps_fractions_and_shares_alike() {
        let a = Axis::inside(420.0, 8.0, 8.0);
        assert_eq!(a.at(0.0), 8.0);
        assert_eq!(a.at(1.0), 412.0);
        assert_eq!(a.share(1.0, 2.0), 210.0);
        let up = Axis::upwards(180.0, 36.0);
        assert_eq!(up.share(0.0, 5.0), 144.0);
        assert_eq!(up.share(5.0, 5.0), 36.0);
    }

    #[test]
    fn a_missing_value_breaks_the_line() {
        let p = pieces([
            Some((1.0, 2.0)),
            Some((3.0, 4.0)),
            None,
            Some((5.0, 6.0)),
            None,
        ]);
        assert_eq!(p, vec![vec!["1.0,2.0", "3.0,4.0"], vec!["5.0,6.0"]]);
        assert!(pieces([None, None]).is_empty());
    }

    #[test]
    fn time_labels_always_name_the_newest_instant() {
        let t = |d| {
            chrono::NaiveDate::from_ymd_opt(2026, 1, d)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
        };
        let instants: Vec<_> = (1..=5).map(t).collect();
        let labels = time_labels(&instants, |i| i as f64);
        assert_eq!(
            labels,
            [("1.0", "2026-01-02"), ("4.0", "2026-01-05")]
                .map(|(x, d)| (x.to_owned(), d.to_owned()))
        );
    }

    #[test]
    fn a_kpi_range_starts_at_zero_when_values_are_far_above_it() {
        assert_eq!(
            kpi_range(&[Some(10.0), Some(30.0)], None, None),
            (0.0, 30.0)
        );
        assert_eq!(
            kpi_range(&[Some(20.0), Some(30.0)], None, None),
            (20.0, 30.0)
        );
        assert_eq!(kpi_range(&[None], None, None), (0.0, 1.0));
        assert_eq!(kpi_range(&[Some(2.0)], Some(2.0), None), (2.0, 3.0));
    }
}
