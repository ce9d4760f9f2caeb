-- A covering index for the consent state of a whole population at an instant: the scan of one
-- purpose's events up to the instant reads only this index, in order, and never the table
-- (on SQLite, fetching each row by rowid made it four times slower at a million customers).
-- It replaces consent_events_purpose, of which it is an extension.
DROP INDEX consent_events_purpose;
CREATE INDEX consent_events_state ON consent_events (purpose, recorded_at, customer_id, status, id);
