//! Analysts' pages: the run history with the form to start a run, one run (its progress,
//! then its results), and two runs compared.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::api::{CompareQuery, RunSummaryItem, run_list};
use super::dashboard::{SegmentCard, cards};
use super::map::drawn_map;
use super::{AppError, State, compare, published_id, run_and_view, start_run};
use crate::app::run_form::FeatureChoice;
use crate::app::runs::{self as app, Comparison, RunView};
use crate::auth::CurrentUser;
use crate::policy::Permission;
use crate::segmentation::settings::RunRequest;
use crate::segmentation::status::RunStatus;
use crate::web::error::blocking;
use crate::web::layout::{Layout, render, see_other};

#[derive(Template)]
#[template(path = "segments/runs.html")]
struct RunsPage {
    layout: Layout,
    runs: Vec<RunSummaryItem>,
    features: Vec<FeatureChoice>,
    error: Option<String>,
    form: RunForm,
}

/// The algorithms of the form, with the words its picker shows.
const ALGORITHMS: [(&str, &str); 5] = [
    ("kmeans", "k-means"),
    ("gmm", "Gaussian mixture"),
    ("dbscan", "DBSCAN (density)"),
    ("rfm", "RFM scores"),
    ("rules", "Rules you write"),
];

#[derive(Deserialize, Default, Clone)]
pub struct RunForm {
    #[serde(default)]
    algorithm: String,
    #[serde(default)]
    features: String,
    #[serde(default)]
    log_features: String,
    #[serde(default)]
    k: String,
    #[serde(default)]
    k_min: String,
    #[serde(default)]
    k_max: String,
    #[serde(default)]
    seed: String,
    #[serde(default)]
    missing: String,
    #[serde(default)]
    eps: String,
    #[serde(default)]
    min_points: String,
    #[serde(default)]
    rules: String,
}

fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn optional<T: std::str::FromStr>(field: &'static str, raw: &str) -> Result<Option<T>, AppError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse()
        .map(Some)
        .map_err(|_| AppError::invalid(field, format!("{field}: `{raw}` is not a valid number")))
}

impl RunForm {
    /// The form as posted: the feature and log-transform pick-lists send one value per ticked
    /// box (comma-separated values are accepted too).
    fn from_body(body: &[u8]) -> RunForm {
        let mut form = RunForm::default();
        for (key, value) in url::form_urlencoded::parse(body) {
            let value = value.into_owned();
            let append = |list: &mut String| {
                if !list.is_empty() {
                    list.push(',');
                }
                list.push_str(&value);
            };
            match key.as_ref() {
                "algorithm" => form.algorithm = value,
                "features" => append(&mut form.features),
                "log_features" => append(&mut form.log_features),
                "k" => form.k = value,
                "k_min" => form.k_min = value,
                "k_max" => form.k_max = value,
                "seed" => form.seed = value,
                "missing" => form.missing = value,
                "eps" => form.eps = value,
                "min_points" => form.min_points = value,
                "rules" => form.rules = value,
                _ => {}
            }
        }
        form
    }

    /// Whether the feature's box is ticked (none is, on a fresh form).
    fn chosen(&self, name: &str) -> bool {
        split_list(&self.features).iter().any(|f| f == name)
    }

    /// Whether the feature's log-transform box is ticked.
    fn logged(&self, name: &str) -> bool {
        split_list(&self.log_features).iter().any(|f| f == name)
    }

    fn to_request(&self) -> Result<RunRequest, AppError> {
        Ok(RunRequest {
            algorithm: self.algorithm.clone(),
            features: split_list(&self.features),
            k: optional("k", &self.k)?,
            k_min: optional("k_min", &self.k_min)?,
            k_max: optional("k_max", &self.k_max)?,
            seed: optional("seed", &self.seed)?,
            log_features: split_list(&self.log_features),
            missing: match self.missing.trim() {
                "" => None,
                m => Some(serde_json::from_value(serde_json::json!(m)).map_err(|_| {
                    AppError::invalid("missing", format!("`{m}` is not a missing-value rule"))
                })?),
            },
            eps: optional("eps", &self.eps)?,
            min_points: optional("min_points", &self.min_points)?,
            rules: match self.rules.trim() {
                "" => None,
                r => Some(serde_json::from_str(r).map_err(|e| {
                    AppError::invalid("rules", format!("rules: not valid JSON: {e}"))
                })?),
            },
            as_of: None,
        })
    }
}

async fn runs_page_with(
    state: &State,
    user: &CurrentUser,
    form: RunForm,
    error: Option<String>,
) -> Result<HttpResponse, AppError> {
    let runs = run_list(state, user).await?;
    let (db, policy) = (state.db.clone(), state.policy.clone());
    let features = blocking(move || crate::app::run_form::feature_choices(&db, &policy)).await?;
    let page = RunsPage {
        layout: Layout::new(state, Some(user), "Segmentation runs", "/segmentations"),
        runs,
        features,
        error,
        form,
    };
    Ok(if page.error.is_some() {
        crate::web::layout::render_with_status(actix_web::http::StatusCode::BAD_REQUEST, &page)
    } else {
        render(&page)
    })
}

