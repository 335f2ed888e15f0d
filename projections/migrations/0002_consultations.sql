-- Read models of the consultations projection. Derived from the
-- CARELOG_CONSULTATIONS stream; rebuilt with `carelog rebuild consultations`.

-- Every consultation as it stands, entries entered in error included
-- (the service leaves them out of current views).
CREATE TABLE consultations (
    consultation_id  uuid        PRIMARY KEY,
    patient_id       uuid        NOT NULL,
    start_time       timestamptz NOT NULL,
    entered_in_error boolean     NOT NULL,
    version          bigint      NOT NULL,
    last_sequence    bigint      NOT NULL,
    updated_at       timestamptz NOT NULL,
    -- carelog.consultations.v1.Consultation, protobuf-encoded.
    resource         bytea       NOT NULL
);
CREATE INDEX consultations_by_patient ON consultations (patient_id, start_time DESC, consultation_id DESC);

-- Every commit that changed a consultation: who, when, why, and the
-- consultation after it.
CREATE TABLE consultation_versions (
    consultation_id    uuid        NOT NULL,
    version            bigint      NOT NULL,
    patient_id         uuid        NOT NULL,
    stream_sequence    bigint      NOT NULL,
    event_types        text[]      NOT NULL,
    actor_user_id      text        NOT NULL,
    actor_display_name text        NOT NULL,
    actor_role         text        NOT NULL,
    actor_organisation text        NOT NULL,
    reason             text        NOT NULL,
    recorded_at        timestamptz NOT NULL,
    resource           bytea       NOT NULL,
    PRIMARY KEY (consultation_id, version)
);

-- The patient's problem list: problem entries that stand, with their
-- current status (after edits and amendments).
CREATE TABLE consultation_problems (
    patient_id     uuid        NOT NULL,
    entry_id       uuid        NOT NULL,
    status         int         NOT NULL,
    effective_time timestamptz NOT NULL,
    -- carelog.consultations.v1.Problem, protobuf-encoded.
    resource       bytea       NOT NULL,
    PRIMARY KEY (patient_id, entry_id)
);
CREATE INDEX consultation_problems_by_time ON consultation_problems (patient_id, effective_time DESC, entry_id DESC);

-- The most recent observation (by clinical time) of each concept.
CREATE TABLE latest_observations (
    patient_id     uuid        NOT NULL,
    concept_id     text        NOT NULL,
    effective_time timestamptz NOT NULL,
    -- carelog.consultations.v1.LatestObservation, protobuf-encoded.
    resource       bytea       NOT NULL,
    PRIMARY KEY (patient_id, concept_id)
);
