DROP INDEX kpi_evaluations_by_period;
