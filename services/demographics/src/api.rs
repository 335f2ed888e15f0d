//! The gRPC face of demographics: requests become commands (or queries),
//! domain errors become `Failure`s in one `From`, and responses show a
//! restricted record without its hidden fields.

use std::sync::Arc;

use carelog_kernel::access::{self, AccessLog, AccessSink, Reads};
use carelog_kernel::access_control::{self, Caller, PatientAccess};
use carelog_kernel::date::PartialDate;
use carelog_kernel::edge;
use carelog_kernel::guard::Guard;
use carelog_kernel::{
    Actor, Committed, Decision, Executor, Failure, Loaded, PatientId, RequestContext, Violations,
};
use carelog_proto::demographics::v1 as pb;
use pb::demographics_service_server::DemographicsService;
use tonic::{Code, Request, Response, Status};

use crate::domain::values::{UPDATABLE_PATHS, apply_mask, check_details};
use crate::domain::{Command, Disclosure, Error, PatientRecord, decide, decide_merge};
use crate::gate::access_facts;
use crate::queries::{Consistency, PageRequest, PatientQueries, Search};

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::Invalid(v) => Failure::invalid(v),
            Error::NotFound(id) => Failure::not_found("patient", &id.to_string()),
            Error::Merged { survivor, .. } => {
                Failure::new(Code::FailedPrecondition, "PATIENT_MERGED", message)
                    .with("survivorPatientId", survivor)
            }
            Error::Deceased(_) => {
                Failure::new(Code::FailedPrecondition, "PATIENT_DECEASED", message)
            }
            Error::AlreadyDeceased(_) => {
                Failure::new(Code::FailedPrecondition, "ALREADY_DECEASED", message)
            }
            Error::NotDeceased(_) => {
                Failure::new(Code::FailedPrecondition, "NOT_DECEASED", message)
            }
            Error::NotMerged(_) => Failure::new(Code::FailedPrecondition, "NOT_MERGED", message),
            Error::SurvivorMerged { into, .. } => {
                Failure::new(Code::FailedPrecondition, "SURVIVOR_MERGED", message)
                    .with("survivorPatientId", into)
            }
            Error::HasMergedDuplicates(_) => {
                Failure::new(Code::FailedPrecondition, "HAS_MERGED_DUPLICATES", message)
            }
            Error::MergeFlagDiffers {
                flag, unflagged, ..
            } => Failure::new(Code::FailedPrecondition, "MERGE_FLAG_DIFFERS", message)
                .with("flag", flag)
                .with("unflaggedPatientId", unflagged.to_string()),
        }
    }
}

pub use carelog_kernel::edge::{DEFAULT_PAGE, MAX_PAGE};

/// A page request, its size bounded.
pub fn page(size: i32, token: String, v: &mut Violations) -> PageRequest {
    PageRequest {
        size: edge::page_size(size, v),
        token,
    }
}

fn patient_id(field: &str, text: &str, v: &mut Violations) -> Option<PatientId> {
    edge::required(field, text, PatientId::parse, v)
}

/// A single required patient id.
fn required_id(field: &str, text: &str) -> Result<PatientId, Failure> {
    let mut v = Violations::new();
    let id = patient_id(field, text, &mut v);
    v.into_result()?;
    id.ok_or_else(|| Failure::invalid_field(field, "is required"))
}

/// The record a one-patient command answers with.
fn first_resource(
    guard: &Guard,
    ctx: &RequestContext,
    committed: &Committed<PatientRecord>,
    id: PatientId,
) -> Result<pb::Patient, Failure> {
    let loaded = committed
        .aggregates
        .first()
        .ok_or_else(|| Failure::not_found("patient", &id.to_string()))?;
    Ok(resource(
        loaded,
        disclosure_of(guard, ctx, &loaded.state.patient),
    ))
}

/// What this caller sees of the restricted fields of the current record
/// `patient` (ADR 0020).
fn disclosure_of(guard: &Guard, ctx: &RequestContext, patient: &pb::Patient) -> Disclosure {
    disclosure(
        guard,
        ctx,
        &crate::gate::access_of(&patient.patient_id, patient),
    )
}

