//! The sharing read models (projection "sharing"): organisation groups with
//! their members, and sharing agreements, folded with the aggregate's own
//! `apply`. The access guard reads them (`access::PgAccessFacts`); the
//! sharing service's queries read them here.

use carelog_kernel::envelope::{StoredCommit, from_timestamp};
use carelog_kernel::store::ContextStream;
use carelog_kernel::{Aggregate as _, Failure};
use carelog_proto::sharing::v1 as pb;
use carelog_sharing::domain::SharingRecord;
use carelog_sharing::queries::{Consistency, PageRequest, SharingQueries};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use prost::Message as _;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::projection::{Projection, ProjectionError, aggregate_ids, stored_resource};
use crate::query::{self, after, db, decode, limit, paged};

/// The projection's name, as checkpointed.
pub const NAME: &str = "sharing";

#[derive(Debug, Default)]
pub struct SharingProjection;

impl Projection for SharingProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn streams(&self) -> Vec<String> {
        vec![ContextStream::new(SharingRecord::CONTEXT).name]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "organisation_groups",
            "organisation_group_members",
            "sharing_agreements",
        ]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        _stream: &'a str,
        batch: &'a [StoredCommit],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        async move {
            let ids = aggregate_ids(batch)?;
            for (stored, id) in batch.iter().zip(ids) {
                apply_one(tx, stored, id).await?;
            }
            Ok(())
        }
        .boxed()
    }
}

fn party_columns(p: Option<&pb::Party>) -> (&'static str, String) {
    use pb::party::Party as P;
    match p.and_then(|p| p.party.as_ref()) {
        Some(P::GroupId(g)) => ("group", g.clone()),
        Some(P::OrganisationOds(o)) => ("organisation", o.clone()),
        None => ("organisation", String::new()),
    }
}

/// Folds one commit into its group's or agreement's rows.
async fn apply_one(
    tx: &mut PgConnection,
    stored: &StoredCommit,
    id: Uuid,
) -> Result<(), ProjectionError> {
    let mut record = SharingRecord::default();
    let group: Option<(Vec<u8>,)> =
        sqlx::query_as("SELECT resource FROM organisation_groups WHERE group_id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((bytes,)) = group {
        record.group = Some(stored_resource("group", id, &bytes)?);
    }
    let agreement: Option<(Vec<u8>,)> =
        sqlx::query_as("SELECT resource FROM sharing_agreements WHERE agreement_id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((bytes,)) = agreement {
        record.agreement = Some(stored_resource("agreement", id, &bytes)?);
    }
    for record_event in &stored.commit.events {
        let event = pb::Event::decode(record_event.payload.as_slice())
            .map_err(|e| ProjectionError::unapplicable(stored, e))?;
        // An event of a later carelog than this projector (a new kind of
        // change to an agreement, say) stops it: passed over, the access
        // guard would go on reading a row that no longer holds.
        if event.event.is_none() {
            return Err(ProjectionError::unapplicable(
                stored,
                format!("unknown event type {}", record_event.event_type),
            ));
        }
        record.apply(&event);
    }
    if record.group.is_none() && record.agreement.is_none() {
        return Err(ProjectionError::unapplicable(
            stored,
            "a change to a group or agreement that was never made",
        ));
    }
    let recorded_at = stored.recorded_at();
    let sequence = stored.stream_sequence as i64;
    let version = stored.commit.aggregate_version as i64;
    if let Some(mut g) = record.group {
        g.version = version;
        g.stream_sequence = stored.stream_sequence;
        sqlx::query(
            "INSERT INTO organisation_groups (group_id, name, version, last_sequence, updated_at, resource) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (group_id) DO UPDATE SET name = $2, \
             version = $3, last_sequence = $4, updated_at = $5, resource = $6",
        )
        .bind(id)
        .bind(&g.name)
        .bind(version)
        .bind(sequence)
        .bind(recorded_at)
        .bind(g.encode_to_vec())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM organisation_group_members WHERE group_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO organisation_group_members (group_id, organisation_ods) \
             SELECT $1, UNNEST($2::text[])",
        )
        .bind(id)
        .bind(&g.member_ods)
        .execute(&mut *tx)
        .await?;
    }
    if let Some(mut a) = record.agreement {
        a.version = version;
        a.stream_sequence = stored.stream_sequence;
        let (from_kind, from_id) = party_columns(a.from.as_ref());
        let (to_kind, to_id) = party_columns(a.to.as_ref());
        let valid_from = from_timestamp(a.valid_from.as_ref()).unwrap_or(recorded_at);
        sqlx::query(
            "INSERT INTO sharing_agreements (agreement_id, from_kind, from_id, to_kind, to_id, \
             valid_from, valid_until, ended_at, version, last_sequence, updated_at, resource) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (agreement_id) DO UPDATE SET valid_until = $7, ended_at = $8, \
             version = $9, last_sequence = $10, updated_at = $11, resource = $12",
        )
        .bind(id)
        .bind(from_kind)
        .bind(from_id)
        .bind(to_kind)
        .bind(to_id)
        .bind(valid_from)
        .bind(from_timestamp(a.valid_until.as_ref()))
        .bind(from_timestamp(a.ended_at.as_ref()))
        .bind(version)
        .bind(sequence)
        .bind(recorded_at)
        .bind(a.encode_to_vec())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The sharing service's queries over PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgSharingQueries {
    pool: PgPool,
    stream: String,
}

