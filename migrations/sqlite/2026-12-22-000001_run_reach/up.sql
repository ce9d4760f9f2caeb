-- How many members of each segment of a run are reachable on each channel now, kept per
-- consent-state version like run_live_sizes: the dashboard's activation counts, which would
-- otherwise read the whole consent state once per channel per view.
CREATE TABLE run_reach (
    run_id BIGINT PRIMARY KEY NOT NULL,
    state_version BIGINT NOT NULL,
    valid_until TIMESTAMP NOT NULL,
    reach TEXT NOT NULL
);