/// What this caller sees of the restricted fields of the patient whose
/// access facts are `facts`, in the current record or any earlier version.
pub fn disclosure(guard: &Guard, ctx: &RequestContext, facts: &PatientAccess) -> Disclosure {
    disclosure_as(guard, &ctx.actor, facts)
}

/// The same for `actor`, who need not be the caller: the reader an audit
/// query shows, with the patient's facts as they stood when they read.
pub fn disclosure_as(guard: &Guard, actor: &Actor, facts: &PatientAccess) -> Disclosure {
    let restricted = PatientAccess {
        restricted: true,
        ..facts.clone()
    };
    Disclosure {
        restricted_now: facts.restricted,
        privileged: guard.sees_restricted_as(actor, &restricted),
    }
}

/// The response resource: the record as this caller may see it.
pub fn resource(loaded: &Loaded<PatientRecord>, disclosure: Disclosure) -> pb::Patient {
    let mut patient = loaded.state.shown(disclosure);
    patient.patient_id = loaded.id.to_string();
    patient.version = loaded.version as i64;
    patient.stream_sequence = loaded.last_sequence;
    patient.updated_at = loaded
        .last_recorded_at
        .map(carelog_kernel::envelope::timestamp);
    patient
}

/// The demographics gRPC service over an executor and a read model.
pub struct DemographicsApi<Q> {
    executor: Arc<Executor<PatientRecord>>,
    queries: Arc<Q>,
    access: Arc<dyn AccessSink>,
    guard: Guard,
}

const SERVICE: &str = "carelog.demographics.v1.DemographicsService";
const CONTEXT: &str = "demographics";
/// A command's record no longer has the access facts it was admitted on;
/// never returned to a caller (the command is admitted and run again).
const FACTS_CHANGED: &str = "ACCESS_FACTS_CHANGED";

/// A command refused by its rules (the domain's, or a claim's) before
/// anything was appended; the store's own failures are not rejections.
fn is_rejection(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::NotFound
            | Code::AlreadyExists
            | Code::OutOfRange
    )
}

/// The access rule recorded for a search hit shown as minimal identity.
pub const IDENTITY_ONLY: &str = "identity_only";

/// One patient as shown, for the access log.
fn read(reads: &mut Reads, patient: &pb::Patient) {
    reads.record(
        &patient.patient_id,
        &patient.patient_id,
        CONTEXT,
        patient.stream_sequence,
        patient.withheld,
    );
}

impl<Q> std::fmt::Debug for DemographicsApi<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DemographicsApi")
    }
}

impl<Q: PatientQueries> DemographicsApi<Q> {
    /// Every call is admitted by `guard` (ADR 0020).
    pub fn new(executor: Arc<Executor<PatientRecord>>, queries: Arc<Q>, guard: Guard) -> Self {
        let access = Arc::new(AccessLog::new(executor.store().clone()));
        Self {
            executor,
            queries,
            access,
            guard,
        }
    }

    /// Reads are audited to `access` instead of `CARELOG_ACCESS`.
    pub fn with_access_log(mut self, access: Arc<dyn AccessSink>) -> Self {
        self.access = access;
        self
    }

    /// Runs a command on one patient and answers with the record after it.
    async fn on_patient(
        &self,
        mut ctx: RequestContext,
        id: PatientId,
        command: Command,
    ) -> Result<Response<pb::Patient>, Status> {
        let committed = self
            .admit_and_execute(&mut ctx, id, |record| {
                decide(id, record, &command).map_err(Failure::from)
            })
            .await?;
        self.answer(&ctx, &committed, id).await
    }

    /// The answer to a command on one patient: the record as the caller may
    /// see it. When the command wrote nothing (a repeated request, a change
    /// to what already was), that answer is a read, audited as one.
    async fn answer(
        &self,
        ctx: &RequestContext,
        committed: &Committed<PatientRecord>,
        id: PatientId,
    ) -> Result<Response<pb::Patient>, Status> {
        let patient = first_resource(&self.guard, ctx, committed, id)?;
        if !committed.appended {
            let mut reads = Reads::new();
            read(&mut reads, &patient);
            access::audit_unwritten(&*self.access, ctx, SERVICE, &reads).await?;
        }
        Ok(Response::new(patient))
    }