/// Analysts: run history, a form to start a run, and a form to compare two runs.
pub async fn runs_page(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let form = RunForm {
        algorithm: "kmeans".into(),
        k: "6".into(),
        seed: "1".into(),
        ..RunForm::default()
    };
    runs_page_with(&state, &user, form, None).await
}

pub async fn runs_submit(
    state: State,
    user: CurrentUser,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let form = RunForm::from_body(&body);
    let started = match form.to_request() {
        Ok(request) => start_run(&state, &user, request).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(id) => Ok(see_other(&format!("/segmentations/{id}"))),
        Err(e @ AppError::InvalidInput { .. }) => {
            runs_page_with(&state, &user, form, Some(e.to_string())).await
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "segments/run.html")]
struct RunPage {
    layout: Layout,
    run: RunView,
    /// (reason, count as shown).
    excluded: Vec<(String, String)>,
    /// (score, value).
    quality: Vec<(String, String)>,
    cards: Vec<SegmentCard>,
    map: Option<String>,
    in_progress: bool,
    /// A finished run whose automatic fairness audit has not been stored yet.
    awaiting_audit: bool,
    progress_percent: u32,
    published_id: Option<i64>,
    /// The latest fairness audit of the run: (id, verdict, reason), for roles that read audits.
    audit: Option<(i64, String, String)>,
    /// Published on a compliance override: shown as "published (override)".
    published_on_override: bool,
}

/// One run: progress while it runs (the page refreshes itself), then its results.
pub async fn run_page(
    state: State,
    user: CurrentUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let (view, row) = run_and_view(&state, &user, id).await?;
    let map = drawn_map(&state.db, &view, &row)?;
    let in_progress = view.status.in_progress();
    let excluded = excluded_rows(&view.excluded);
    let quality = view
        .quality
        .as_ref()
        .and_then(|q| q.as_object())
        .map(|q| {
            [
                "silhouette",
                "calinski_harabasz",
                "davies_bouldin",
                "inertia",
                "iterations",
            ]
            .iter()
            .filter_map(|key| {
                let v = q.get(*key)?;
                let shown = match v.as_f64() {
                    Some(x) if v.is_u64() => format!("{x:.0}"),
                    Some(x) => format!("{x:.4}"),
                    None => return None,
                };
                Some((key.replace('_', "-"), shown))
            })
            .collect()
        })
        .unwrap_or_default();
    let db = state.db.clone();
    let (audit, overridden) = blocking(move || app::audit_of(&db, id)).await?;
    let audit = audit
        .filter(|_| user.can(Permission::AuditsRead))
        .map(|a| (a.id, a.verdict, a.reason));
    Ok(render(&RunPage {
        published_on_override: view.status == RunStatus::Published && overridden,
        awaiting_audit: view.status == RunStatus::Draft && audit.is_none(),
        audit,
        layout: Layout::new(&state, Some(&user), &format!("Run {id}"), "/segmentations"),
        excluded,
        quality,
        cards: cards(&view, &state.policy),
        progress_percent: (view.progress * 100.0).round().clamp(0.0, 100.0) as u32,
        in_progress,
        map,
        published_id: published_id(&state).await?,
        run: view,
    }))
}

#[derive(Template)]
#[template(path = "segments/compare.html")]
struct ComparePage {
    layout: Layout,
    comparison: Comparison,
}

pub async fn compare_page(
    state: State,
    user: CurrentUser,
    query: web::Query<CompareQuery>,
) -> Result<HttpResponse, AppError> {
    Ok(render(&ComparePage {
        layout: Layout::new(&state, Some(&user), "Compare runs", "/segmentations"),
        comparison: compare(&state, query.a, query.b).await?,
    }))
}

/// The run's left-out customers in the consent page's order (withdrawn, expired, never asked:
/// the same three figures the consent page shows for the purpose at the run's start), then
/// those left out for missing values, named by the shared label table; counts with thousands
/// separators, or as suppressed ("<10"). The stored keys are those of
/// [`crate::segmentation::pipeline::Excluded`].
fn excluded_rows(excluded: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    const AS_READ: [&str; 4] = ["withdrawn", "expired", "no_consent", "missing_values"];
    AS_READ
        .iter()
        .filter_map(|key| {
            let shown = match excluded.get(*key)? {
                serde_json::Value::Number(n) => n
                    .as_u64()
                    .map(crate::format::int)
                    .unwrap_or_else(|| n.to_string()),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some((crate::format::label_lower(key), shown))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_lists_and_numbers_parse_with_field_errors() {
        assert_eq!(split_list(" a, b,,c "), ["a", "b", "c"]);
        assert_eq!(optional::<usize>("k", " 6 ").unwrap(), Some(6));
        assert_eq!(optional::<usize>("k", "").unwrap(), None);
        let err = optional::<usize>("k", "six").unwrap_err();
        assert_eq!(err.field(), Some("k"));
    }

    #[test]
    fn left_out_customers_read_as_on_the_consent_page() {
        let stored = serde_json::json!({
            "missing_values": 19, "no_consent": 1_130_000, "withdrawn": "<10", "expired": 271
        });
        let rows = excluded_rows(stored.as_object().unwrap());
        assert_eq!(
            rows,
            [
                ("withdrawn", "<10"),
                ("expired", "271"),
                ("never asked", "1,130,000"),
                ("missing values", "19"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }
}
