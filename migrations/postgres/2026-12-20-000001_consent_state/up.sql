-- The consent state: per customer × purpose, the latest ledger event (latest `recorded_at`,
-- ties by the event entered last), kept current by every writer of the ledger
-- (`db::consent_state`). It answers "who is active now" without reading the whole ledger.
-- No expiry column: a grant lapses `consent_validity_days` after `recorded_at` by the policy
-- in force, so "active at t" is computed from `granted` and `recorded_at`.
CREATE TABLE consent_state (
    customer_id BIGINT NOT NULL,
    purpose TEXT NOT NULL,
    granted BOOLEAN NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    event_id BIGINT NOT NULL,
    PRIMARY KEY (customer_id, purpose)
);
CREATE INDEX consent_state_by_time ON consent_state (purpose, recorded_at, granted, customer_id);

-- A number that changes whenever the state does: what caches of figures computed from the
-- state are keyed by.
CREATE TABLE consent_state_version (
    id INTEGER PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL
);
INSERT INTO consent_state_version (id, version) VALUES (1, 1);

-- Live segment sizes of a run computed from the state at one version, valid until
-- `valid_until` (the next instant a grant lapses or a future-dated event takes effect).
CREATE TABLE run_live_sizes (
    run_id BIGINT PRIMARY KEY NOT NULL,
    state_version BIGINT NOT NULL,
    valid_until TIMESTAMP NOT NULL,
    sizes TEXT NOT NULL
);

INSERT INTO consent_state (customer_id, purpose, granted, recorded_at, event_id)
SELECT customer_id, purpose, granted, recorded_at, id FROM (
    SELECT customer_id, purpose, status = 'granted' AS granted, recorded_at, id,
        ROW_NUMBER() OVER (PARTITION BY customer_id, purpose ORDER BY recorded_at DESC, id DESC) AS n
    FROM consent_events
) latest WHERE n = 1;
