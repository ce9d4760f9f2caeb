-- The dashboards ask the log "has anything of `all` (of this period kind, in these periods)
-- changed?" on every view: the count and newest id of the matching rows, answered from this
-- index alone. Without it the count walked kpi_evaluations_by_period and read every row of
-- every segment in the periods to check its segment.
CREATE INDEX kpi_evaluations_by_segment
    ON kpi_evaluations (segment, period_kind, period_start, id);
