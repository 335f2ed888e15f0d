//! Queries over the tasks read models: work lists (overdue first, then
//! priority, then due date) and task histories, with read-your-writes waits
//! and keyset paging behind opaque page tokens.

use carelog_kernel::ids::TaskId;
use carelog_kernel::store::ContextStream;
use carelog_kernel::{Aggregate as _, Failure};
use carelog_proto::tasks::v1 as pb;
use carelog_tasks::domain::TaskList;
use carelog_tasks::queries::{Consistency, PageRequest, TasksQueries, WorkList};
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

use crate::query::{self, bad_token, db, decode, key_of, limit, paged, parse};

/// The PostgreSQL implementation of the tasks query port.
#[derive(Debug, Clone)]
pub struct PgTasksQueries {
    pool: PgPool,
    stream: String,
}

impl PgTasksQueries {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            stream: ContextStream::new(TaskList::CONTEXT).name,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn caught_up(&self, at: Consistency) -> Result<(), Failure> {
        query::caught_up(&self.pool, super::NAME, &self.stream, at).await
    }
}

/// Terminal statuses as stored (never overdue).
const TERMINAL: [i32; 5] = [
    pb::TaskStatus::Rejected as i32,
    pb::TaskStatus::Cancelled as i32,
    pb::TaskStatus::Failed as i32,
    pb::TaskStatus::Completed as i32,
    pb::TaskStatus::EnteredInError as i32,
];

/// A work list's sort key: (not overdue, -priority, due date or infinity,
/// task id).
type ListKey = (i32, i32, String, Uuid);

fn parse_list_key(key: &str) -> Result<ListKey, Failure> {
    let mut parts = key.split(',');
    let mut next = || parts.next().ok_or_else(bad_token);
    let overdue = parse(next()?)?;
    let priority = parse(next()?)?;
    let due = next()?.to_owned();
    let id = parse(next()?)?;
    if due != "infinity" && chrono::NaiveDate::parse_from_str(&due, "%Y-%m-%d").is_err() {
        return Err(bad_token());
    }
    Ok((overdue, priority, due, id))
}

impl TasksQueries for PgTasksQueries {
    async fn get(&self, task_id: TaskId, at: Consistency) -> Result<Option<pb::Task>, Failure> {
        self.caught_up(at).await?;
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT resource FROM tasks WHERE task_id = $1")
                .bind(task_id.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        row.map(|(bytes,)| decode(&bytes)).transpose()
    }

    async fn list(
        &self,
        list: &WorkList,
        statuses: &[pb::TaskStatus],
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::Task>, String), Failure> {
        self.caught_up(at).await?;
        let statuses: Vec<i32> = statuses.iter().map(|s| *s as i32).collect();
        let (filter, value) = match list {
            WorkList::Owner(u) => ("owner_user_id = $1", u.clone()),
            WorkList::Team(t) => ("performer_team = $1", t.clone()),
            WorkList::Organisation(o) => ("performer_organisation = $1", o.clone()),
            WorkList::Patient(p) => ("patient_id = $1::uuid", p.to_string()),
        };
        // Overdue is judged on the UK day, the one a clinician sees, and a
        // page token is for the day it was given on: tomorrow the order
        // changes as tasks fall due.
        let today = carelog_kernel::date::uk_today();
        let fingerprint = query::fingerprint(&format!("{list:?}{statuses:?}{today}"));
        let after = match key_of(&fingerprint, page)? {
            Some(key) => parse_list_key(&key)?,
            None => (-1, i32::MIN, "-infinity".to_owned(), Uuid::nil()),
        };
        let limit = limit(page);
        let sql = format!(
            "SELECT k1, k2, k3::text, task_id, resource FROM ( \
               SELECT CASE WHEN due_date < $9 AND status <> ALL($3) THEN 0 ELSE 1 END AS k1, \
                      -priority AS k2, coalesce(due_date, 'infinity'::date) AS k3, task_id, resource \
               FROM tasks WHERE {filter} AND status = ANY($2)) t \
             WHERE (k1, k2, k3, task_id) > ($4, $5, $6::date, $7) \
             ORDER BY k1, k2, k3, task_id LIMIT $8"
        );
        let rows: Vec<(i32, i32, String, Uuid, Vec<u8>)> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(value)
            .bind(&statuses)
            .bind(&TERMINAL[..])
            .bind(after.0)
            .bind(after.1)
            .bind(&after.2)
            .bind(after.3)
            .bind(limit)
            .bind(today)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        paged(rows, page, &fingerprint, |(k1, k2, k3, id, bytes)| {
            Ok((decode(&bytes)?, format!("{k1},{k2},{k3},{id}")))
        })
    }

    async fn history(
        &self,
        task_id: TaskId,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::TaskHistoryEntry>, String), Failure> {
        self.caught_up(at).await?;
        let fingerprint = format!("history-{task_id}");
        let (after_seq, after_index) = match key_of(&fingerprint, page)? {
            None => (0i64, -1i32),
            Some(key) => query::parse_pair(&key, ':')?,
        };
        let limit = limit(page);
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            i64,
            i32,
            String,
            i32,
            i32,
            String,
            String,
            String,
            String,
            String,
            String,
            DateTime<Utc>,
            DateTime<Utc>,
        )> = sqlx::query_as(
            "SELECT stream_sequence, event_index, event_type, from_status, to_status, owner_user_id, \
             actor_user_id, actor_display_name, actor_role, actor_organisation, note, occurred_at, recorded_at \
             FROM task_history WHERE task_id = $1 AND (stream_sequence, event_index) > ($2, $3) \
             ORDER BY stream_sequence, event_index LIMIT $4",
        )
        .bind(task_id.as_uuid())
        .bind(after_seq)
        .bind(after_index)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        paged(
            rows,
            page,
            &fingerprint,
            |(
                seq,
                index,
                event_type,
                from,
                to,
                owner,
                user,
                name,
                role,
                org,
                note,
                occurred,
                recorded,
            )| {
                let entry = pb::TaskHistoryEntry {
                    event_type,
                    from_status: from,
                    to_status: to,
                    actor: Some(pb::Participant {
                        user_id: user,
                        display_name: name,
                        role,
                        organisation_ods: org,
                    }),
                    note,
                    occurred_at: Some(carelog_kernel::envelope::timestamp(occurred)),
                    recorded_at: Some(carelog_kernel::envelope::timestamp(recorded)),
                    stream_sequence: seq as u64,
                    owner_user_id: owner,
                };
                Ok((entry, format!("{seq}:{index}")))
            },
        )
    }
}