impl PgSharingQueries {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            stream: ContextStream::new(SharingRecord::CONTEXT).name,
        }
    }

    async fn caught_up(&self, at: Consistency) -> Result<(), Failure> {
        query::caught_up(&self.pool, NAME, &self.stream, at).await
    }

    async fn one<M: prost::Message + Default>(
        &self,
        sql: &'static str,
        id: &str,
        at: Consistency,
    ) -> Result<Option<M>, Failure> {
        self.caught_up(at).await?;
        let Ok(id) = Uuid::parse_str(id) else {
            return Ok(None);
        };
        let row: Option<(Vec<u8>,)> = sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|(bytes,)| decode(&bytes)).transpose()
    }

    async fn page<M: prost::Message + Default>(
        &self,
        sql: &'static str,
        name: &str,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<M>, String), Failure> {
        self.caught_up(at).await?;
        let start = after(name, page, Uuid::nil())?;
        let rows: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(sql)
            .bind(start)
            .bind(limit(page))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        paged(rows, page, name, |(id, bytes)| {
            Ok((decode(&bytes)?, id.to_string()))
        })
    }
}

impl SharingQueries for PgSharingQueries {
    async fn group(
        &self,
        id: &str,
        at: Consistency,
    ) -> Result<Option<pb::OrganisationGroup>, Failure> {
        self.one(
            "SELECT resource FROM organisation_groups WHERE group_id = $1",
            id,
            at,
        )
        .await
    }

    async fn groups(
        &self,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::OrganisationGroup>, String), Failure> {
        self.page(
            "SELECT group_id, resource FROM organisation_groups WHERE group_id > $1 \
             ORDER BY group_id LIMIT $2",
            "groups",
            page,
            at,
        )
        .await
    }

    async fn agreement(
        &self,
        id: &str,
        at: Consistency,
    ) -> Result<Option<pb::SharingAgreement>, Failure> {
        self.one(
            "SELECT resource FROM sharing_agreements WHERE agreement_id = $1",
            id,
            at,
        )
        .await
    }

    async fn agreements(
        &self,
        page: &PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::SharingAgreement>, String), Failure> {
        self.page(
            "SELECT agreement_id, resource FROM sharing_agreements WHERE agreement_id > $1 \
             ORDER BY agreement_id LIMIT $2",
            "agreements",
            page,
            at,
        )
        .await
    }
}
