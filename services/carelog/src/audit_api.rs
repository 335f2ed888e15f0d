//! `carelog.audit.v1.AuditService`: the audit logs' signed checkpoints and
//! proofs, read from PostgreSQL (`carelog_projections::audit_log`), and the
//! questions a medico-legal request asks of the audit history
//! (`carelog_projections::audit_queries`). Reading who accessed a record,
//! or what a user did to records, is itself an access to those records and
//! is audited like any other read (ADR 0026).

use std::sync::Arc;

use carelog_demographics::api::disclosure;
use carelog_demographics::queries::{Consistency, PageRequest};
use carelog_kernel::access::{self, AccessSink, Reads};
use carelog_kernel::envelope::from_timestamp;
use carelog_kernel::guard::Guard;
use carelog_kernel::merkle::checkpoint::SigningKey;
use carelog_kernel::{Failure, PatientId, RequestContext, Violations, edge};
use carelog_projections::audit_log::{self, AuditError, StoredCheckpoint};
use carelog_projections::audit_queries::{self, TimeRange};
use carelog_proto::audit::v1 as pb;
use carelog_proto::audit::v1::audit_service_server::AuditService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

const SERVICE: &str = "carelog.audit.v1.AuditService";

/// The service; signs on demand when given a key and origin, and audits its
/// answers about patients to `access`.
#[derive(Debug)]
pub struct AuditApi {
    pool: PgPool,
    signer: Option<(SigningKey, String)>,
    access: Arc<dyn AccessSink>,
    /// The access decision: a patient's access history is shown only to
    /// those who may access the patient (ADR 0020).
    guard: Guard,
}

impl AuditApi {
    pub fn new(
        pool: PgPool,
        signer: Option<(SigningKey, String)>,
        access: Arc<dyn AccessSink>,
        guard: Guard,
    ) -> Self {
        Self {
            pool,
            signer,
            access,
            guard,
        }
    }

    async fn latest(&self, log: &str) -> Result<StoredCheckpoint, Status> {
        audit_log::latest_checkpoint(&self.pool, log)
            .await
            .map_err(status)?
            .ok_or_else(|| status(AuditError::NoCheckpoint(log.to_owned())))
    }

    async fn at(&self, log: &str, size: u64) -> Result<Option<pb::SignedCheckpoint>, Status> {
        Ok(audit_log::checkpoint_at(&self.pool, log, size)
            .await
            .map_err(status)?
            .map(to_proto))
    }
}

fn status(e: AuditError) -> Status {
    match e {
        AuditError::UnknownLog(_) | AuditError::Invalid(_) => {
            Status::invalid_argument(e.to_string())
        }
        AuditError::NoCheckpoint(_) => Status::not_found(e.to_string()),
        // One mapping of database errors for every read model.
        AuditError::Database(db) => carelog_projections::read_model_failure(db).into(),
        AuditError::Store(_) => Status::unavailable(e.to_string()),
        AuditError::Malformed(_) => Status::internal(e.to_string()),
    }
}

/// A request's time range: `from` before `to` when both are given.
fn range(r: Option<pb::TimeRange>, v: &mut Violations) -> TimeRange {
    let r = r.unwrap_or_default();
    let range = TimeRange {
        from: from_timestamp(r.from.as_ref()),
        to: from_timestamp(r.to.as_ref()),
    };
    if let (Some(from), Some(to)) = (range.from, range.to)
        && from > to
    {
        v.add("range.to", "must not be before range.from");
    }
    range
}

fn page(size: i32, token: String, v: &mut Violations) -> PageRequest {
    PageRequest {
        size: edge::page_size(size, v),
        token,
    }
}

