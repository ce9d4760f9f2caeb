-- Who each activation export and member list disclosed, so that `fairseg check objections`
-- can replay every disclosure against the consent ledger and prove that nobody who had
-- objected or withdrawn by then was in it. `purposes` is a JSON array of the purposes whose
-- withdrawal bars a customer from the disclosure. Customer ids are internal (no FK: an erased
-- customer's disclosures stay as evidence, without personal data).
CREATE TABLE disclosures (
    id BIGINT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('activation_export', 'member_list')),
    run_id BIGINT NOT NULL,
    segment INTEGER,
    channel TEXT,
    purposes TEXT NOT NULL,
    disclosed_at TIMESTAMP NOT NULL,
    disclosed_by TEXT NOT NULL
);
CREATE TABLE disclosure_members (
    disclosure_id BIGINT NOT NULL REFERENCES disclosures (id) ON DELETE CASCADE,
    customer_id BIGINT NOT NULL,
    PRIMARY KEY (disclosure_id, customer_id)
);
