-- Staff accounts. Emails are stored lower-cased; roles name a role of the policy.
CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    -- Bumped on password change, role change and disabling: every token carrying an older
    -- version stops working at once.
    token_version BIGINT NOT NULL DEFAULT 0,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    password_changed_at TIMESTAMP NOT NULL
);

-- Tokens signed out before they expired; rows are pruned once past expires_at.
CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

-- Secrets the server generated for itself on first run (the token signing key).
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- Every policy version the server has run under, with its full text, so any stored version
-- hash can be resolved to the rules that applied.
CREATE TABLE policy_versions (
    version TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    content TEXT NOT NULL,
    first_loaded_at TIMESTAMP NOT NULL
);

-- The append-only, hash-chained trail. hash = SHA-256(prev_hash, seq, and every field).
CREATE TABLE trail (
    seq BIGINT PRIMARY KEY NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX trail_action ON trail (action);
CREATE INDEX trail_actor ON trail (actor);
CREATE INDEX trail_occurred_at ON trail (occurred_at);

-- The chain's head, updated with every append: it makes removing the newest entries
-- detectable, and its row lock serialises appenders on both backends.
CREATE TABLE trail_head (
    id INTEGER PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO trail_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
