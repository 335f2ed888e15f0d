//! The gRPC face of medications: requests become commands through the
//! patient gate and the executor, domain errors become `Failure`s in one
//! `From` (`failure`), and queries are served from the read models
//! (`reads`).

use std::sync::Arc;

mod failure;
mod reads;

use carelog_demographics::gate::{PatientFacts, PatientGate};
use carelog_kernel::date::PartialDate;
use carelog_kernel::edge;
use carelog_kernel::ids::{AllergyId, AuthorisationId, IssueId};
use carelog_kernel::{
    Actor, Committed, Decision, Executor, Failure, PatientId, RequestContext, Violations,
};
use carelog_proto::medications::v1 as pb;
use pb::medications_service_server::MedicationsService;
use tonic::{Code, Request, Response, Status};

use crate::catalogue::DrugCatalogue;
use crate::domain::values::CHANGEABLE_PATHS;
use crate::domain::views::{answer_ids, answer_withholds, reviewed, withhold_overrides};
use crate::domain::{Command, Error, Facts, MedicationRecord, decide};
use crate::queries::MedicationsQueries;

fn patient_id(text: &str, v: &mut Violations) -> Option<PatientId> {
    edge::required("patient_id", text, PatientId::parse, v)
}

fn typed<T: std::str::FromStr>(field: &str, text: &str, v: &mut Violations) -> Option<T>
where
    T::Err: std::fmt::Display,
{
    edge::required(field, text, |t| t.trim().parse::<T>(), v)
}

/// The id of a resource a command creates in `patient`'s record: derived
/// from (user, request id, patient) when the client sent a request id, so a
/// repeated request names the same resource; else a new UUIDv7.
fn new_id<T: std::str::FromStr>(
    ctx: &RequestContext,
    kind: &str,
    patient: PatientId,
) -> Result<T, Failure>
where
    T::Err: std::error::Error,
{
    ctx.new_resource_id(&format!("carelog.medications.{kind}"), Some(patient))
        .to_string()
        .parse()
        .map_err(|e: T::Err| Failure::internal(&e))
}

fn missing(what: &str, id: &str) -> Status {
    Failure::not_found(what, id).into()
}

/// The medications gRPC service over an executor, the patient gate, the
/// drug catalogue and the read models.
pub struct MedicationsApi<Q> {
    executor: Arc<Executor<MedicationRecord>>,
    gate: PatientGate,
    queries: Arc<Q>,
    catalogue: Arc<DrugCatalogue>,
    access: Arc<dyn carelog_kernel::access::AccessSink>,
    guard: carelog_kernel::guard::Guard,
}

impl<Q> std::fmt::Debug for MedicationsApi<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MedicationsApi")
    }
}

impl<Q: MedicationsQueries> MedicationsApi<Q> {
    /// With the built-in sample drug catalogue; see `with_catalogue`.
    pub fn new(
        executor: Arc<Executor<MedicationRecord>>,
        gate: PatientGate,
        queries: Arc<Q>,
        guard: carelog_kernel::guard::Guard,
    ) -> Self {
        let access = Arc::new(carelog_kernel::access::AccessLog::new(
            executor.store().clone(),
        ));
        Self {
            executor,
            gate,
            queries,
            catalogue: Arc::new(DrugCatalogue::sample()),
            access,
            guard,
        }
    }

    /// Reads are audited to `access` instead of `CARELOG_ACCESS`.
    pub fn with_access_log(mut self, access: Arc<dyn carelog_kernel::access::AccessSink>) -> Self {
        self.access = access;
        self
    }

    /// Uses a site's drug catalogue.
    pub fn with_catalogue(mut self, catalogue: Arc<DrugCatalogue>) -> Self {
        self.catalogue = catalogue;
        self
    }

