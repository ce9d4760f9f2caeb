//! A run as users see it (CLI `--json`, the API, the pages): its settings, population counts,
//! segments with profiles, valuation, viability and strategy, and its quality — with every
//! count below the policy's minimum cell size suppressed, and the figures of a suppressed
//! segment withheld, so no small group can be singled out.

use std::sync::{Arc, LazyLock};

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::app::parsed::Parsed;
use crate::consent::coverage::{ShownCount, shown_row};
use crate::db::segmentation::{RunRow, SegmentRow, StrategyRow};
use crate::segmentation::pipeline::{Excluded, RunSummary};
use crate::segmentation::profile::SegmentProfile;
use crate::segmentation::status::RunStatus;
use crate::segmentation::valuation::Valuation;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StrategyView {
    pub channel: String,
    pub offer: String,
    pub service_level: String,
    pub favourable: bool,
    pub recorded_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: NaiveDateTime,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SegmentView {
    pub segment: i32,
    pub name: String,
    pub proposed_name: String,
    /// Members, or null when below the minimum cell size.
    pub size: Option<u64>,
    /// The size as displayed (`<10` when suppressed).
    pub size_display: String,
    pub suppressed: bool,
    /// Share of the run's members.
    pub share: Option<f64>,
    #[schema(value_type = Option<Object>)]
    pub profile: Option<SegmentProfile>,
    pub valuation: Option<Valuation>,
    pub strategy: Option<StrategyView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub run_id: i64,
    #[schema(value_type = String)]
    pub status: RunStatus,
    pub algorithm: String,
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    pub purpose: String,
    pub policy_version: String,
    pub stage: String,
    pub progress: f64,
    pub error: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub population_at: Option<NaiveDateTime>,
    pub included: Option<u64>,
    pub included_display: Option<String>,
    /// Customers left out, by reason: no_consent, withdrawn, expired, missing_values.
    #[schema(value_type = Object)]
    pub excluded: serde_json::Map<String, serde_json::Value>,
    pub segments: Vec<SegmentView>,
    pub k: Option<usize>,
    #[schema(value_type = Option<Object>)]
    pub quality: Option<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    pub k_candidates: Vec<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub timings_ms: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub missing: Option<serde_json::Value>,
    pub previous_run_id: Option<i64>,
    /// Adjusted Rand index against the run published when this one ran, on shared customers.
    pub stability_ari: Option<f64>,
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: NaiveDateTime,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<NaiveDateTime>,
    pub published_by: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub published_at: Option<NaiveDateTime>,
}

fn shown_json(c: &ShownCount) -> serde_json::Value {
    match c.count {
        Some(n) => n.into(),
        None => serde_json::Value::String(c.display.clone()),
    }
}

/// The stored summary of a finished run (parsed once per process: see [`crate::app::parsed`]).
pub fn summary_of(run: &RunRow) -> Option<Arc<RunSummary>> {
    static SUMMARIES: LazyLock<Parsed<RunSummary>> = LazyLock::new(Parsed::default);
    SUMMARIES.of(run.summary.as_deref()?).ok()
}

/// Builds the view; `sizes` overrides the stored segment sizes (e.g. live counts after
/// withdrawals), same order as `segments`.
pub fn view(
    run: &RunRow,
    segments: &[SegmentRow],
    strategies: &[StrategyRow],
    min_cell_size: u64,
    sizes: Option<&[u64]>,
) -> RunView {
    let summary = summary_of(run);
    let stored: Vec<u64> = segments.iter().map(|s| s.size.max(0) as u64).collect();
    let sizes: Vec<u64> = sizes.map_or(stored, <[u64]>::to_vec);
    let total: u64 = sizes.iter().sum();
    let shown = shown_row(&sizes, min_cell_size);
    let segment_views = segments
        .iter()
        .zip(&sizes)
        .zip(&shown)
        .map(|((s, &size), shown)| {
            let suppressed = shown.count.is_none();
            SegmentView {
                segment: s.segment,
                name: s.name.clone(),
                proposed_name: s.proposed_name.clone(),
                size: shown.count,
                size_display: shown.display.clone(),
                suppressed,
                share: (!suppressed && total > 0).then(|| size as f64 / total as f64),
                profile: if suppressed {
                    None
                } else {
                    serde_json::from_str(&s.profile).ok()
                },
                valuation: if suppressed {
                    None
                } else {
                    serde_json::from_str(&s.valuation).ok()
                },
                strategy: strategies
                    .iter()
                    .find(|st| st.segment == s.segment)
                    .map(|st| StrategyView {
                        channel: st.channel.clone(),
                        offer: st.offer.clone(),
                        service_level: st.service_level.clone(),
                        favourable: st.favourable,
                        recorded_by: st.recorded_by.clone(),
                        recorded_at: st.recorded_at,
                    }),
            }
        })
        .collect();
    let mut excluded = serde_json::Map::new();
    if let Some(e) = run
        .excluded
        .as_deref()
        .and_then(|e| serde_json::from_str::<Excluded>(e).ok())
    {
        let pairs = e.as_pairs();
        let counts: Vec<u64> = pairs.iter().map(|(_, n)| *n).collect();
        for ((name, _), c) in pairs.iter().zip(shown_row(&counts, min_cell_size)) {
            excluded.insert((*name).to_owned(), shown_json(&c));
        }
    }
    let included = run
        .included
        .map(|n| shown_row(&[n.max(0) as u64], min_cell_size).remove(0));
    RunView {
        run_id: run.id,
        status: run.status,
        algorithm: run.algorithm.clone(),
        settings: serde_json::from_str(&run.settings).unwrap_or(serde_json::Value::Null),
        purpose: run.purpose.clone(),
        policy_version: run.policy_version.clone(),
        stage: run.stage.clone(),
        progress: run.progress,
        error: run.error.clone(),
        population_at: run.population_at,
        included: included.as_ref().and_then(|c| c.count),
        included_display: included.map(|c| c.display),
        excluded,
        segments: segment_views,
        k: summary.as_ref().map(|s| s.k),
        quality: summary
            .as_ref()
            .map(|s| serde_json::to_value(&s.quality).expect("serialises")),
        k_candidates: summary
            .as_ref()
            .map(|s| {
                s.k_candidates
                    .iter()
                    .map(|c| serde_json::to_value(c).expect("serialises"))
                    .collect()
            })
            .unwrap_or_default(),
        timings_ms: summary
            .as_ref()
            .map(|s| serde_json::to_value(&s.timings_ms).expect("serialises")),
        missing: summary
            .as_ref()
            .map(|s| serde_json::to_value(&s.missing).expect("serialises")),
        previous_run_id: run.previous_run_id,
        stability_ari: run.stability_ari,
        created_by: run.created_by.clone(),
        created_at: run.created_at,
        finished_at: run.finished_at,
        published_by: run.published_by.clone(),
        published_at: run.published_at,
    }
}
