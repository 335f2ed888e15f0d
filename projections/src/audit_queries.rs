//! The questions a medico-legal request asks of the `audit_events` read
//! model: who accessed a patient's record (`ListPatientAccess`) and what a
//! user did across patients (`ListActorActivity`), oldest first, within a
//! time range, paged by keyset behind opaque page tokens.
//!
//! Access events are read generically: the `RecordAccessed` is decoded from
//! the stored payload and returned whole, so fields added to it later reach
//! the caller without a change here.

use carelog_demographics::queries::{Consistency, PageRequest};
use carelog_kernel::Failure;
use carelog_kernel::access::{ACCESS, RECORD_ACCESSED};
use carelog_kernel::envelope::timestamp;
use carelog_kernel::store::ContextStream;
use carelog_proto::access::v1::RecordAccessed;
use carelog_proto::audit::v1 as pb;
use carelog_proto::kernel::v1::Actor;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::query::{self, bad_token, db, decode, key_of, limit, paged};

/// When an entry was recorded: `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// The keyset position of a row: the order of every audit query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    recorded_at: DateTime<Utc>,
    stream: String,
    stream_sequence: i64,
    event_index: i32,
}

impl Key {
    fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.recorded_at.timestamp_micros(),
            self.stream,
            self.stream_sequence,
            self.event_index
        )
    }

    fn decode(text: &str) -> Result<Self, Failure> {
        let mut parts = text.split('|');
        let mut next = || parts.next().ok_or_else(bad_token);
        let micros: i64 = query::parse(next()?)?;
        let stream = next()?.to_owned();
        let stream_sequence = query::parse(next()?)?;
        let event_index = query::parse(next()?)?;
        Ok(Self {
            recorded_at: DateTime::from_timestamp_micros(micros).ok_or_else(bad_token)?,
            stream,
            stream_sequence,
            event_index,
        })
    }
}

/// The columns every audit query reads, in this order.
const COLUMNS: &str = "recorded_at, stream, stream_sequence, event_index, context, event_type, \
    patient_id, aggregate_id, actor_user_id, actor_display_name, actor_role, actor_organisation, \
    purpose_of_use, on_behalf_of, reason, correlation_id, commit_id, event_id, payload";

/// After the page token's key (or from the start), within the range, in
/// keyset order; `$1` is the query's own filter value.
const PAGE: &str = "AND ($2::timestamptz IS NULL OR recorded_at >= $2) \
    AND ($3::timestamptz IS NULL OR recorded_at < $3) \
    AND ($4::timestamptz IS NULL OR (recorded_at, stream, stream_sequence, event_index) > ($4, $5, $6, $7)) \
    ORDER BY recorded_at, stream, stream_sequence, event_index LIMIT $8";

#[derive(sqlx::FromRow)]
struct Row {
    recorded_at: DateTime<Utc>,
    stream: String,
    stream_sequence: i64,
    event_index: i32,
    context: String,
    event_type: String,
    patient_id: String,
    aggregate_id: String,
    actor_user_id: String,
    actor_display_name: String,
    actor_role: String,
    actor_organisation: String,
    purpose_of_use: String,
    on_behalf_of: String,
    reason: String,
    correlation_id: String,
    commit_id: uuid::Uuid,
    event_id: uuid::Uuid,
    payload: Vec<u8>,
}

impl Row {
    fn key(&self) -> String {
        Key {
            recorded_at: self.recorded_at,
            stream: self.stream.clone(),
            stream_sequence: self.stream_sequence,
            event_index: self.event_index,
        }
        .encode()
    }

    fn position(&self) -> pb::AuditPosition {
        pb::AuditPosition {
            stream: self.stream.clone(),
            stream_sequence: self.stream_sequence as u64,
            event_index: self.event_index,
        }
    }

