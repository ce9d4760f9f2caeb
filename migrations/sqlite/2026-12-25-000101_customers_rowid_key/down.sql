-- Back to ids declared BIGINT PRIMARY KEY (a unique index beside the rowid), everything else
-- as it was (see up.sql).
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE customers_by_key (
    id BIGINT PRIMARY KEY NOT NULL,
    external_id TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    -- JSON object of the ordinary (not protected) attributes: name -> string, number or null.
    attributes TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
INSERT INTO customers_by_key (id, external_id, pseudonym, attributes, created_at, updated_at)
    SELECT id, external_id, pseudonym, attributes, created_at, updated_at
    FROM customers ORDER BY id;
DROP TABLE customers;
ALTER TABLE customers_by_key RENAME TO customers;
CREATE UNIQUE INDEX customers_external_id ON customers (external_id);
CREATE UNIQUE INDEX customers_pseudonym ON customers (pseudonym);

CREATE TABLE customer_protected_by_key (
    customer_id BIGINT PRIMARY KEY NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    attributes TEXT NOT NULL
);
INSERT INTO customer_protected_by_key (customer_id, attributes)
    SELECT customer_id, attributes FROM customer_protected ORDER BY customer_id;
DROP TABLE customer_protected;
ALTER TABLE customer_protected_by_key RENAME TO customer_protected;
COMMIT;
PRAGMA foreign_keys = ON;
