//! Queries over the consultations read models, with read-your-writes waits
//! and keyset paging behind opaque page tokens.

use carelog_consultations::domain::PatientConsultations;
use carelog_consultations::queries::{Consistency, ConsultationsQueries, PageRequest};
use carelog_kernel::envelope::timestamp;
use carelog_kernel::ids::ConsultationId;
use carelog_kernel::store::ContextStream;
use carelog_kernel::{Aggregate as _, Failure, PatientId};
use carelog_proto::consultations::v1 as pb;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::query::{self, after, db, decode, key_of, limit, paged};

/// The PostgreSQL implementation of the consultations query port.
#[derive(Debug, Clone)]
pub struct PgConsultationsQueries {
    pool: PgPool,
    stream: String,
}

impl PgConsultationsQueries {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            stream: ContextStream::new(PatientConsultations::CONTEXT).name,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn caught_up(&self, at: Consistency) -> Result<(), Failure> {
        query::caught_up(&self.pool, super::NAME, &self.stream, at).await
    }
}

/// A (time, id) keyset position for newest-first lists.
fn time_key(key: Option<String>) -> Result<(DateTime<Utc>, Uuid), Failure> {
    match key {
        None => Ok((DateTime::<Utc>::MAX_UTC, Uuid::max())),
        Some(key) => {
            let (micros, id) = query::parse_pair(&key, ',')?;
            let at = DateTime::from_timestamp_micros(micros).ok_or_else(query::bad_token)?;
            Ok((at, id))
        }
    }
}

fn time_key_text(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{},{id}", at.timestamp_micros())
}

impl ConsultationsQueries for PgConsultationsQueries {
    async fn get(
        &self,
        patient: PatientId,
        consultation: ConsultationId,
        at: Consistency,
    ) -> Result<Option<pb::Consultation>, Failure> {
        self.caught_up(at).await?;
        let row: Option<(Vec<u8>,)> = sqlx::query_as(
            "SELECT resource FROM consultations WHERE consultation_id = $1 AND patient_id = $2",
        )
        .bind(consultation.as_uuid())
        .bind(patient.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|(bytes,)| decode(&bytes)).transpose()
    }

    async fn list(
        &self,
        patients: &[PatientId],
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::Consultation>, String), Failure> {
        self.caught_up(at).await?;
        let names: Vec<String> = patients.iter().map(ToString::to_string).collect();
        let query = format!("consultations-{}", names.join(","));
        let ids: Vec<Uuid> = patients.iter().map(|p| p.as_uuid()).collect();
        let (before, before_id) = time_key(key_of(&query, page)?)?;
        let limit = limit(page);
        let rows: Vec<(DateTime<Utc>, Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT start_time, consultation_id, resource FROM consultations \
             WHERE patient_id = ANY($1) AND NOT entered_in_error AND (start_time, consultation_id) < ($2, $3) \
             ORDER BY start_time DESC, consultation_id DESC LIMIT $4",
        )
        .bind(&ids)
        .bind(before)
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        paged(rows, page, &query, |(start, id, bytes)| {
            Ok((decode(&bytes)?, time_key_text(start, id)))
        })
    }

    async fn versions(
        &self,
        patient: PatientId,
        consultation: ConsultationId,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::ConsultationVersion>, String), Failure> {
        self.caught_up(at).await?;
        let query = format!("versions-{consultation}");
        let after: i64 = after(&query, page, 0)?;
        let limit = limit(page);
        #[allow(clippy::type_complexity)]
        let rows: Vec<(i64, i64, Vec<String>, String, String, String, String, String, DateTime<Utc>, Vec<u8>)> =
            sqlx::query_as(
                "SELECT version, stream_sequence, event_types, actor_user_id, actor_display_name, actor_role, \
                 actor_organisation, reason, recorded_at, resource FROM consultation_versions \
                 WHERE consultation_id = $1 AND patient_id = $2 AND version > $3 ORDER BY version LIMIT $4",
            )
            .bind(consultation.as_uuid())
            .bind(patient.as_uuid())
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        paged(
            rows,
            page,
            &query,
            |(version, seq, types, user, name, role, org, reason, at, bytes)| {
                let v = pb::ConsultationVersion {
                    version,
                    stream_sequence: seq as u64,
                    event_types: types,
                    actor_user_id: user,
                    actor_display_name: name,
                    actor_role: role,
                    actor_organisation_ods: org,
                    reason,
                    recorded_at: Some(timestamp(at)),
                    consultation: Some(decode(&bytes)?),
                };
                Ok((v, version.to_string()))
            },
        )
    }

    async fn problems(
        &self,
        patients: &[PatientId],
        status: Option<pb::ProblemStatus>,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::Problem>, String), Failure> {
        self.caught_up(at).await?;
        let status = status.map(|s| s as i32);
        let names: Vec<String> = patients.iter().map(ToString::to_string).collect();
        let query = format!("problems-{}-{status:?}", names.join(","));
        let ids: Vec<Uuid> = patients.iter().map(|p| p.as_uuid()).collect();
        let (before, before_id) = time_key(key_of(&query, page)?)?;
        let limit = limit(page);
        let rows: Vec<(DateTime<Utc>, Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT effective_time, entry_id, resource FROM consultation_problems \
             WHERE patient_id = ANY($1) AND ($2::int IS NULL OR status = $2) \
             AND (effective_time, entry_id) < ($3, $4) \
             ORDER BY effective_time DESC, entry_id DESC LIMIT $5",
        )
        .bind(&ids)
        .bind(status)
        .bind(before)
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        paged(rows, page, &query, |(at, id, bytes)| {
            Ok((decode(&bytes)?, time_key_text(at, id)))
        })
    }

    async fn observations(
        &self,
        patient: PatientId,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::LatestObservation>, String), Failure> {
        self.caught_up(at).await?;
        let query = format!("observations-{patient}");
        let after: String = after(&query, page, String::new())?;
        let limit = limit(page);
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT concept_id, resource FROM latest_observations \
             WHERE patient_id = $1 AND concept_id > $2 ORDER BY concept_id LIMIT $3",
        )
        .bind(patient.as_uuid())
        .bind(&after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        paged(rows, page, &query, |(concept, bytes)| {
            Ok((decode(&bytes)?, concept))
        })
    }
}
