//! The `audit_events` read model: one row per event of every context, with
//! who, what, when, where, why and on whose behalf, and the commit hash it
//! came from. Rows are only ever inserted.

use carelog_kernel::access::ACCESS;
use carelog_kernel::envelope::{StoredCommit, from_timestamp};
use carelog_kernel::store::ContextStream;
use carelog_proto::access::v1::RecordAccessed;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use prost::Message as _;
use sqlx::PgConnection;

use crate::projection::{Projection, ProjectionError};

/// Contexts whose events are audited (each has its stream); `access` holds
/// the `RecordAccessed` events of reads (ADR 0018), one row each, with no
/// previous hash (access events are not hash-chained).
pub const CONTEXTS: [&str; 6] = [
    "demographics",
    "consultations",
    "medications",
    "tasks",
    "sharing",
    "access",
];

/// The projection's name (and its checkpoint key).
pub const NAME: &str = "audit_events";

#[derive(Debug, Default)]
pub struct AuditEventsProjection;

/// One row of `audit_events`: as the projection writes it, as `audit
/// verify` recomputes it from JetStream, and as it reads it back.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct AuditRow {
    pub stream: String,
    pub stream_sequence: i64,
    pub event_index: i32,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub context: String,
    pub subject: String,
    pub aggregate_id: String,
    pub patient_id: String,
    pub aggregate_version: i64,
    pub commit_id: uuid::Uuid,
    pub actor_user_id: String,
    pub actor_display_name: String,
    pub actor_role: String,
    pub actor_organisation: String,
    pub on_behalf_of: String,
    pub purpose_of_use: String,
    pub reason: String,
    pub request_id: String,
    pub correlation_id: String,
    pub causation_id: String,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    pub commit_hash: Vec<u8>,
    pub previous_hash: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Every column of `audit_events`, in the order of [`AuditRow`].
macro_rules! columns {
    () => {
        "stream, stream_sequence, event_index, event_id, event_type, context, subject, \
    aggregate_id, patient_id, aggregate_version, commit_id, actor_user_id, actor_display_name, actor_role, \
    actor_organisation, on_behalf_of, purpose_of_use, reason, request_id, correlation_id, causation_id, \
    occurred_at, recorded_at, commit_hash, previous_hash, payload"
    };
}
pub const COLUMNS: &str = columns!();