    /// Admits the caller to one patient and runs a command on it (ADR 0032).
    /// When the executor holds the record, access is granted on it and the
    /// command must decide on the same facts; a command stored that way was
    /// decided and admitted on exactly the record it changed, since its
    /// append is guarded by that record's last sequence (every demographics
    /// command that writes a claim writes the patient's commit with it), and
    /// no Direct Get of the patient's last commit was needed.
    ///
    /// What was decided on a record that may be stale and stored nothing (no
    /// record held, no ordinary rule granting, facts that changed, a
    /// duplicate, a command that changed nothing, a rejection) is admitted
    /// and decided again on the record as the store holds it now, as every
    /// command was before. An append whose outcome is unknown (the store
    /// unavailable, the retries spent) is answered as it is: running it again
    /// could store it twice.
    async fn admit_and_execute<F>(
        &self,
        ctx: &mut RequestContext,
        id: PatientId,
        decide: F,
    ) -> Result<Committed<PatientRecord>, Failure>
    where
        F: Fn(&PatientRecord) -> Result<Decision<pb::Event>, Failure>,
    {
        if let Some(facts) = self
            .executor
            .peek(id, |l| access_facts(id, &l.state))
            .flatten()
            && self.guard.try_admit_on(ctx, &facts).await
        {
            let outcome = self
                .executor
                .execute(ctx, &[id], |loaded| {
                    let record = &loaded[0].state;
                    if access_facts(id, record).as_ref() != Some(&facts) {
                        return Err(Failure::new(
                            Code::Aborted,
                            FACTS_CHANGED,
                            "the patient's access facts changed",
                        ));
                    }
                    decide(record)
                })
                .await;
            match outcome {
                Ok(committed) if committed.appended => return Ok(committed),
                Ok(_) => {}
                // A refusal decided on a record that may be stale (a
                // transfer the cache has not seen) is decided again too.
                Err(f)
                    if f.reason == FACTS_CHANGED
                        || is_rejection(f.code)
                        || f.code == Code::PermissionDenied => {}
                Err(f) => return Err(f),
            }
        }
        self.guard.admit(ctx, id).await?;
        self.executor
            .execute(ctx, &[id], |loaded| decide(&loaded[0].state))
            .await
    }

