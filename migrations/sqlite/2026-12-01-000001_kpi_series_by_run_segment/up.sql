-- A KPI series belongs to a run and a segment of that run, not to a segment's name: two runs
-- whose segments share a name must not share one history, and renaming a segment must not
-- start a new one. `segment` stays as the label the segment had when it was evaluated.
ALTER TABLE kpi_evaluations ADD COLUMN segment_number INTEGER;

-- Rows logged before this migration carry only the name. Attribute each to its run's segment
-- by the name it was logged under: the segment's current name, its proposed name, or the
-- "name (segment N)" form given to duplicate names. A row matching none (renamed since, from a
-- name other than the proposed one) keeps a NULL segment number: it stays in the log and its exports,
-- under its run and label, but joins no series. Nothing is deleted. The log refuses updates,
-- so the guard is lifted for this one statement and put back.
DROP TRIGGER kpi_evaluations_append_only;
UPDATE kpi_evaluations SET segment_number = COALESCE(
    (SELECT s.segment FROM segments s
      WHERE s.run_id = kpi_evaluations.run_id AND trim(s.name) = kpi_evaluations.segment
      ORDER BY s.segment LIMIT 1),
    (SELECT s.segment FROM segments s
      WHERE s.run_id = kpi_evaluations.run_id AND trim(s.proposed_name) = kpi_evaluations.segment
      ORDER BY s.segment LIMIT 1),
    (SELECT s.segment FROM segments s
      WHERE s.run_id = kpi_evaluations.run_id
        AND kpi_evaluations.segment LIKE '% (segment ' || s.segment || ')'
      ORDER BY s.segment LIMIT 1)
)
WHERE run_id IS NOT NULL AND segment <> 'all';
CREATE TRIGGER kpi_evaluations_append_only BEFORE UPDATE ON kpi_evaluations
BEGIN
    SELECT RAISE(ABORT, 'kpi_evaluations is append-only');
END;

CREATE INDEX kpi_evaluations_run_series
    ON kpi_evaluations (period_kind, run_id, segment_number, kpi, period_start, id);
