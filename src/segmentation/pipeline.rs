//! A segmentation run from request to stored segments: validate the request, freeze the
//! population under consent, load and preprocess the features, cluster, profile, map, value,
//! compare with the published run, and store everything in one transaction.
//!
//! This is the one place that decides who a run may see: [`execute`] takes exactly the
//! customers whose consent for the policy's segmentation purpose is active at the instant the
//! run starts (`db::consent::active_customers`), and nobody else's data is read.

use std::time::Instant;

use chrono::NaiveDateTime;
use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
use serde::{Deserialize, Serialize};

use super::SegmentationError;
use super::attributes::{AttributeValue, extract};
use super::kmeans::{self, KMeansParams};
use super::mixture::{self, DbscanParams, GmmParams};
use super::pca::{SegmentMap, segment_map};
use super::preprocess::{
    ColumnValues, FeatureColumn, FittedTransform, MissingReport, fit_transform,
};
use super::profile::{Profiles, profile};
use super::quality::{self, KScore, adjusted_rand_index, choose_k};
use super::rfm::{RfmSegment, rfm};
use super::settings::{
    FeatureSource, KChoice, RunAlgorithm, RunRequest, RunSettings, SettingsError, validate,
};
use super::valuation::{MemberActivity, Valuation, ValuationParams, value_segments};
use crate::consent::coverage::Tally;
use crate::customers::features::{BehaviouralFeatures, WindowActivity};
use crate::db::segmentation::{self as store, Completed, RunRow, SegmentRow};
use crate::db::{self, Db, DbConnection, DbError};
use crate::policy::Policy;
use crate::trail::{Actor, NewEntry};

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Segmentation(#[from] SegmentationError),
    #[error("run {0} does not exist")]
    NotFound(i64),
    #[error("run {id} is {status}: {message}")]
    WrongState {
        id: i64,
        status: String,
        message: &'static str,
    },
    #[error("the population is empty: no customer has active consent for `{purpose}`")]
    NoConsentedCustomers { purpose: String },
    #[error("stored run {id} cannot be read: {message}")]
    Corrupt { id: i64, message: String },
    #[error("stored customer data cannot be read: {0}")]
    CorruptCustomer(String),
    /// The algorithm left fewer non-empty segments than were asked for: the run fails
    /// rather than pass off a smaller segmentation as the one requested.
    #[error(
        "asked for {asked} segments, but the data gave only {got} non-empty one(s): the customers are too few or too alike for k = {asked}; ask for fewer segments or other features"
    )]
    TooFewSegments { asked: usize, got: usize },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Wall-clock time of each stage, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Timings {
    pub load: u64,
    pub preprocess: u64,
    pub cluster: u64,
    pub profile: u64,
    pub persist: u64,
}

/// Quality scores of a clustering (absent where undefined, e.g. a single segment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Quality {
    pub silhouette: Option<f64>,
    pub calinski_harabasz: Option<f64>,
    pub davies_bouldin: Option<f64>,
    pub inertia: Option<f64>,
    pub iterations: Option<usize>,
}

/// A sample of a numeric feature's values at run time: the reference drift is measured
/// against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureReference {
    pub feature: String,
    pub values: Vec<f64>,
}

/// What a run stores about itself beyond its segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub k: usize,
    /// For a range of k: every candidate's scores; the chosen k has the best silhouette.
    pub k_candidates: Vec<KScore>,
    pub quality: Quality,
    pub timings_ms: Timings,
    pub missing: MissingReport,
    pub transform: Option<FittedTransform>,
    pub map: Option<SegmentMap>,
    pub reference: Vec<FeatureReference>,
    /// The as-of date of the behavioural features and the valuation.
    pub as_of: chrono::NaiveDate,
}

/// Counts of the customers a run left out, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    pub no_consent: u64,
    pub withdrawn: u64,
    pub expired: u64,
    pub missing_values: u64,
}

