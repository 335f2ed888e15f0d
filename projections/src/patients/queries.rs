//! Queries over the `patients` read model, with read-your-writes waits and
//! keyset paging behind opaque page tokens.

use carelog_demographics::domain::PatientRecord;
use carelog_demographics::queries::{Consistency, PageRequest, PatientQueries, Search};
use carelog_kernel::store::ContextStream;
use carelog_kernel::{Aggregate as _, Failure, PatientId};
use carelog_proto::demographics::v1 as pb;
use sqlx::PgPool;
use uuid::Uuid;

use crate::query::{self, after, db, decode, limit, paged};

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
        query::caught_up(&self.pool, super::NAME, &self.stream, at).await
    }
}

fn fingerprint(search: &Search) -> String {
    query::fingerprint(&format!("{search:?}"))
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
        let limit = limit(page);
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
        paged(rows, page, &fingerprint, |(id, bytes)| {
            Ok((decode(&bytes)?, id.to_string()))
        })
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
        let limit = limit(page);
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
        paged(
            rows,
            page,
            &fingerprint,
            |(version, seq, types, user, name, role, org, purpose, reason, at, bytes)| {
                let v = pb::PatientVersion {
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
                    reason_withheld: false,
                };
                Ok((v, version.to_string()))
            },
        )
    }
}
