//! The gRPC face of consultations: requests are checked at the edge and
//! become commands, the patient passes the gate (demographics history, read
//! from the event store), the executor decides and appends. Queries read the
//! read models through the port.

mod edge;

use std::sync::Arc;

use carelog_demographics::api::page;
use carelog_demographics::gate::{PatientFacts, PatientGate};
use carelog_kernel::access::{self, AccessLog, AccessSink, Reads};
use carelog_kernel::access_control::Rule;
use carelog_kernel::edge::require_text;
use carelog_kernel::guard::Guard;
use carelog_kernel::ids::{ConsultationId, EntryId, TopicId};
use carelog_kernel::{Executor, Failure, PatientId, RequestContext, Violations};
use carelog_proto::consultations::v1 as pb;
use chrono::Utc;
use pb::consultations_service_server::ConsultationsService;
use tonic::{Request, Response, Status};

use crate::domain::values::{MAX_TITLE, check_content};
use crate::domain::views::withhold_entries;
use crate::domain::{Command, Context, PatientConsultations, TopicRef, current_view, decide};
use crate::queries::{Consistency, ConsultationsQueries};
use carelog_kernel::confidential::withhold;
use edge::{caller, consultation, derived, mask_paths, missing, patient, required, typed};

pub struct ConsultationsApi<Q> {
    executor: Arc<Executor<PatientConsultations>>,
    gate: PatientGate,
    queries: Arc<Q>,
    access: Arc<dyn AccessSink>,
    guard: Guard,
}

const SERVICE: &str = "carelog.consultations.v1.ConsultationsService";
const CONTEXT: &str = "consultations";

/// A consultation as shown, for the access log (`withheld` when entries
/// were left out of it).
fn read(reads: &mut Reads, c: &pb::Consultation) {
    reads.record(
        &c.patient_id,
        &c.consultation_id,
        CONTEXT,
        c.stream_sequence,
        c.withheld_count > 0,
    );
}

/// A consultation as `ctx`'s caller may see it: its current view, less the
/// confidential entries of other organisations (counted).
fn shown_to(ctx: &RequestContext, consultation: &pb::Consultation) -> pb::Consultation {
    let mut shown = current_view(consultation);
    shown.withheld_count = withhold_entries(&mut shown, &ctx.actor);
    shown
}

/// The entry ids of a consultation.
fn entry_ids_of(c: &pb::Consultation) -> Vec<String> {
    c.topics
        .iter()
        .flat_map(|t| t.entries.iter().map(|e| e.entry_id.clone()))
        .collect()
}

/// When everything of a patient in an answer was withheld, the read is
/// still audited, marked withheld.
fn withheld_read(reads: &mut Reads, patient: &PatientId, withheld: i32) {
    if withheld > 0 && reads.is_empty() {
        reads.record(&patient.to_string(), "", CONTEXT, 0, true);
    }
}

impl<Q> std::fmt::Debug for ConsultationsApi<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsultationsApi")
    }
}

/// Whether a command is new clinical activity (refused for a deceased
/// patient) or a correction of what was recorded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Activity {
    New,
    Correction,
    /// Signing or voiding what is there: also on a duplicate merged away,
    /// whose unsigned consultation nothing else could close.
    Closing,
}

