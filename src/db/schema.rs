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

diesel::table! {
    customers (id) {
        id -> BigInt,
        external_id -> Text,
        pseudonym -> Text,
        attributes -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    customer_protected (customer_id) {
        customer_id -> BigInt,
        attributes -> Text,
    }
}

diesel::table! {
    attribute_columns (name) {
        name -> Text,
        kind -> Text,
        protected -> Bool,
        first_seen_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    transactions (id) {
        id -> BigInt,
        customer_id -> BigInt,
        occurred_at -> Timestamp,
        amount -> Double,
        quantity -> Nullable<BigInt>,
        order_id -> Nullable<Text>,
        imported_at -> Timestamp,
    }
}

diesel::table! {
    consent_events (id) {
        id -> BigInt,
        customer_id -> BigInt,
        purpose -> Text,
        status -> Text,
        recorded_at -> Timestamp,
        source -> Nullable<Text>,
        notice_version -> Nullable<Text>,
        recorded_by -> Text,
        entered_at -> Timestamp,
    }
}

diesel::table! {
    erased_customers (pseudonym) {
        pseudonym -> Text,
        erased_at -> Timestamp,
    }
}

diesel::table! {
    dsr_requests (id) {
        id -> Text,
        kind -> Text,
        subject -> Text,
        requested_by -> Text,
        occurred_at -> Timestamp,
        detail -> Text,
    }
}

diesel::table! {
    imports (id) {
        id -> Text,
        kind -> Text,
        file_name -> Text,
        rows_read -> BigInt,
        rows_imported -> BigInt,
        rows_rejected -> BigInt,
        imported_by -> Text,
        occurred_at -> Timestamp,
        report -> Text,
    }
}

diesel::table! {
    segmentation_runs (id) {
        id -> BigInt,
        algorithm -> Text,
        settings -> Text,
        purpose -> Text,
        policy_version -> Text,
        status -> Text,
        stage -> Text,
        progress -> Double,
        error -> Nullable<Text>,
        population_at -> Nullable<Timestamp>,
        included -> Nullable<BigInt>,
        excluded -> Nullable<Text>,
        summary -> Nullable<Text>,
        previous_run_id -> Nullable<BigInt>,
        stability_ari -> Nullable<Double>,
        created_by -> Text,
        created_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
        published_by -> Nullable<Text>,
        published_at -> Nullable<Timestamp>,
        model -> Nullable<Text>,
        worker_id -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        claimed_at -> Nullable<Timestamp>,
        attempts -> Integer,
    }
}

diesel::table! {
    segments (run_id, segment) {
        run_id -> BigInt,
        segment -> Integer,
        name -> Text,
        proposed_name -> Text,
        size -> BigInt,
        profile -> Text,
        valuation -> Text,
    }
}

diesel::table! {
    segment_memberships (run_id, customer_id) {
        run_id -> BigInt,
        customer_id -> BigInt,
        segment -> Integer,
        detail -> Nullable<Text>,
    }
}

diesel::table! {
    segment_strategies (run_id, segment) {
        run_id -> BigInt,
        segment -> Integer,
        channel -> Text,
        offer -> Text,
        service_level -> Text,
        favourable -> Bool,
        recorded_by -> Text,
        recorded_at -> Timestamp,
    }
}

diesel::table! {
    disclosures (id) {
        id -> BigInt,
        kind -> Text,
        run_id -> BigInt,
        segment -> Nullable<Integer>,
        channel -> Nullable<Text>,
        purposes -> Text,
        disclosed_at -> Timestamp,
        disclosed_by -> Text,
    }
}

diesel::table! {
    disclosure_members (disclosure_id, customer_id) {
        disclosure_id -> BigInt,
        customer_id -> BigInt,
    }
}

diesel::table! {
    fairness_audits (id) {
        id -> BigInt,
        run_id -> BigInt,
        policy_version -> Text,
        verdict -> Text,
        reason -> Text,
        members -> BigInt,
        strategies -> Text,
        report -> Text,
        created_by -> Text,
        created_at -> Timestamp,
        duration_ms -> BigInt,
    }
}

diesel::table! {
    audit_overrides (id) {
        id -> BigInt,
        audit_id -> BigInt,
        overridden_by -> Text,
        justification -> Text,
        overridden_at -> Timestamp,
    }
}

diesel::table! {
    audit_signoffs (id) {
        id -> BigInt,
        audit_id -> BigInt,
        seq -> Integer,
        signed_by -> Text,
        signer_role -> Text,
        signed_at -> Timestamp,
        statement -> Text,
        policy_version -> Text,
        report_json -> Text,
        report_html -> Text,
        content_hash -> Text,
        html_hash -> Text,
        trail_seq -> BigInt,
    }
}

diesel::table! {
    kpi_evaluations (id) {
        id -> BigInt,
        kpi -> Text,
        definition_version -> Text,
        policy_version -> Text,
        run_id -> Nullable<BigInt>,
        segment -> Text,
        period_kind -> Text,
        period_start -> Date,
        period_end -> Date,
        value -> Nullable<Double>,
        undefined_reason -> Nullable<Text>,
        basis -> BigInt,
        target -> Nullable<Double>,
        alert_threshold -> Nullable<Double>,
        status -> Text,
        evaluated_at -> Timestamp,
        evaluated_by -> Text,
        segment_number -> Nullable<Integer>,
        worker_id -> Nullable<Text>,
        claim_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    schedule_claims (id) {
        id -> BigInt,
        task -> Text,
        period_kind -> Text,
        period_start -> Date,
        evaluation -> Text,
        worker_id -> Text,
        claimed_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    sign_in_throttle (subject) {
        subject -> Text,
        failures -> Integer,
        last_failure -> Timestamp,
        locked_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    consent_state (customer_id, purpose) {
        customer_id -> BigInt,
        purpose -> Text,
        granted -> Bool,
        recorded_at -> Timestamp,
        event_id -> BigInt,
    }
}

diesel::table! {
    consent_state_version (id) {
        id -> Integer,
        version -> BigInt,
    }
}

diesel::table! {
    run_live_sizes (run_id) {
        run_id -> BigInt,
        state_version -> BigInt,
        valid_until -> Timestamp,
        sizes -> Text,
    }
}

diesel::table! {
    drift_measurements (run_id) {
        run_id -> BigInt,
        day -> Date,
        consent_version -> BigInt,
        data_seq -> BigInt,
        next_transaction -> BigInt,
        policy_version -> Text,
        valid_until -> Nullable<Timestamp>,
        measured_at -> Timestamp,
        result -> Text,
    }
}

diesel::table! {
    run_reach (run_id) {
        run_id -> BigInt,
        state_version -> BigInt,
        policy_version -> Text,
        valid_until -> Timestamp,
        reach -> Text,
    }
}

diesel::joinable!(customer_protected -> customers (customer_id));
diesel::joinable!(transactions -> customers (customer_id));
diesel::joinable!(consent_events -> customers (customer_id));
diesel::joinable!(segments -> segmentation_runs (run_id));
diesel::joinable!(disclosure_members -> disclosures (disclosure_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    revoked_tokens,
    server_secrets,
    policy_versions,
    trail,
    trail_head,
    customers,
    customer_protected,
    attribute_columns,
    transactions,
    consent_events,
    erased_customers,
    dsr_requests,
    imports,
    segmentation_runs,
    segments,
    segment_memberships,
    segment_strategies,
    fairness_audits,
    audit_overrides,
    audit_signoffs,
    disclosures,
    disclosure_members,
    kpi_evaluations,
    schedule_claims,
    sign_in_throttle,
    consent_state,
    consent_state_version,
    run_live_sizes,
    drift_measurements,
    run_reach,
);