    /// The access event a row holds, if it is one.
    fn access(&self) -> Result<Option<RecordAccessed>, Failure> {
        if self.context == ACCESS && self.event_type == RECORD_ACCESSED {
            decode(&self.payload).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// One page of rows where `filter` (a condition on `$1`) holds.
async fn page_of(
    pool: &PgPool,
    fingerprint: &str,
    filter: &str,
    value: &str,
    range: TimeRange,
    page: &PageRequest,
) -> Result<Vec<Row>, Failure> {
    let after = key_of(fingerprint, page)?
        .map(|k| Key::decode(&k))
        .transpose()?;
    let sql = format!("SELECT {COLUMNS} FROM audit_events WHERE {filter} {PAGE}");
    sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql))
        .bind(value)
        .bind(range.from)
        .bind(range.to)
        .bind(after.as_ref().map(|k| k.recorded_at))
        .bind(after.as_ref().map(|k| k.stream.clone()))
        .bind(after.as_ref().map(|k| k.stream_sequence))
        .bind(after.as_ref().map(|k| k.event_index))
        .bind(limit(page))
        .fetch_all(pool)
        .await
        .map_err(db)
}

/// The page token's fingerprint: the query, its filter value and its range
/// (a token is refused by any other query).
fn fingerprint(query: &str, value: &str, range: TimeRange) -> String {
    query::fingerprint(&format!("{query}|{value}|{range:?}"))
}

/// Every access event recorded for `patient_id`, oldest first.
pub async fn patient_access(
    pool: &PgPool,
    patient_id: &str,
    range: TimeRange,
    page: &PageRequest,
    at: Consistency,
) -> Result<(Vec<pb::PatientAccess>, String), Failure> {
    let stream = ContextStream::new(ACCESS).name;
    query::caught_up(pool, crate::audit::NAME, &stream, at).await?;
    let fingerprint = fingerprint("patient-access", patient_id, range);
    let rows = page_of(
        pool,
        &fingerprint,
        "patient_id = $1 AND context = 'access'",
        patient_id,
        range,
        page,
    )
    .await?;
    paged(rows, page, &fingerprint, |row| {
        let access = pb::PatientAccess {
            position: Some(row.position()),
            recorded_at: Some(timestamp(row.recorded_at)),
            access: row.access()?,
        };
        Ok((access, row.key()))
    })
}

/// Everything `user_id` did, reads and writes, oldest first.
pub async fn actor_activity(
    pool: &PgPool,
    user_id: &str,
    range: TimeRange,
    page: &PageRequest,
) -> Result<(Vec<pb::ActorActivity>, String), Failure> {
    let fingerprint = fingerprint("actor-activity", user_id, range);
    let rows = page_of(
        pool,
        &fingerprint,
        "actor_user_id = $1",
        user_id,
        range,
        page,
    )
    .await?;
    activities(rows, page, &fingerprint)
}

/// Every event written to `patient_id`'s record (its changes, no reads),
/// oldest first: who, when, why and what kind of change.
pub async fn patient_changes(
    pool: &PgPool,
    patient_id: &str,
    range: TimeRange,
    page: &PageRequest,
) -> Result<(Vec<pb::ActorActivity>, String), Failure> {
    let fingerprint = fingerprint("patient-changes", patient_id, range);
    let rows = page_of(
        pool,
        &fingerprint,
        "patient_id = $1 AND context <> 'access'",
        patient_id,
        range,
        page,
    )
    .await?;
    activities(rows, page, &fingerprint)
}

fn activities(
    rows: Vec<Row>,
    page: &PageRequest,
    fingerprint: &str,
) -> Result<(Vec<pb::ActorActivity>, String), Failure> {
    paged(rows, page, fingerprint, |row| {
        let key = row.key();
        let access = row.access()?;
        let activity = pb::ActorActivity {
            position: Some(row.position()),
            recorded_at: Some(timestamp(row.recorded_at)),
            context: row.context,
            event_type: row.event_type,
            patient_id: row.patient_id,
            aggregate_id: row.aggregate_id,
            actor: Some(Actor {
                user_id: row.actor_user_id,
                display_name: row.actor_display_name,
                role: row.actor_role,
                organisation_ods: row.actor_organisation,
            }),
            purpose_of_use: row.purpose_of_use,
            on_behalf_of: row.on_behalf_of,
            reason: row.reason,
            correlation_id: row.correlation_id,
            commit_id: row.commit_id.to_string(),
            event_id: row.event_id.to_string(),
            access,
            reason_withheld: false,
        };
        Ok((activity, key))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_to_the_microsecond() {
        let key = Key {
            recorded_at: DateTime::from_timestamp_micros(1_795_000_000_123_456).expect("time"),
            stream: "CARELOG_ACCESS".into(),
            stream_sequence: 42,
            event_index: 0,
        };
        assert_eq!(Key::decode(&key.encode()).expect("decodes"), key);
        assert!(Key::decode("1|CARELOG_ACCESS|x|0").is_err());
        assert!(Key::decode("1|CARELOG_ACCESS").is_err());
    }

    #[test]
    fn a_token_belongs_to_one_query_value_and_range() {
        let range = TimeRange::default();
        let other = TimeRange {
            from: DateTime::from_timestamp(0, 0),
            to: None,
        };
        let a = fingerprint("patient-access", "p1", range);
        assert_ne!(a, fingerprint("patient-access", "p2", range));
        assert_ne!(a, fingerprint("actor-activity", "p1", range));
        assert_ne!(a, fingerprint("patient-access", "p1", other));
    }
}
