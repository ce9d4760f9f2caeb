-- The same change as on SQLite: the uniqueness of external_id and pseudonym as named unique
-- indexes (SQLite imports drop and rebuild them around a large import; PostgreSQL keeps them,
-- the names are the same on both backends).
ALTER TABLE customers DROP CONSTRAINT customers_external_id_key;
ALTER TABLE customers DROP CONSTRAINT customers_pseudonym_key;
CREATE UNIQUE INDEX customers_external_id ON customers (external_id);
CREATE UNIQUE INDEX customers_pseudonym ON customers (pseudonym);
