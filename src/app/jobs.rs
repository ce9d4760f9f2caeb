//! Runs execute in the background, claimed from the database by any server on it: a queued
//! run is taken by one worker of one process, which holds it under a lease (worker id, lease
//! end) renewed by a heartbeat while it executes. A long run never holds a web worker, and
//! any number of processes share one queue without a run executing twice.
//!
//! A process that stops mid-run (killed, its machine gone) stops renewing: once the lease has
//! run out, whichever process's heartbeat notices fails the run with the reason, or queues it
//! again if it never started (once: a second abandoned claim fails it). Nothing of an
//! unfinished run is kept (its segments are written in the transaction that finishes it).
//! Starting a process never touches runs another process holds.
//!
//! Progress is stored on the run (stage, fraction) for the browser and the API to poll.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use rand::RngCore;

use super::runs::{self, RunError, RunOutcome};
use crate::config::JobSettings;
use crate::db::{self, Db, DbError, jobs as store};
use crate::policy::Policy;
use crate::segmentation::status::RunStatus;
use crate::trail::{Actor, NewEntry};

/// What happens after a run finished successfully (the fairness audit hooks in here), given
/// the run's outcome.
pub type AfterRun = fn(&Db, &Policy, &RunOutcome);

/// What executes a run: [`runs::execute`]; tests pass one that panics.
pub type Execute = fn(&Db, &Policy, i64) -> Result<RunOutcome, RunError>;

/// Names one process among those sharing the database: host, process id and a random part
/// (a restarted process, or one in a container reusing pid 1, is another worker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerId(String);

