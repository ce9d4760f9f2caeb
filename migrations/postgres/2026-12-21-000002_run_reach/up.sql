-- Per channel and segment of a run, its members whose segmentation consent is active and how
-- many of them are reachable on the channel (the segment cards' export links), counted from
-- the consent state at one version under one policy version, valid until `valid_until` (the
-- next instant a grant of any of those purposes lapses or a future-dated event takes effect).
CREATE TABLE run_reach (
    run_id BIGINT PRIMARY KEY NOT NULL,
    state_version BIGINT NOT NULL,
    policy_version TEXT NOT NULL,
    valid_until TIMESTAMP NOT NULL,
    reach TEXT NOT NULL
);
