ALTER TABLE segment_memberships DROP COLUMN detail;
ALTER TABLE segmentation_runs DROP COLUMN model;
