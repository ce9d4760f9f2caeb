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

CREATE FUNCTION fairseg_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER fairness_audits_append_only BEFORE UPDATE OR DELETE ON fairness_audits
    FOR EACH ROW EXECUTE FUNCTION fairseg_refuse_change();
CREATE TRIGGER audit_overrides_append_only BEFORE UPDATE OR DELETE ON audit_overrides
    FOR EACH ROW EXECUTE FUNCTION fairseg_refuse_change();
