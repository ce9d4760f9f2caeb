-- SQLite only (see up.sql).
SELECT 1;
