//! Queries over the medications read models, with read-your-writes waits
//! and keyset paging (creation sequence, id) behind opaque page tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carelog_kernel::ids::AuthorisationId;
use carelog_kernel::store::ContextStream;
use carelog_kernel::{Aggregate as _, Failure, PatientId};
use carelog_medications::domain::MedicationRecord;
use carelog_medications::queries::{AllergyFilter, Consistency, MedicationsQueries, PageRequest};
use carelog_proto::medications::v1 as pb;
use prost::Message;
use sqlx::PgPool;
use tonic::Code;
use uuid::Uuid;

use crate::checkpoint;

/// The PostgreSQL implementation of the medications query port.
#[derive(Debug, Clone)]
pub struct PgMedicationsQueries {
    pool: PgPool,
    stream: String,
}

fn db(e: sqlx::Error) -> Failure {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            Failure::unavailable("the read model database is unavailable")
        }
        other => Failure::internal(&other),
    }
}

/// An opaque page token: the query's fingerprint and the last key served.
fn token(fingerprint: &str, sequence: i64, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{fingerprint}|{sequence}|{id}"))
}

/// The key after which a page starts: (sequence, id).
fn after(fingerprint: &str, page: &PageRequest) -> Result<(i64, Uuid), Failure> {
    if page.token.is_empty() {
        return Ok((0, Uuid::nil()));
    }
    let bad = || Failure::invalid_field("page_token", "is not a page token of this query");
    let text = URL_SAFE_NO_PAD
        .decode(&page.token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let mut parts = text.split('|');
    let (Some(f), Some(sequence), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if f != fingerprint {
        return Err(bad());
    }
    Ok((
        sequence.parse().map_err(|_| bad())?,
        Uuid::parse_str(id).map_err(|_| bad())?,
    ))
}

/// Decodes a page of rows (one more than the page was fetched) and the
/// next page's token.
fn paged<M: Message + Default>(
    rows: Vec<(i64, Uuid, Vec<u8>)>,
    page: &PageRequest,
    fingerprint: &str,
) -> Result<(Vec<M>, String), Failure> {
    let more = rows.len() > page.size as usize;
    let mut items = Vec::with_capacity(rows.len());
    let mut last = None;
    for (sequence, id, bytes) in rows.into_iter().take(page.size as usize) {
        items.push(M::decode(bytes.as_slice()).map_err(|e| Failure::internal(&e))?);
        last = Some((sequence, id));
    }
    let next = match (more, last) {
        (true, Some((sequence, id))) => token(fingerprint, sequence, id),
        _ => String::new(),
    };
    Ok((items, next))
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

impl MedicationsQueries for PgMedicationsQueries {
    async fn medications(
        &self,
        patient: PatientId,
        include_discontinued: bool,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::Authorisation>, String), Failure> {
        self.caught_up(at).await?;
        let fingerprint = format!("medications-{patient}-{include_discontinued}");
        let (sequence, id) = after(&fingerprint, page)?;
        let rows: Vec<(i64, Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT created_sequence, authorisation_id, resource FROM medication_authorisations \
             WHERE patient_id = $1 AND ($2 OR status = 'active') AND (created_sequence, authorisation_id) > ($3, $4) \
             ORDER BY created_sequence, authorisation_id LIMIT $5",
        )
        .bind(patient.as_uuid())
        .bind(include_discontinued)
        .bind(sequence)
        .bind(id)
        .bind(i64::from(page.size) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        paged(rows, page, &fingerprint)
    }

    async fn issues(
        &self,
        patient: PatientId,
        authorisation: Option<AuthorisationId>,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::Issue>, String), Failure> {
        self.caught_up(at).await?;
        let only = authorisation.map(|a| a.as_uuid());
        let fingerprint = format!("issues-{patient}-{only:?}");
        let (sequence, id) = after(&fingerprint, page)?;
        let rows: Vec<(i64, Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT stream_sequence, issue_id, resource FROM medication_issues \
             WHERE patient_id = $1 AND ($2::uuid IS NULL OR authorisation_id = $2) \
             AND (stream_sequence, issue_id) > ($3, $4) \
             ORDER BY stream_sequence, issue_id LIMIT $5",
        )
        .bind(patient.as_uuid())
        .bind(only)
        .bind(sequence)
        .bind(id)
        .bind(i64::from(page.size) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        paged(rows, page, &fingerprint)
    }

    async fn allergies(
        &self,
        patient: PatientId,
        filter: AllergyFilter,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::Allergy>, String), Failure> {
        self.caught_up(at).await?;
        let status = match filter {
            AllergyFilter::Active => "active",
            AllergyFilter::Resolved => "resolved",
        };
        let fingerprint = format!("allergies-{patient}-{status}");
        let (sequence, id) = after(&fingerprint, page)?;
        let rows: Vec<(i64, Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT created_sequence, allergy_id, resource FROM medication_allergies \
             WHERE patient_id = $1 AND status = $2 AND (created_sequence, allergy_id) > ($3, $4) \
             ORDER BY created_sequence, allergy_id LIMIT $5",
        )
        .bind(patient.as_uuid())
        .bind(status)
        .bind(sequence)
        .bind(id)
        .bind(i64::from(page.size) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        paged(rows, page, &fingerprint)
    }
}
