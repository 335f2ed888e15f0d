-- Sharing read models (projection "sharing"): organisation groups and their
-- members, and sharing agreements for direct care. Derived from
-- CARELOG_SHARING; the access guard reads them (ADR 0020).

CREATE TABLE organisation_groups (
    group_id      uuid        PRIMARY KEY,
    name          text        NOT NULL,
    version       bigint      NOT NULL,
    last_sequence bigint      NOT NULL,
    updated_at    timestamptz NOT NULL,
    -- carelog.sharing.v1.OrganisationGroup, protobuf-encoded.
    resource      bytea       NOT NULL
);

CREATE TABLE organisation_group_members (
    group_id         uuid NOT NULL,
    organisation_ods text NOT NULL,
    PRIMARY KEY (group_id, organisation_ods)
);
CREATE INDEX organisation_group_members_by_ods ON organisation_group_members (organisation_ods);

-- A party is an organisation (kind 'organisation', its ODS code) or a
-- group (kind 'group', its id).
CREATE TABLE sharing_agreements (
    agreement_id  uuid        PRIMARY KEY,
    from_kind     text        NOT NULL,
    from_id       text        NOT NULL,
    to_kind       text        NOT NULL,
    to_id         text        NOT NULL,
    valid_from    timestamptz NOT NULL,
    valid_until   timestamptz,
    ended_at      timestamptz,
    version       bigint      NOT NULL,
    last_sequence bigint      NOT NULL,
    updated_at    timestamptz NOT NULL,
    -- carelog.sharing.v1.SharingAgreement, protobuf-encoded.
    resource      bytea       NOT NULL
);
CREATE INDEX sharing_agreements_to ON sharing_agreements (to_kind, to_id);
