DROP INDEX kpi_evaluations_run_series;
ALTER TABLE kpi_evaluations DROP COLUMN segment_number;