impl Excluded {
    pub fn as_pairs(&self) -> [(&'static str, u64); 4] {
        [
            ("no_consent", self.no_consent),
            ("withdrawn", self.withdrawn),
            ("expired", self.expired),
            ("missing_values", self.missing_values),
        ]
    }
}

/// The result a finished run reports.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run_id: i64,
    pub included: u64,
    pub excluded: Excluded,
    pub segments: Vec<SegmentRow>,
    pub summary: RunSummary,
    pub stability_ari: Option<f64>,
    /// The feature values the run clustered, for the audit that follows it.
    pub features: RunFeatures,
}

/// The values of a run's features for its members, as the run read them: member order
/// (ascending customer id), one column per feature in the run's order. The fairness audit that
/// follows a run in the same process measures proxies on these instead of reading and parsing
/// every member's attributes again; it checks `ids` against the stored memberships first.
#[derive(Debug, Clone, Default)]
pub struct RunFeatures {
    /// The members' internal customer ids, ascending.
    pub ids: Vec<i64>,
    /// Per feature (run order): its name and one value per member.
    pub columns: Vec<(String, ColumnValues)>,
}

const REFERENCE_SAMPLE: usize = 5_000;
const TOP_FEATURES: usize = 3;

/// Validates a request and records a queued run; returns its id.
pub fn create(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    request: &RunRequest,
) -> Result<i64, RunError> {
    let columns = db.read(store::known_columns)?;
    let settings = validate(request, policy, &columns)?;
    let settings_json = serde_json::to_string(&settings).expect("settings serialise");
    let now = db::now();
    Ok(db.write::<_, DbError>(|conn| {
        let id = store::next_run_id(conn)?;
        store::insert_run(
            conn,
            &RunRow {
                id,
                algorithm: settings.algorithm.as_str().to_owned(),
                settings: settings_json.clone(),
                purpose: policy.segmentation.purpose.clone(),
                policy_version: policy.version.clone(),
                status: store::QUEUED.into(),
                stage: "queued".into(),
                progress: 0.0,
                error: None,
                population_at: None,
                included: None,
                excluded: None,
                summary: None,
                previous_run_id: None,
                stability_ari: None,
                created_by: actor.as_str().to_owned(),
                created_at: now,
                finished_at: None,
                published_by: None,
                published_at: None,
            },
        )?;
        db::trail::append(
            conn,
            NewEntry::new(
                actor,
                "segmentation.requested",
                format!("run:{id}"),
                serde_json::json!({ "settings": settings }),
            ),
            &policy.version,
        )?;
        Ok(id)
    })?)
}

/// Marks runs a stopped server left queued or running as failed; returns their ids.
pub fn fail_interrupted(db: &Db, policy: &Policy) -> Result<Vec<i64>, RunError> {
    let now = db::now();
    Ok(db.write::<_, DbError>(|conn| {
        let ids = store::interrupted(conn)?;
        for &id in &ids {
            store::fail(
                conn,
                id,
                "interrupted: the server stopped before the run finished; nothing of it was kept",
                now,
            )?;
            db::trail::append(
                conn,
                NewEntry::new(
                    &Actor::system(),
                    "segmentation.failed",
                    format!("run:{id}"),
                    serde_json::json!({ "reason": "interrupted" }),
                ),
                &policy.version,
            )?;
        }
        Ok(ids)
    })?)
}

/// Executes a queued run to completion (status draft) or failure (status failed, with the
/// error stored and in the trail). Nothing of a failed run is kept but the failure.
pub fn execute(db: &Db, policy: &Policy, id: i64) -> Result<RunOutcome, RunError> {
    match execute_inner(db, policy, id) {
        Ok(outcome) => Ok(outcome),
        Err(error) => {
            fail_run(db, policy, id, &error.to_string());
            Err(error)
        }
    }
}

