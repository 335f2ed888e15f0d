-- Tasks read models (projection "tasks"): every task as it stands, and the
-- history of every change of every task. Rebuilt from CARELOG_TASKS.

-- The current task. Status and priority hold the carelog.tasks.v1 enum
-- numbers; performer columns are '' when the task has no such performer.
CREATE TABLE tasks (
    task_id                uuid        PRIMARY KEY,
    -- The partition: the patient, or the task itself when it has none.
    aggregate_id           uuid        NOT NULL,
    patient_id             uuid,
    status                 int         NOT NULL,
    priority               int         NOT NULL,
    owner_user_id          text        NOT NULL,
    performer_team         text        NOT NULL,
    performer_organisation text        NOT NULL,
    due_date               date,
    version                bigint      NOT NULL,
    last_sequence          bigint      NOT NULL,
    updated_at             timestamptz NOT NULL,
    -- carelog.tasks.v1.Task, protobuf-encoded.
    resource               bytea       NOT NULL
);
CREATE INDEX tasks_by_aggregate ON tasks (aggregate_id);
CREATE INDEX tasks_by_owner ON tasks (owner_user_id, status) WHERE owner_user_id <> '';
CREATE INDEX tasks_by_team ON tasks (performer_team, status) WHERE performer_team <> '';
CREATE INDEX tasks_by_organisation ON tasks (performer_organisation, status)
    WHERE performer_organisation <> '';
CREATE INDEX tasks_by_patient ON tasks (patient_id, status) WHERE patient_id IS NOT NULL;

-- One row per event of a task: the status before and after, who, when, why.
CREATE TABLE task_history (
    task_id            uuid        NOT NULL,
    stream_sequence    bigint      NOT NULL,
    event_index        int         NOT NULL,
    event_type         text        NOT NULL,
    from_status        int         NOT NULL,
    to_status          int         NOT NULL,
    owner_user_id      text        NOT NULL,
    actor_user_id      text        NOT NULL,
    actor_display_name text        NOT NULL,
    actor_role         text        NOT NULL,
    actor_organisation text        NOT NULL,
    note               text        NOT NULL,
    occurred_at        timestamptz NOT NULL,
    recorded_at        timestamptz NOT NULL,
    PRIMARY KEY (task_id, stream_sequence, event_index)
);
