-- Medications read models (projection "medications"): the allergy list, the
-- current medication list and the issue history. Derived from the
-- CARELOG_MEDICATIONS stream; `carelog rebuild medications` recreates them.

-- Every allergy and intolerance; entered-in-error rows stay (history) but
-- no current view lists them.
CREATE TABLE medication_allergies (
    allergy_id       uuid        PRIMARY KEY,
    patient_id       uuid        NOT NULL,
    -- active | resolved | entered_in_error
    status           text        NOT NULL,
    -- Stream sequence of the commit that recorded it (list order).
    created_sequence bigint      NOT NULL,
    last_sequence    bigint      NOT NULL,
    -- carelog.medications.v1.Allergy, protobuf-encoded.
    resource         bytea       NOT NULL
);
CREATE INDEX medication_allergies_by_patient ON medication_allergies (patient_id, status, created_sequence, allergy_id);

-- Every authorisation with its issue counts, last issue and review date.
CREATE TABLE medication_authorisations (
    authorisation_id uuid        PRIMARY KEY,
    patient_id       uuid        NOT NULL,
    -- active | discontinued
    status           text        NOT NULL,
    product_code     text        NOT NULL,
    issues_made      int         NOT NULL,
    last_issued_on   date,
    review_date      date,
    expiry_date      date,
    created_sequence bigint      NOT NULL,
    last_sequence    bigint      NOT NULL,
    -- carelog.medications.v1.Authorisation, protobuf-encoded.
    resource         bytea       NOT NULL
);
CREATE INDEX medication_authorisations_by_patient ON medication_authorisations (patient_id, created_sequence, authorisation_id);
CREATE INDEX medication_authorisations_review_due ON medication_authorisations (review_date) WHERE status = 'active';

-- Every issue, append-only.
CREATE TABLE medication_issues (
    issue_id         uuid        PRIMARY KEY,
    patient_id       uuid        NOT NULL,
    authorisation_id uuid        NOT NULL,
    issue_number     int         NOT NULL,
    issued_on        date        NOT NULL,
    stream_sequence  bigint      NOT NULL,
    -- carelog.medications.v1.Issue, protobuf-encoded.
    resource         bytea       NOT NULL
);
CREATE INDEX medication_issues_by_patient ON medication_issues (patient_id, stream_sequence, issue_id);
CREATE INDEX medication_issues_by_authorisation ON medication_issues (authorisation_id, issue_number);
