-- The verifiable audit log (projection "audit_log", ADR 0017): one log per
-- context stream, one entry per commit, in stream order. An entry is the
-- commit exactly as stored in JetStream (the bytes its chain hash and its
-- Merkle leaf hash are computed over). Rows are only ever inserted.

-- Leaf index of an entry = the number of the log's entries with a smaller
-- stream_sequence (the log is ordered by stream_sequence).
CREATE TABLE audit_log (
    log               text        NOT NULL,
    stream_sequence   bigint      NOT NULL,
    subject           text        NOT NULL,
    aggregate_id      text        NOT NULL,
    aggregate_version bigint      NOT NULL,
    recorded_at       timestamptz NOT NULL,
    -- The commit's canonical bytes (the Merkle entry).
    entry             bytea       NOT NULL,
    -- SHA-256(0x00 || entry), RFC 9162.
    leaf_hash         bytea       NOT NULL,
    PRIMARY KEY (log, stream_sequence)
);

-- Signed checkpoints of each log (C2SP tlog-checkpoint signed notes). Not
-- rebuilt: a signature made in the past is evidence, kept as it was made.
CREATE TABLE audit_checkpoints (
    id        bigserial   PRIMARY KEY,
    log       text        NOT NULL,
    origin    text        NOT NULL,
    tree_size bigint      NOT NULL,
    root_hash bytea       NOT NULL,
    signed_at timestamptz NOT NULL,
    note      text        NOT NULL
);
CREATE INDEX audit_checkpoints_latest ON audit_checkpoints (log, tree_size DESC, id DESC);
