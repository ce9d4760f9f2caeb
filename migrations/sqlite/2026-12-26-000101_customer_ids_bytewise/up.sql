-- PostgreSQL only: there a customer's external id and pseudonym take the "C" collation (see
-- migrations/postgres). SQLite's default collation, BINARY, already compares them byte by
-- byte.
SELECT 1;
