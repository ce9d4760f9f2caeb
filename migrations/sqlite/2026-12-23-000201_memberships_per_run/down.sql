-- PostgreSQL only (a partition of segment_memberships per run, see migrations/postgres):
-- SQLite has no partitions, and its write of a run's memberships is not the slow part.
SELECT 1;
