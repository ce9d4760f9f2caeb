-- SQLite only: there a transaction's id becomes the table's rowid instead of a unique index
-- beside it (see migrations/sqlite). PostgreSQL's bigint primary key is already the one index
-- on the id.
SELECT 1;