    /// Runs a command on the patient's record, after the gate: `alive` for
    /// new clinical activity, else `open`.
    async fn run(
        &self,
        ctx: &mut RequestContext,
        patient: PatientId,
        alive: bool,
        command: Command,
    ) -> Result<Committed<MedicationRecord>, Status> {
        self.guard.admit(ctx, patient).await?;
        // An allergy on a duplicate merged away still weighs in the
        // survivor's checks, so it can still be resolved or corrected there.
        let corrects_allergy = matches!(
            command,
            Command::ResolveAllergy { .. } | Command::MarkAllergyEnteredInError { .. }
        );
        let gated = if alive {
            self.gate.alive(patient).await
        } else if corrects_allergy {
            self.gate.registered(patient).await
        } else {
            self.gate.open(patient).await
        };
        let facts: PatientFacts = match gated {
            // Done before the patient died or was merged: answered as it
            // was, not refused as if new.
            Err(refused)
                if refused.code == Code::FailedPrecondition
                    && self.executor.repeats(ctx, patient).await? =>
            {
                self.gate.registered(patient).await?
            }
            facts => facts?,
        };
        // The allergies of records merged into this one are the same
        // person's: closed, so read once, outside the command's lock.
        // Where each is held, for the audit of a refusal naming one.
        let mut merged_allergies = Vec::new();
        let mut held = Vec::new();
        for duplicate in &facts.merged_patient_ids {
            let record = self.executor.load_current(*duplicate).await?;
            for allergy in record.state.active_allergies() {
                held.push((allergy.allergy_id.clone(), *duplicate, record.last_sequence));
                merged_allergies.push(allergy.clone());
            }
        }
        let today = carelog_kernel::date::uk_today();
        // What the last decision's refusal tells of the record, if it
        // refused, and the position of the record it was decided on (the
        // closure may run again on a reloaded record).
        let named = std::sync::Mutex::new(Told::default());
        let committed = self
            .executor
            .execute(&*ctx, &[patient], |loaded| {
                let facts = Facts {
                    today,
                    birth_date: facts.birth_date,
                    catalogue: &self.catalogue,
                    organisation: ctx.actor.organisation.as_str(),
                    merged_allergies: &merged_allergies,
                };
                let decided = decide(&loaded[0].state, &facts, &command);
                if let Ok(mut named) = named.lock() {
                    *named = Told {
                        items: decided
                            .as_ref()
                            .err()
                            .map(Error::items_named)
                            .unwrap_or_default(),
                        withheld: decided.as_ref().is_err_and(Error::withholds),
                        position: loaded[0].last_sequence,
                    };
                }
                decided
                    .map(|events| Decision::single(patient, events))
                    .map_err(Failure::from)
            })
            .await;
        let committed = match committed {
            Ok(committed) => committed,
            Err(refused) => {
                let told = named.into_inner().unwrap_or_default();
                // A refusal that names items of the record (an allergy,
                // another authorisation, a last issue) tells the caller of
                // them, or that a confidential one conflicts: a read of
                // them, audited before the refusal is answered (ADR 0018).
                if refused.code == Code::FailedPrecondition
                    && (!told.items.is_empty() || told.withheld)
                {
                    let reads = reads_of(patient, &told.items, told.position, told.withheld, &held);
                    carelog_kernel::access::audit_unwritten(
                        &*self.access,
                        ctx,
                        reads::SERVICE,
                        &reads,
                    )
                    .await?;
                }
                return Err(refused.into());
            }
        };
        // An answer that stored nothing (a repeated request, a change
        // already made) reads the record as it stands: audited naming the
        // items it shows, at the position it was read at.
        if !committed.appended
            && let Some(loaded) = committed.aggregates.first()
        {
            let record = &loaded.state;
            let withheld = answer_withholds(record, &command, &ctx.actor, today);
            let shown = answer_ids(record, &command, &ctx.actor, today);
            let reads = reads_of(patient, &shown, loaded.last_sequence, withheld, &[]);
            carelog_kernel::access::audit_unwritten(&*self.access, ctx, reads::SERVICE, &reads)
                .await?;
        }
        Ok(committed)
    }
}

/// The reads of `items` of `patient`'s record at `position`, or of the
/// record alone when there are none; an item `held` by a record merged into
/// it (item, record, position) is read on that record, at its position.
fn reads_of(
    patient: PatientId,
    items: &[String],
    position: u64,
    withheld: bool,
    held: &[(String, PatientId, u64)],
) -> carelog_kernel::access::Reads {
    let patient = patient.to_string();
    let mut reads = carelog_kernel::access::Reads::new();
    for item in items {
        match held.iter().find(|(id, _, _)| id == item) {
            Some((_, record, at)) => {
                reads.record(&record.to_string(), item, reads::CONTEXT, *at, withheld)
            }
            None => reads.record(&patient, item, reads::CONTEXT, position, withheld),
        };
    }
    if items.is_empty() {
        reads.record(&patient, "", reads::CONTEXT, position, withheld);
    }
    reads
}

