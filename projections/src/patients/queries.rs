//! Queries over the `patients` read model, with read-your-writes waits and
//! keyset paging behind opaque page tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carelog_demographics::domain::PatientRecord;
use carelog_demographics::queries::{Consistency, PageRequest, PatientQueries, Search};
use carelog_kernel::store::ContextStream;
use carelog_kernel::{Aggregate as _, Failure, PatientId};
use carelog_proto::demographics::v1 as pb;
use prost::Message as _;
use sqlx::PgPool;
use tonic::Code;
use uuid::Uuid;

use crate::checkpoint;

/// The PostgreSQL implementation of the demographics query port.
#[derive(Debug, Clone)]
pub struct PgPatientQueries {
    pool: PgPool,
    stream: String,
}

impl PgPatientQueries {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            stream: ContextStream::new(PatientRecord::CONTEXT).name,
        }
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

fn decode(bytes: &[u8]) -> Result<pb::Patient, Failure> {
    pb::Patient::decode(bytes).map_err(|e| Failure::internal(&e))
}

/// An opaque page token: the query's fingerprint and the last key served.
fn token(fingerprint: &str, after: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{fingerprint}|{after}"))
}

/// The last key a page token carries, or `start` for the first page.
fn after<K: std::str::FromStr>(
    fingerprint: &str,
    page: &PageRequest,
    start: K,
) -> Result<K, Failure> {
    if page.token.is_empty() {
        return Ok(start);
    }
    let bad = || Failure::invalid_field("page_token", "is not a page token of this query");
    let text = URL_SAFE_NO_PAD
        .decode(&page.token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (f, key) = text.split_once('|').ok_or_else(bad)?;
    if f != fingerprint {
        return Err(bad());
    }
    key.parse().map_err(|_| bad())
}

fn fingerprint(search: &Search) -> String {
    let text = format!("{search:?}");
    hex_prefix(&carelog_kernel::envelope::digest(text.as_bytes()))
}

fn hex_prefix(hash: &[u8; 32]) -> String {
    hash[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn like_prefix(text: &str) -> String {
    let escaped: String = text
        .to_uppercase()
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("{escaped}%")
}

impl PatientQueries for PgPatientQueries {
    async fn get(&self, id: PatientId, at: Consistency) -> Result<Option<pb::Patient>, Failure> {
        self.caught_up(at).await?;
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT resource FROM patients WHERE patient_id = $1")
                .bind(id.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        row.map(|(bytes,)| decode(&bytes)).transpose()
    }

    async fn search(
        &self,
        search: &Search,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::Patient>, String), Failure> {
        self.caught_up(at).await?;
        let fingerprint = fingerprint(search);
        let after = after(&fingerprint, page, Uuid::nil())?;
        let limit = i64::from(page.size) + 1;
        let rows: Vec<(Uuid, Vec<u8>)> = match search {
            Search::NhsNumber(nhs) => {
                sqlx::query_as(
                    "SELECT patient_id, resource FROM patients WHERE nhs_number = $1 AND patient_id > $2 \
                     ORDER BY patient_id LIMIT $3",
                )
                .bind(nhs)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            Search::FamilyAndBirthDate { family, birth_date } => {
                sqlx::query_as(
                    "SELECT patient_id, resource FROM patients WHERE family_name_upper = $1 \
                     AND birth_date_earliest <= $2 AND birth_date_latest >= $3 AND patient_id > $4 \
                     ORDER BY patient_id LIMIT $5",
                )
                .bind(family.to_uppercase())
                .bind(birth_date.latest())
                .bind(birth_date.earliest())
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            Search::Postcode(postcode) => {
                sqlx::query_as(
                    "SELECT p.patient_id, p.resource FROM patients p WHERE p.patient_id IN \
                     (SELECT patient_id FROM patient_addresses WHERE postcode = $1) AND p.patient_id > $2 \
                     ORDER BY p.patient_id LIMIT $3",
                )
                .bind(postcode)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            Search::FamilyPrefix(prefix) => {
                sqlx::query_as(
                    "SELECT patient_id, resource FROM patients WHERE family_name_upper LIKE $1 AND patient_id > $2 \
                     ORDER BY patient_id LIMIT $3",
                )
                .bind(like_prefix(prefix))
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(db)?;
        let more = rows.len() as i64 == limit;
        let mut patients = Vec::with_capacity(rows.len());
        let mut last = None;
        for (id, bytes) in rows.into_iter().take(page.size as usize) {
            patients.push(decode(&bytes)?);
            last = Some(id);
        }
        let next = match (more, last) {
            (true, Some(id)) => token(&fingerprint, &id.to_string()),
            _ => String::new(),
        };
        Ok((patients, next))
    }

    async fn versions(
        &self,
        id: PatientId,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::PatientVersion>, String), Failure> {
        self.caught_up(at).await?;
        let fingerprint = format!("versions-{id}");
        let after: i64 = after(&fingerprint, page, 0)?;
        let limit = i64::from(page.size) + 1;
        #[allow(clippy::type_complexity)]
        let rows: Vec<(i64, i64, Vec<String>, String, String, String, String, String, String, chrono::DateTime<chrono::Utc>, Vec<u8>)> =
            sqlx::query_as(
                "SELECT version, stream_sequence, event_types, actor_user_id, actor_display_name, actor_role, \
                 actor_organisation, purpose_of_use, reason, recorded_at, resource FROM patient_versions \
                 WHERE patient_id = $1 AND version > $2 ORDER BY version LIMIT $3",
            )
            .bind(id.as_uuid())
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let more = rows.len() as i64 == limit;
        let mut versions = Vec::with_capacity(rows.len());
        for (version, seq, types, user, name, role, org, purpose, reason, at, bytes) in
            rows.into_iter().take(page.size as usize)
        {
            versions.push(pb::PatientVersion {
                version,
                stream_sequence: seq as u64,
                event_types: types,
                actor_user_id: user,
                actor_display_name: name,
                actor_role: role,
                actor_organisation_ods: org,
                purpose_of_use: purpose,
                reason,
                recorded_at: Some(carelog_kernel::envelope::timestamp(at)),
                patient: Some(decode(&bytes)?),
            });
        }
        let next = match (more, versions.last()) {
            (true, Some(v)) => token(&fingerprint, &v.version.to_string()),
            _ => String::new(),
        };
        Ok((versions, next))
    }
}
