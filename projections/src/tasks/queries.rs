//! Queries over the tasks read models: work lists (overdue first, then
//! priority, then due date) and task histories, with read-your-writes waits
//! and keyset paging behind opaque page tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carelog_kernel::ids::TaskId;
use carelog_kernel::store::ContextStream;
use carelog_kernel::{Aggregate as _, Failure};
use carelog_proto::tasks::v1 as pb;
use carelog_tasks::domain::TaskList;
use carelog_tasks::queries::{Consistency, PageRequest, TasksQueries, WorkList};
use chrono::{DateTime, Utc};
use prost::Message as _;
use sqlx::{AssertSqlSafe, PgPool};
use tonic::Code;
use uuid::Uuid;

use crate::checkpoint;

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
        let ok = checkpoint::wait_for(
            &self.pool,
            super::NAME,
            &self.stream,
            at.min_sequence,
            at.deadline,
        )
        .await
        .map_err(db)?;
        if ok {
            Ok(())
        } else {
            Err(Failure::new(
                Code::DeadlineExceeded,
                "NOT_YET_CONSISTENT",
                format!(
                    "the read model has not reached stream sequence {} within the deadline",
                    at.min_sequence
                ),
            )
            .with("minSequence", at.min_sequence.to_string()))
        }
    }
}

fn db(e: sqlx::Error) -> Failure {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            Failure::unavailable("the read model database is unavailable")
        }
        other => Failure::internal(&other),
    }
}

fn decode(bytes: &[u8]) -> Result<pb::Task, Failure> {
    pb::Task::decode(bytes).map_err(|e| Failure::internal(&e))
}

fn bad_token() -> Failure {
    Failure::invalid_field("page_token", "is not a page token of this query")
}

/// An opaque page token: the query's fingerprint and the last key served.
fn token(fingerprint: &str, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{fingerprint}|{key}"))
}

/// The key a page token carries (None on the first page).
fn key_of(fingerprint: &str, page: &PageRequest) -> Result<Option<String>, Failure> {
    if page.token.is_empty() {
        return Ok(None);
    }
    let text = URL_SAFE_NO_PAD
        .decode(&page.token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad_token)?;
    let (f, key) = text.split_once('|').ok_or_else(bad_token)?;
    if f != fingerprint {
        return Err(bad_token());
    }
    Ok(Some(key.to_owned()))
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
    let overdue = next()?.parse().map_err(|_| bad_token())?;
    let priority = next()?.parse().map_err(|_| bad_token())?;
    let due = next()?.to_owned();
    let id = Uuid::parse_str(next()?).map_err(|_| bad_token())?;
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
        let fingerprint = {
            let text = format!("{list:?}{statuses:?}");
            let hash = carelog_kernel::envelope::digest(text.as_bytes());
            hash[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let after = match key_of(&fingerprint, page)? {
            Some(key) => parse_list_key(&key)?,
            None => (-1, i32::MIN, "-infinity".to_owned(), Uuid::nil()),
        };
        let limit = i64::from(page.size) + 1;
        let sql = format!(
            "SELECT k1, k2, k3::text, task_id, resource FROM ( \
               SELECT CASE WHEN due_date < current_date AND status <> ALL($3) THEN 0 ELSE 1 END AS k1, \
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
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let more = rows.len() as i64 == limit;
        let mut tasks = Vec::with_capacity(rows.len());
        let mut last = None;
        for (k1, k2, k3, id, bytes) in rows.into_iter().take(page.size as usize) {
            tasks.push(decode(&bytes)?);
            last = Some(format!("{k1},{k2},{k3},{id}"));
        }
        let next = match (more, last) {
            (true, Some(key)) => token(&fingerprint, &key),
            _ => String::new(),
        };
        Ok((tasks, next))
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
            Some(key) => {
                let (s, i) = key.split_once(':').ok_or_else(bad_token)?;
                (
                    s.parse().map_err(|_| bad_token())?,
                    i.parse().map_err(|_| bad_token())?,
                )
            }
        };
        let limit = i64::from(page.size) + 1;
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
        let more = rows.len() as i64 == limit;
        let mut entries = Vec::with_capacity(rows.len());
        let mut last = None;
        for (
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
        ) in rows.into_iter().take(page.size as usize)
        {
            entries.push(pb::TaskHistoryEntry {
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
            });
            last = Some(format!("{seq}:{index}"));
        }
        let next = match (more, last) {
            (true, Some(key)) => token(&fingerprint, &key),
            _ => String::new(),
        };
        Ok((entries, next))
    }
}
