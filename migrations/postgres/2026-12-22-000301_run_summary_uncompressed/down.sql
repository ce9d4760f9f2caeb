ALTER TABLE segmentation_runs ALTER COLUMN summary SET STORAGE EXTENDED;
UPDATE segmentation_runs SET summary = summary || '' WHERE summary IS NOT NULL;