fn to_proto(c: StoredCheckpoint) -> pb::SignedCheckpoint {
    pb::SignedCheckpoint {
        log: c.log,
        origin: c.origin,
        tree_size: c.tree_size,
        root_hash: c.root_hash.to_vec(),
        signed_at: c
            .signed_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        note: c.note,
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn get_latest_checkpoint(
        &self,
        request: Request<pb::GetLatestCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        let r = request.into_inner();
        Ok(Response::new(to_proto(self.latest(&r.log).await?)))
    }

    async fn sign_checkpoint(
        &self,
        request: Request<pb::SignCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        let r = request.into_inner();
        let Some((key, origin)) = &self.signer else {
            return Err(Status::failed_precondition(
                "no audit signing key is configured (CARELOG_AUDIT_SIGNING_KEY)",
            ));
        };
        let signed = audit_log::sign_checkpoint(&self.pool, &r.log, origin, key, true)
            .await
            .map_err(status)?
            .ok_or_else(|| Status::internal("nothing signed"))?;
        Ok(Response::new(to_proto(signed)))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::Proof>, Status> {
        let r = request.into_inner();
        let size = match r.tree_size {
            0 => self.latest(&r.log).await?.tree_size,
            n => n,
        };
        if r.leaf_index >= size {
            return Err(Status::invalid_argument(format!(
                "leaf_index {} is not in a tree of {size} entries",
                r.leaf_index
            )));
        }
        // An event log's entry is a commit (patient data): only its leaf
        // hash is given. A history entry is a signed checkpoint: given whole.
        let with_entry = r.log == audit_log::HISTORY;
        let doc = audit_log::inclusion_proof(&self.pool, &r.log, r.leaf_index, size, with_entry)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::Proof {
            document: doc.to_json(),
            checkpoint: self.at(&r.log, size).await?,
            old_checkpoint: None,
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::Proof>, Status> {
        let r = request.into_inner();
        let second = match r.second_size {
            0 => self.latest(&r.log).await?.tree_size,
            n => n,
        };
        let doc = audit_log::consistency_proof(&self.pool, &r.log, r.first_size, second)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::Proof {
            document: doc.to_json(),
            checkpoint: self.at(&r.log, second).await?,
            old_checkpoint: self.at(&r.log, r.first_size).await?,
        }))
    }

    async fn list_patient_access(
        &self,
        request: Request<pb::ListPatientAccessRequest>,
    ) -> Result<Response<pb::ListPatientAccessResponse>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let patient = edge::required("patient_id", &r.patient_id, PatientId::parse, &mut v);
        let range = range(r.range, &mut v);
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let patient = patient.ok_or_else(|| Failure::invalid_field("patient_id", "is required"))?;
        let facts = self.guard.admit(&mut ctx, patient).await?;
        let hides = disclosure(&self.guard, &ctx, &facts).hides_now();
        let patient_id = patient.to_string();
        let (mut accesses, next_page_token) = audit_queries::patient_access(
            &self.pool,
            &patient_id,
            range,
            &page,
            Consistency::until_deadline(&ctx, r.min_sequence),
        )
        .await?;
        let mut reads = Reads::new();
        for a in &mut accesses {
            let withheld = disclose_access(a.access.as_mut(), hides, &ctx);
            let (id, position) = (
                a.access.as_ref().map_or("", |e| e.access_id.as_str()),
                a.position.as_ref(),
            );
            reads.record(
                &patient_id,
                id,
                access::ACCESS,
                position.map_or(0, |p| p.stream_sequence),
                withheld,
            );
        }
        access::audit(&*self.access, &ctx, SERVICE, "ListPatientAccess", &reads).await?;
        Ok(Response::new(pb::ListPatientAccessResponse {
            accesses,
            next_page_token,
        }))
    }

    async fn list_actor_activity(
        &self,
        request: Request<pb::ListActorActivityRequest>,
    ) -> Result<Response<pb::ListActorActivityResponse>, Status> {
        let (ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        edge::require_text("user_id", &r.user_id, "is required", &mut v);
        let range = range(r.range, &mut v);
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let (mut activities, next_page_token) =
            audit_queries::actor_activity(&self.pool, r.user_id.trim(), range, &page).await?;
        // Each patient's entries only to a caller who may access the patient,
        // as every read of their record (no emergency access through here).
        let admitted = self
            .guard
            .admitted_with_facts(&ctx, activities.iter().map(|a| a.patient_id.as_str()))
            .await?;
        let listed = activities.len();
        activities.retain(|a| a.patient_id.is_empty() || admitted.contains_key(&a.patient_id));
        let withheld_count = i32::try_from(listed - activities.len()).unwrap_or(i32::MAX);
        let mut reads = Reads::new();
        for a in &mut activities {
            let hides = admitted
                .get(&a.patient_id)
                .is_some_and(|(_, facts)| disclosure(&self.guard, &ctx, facts).hides_now());
            let withheld = disclose_access(a.access.as_mut(), hides, &ctx);
            withhold_reason(a, hides, &ctx);
            if !a.patient_id.is_empty() {
                let position = a.position.as_ref();
                reads.record(
                    &a.patient_id,
                    &a.event_id,
                    &a.context,
                    position.map_or(0, |p| p.stream_sequence),
                    withheld || a.reason_withheld,
                );
            }
        }
        for (patient, (rule, _)) in &admitted {
            reads.rule(patient, rule);
        }
        access::audit(&*self.access, &ctx, SERVICE, "ListActorActivity", &reads).await?;
        Ok(Response::new(pb::ListActorActivityResponse {
            activities,
            next_page_token,
            withheld_count,
        }))
    }
}

/// An access event as the caller may see it: the registered practice of a
/// restricted patient, which the event names, is withheld from a caller who
/// may not see it (`hides`, ADR 0034), unless it is the caller's own.
/// Whether it was withheld (the read is then audited as withheld).
pub(crate) fn disclose_access(
    event: Option<&mut carelog_proto::access::v1::RecordAccessed>,
    hides: bool,
    ctx: &RequestContext,
) -> bool {
    if let Some(event) = event
        && hides
        && !event.registered_organisation.is_empty()
        && event.registered_organisation != ctx.actor.organisation.as_str()
    {
        event.registered_organisation.clear();
        return true;
    }
    false
}

/// A write's reason is left out for a caller of another organisation than
/// the writer's, in the contexts that hold confidential items: the audit
/// history cannot tell whether it names one (ADR 0024); and the reason of a
/// write to a restricted patient's demographics from a caller who may not
/// see what the restriction hides (`hides`, ADR 0034): it may say where the
/// patient went.
fn withhold_reason(activity: &mut pb::ActorActivity, hides: bool, ctx: &RequestContext) {
    let other = activity
        .actor
        .as_ref()
        .is_some_and(|a| a.organisation_ods != ctx.actor.organisation.as_str());
    let confidential =
        other && matches!(activity.context.as_str(), "consultations" | "medications");
    let restricted = hides && activity.context == "demographics";
    if (confidential || restricted) && !activity.reason.is_empty() {
        activity.reason.clear();
        activity.reason_withheld = true;
    }
}
