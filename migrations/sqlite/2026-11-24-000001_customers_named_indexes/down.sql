PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE customers_old (
    id BIGINT PRIMARY KEY NOT NULL,
    external_id TEXT NOT NULL UNIQUE,
    pseudonym TEXT NOT NULL UNIQUE,
    -- JSON object of the ordinary (not protected) attributes: name -> string, number or null.
    attributes TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
INSERT INTO customers_old (id, external_id, pseudonym, attributes, created_at, updated_at)
    SELECT id, external_id, pseudonym, attributes, created_at, updated_at FROM customers;
DROP TABLE customers;
ALTER TABLE customers_old RENAME TO customers;
COMMIT;
PRAGMA foreign_keys = ON;
