CREATE TABLE segment_memberships_unpartitioned (
    run_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    segment INTEGER NOT NULL,
    detail TEXT,
    PRIMARY KEY (run_id, customer_id)
);
INSERT INTO segment_memberships_unpartitioned (run_id, customer_id, segment, detail)
    SELECT run_id, customer_id, segment, detail FROM segment_memberships;
-- Drops every run's partition with it.
DROP TABLE segment_memberships;
ALTER TABLE segment_memberships_unpartitioned RENAME TO segment_memberships;
ALTER INDEX segment_memberships_unpartitioned_pkey RENAME TO segment_memberships_pkey;
