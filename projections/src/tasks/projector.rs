//! Applies tasks commits to `tasks` and `task_history`, a batch at a time:
//! the touched task lists are read once, folded with the aggregate's own
//! `apply`, and written back with one statement per table.

use std::collections::{HashMap, HashSet};

use carelog_kernel::Aggregate as _;
use carelog_kernel::envelope::{StoredCommit, from_timestamp, timestamp};
use carelog_kernel::store::ContextStream;
use carelog_proto::tasks::v1 as pb;
use carelog_tasks::domain::TaskList;
use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use prost::Message as _;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projection::{Projection, ProjectionError, aggregate_ids, stored_resource};

#[derive(Debug, Default)]
pub struct TasksProjection;

#[derive(Default)]
struct History {
    task_id: Vec<Uuid>,
    stream_sequence: Vec<i64>,
    event_index: Vec<i32>,
    event_type: Vec<String>,
    from_status: Vec<i32>,
    to_status: Vec<i32>,
    owner_user_id: Vec<String>,
    actor_user_id: Vec<String>,
    actor_display_name: Vec<String>,
    actor_role: Vec<String>,
    actor_organisation: Vec<String>,
    note: Vec<String>,
    occurred_at: Vec<DateTime<Utc>>,
    recorded_at: Vec<DateTime<Utc>>,
}

impl Projection for TasksProjection {
    fn name(&self) -> &'static str {
        super::NAME
    }

    fn streams(&self) -> Vec<String> {
        vec![ContextStream::new(TaskList::CONTEXT).name]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["tasks", "task_history"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        _stream: &'a str,
        batch: &'a [StoredCommit],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        async move {
            if batch.is_empty() {
                return Ok(());
            }
            let ids = aggregate_ids(batch)?;
            let rows: Vec<(Uuid, Vec<u8>)> =
                sqlx::query_as("SELECT aggregate_id, resource FROM tasks WHERE aggregate_id = ANY($1)")
                    .bind(&ids)
                    .fetch_all(&mut *tx)
                    .await?;
            let mut lists: HashMap<Uuid, TaskList> = HashMap::new();
            for (id, bytes) in rows {
                let task = stored_resource::<pb::Task>("task", id, &bytes)?;
                lists
                    .entry(id)
                    .or_default()
                    .tasks
                    .insert(task.task_id.clone(), task);
            }
            let mut history = History::default();
            let mut touched: Vec<(Uuid, String)> = Vec::new();
            let mut seen: HashSet<(Uuid, String)> = HashSet::new();
            for (stored, id) in batch.iter().zip(&ids) {
                let list = lists.entry(*id).or_default();
                let recorded_at = stored.recorded_at();
                let actor = stored.commit.actor.clone().unwrap_or_default();
                for (index, record) in stored.commit.events.iter().enumerate() {
                    let event = pb::Event::decode(record.payload.as_slice())
                        .map_err(|e| ProjectionError::unapplicable(stored, e))?;
                    if event.event.is_none() {
                        return Err(ProjectionError::unapplicable(
                            stored,
                            format!("unknown event type {}", record.event_type),
                        ));
                    }
                    let task_id = TaskList::task_of(&event).to_owned();
                    let task_uuid = Uuid::parse_str(&task_id)
                        .map_err(|e| ProjectionError::unapplicable(stored, e))?;
                    let before = list.task(&task_id).map_or(0, |t| t.status);
                    list.apply(&event);
                    let Some(task) = list.tasks.get_mut(&task_id) else {
                        return Err(ProjectionError::unapplicable(
                            stored,
                            format!("{} names unknown task {task_id}", record.event_type),
                        ));
                    };
                    task.stream_sequence = stored.stream_sequence;
                    task.updated_at = Some(timestamp(recorded_at));
                    history.task_id.push(task_uuid);
                    history.stream_sequence.push(stored.stream_sequence as i64);
                    history.event_index.push(index as i32);
                    history.event_type.push(record.event_type.clone());
                    history.from_status.push(before);
                    history.to_status.push(task.status);
                    history.owner_user_id.push(task.owner_user_id.clone());
                    history.actor_user_id.push(actor.user_id.clone());
                    history.actor_display_name.push(actor.display_name.clone());
                    history.actor_role.push(actor.role.clone());
                    history.actor_organisation.push(actor.organisation_ods.clone());
                    history.note.push(TaskList::note_of(&event).to_owned());
                    history
                        .occurred_at
                        .push(from_timestamp(record.occurred_at.as_ref()).unwrap_or(recorded_at));
                    history.recorded_at.push(recorded_at);
                    if seen.insert((*id, task_id.clone())) {
                        touched.push((*id, task_id));
                    }
                }
            }
            upsert(tx, &touched, &lists).await?;
            sqlx::query(
                "INSERT INTO task_history (task_id, stream_sequence, event_index, event_type, from_status, \
                 to_status, owner_user_id, actor_user_id, actor_display_name, actor_role, actor_organisation, \
                 note, occurred_at, recorded_at) \
                 SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::int[], $4::text[], $5::int[], $6::int[], \
                 $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::timestamptz[], \
                 $14::timestamptz[]) ON CONFLICT (task_id, stream_sequence, event_index) DO NOTHING",
            )
            .bind(history.task_id)
            .bind(history.stream_sequence)
            .bind(history.event_index)
            .bind(history.event_type)
            .bind(history.from_status)
            .bind(history.to_status)
            .bind(history.owner_user_id)
            .bind(history.actor_user_id)
            .bind(history.actor_display_name)
            .bind(history.actor_role)
            .bind(history.actor_organisation)
            .bind(history.note)
            .bind(history.occurred_at)
            .bind(history.recorded_at)
            .execute(&mut *tx)
            .await?;
            Ok(())
        }
        .boxed()
    }
}

