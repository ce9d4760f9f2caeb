-- KPI evaluation reads the transactions of two periods by date: a covering index serves them
-- from the index alone, in order, instead of fetching each row from the table (on SQLite at
-- 10,000,000 transactions, two months went from 3.7 s to 0.09 s). It replaces
-- transactions_occurred_at, of which it is an extension.
DROP INDEX transactions_occurred_at;
CREATE INDEX transactions_period ON transactions (occurred_at, customer_id, amount, order_id);

-- The KPI evaluation log: append-only. Each evaluation of a KPI for a segment and a period
-- adds a row; a re-evaluation adds another (the newest per KPI, segment and period is the one
-- dashboards show), so every figure ever shown stays explainable. Rows leave only by
-- retention (kpi_evaluations_days, counted from evaluated_at).
CREATE TABLE kpi_evaluations (
    id BIGINT PRIMARY KEY NOT NULL,
    kpi TEXT NOT NULL,
    definition_version TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    -- The published segmentation run the segments came from (NULL when none was published).
    run_id BIGINT,
    -- `all` or the segment's name.
    segment TEXT NOT NULL,
    period_kind TEXT NOT NULL CHECK (period_kind IN ('week', 'month', 'quarter')),
    period_start DATE NOT NULL,
    -- The last day of the period (inclusive).
    period_end DATE NOT NULL,
    -- NULL when undefined (a zero denominator), with the reason.
    value DOUBLE PRECISION,
    undefined_reason TEXT,
    -- How many customers the figure rests on (segment size, active customers, active in P-1
    -- or new customers): figures on fewer than fairness.min_cell_size are suppressed when shown.
    basis BIGINT NOT NULL,
    target DOUBLE PRECISION,
    alert_threshold DOUBLE PRECISION,
    status TEXT NOT NULL CHECK (status IN ('on_target', 'warning', 'alert', 'undefined', 'no_target')),
    evaluated_at TIMESTAMP NOT NULL,
    evaluated_by TEXT NOT NULL
);
CREATE INDEX kpi_evaluations_series ON kpi_evaluations (period_kind, segment, kpi, period_start, id);
CREATE INDEX kpi_evaluations_evaluated_at ON kpi_evaluations (evaluated_at);
CREATE TRIGGER kpi_evaluations_append_only BEFORE UPDATE ON kpi_evaluations
BEGIN
    SELECT RAISE(ABORT, 'kpi_evaluations is append-only');
END;
