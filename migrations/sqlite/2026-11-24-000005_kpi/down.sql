DROP TRIGGER kpi_evaluations_append_only;
DROP TABLE kpi_evaluations;