impl<Q: ConsultationsQueries> ConsultationsApi<Q> {
    pub fn new(
        executor: Arc<Executor<PatientConsultations>>,
        gate: PatientGate,
        queries: Arc<Q>,
        guard: Guard,
    ) -> Self {
        let access = Arc::new(AccessLog::new(executor.store().clone()));
        Self {
            executor,
            gate,
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

    async fn facts(&self, id: PatientId, activity: Activity) -> Result<PatientFacts, Failure> {
        match activity {
            Activity::New => self.gate.alive(id).await,
            Activity::Correction => self.gate.open(id).await,
            Activity::Closing => self.gate.registered(id).await,
        }
    }

    /// Admits the caller to the patient of a command. The write-up of a
    /// draft is admitted to that consultation alone whenever no ordinary
    /// rule admits the caller, however long ago it started: its author may
    /// add, edit or mark in error its entries and sign it, and a user of
    /// its organisation may sign it (`decide` then allows only the author
    /// or a supervising clinician). A draft opens the record for 24 hours
    /// only (ADR 0020), and its write-up must not need the glass broken.
    /// Nothing else of the record is opened: the answer is that
    /// consultation.
    async fn admit(
        &self,
        ctx: &mut RequestContext,
        patient: PatientId,
        command: &Command,
    ) -> Result<(), Failure> {
        let (id, signing) = match command {
            Command::AddEntry { consultation, .. }
            | Command::EditEntry { consultation, .. }
            | Command::MarkEntryInError { consultation, .. } => (Some(consultation), false),
            Command::Sign { consultation } => (Some(consultation), true),
            _ => (None, false),
        };
        if let Some(id) = id.map(ToString::to_string)
            && ctx.break_glass.is_empty()
            && let Some(facts) = self.guard.patient_facts(&patient.to_string()).await?
            && !self.guard.try_admit_on(ctx, &facts).await
        {
            let loaded = self.executor.load_current(patient).await?;
            let writes_up = loaded.state.get(&id).is_some_and(|c| {
                c.status == pb::ConsultationStatus::Draft as i32
                    && !c.entered_in_error
                    && c.organisation_ods == ctx.actor.organisation.as_str()
                    && (signing
                        || c.author
                            .as_ref()
                            .is_some_and(|a| a.user_id == ctx.actor.user_id))
            });
            if writes_up {
                ctx.registered_organisation = facts.registered_practice;
                ctx.access_rule = Rule::Consultation(id).to_string();
                return Ok(());
            }
        }
        if ctx.access_rule.is_empty() {
            self.guard.admit(ctx, patient).await?;
        }
        Ok(())
    }

    /// Runs a command about one consultation and answers with it.
    async fn run(
        &self,
        mut ctx: RequestContext,
        patient: PatientId,
        activity: Activity,
        command: Command,
    ) -> Result<Response<pb::ConsultationCommandResponse>, Status> {
        self.admit(&mut ctx, patient, &command).await?;
        let facts = match self.facts(patient, activity).await {
            // Done before the patient died or was merged: answered as it
            // was, not refused as if new.
            Err(refused)
                if refused.code == tonic::Code::FailedPrecondition
                    && self.executor.repeats(&ctx, patient).await? =>
            {
                self.gate.registered(patient).await?
            }
            facts => facts?,
        };
        let context = Context {
            patient: &facts,
            clinician: caller(&ctx),
            organisation: ctx.actor.organisation.as_str(),
            now: Utc::now(),
        };
        let executed = self
            .executor
            .execute(&ctx, &[patient], |loaded| {
                decide(&loaded[0].state, &command, &context).map_err(Failure::from)
            })
            .await;
        let committed = self.guard.recorded(&ctx, patient, executed).await?;
        let (id, topic_id, entry_id) = match &command {
            Command::Start { consultation, .. } => (*consultation, String::new(), String::new()),
            Command::AddEntry {
                consultation,
                topic,
                entry,
                ..
            } => {
                let topic = match topic {
                    TopicRef::Existing(id) | TopicRef::New { id, .. } => id.to_string(),
                };
                (*consultation, topic, entry.to_string())
            }
            Command::EditEntry { consultation, .. }
            | Command::AmendEntry { consultation, .. }
            | Command::MarkEntryInError { consultation, .. }
            | Command::MarkConsultationInError { consultation, .. }
            | Command::Sign { consultation } => (*consultation, String::new(), String::new()),
        };
        let loaded = committed
            .get(patient)
            .ok_or_else(|| Failure::not_found("patient", &patient.to_string()))?;
        let mut shown = loaded
            .state
            .get(&id.to_string())
            .map(|c| shown_to(&ctx, c))
            .ok_or_else(|| Failure::not_found("consultation", &id.to_string()))?;
        shown.patient_id = patient.to_string();
        shown.stream_sequence = loaded.last_sequence;
        if !committed.appended {
            let mut reads = Reads::new();
            reads.record(
                &patient.to_string(),
                &id.to_string(),
                CONTEXT,
                loaded.last_sequence,
                shown.withheld_count > 0,
            );
            access::audit_unwritten(&*self.access, &ctx, SERVICE, &reads).await?;
        }
        Ok(Response::new(pb::ConsultationCommandResponse {
            consultation: Some(shown),
            stream_sequence: committed.sequence,
            topic_id,
            entry_id,
        }))
    }

    /// Patient, consultation and entry ids of an entry command.
    fn entry_ids(
        patient_id: &str,
        consultation_id: &str,
        entry_id: &str,
        v: &mut Violations,
    ) -> (Option<PatientId>, Option<ConsultationId>, Option<EntryId>) {
        (
            patient(patient_id, v),
            consultation(consultation_id, v),
            required("entry_id", entry_id, EntryId::parse, v),
        )
    }
}

#[tonic::async_trait]
impl<Q: ConsultationsQueries> ConsultationsService for ConsultationsApi<Q> {
    async fn start_consultation(
        &self,
        request: Request<pb::StartConsultationRequest>,
    ) -> Result<Response<pb::ConsultationCommandResponse>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, ""))?;
        let mut v = Violations::new();
        let patient = patient(&r.patient_id, &mut v);
        let kind = pb::ConsultationType::try_from(r.r#type).unwrap_or_default();
        if kind == pb::ConsultationType::Unspecified {
            v.add(
                "type",
                "is required: face to face, telephone, video, home visit or e-consultation",
            );
        }
        let start_time = match r.start_time.as_ref() {
            None => {
                v.add("start_time", "is required");
                None
            }
            Some(t) => v.check("start_time", carelog_kernel::edge::instant(t)),
        };
        let author = match r.clinician {
            Some(c) if !c.user_id.trim().is_empty() || !c.display_name.trim().is_empty() => {
                if c.user_id.trim().is_empty() {
                    v.add("clinician.user_id", "is required when a clinician is named");
                }
                if c.display_name.trim().is_empty() {
                    v.add(
                        "clinician.display_name",
                        "is required when a clinician is named",
                    );
                }
                // Shown on the record as its author: bounded plain text.
                for (field, text, max) in [
                    ("clinician.user_id", &c.user_id, 128),
                    ("clinician.display_name", &c.display_name, 200),
                    ("clinician.role", &c.role, 64),
                ] {
                    carelog_kernel::edge::check_text(field, text.trim(), max, &mut v);
                }
                pb::Clinician {
                    user_id: c.user_id.trim().to_owned(),
                    display_name: c.display_name.trim().to_owned(),
                    role: c.role.trim().to_owned(),
                }
            }
            _ => caller(&ctx),
        };
        v.into_result()?;
        let (Some(patient), Some(start_time)) = (patient, start_time) else {
            return Err(missing().into());
        };
        let command = Command::Start {
            consultation: typed(
                derived(&ctx, "consultation", Some(patient)),
                ConsultationId::parse,
            )?,
            kind,
            start_time,
            author,
            organisation: ctx.actor.organisation.to_string(),
        };
        self.run(ctx, patient, Activity::New, command).await
    }

