-- A customer's id becomes the table's rowid (INTEGER PRIMARY KEY), and so does the customer id
-- of their protected attributes, as was done for transactions (2026-12-23-000101). Declared
-- BIGINT PRIMARY KEY, each was a unique index beside the rowid that every imported customer
-- paid for twice (a B-tree insert into each, 27 MB of index pages at a million customers,
-- written through the write-ahead log and again by the checkpoint). The ids, every column, the
-- unique indexes and the foreign keys are kept as they were.
--
-- SQLite cannot change a primary key in place: both tables are rebuilt (the documented
-- twelve-step way), with foreign keys off so that dropping the old customers table cascades
-- to nothing (consents, transactions and protected attributes reference it by name, and name
-- the new table once it is renamed).
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE customers_by_rowid (
    id INTEGER PRIMARY KEY NOT NULL,
    external_id TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    -- JSON object of the ordinary (not protected) attributes: name -> string, number or null.
    attributes TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
INSERT INTO customers_by_rowid (id, external_id, pseudonym, attributes, created_at, updated_at)
    SELECT id, external_id, pseudonym, attributes, created_at, updated_at
    FROM customers ORDER BY id;
DROP TABLE customers;
ALTER TABLE customers_by_rowid RENAME TO customers;
CREATE UNIQUE INDEX customers_external_id ON customers (external_id);
CREATE UNIQUE INDEX customers_pseudonym ON customers (pseudonym);

-- Protected attributes (the policy's list), kept apart: only roles with
-- `customers:read_protected` read this table, and segmentation never does.
CREATE TABLE customer_protected_by_rowid (
    customer_id INTEGER PRIMARY KEY NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    attributes TEXT NOT NULL
);
INSERT INTO customer_protected_by_rowid (customer_id, attributes)
    SELECT customer_id, attributes FROM customer_protected ORDER BY customer_id;
DROP TABLE customer_protected;
ALTER TABLE customer_protected_by_rowid RENAME TO customer_protected;
COMMIT;
PRAGMA foreign_keys = ON;
