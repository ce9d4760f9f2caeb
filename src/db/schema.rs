//! The portable schema, kept by hand: only types both SQLite and PostgreSQL support
//! (Text, BigInt, Integer, Double, Bool, Timestamp in UTC; ids as Text).

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        role -> Text,
        password_hash -> Text,
        token_version -> BigInt,
        disabled -> Bool,
        created_at -> Timestamp,
        password_changed_at -> Timestamp,
    }
}

diesel::table! {
    revoked_tokens (jti) {
        jti -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    server_secrets (name) {
        name -> Text,
        value -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    policy_versions (version) {
        version -> Text,
        name -> Text,
        content -> Text,
        first_loaded_at -> Timestamp,
    }
}

diesel::table! {
    trail (seq) {
        seq -> BigInt,
        occurred_at -> Timestamp,
        actor -> Text,
        action -> Text,
        subject -> Text,
        detail -> Text,
        policy_version -> Text,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    trail_head (id) {
        id -> Integer,
        seq -> BigInt,
        hash -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    users,
    revoked_tokens,
    server_secrets,
    policy_versions,
    trail,
    trail_head,
);