    async fn flag(
        &self,
        request: Request<pb::PatientFlagRequest>,
        command: impl FnOnce(String) -> Command,
    ) -> Result<Response<pb::Patient>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let id = required_id("patient_id", &r.patient_id)?;
        self.on_patient(ctx, id, command(r.reason)).await
    }

    async fn merge(
        &self,
        mut ctx: RequestContext,
        duplicate: PatientId,
        survivor: PatientId,
        command: Command,
    ) -> Result<Response<pb::MergePatientResponse>, Status> {
        self.guard.admit(&mut ctx, duplicate).await?;
        self.guard.admit(&mut ctx, survivor).await?;
        let committed = self
            .executor
            .execute(&ctx, &[duplicate, survivor], |l| {
                decide_merge((duplicate, &l[0].state), (survivor, &l[1].state), &command)
                    .map_err(Failure::from)
            })
            .await?;
        let get = |id: PatientId| {
            committed
                .get(id)
                .map(|l| resource(l, disclosure_of(&self.guard, &ctx, &l.state.patient)))
        };
        let (duplicate, survivor) = (get(duplicate), get(survivor));
        if !committed.appended {
            let mut reads = Reads::new();
            duplicate
                .iter()
                .chain(survivor.iter())
                .for_each(|p| read(&mut reads, p));
            access::audit_unwritten(&*self.access, &ctx, SERVICE, &reads).await?;
        }
        Ok(Response::new(pb::MergePatientResponse {
            duplicate,
            survivor,
            stream_sequence: committed.sequence,
        }))
    }

    /// A page of a search's hits, each with its facts as the event store
    /// holds them (ADR 0020), not as its row says: a restriction, an
    /// objection or a transfer recorded a moment ago, which the row may not
    /// show yet, and for a record merged into a survivor, the survivor's
    /// flags since (ADR 0034).
    ///
    /// A restricted patient is not found by a postcode, whoever asks: a hit
    /// would say where they live. The projection leaves their postcodes
    /// out; a merged record's, or a restriction not yet projected, are left
    /// out here, and the page is filled from the rows after them, so a
    /// caller is not handed a short page while more follow. After
    /// [`FILL_ROUNDS`] fetches the page is returned as it is, with its token
    /// (AIP-158 allows a short page).
    async fn hits(
        &self,
        search: &Search,
        mut page: PageRequest,
        at: Consistency,
    ) -> Result<(Vec<pb::Patient>, Vec<PatientAccess>, String), Failure> {
        let by_postcode = matches!(search, Search::Postcode(_));
        let wanted = page.size as usize;
        let (mut patients, mut facts) = (Vec::new(), Vec::new());
        for _ in 0..FILL_ROUNDS {
            let (rows, next) = self.queries.search(search, &page, at).await?;
            // (Looked up together: one Direct Get each, a page of up to 200.)
            let found: Vec<PatientAccess> =
                futures::future::try_join_all(rows.iter().map(|p| async move {
                    let row = || crate::gate::access_of(&p.patient_id, p);
                    Ok::<_, Failure>(
                        self.guard
                            .patient_facts(&p.patient_id)
                            .await?
                            .unwrap_or_else(row),
                    )
                }))
                .await?;
            for (patient, fact) in rows.into_iter().zip(found) {
                if !(by_postcode && fact.restricted) {
                    patients.push(patient);
                    facts.push(fact);
                }
            }
            page.token = next;
            if patients.len() >= wanted || page.token.is_empty() {
                break;
            }
            page.size = u32::try_from(wanted - patients.len()).unwrap_or(page.size);
        }
        Ok((patients, facts, page.token))
    }
}

/// How many fetches a search makes at most to fill a page whose hits were
/// left out.
const FILL_ROUNDS: usize = 4;

