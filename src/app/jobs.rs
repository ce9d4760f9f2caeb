//! Runs execute in the background: one worker thread takes queued runs in order, so a long run
//! never holds a web worker and two runs never compete for the two cores. Progress is stored
//! on the run (stage, fraction) for the browser and the API to poll.
//!
//! A crash mid-run leaves the run `running` with no segments (they are written in the same
//! transaction that finishes it); [`Jobs::start`] marks such runs failed before taking new
//! work.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use super::runs::{self, RunError, RunOutcome};
use crate::db::Db;
use crate::policy::Policy;

/// What happens after a run finished successfully (the fairness audit hooks in here), given
/// the run's outcome.
pub type AfterRun = fn(&Db, &Policy, &RunOutcome);

/// What executes a run: [`runs::execute`]; tests pass one that panics.
pub type Execute = fn(&Db, &Policy, i64) -> Result<RunOutcome, RunError>;

/// The queue of runs to execute.
#[derive(Clone)]
pub struct Jobs {
    queue: Sender<i64>,
}

impl Jobs {
    /// Fails interrupted runs, then starts the worker thread.
    pub fn start(db: Db, policy: Arc<Policy>, after: AfterRun) -> Result<Jobs, RunError> {
        Jobs::start_with(db, policy, runs::execute, after)
    }

    /// [`Jobs::start`] with another executor.
    pub fn start_with(
        db: Db,
        policy: Arc<Policy>,
        execute: Execute,
        after: AfterRun,
    ) -> Result<Jobs, RunError> {
        let interrupted = runs::fail_interrupted(&db, &policy)?;
        if !interrupted.is_empty() {
            tracing::warn!(runs = ?interrupted, "marked runs interrupted by a stop as failed");
        }
        let (queue, work) = channel();
        std::thread::Builder::new()
            .name("segmentation-jobs".into())
            .spawn(move || worker(db, policy, work, execute, after))
            .expect("spawning the segmentation worker");
        Ok(Jobs { queue })
    }

    /// Queues a created run.
    pub fn submit(&self, run_id: i64) {
        // The worker lives as long as the process; a send can only fail during shutdown, and
        // the run is then failed as interrupted at the next start.
        let _ = self.queue.send(run_id);
    }
}

/// Takes runs in order. A panic inside a run (or its audit) is caught: the run is failed
/// with the panic's message and the worker goes on to the next, instead of dying and leaving
/// every later run queued for the life of the process.
fn worker(db: Db, policy: Arc<Policy>, work: Receiver<i64>, execute: Execute, after: AfterRun) {
    for run_id in work {
        let started = std::time::Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| execute(&db, &policy, run_id)));
        match outcome {
            Ok(Ok(outcome)) => {
                tracing::info!(
                    run_id,
                    included = outcome.included,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "segmentation run finished"
                );
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| after(&db, &policy, &outcome)))
                {
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
                    &db,
                    &policy,
                    run_id,
                    &format!("the run stopped on an internal error: {message}"),
                );
            }
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