    async fn add_entry(
        &self,
        request: Request<pb::AddEntryRequest>,
    ) -> Result<Response<pb::ConsultationCommandResponse>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, ""))?;
        let mut v = Violations::new();
        let patient = patient(&r.patient_id, &mut v);
        let consultation = consultation(&r.consultation_id, &mut v);
        let topic = if r.topic_id.trim().is_empty() {
            let title = r.topic_title.trim();
            if title.is_empty() {
                v.add(
                    "topic_title",
                    "is required to open a new topic (or name topic_id)",
                );
            } else {
                carelog_kernel::edge::check_text("topic_title", title, MAX_TITLE, &mut v);
            }
            Some(TopicRef::New {
                id: typed(derived(&ctx, "topic", patient), TopicId::parse)?,
                title: title.to_owned(),
            })
        } else {
            v.check("topic_id", TopicId::parse(&r.topic_id))
                .map(TopicRef::Existing)
        };
        let content = r.entry.unwrap_or_default();
        check_content(&content, "entry", Utc::now(), &mut v);
        v.into_result()?;
        let (Some(patient), Some(consultation), Some(topic)) = (patient, consultation, topic)
        else {
            return Err(missing().into());
        };
        let command = Command::AddEntry {
            consultation,
            topic,
            entry: typed(derived(&ctx, "entry", Some(patient)), EntryId::parse)?,
            content,
            confidential: r.confidential,
            organisation: ctx.actor.organisation.to_string(),
        };
        // The write-up of a consultation started in life goes on after the
        // death is recorded; `decide` refuses an entry timed after the death.
        self.run(ctx, patient, Activity::Correction, command).await
    }

    async fn edit_entry(
        &self,
        request: Request<pb::EditEntryRequest>,
    ) -> Result<Response<pb::ConsultationCommandResponse>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, ""))?;
        let mut v = Violations::new();
        let ids = Self::entry_ids(&r.patient_id, &r.consultation_id, &r.entry_id, &mut v);
        let paths = mask_paths(r.update_mask, &mut v);
        v.into_result()?;
        let (Some(patient), Some(consultation), Some(entry)) = ids else {
            return Err(missing().into());
        };
        let command = Command::EditEntry {
            consultation,
            entry,
            content: r.entry.unwrap_or_default(),
            paths,
        };
        self.run(ctx, patient, Activity::Correction, command).await
    }

    async fn amend_entry(
        &self,
        request: Request<pb::AmendEntryRequest>,
    ) -> Result<Response<pb::ConsultationCommandResponse>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let ids = Self::entry_ids(&r.patient_id, &r.consultation_id, &r.entry_id, &mut v);
        let paths = mask_paths(r.update_mask, &mut v);
        require_text(
            "reason",
            &r.reason,
            "is required: say why the signed record changes",
            &mut v,
        );
        v.into_result()?;
        let (Some(patient), Some(consultation), Some(entry)) = ids else {
            return Err(missing().into());
        };
        let command = Command::AmendEntry {
            consultation,
            entry,
            content: r.entry.unwrap_or_default(),
            paths,
            reason: r.reason,
        };
        self.run(ctx, patient, Activity::Correction, command).await
    }

    async fn mark_entered_in_error(
        &self,
        request: Request<pb::MarkEnteredInErrorRequest>,
    ) -> Result<Response<pb::ConsultationCommandResponse>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let patient = patient(&r.patient_id, &mut v);
        let consultation = consultation(&r.consultation_id, &mut v);
        let entry = if r.entry_id.trim().is_empty() {
            None
        } else {
            v.check("entry_id", EntryId::parse(&r.entry_id))
        };
        require_text(
            "reason",
            &r.reason,
            "is required: say why it was recorded in error",
            &mut v,
        );
        v.into_result()?;
        let (Some(patient), Some(consultation)) = (patient, consultation) else {
            return Err(missing().into());
        };
        let command = match entry {
            Some(entry) => Command::MarkEntryInError {
                consultation,
                entry,
                reason: r.reason,
            },
            None => Command::MarkConsultationInError {
                consultation,
                reason: r.reason,
            },
        };
        self.run(ctx, patient, Activity::Closing, command).await
    }

    async fn sign_consultation(
        &self,
        request: Request<pb::SignConsultationRequest>,
    ) -> Result<Response<pb::ConsultationCommandResponse>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, ""))?;
        let mut v = Violations::new();
        let patient = patient(&r.patient_id, &mut v);
        let consultation = consultation(&r.consultation_id, &mut v);
        v.into_result()?;
        let (Some(patient), Some(consultation)) = (patient, consultation) else {
            return Err(missing().into());
        };
        self.run(
            ctx,
            patient,
            Activity::Closing,
            Command::Sign { consultation },
        )
        .await
    }

    async fn get_consultation(
        &self,
        request: Request<pb::GetConsultationRequest>,
    ) -> Result<Response<pb::Consultation>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let patient = patient(&r.patient_id, &mut v);
        let consultation = consultation(&r.consultation_id, &mut v);
        v.into_result()?;
        let (Some(patient), Some(consultation)) = (patient, consultation) else {
            return Err(missing().into());
        };
        self.guard.admit(&mut ctx, patient).await?;
        let found = self
            .queries
            .get(
                patient,
                consultation,
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?
            .ok_or_else(|| Failure::not_found("consultation", &consultation.to_string()))?;
        let shown = shown_to(&ctx, &found);
        let mut reads = Reads::new();
        read(&mut reads, &shown);
        access::audit(&*self.access, &ctx, SERVICE, "GetConsultation", &reads).await?;
        Ok(Response::new(shown))
    }

    async fn list_consultations(
        &self,
        request: Request<pb::ListConsultationsRequest>,
    ) -> Result<Response<pb::ListConsultationsResponse>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let patient = patient(&r.patient_id, &mut v);
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let patient = patient.ok_or_else(missing)?;
        self.guard.admit(&mut ctx, patient).await?;
        // The records merged into this one are the same person's: their
        // consultations are listed with it. A merged duplicate's own list
        // is refused, naming its survivor.
        let facts = self.gate.open(patient).await?;
        let records: Vec<PatientId> = std::iter::once(patient)
            .chain(facts.merged_patient_ids)
            .collect();
        let (found, next_page_token) = self
            .queries
            .list(
                &records,
                &page,
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?;
        let consultations: Vec<_> = found.iter().map(|c| shown_to(&ctx, c)).collect();
        let withheld_count = consultations.iter().map(|c| c.withheld_count).sum();
        let mut reads = Reads::new();
        consultations.iter().for_each(|c| read(&mut reads, c));
        access::audit(&*self.access, &ctx, SERVICE, "ListConsultations", &reads).await?;
        Ok(Response::new(pb::ListConsultationsResponse {
            consultations,
            next_page_token,
            withheld_count,
        }))
    }

    async fn list_consultation_versions(
        &self,
        request: Request<pb::ListConsultationVersionsRequest>,
    ) -> Result<Response<pb::ListConsultationVersionsResponse>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let patient = patient(&r.patient_id, &mut v);
        let consultation = consultation(&r.consultation_id, &mut v);
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let (Some(patient), Some(consultation)) = (patient, consultation) else {
            return Err(missing().into());
        };
        self.guard.admit(&mut ctx, patient).await?;
        let (mut versions, next_page_token) = self
            .queries
            .versions(
                patient,
                consultation,
                &page,
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?;
        if versions.is_empty() && page.token.is_empty() {
            return Err(Failure::not_found("consultation", &consultation.to_string()).into());
        }
        // Each version shows the consultation as it stood: the same
        // confidential entries are left out of every one (counted once).
        // A version that changed a withheld entry does not say why either:
        // its reason may say what the entry was.
        let mut withheld_entries = std::collections::BTreeSet::new();
        let mut previous: Vec<pb::Entry> = Vec::new();
        for version in &mut versions {
            if let Some(c) = version.consultation.as_mut() {
                let entries: Vec<pb::Entry> = c
                    .topics
                    .iter()
                    .flat_map(|t| t.entries.iter().cloned())
                    .collect();
                let before: Vec<String> = entry_ids_of(c);
                c.withheld_count = withhold_entries(c, &ctx.actor);
                let after = entry_ids_of(c);
                let hidden: Vec<String> =
                    before.into_iter().filter(|e| !after.contains(e)).collect();
                let changed_hidden = entries
                    .iter()
                    .filter(|e| hidden.contains(&e.entry_id))
                    .any(|e| !previous.contains(e));
                if changed_hidden {
                    version.reason.clear();
                }
                withheld_entries.extend(hidden);
                previous = entries;
            }
        }
        let withheld_count = i32::try_from(withheld_entries.len()).unwrap_or(i32::MAX);
        let mut reads = Reads::new();
        for version in &versions {
            reads.record(
                &patient.to_string(),
                &consultation.to_string(),
                CONTEXT,
                version.stream_sequence,
                withheld_count > 0,
            );
        }
        access::audit(
            &*self.access,
            &ctx,
            SERVICE,
            "ListConsultationVersions",
            &reads,
        )
        .await?;
        Ok(Response::new(pb::ListConsultationVersionsResponse {
            versions,
            next_page_token,
            withheld_count,
        }))
    }

    async fn list_problems(
        &self,
        request: Request<pb::ListProblemsRequest>,
    ) -> Result<Response<pb::ListProblemsResponse>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let patient = patient(&r.patient_id, &mut v);
        let status = match pb::ProblemStatus::try_from(r.status) {
            Ok(pb::ProblemStatus::Unspecified) => None,
            Ok(s) => Some(s),
            Err(_) => {
                v.add(
                    "status",
                    "must be active, inactive, resolved or unspecified",
                );
                None
            }
        };
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let patient = patient.ok_or_else(missing)?;
        self.guard.admit(&mut ctx, patient).await?;
        // The records merged into this one are the same person's: their
        // problems are listed and audited with it. A merged duplicate's
        // own list is refused, naming its survivor.
        let facts = self.gate.open(patient).await?;
        let records: Vec<PatientId> = std::iter::once(patient)
            .chain(facts.merged_patient_ids)
            .collect();
        let (mut problems, next_page_token) = self
            .queries
            .problems(
                &records,
                status,
                &page,
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?;
        let withheld_count = withhold(&mut problems, &ctx.actor, |p| {
            (p.confidential, p.author_organisation_ods.as_str())
        });
        let mut reads = Reads::new();
        for p in &problems {
            reads.record(
                &patient.to_string(),
                &p.entry_id,
                CONTEXT,
                p.stream_sequence,
                withheld_count > 0,
            );
        }
        withheld_read(&mut reads, &patient, withheld_count);
        access::audit(&*self.access, &ctx, SERVICE, "ListProblems", &reads).await?;
        Ok(Response::new(pb::ListProblemsResponse {
            problems,
            next_page_token,
            withheld_count,
        }))
    }

    async fn list_latest_observations(
        &self,
        request: Request<pb::ListLatestObservationsRequest>,
    ) -> Result<Response<pb::ListLatestObservationsResponse>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let patient = patient(&r.patient_id, &mut v);
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let patient = patient.ok_or_else(missing)?;
        self.guard.admit(&mut ctx, patient).await?;
        let (mut observations, next_page_token) = self
            .queries
            .observations(
                patient,
                &page,
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?;
        let withheld_count = withhold(&mut observations, &ctx.actor, |o| {
            (o.confidential, o.author_organisation_ods.as_str())
        });
        let mut reads = Reads::new();
        for o in &observations {
            reads.record(
                &patient.to_string(),
                &o.entry_id,
                CONTEXT,
                o.stream_sequence,
                withheld_count > 0,
            );
        }
        withheld_read(&mut reads, &patient, withheld_count);
        access::audit(
            &*self.access,
            &ctx,
            SERVICE,
            "ListLatestObservations",
            &reads,
        )
        .await?;
        Ok(Response::new(pb::ListLatestObservationsResponse {
            observations,
            next_page_token,
            withheld_count,
        }))
    }
}
