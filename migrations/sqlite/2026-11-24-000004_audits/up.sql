-- Fairness audits of segmentation runs and the overrides of their publish gate. Both are
-- append-only: a re-audit adds a new audit, an override is never edited or withdrawn.
-- `report` is the audit as JSON, already suppressed (no count below the policy's minimum cell
-- size), so it can be served as stored.
CREATE TABLE fairness_audits (
    id BIGINT PRIMARY KEY NOT NULL,
    run_id BIGINT NOT NULL REFERENCES segmentation_runs (id),
    policy_version TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('pass', 'warn', 'inconclusive', 'fail')),
    reason TEXT NOT NULL,
    members BIGINT NOT NULL,
    -- Fingerprint of the run's strategies (favourable flags) the four-fifths rule used; when
    -- the strategies change afterwards, the report says its four-fifths result is stale.
    strategies TEXT NOT NULL,
    report TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX fairness_audits_run ON fairness_audits (run_id, id);

CREATE TABLE audit_overrides (
    id BIGINT PRIMARY KEY NOT NULL,
    audit_id BIGINT NOT NULL REFERENCES fairness_audits (id),
    overridden_by TEXT NOT NULL,
    justification TEXT NOT NULL,
    overridden_at TIMESTAMP NOT NULL
);
CREATE INDEX audit_overrides_audit ON audit_overrides (audit_id, id);

CREATE TRIGGER fairness_audits_no_update BEFORE UPDATE ON fairness_audits
BEGIN
    SELECT RAISE(ABORT, 'fairness_audits is append-only');
END;
CREATE TRIGGER fairness_audits_no_delete BEFORE DELETE ON fairness_audits
BEGIN
    SELECT RAISE(ABORT, 'fairness_audits is append-only');
END;
CREATE TRIGGER audit_overrides_no_update BEFORE UPDATE ON audit_overrides
BEGIN
    SELECT RAISE(ABORT, 'audit_overrides is append-only');
END;
CREATE TRIGGER audit_overrides_no_delete BEFORE DELETE ON audit_overrides
BEGIN
    SELECT RAISE(ABORT, 'audit_overrides is append-only');
END;