/// Writes the current rows of the touched tasks.
async fn upsert(
    tx: &mut PgConnection,
    touched: &[(Uuid, String)],
    lists: &HashMap<Uuid, TaskList>,
) -> Result<(), ProjectionError> {
    use pb::performer::Performer as P;
    let mut task_id = Vec::with_capacity(touched.len());
    let mut aggregate_id = Vec::with_capacity(touched.len());
    let mut patient_id = Vec::with_capacity(touched.len());
    let mut status = Vec::with_capacity(touched.len());
    let mut priority = Vec::with_capacity(touched.len());
    let mut owner = Vec::with_capacity(touched.len());
    let mut team = Vec::with_capacity(touched.len());
    let mut organisation = Vec::with_capacity(touched.len());
    let mut due = Vec::with_capacity(touched.len());
    let mut version = Vec::with_capacity(touched.len());
    let mut sequence = Vec::with_capacity(touched.len());
    let mut updated = Vec::with_capacity(touched.len());
    let mut resource = Vec::with_capacity(touched.len());
    for (aggregate, id) in touched {
        let Some(task) = lists.get(aggregate).and_then(|l| l.task(id)) else {
            continue;
        };
        let Ok(uuid) = Uuid::parse_str(id) else {
            continue;
        };
        task_id.push(uuid);
        aggregate_id.push(*aggregate);
        patient_id.push(Uuid::parse_str(&task.patient_id).ok());
        status.push(task.status);
        priority.push(task.priority);
        owner.push(task.owner_user_id.clone());
        let performer = task.performer.as_ref().and_then(|p| p.performer.as_ref());
        team.push(match performer {
            Some(P::TeamId(t)) => t.clone(),
            _ => String::new(),
        });
        organisation.push(match performer {
            Some(P::OrganisationOds(o)) => o.clone(),
            _ => String::new(),
        });
        due.push(
            carelog_kernel::date::PartialDate::from_proto(task.due_date.as_ref())
                .ok()
                .map(|d| d.earliest()),
        );
        version.push(task.version);
        sequence.push(task.stream_sequence as i64);
        updated.push(from_timestamp(task.updated_at.as_ref()).unwrap_or_default());
        resource.push(task.encode_to_vec());
    }
    sqlx::query(
        "INSERT INTO tasks (task_id, aggregate_id, patient_id, status, priority, owner_user_id, performer_team, \
         performer_organisation, due_date, version, last_sequence, updated_at, resource) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], $5::int[], $6::text[], $7::text[], \
         $8::text[], $9::date[], $10::bigint[], $11::bigint[], $12::timestamptz[], $13::bytea[]) \
         ON CONFLICT (task_id) DO UPDATE SET status = EXCLUDED.status, priority = EXCLUDED.priority, \
         owner_user_id = EXCLUDED.owner_user_id, performer_team = EXCLUDED.performer_team, \
         performer_organisation = EXCLUDED.performer_organisation, due_date = EXCLUDED.due_date, \
         version = EXCLUDED.version, last_sequence = EXCLUDED.last_sequence, updated_at = EXCLUDED.updated_at, \
         resource = EXCLUDED.resource",
    )
    .bind(task_id)
    .bind(aggregate_id)
    .bind(patient_id)
    .bind(status)
    .bind(priority)
    .bind(owner)
    .bind(team)
    .bind(organisation)
    .bind(due)
    .bind(version)
    .bind(sequence)
    .bind(updated)
    .bind(resource)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
