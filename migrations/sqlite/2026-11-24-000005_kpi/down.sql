DROP TRIGGER kpi_evaluations_append_only;
DROP TABLE kpi_evaluations;
DROP INDEX transactions_period;
CREATE INDEX transactions_occurred_at ON transactions (occurred_at);
