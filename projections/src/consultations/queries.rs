//! Queries over the consultations read models, with read-your-writes waits
//! and keyset paging behind opaque page tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carelog_consultations::domain::PatientConsultations;
use carelog_consultations::queries::{Consistency, ConsultationsQueries, PageRequest};
use carelog_kernel::envelope::timestamp;
use carelog_kernel::ids::ConsultationId;
use carelog_kernel::store::ContextStream;
use carelog_kernel::{Aggregate as _, Failure, PatientId};
use carelog_proto::consultations::v1 as pb;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tonic::Code;
use uuid::Uuid;

use crate::checkpoint;

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

fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, Failure> {
    M::decode(bytes).map_err(|e| Failure::internal(&e))
}

/// An opaque page token: the query it belongs to and the last key served.
fn token(query: &str, after: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{query}|{after}"))
}

/// The last key a page token carries (None on the first page).
fn after(query: &str, page: &PageRequest) -> Result<Option<String>, Failure> {
    if page.token.is_empty() {
        return Ok(None);
    }
    let bad = || Failure::invalid_field("page_token", "is not a page token of this query");
    let text = URL_SAFE_NO_PAD
        .decode(&page.token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (q, key) = text.split_once('|').ok_or_else(bad)?;
    if q != query {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}

/// A (time, id) keyset position for newest-first lists.
fn time_key(key: Option<String>) -> Result<(DateTime<Utc>, Uuid), Failure> {
    let bad = || Failure::invalid_field("page_token", "is not a page token of this query");
    match key {
        None => Ok((DateTime::<Utc>::MAX_UTC, Uuid::max())),
        Some(key) => {
            let (micros, id) = key.split_once(',').ok_or_else(bad)?;
            let micros: i64 = micros.parse().map_err(|_| bad())?;
            let at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
            Ok((at, Uuid::parse_str(id).map_err(|_| bad())?))
        }
    }
}

fn next_time_key(query: &str, more: bool, last: Option<(DateTime<Utc>, Uuid)>) -> String {
    match (more, last) {
        (true, Some((at, id))) => token(query, &format!("{},{id}", at.timestamp_micros())),
        _ => String::new(),
    }
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
        patient: PatientId,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::Consultation>, String), Failure> {
        self.caught_up(at).await?;
        let query = format!("consultations-{patient}");
        let (before, before_id) = time_key(after(&query, page)?)?;
        let limit = i64::from(page.size) + 1;
        let rows: Vec<(DateTime<Utc>, Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT start_time, consultation_id, resource FROM consultations \
             WHERE patient_id = $1 AND NOT entered_in_error AND (start_time, consultation_id) < ($2, $3) \
             ORDER BY start_time DESC, consultation_id DESC LIMIT $4",
        )
        .bind(patient.as_uuid())
        .bind(before)
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let more = rows.len() as i64 == limit;
        let mut found = Vec::with_capacity(rows.len());
        let mut last = None;
        for (start, id, bytes) in rows.into_iter().take(page.size as usize) {
            found.push(decode(&bytes)?);
            last = Some((start, id));
        }
        Ok((found, next_time_key(&query, more, last)))
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
        let bad = || Failure::invalid_field("page_token", "is not a page token of this query");
        let after: i64 = match after(&query, page)? {
            None => 0,
            Some(key) => key.parse().map_err(|_| bad())?,
        };
        let limit = i64::from(page.size) + 1;
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
        let more = rows.len() as i64 == limit;
        let mut versions = Vec::with_capacity(rows.len());
        for (version, seq, types, user, name, role, org, reason, at, bytes) in
            rows.into_iter().take(page.size as usize)
        {
            versions.push(pb::ConsultationVersion {
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
            });
        }
        let next = match (more, versions.last()) {
            (true, Some(v)) => token(&query, &v.version.to_string()),
            _ => String::new(),
        };
        Ok((versions, next))
    }

    async fn problems(
        &self,
        patient: PatientId,
        status: Option<pb::ProblemStatus>,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::Problem>, String), Failure> {
        self.caught_up(at).await?;
        let status = status.map(|s| s as i32);
        let query = format!("problems-{patient}-{status:?}");
        let (before, before_id) = time_key(after(&query, page)?)?;
        let limit = i64::from(page.size) + 1;
        let rows: Vec<(DateTime<Utc>, Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT effective_time, entry_id, resource FROM consultation_problems \
             WHERE patient_id = $1 AND ($2::int IS NULL OR status = $2) \
             AND (effective_time, entry_id) < ($3, $4) \
             ORDER BY effective_time DESC, entry_id DESC LIMIT $5",
        )
        .bind(patient.as_uuid())
        .bind(status)
        .bind(before)
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let more = rows.len() as i64 == limit;
        let mut found = Vec::with_capacity(rows.len());
        let mut last = None;
        for (at, id, bytes) in rows.into_iter().take(page.size as usize) {
            found.push(decode(&bytes)?);
            last = Some((at, id));
        }
        Ok((found, next_time_key(&query, more, last)))
    }

    async fn observations(
        &self,
        patient: PatientId,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::LatestObservation>, String), Failure> {
        self.caught_up(at).await?;
        let query = format!("observations-{patient}");
        let after = after(&query, page)?.unwrap_or_default();
        let limit = i64::from(page.size) + 1;
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
        let more = rows.len() as i64 == limit;
        let mut found = Vec::with_capacity(rows.len());
        let mut last = None;
        for (concept, bytes) in rows.into_iter().take(page.size as usize) {
            found.push(decode(&bytes)?);
            last = Some(concept);
        }
        let next = match (more, last) {
            (true, Some(concept)) => token(&query, &concept),
            _ => String::new(),
        };
        Ok((found, next))
    }
}