/// Marks a run failed with `message`, stored and in the trail. The run may already be gone
/// or the database down; the caller's error matters more, so a failure here is only logged.
pub fn fail_run(db: &Db, policy: &Policy, id: i64, message: &str) {
    let now = db::now();
    let result = db.write(|conn| {
        store::fail(conn, id, message, now)?;
        db::trail::append(
            conn,
            NewEntry::new(
                &Actor::system(),
                "segmentation.failed",
                format!("run:{id}"),
                serde_json::json!({ "reason": message }),
            ),
            &policy.version,
        )
    });
    if let Err(error) = result {
        tracing::error!(run_id = id, %error, "cannot mark the run failed");
    }
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

fn progress(db: &Db, id: i64, stage: &str, fraction: f64) -> Result<(), RunError> {
    db.write(|conn| store::set_progress(conn, id, stage, fraction))?;
    Ok(())
}

/// The frozen population and the data of its members.
struct Population {
    at: NaiveDateTime,
    /// Included customers' internal ids, ascending.
    ids: Vec<i64>,
    tally: Tally,
    columns: Vec<FeatureColumn>,
    /// Per included customer (same order as `ids`).
    activity: Vec<(BehaviouralFeatures, WindowActivity)>,
    reachable: Vec<bool>,
}

fn load_population(
    conn: &mut DbConnection,
    policy: &Policy,
    settings: &RunSettings,
    at: NaiveDateTime,
) -> Result<Population, RunError> {
    let seg = &policy.segmentation;
    let purpose = policy
        .purposes
        .get(&seg.purpose)
        .expect("policy validation checked the segmentation purpose");
    let (ids, tally) = db::consent::population_at(conn, &seg.purpose, purpose, at)?;
    if ids.is_empty() {
        return Err(RunError::NoConsentedCustomers {
            purpose: seg.purpose.clone(),
        });
    }
    let channel_purpose = &seg.channels[&seg.default_channel];
    let reachable_ids = db::consent::active_customers(
        conn,
        channel_purpose,
        &policy.purposes[channel_purpose],
        at,
    )?;
    let reachable = flags(&ids, &reachable_ids);

    let max_id = *ids.last().expect("non-empty");
    let mut position = vec![u32::MAX; (max_id + 1) as usize];
    for (i, &id) in ids.iter().enumerate() {
        position[id as usize] = i as u32;
    }
    let n = ids.len();
    let as_of = settings.as_of.unwrap_or(at.date());

    let mut activity = vec![(BehaviouralFeatures::none(), WindowActivity::default()); n];
    for (id, features, window) in
        db::features::activity_for_all(conn, as_of, seg.valuation_window_days)?
    {
        if let Some(&p) = position.get(id as usize)
            && p != u32::MAX
        {
            activity[p as usize] = (features, window);
        }
    }

    let attribute_features: Vec<&str> = settings
        .features
        .iter()
        .filter(|f| f.source == FeatureSource::Attribute)
        .map(|f| f.spec.name.as_str())
        .collect();
    // One column per attribute feature, filled in population order.
    let mut attribute_columns: Vec<ColumnValues> = settings
        .features
        .iter()
        .filter(|f| f.source == FeatureSource::Attribute)
        .map(|f| match f.spec.kind {
            super::preprocess::FeatureKind::Categorical => ColumnValues::Categorical(vec![None; n]),
            super::preprocess::FeatureKind::Numeric { .. } => ColumnValues::Numeric(vec![None; n]),
        })
        .collect();
    if !attribute_features.is_empty() {
        // Reading the rows and parsing their JSON take about as long as each other, so they
        // run side by side: this thread reads and hands batches to a parsing thread.
        const BATCH: usize = 8_192;
        let (batches, received) = std::sync::mpsc::sync_channel::<Vec<(u32, i64, String)>>(4);
        let wanted = &attribute_features;
        let (read, parsed) = std::thread::scope(|scope| {
            let parser = scope.spawn(move || -> Result<Vec<ColumnValues>, String> {
                let mut columns = attribute_columns;
                let mut values = vec![AttributeValue::Missing; wanted.len()];
                for batch in received {
                    for (p, id, json) in batch {
                        extract(&json, wanted, &mut values)
                            .map_err(|e| format!("attributes of customer {id}: {e}"))?;
                        for (column, value) in columns.iter_mut().zip(values.iter_mut()) {
                            match column {
                                ColumnValues::Numeric(v) => v[p as usize] = value.number(),
                                ColumnValues::Categorical(v) => {
                                    v[p as usize] = std::mem::take(value).into_label()
                                }
                            }
                        }
                    }
                }
                Ok(columns)
            });
            let mut batch = Vec::with_capacity(BATCH);
            let read = store::for_each_attributes(conn, |id, json| {
                let Some(&p) = position.get(id as usize) else {
                    return;
                };
                if p == u32::MAX {
                    return;
                }
                batch.push((p, id, json.to_owned()));
                if batch.len() == BATCH {
                    // A failed send means the parser stopped on an error, reported below.
                    let _ = batches.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                }
            });
            if !batch.is_empty() {
                let _ = batches.send(batch);
            }
            drop(batches);
            (
                read,
                parser.join().expect("the attribute parser does not panic"),
            )
        });
        read?;
        attribute_columns = parsed.map_err(RunError::CorruptCustomer)?;
    }
    let mut attribute_columns = attribute_columns.into_iter();
    let columns = settings
        .features
        .iter()
        .map(|f| {
            let name = f.spec.name.as_str();
            let values = match f.source {
                FeatureSource::Behavioural => {
                    ColumnValues::Numeric(activity.iter().map(|(b, _)| b.get(name)).collect())
                }
                FeatureSource::Attribute => attribute_columns
                    .next()
                    .expect("one column per attribute feature"),
            };
            FeatureColumn {
                spec: f.spec.clone(),
                values,
            }
        })
        .collect();
    Ok(Population {
        at,
        ids,
        tally,
        columns,
        activity,
        reachable,
    })
}

/// `flags[i]` is whether `ids[i]` is in `subset` (both ascending).
fn flags(ids: &[i64], subset: &[i64]) -> Vec<bool> {
    let mut out = Vec::with_capacity(ids.len());
    let mut j = 0;
    for &id in ids {
        while j < subset.len() && subset[j] < id {
            j += 1;
        }
        out.push(j < subset.len() && subset[j] == id);
    }
    out
}

/// Renumbers labels densely (empty segments dropped), keeping their order; returns the new
/// labels and, per new label, the old one.
fn dense(labels: &[usize], n_segments: usize) -> (Vec<usize>, Vec<usize>) {
    let mut used = vec![false; n_segments];
    for &l in labels {
        used[l] = true;
    }
    let mut map = vec![usize::MAX; n_segments];
    let mut old = Vec::new();
    for (l, &u) in used.iter().enumerate() {
        if u {
            map[l] = old.len();
            old.push(l);
        }
    }
    (labels.iter().map(|&l| map[l]).collect(), old)
}

fn execute_inner(db: &Db, policy: &Policy, id: i64) -> Result<RunOutcome, RunError> {
    let run = db
        .read(|conn| store::run(conn, id))?
        .ok_or(RunError::NotFound(id))?;
    if run.status != store::QUEUED {
        return Err(RunError::WrongState {
            id,
            status: run.status,
            message: "only a queued run can be executed",
        });
    }
    let settings: RunSettings =
        serde_json::from_str(&run.settings).map_err(|e| RunError::Corrupt {
            id,
            message: e.to_string(),
        })?;
    let seg = &policy.segmentation;
    let mut timings = Timings::default();

    // Load: the population is frozen at this instant.
    let started = Instant::now();
    let at = db::now();
    db.write(|conn| store::start(conn, id, at))?;
    let population = load_population(&mut *db.conn()?, policy, &settings, at)?;
    timings.load = ms(started);
    progress(db, id, "preprocess", 0.25)?;

    let stage = Instant::now();
    let pre = fit_transform(&population.columns)?;
    timings.preprocess = ms(stage);
    progress(db, id, "cluster", 0.35)?;

    // Cluster: labels per model row (`pre.rows` indexes the population).
    let stage = Instant::now();
    let x = pre.matrix.view();
    let mut k_candidates = Vec::new();
    let mut quality = Quality {
        silhouette: None,
        calinski_harabasz: None,
        davies_bouldin: None,
        inertia: None,
        iterations: None,
    };
    let (labels, n_segments, fixed_names): (Vec<usize>, usize, Option<Vec<String>>) =
        match settings.algorithm {
            RunAlgorithm::Kmeans => {
                let fit = match settings.k.expect("validated") {
                    KChoice::Fixed(k) => kmeans::fit(&x, &KMeansParams::new(k, settings.seed))?,
                    KChoice::Range { min, max } => {
                        let chosen = choose_k(&x, min..=max, settings.seed, seg.silhouette_sample)?;
                        k_candidates = chosen.scores;
                        chosen.fit
                    }
                };
                quality.inertia = Some(fit.inertia);
                quality.iterations = Some(fit.iterations);
                let k = fit.centres.nrows();
                (fit.labels, k, None)
            }
            RunAlgorithm::Gmm => {
                let KChoice::Fixed(k) = settings.k.expect("validated") else {
                    unreachable!("validation allows a range of k for k-means only")
                };
                let c = mixture::gmm(&x, &GmmParams::new(k, settings.seed))?;
                quality.inertia = Some(c.inertia);
                quality.iterations = Some(c.iterations);
                (c.labels, c.n_segments, None)
            }
            RunAlgorithm::Dbscan => {
                let c = mixture::dbscan(
                    &x,
                    &DbscanParams {
                        eps: settings.eps.expect("validated"),
                        min_points: settings.min_points.expect("validated"),
                    },
                )?;
                let mut names: Vec<String> = (0..c.n_segments)
                    .map(|i| format!("Cluster {}", i + 1))
                    .collect();
                if let Some(noise) = c.noise {
                    names[noise] = "Noise (no dense region)".into();
                }
                (c.labels, c.n_segments, Some(names))
            }
            RunAlgorithm::Rfm => {
                let col = |name: &str| -> Vec<f64> {
                    let i = settings
                        .features
                        .iter()
                        .position(|f| f.spec.name == name)
                        .expect("rfm features");
                    let ColumnValues::Numeric(v) = &population.columns[i].values else {
                        unreachable!("behavioural features are numeric")
                    };
                    pre.rows.iter().map(|&r| v[r].unwrap_or(0.0)).collect()
                };
                let result = rfm(&col("recency_days"), &col("frequency"), &col("monetary"))?;
                let names = RfmSegment::ALL
                    .iter()
                    .map(|s| s.name().to_owned())
                    .collect();
                (result.labels, RfmSegment::ALL.len(), Some(names))
            }
            RunAlgorithm::Rules => {
                let rules = settings.rules.as_ref().expect("validated");
                let assignment = rules.assign(&population.columns)?;
                let labels = pre.rows.iter().map(|&r| assignment.labels[r]).collect();
                let n = assignment.names.len();
                (labels, n, Some(assignment.names))
            }
        };
    let (labels, old_labels) = dense(&labels, n_segments);
    let n_segments = old_labels.len();
    if let Some(KChoice::Fixed(asked)) = settings.k
        && matches!(settings.algorithm, RunAlgorithm::Kmeans | RunAlgorithm::Gmm)
        && n_segments < asked
    {
        return Err(RunError::TooFewSegments {
            asked,
            got: n_segments,
        });
    }
    let fixed_names: Option<Vec<String>> =
        fixed_names.map(|names| old_labels.iter().map(|&l| names[l].clone()).collect());
    timings.cluster = ms(stage);
    progress(db, id, "profile", 0.7)?;

    // Profile, quality, map, valuation, stability.
    let stage = Instant::now();
    if (2..pre.matrix.nrows()).contains(&n_segments) {
        let sample =
            quality::sample_indices(pre.matrix.nrows(), seg.silhouette_sample, settings.seed);
        let xs = pre.matrix.select(ndarray::Axis(0), &sample);
        let ls: Vec<usize> = sample.iter().map(|&i| labels[i]).collect();
        quality.silhouette = quality::silhouette(&xs.view(), &ls).ok();
        quality.calinski_harabasz = quality::calinski_harabasz(&x, &labels).ok();
        quality.davies_bouldin = quality::davies_bouldin(&x, &labels).ok();
    }
    let profiles: Profiles = profile(&population.columns, &pre, &labels, n_segments, TOP_FEATURES)?;
    let (centres, _) = super::segment_centres(&x, &labels, n_segments);
    let map = segment_map(
        &x,
        &labels,
        &centres.view(),
        &pre.transform.column_names(),
        seg.map_sample,
        settings.seed,
        2,
    )
    .ok();
    let mut members: Vec<Vec<MemberActivity>> = vec![Vec::new(); n_segments];
    for (&row, &label) in pre.rows.iter().zip(&labels) {
        let (features, window) = &population.activity[row];
        members[label].push(MemberActivity {
            revenue: features.monetary,
            orders: features.frequency,
            recent_revenue: window.recent_revenue,
            recent_orders: window.recent_orders,
            prior_revenue: window.prior_revenue,
            reachable: population.reachable[row],
        });
    }
    let distinctness: Vec<Option<f64>> = profiles
        .segments
        .iter()
        .map(|s| match settings.algorithm {
            RunAlgorithm::Kmeans | RunAlgorithm::Gmm | RunAlgorithm::Dbscan => {
                s.nearest.map(|(_, d)| d)
            }
            RunAlgorithm::Rfm | RunAlgorithm::Rules => None,
        })
        .collect();
    let valuations: Vec<Valuation> = value_segments(
        &members,
        &distinctness,
        &ValuationParams {
            window_days: seg.valuation_window_days,
            gross_margin: seg.gross_margin,
            annual_discount_rate: seg.annual_discount_rate,
            cost_per_customer: seg.cost_per_customer,
            cost_per_order: seg.cost_per_order,
            min_segment_size: seg.min_segment_size,
            min_reachable_share: seg.min_reachable_share,
            min_distinctness: seg.min_distinctness,
            min_cell_size: u64::from(policy.fairness.min_cell_size),
        },
    );
    let memberships: Vec<(i64, i32)> = pre
        .rows
        .iter()
        .zip(&labels)
        .map(|(&row, &label)| (population.ids[row], label as i32))
        .collect();
    let previous = db.read(store::published)?;
    let stability_ari = match &previous {
        Some(prev) => {
            let before = db.read(|conn| store::memberships(conn, prev.id))?;
            stability(&before, &memberships)
        }
        None => None,
    };
    // Segments found again keep the names the previous (published) run's segments have now.
    let carried: Vec<Option<String>> = match (&previous, settings.algorithm) {
        (Some(prev), RunAlgorithm::Kmeans | RunAlgorithm::Gmm | RunAlgorithm::Dbscan)
            if fixed_names.is_none() =>
        {
            let before: Vec<(String, super::profile::SegmentProfile)> = db
                .read(|conn| store::segments(conn, prev.id))?
                .into_iter()
                .filter_map(|r| Some((r.name, serde_json::from_str(&r.profile).ok()?)))
                .collect();
            super::matching::carried_names(&before, &profiles.segments)
        }
        _ => vec![None; profiles.segments.len()],
    };
    let reference = reference_sample(&population.columns, &pre.rows, settings.seed);
    let segment_rows: Vec<SegmentRow> = profiles
        .segments
        .iter()
        .zip(&valuations)
        .enumerate()
        .map(|(i, (p, v))| {
            let name = fixed_names
                .as_ref()
                .map_or_else(|| p.proposed_name.clone(), |n| n[i].clone());
            SegmentRow {
                run_id: id,
                segment: i as i32,
                name: carried[i].clone().unwrap_or_else(|| name.clone()),
                proposed_name: name,
                size: p.size as i64,
                profile: serde_json::to_string(p).expect("profiles serialise"),
                valuation: serde_json::to_string(v).expect("valuations serialise"),
            }
        })
        .collect();
    timings.profile = ms(stage);
    progress(db, id, "persist", 0.85)?;

    let stage = Instant::now();
    let excluded = Excluded {
        no_consent: population.tally.never_asked,
        withdrawn: population.tally.withdrawn,
        expired: population.tally.expired,
        missing_values: pre.missing.customers_excluded as u64,
    };
    let included = pre.matrix.nrows() as u64;
    let mut summary = RunSummary {
        k: n_segments,
        k_candidates,
        quality,
        timings_ms: timings.clone(),
        missing: pre.missing.clone(),
        transform: Some(pre.transform.clone()),
        map,
        reference,
        as_of: settings.as_of.unwrap_or(population.at.date()),
    };
    let excluded_json = serde_json::to_string(&excluded).expect("serialises");
    let persist = |summary: &RunSummary| -> Result<(), RunError> {
        let summary_json = serde_json::to_string(summary).expect("summaries serialise");
        db.write::<_, DbError>(|conn| {
            store::complete(
                conn,
                id,
                &Completed {
                    included: included as i64,
                    excluded: &excluded_json,
                    summary: &summary_json,
                    segments: &segment_rows,
                    memberships: &memberships,
                    previous_run_id: previous.as_ref().map(|p| p.id),
                    stability_ari,
                    finished_at: db::now(),
                },
            )?;
            db::trail::append(
                conn,
                NewEntry::new(
                    &Actor::system(),
                    "segmentation.completed",
                    format!("run:{id}"),
                    serde_json::json!({
                        "segments": n_segments,
                        "population_at": crate::consent::format_instant(population.at),
                    }),
                ),
                &policy.version,
            )?;
            Ok(())
        })?;
        Ok(())
    };
    persist(&summary)?;
    timings.persist = ms(stage);
    summary.timings_ms = timings;
    // The persist time is known only after the commit; store it beside the rest.
    let summary_json = serde_json::to_string(&summary).expect("summaries serialise");
    db.write::<_, DbError>(|conn| {
        diesel::update(crate::db::schema::segmentation_runs::table.find(id))
            .set(crate::db::schema::segmentation_runs::summary.eq(summary_json.as_str()))
            .execute(conn)?;
        Ok(())
    })?;
    // Every customer kept: the columns are already in member order and move over as they are.
    let kept_all = pre.rows.len() == population.ids.len();
    let features = RunFeatures {
        ids: memberships.iter().map(|&(customer, _)| customer).collect(),
        columns: population
            .columns
            .into_iter()
            .map(|c| {
                let values = match c.values {
                    values if kept_all => values,
                    ColumnValues::Numeric(v) => {
                        ColumnValues::Numeric(pre.rows.iter().map(|&r| v[r]).collect())
                    }
                    ColumnValues::Categorical(mut v) => {
                        ColumnValues::Categorical(pre.rows.iter().map(|&r| v[r].take()).collect())
                    }
                };
                (c.spec.name, values)
            })
            .collect(),
    };
    Ok(RunOutcome {
        run_id: id,
        included,
        excluded,
        segments: segment_rows,
        summary,
        stability_ari,
        features,
    })
}

/// The segments of the customers both runs contain, as (segment in `before`, segment in
/// `after`); both lists (customer id, segment) sorted by customer id.
pub fn shared_segments(before: &[(i64, i32)], after: &[(i64, i32)]) -> Vec<(usize, usize)> {
    let mut shared = Vec::new();
    let mut j = 0;
    for &(customer, segment) in before {
        while j < after.len() && after[j].0 < customer {
            j += 1;
        }
        if j < after.len() && after[j].0 == customer {
            shared.push((segment as usize, after[j].1 as usize));
        }
    }
    shared
}

/// The adjusted Rand index between two runs' memberships on the customers both contain
/// (both lists sorted by customer id); `None` when fewer than two customers are shared.
pub fn stability(before: &[(i64, i32)], after: &[(i64, i32)]) -> Option<f64> {
    let (a, b): (Vec<usize>, Vec<usize>) = shared_segments(before, after).into_iter().unzip();
    if a.len() < 2 {
        return None;
    }
    adjusted_rand_index(&a, &b).ok()
}

/// A seeded sample of each numeric feature's values over the modelled rows.
fn reference_sample(columns: &[FeatureColumn], rows: &[usize], seed: u64) -> Vec<FeatureReference> {
    let sample = quality::sample_indices(rows.len(), REFERENCE_SAMPLE, seed);
    columns
        .iter()
        .filter_map(|c| match &c.values {
            ColumnValues::Numeric(v) => Some(FeatureReference {
                feature: c.spec.name.clone(),
                values: sample.iter().filter_map(|&i| v[rows[i]]).collect(),
            }),
            ColumnValues::Categorical(_) => None,
        })
        .collect()
}

/// The members of a run as (internal id, external id, segment), optionally of one segment,
/// minus everyone whose consent for the segmentation purpose is no longer active now:
/// withdrawal takes effect at once, whatever the run. With `channel`, also minus everyone
/// whose consent for that channel's purpose is not active now (activation exports).
pub fn live_members(
    conn: &mut DbConnection,
    policy: &Policy,
    run_id: i64,
    segment: Option<i32>,
    channel: Option<&str>,
) -> Result<Vec<(i64, String, i32)>, RunError> {
    let seg = &policy.segmentation;
    let now = db::now();
    let active =
        db::consent::active_customers(conn, &seg.purpose, &policy.purposes[&seg.purpose], now)?;
    let mut members = store::members_with_ids(conn, run_id, segment)?;
    retain_ids(&mut members, |m| m.0, &active);
    if let Some(channel) = channel {
        let purpose = seg.channels.get(channel).ok_or_else(|| {
            RunError::Settings(SettingsError::Invalid {
                field: "channel",
                message: format!(
                    "unknown channel `{channel}`: the policy's channels are {}",
                    seg.channels.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            })
        })?;
        let reachable =
            db::consent::active_customers(conn, purpose, &policy.purposes[purpose], now)?;
        retain_ids(&mut members, |m| m.0, &reachable);
    }
    Ok(members)
}

/// Keeps the items (sorted by customer id) whose id is in `allowed` (ascending).
fn retain_ids<T>(items: &mut Vec<T>, id_of: impl Fn(&T) -> i64, allowed: &[i64]) {
    let mut j = 0;
    items.retain(|item| {
        let id = id_of(item);
        while j < allowed.len() && allowed[j] < id {
            j += 1;
        }
        j < allowed.len() && allowed[j] == id
    });
}

/// Current member counts per segment (after withdrawals), in segment order.
pub fn live_sizes(
    conn: &mut DbConnection,
    policy: &Policy,
    run_id: i64,
    n_segments: usize,
) -> Result<Vec<u64>, RunError> {
    // Counting needs no external ids: the memberships alone, minus withdrawals.
    let seg = &policy.segmentation;
    let active = db::consent::active_customers(
        conn,
        &seg.purpose,
        &policy.purposes[&seg.purpose],
        db::now(),
    )?;
    let mut members = store::memberships(conn, run_id)?;
    retain_ids(&mut members, |m| m.0, &active);
    let mut sizes = vec![0u64; n_segments];
    for (_, s) in members {
        if let Some(c) = sizes.get_mut(s as usize) {
            *c += 1;
        }
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_labels_drop_empty_segments_in_order() {
        let (labels, old) = dense(&[4, 0, 4, 2], 6);
        assert_eq!(labels, [2, 0, 2, 1]);
        assert_eq!(old, [0, 2, 4]);
    }

    #[test]
    fn stability_compares_only_shared_customers() {
        let before = [(1, 0), (2, 0), (3, 1), (4, 1), (9, 0)];
        // Same partition with the labels swapped, customer 9 gone, customer 5 new.
        let after = [(1, 1), (2, 1), (3, 0), (4, 0), (5, 0)];
        assert_eq!(stability(&before, &after), Some(1.0));
        assert_eq!(stability(&before[..1], &after), None);
    }

    #[test]
    fn flags_mark_members_of_a_sorted_subset() {
        assert_eq!(
            flags(&[1, 3, 5, 7], &[2, 3, 7, 8]),
            [false, true, false, true]
        );
    }
}
