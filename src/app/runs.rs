//! Segmentation runs as use cases: request a run, execute it (freeze the population under
//! consent, load its data, call the pure pipeline, store the results), read its members, build
//! its report, record a segment's strategy, rename a segment, compare two runs. Each write is
//! one transaction with its trail entry.
//!
//! This is the one place that decides who a run may see: [`execute`] takes exactly the
//! customers whose consent for the policy's segmentation purpose is active at the instant the
//! run starts (`db::consent_state::active_customers`), and nobody else's data is read.

pub mod compare;
pub mod report;

use std::time::Instant;

use chrono::NaiveDateTime;

use super::audits::ProtectedSnapshot;
use super::side_by_side;
use crate::consent::objections::DisclosureKind;
use crate::customers::features::{BehaviouralFeatures, WindowActivity};
use crate::db::segmentation::{self as store, Completed, RunRow, SegmentRow, StrategyRow};
use crate::db::{self, Db, DbConnection, DbError, disclosures};
use crate::policy::Policy;
use crate::segmentation::SegmentationError;
use crate::segmentation::attributes::AttributeValue;
use crate::segmentation::pipeline::{
    self, ClusterError, Excluded, Population, RunFeatures, RunSummary, Timings,
};
use crate::segmentation::preprocess::fit_transform;
use crate::segmentation::profile::SegmentProfile;
use crate::segmentation::settings::{
    KnownColumn, RunRequest, RunSettings, SettingsError, validate,
};
use crate::segmentation::status::RunStatus;
use crate::trail::{Actor, NewEntry};

pub use compare::{Comparison, SegmentMatch};
pub use report::{RunView, SegmentView, StrategyView};

