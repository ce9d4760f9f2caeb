//! The segment map: a run's stored 2-D projection drawn as SVG, points of suppressed segments
//! left out.

use std::sync::{Arc, LazyLock};

use actix_web::{HttpResponse, web};
use askama::Template;

use super::{AppError, State, run_and_view};
use crate::app::kept::Kept;
use crate::app::runs::{RunView, report};
use crate::auth::CurrentUser;
use crate::db::Db;
use crate::db::segmentation::RunRow;
use crate::web::format;

/// Colours of the segments on the map, in order (colour-blind-safe, Okabe–Ito).
pub(super) const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
];

pub struct MapPoint {
    x: f64,
    y: f64,
    colour: &'static str,
}

pub struct MapCentre {
    x: f64,
    y: f64,
    colour: &'static str,
    label: String,
}

#[derive(Template)]
#[template(path = "segments/map.svg", escape = "html")]
pub struct MapSvg {
    width: f64,
    height: f64,
    points: Vec<MapPoint>,
    centres: Vec<MapCentre>,
    x_label: String,
    y_label: String,
    /// What each axis means, in words, written above the plot.
    x_words: String,
    y_words: String,
}

const MAP_W: f64 = 640.0;
const MAP_H: f64 = 420.0;
const MAP_PAD: f64 = 48.0;

/// Lays out the stored map: scales PCA coordinates into the drawing and colours points by
/// segment. `None` when the run has no map (e.g. a single feature).
/// A principal axis's loadings in words: `+recency_days -monetary` → `longer since the last
/// purchase, less spent`.
fn axis_words(label: &str) -> String {
    label
        .split_whitespace()
        .map(|t| match t.split_at_checked(1) {
            Some(("+", name)) => direction(name, true),
            Some(("-" | "−", name)) => direction(name, false),
            _ => format::label_lower(t),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which way a feature grows along an axis, as a marketer would say it: the behavioural
/// features by what they count ("more orders", not "more number of orders"), any other
/// feature as "higher"/"lower" its label ("higher price sensitivity").
fn direction(feature: &str, up: bool) -> String {
    let (more, less) = match feature {
        "frequency" => ("more orders", "fewer orders"),
        "monetary" => ("more spent", "less spent"),
        "recency" | "recency_days" => ("longer since the last purchase", "a more recent purchase"),
        "tenure_days" => ("longer a customer", "newer customers"),
        _ => {
            let name = format::label_lower(feature);
            return format!("{} {name}", if up { "higher" } else { "lower" });
        }
    };
    (if up { more } else { less }).to_string()
}

pub(super) fn map_svg(view: &RunView, run: &RunRow) -> Option<MapSvg> {
    let summary = report::summary_of(run)?;
    let map = summary.map.as_ref()?;
    let xs = map.points.iter().chain(&map.centres).map(|p| p[0]);
    let ys = map.points.iter().chain(&map.centres).map(|p| p[1]);
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (y0, y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let sx = |v: f64| MAP_PAD + (v - x0) / (x1 - x0).max(1e-9) * (MAP_W - 2.0 * MAP_PAD);
    let sy = |v: f64| MAP_H - MAP_PAD - (v - y0) / (y1 - y0).max(1e-9) * (MAP_H - 2.0 * MAP_PAD);
    let colour = |s: usize| PALETTE[s % PALETTE.len()];
    // Points of suppressed (small) segments are not drawn: a handful of dots is a count.
    let hidden: Vec<bool> = view.segments.iter().map(|s| s.suppressed).collect();
    let axis = |i: usize| {
        map.axes
            .get(i)
            .map(|a| {
                format!(
                    "Axis {} ({:.0}% of the spread)",
                    i + 1,
                    a.explained_variance_ratio * 100.0,
                )
            })
            .unwrap_or_default()
    };
    Some(MapSvg {
        width: MAP_W,
        height: MAP_H,
        points: map
            .points
            .iter()
            .zip(&map.labels)
            .filter(|(_, l)| !hidden.get(**l).copied().unwrap_or(true))
            .map(|(p, &l)| MapPoint {
                x: sx(p[0]),
                y: sy(p[1]),
                colour: colour(l),
            })
            .collect(),
        centres: map
            .centres
            .iter()
            .enumerate()
            .filter(|(i, _)| !hidden.get(*i).copied().unwrap_or(true))
            .map(|(i, p)| MapCentre {
                x: sx(p[0]),
                y: sy(p[1]),
                colour: colour(i),
                label: view
                    .segments
                    .get(i)
                    .map(|s| s.segment.to_string())
                    .unwrap_or_default(),
            })
            .collect(),
        x_label: axis(0),
        y_label: axis(1),
        x_words: map
            .axes
            .first()
            .map(|a| format!("→ Axis 1: {}", axis_words(&a.label)))
            .unwrap_or_default(),
        y_words: map
            .axes
            .get(1)
            .map(|a| format!("↑ Axis 2: {}", axis_words(&a.label)))
            .unwrap_or_default(),
    })
}

/// The run's map drawn as SVG, `None` when it has none.
///
/// The dashboard and the run page draw it on every view, and formatting a thousand points was
/// a seventh of a `/segments` view's CPU; the drawing depends only on the run's stored map and
/// on which segments are shown, under which labels, so each process keeps it until those
/// change (a withdrawal that makes a segment too small to show redraws it).
pub(super) fn drawn_map(db: &Db, view: &RunView, run: &RunRow) -> Result<Option<String>, AppError> {
    type Slot = (String, i64);
    /// Each segment: withheld or not, and its label.
    type Versions = Vec<(bool, String)>;
    static DRAWN: LazyLock<Kept<Slot, Versions, Option<Arc<String>>>> =
        LazyLock::new(Kept::default);
    let shown: Versions = view
        .segments
        .iter()
        .map(|s| (s.suppressed, s.segment.to_string()))
        .collect();
    let drawn = DRAWN.get_or_compute((db.url().to_string(), run.id), shown, None, || {
        let svg = map_svg(view, run)
            .map(|m| m.render())
            .transpose()
            .map_err(AppError::internal)?;
        Ok::<_, AppError>((svg.map(Arc::new), None))
    })?;
    Ok(drawn.map(|svg| svg.as_str().to_owned()))
}

/// The segment map of a run as SVG.
pub async fn map_page(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let (view, run) = run_and_view(&state, &user, path.into_inner()).await?;
    let body = drawn_map(&state.db, &view, &run)?.ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml; charset=utf-8")
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::axis_words;

    #[test]
    fn axes_read_as_a_marketer_would_say_them() {
        assert_eq!(
            axis_words("+frequency +monetary"),
            "more orders, more spent"
        );
        assert_eq!(
            axis_words("+recency_days -monetary"),
            "longer since the last purchase, less spent"
        );
        assert_eq!(
            axis_words("-frequency +price_sensitivity"),
            "fewer orders, higher price sensitivity"
        );
    }
}
