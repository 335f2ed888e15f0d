-- carelog read models. Everything here is derived from JetStream and can be
-- rebuilt (`carelog rebuild <projection>`); nothing is edited by hand.

-- Where each projection stands in each stream. Written in the same
-- transaction as the read model rows it covers.
CREATE TABLE projection_checkpoints (
    projection    text        NOT NULL,
    stream        text        NOT NULL,
    last_sequence bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, stream)
);

-- The current demographic record of every patient (projection "patients").
CREATE TABLE patients (
    patient_id          uuid        PRIMARY KEY,
    nhs_number          text,
    family_name_upper   text        NOT NULL DEFAULT '',
    birth_date_earliest date,
    birth_date_latest   date,
    merged_into         uuid,
    version             bigint      NOT NULL,
    last_sequence       bigint      NOT NULL,
    updated_at          timestamptz NOT NULL,
    -- carelog.demographics.v1.Patient, protobuf-encoded, nothing withheld.
    resource            bytea       NOT NULL
);
CREATE INDEX patients_by_nhs_number ON patients (nhs_number) WHERE nhs_number IS NOT NULL;
CREATE INDEX patients_by_family_and_birth ON patients (family_name_upper, birth_date_earliest);
CREATE INDEX patients_by_family_prefix ON patients (family_name_upper text_pattern_ops, patient_id);

CREATE TABLE patient_addresses (
    patient_id uuid NOT NULL,
    position   int  NOT NULL,
    postcode   text NOT NULL,
    PRIMARY KEY (patient_id, position)
);
CREATE INDEX patient_addresses_by_postcode ON patient_addresses (postcode, patient_id);

-- Every version of every record: who, when, why, and the record after it.
CREATE TABLE patient_versions (
    patient_id         uuid        NOT NULL,
    version            bigint      NOT NULL,
    stream_sequence    bigint      NOT NULL,
    event_types        text[]      NOT NULL,
    actor_user_id      text        NOT NULL,
    actor_display_name text        NOT NULL,
    actor_role         text        NOT NULL,
    actor_organisation text        NOT NULL,
    purpose_of_use     text        NOT NULL,
    reason             text        NOT NULL,
    recorded_at        timestamptz NOT NULL,
    resource           bytea       NOT NULL,
    PRIMARY KEY (patient_id, version)
);

-- One row per event of every context: who, what, when, where, why, on
-- whose behalf (projection "audit_events").
CREATE TABLE audit_events (
    stream             text        NOT NULL,
    stream_sequence    bigint      NOT NULL,
    event_index        int         NOT NULL,
    event_id           uuid        NOT NULL,
    event_type         text        NOT NULL,
    context            text        NOT NULL,
    subject            text        NOT NULL,
    aggregate_id       text        NOT NULL,
    patient_id         text        NOT NULL,
    aggregate_version  bigint      NOT NULL,
    commit_id          uuid        NOT NULL,
    actor_user_id      text        NOT NULL,
    actor_display_name text        NOT NULL,
    actor_role         text        NOT NULL,
    actor_organisation text        NOT NULL,
    on_behalf_of       text        NOT NULL,
    purpose_of_use     text        NOT NULL,
    reason             text        NOT NULL,
    request_id         text        NOT NULL,
    correlation_id     text        NOT NULL,
    causation_id       text        NOT NULL,
    occurred_at        timestamptz NOT NULL,
    recorded_at        timestamptz NOT NULL,
    commit_hash        bytea       NOT NULL,
    previous_hash      bytea       NOT NULL,
    payload            bytea       NOT NULL,
    PRIMARY KEY (stream, stream_sequence, event_index)
);
CREATE INDEX audit_events_by_patient ON audit_events (patient_id, recorded_at);
CREATE INDEX audit_events_by_actor ON audit_events (actor_user_id, recorded_at);
