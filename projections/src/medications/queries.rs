//! Queries over the medications read models, with read-your-writes waits
//! and keyset paging (creation sequence, id) behind opaque page tokens.

use carelog_kernel::ids::AuthorisationId;
use carelog_kernel::store::ContextStream;
use carelog_kernel::{Aggregate as _, Failure, PatientId};
use carelog_medications::domain::MedicationRecord;
use carelog_medications::queries::{AllergyFilter, Consistency, MedicationsQueries, PageRequest};
use carelog_proto::medications::v1 as pb;
use sqlx::PgPool;
use uuid::Uuid;

use crate::query::{self, db, decode, key_of, limit, paged, parse_pair};

/// The PostgreSQL implementation of the medications query port.
#[derive(Debug, Clone)]
pub struct PgMedicationsQueries {
    pool: PgPool,
    stream: String,
}

/// The key after which a page starts: (sequence, id), carried as
/// `sequence|id`.
fn after(fingerprint: &str, page: &PageRequest) -> Result<(i64, Uuid), Failure> {
    match key_of(fingerprint, page)? {
        None => Ok((0, Uuid::nil())),
        Some(key) => parse_pair(&key, '|'),
    }
}

/// Decodes a page of (sequence, id, resource) rows and the next page's token.
fn page_of<M: prost::Message + Default>(
    rows: Vec<(i64, Uuid, Vec<u8>)>,
    page: &PageRequest,
    fingerprint: &str,
) -> Result<(Vec<M>, String), Failure> {
    paged(rows, page, fingerprint, |(sequence, id, bytes)| {
        Ok((decode(&bytes)?, format!("{sequence}|{id}")))
    })
}

impl PgMedicationsQueries {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            stream: ContextStream::new(MedicationRecord::CONTEXT).name,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn caught_up(&self, at: Consistency) -> Result<(), Failure> {
        query::caught_up(&self.pool, super::NAME, &self.stream, at).await
    }
}

impl MedicationsQueries for PgMedicationsQueries {
    async fn medications(
        &self,
        patients: &[PatientId],
        include_discontinued: bool,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::Authorisation>, String), Failure> {
        self.caught_up(at).await?;
        let names: Vec<String> = patients.iter().map(ToString::to_string).collect();
        let fingerprint = format!("medications-{}-{include_discontinued}", names.join(","));
        let ids: Vec<Uuid> = patients.iter().map(|p| p.as_uuid()).collect();
        let (sequence, id) = after(&fingerprint, page)?;
        let rows: Vec<(i64, Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT created_sequence, authorisation_id, resource FROM medication_authorisations \
             WHERE patient_id = ANY($1) AND ($2 OR status = 'active') AND (created_sequence, authorisation_id) > ($3, $4) \
             ORDER BY created_sequence, authorisation_id LIMIT $5",
        )
        .bind(&ids)
        .bind(include_discontinued)
        .bind(sequence)
        .bind(id)
        .bind(limit(page))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        page_of(rows, page, &fingerprint)
    }

    async fn issues(
        &self,
        patients: &[PatientId],
        authorisation: Option<AuthorisationId>,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::Issue>, String), Failure> {
        self.caught_up(at).await?;
        let only = authorisation.map(|a| a.as_uuid());
        let names: Vec<String> = patients.iter().map(ToString::to_string).collect();
        let fingerprint = format!("issues-{}-{only:?}", names.join(","));
        let ids: Vec<Uuid> = patients.iter().map(|p| p.as_uuid()).collect();
        let (sequence, id) = after(&fingerprint, page)?;
        let rows: Vec<(i64, Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT stream_sequence, issue_id, resource FROM medication_issues \
             WHERE patient_id = ANY($1) AND ($2::uuid IS NULL OR authorisation_id = $2) \
             AND (stream_sequence, issue_id) > ($3, $4) \
             ORDER BY stream_sequence, issue_id LIMIT $5",
        )
        .bind(&ids)
        .bind(only)
        .bind(sequence)
        .bind(id)
        .bind(limit(page))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        page_of(rows, page, &fingerprint)
    }

    async fn allergies(
        &self,
        patients: &[PatientId],
        filter: AllergyFilter,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::Allergy>, String), Failure> {
        self.caught_up(at).await?;
        let status = match filter {
            AllergyFilter::Active => "active",
            AllergyFilter::Resolved => "resolved",
        };
        let names: Vec<String> = patients.iter().map(ToString::to_string).collect();
        let fingerprint = format!("allergies-{}-{status}", names.join(","));
        let ids: Vec<Uuid> = patients.iter().map(|p| p.as_uuid()).collect();
        let (sequence, id) = after(&fingerprint, page)?;
        let rows: Vec<(i64, Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT created_sequence, allergy_id, resource FROM medication_allergies \
             WHERE patient_id = ANY($1) AND status = $2 AND (created_sequence, allergy_id) > ($3, $4) \
             ORDER BY created_sequence, allergy_id LIMIT $5",
        )
        .bind(&ids)
        .bind(status)
        .bind(sequence)
        .bind(id)
        .bind(limit(page))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        page_of(rows, page, &fingerprint)
    }
}