/// Who, on whose behalf, why and when of one event row.
struct Who {
    commit_id: uuid::Uuid,
    patient_id: String,
    actor: carelog_proto::kernel::v1::Actor,
    on_behalf_of: String,
    purpose_of_use: String,
    correlation_id: String,
    occurred_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A time as PostgreSQL keeps it once sqlx has bound it: whole
/// microseconds since 2000-01-01, the rest dropped toward that epoch.
fn micros(at: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    let epoch = chrono::DateTime::UNIX_EPOCH + chrono::TimeDelta::seconds(946_684_800);
    (at - epoch)
        .num_microseconds()
        .map_or(at, |m| epoch + chrono::TimeDelta::microseconds(m))
}

/// The rows of one stored commit of `stream`: one per event.
pub fn rows_of(stream: &str, stored: &StoredCommit) -> Result<Vec<AuditRow>, ProjectionError> {
    let c = &stored.commit;
    let uuid = |text: &str| {
        uuid::Uuid::parse_str(text).map_err(|e| ProjectionError::unapplicable(stored, e))
    };
    let recorded_at = micros(stored.recorded_at());
    let commit_id = uuid(&c.commit_id)?;
    let mut rows = Vec::with_capacity(c.events.len());
    for (i, e) in c.events.iter().enumerate() {
        let who = if c.context == ACCESS {
            // An access message may hold the accesses of several reads
            // (ADR 0029): each names its own patient, actor and access id.
            let access = RecordAccessed::decode(e.payload.as_slice())
                .map_err(|err| ProjectionError::unapplicable(stored, err))?;
            Who {
                commit_id: uuid(&access.access_id)?,
                patient_id: access.patient_id,
                actor: access.actor.unwrap_or_default(),
                on_behalf_of: access.on_behalf_of,
                purpose_of_use: access.purpose_of_use,
                correlation_id: access.correlation_id,
                occurred_at: from_timestamp(access.accessed_at.as_ref()),
            }
        } else {
            Who {
                commit_id,
                patient_id: c.patient_id.clone(),
                actor: c.actor.clone().unwrap_or_default(),
                on_behalf_of: c.on_behalf_of.clone(),
                purpose_of_use: c.purpose_of_use.clone(),
                correlation_id: c.correlation_id.clone(),
                occurred_at: from_timestamp(e.occurred_at.as_ref()),
            }
        };
        rows.push(AuditRow {
            stream: stream.to_owned(),
            stream_sequence: stored.stream_sequence as i64,
            event_index: i as i32,
            event_id: uuid(&e.event_id)?,
            event_type: e.event_type.clone(),
            context: c.context.clone(),
            subject: stored.subject.clone(),
            aggregate_id: c.aggregate_id.clone(),
            patient_id: who.patient_id,
            aggregate_version: c.aggregate_version as i64,
            commit_id: who.commit_id,
            actor_user_id: who.actor.user_id,
            actor_display_name: who.actor.display_name,
            actor_role: who.actor.role,
            actor_organisation: who.actor.organisation_ods,
            on_behalf_of: who.on_behalf_of,
            purpose_of_use: who.purpose_of_use,
            reason: c.reason.clone(),
            request_id: c.request_id.clone(),
            correlation_id: who.correlation_id,
            causation_id: c.causation_id.clone(),
            occurred_at: who.occurred_at.map_or(recorded_at, micros),
            recorded_at,
            commit_hash: stored.hash.to_vec(),
            previous_hash: c.previous_hash.clone(),
            payload: e.payload.clone(),
        });
    }
    Ok(rows)
}

/// Rows as the columns of one `UNNEST` insert.
#[derive(Default)]
struct Columns {
    stream: Vec<String>,
    stream_sequence: Vec<i64>,
    event_index: Vec<i32>,
    event_id: Vec<uuid::Uuid>,
    event_type: Vec<String>,
    context: Vec<String>,
    subject: Vec<String>,
    aggregate_id: Vec<String>,
    patient_id: Vec<String>,
    aggregate_version: Vec<i64>,
    commit_id: Vec<uuid::Uuid>,
    actor_user_id: Vec<String>,
    actor_display_name: Vec<String>,
    actor_role: Vec<String>,
    actor_organisation: Vec<String>,
    on_behalf_of: Vec<String>,
    purpose_of_use: Vec<String>,
    reason: Vec<String>,
    request_id: Vec<String>,
    correlation_id: Vec<String>,
    causation_id: Vec<String>,
    occurred_at: Vec<chrono::DateTime<chrono::Utc>>,
    recorded_at: Vec<chrono::DateTime<chrono::Utc>>,
    commit_hash: Vec<Vec<u8>>,
    previous_hash: Vec<Vec<u8>>,
    payload: Vec<Vec<u8>>,
}

impl Columns {
    fn push(&mut self, r: AuditRow) {
        self.stream.push(r.stream);
        self.stream_sequence.push(r.stream_sequence);
        self.event_index.push(r.event_index);
        self.event_id.push(r.event_id);
        self.event_type.push(r.event_type);
        self.context.push(r.context);
        self.subject.push(r.subject);
        self.aggregate_id.push(r.aggregate_id);
        self.patient_id.push(r.patient_id);
        self.aggregate_version.push(r.aggregate_version);
        self.commit_id.push(r.commit_id);
        self.actor_user_id.push(r.actor_user_id);
        self.actor_display_name.push(r.actor_display_name);
        self.actor_role.push(r.actor_role);
        self.actor_organisation.push(r.actor_organisation);
        self.on_behalf_of.push(r.on_behalf_of);
        self.purpose_of_use.push(r.purpose_of_use);
        self.reason.push(r.reason);
        self.request_id.push(r.request_id);
        self.correlation_id.push(r.correlation_id);
        self.causation_id.push(r.causation_id);
        self.occurred_at.push(r.occurred_at);
        self.recorded_at.push(r.recorded_at);
        self.commit_hash.push(r.commit_hash);
        self.previous_hash.push(r.previous_hash);
        self.payload.push(r.payload);
    }
}

const INSERT: &str = concat!(
    "INSERT INTO audit_events (",
    columns!(),
    ") SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::int[], $4::uuid[], $5::text[], $6::text[], $7::text[], \
    $8::text[], $9::text[], $10::bigint[], $11::uuid[], $12::text[], $13::text[], $14::text[], $15::text[], \
    $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::timestamptz[], \
    $23::timestamptz[], $24::bytea[], $25::bytea[], $26::bytea[]) \
    ON CONFLICT (stream, stream_sequence, event_index) DO NOTHING"
);

impl Projection for AuditEventsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn streams(&self) -> Vec<String> {
        CONTEXTS
            .iter()
            .map(|c| ContextStream::new(c).name)
            .collect()
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_events"]
    }

    fn linger(&self) -> crate::projection::Linger {
        crate::projection::Linger::AUDIT
    }

    fn consumer(&self) -> &'static str {
        crate::projection::AUDIT_CONSUMER
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        stream: &'a str,
        batch: &'a [StoredCommit],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        async move {
            let mut c = Columns::default();
            for stored in batch {
                for row in rows_of(stream, stored)? {
                    c.push(row);
                }
            }
            if c.stream.is_empty() {
                return Ok(());
            }
            sqlx::query(INSERT)
                .bind(c.stream)
                .bind(c.stream_sequence)
                .bind(c.event_index)
                .bind(c.event_id)
                .bind(c.event_type)
                .bind(c.context)
                .bind(c.subject)
                .bind(c.aggregate_id)
                .bind(c.patient_id)
                .bind(c.aggregate_version)
                .bind(c.commit_id)
                .bind(c.actor_user_id)
                .bind(c.actor_display_name)
                .bind(c.actor_role)
                .bind(c.actor_organisation)
                .bind(c.on_behalf_of)
                .bind(c.purpose_of_use)
                .bind(c.reason)
                .bind(c.request_id)
                .bind(c.correlation_id)
                .bind(c.causation_id)
                .bind(c.occurred_at)
                .bind(c.recorded_at)
                .bind(c.commit_hash)
                .bind(c.previous_hash)
                .bind(c.payload)
                .execute(&mut *tx)
                .await?;
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::micros;

    #[test]
    fn a_time_is_kept_to_the_microsecond_as_postgresql_keeps_it_either_side_of_2000() {
        let at = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .expect("time")
                .to_utc()
        };
        assert_eq!(
            micros(at("2026-12-06T10:00:00.123456789Z")),
            at("2026-12-06T10:00:00.123456Z")
        );
        // before 2000 the dropped nanoseconds go toward 2000, not toward 1970
        assert_eq!(
            micros(at("1990-01-01T00:00:00.000000500Z")),
            at("1990-01-01T00:00:00.000001Z")
        );
        assert_eq!(
            micros(at("1850-06-01T12:00:00.999999999Z")),
            at("1850-06-01T12:00:01Z")
        );
    }
}
