DROP TABLE trail_head;
DROP TABLE trail;
DROP TABLE policy_versions;
DROP TABLE server_secrets;
DROP TABLE revoked_tokens;
DROP TABLE users;
