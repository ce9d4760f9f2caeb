-- The feature drift of a run, measured once and kept with everything it was computed from, so
-- that every process (and every restart) reads it instead of measuring again: the day (the
-- behavioural features are as of a day), the consent state's version, the trail's last entry
-- that may have changed customer data, the next transaction id (transactions loaded directly),
-- the policy version, and the instant a grant lapses or a future-dated event takes effect.
-- A measurement whose inputs differ from now's is not read; the next measurement replaces it.
CREATE TABLE drift_measurements (
    run_id BIGINT PRIMARY KEY NOT NULL,
    day DATE NOT NULL,
    consent_version BIGINT NOT NULL,
    data_seq BIGINT NOT NULL,
    next_transaction BIGINT NOT NULL,
    policy_version TEXT NOT NULL,
    valid_until TIMESTAMP,
    measured_at TIMESTAMP NOT NULL,
    result TEXT NOT NULL
);