#[tonic::async_trait]
impl<Q: PatientQueries> DemographicsService for DemographicsApi<Q> {
    async fn register_patient(
        &self,
        request: Request<pb::RegisterPatientRequest>,
    ) -> Result<Response<pb::Patient>, Status> {
        let (mut ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let details = check_details(&r.details.unwrap_or_default(), "details", &mut v);
        v.into_result()?;
        self.guard
            .admit_registration(&mut ctx, &details.registered_practice_ods)
            .await?;
        let id = match ctx.request_id.as_str() {
            "" => PatientId::new(),
            request_id => PatientId::for_request(&ctx.actor.user_id, request_id),
        };
        let command = Command::Register { details };
        let committed = self
            .executor
            .create(&ctx, id, |loaded| {
                decide(id, &loaded[0].state, &command).map_err(Failure::from)
            })
            .await?;
        // A repeated registration answers with the patient as they stand,
        // who may have moved to another practice since: a read of their
        // record, for a caller the guard admits to it now.
        if !committed.appended {
            self.guard.admit(&mut ctx, id).await?;
        }
        self.answer(&ctx, &committed, id).await
    }

    async fn update_demographics(
        &self,
        request: Request<pb::UpdateDemographicsRequest>,
    ) -> Result<Response<pb::Patient>, Status> {
        let (mut ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let id = patient_id("patient_id", &r.patient_id, &mut v);
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            v.add("update_mask", "is required: name the fields to change");
        }
        for (i, path) in paths.iter().enumerate() {
            if !UPDATABLE_PATHS.contains(&path.as_str()) {
                v.add(
                    format!("update_mask.paths[{i}]"),
                    format!(
                        "unknown field '{path}'; updatable fields: {}",
                        UPDATABLE_PATHS.join(", ")
                    ),
                );
            }
        }
        v.into_result()?;
        let id = id.ok_or_else(|| Failure::invalid_field("patient_id", "is required"))?;
        let new = r.details.unwrap_or_default();
        // A change of registered practice is a transfer, the act of the
        // current practice only (ADR 0021), decided on the record it changes.
        let (user, organisation, teams) = (
            ctx.actor.user_id.clone(),
            ctx.actor.organisation.as_str().to_owned(),
            ctx.teams.clone(),
        );
        let transfer_refused = std::sync::Mutex::new(None);
        let outcome = self
            .admit_and_execute(&mut ctx, id, |record| {
                let mut merged = record.details().clone();
                apply_mask(&mut merged, &new, &paths);
                let mut v = Violations::new();
                let details = check_details(&merged, "details", &mut v);
                // A merged record is closed whatever is sent: the domain
                // refuses it naming the survivor, before input or transfer.
                if record.is_registered() && record.merged_into().is_none() {
                    v.into_result()?;
                    // Compared as checked (an ODS code trimmed, upper case).
                    let caller = Caller {
                        user_id: &user,
                        organisation: &organisation,
                        teams: &teams,
                    };
                    let current = &record.details().registered_practice_ods;
                    if let Err(refusal) = access_control::decide_transfer(
                        &caller,
                        current,
                        &details.registered_practice_ods,
                    ) {
                        if let Ok(mut refused) = transfer_refused.lock() {
                            *refused = Some(refusal);
                        }
                        return Err(refusal.failure());
                    }
                }
                let command = Command::Update {
                    details,
                    paths: paths.clone(),
                    correction: r.correction,
                    reason: r.reason.clone(),
                };
                decide(id, record, &command).map_err(Failure::from)
            })
            .await;
        let committed = match outcome {
            Ok(committed) => committed,
            Err(failure) => {
                let refused = transfer_refused.into_inner().ok().flatten();
                return Err(match refused {
                    Some(refusal) if failure.reason == refusal.code() => {
                        self.guard.refuse(&ctx, &id.to_string(), refusal).await
                    }
                    _ => failure,
                }
                .into());
            }
        };
        self.answer(&ctx, &committed, id).await
    }

    async fn record_death(
        &self,
        request: Request<pb::RecordDeathRequest>,
    ) -> Result<Response<pb::Patient>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let id = patient_id("patient_id", &r.patient_id, &mut v);
        let date = v.check(
            "date_of_death",
            PartialDate::from_proto(r.date_of_death.as_ref()),
        );
        v.into_result()?;
        match (id, date) {
            (Some(id), Some(date)) => {
                self.on_patient(ctx, id, Command::RecordDeath { date })
                    .await
            }
            _ => Err(Failure::invalid_field("patient_id", "is required").into()),
        }
    }

