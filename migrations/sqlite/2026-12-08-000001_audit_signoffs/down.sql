DROP TABLE audit_signoffs;
