DROP INDEX consent_events_state;
CREATE INDEX consent_events_purpose ON consent_events (purpose, recorded_at);
