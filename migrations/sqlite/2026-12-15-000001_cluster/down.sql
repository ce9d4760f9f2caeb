DROP TABLE sign_in_throttle;
ALTER TABLE kpi_evaluations DROP COLUMN claim_id;
ALTER TABLE kpi_evaluations DROP COLUMN worker_id;
DROP TABLE schedule_claims;
ALTER TABLE segmentation_runs DROP COLUMN attempts;
ALTER TABLE segmentation_runs DROP COLUMN claimed_at;
ALTER TABLE segmentation_runs DROP COLUMN lease_until;
ALTER TABLE segmentation_runs DROP COLUMN worker_id;
