-- Customers and what fairseg holds about them. Ids are assigned by the server under the write
-- lock (MAX(id)+1 …), so bulk imports know them without a round trip per row.
--
-- external_id is the id the company knows the customer by: personal data, removed on erasure.
-- The trail, the erasure register and the data-subject request log name a customer only by
-- `pseudonym`, a keyed hash (HMAC-SHA-256 under a server secret) of external_id.
CREATE TABLE customers (
    id BIGINT PRIMARY KEY NOT NULL,
    external_id TEXT NOT NULL UNIQUE,
    pseudonym TEXT NOT NULL UNIQUE,
    -- JSON object of the ordinary (not protected) attributes: name -> string, number or null.
    attributes TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Protected attributes (the policy's list), kept apart: only roles with
-- `customers:read_protected` read this table, and segmentation never does.
CREATE TABLE customer_protected (
    customer_id BIGINT PRIMARY KEY NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    attributes TEXT NOT NULL
);

-- The attribute columns seen in imports, with their inferred type.
CREATE TABLE attribute_columns (
    name TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('number', 'category', 'date')),
    protected BOOLEAN NOT NULL,
    first_seen_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE transactions (
    id BIGINT PRIMARY KEY NOT NULL,
    customer_id BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    occurred_at TIMESTAMP NOT NULL,
    amount DOUBLE PRECISION NOT NULL,
    quantity BIGINT,
    order_id TEXT,
    imported_at TIMESTAMP NOT NULL
);
CREATE INDEX transactions_customer ON transactions (customer_id, occurred_at);
CREATE INDEX transactions_occurred_at ON transactions (occurred_at);

-- The consent ledger: append-only events per customer and purpose. The state at an instant
-- is derived from it (the latest event at or before the instant wins; a grant lapses after
-- the purpose's validity period). Rows leave only with the customer (erasure) or by
-- retention; they are never changed.
CREATE TABLE consent_events (
    id BIGINT PRIMARY KEY NOT NULL,
    customer_id BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('granted', 'withdrawn')),
    recorded_at TIMESTAMP NOT NULL,
    source TEXT,
    notice_version TEXT,
    -- Who entered the event: a staff e-mail, `cli:…`, `api:…` or `customer` (preference page).
    recorded_by TEXT NOT NULL,
    entered_at TIMESTAMP NOT NULL
);
CREATE INDEX consent_events_customer ON consent_events (customer_id, purpose, recorded_at);
CREATE INDEX consent_events_purpose ON consent_events (purpose, recorded_at);
CREATE FUNCTION consent_events_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent_events is append-only';
END;
$$;
CREATE TRIGGER consent_events_append_only BEFORE UPDATE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_refuse_update();

-- Pseudonyms of erased customers: a re-import of the same id is refused unless asked for.
CREATE TABLE erased_customers (
    pseudonym TEXT PRIMARY KEY NOT NULL,
    erased_at TIMESTAMP NOT NULL
);

-- The log of data-subject requests (export, erasure), by pseudonym.
CREATE TABLE dsr_requests (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('export', 'erasure')),
    subject TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX dsr_requests_occurred_at ON dsr_requests (occurred_at);

-- One row per import, with its report (JSON).
CREATE TABLE imports (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('customers', 'transactions', 'consents')),
    file_name TEXT NOT NULL,
    rows_read BIGINT NOT NULL,
    rows_imported BIGINT NOT NULL,
    rows_rejected BIGINT NOT NULL,
    imported_by TEXT NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    report TEXT NOT NULL
);
