-- PostgreSQL only (its summaries are stored uncompressed, see migrations/postgres): SQLite
-- never compresses a value, so nothing changes here.
SELECT 1;
