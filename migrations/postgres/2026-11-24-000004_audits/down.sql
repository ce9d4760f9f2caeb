DROP TABLE audit_overrides;
DROP TABLE fairness_audits;
DROP FUNCTION fairseg_refuse_change();