/// Everything that can stop a use case of runs.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Segmentation(#[from] SegmentationError),
    #[error("run {0} does not exist")]
    NotFound(i64),
    #[error("run {run_id} has no segment {segment}")]
    NoSegment { run_id: i64, segment: i32 },
    #[error("run {id} is {status}: {message}")]
    WrongState {
        id: i64,
        status: RunStatus,
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

impl From<ClusterError> for RunError {
    fn from(e: ClusterError) -> RunError {
        match e {
            ClusterError::Segmentation(s) => RunError::Segmentation(s),
            ClusterError::TooFewSegments { asked, got } => RunError::TooFewSegments { asked, got },
        }
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
    /// Every customer's protected attributes, read beside the run's own work for the audit
    /// that follows it (`None` when the policy's consent-selection test is off, or the read
    /// failed: the audit then reads them itself).
    pub protected: Option<ProtectedSnapshot>,
}

/// Validates a request and records a queued run, for any server's worker to claim; returns
/// its id.
pub fn create(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    request: &RunRequest,
) -> Result<i64, RunError> {
    create_held(db, policy, actor, request, None)
}

/// [`create`], the run already claimed by `holder` (worker id, lease end) when it is to be
/// executed by the caller's own process, so no server's worker takes it.
pub fn create_held(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    request: &RunRequest,
    holder: Option<(&str, NaiveDateTime)>,
) -> Result<i64, RunError> {
    let columns = db.read(store::known_columns)?;
    let settings = validate(request, policy, &columns)?;
    let settings_json = serde_json::to_string(&settings).expect("settings serialise");
    let now = db::now();
    db.write(|conn| {
        let id = store::next_run_id(conn)?;
        store::insert_run(
            conn,
            &RunRow {
                id,
                algorithm: settings.algorithm.as_str().to_owned(),
                settings: settings_json.clone(),
                purpose: policy.segmentation.purpose.clone(),
                policy_version: policy.version.clone(),
                status: RunStatus::Queued,
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
        match holder {
            Some((worker, lease_until)) => db::jobs::claim(conn, id, worker, now, lease_until)?,
            None => db::jobs::announce(conn)?,
        }
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
        if let Some((worker, _)) = holder {
            db::trail::append(conn, claimed_entry(id, worker, 1), &policy.version)?;
        }
        Ok(id)
    })
}

/// The trail entry of a claim: which process executes the run, at which attempt.
pub fn claimed_entry(id: i64, worker: &str, attempt: i32) -> NewEntry {
    NewEntry::new(
        &Actor::system(),
        "segmentation.claimed",
        format!("run:{id}"),
        serde_json::json!({ "worker": worker, "attempt": attempt }),
    )
}

/// Executes a queued run to completion (status draft) or failure (status failed, with the
/// error stored and in the trail). Nothing of a failed run is kept but the failure.
pub fn execute(db: &Db, policy: &Policy, id: i64) -> Result<RunOutcome, RunError> {
    match execute_inner(db, policy, id) {
        Ok(outcome) => Ok(outcome),
        // Another executor has (or had) the run: its outcome is not this one's to write.
        Err(error @ RunError::WrongState { .. }) => Err(error),
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
        // A run already finished or failed (by a process that found its lease expired) keeps
        // its outcome.
        if !store::fail(conn, id, message, now)? {
            return Ok(());
        }
        db::trail::append(
            conn,
            NewEntry::new(
                &Actor::system(),
                "segmentation.failed",
                format!("run:{id}"),
                serde_json::json!({ "reason": message }),
            ),
            &policy.version,
        )?;
        Ok::<_, DbError>(())
    });
    if let Err(error) = result {
        tracing::error!(run_id = id, %error, "cannot mark the run failed");
    }
}

/// Debug builds only: holds a started run for FAIRSEG_DEBUG_RUN_DELAY_MS milliseconds, so the
/// suite can stop a server while it executes a run. Release builds have no such setting.
fn debug_delay() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("FAIRSEG_DEBUG_RUN_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

fn progress(db: &Db, id: i64, stage: &str, fraction: f64) -> Result<(), RunError> {
    db.write(|conn| store::set_progress(conn, id, stage, fraction))?;
    Ok(())
}

/// How often progress within a stage is written: often enough for the run's page, which
/// refreshes every few seconds, without a write per k-means iteration.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Progress within `stage`, a fraction of it mapped onto `span` of the whole run, written at
/// most every [`PROGRESS_EVERY`]. A failed write is logged, not raised: the run's results do
/// not depend on its progress bar.
fn throttled_progress<'a>(
    db: &'a Db,
    id: i64,
    stage: &'a str,
    span: std::ops::Range<f64>,
) -> impl FnMut(f64) + 'a {
    let mut last = Instant::now();
    move |within: f64| {
        if last.elapsed() < PROGRESS_EVERY {
            return;
        }
        last = Instant::now();
        let fraction = span.start + (span.end - span.start) * within.clamp(0.0, 1.0);
        if let Err(error) = progress(db, id, stage, fraction) {
            tracing::warn!(run = id, %error, "could not record the run's progress");
        }
    }
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

fn load_population(
    db: &Db,
    conn: &mut DbConnection,
    policy: &Policy,
    settings: &RunSettings,
    at: NaiveDateTime,
    progress: &mut dyn FnMut(f64),
) -> Result<Population, RunError> {
    let seg = &policy.segmentation;
    let purpose = policy
        .purposes
        .get(&seg.purpose)
        .expect("policy validation checked the segmentation purpose");
    let t0 = Instant::now();
    // The counts of everyone else by consent state are taken on a second connection, side by
    // side with the population's ids, when one is free (else one after the other, as
    // `population_at` does).
    let (ids, tally) = match db.spare_conn() {
        Some(mut spare) => std::thread::scope(|scope| {
            let tally = scope
                .spawn(move || db::consent_state::tally_at(&mut spare, &seg.purpose, purpose, at));
            let ids = db::consent_state::active_customers(conn, &seg.purpose, purpose, at);
            (
                ids,
                tally
                    .join()
                    .expect("counting the consent state does not panic"),
            )
        }),
        None => {
            let (ids, tally) = db::consent_state::population_at(conn, &seg.purpose, purpose, at)?;
            (Ok(ids), Ok(tally))
        }
    };
    let (ids, tally) = (ids?, tally?);
    tracing::debug!(ms = ms(t0), "load: population");
    progress(0.3);
    if ids.is_empty() {
        return Err(RunError::NoConsentedCustomers {
            purpose: seg.purpose.clone(),
        });
    }
    let channel_purpose = &seg.channels[&seg.default_channel];
    let reachable_ids = db::consent_state::active_under(conn, policy, channel_purpose, at)?;
    let reachable = flags(&ids, &reachable_ids);
    tracing::debug!(ms = ms(t0), "load: reachable");
    progress(0.4);

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

    tracing::debug!(ms = ms(t0), "load: activity");
    progress(0.55);
    let wanted = pipeline::attribute_features(settings);
    let mut attribute_columns = pipeline::empty_attribute_columns(settings, n);
    if !wanted.is_empty() {
        // The rows come in storage order: the customer named for unreadable attributes is the
        // first by id, whatever the order.
        let wanted = &wanted;
        let (read, parsed) = side_by_side::read_and_parse(
            |push| {
                store::for_each_attributes_owned(conn, |id, json| {
                    if let Some(&p) = position.get(id as usize)
                        && p != u32::MAX
                    {
                        push((p, id, json));
                    }
                })
            },
            move |rows| -> Result<_, String> {
                let mut columns = attribute_columns;
                let mut values = vec![AttributeValue::Missing; wanted.len()];
                let mut unreadable: Option<(i64, String)> = None;
                for (p, id, json) in rows {
                    if let Err(e) = pipeline::fill_attributes(
                        &json,
                        wanted,
                        p as usize,
                        &mut values,
                        &mut columns,
                    ) && unreadable.as_ref().is_none_or(|(first, _)| id < *first)
                    {
                        unreadable = Some((id, e));
                    }
                }
                match unreadable {
                    Some((id, e)) => Err(format!("attributes of customer {id}: {e}")),
                    None => Ok(columns),
                }
            },
        );
        read?;
        attribute_columns = parsed.map_err(RunError::CorruptCustomer)?;
    }
    tracing::debug!(ms = ms(t0), "load: attributes");
    let columns = pipeline::feature_columns(settings, &activity, attribute_columns);
    Ok(Population {
        at,
        ids,
        tally,
        columns,
        activity,
        reachable,
    })
}

fn execute_inner(db: &Db, policy: &Policy, id: i64) -> Result<RunOutcome, RunError> {
    let run = db
        .read(|conn| store::run(conn, id))?
        .ok_or(RunError::NotFound(id))?;
    if run.status != RunStatus::Queued {
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
    let mut timings = Timings::default();

    // Load: the population is frozen at this instant.
    let started = Instant::now();
    let at = db::now();
    if !db.write(|conn| store::start(conn, id, at))? {
        return Err(RunError::WrongState {
            id,
            status: RunStatus::Running,
            message: "another executor started it first",
        });
    }
    debug_delay();
    // The steps of the load, weighted by what each reads at a million customers: the consent
    // state and the reachable customers 40 %, the purchases 15 %, the attributes the rest.
    let mut within_load = throttled_progress(db, id, "load", 0.05..0.25);
    let population = load_population(
        db,
        &mut *db.conn()?,
        policy,
        &settings,
        at,
        &mut within_load,
    )?;
    timings.load = ms(started);
    // The audit that follows the run reads every customer's protected attributes: they are
    // read now, on a connection of their own, while this thread preprocesses, clusters,
    // profiles and writes (a core the load kept busy is mostly idle from here on).
    std::thread::scope(|scope| {
        let protected = scope.spawn(|| {
            let read = Instant::now();
            let snapshot = ProtectedSnapshot::read(db, policy);
            tracing::debug!(ms = ms(read), "protected attributes read beside the run");
            snapshot.unwrap_or_else(|error| {
                tracing::warn!(run = id, %error, "cannot read the protected attributes beside the run; the audit will");
                None
            })
        });
        let outcome = finish(db, policy, id, &settings, population, timings);
        let protected = protected
            .join()
            .expect("reading the protected attributes does not panic");
        outcome.map(|outcome| RunOutcome {
            protected,
            ..outcome
        })
    })
}

/// The rest of [`execute_inner`] after the load: preprocess, cluster, profile and write.
fn finish(
    db: &Db,
    policy: &Policy,
    id: i64,
    settings: &RunSettings,
    population: Population,
    mut timings: Timings,
) -> Result<RunOutcome, RunError> {
    progress(db, id, "preprocess", 0.25)?;

    let stage = Instant::now();
    let pre = fit_transform(&population.columns)?;
    timings.preprocess = ms(stage);
    progress(db, id, "cluster", 0.35)?;

    let stage = Instant::now();
    let mut within_cluster = throttled_progress(db, id, "cluster", 0.35..0.7);
    let mut clustered = pipeline::cluster(
        settings,
        policy,
        &pre,
        &population.columns,
        &mut within_cluster,
    )?;
    let model_json = serde_json::to_string(&clustered.model).expect("models serialise");
    // Per member only for RFM and DBSCAN runs (k-means, mixtures and rules store none).
    let details: Option<Vec<String>> = clustered
        .details
        .take()
        .map(|d| d.iter().map(|m| m.encode()).collect());
    let n_segments = clustered.n_segments;
    let k_candidates = clustered.k_candidates.clone();
    let fixed_names = clustered.fixed_names.clone();
    timings.cluster = ms(stage);
    progress(db, id, "profile", 0.7)?;

    // What the profile compares the run with: the published run's members and segments.
    let previous = db.read(store::published)?;
    let (members_before, before) = match &previous {
        Some(prev) => {
            let members = db.read(|conn| store::memberships(conn, prev.id))?;
            let segments: Vec<(String, SegmentProfile)> = db
                .read(|conn| store::segments(conn, prev.id))?
                .into_iter()
                .filter_map(|r| Some((r.name, serde_json::from_str(&r.profile).ok()?)))
                .collect();
            (Some(members), Some(segments))
        }
        None => (None, None),
    };
    let memberships = pipeline::memberships(&pre.rows, &clustered.labels, &population.ids);
    let excluded = Excluded {
        no_consent: population.tally.never_asked,
        withdrawn: population.tally.withdrawn,
        expired: population.tally.expired,
        missing_values: pre.missing.customers_excluded as u64,
    };
    let included = pre.matrix.nrows() as u64;
    let excluded_json = serde_json::to_string(&excluded).expect("serialises");

    // Profile, quality, map, valuation and stability are computed on a second thread while
    // this one writes the memberships (which do not depend on them), in the one transaction
    // that then stores the segments and completes the run: a failure of either keeps nothing.
    let stage = Instant::now();
    let profile_stage = |clustered: pipeline::Clustered| -> Result<_, RunError> {
        let stage = Instant::now();
        let profiled = pipeline::profile_segments(settings, policy, &pre, &population, clustered)?;
        let stability_ari = members_before
            .as_deref()
            .and_then(|before| pipeline::stability(before, &memberships));
        let names = pipeline::segment_names(
            settings.algorithm,
            fixed_names.as_deref(),
            &profiled.profiles.segments,
            before.as_deref(),
        );
        let reference = pipeline::reference_sample(&population.columns, &pre.rows, settings.seed);
        let segment_rows: Vec<SegmentRow> = profiled
            .profiles
            .segments
            .iter()
            .zip(&profiled.valuations)
            .zip(names)
            .enumerate()
            .map(|(i, ((p, v), (name, proposed_name)))| SegmentRow {
                run_id: id,
                segment: i as i32,
                name,
                proposed_name,
                size: p.size as i64,
                profile: serde_json::to_string(p).expect("profiles serialise"),
                valuation: serde_json::to_string(v).expect("valuations serialise"),
            })
            .collect();
        Ok((profiled, stability_ari, reference, segment_rows, ms(stage)))
    };
    let (mut summary, segment_rows, stability_ari, completed_seq) =
        db.write_deferring_checkpoint(|conn| -> Result<_, RunError> {
            // The run may have been failed meanwhile (its lease ran out while this process was
            // stalled, or a drain gave it up): it stays failed rather than come back.
            let status = store::run(conn, id)?.map(|r| r.status);
            if status != Some(RunStatus::Running) {
                return Err(RunError::WrongState {
                    id,
                    status: status.unwrap_or(RunStatus::Failed),
                    message: "the run was given up before it finished; nothing of it was kept",
                });
            }
            let (written, profiled) = std::thread::scope(|scope| {
                let profiling = scope.spawn(|| profile_stage(clustered));
                let written = store::insert_memberships(conn, id, &memberships, details.as_deref());
                (
                    written,
                    profiling
                        .join()
                        .expect("profiling the segments does not panic"),
                )
            });
            written?;
            let (profiled, stability_ari, reference, segment_rows, profile_ms) = profiled?;
            timings.profile = profile_ms;
            let summary = RunSummary {
                k: n_segments,
                k_candidates,
                quality: profiled.quality,
                timings_ms: timings.clone(),
                missing: pre.missing.clone(),
                transform: Some(pre.transform.clone()),
                map: profiled.map,
                reference,
                as_of: settings.as_of.unwrap_or(population.at.date()),
            };
            let summary_json = serde_json::to_string(&summary).expect("summaries serialise");
            store::complete(
                conn,
                id,
                &Completed {
                    included: included as i64,
                    excluded: &excluded_json,
                    summary: &summary_json,
                    segments: &segment_rows,
                    model: &model_json,
                    previous_run_id: previous.as_ref().map(|p| p.id),
                    stability_ari,
                    finished_at: db::now(),
                },
            )?;
            let completed_seq = db::trail::append(
                conn,
                NewEntry::new(
                    &Actor::system(),
                    "segmentation.completed",
                    format!("run:{id}"),
                    serde_json::json!({
                        "segments": n_segments,
                        "population_at": crate::time::format_instant(population.at),
                    }),
                ),
                &policy.version,
            )?;
            Ok((summary, segment_rows, stability_ari, completed_seq))
        })?;
    // The persist stage is the whole write, the profile computed beside it included.
    timings.persist = ms(stage);
    timings.profile = summary.timings_ms.profile;
    summary.timings_ms = timings;
    // The persist time is known only after the commit; store it beside the rest.
    let summary_json = serde_json::to_string(&summary).expect("summaries serialise");
    db.write_deferring_checkpoint(|conn| store::set_summary(conn, id, &summary_json))?;
    // The log those writes left is copied into the database beside what follows (the
    // audit, in `fairseg segment`) rather than at their commits.
    db.checkpoint_beside();
    let features = pipeline::run_features(id, completed_seq, population, &pre.rows, &memberships);
    Ok(RunOutcome {
        run_id: id,
        included,
        excluded,
        segments: segment_rows,
        summary,
        stability_ari,
        features,
        protected: None,
    })
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
    let active = db::consent_state::active_under(conn, policy, &seg.purpose, now)?;
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
        let reachable = db::consent_state::active_under(conn, policy, purpose, now)?;
        retain_ids(&mut members, |m| m.0, &reachable);
    }
    Ok(members)
}

/// A page of members: up to `limit` after the cursor `after` (a customer's internal id; the
/// start when `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<i64>,
    pub limit: usize,
}

/// A page of members as (external id, segment) and the cursor of the next page.
pub type MemberPage = (Vec<(String, i32)>, Option<i64>);

/// A page of members as (internal id, external id, segment) and the cursor of the next page.
pub type LiveMemberPage = (Vec<(i64, String, i32)>, Option<i64>);

/// The most members one page may hold.
pub const MAX_PAGE: usize = 10_000;

/// One page of `live_members` and the cursor of the next (`None` after the last page). Reads
/// memberships by key range from the cursor and the consent state of those customers only,
/// so the first page of a million-member run costs what a page costs.
pub fn live_members_page(
    conn: &mut DbConnection,
    policy: &Policy,
    run_id: i64,
    segment: Option<i32>,
    channel: Option<&str>,
    page: PageRequest,
) -> Result<LiveMemberPage, RunError> {
    let seg = &policy.segmentation;
    let now = db::now();
    let channel_purpose = match channel {
        Some(channel) => Some(seg.channels.get(channel).ok_or_else(|| {
            RunError::Settings(SettingsError::Invalid {
                field: "channel",
                message: format!(
                    "unknown channel `{channel}`: the policy's channels are {}",
                    seg.channels.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            })
        })?),
        None => None,
    };
    let limit = page.limit.clamp(1, MAX_PAGE);
    let mut after = page.after.unwrap_or(0);
    let mut out = Vec::with_capacity(limit);
    loop {
        let want = (limit - out.len()) as i64;
        // A little more than is missing: some of the batch may have withdrawn.
        let batch =
            store::members_with_ids_after(conn, run_id, segment, after, want + want / 4 + 8)?;
        let exhausted = (batch.len() as i64) < want + want / 4 + 8;
        let ids: Vec<i64> = batch.iter().map(|m| m.0).collect();
        let mut allowed = db::consent_state::permitted_among(
            conn,
            &seg.purpose,
            &policy.purposes[&seg.purpose],
            now,
            &ids,
        )?;
        if let Some(purpose) = channel_purpose {
            allowed = db::consent_state::permitted_among(
                conn,
                purpose,
                &policy.purposes[purpose],
                now,
                &allowed,
            )?;
        }
        let mut members = batch;
        retain_ids(&mut members, |m| m.0, &allowed);
        for m in members {
            if out.len() == limit {
                break;
            }
            out.push(m);
        }
        if out.len() == limit {
            let last = out.last().map(|m| m.0);
            return Ok((out, last));
        }
        if exhausted {
            return Ok((out, None));
        }
        after = *ids
            .last()
            .expect("a batch that is not exhausted is not empty");
    }
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

/// Current member counts per segment (after withdrawals), in segment order. Counted once per
/// consent-state version and kept until the state changes or a grant lapses, so a dashboard
/// view does not recount a million memberships.
pub fn live_sizes(
    conn: &mut DbConnection,
    policy: &Policy,
    run_id: i64,
    n_segments: usize,
) -> Result<Vec<u64>, RunError> {
    let seg = &policy.segmentation;
    let spec = &policy.purposes[&seg.purpose];
    let now = db::now();
    let version = db::consent_state::version(conn)?;
    if let Some(sizes) = store::cached_live_sizes(conn, run_id, version, now)?
        && sizes.len() == n_segments
    {
        return Ok(sizes);
    }
    let sizes = count_live_sizes(conn, policy, run_id, n_segments, now)?;
    let valid_until = db::consent_state::changes_after(conn, &seg.purpose, spec, now)?
        .unwrap_or(now + chrono::TimeDelta::days(366));
    store::cache_live_sizes(conn, run_id, version, valid_until, &sizes)?;
    Ok(sizes)
}

fn count_live_sizes(
    conn: &mut DbConnection,
    policy: &Policy,
    run_id: i64,
    n_segments: usize,
    now: NaiveDateTime,
) -> Result<Vec<u64>, RunError> {
    let members = live_memberships(conn, policy, run_id, now)?;
    Ok(count_by_segment(&members, n_segments))
}

/// The memberships of `run_id` (internal id, segment) whose segmentation consent is active at
/// `now`: no external ids, since counting needs none.
pub(super) fn live_memberships(
    conn: &mut DbConnection,
    policy: &Policy,
    run_id: i64,
    now: NaiveDateTime,
) -> db::DbResult<Vec<(i64, i32)>> {
    let seg = &policy.segmentation;
    let active = db::consent_state::active_under(conn, policy, &seg.purpose, now)?;
    let mut members = store::memberships(conn, run_id)?;
    retain_ids(&mut members, |m| m.0, &active);
    Ok(members)
}

/// How many of `members` each of `n_segments` segments holds.
pub(super) fn count_by_segment<'a>(
    members: impl IntoIterator<Item = &'a (i64, i32)>,
    n_segments: usize,
) -> Vec<u64> {
    let mut sizes = vec![0u64; n_segments];
    for (_, s) in members {
        if let Some(c) = usize::try_from(*s).ok().and_then(|s| sizes.get_mut(s)) {
            *c += 1;
        }
    }
    sizes
}

/// The members of a run (optionally one segment) as (external id, segment): individual-level
/// data, so the read is in the trail in the same transaction, and nobody appears who has
/// withdrawn consent since the run. With a channel, this is an activation export: only a
/// published run, only members reachable on the channel now.
pub fn read_members(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    run_id: i64,
    segment: Option<i32>,
    channel: Option<&str>,
) -> Result<Vec<(String, i32)>, RunError> {
    read_members_in(db, policy, actor, run_id, segment, channel, None).map(|(m, _)| m)
}

/// One page of `read_members` (`page.limit` members after `page.after`) and the cursor of the
/// next page, `None` after the last. Only the page is disclosed and in the trail.
pub fn read_members_page(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    run_id: i64,
    segment: Option<i32>,
    channel: Option<&str>,
    page: PageRequest,
) -> Result<MemberPage, RunError> {
    read_members_in(db, policy, actor, run_id, segment, channel, Some(page))
}

fn read_members_in(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    run_id: i64,
    segment: Option<i32>,
    channel: Option<&str>,
    page: Option<PageRequest>,
) -> Result<MemberPage, RunError> {
    db.write(|conn| {
        let run = store::run(conn, run_id)?.ok_or(RunError::NotFound(run_id))?;
        if channel.is_some() && run.status != RunStatus::Published {
            return Err(RunError::WrongState {
                id: run_id,
                status: run.status,
                message: "only a published segmentation can be exported for activation",
            });
        }
        let (members, next) = match page {
            Some(page) => live_members_page(conn, policy, run_id, segment, channel, page)?,
            None => (live_members(conn, policy, run_id, segment, channel)?, None),
        };
        // Who was disclosed, for the objection check (`fairseg check objections`).
        let mut purposes = vec![policy.segmentation.purpose.clone()];
        if let Some(p) = channel.and_then(|c| policy.segmentation.channels.get(c)) {
            purposes.push(p.clone());
        }
        let ids: Vec<i64> = members.iter().map(|m| m.0).collect();
        let disclosure_id = disclosures::insert(
            conn,
            &disclosures::NewDisclosure {
                kind: if channel.is_some() {
                    DisclosureKind::ActivationExport
                } else {
                    DisclosureKind::MemberList
                },
                run_id,
                segment,
                channel,
                purposes: &purposes,
                at: db::now(),
                by: actor.as_str(),
                customers: &ids,
            },
        )?;
        db::trail::append(
            conn,
            NewEntry::new(
                actor,
                if channel.is_some() {
                    "members.exported"
                } else {
                    "members.viewed"
                },
                format!("run:{run_id}"),
                serde_json::json!({
                    "segment": segment,
                    "channel": channel,
                    "members": members.len(),
                    "disclosure_id": disclosure_id,
                }),
            ),
            &policy.version,
        )?;
        Ok((
            members
                .into_iter()
                .map(|(_, external, segment)| (external, segment))
                .collect(),
            next,
        ))
    })
}

/// Who is asking about a run: those who run segmentations see every run, everyone else only
/// published (and retired) runs; a run they cannot see does not exist for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reader {
    Analyst,
    Everyone,
}

impl Reader {
    pub fn sees(self, status: RunStatus) -> bool {
        self == Reader::Analyst || status.is_public()
    }
}

/// A stored run as its reader sees it: `None` when it does not exist or is hidden from them.
pub fn run(db: &Db, reader: Reader, id: i64) -> Result<Option<RunRow>, RunError> {
    Ok(db
        .read(|conn| store::run(conn, id))?
        .filter(|r| reader.sees(r.status)))
}

/// The published run, if any.
pub fn published(db: &Db) -> Result<Option<RunRow>, RunError> {
    Ok(db.read(store::published)?)
}

/// The published run's id, if any, without reading the run itself.
pub fn published_id(db: &Db) -> Result<Option<i64>, RunError> {
    Ok(db.read(store::published_head)?.map(|run| run.id))
}

/// The newest runs the reader sees (of the latest `limit`), each with whether it was
/// published on a compliance override.
pub fn list(db: &Db, reader: Reader, limit: i64) -> Result<Vec<(RunRow, bool)>, RunError> {
    let (runs, overridden) = db.read(|conn| {
        Ok((
            store::runs(conn, limit)?,
            db::audits::runs_passed_by_override(conn)?,
        ))
    })?;
    Ok(runs
        .into_iter()
        .filter(|r| reader.sees(r.status))
        .map(|r| {
            let on_override = r.status == RunStatus::Published && overridden.contains(&r.id);
            (r, on_override)
        })
        .collect())
}

/// The attribute columns imports have seen.
pub fn known_columns(db: &Db) -> Result<Vec<KnownColumn>, RunError> {
    Ok(db.read(store::known_columns)?)
}

/// A run's report as its reader may see it (`None` when it does not exist for them), with the
/// stored run. A published run's segment sizes are counted now: its memberships shrink at once
/// when someone withdraws consent.
pub fn view(
    db: &Db,
    policy: &Policy,
    reader: Reader,
    id: i64,
) -> Result<Option<(RunView, RunRow)>, RunError> {
    let mut conn = db.conn()?;
    let Some(run) = store::run(&mut conn, id)? else {
        return Ok(None);
    };
    let segments = store::segments(&mut conn, id)?;
    let strategies = store::strategies(&mut conn, id)?;
    let sizes = if run.status == RunStatus::Published {
        Some(live_sizes(&mut conn, policy, id, segments.len())?)
    } else {
        None
    };
    if !reader.sees(run.status) {
        return Ok(None);
    }
    let view = report::view(
        &run,
        &segments,
        &strategies,
        u64::from(policy.fairness.min_cell_size),
        sizes.as_deref(),
    );
    Ok(Some((view, run)))
}

/// A run's latest fairness audit, as the run's page names it.
#[derive(Debug, Clone)]
pub struct LatestAudit {
    pub id: i64,
    pub verdict: String,
    pub reason: String,
}

/// A run's latest fairness audit, if any, and whether the run was published on a compliance
/// override.
pub fn audit_of(db: &Db, id: i64) -> Result<(Option<LatestAudit>, bool), RunError> {
    let (latest, overridden) = db.read(|c| {
        Ok((
            db::audits::latest_head_of_run(c, id)?,
            db::audits::runs_passed_by_override(c)?,
        ))
    })?;
    Ok((
        latest.map(|a| LatestAudit {
            id: a.id,
            verdict: a.verdict,
            reason: a.reason,
        }),
        overridden.contains(&id),
    ))
}

/// Marketing's treatment of a segment.
#[derive(Debug, Clone)]
pub struct Strategy {
    pub channel: String,
    pub offer: String,
    pub service_level: String,
    /// Favourable to members (a discount, a better service level): the fairness audit's
    /// four-fifths rule looks at favourable segments.
    pub favourable: bool,
}

/// Records a segment's strategy, replacing the one before. Strategies apply to the published
/// run only, so a `favourable` flag never reaches the audit of a draft before publication.
pub fn record_strategy(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    reader: Reader,
    run_id: i64,
    segment: i32,
    strategy: &Strategy,
) -> Result<(), RunError> {
    db.write(|conn| {
        let run = visible_run(conn, reader, run_id)?;
        if run.status != RunStatus::Published {
            return Err(RunError::WrongState {
                id: run_id,
                status: run.status,
                message: "strategies are recorded for the published run only",
            });
        }
        if !store::segments(conn, run_id)?
            .iter()
            .any(|s| s.segment == segment)
        {
            return Err(RunError::NoSegment { run_id, segment });
        }
        let row = StrategyRow {
            run_id,
            segment,
            channel: strategy.channel.trim().to_owned(),
            offer: strategy.offer.trim().to_owned(),
            service_level: strategy.service_level.trim().to_owned(),
            favourable: strategy.favourable,
            recorded_by: actor.as_str().to_owned(),
            recorded_at: db::now(),
        };
        store::record_strategy(conn, &row)?;
        append_segment_entry(
            conn,
            policy,
            actor,
            "segment.strategy_recorded",
            (run_id, segment),
            serde_json::json!({
                "channel": row.channel, "offer": row.offer,
                "service_level": row.service_level, "favourable": row.favourable,
            }),
        )
    })
}

/// The run `run_id` if the reader may see it.
fn visible_run(conn: &mut DbConnection, reader: Reader, run_id: i64) -> Result<RunRow, RunError> {
    store::run(conn, run_id)?
        .filter(|r| reader.sees(r.status))
        .ok_or(RunError::NotFound(run_id))
}

/// Appends a trail entry about one segment of a run.
fn append_segment_entry(
    conn: &mut DbConnection,
    policy: &Policy,
    actor: &Actor,
    action: &'static str,
    (run_id, segment): (i64, i32),
    detail: serde_json::Value,
) -> Result<(), RunError> {
    db::trail::append(
        conn,
        NewEntry::new(
            actor,
            action,
            format!("run:{run_id}/segment:{segment}"),
            detail,
        ),
        &policy.version,
    )?;
    Ok(())
}

/// Renames a segment (its proposed name stays on record). Names may change on any run the
/// reader sees that is not retired: retired runs are history.
pub fn rename_segment(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    reader: Reader,
    run_id: i64,
    segment: i32,
    name: &str,
) -> Result<(), RunError> {
    db.write(|conn| {
        let run = visible_run(conn, reader, run_id)?;
        if run.status == RunStatus::Retired {
            return Err(RunError::WrongState {
                id: run_id,
                status: run.status,
                message: "its segments can no longer be renamed",
            });
        }
        if store::rename_segment(conn, run_id, segment, name)? == 0 {
            return Err(RunError::NoSegment { run_id, segment });
        }
        append_segment_entry(
            conn,
            policy,
            actor,
            "segment.renamed",
            (run_id, segment),
            serde_json::json!({ "name": name }),
        )
    })
}

/// Compares two runs on the customers both contain.
pub fn compare(db: &Db, policy: &Policy, a: i64, b: i64) -> Result<Comparison, RunError> {
    let mut conn = db.conn()?;
    let mut names = |id: i64| -> Result<Vec<String>, RunError> {
        if store::run(&mut conn, id)?.is_none() {
            return Err(RunError::NotFound(id));
        }
        Ok(store::segments(&mut conn, id)?
            .into_iter()
            .map(|s| s.name)
            .collect())
    };
    let (a_names, b_names) = (names(a)?, names(b)?);
    let ma = store::memberships(&mut conn, a)?;
    let mb = store::memberships(&mut conn, b)?;
    let (rows_a, rows_b) = (
        store::segments(&mut conn, a)?,
        store::segments(&mut conn, b)?,
    );
    Ok(compare::comparison(
        compare::Side {
            id: a,
            names: a_names,
            memberships: &ma,
            segments: &rows_a,
        },
        compare::Side {
            id: b,
            names: b_names,
            memberships: &mb,
            segments: &rows_b,
        },
        u64::from(policy.fairness.min_cell_size),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_mark_members_of_a_sorted_subset() {
        assert_eq!(
            flags(&[1, 3, 5, 7], &[2, 3, 7, 8]),
            [false, true, false, true]
        );
    }

    #[test]
    fn only_analysts_see_unpublished_runs() {
        assert!(Reader::Analyst.sees(RunStatus::Draft));
        assert!(!Reader::Everyone.sees(RunStatus::Draft));
        assert!(Reader::Everyone.sees(RunStatus::Retired));
    }
}
