-- Sign-offs of fairness audits by a compliance officer: who, in which role, when, with which
-- written statement, and the report exactly as it was signed, frozen. `report_json` is the
-- audit's JSON (as `GET /api/v1/audits/{id}` returned it) in canonical form (keys sorted, no
-- insignificant whitespace); `content_hash` is `sha256:<hex>` of those bytes and is also in the
-- trail entry `audit.signed` (seq `trail_seq`). `report_html` is the printable report with the
-- signature block filled; `html_hash` its sha256. Append-only: a later view recomputes both
-- hashes and says whether the stored report is intact.
CREATE TABLE audit_signoffs (
    id BIGINT PRIMARY KEY NOT NULL,
    audit_id BIGINT NOT NULL REFERENCES fairness_audits (id),
    -- 1, 2, ... within the audit: /audits/{audit_id}/signoffs/{seq}
    seq INTEGER NOT NULL,
    signed_by TEXT NOT NULL,
    signer_role TEXT NOT NULL,
    signed_at TIMESTAMP NOT NULL,
    statement TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    report_json TEXT NOT NULL,
    report_html TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    html_hash TEXT NOT NULL,
    trail_seq BIGINT NOT NULL,
    UNIQUE (audit_id, seq)
);

CREATE TRIGGER audit_signoffs_no_update BEFORE UPDATE ON audit_signoffs
BEGIN
    SELECT RAISE(ABORT, 'audit_signoffs is append-only');
END;
CREATE TRIGGER audit_signoffs_no_delete BEFORE DELETE ON audit_signoffs
BEGIN
    SELECT RAISE(ABORT, 'audit_signoffs is append-only');
END;
