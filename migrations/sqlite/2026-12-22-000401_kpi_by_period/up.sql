-- The KPI overview lists every period evaluated (with its newest evaluation time) and reads
-- one period's rows on every view; without an index led by the period these were a walk of
-- the whole log with a lookup of each row, sorted: most of a `/kpi` view's CPU. The columns
-- after period_start make the period list an index-only read.
CREATE INDEX kpi_evaluations_by_period
    ON kpi_evaluations (period_kind, period_start, period_end, evaluated_at);
