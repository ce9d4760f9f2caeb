-- What a run keeps so that every member can be told why they are in their segment (GDPR
-- Art. 15(1)(h)). The preprocessing (per feature: log transform, imputation fill, centre and
-- scale, one-hot levels) is already in `summary.transform`; a customer's values as of the
-- run's `as_of` are recomputed from their attributes and transactions.
--
-- `model`, JSON, by algorithm: k-means centres (standardised space, segment order); the
-- Gaussian mixture's weights, means and full covariances; DBSCAN's eps and min_points; rule
-- and RFM runs store no model (rules are in `settings`).
ALTER TABLE segmentation_runs ADD COLUMN model TEXT;

-- Per member, only what cannot be recomputed from the model and the member's own data:
-- RFM scores (quintiles ranked against the whole population) as "rfm", e.g. "534"; DBSCAN's
-- point kind and distance to the nearest core point ("core", "border:0.8312",
-- "noise:1.7301"). NULL for k-means, Gaussian mixture and rule runs, which pay nothing.
ALTER TABLE segment_memberships ADD COLUMN detail TEXT;
