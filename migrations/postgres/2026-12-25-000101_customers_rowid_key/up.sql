-- SQLite only: there a customer's id (and their protected attributes' customer id) becomes the
-- table's rowid instead of a unique index beside it (see migrations/sqlite). PostgreSQL's
-- bigint primary keys are already the one index on each id.
SELECT 1;
