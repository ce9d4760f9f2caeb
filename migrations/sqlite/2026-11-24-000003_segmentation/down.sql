DROP TABLE segment_strategies;
DROP TABLE segment_memberships;
DROP TABLE segments;
DROP TABLE segmentation_runs;
