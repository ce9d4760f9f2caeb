-- A run's memberships in a table of their own, one partition of segment_memberships per run.
-- A run of a million customers wrote its rows into the one table, each row's key inserted
-- into the one primary-key index as it came (COPY at about half the speed of the same COPY
-- into a bare table). Now the run's write makes a bare table, COPYs the rows in, builds its
-- primary key from the sorted rows at once, and attaches it (src/db/segmentation.rs
-- `write_memberships`): the same transaction, so still all or nothing, and a logged table,
-- so as durable. Readers see one table; a query about one run reads one partition, one
-- about a customer looks them up run by run through each partition's key, as before.
ALTER TABLE segment_memberships RENAME TO segment_memberships_unpartitioned;
ALTER INDEX segment_memberships_pkey RENAME TO segment_memberships_unpartitioned_pkey;
CREATE TABLE segment_memberships (
    run_id BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    segment INTEGER NOT NULL,
    detail TEXT,
    PRIMARY KEY (run_id, customer_id)
) PARTITION BY LIST (run_id);
DO $$
DECLARE
    run BIGINT;
BEGIN
    FOR run IN SELECT DISTINCT run_id FROM segment_memberships_unpartitioned ORDER BY 1 LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF segment_memberships FOR VALUES IN (%s)',
            'segment_memberships_run_' || run, run);
    END LOOP;
END
$$;
INSERT INTO segment_memberships (run_id, customer_id, segment, detail)
    SELECT run_id, customer_id, segment, detail FROM segment_memberships_unpartitioned;
DROP TABLE segment_memberships_unpartitioned;
