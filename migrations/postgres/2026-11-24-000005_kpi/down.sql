DROP TRIGGER kpi_evaluations_append_only ON kpi_evaluations;
DROP FUNCTION kpi_evaluations_refuse_update();
DROP TABLE kpi_evaluations;
DROP INDEX transactions_period;
CREATE INDEX transactions_occurred_at ON transactions (occurred_at);
