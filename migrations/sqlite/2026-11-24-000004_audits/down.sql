DROP TABLE audit_overrides;
DROP TABLE fairness_audits;
