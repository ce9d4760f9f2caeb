DROP TABLE run_live_sizes;
DROP TABLE consent_state_version;
DROP TABLE consent_state;
