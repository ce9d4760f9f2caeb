-- A run's summary (quality, timings, the map's points, the reference distributions: about
-- 180 kB of JSON) is read whole by every view of /segments, /kpi, an audit report and the
-- members API (twice per view). Compressed (the default storage), PostgreSQL decompressed it
-- at each read: 0.66-2.1 ms per fetch, 0.3 ms stored uncompressed; the database's CPU per
-- view of /segments went from 2.1 to 1.2 ms at 200,000 customers (docs/benchmarks.md).
-- The rows already written are rewritten so that they are stored that way too (the text is
-- unchanged).
ALTER TABLE segmentation_runs ALTER COLUMN summary SET STORAGE EXTERNAL;
UPDATE segmentation_runs SET summary = summary || '' WHERE summary IS NOT NULL;
