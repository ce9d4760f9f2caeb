-- Segmentation runs and what they produced. A run freezes its population (the customers whose
-- consent for the purpose is active at `population_at`) and keeps the settings, the seed and
-- the policy version, so every figure can be reproduced.
--
-- Lifecycle: queued -> running -> draft -> audited -> published -> retired, or failed from
-- queued/running (a crash mid-run is marked failed at the next start; its partial rows are
-- never visible because segments and memberships are written in the same transaction that
-- moves the run to draft).
CREATE TABLE segmentation_runs (
    id BIGINT PRIMARY KEY NOT NULL,
    algorithm TEXT NOT NULL CHECK (algorithm IN ('kmeans', 'gmm', 'dbscan', 'rfm', 'rules')),
    -- JSON: features, k or k range, seed, algorithm parameters, missing-value rules, log features.
    settings TEXT NOT NULL,
    purpose TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'failed', 'draft', 'audited', 'published', 'retired')),
    stage TEXT NOT NULL,
    progress DOUBLE PRECISION NOT NULL,
    error TEXT,
    population_at TIMESTAMP,
    included BIGINT,
    -- JSON object: reason -> count (no_consent, withdrawn, expired, missing_values).
    excluded TEXT,
    -- JSON: k selection, quality scores, timings, preprocessing transform, segment map,
    -- reference sample of every feature (for drift).
    summary TEXT,
    previous_run_id BIGINT,
    stability_ari DOUBLE PRECISION,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    published_by TEXT,
    published_at TIMESTAMP
);
CREATE INDEX segmentation_runs_status ON segmentation_runs (status, id);

CREATE TABLE segments (
    run_id BIGINT NOT NULL REFERENCES segmentation_runs (id) ON DELETE CASCADE,
    segment INTEGER NOT NULL,
    -- The name users see; starts as the proposed name and can be changed.
    name TEXT NOT NULL,
    proposed_name TEXT NOT NULL,
    size BIGINT NOT NULL,
    -- JSON: feature profile (means/modes, lifts, distinguishing features).
    profile TEXT NOT NULL,
    -- JSON: revenue, order value, frequency, growth, lifetime value, cost to serve, priority,
    -- viability.
    valuation TEXT NOT NULL,
    PRIMARY KEY (run_id, segment)
);

-- Who is in which segment. No foreign key to customers: a million-row insert pays for every
-- key check; erasure and retention delete memberships explicitly.
CREATE TABLE segment_memberships (
    run_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    segment INTEGER NOT NULL,
    PRIMARY KEY (run_id, customer_id)
) WITHOUT ROWID;
CREATE INDEX segment_memberships_customer ON segment_memberships (customer_id);

-- Marketing's treatment of a segment; `favourable` feeds the fairness audit's four-fifths rule.
CREATE TABLE segment_strategies (
    run_id BIGINT NOT NULL,
    segment INTEGER NOT NULL,
    channel TEXT NOT NULL,
    offer TEXT NOT NULL,
    service_level TEXT NOT NULL,
    favourable BOOLEAN NOT NULL,
    recorded_by TEXT NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    PRIMARY KEY (run_id, segment),
    FOREIGN KEY (run_id, segment) REFERENCES segments (run_id, segment) ON DELETE CASCADE
);