    async fn amend_death(
        &self,
        request: Request<pb::AmendDeathRequest>,
    ) -> Result<Response<pb::Patient>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let id = patient_id("patient_id", &r.patient_id, &mut v);
        let date = if r.entered_in_error {
            None
        } else {
            v.check(
                "date_of_death",
                PartialDate::from_proto(r.date_of_death.as_ref()),
            )
        };
        v.into_result()?;
        let id = id.ok_or_else(|| Failure::invalid_field("patient_id", "is required"))?;
        self.on_patient(
            ctx,
            id,
            Command::AmendDeath {
                date,
                reason: r.reason,
            },
        )
        .await
    }

    async fn merge_patient(
        &self,
        request: Request<pb::MergePatientRequest>,
    ) -> Result<Response<pb::MergePatientResponse>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let duplicate = patient_id("duplicate_patient_id", &r.duplicate_patient_id, &mut v);
        let survivor = patient_id("survivor_patient_id", &r.survivor_patient_id, &mut v);
        v.into_result()?;
        let (Some(duplicate), Some(survivor)) = (duplicate, survivor) else {
            return Err(Failure::invalid_field("duplicate_patient_id", "is required").into());
        };
        self.merge(
            ctx,
            duplicate,
            survivor,
            Command::Merge {
                survivor,
                reason: r.reason,
            },
        )
        .await
    }

    async fn unmerge_patient(
        &self,
        request: Request<pb::UnmergePatientRequest>,
    ) -> Result<Response<pb::MergePatientResponse>, Status> {
        let (mut ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let duplicate = required_id("duplicate_patient_id", &r.duplicate_patient_id)?;
        self.guard.admit(&mut ctx, duplicate).await?;
        let record = self.executor.load_current(duplicate).await?;
        if !record.exists() {
            return Err(Failure::from(Error::NotFound(duplicate)).into());
        }
        // A repeat of an unmerge that was made is answered with that unmerge
        // (by the executor), from the survivor it named, whatever the record
        // went through since: not refused as not merged, nor told of
        // another survivor.
        let repeated = self.executor.events_of_request(&ctx, &record).await?;
        let survivor = repeated
            .iter()
            .flatten()
            .find_map(|e| match &e.event {
                Some(pb::event::Event::PatientUnmerged(u)) => Some(u.survivor_patient_id.as_str()),
                _ => None,
            })
            .or_else(|| record.state.merged_into())
            .and_then(|s| PatientId::parse(s).ok())
            .ok_or_else(|| Failure::from(Error::NotMerged(duplicate)))?;
        self.merge(
            ctx,
            duplicate,
            survivor,
            Command::Unmerge { reason: r.reason },
        )
        .await
    }

    async fn mark_restricted(
        &self,
        request: Request<pb::PatientFlagRequest>,
    ) -> Result<Response<pb::Patient>, Status> {
        self.flag(request, |_| Command::MarkRestricted).await
    }

    async fn clear_restricted(
        &self,
        request: Request<pb::PatientFlagRequest>,
    ) -> Result<Response<pb::Patient>, Status> {
        self.flag(request, |reason| Command::ClearRestricted { reason })
            .await
    }

    async fn record_sharing_objection(
        &self,
        request: Request<pb::PatientFlagRequest>,
    ) -> Result<Response<pb::Patient>, Status> {
        self.flag(request, |_| Command::RecordSharingObjection)
            .await
    }

    async fn withdraw_sharing_objection(
        &self,
        request: Request<pb::PatientFlagRequest>,
    ) -> Result<Response<pb::Patient>, Status> {
        self.flag(request, |reason| Command::WithdrawSharingObjection {
            reason,
        })
        .await
    }

    async fn get_patient(
        &self,
        request: Request<pb::GetPatientRequest>,
    ) -> Result<Response<pb::Patient>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
        let id = required_id("patient_id", &r.patient_id)?;
        let facts = self.guard.admit(&mut ctx, id).await?;
        // From the event store: the row read below may not show a
        // restriction recorded a moment ago.
        let disclosure = disclosure(&self.guard, &ctx, &facts);
        let patient = self
            .queries
            .get(id, Consistency::until_deadline(&ctx, r.min_sequence))
            .await?
            .ok_or_else(|| Failure::not_found("patient", &id.to_string()))?;
        let patient = PatientRecord::shown_resource(patient, disclosure);
        let mut reads = Reads::new();
        read(&mut reads, &patient);
        access::audit(&*self.access, &ctx, SERVICE, "GetPatient", &reads).await?;
        Ok(Response::new(patient))
    }

    async fn search_patients(
        &self,
        request: Request<pb::SearchPatientsRequest>,
    ) -> Result<Response<pb::SearchPatientsResponse>, Status> {
        let (ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let search = search_of(&r, &mut v);
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let search = search
            .ok_or_else(|| Failure::invalid_field("nhs_number", "name one way of searching"))?;
        let (patients, facts, next_page_token) = self
            .hits(
                &search,
                page,
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?;
        let verdicts = self.guard.verdicts(&ctx, &facts).await?;
        let mut reads = Reads::new();
        let patients: Vec<_> = patients
            .into_iter()
            .zip(facts.iter().zip(verdicts))
            .map(|(patient, (facts, verdict))| {
                let (shown, rule) = match verdict {
                    Ok(rule) => (
                        PatientRecord::shown_resource(
                            patient,
                            disclosure(&self.guard, &ctx, facts),
                        ),
                        rule.to_string(),
                    ),
                    Err(_) => (
                        PatientRecord::identity_only(&patient),
                        IDENTITY_ONLY.to_owned(),
                    ),
                };
                read(&mut reads, &shown);
                reads.rule(&shown.patient_id, &rule);
                shown
            })
            .collect();
        access::audit(&*self.access, &ctx, SERVICE, "SearchPatients", &reads).await?;
        Ok(Response::new(pb::SearchPatientsResponse {
            patients,
            next_page_token,
        }))
    }

    async fn list_patient_versions(
        &self,
        request: Request<pb::ListPatientVersionsRequest>,
    ) -> Result<Response<pb::ListPatientVersionsResponse>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let id = patient_id("patient_id", &r.patient_id, &mut v);
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let id = id.ok_or_else(|| Failure::invalid_field("patient_id", "is required"))?;
        let facts = self.guard.admit(&mut ctx, id).await?;
        // Every version is shown as the patient stands now: a version written
        // before a restriction holds the address it protects.
        let disclosure = disclosure(&self.guard, &ctx, &facts);
        let (mut versions, next_page_token) = self
            .queries
            .versions(id, &page, Consistency::until_deadline(&ctx, r.min_sequence))
            .await?;
        if versions.is_empty() && page.token.is_empty() {
            return Err(Failure::not_found("patient", &id.to_string()).into());
        }
        let mut reads = Reads::new();
        for version in &mut versions {
            version.patient = version
                .patient
                .take()
                .map(|p| PatientRecord::shown_resource(p, disclosure));
            let withheld = version.patient.as_ref().is_some_and(|p| p.withheld);
            if withheld {
                version.reason_withheld = Disclosure::withhold_writing(
                    &mut version.actor_organisation_ods,
                    &mut version.reason,
                );
            }
            reads.record(
                &id.to_string(),
                &id.to_string(),
                CONTEXT,
                version.stream_sequence,
                withheld,
            );
        }
        access::audit(&*self.access, &ctx, SERVICE, "ListPatientVersions", &reads).await?;
        Ok(Response::new(pb::ListPatientVersionsResponse {
            versions,
            next_page_token,
        }))
    }
}

