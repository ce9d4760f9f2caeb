-- Several servers on one database. A run is executed by the process that claims it: the
-- claim names the worker (host, process id and a random part) and holds a lease until
-- `lease_until`, renewed by a heartbeat while the run executes; a run whose lease ran out
-- is failed (or, if it never started, queued again) by whichever process notices.
ALTER TABLE segmentation_runs ADD COLUMN worker_id TEXT;
ALTER TABLE segmentation_runs ADD COLUMN lease_until TIMESTAMP;
ALTER TABLE segmentation_runs ADD COLUMN claimed_at TIMESTAMP;
-- How many times the run was claimed (a run released before it started may be claimed again).
ALTER TABLE segmentation_runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;

-- Scheduled work claimed once cluster-wide: one row per task, period and evaluation; the
-- process that inserted it does the work. A failed attempt removes its row so a later tick
-- tries again.
CREATE TABLE schedule_claims (
    id BIGINT PRIMARY KEY NOT NULL,
    task TEXT NOT NULL,
    period_kind TEXT NOT NULL,
    period_start DATE NOT NULL,
    -- `final` (the period had ended) or `through YYYY-MM-DD` (a partial evaluation).
    evaluation TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    claimed_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    CONSTRAINT schedule_claims_once UNIQUE (task, period_kind, period_start, evaluation)
);

-- Which process and which claim made a scheduled evaluation (empty for evaluations asked
-- for by a person or the CLI).
ALTER TABLE kpi_evaluations ADD COLUMN worker_id TEXT;
ALTER TABLE kpi_evaluations ADD COLUMN claim_id BIGINT;

-- Failed sign-ins, shared by every process: one row per what they count against
-- (`email:<address typed>` or `client:<address>`); a row whose last failure is older than the
-- window starts over.
CREATE TABLE sign_in_throttle (
    subject TEXT PRIMARY KEY NOT NULL,
    failures INTEGER NOT NULL,
    last_failure TIMESTAMP NOT NULL,
    locked_until TIMESTAMP
);
