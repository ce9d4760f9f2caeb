DROP INDEX customers_pseudonym;
DROP INDEX customers_external_id;
ALTER TABLE customers ADD CONSTRAINT customers_external_id_key UNIQUE (external_id);
ALTER TABLE customers ADD CONSTRAINT customers_pseudonym_key UNIQUE (pseudonym);