/// Exactly one way of searching, each checked.
fn search_of(r: &pb::SearchPatientsRequest, v: &mut Violations) -> Option<Search> {
    let nhs = !r.nhs_number.trim().is_empty();
    let family = !r.family_name.trim().is_empty();
    let postcode = !r.postcode.trim().is_empty();
    let prefix = !r.family_name_prefix.trim().is_empty();
    const ONE_WAY: &str = "name exactly one way of searching: nhs_number; family_name with birth_date; postcode; or family_name_prefix";
    let given: Vec<&str> = [
        (nhs, "nhs_number"),
        (family, "family_name"),
        (postcode, "postcode"),
        (prefix, "family_name_prefix"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    match given.len() {
        // Nothing names a way: the first of them is the one to fill in.
        0 => v.add("nhs_number", ONE_WAY),
        1 => {}
        // Each way given is named: the caller keeps one.
        _ => given.iter().for_each(|name| v.add(*name, ONE_WAY)),
    }
    // (a client that always sends the message sends it empty)
    let stray_birth_date = r
        .birth_date
        .is_some_and(|d| d.year != 0 || d.month != 0 || d.day != 0)
        && !family;
    if stray_birth_date {
        v.add("birth_date", "is used only with family_name");
    }
    if given.len() != 1 || stray_birth_date {
        return None;
    }
    if nhs {
        return v
            .check(
                "nhs_number",
                carelog_kernel::NhsNumber::parse(&r.nhs_number),
            )
            .map(|n| Search::NhsNumber(n.as_str().to_owned()));
    }
    if family {
        let birth_date = v.check("birth_date", PartialDate::from_proto(r.birth_date.as_ref()))?;
        return Some(Search::FamilyAndBirthDate {
            family: r.family_name.trim().to_owned(),
            birth_date,
        });
    }
    if postcode {
        return v
            .check(
                "postcode",
                crate::domain::values::Postcode::parse(&r.postcode),
            )
            .map(|p| Search::Postcode(p.as_str().to_owned()));
    }
    let prefix = r.family_name_prefix.trim();
    if prefix.chars().count() < 2 {
        v.add("family_name_prefix", "must be at least 2 characters");
        return None;
    }
    Some(Search::FamilyPrefix(prefix.to_owned()))
}
