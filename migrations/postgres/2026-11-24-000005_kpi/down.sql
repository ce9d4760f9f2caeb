DROP TRIGGER kpi_evaluations_append_only ON kpi_evaluations;
DROP FUNCTION kpi_evaluations_refuse_update();
DROP TABLE kpi_evaluations;