/// What a refusal told the caller of the record: the items it named,
/// whether it held back a confidential one, and the position of the record
/// it was decided on.
#[derive(Debug, Default)]
struct Told {
    items: Vec<String>,
    withheld: bool,
    position: u64,
}

fn state(committed: &Committed<MedicationRecord>) -> Result<&MedicationRecord, Status> {
    committed
        .aggregates
        .first()
        .map(|l| &l.state)
        .ok_or_else(|| {
            Failure::new(Code::Internal, "INTERNAL", "no record after the command").into()
        })
}

fn allergy_of(
    committed: &Committed<MedicationRecord>,
    patient: PatientId,
    id: &str,
) -> Result<pb::Allergy, Status> {
    let mut allergy = state(committed)?
        .allergy(id)
        .cloned()
        .ok_or_else(|| missing("allergy", id))?;
    allergy.patient_id = patient.to_string();
    allergy.stream_sequence = committed.sequence;
    Ok(allergy)
}

/// The authorisation `id` as `reader` may see it.
fn authorisation_of(
    committed: &Committed<MedicationRecord>,
    patient: PatientId,
    id: &str,
    reader: &Actor,
) -> Result<pb::Authorisation, Status> {
    let mut a = state(committed)?
        .authorisation(id)
        .cloned()
        .ok_or_else(|| missing("authorisation", id))?;
    a.patient_id = patient.to_string();
    a.stream_sequence = committed.sequence;
    withhold_overrides(&mut a, reader.organisation.as_str());
    Ok(a)
}