impl WorkerId {
    pub fn new() -> WorkerId {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let mut random = [0u8; 4];
        rand::rngs::OsRng.fill_bytes(&mut random);
        WorkerId(format!(
            "{host}:{}:{}",
            std::process::id(),
            hex::encode(random)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for WorkerId {
    fn default() -> WorkerId {
        WorkerId::new()
    }
}

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn lease_end(lease: Duration) -> NaiveDateTime {
    db::now() + chrono::Duration::from_std(lease).expect("a lease of at most an hour")
}

/// A wake-up signal that can also say "stop".
#[derive(Default)]
struct Signal {
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Signal {
    fn wake(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0 = true;
        self.changed.notify_all();
    }

    fn stop(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.changed.notify_all();
    }

    fn stopped(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// Waits up to `timeout` for a wake-up or a stop; returns whether stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |(woken, stopped)| !*woken && !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        guard.0 = false;
        guard.1
    }
}

/// Renews the leases a worker holds until dropped; given the policy (for the trail), also ends
/// the runs of processes that stopped.
pub struct Heartbeat {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts renewing `worker`'s leases every `settings.heartbeat`.
    pub fn start(
        db: Db,
        worker: WorkerId,
        settings: JobSettings,
        reap: Option<Arc<Policy>>,
    ) -> Heartbeat {
        let signal = Arc::new(Signal::default());
        let stop = signal.clone();
        let thread = std::thread::Builder::new()
            .name("job-heartbeat".into())
            .spawn(move || {
                loop {
                    let renewed =
                        db.read(|conn| store::renew(conn, worker.as_str(), lease_end(settings.lease)));
                    if let Err(error) = renewed {
                        tracing::warn!(%error, worker = %worker, "cannot renew the leases of running runs");
                    }
                    if let Some(policy) = &reap
                        && let Err(error) = end_abandoned(&db, policy, &worker)
                    {
                        tracing::warn!(%error, "cannot end the runs of stopped servers");
                    }
                    if stop.wait(settings.heartbeat) {
                        break;
                    }
                }
            })
            .expect("spawning the heartbeat");
        Heartbeat {
            signal,
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.signal.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Fails (or queues again) the runs whose holder stopped renewing its lease; returns their
/// ids.
pub fn end_abandoned(db: &Db, policy: &Policy, me: &WorkerId) -> Result<Vec<i64>, DbError> {
    let now = db::now();
    let candidates = db.read(|conn| store::abandoned(conn, me.as_str(), now))?;
    if candidates.is_empty() {
        return Ok(vec![]);
    }
    db.write(|conn| {
        // Read again under the write lock: another process may have ended them already.
        let abandoned = store::abandoned(conn, me.as_str(), now)?;
        for run in &abandoned {
            let (action, detail) = match (&run.worker_id, run.lease_until) {
                (Some(worker), Some(until))
                    if run.status == RunStatus::Queued && run.attempts < 2 =>
                {
                    store::release(conn, run.id)?;
                    (
                        "segmentation.released",
                        serde_json::json!({
                            "reason": format!("the server that claimed it stopped before starting it (worker {worker}, lease expired at {until}); queued again"),
                            "worker": worker,
                        }),
                    )
                }
                (Some(worker), Some(until)) => {
                    let reason = format!(
                        "the server executing it stopped (worker {worker}, lease expired at {until} UTC); nothing of it was kept"
                    );
                    crate::db::segmentation::fail(conn, run.id, &reason, now)?;
                    (
                        "segmentation.failed",
                        serde_json::json!({ "reason": reason, "worker": worker }),
                    )
                }
                _ => {
                    let reason = "interrupted: the server stopped before the run finished; nothing of it was kept";
                    crate::db::segmentation::fail(conn, run.id, reason, now)?;
                    ("segmentation.failed", serde_json::json!({ "reason": reason }))
                }
            };
            db::trail::append(
                conn,
                NewEntry::new(&Actor::system(), action, format!("run:{}", run.id), detail),
                &policy.version,
            )?;
        }
        Ok(abandoned.iter().map(|r| r.id).collect())
    })
}

/// Executes `request` in this process (the CLI, the demo): the run is created already claimed
/// by this process, so no server beside it takes it, and its lease is renewed while it runs.
pub fn execute_here(
    db: &Db,
    policy: &Policy,
    settings: JobSettings,
    actor: &Actor,
    request: &crate::segmentation::settings::RunRequest,
) -> Result<(i64, Result<RunOutcome, RunError>), RunError> {
    let worker = WorkerId::new();
    let id = runs::create_held(
        db,
        policy,
        actor,
        request,
        Some((worker.as_str(), lease_end(settings.lease))),
    )?;
    let _heartbeat = Heartbeat::start(db.clone(), worker, settings, None);
    Ok((id, runs::execute(db, policy, id)))
}

struct Shared {
    db: Db,
    policy: Arc<Policy>,
    settings: JobSettings,
    worker: WorkerId,
    execute: Execute,
    after: AfterRun,
    signal: Signal,
    draining: AtomicBool,
}

/// This process's workers: they claim queued runs from the database.
#[derive(Clone)]
pub struct Jobs {
    shared: Arc<Shared>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    heartbeat: Arc<Mutex<Option<Heartbeat>>>,
}

impl Jobs {
    /// Starts `settings.workers` workers and the heartbeat.
    pub fn start(
        db: Db,
        policy: Arc<Policy>,
        settings: JobSettings,
        after: AfterRun,
    ) -> Result<Jobs, RunError> {
        Jobs::start_with(db, policy, settings, runs::execute, after)
    }

    /// [`Jobs::start`] with another executor.
    pub fn start_with(
        db: Db,
        policy: Arc<Policy>,
        settings: JobSettings,
        execute: Execute,
        after: AfterRun,
    ) -> Result<Jobs, RunError> {
        let worker = WorkerId::new();
        // Every server keeps a heartbeat, a serve-only one (no workers) too: it renews nothing
        // but ends the runs of processes that stopped, so a cluster whose only processes with
        // workers died still ends their runs.
        let heartbeat = Some(Heartbeat::start(
            db.clone(),
            worker.clone(),
            settings,
            Some(policy.clone()),
        ));
        let shared = Arc::new(Shared {
            db,
            policy,
            settings,
            worker,
            execute,
            after,
            signal: Signal::default(),
            draining: AtomicBool::new(false),
        });
        let threads = (0..settings.workers)
            .map(|n| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("segmentation-worker-{n}"))
                    .spawn(move || work(&shared))
                    .expect("spawning a segmentation worker")
            })
            .collect();
        if settings.workers > 0 {
            tracing::info!(worker = %shared.worker, workers = settings.workers, "run workers started");
            listen(shared.clone());
        }
        Ok(Jobs {
            shared,
            threads: Arc::new(Mutex::new(threads)),
            heartbeat: Arc::new(Mutex::new(heartbeat)),
        })
    }

    /// Tells idle workers a run was queued (any process's workers find it on their next poll).
    pub fn submit(&self, _run_id: i64) {
        self.shared.signal.wake();
    }

    /// This process's worker id.
    pub fn worker_id(&self) -> &WorkerId {
        &self.shared.worker
    }

    /// Stops claiming, waits up to `grace` for the runs executing to finish, then gives up
    /// the claims still held: a run not started goes back to the queue, a started one is
    /// failed with the reason. Returns the ids given up.
    pub fn drain(&self, grace: Duration) -> Vec<i64> {
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.signal.stop();
        let deadline = Instant::now() + grace;
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let mut unfinished = vec![];
        for thread in threads {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                unfinished.push(thread);
            }
        }
        let given_up = self.give_up_claims().unwrap_or_else(|error| {
            tracing::error!(%error, "cannot give up the claims of a stopping server");
            vec![]
        });
        // Stop renewing only once nothing is held, so no lease expires mid-drain.
        drop(
            self.heartbeat
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        if !unfinished.is_empty() {
            tracing::warn!(runs = ?given_up, "stopped with runs still executing; they were failed");
        }
        given_up
    }

    fn give_up_claims(&self) -> Result<Vec<i64>, DbError> {
        let Shared {
            db, policy, worker, ..
        } = &*self.shared;
        let now = db::now();
        db.write(|conn| {
            let held = store::held_by(conn, worker.as_str())?;
            for run in &held {
                let (action, reason) = if run.status == RunStatus::Queued {
                    store::release(conn, run.id)?;
                    (
                        "segmentation.released",
                        format!("the server that claimed it (worker {worker}) was stopped before starting it; queued again"),
                    )
                } else {
                    let reason = format!(
                        "the server executing it (worker {worker}) was stopped before the run finished; nothing of it was kept"
                    );
                    crate::db::segmentation::fail(conn, run.id, &reason, now)?;
                    ("segmentation.failed", reason)
                };
                db::trail::append(
                    conn,
                    NewEntry::new(
                        &Actor::system(),
                        action,
                        format!("run:{}", run.id),
                        serde_json::json!({ "reason": reason, "worker": worker.as_str() }),
                    ),
                    &policy.version,
                )?;
            }
            Ok(held.iter().map(|r| r.id).collect())
        })
    }
}

/// On PostgreSQL, wakes this process's idle workers as soon as any process queues a run
/// (`LISTEN`/`NOTIFY`), from a thread of its own with a connection of its own; the workers'
/// poll stays, as the fallback while the connection is down and the only way on SQLite.
fn listen(shared: Arc<Shared>) {
    let spawned = std::thread::Builder::new()
        .name("job-listener".into())
        .spawn(move || {
            let stopping = || shared.draining.load(Ordering::SeqCst) || shared.signal.stopped();
            let mut listener = None;
            while !stopping() {
                let Some(open) = listener.as_mut() else {
                    match store::Listener::open(&shared.db) {
                        Ok(Some(open)) => {
                            listener = Some(open);
                            // A run queued while nobody listened is found by this look.
                            shared.signal.wake();
                        }
                        Ok(None) => return,
                        Err(error) => {
                            tracing::warn!(%error, "cannot listen for queued runs; polling");
                            std::thread::sleep(Duration::from_secs(5));
                        }
                    }
                    continue;
                };
                match open.wait(Duration::from_millis(250)) {
                    Ok(true) => shared.signal.wake(),
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "lost the connection listening for queued runs");
                        listener = None;
                    }
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the listener for queued runs; polling");
    }
}

/// Claims the oldest unclaimed queued run for this process, if any.
fn claim(shared: &Shared) -> Result<Option<i64>, DbError> {
    let Shared {
        db,
        policy,
        worker,
        settings,
        ..
    } = shared;
    // Most polls find nothing: look before taking the write lock.
    let waiting = db.read(|conn| {
        use crate::db::schema::segmentation_runs as r;
        use diesel::prelude::*;
        Ok(r::table
            .filter(r::status.eq(RunStatus::Queued.as_str()))
            .filter(r::worker_id.is_null())
            .select(r::id)
            .first::<i64>(conn)
            .optional()?)
    })?;
    if waiting.is_none() {
        return Ok(None);
    }
    db.write(|conn| {
        let Some((id, attempts)) =
            store::claim_next(conn, worker.as_str(), db::now(), lease_end(settings.lease))?
        else {
            return Ok(None);
        };
        db::trail::append(
            conn,
            runs::claimed_entry(id, worker.as_str(), attempts),
            &policy.version,
        )?;
        Ok(Some(id))
    })
}

/// A worker: claims runs one at a time until the process drains. A panic inside a run (or
/// its audit) is caught: the run is failed with the panic's message and the worker goes on,
/// instead of dying and leaving later runs to the other processes.
fn work(shared: &Shared) {
    loop {
        if shared.draining.load(Ordering::SeqCst) || shared.signal.stopped() {
            return;
        }
        match claim(shared) {
            Ok(Some(run_id)) => execute_claimed(shared, run_id),
            Ok(None) => {
                if shared.signal.wait(shared.settings.poll) {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot claim a queued run");
                if shared.signal.wait(shared.settings.poll) {
                    return;
                }
            }
        }
    }
}

fn execute_claimed(shared: &Shared, run_id: i64) {
    let Shared {
        db,
        policy,
        execute,
        after,
        worker,
        ..
    } = shared;
    let started = Instant::now();
    tracing::info!(run_id, worker = %worker, "segmentation run claimed");
    let outcome = catch_unwind(AssertUnwindSafe(|| execute(db, policy, run_id)));
    match outcome {
        Ok(Ok(outcome)) => {
            tracing::info!(
                run_id,
                included = outcome.included,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "segmentation run finished"
            );
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| after(db, policy, &outcome))) {
                tracing::error!(
                    run_id,
                    panic = panic_message(panic.as_ref()),
                    "the work after a segmentation run panicked"
                );
            }
        }
        Ok(Err(error)) => tracing::warn!(run_id, %error, "segmentation run failed"),
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            tracing::error!(run_id, panic = message, "segmentation run panicked");
            runs::fail_run(
                db,
                policy,
                run_id,
                &format!("the run stopped on an internal error: {message}"),
            );
        }
    }
}

/// The text a panic was raised with.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// The default [`AfterRun`]: nothing.
pub fn nothing_after(_: &Db, _: &Policy, _: &RunOutcome) {}