#[tonic::async_trait]
impl<Q: MedicationsQueries> MedicationsService for MedicationsApi<Q> {
    async fn record_allergy(
        &self,
        request: Request<pb::RecordAllergyRequest>,
    ) -> Result<Response<pb::Allergy>, Status> {
        let (mut ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let patient = patient_id(&r.patient_id, &mut v);
        if r.allergy.is_none() {
            v.add("allergy", "is required");
        }
        v.into_result()?;
        let patient = patient.ok_or_else(|| missing("patient", &r.patient_id))?;
        let allergy_id: AllergyId = new_id(&ctx, "allergy", patient)?;
        let command = Command::RecordAllergy {
            allergy_id,
            details: r.allergy.unwrap_or_default(),
            confidential: r.confidential,
        };
        let committed = self.run(&mut ctx, patient, true, command).await?;
        Ok(Response::new(allergy_of(
            &committed,
            patient,
            &allergy_id.to_string(),
        )?))
    }

    async fn resolve_allergy(
        &self,
        request: Request<pb::ResolveAllergyRequest>,
    ) -> Result<Response<pb::Allergy>, Status> {
        let (mut ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let patient = patient_id(&r.patient_id, &mut v);
        let allergy_id: Option<AllergyId> = typed("allergy_id", &r.allergy_id, &mut v);
        let resolved_on = match r.resolved_on {
            None => None,
            Some(date) => v.check("resolved_on", PartialDate::from_proto(Some(&date))),
        };
        v.into_result()?;
        let (Some(patient), Some(allergy_id)) = (patient, allergy_id) else {
            return Err(Failure::invalid_field("patient_id", "is required").into());
        };
        let command = Command::ResolveAllergy {
            allergy_id,
            resolved_on,
            reason: r.reason,
        };
        let committed = self.run(&mut ctx, patient, false, command).await?;
        Ok(Response::new(allergy_of(
            &committed,
            patient,
            &allergy_id.to_string(),
        )?))
    }

    async fn mark_allergy_entered_in_error(
        &self,
        request: Request<pb::MarkAllergyEnteredInErrorRequest>,
    ) -> Result<Response<pb::Allergy>, Status> {
        let (mut ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let patient = patient_id(&r.patient_id, &mut v);
        let allergy_id: Option<AllergyId> = typed("allergy_id", &r.allergy_id, &mut v);
        v.into_result()?;
        let (Some(patient), Some(allergy_id)) = (patient, allergy_id) else {
            return Err(Failure::invalid_field("patient_id", "is required").into());
        };
        let command = Command::MarkAllergyEnteredInError {
            allergy_id,
            reason: r.reason,
        };
        let committed = self.run(&mut ctx, patient, false, command).await?;
        Ok(Response::new(allergy_of(
            &committed,
            patient,
            &allergy_id.to_string(),
        )?))
    }

    async fn authorise_medication(
        &self,
        request: Request<pb::AuthoriseMedicationRequest>,
    ) -> Result<Response<pb::Authorisation>, Status> {
        let (mut ctx, r) = RequestContext::command(request, |r| {
            (&r.request_id, commit_reason(&r.reason, &r.override_reason))
        })?;
        let mut v = Violations::new();
        let patient = patient_id(&r.patient_id, &mut v);
        if r.authorisation.is_none() {
            v.add("authorisation", "is required");
        }
        override_reason(&r.override_reason, &mut v);
        v.into_result()?;
        let patient = patient.ok_or_else(|| missing("patient", &r.patient_id))?;
        let authorisation_id: AuthorisationId = new_id(&ctx, "authorisation", patient)?;
        let command = Command::Authorise {
            authorisation_id,
            details: r.authorisation.unwrap_or_default(),
            override_reason: r.override_reason,
            confidential: r.confidential,
        };
        let committed = self.run(&mut ctx, patient, true, command).await?;
        Ok(Response::new(authorisation_of(
            &committed,
            patient,
            &authorisation_id.to_string(),
            &ctx.actor,
        )?))
    }

    async fn issue_prescription(
        &self,
        request: Request<pb::IssuePrescriptionRequest>,
    ) -> Result<Response<pb::Issue>, Status> {
        let (mut ctx, r) = RequestContext::command(request, |r| {
            (&r.request_id, commit_reason(&r.reason, &r.override_reason))
        })?;
        let mut v = Violations::new();
        let patient = patient_id(&r.patient_id, &mut v);
        let authorisation_id: Option<AuthorisationId> =
            typed("authorisation_id", &r.authorisation_id, &mut v);
        override_reason(&r.override_reason, &mut v);
        v.into_result()?;
        let (Some(patient), Some(authorisation_id)) = (patient, authorisation_id) else {
            return Err(Failure::invalid_field("patient_id", "is required").into());
        };
        let issue_id: IssueId = new_id(&ctx, "issue", patient)?;
        let command = Command::Issue {
            issue_id,
            authorisation_id,
            override_reason: r.override_reason,
        };
        let committed = self.run(&mut ctx, patient, true, command).await?;
        let id = issue_id.to_string();
        let mut issue = state(&committed)?
            .issue(&id)
            .cloned()
            .ok_or_else(|| missing("issue", &id))?;
        issue.patient_id = patient.to_string();
        issue.stream_sequence = committed.sequence;
        Ok(Response::new(issue))
    }

    async fn change_medication(
        &self,
        request: Request<pb::ChangeMedicationRequest>,
    ) -> Result<Response<pb::ChangeMedicationResponse>, Status> {
        let (mut ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let patient = patient_id(&r.patient_id, &mut v);
        let authorisation_id: Option<AuthorisationId> =
            typed("authorisation_id", &r.authorisation_id, &mut v);
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            v.add("update_mask", "is required: name the fields to change");
        }
        override_reason(&r.override_reason, &mut v);
        for (i, path) in paths.iter().enumerate() {
            if !CHANGEABLE_PATHS.contains(&path.as_str()) {
                v.add(
                    format!("update_mask.paths[{i}]"),
                    format!(
                        "unknown field '{path}'; changeable fields: {}",
                        CHANGEABLE_PATHS.join(", ")
                    ),
                );
            }
        }
        v.into_result()?;
        let (Some(patient), Some(authorisation_id)) = (patient, authorisation_id) else {
            return Err(Failure::invalid_field("patient_id", "is required").into());
        };
        let new_authorisation_id: AuthorisationId = new_id(&ctx, "authorisation", patient)?;
        let command = Command::Change {
            authorisation_id,
            new_authorisation_id,
            details: r.authorisation.unwrap_or_default(),
            paths,
            reason: r.reason,
            override_reason: r.override_reason,
        };
        let committed = self.run(&mut ctx, patient, true, command).await?;
        Ok(Response::new(pb::ChangeMedicationResponse {
            stopped: Some(authorisation_of(
                &committed,
                patient,
                &authorisation_id.to_string(),
                &ctx.actor,
            )?),
            started: Some(authorisation_of(
                &committed,
                patient,
                &new_authorisation_id.to_string(),
                &ctx.actor,
            )?),
            stream_sequence: committed.sequence,
        }))
    }

    async fn discontinue_medication(
        &self,
        request: Request<pb::DiscontinueMedicationRequest>,
    ) -> Result<Response<pb::Authorisation>, Status> {
        let (mut ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let patient = patient_id(&r.patient_id, &mut v);
        let authorisation_id: Option<AuthorisationId> =
            typed("authorisation_id", &r.authorisation_id, &mut v);
        v.into_result()?;
        let (Some(patient), Some(authorisation_id)) = (patient, authorisation_id) else {
            return Err(Failure::invalid_field("patient_id", "is required").into());
        };
        let command = Command::Discontinue {
            authorisation_id,
            reason: r.reason,
        };
        let committed = self.run(&mut ctx, patient, false, command).await?;
        Ok(Response::new(authorisation_of(
            &committed,
            patient,
            &authorisation_id.to_string(),
            &ctx.actor,
        )?))
    }

    async fn record_medication_review(
        &self,
        request: Request<pb::RecordMedicationReviewRequest>,
    ) -> Result<Response<pb::RecordMedicationReviewResponse>, Status> {
        let (mut ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let patient = patient_id(&r.patient_id, &mut v);
        let mut ids = Vec::new();
        for (i, text) in r.authorisation_ids.iter().enumerate() {
            if let Some(id) =
                typed::<AuthorisationId>(&format!("authorisation_ids[{i}]"), text, &mut v)
            {
                ids.push(id);
            }
        }
        v.into_result()?;
        let patient = patient.ok_or_else(|| missing("patient", &r.patient_id))?;
        let named: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let command = Command::Review {
            authorisation_ids: ids,
            next_review_date: r.next_review_date,
            note: r.note,
        };
        let committed = self.run(&mut ctx, patient, false, command).await?;
        // The authorisations this review (or the first one with the same
        // request id) touched.
        let today = carelog_kernel::date::uk_today();
        let record = state(&committed)?;
        let reviewed_ids: Vec<String> =
            reviewed(record, &ctx.actor, &named, today, r.next_review_date)
                .map(|a| a.authorisation_id.clone())
                .collect();
        let mut reviewed = Vec::new();
        for id in reviewed_ids {
            reviewed.push(authorisation_of(&committed, patient, &id, &ctx.actor)?);
        }
        Ok(Response::new(pb::RecordMedicationReviewResponse {
            reviewed,
            stream_sequence: committed.sequence,
        }))
    }

    async fn list_medications(
        &self,
        request: Request<pb::ListMedicationsRequest>,
    ) -> Result<Response<pb::ListMedicationsResponse>, Status> {
        self.read_list_medications(request).await
    }

    async fn list_issues(
        &self,
        request: Request<pb::ListIssuesRequest>,
    ) -> Result<Response<pb::ListIssuesResponse>, Status> {
        self.read_list_issues(request).await
    }

    async fn list_allergies(
        &self,
        request: Request<pb::ListAllergiesRequest>,
    ) -> Result<Response<pb::ListAllergiesResponse>, Status> {
        self.read_list_allergies(request).await
    }
}

/// An override's reason: recorded on the event and shown to readers of the
/// medication (not to another organisation's, when the check was over a
/// confidential item: ADR 0024), so bounded like every reason.
fn override_reason(reason: &str, v: &mut Violations) {
    carelog_kernel::edge::check_text(
        "override_reason",
        reason.trim(),
        carelog_kernel::actor::MAX_REASON,
        v,
    );
}

/// The commit's reason: an override's reason unless another is given, so
/// the audit history shows why a safety check was overridden.
fn commit_reason<'r>(reason: &'r str, override_reason: &'r str) -> &'r str {
    if reason.trim().is_empty() {
        override_reason
    } else {
        reason
    }
}
