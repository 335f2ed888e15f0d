//! `carelog.audit.v1.RecordHistoryService`: the record as it stood at a past
//! instant, the patient's changes, and what a recorded access showed, all
//! rebuilt from JetStream (`carelog_projections::history`). Each answer is
//! itself audited as a read of the patient's record (ADR 0018).

use std::collections::HashMap;
use std::sync::Arc;

use carelog_consultations::domain::views::withhold_entries;
use carelog_demographics::api::{disclosure, disclosure_as, page};
use carelog_demographics::domain::{Disclosure, PatientRecord};
use carelog_demographics::gate::access_of;
use carelog_kernel::access::{self, AccessSink, Reads};
use carelog_kernel::confidential::{self, withhold};
use carelog_kernel::edge::required;
use carelog_kernel::envelope::from_timestamp;
use carelog_kernel::guard::Guard;
use carelog_kernel::{Actor, Failure, PatientId, RequestContext, Violations};
use carelog_medications::domain::views::{
    overrides_withheld, withhold_authorisations, withhold_overrides,
};
use carelog_projections::history::RecordHistory;
use carelog_proto::audit::v1 as pb;
use carelog_proto::audit::v1::record_history_service_server::RecordHistoryService;
use pb::resource::Resource as R;
use tonic::{Request, Response, Status};

const SERVICE: &str = "carelog.audit.v1.RecordHistoryService";

/// The service.
#[derive(Debug)]
pub struct RecordHistoryApi {
    history: RecordHistory,
    access: Arc<dyn AccessSink>,
    /// The access decision: a patient's history is shown only to those
    /// who may access the patient (ADR 0020).
    guard: Guard,
}

impl RecordHistoryApi {
    pub fn new(history: RecordHistory, access: Arc<dyn AccessSink>, guard: Guard) -> Self {
        Self {
            history,
            access,
            guard,
        }
    }
}

/// The patient's demographic record in `s` as the caller may see it now: a
/// version written before a restriction is withheld like the current
/// record (ADR 0034).
fn disclose_snapshot(s: &mut pb::PatientRecordSnapshot, disclosure: Disclosure) {
    s.patient = s
        .patient
        .take()
        .map(|p| PatientRecord::shown_resource(p, disclosure));
}

/// What the caller may see of each record an answer holds: the patient
/// asked about as admitted (`shown`), and each other record (a duplicate
/// merged into it, then or now) by its own access facts, which while merged
/// are its flags or the survivor's and the survivor's practice (ADR 0034).
/// A record whose facts cannot be found is withheld whole.
struct Disclosures {
    asked: String,
    shown: Disclosure,
    others: HashMap<String, Disclosure>,
}

impl Disclosures {
    async fn of<'a>(
        guard: &Guard,
        ctx: &RequestContext,
        asked: PatientId,
        shown: Disclosure,
        holders: impl Iterator<Item = &'a str>,
    ) -> Result<Self, Failure> {
        let asked = asked.to_string();
        let mut others = HashMap::new();
        for id in holders {
            if id.is_empty() || id == asked || others.contains_key(id) {
                continue;
            }
            let disclosure = match guard.patient_facts(id).await? {
                Some(facts) => disclosure(guard, ctx, &facts),
                None => Disclosure::HIDDEN,
            };
            others.insert(id.to_owned(), disclosure);
        }
        Ok(Self {
            asked,
            shown,
            others,
        })
    }

    /// The disclosure of the record `holder` (empty: the one asked about).
    fn get(&self, holder: &str) -> Disclosure {
        if holder.is_empty() || holder == self.asked {
            self.shown
        } else {
            self.others
                .get(holder)
                .copied()
                .unwrap_or(Disclosure::HIDDEN)
        }
    }
}

/// The patient's demographic records before and after each change, as the
/// caller may see them now, each by its holder's disclosure. A change whose
/// version is withheld says neither who wrote it nor why
/// ([`Disclosure::withhold_writing`], as `ListPatientVersions`).
fn disclose_changes(changes: &mut [pb::PatientChange], disclosures: &Disclosures) {
    for change in changes {
        let disclosure = disclosures.get(&change.patient_id);
        // Judged by the version the change wrote, as `ListPatientVersions`
        // judges it: lifting a restriction hides the version before it, not
        // who lifted it or why.
        let mut withheld = false;
        for r in &mut change.resources {
            let wrote = usize::from(r.after.is_some());
            for (i, state) in [r.before.as_mut(), r.after.as_mut()]
                .into_iter()
                .enumerate()
            {
                if let Some(pb::Resource {
                    resource: Some(R::Patient(p)),
                }) = state
                {
                    *p = PatientRecord::shown_resource(std::mem::take(p), disclosure);
                    withheld |= i == wrote && p.withheld;
                }
            }
        }
        if withheld {
            let mut no_actor = String::new();
            let organisation = change
                .actor
                .as_mut()
                .map_or(&mut no_actor, |a| &mut a.organisation_ods);
            change.reason_withheld |=
                Disclosure::withhold_writing(organisation, &mut change.reason);
        }
    }
}

/// Leaves out of a snapshot the confidential items of another organisation
/// that the caller may not see (ADR 0024), as the services' reads do, and
/// counts them.
fn withhold_snapshot(s: &mut pb::PatientRecordSnapshot, actor: &Actor) {
    let mut withheld: i32 = s
        .consultations
        .iter_mut()
        .map(|c| withhold_entries(c, actor))
        .sum();
    withheld += withhold(&mut s.problems, actor, |x| {
        (x.confidential, x.author_organisation_ods.as_str())
    });
    withheld += withhold(&mut s.latest_observations, actor, |x| {
        (x.confidential, x.author_organisation_ods.as_str())
    });
    withheld += withhold(&mut s.allergies, actor, |x| {
        (x.confidential, x.author_organisation_ods.as_str())
    });
    withheld += withhold_authorisations(&mut s.authorisations, actor);
    withheld += withhold(&mut s.issues, actor, |x| {
        (x.confidential, x.author_organisation_ods.as_str())
    });
    s.withheld_count = withheld;
}

/// Leaves out of each change the confidential items the caller may not see:
/// a medication item whole, a consultation's confidential entries, an
/// override's reason. A change that withheld an item also leaves out its
/// reason, which may say what the item was, as does one whose reason is an
/// override's reason withheld. A change withheld whole does not say who
/// made it or what it was: that another organisation (a sexual health
/// clinic, say) wrote to the record is itself what it keeps confidential.
fn withhold_changes(changes: &mut [pb::PatientChange], actor: &Actor) {
    for change in changes {
        let mut withheld = 0;
        let mut reasons = Vec::new();
        change.resources.retain_mut(|r| {
            let mut entries = 0;
            let mut shown = true;
            for state in [r.before.as_mut(), r.after.as_mut()].into_iter().flatten() {
                let visible = |confidential: bool, author: &str| {
                    confidential::visible_to(actor, confidential, author)
                };
                match state.resource.as_mut() {
                    Some(R::Consultation(c)) => entries = entries.max(withhold_entries(c, actor)),
                    Some(R::Allergy(a)) => {
                        shown &= visible(a.confidential, &a.author_organisation_ods)
                    }
                    Some(R::Authorisation(a)) => {
                        shown &= visible(a.confidential, &a.author_organisation_ods);
                        reasons.extend(withhold_overrides(a, actor.organisation.as_str()));
                    }
                    Some(R::Issue(i)) => {
                        shown &= visible(i.confidential, &i.author_organisation_ods)
                    }
                    _ => {}
                }
            }
            withheld += if shown { entries } else { 1 };
            shown
        });
        if withheld > 0 || reasons.iter().any(|r| r == change.reason.trim()) {
            change.withheld_count = withheld;
            change.reason.clear();
            change.reason_withheld = true;
        }
        if withheld > 0 && change.resources.is_empty() {
            change.actor = None;
            change.on_behalf_of.clear();
            change.event_types.clear();
        }
    }
}

/// Every resource of a snapshot, for the access log.
fn snapshot_reads(reads: &mut Reads, s: &pb::PatientRecordSnapshot) {
    let p = s.patient_id.as_str();
    if let Some(patient) = &s.patient {
        reads.record(
            p,
            p,
            "demographics",
            patient.stream_sequence,
            patient.withheld,
        );
    }
    for c in &s.consultations {
        reads.record(
            p,
            &c.consultation_id,
            "consultations",
            c.stream_sequence,
            false,
        );
    }
    for x in &s.problems {
        reads.record(p, &x.entry_id, "consultations", x.stream_sequence, false);
    }
    for x in &s.latest_observations {
        reads.record(p, &x.entry_id, "consultations", x.stream_sequence, false);
    }
    for a in &s.allergies {
        reads.record(p, &a.allergy_id, "medications", a.stream_sequence, false);
    }
    for a in &s.authorisations {
        reads.record(
            p,
            &a.authorisation_id,
            "medications",
            a.stream_sequence,
            overrides_withheld(a),
        );
    }
    for i in &s.issues {
        reads.record(p, &i.issue_id, "medications", i.stream_sequence, false);
    }
    for t in &s.tasks {
        reads.record(p, &t.task_id, "tasks", t.stream_sequence, false);
    }
    if s.withheld_count > 0 {
        reads.record(p, "", "history", 0, true);
    }
}

/// The resources of the changes shown, for the access log.
/// Each change is a read of the record that holds it: the patient's, or a
/// merged duplicate's.
fn change_reads(reads: &mut Reads, patient: &str, changes: &[pb::PatientChange]) {
    for c in changes {
        let holder = match c.patient_id.as_str() {
            "" => patient,
            id => id,
        };
        if c.resources.is_empty() && c.withheld_count > 0 {
            // Withheld whole: still a read of the record, marked withheld.
            reads.record(holder, "", &c.context, c.stream_sequence, true);
        }
        for r in &c.resources {
            let withheld = c.withheld_count > 0
                || c.reason_withheld
                || [&r.before, &r.after]
                    .into_iter()
                    .flatten()
                    .any(|x| match &x.resource {
                        Some(R::Patient(p)) => p.withheld,
                        Some(R::Authorisation(a)) => overrides_withheld(a),
                        _ => false,
                    });
            reads.record(
                holder,
                &r.resource_id,
                &c.context,
                c.stream_sequence,
                withheld,
            );
        }
    }
}

fn patient_id(text: &str, v: &mut Violations) -> Option<PatientId> {
    required("patient_id", text, PatientId::parse, v)
}

#[tonic::async_trait]
impl RecordHistoryService for RecordHistoryApi {
    async fn get_record_as_of(
        &self,
        request: Request<pb::GetRecordAsOfRequest>,
    ) -> Result<Response<pb::RecordAsOf>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let patient = patient_id(&r.patient_id, &mut v);
        let as_of = from_timestamp(r.as_of.as_ref());
        if as_of.is_none() {
            v.add("as_of", "is required: the instant to show the record at");
        }
        let view = pb::RecordView::try_from(r.view).unwrap_or_else(|_| {
            v.add("view", "must be AS_RECORDED or AS_CORRECTED");
            pb::RecordView::Unspecified
        });
        v.into_result()?;
        let (Some(patient), Some(as_of)) = (patient, as_of) else {
            return Err(Failure::invalid_field("patient_id", "is required").into());
        };
        let facts = self.guard.admit(&mut ctx, patient).await?;
        let shown = disclosure(&self.guard, &ctx, &facts);
        let mut answer = self.history.record_as_of(patient, as_of, view).await?;
        let holders = answer.merged_records.iter().map(|s| s.patient_id.as_str());
        let holders = holders.chain(answer.corrections.iter().map(|c| c.patient_id.as_str()));
        let shown = Disclosures::of(&self.guard, &ctx, patient, shown, holders).await?;
        answer
            .record
            .iter_mut()
            .chain(answer.merged_records.iter_mut())
            .for_each(|s| {
                disclose_snapshot(s, shown.get(&s.patient_id));
                withhold_snapshot(s, &ctx.actor);
            });
        // The corrections applied are changes like ListPatientChanges's,
        // shown and withheld alike.
        disclose_changes(&mut answer.corrections, &shown);
        withhold_changes(&mut answer.corrections, &ctx.actor);
        let mut reads = Reads::new();
        answer
            .record
            .iter()
            .chain(&answer.merged_records)
            .for_each(|s| snapshot_reads(&mut reads, s));
        change_reads(&mut reads, &patient.to_string(), &answer.corrections);
        access::audit(&*self.access, &ctx, SERVICE, "GetRecordAsOf", &reads).await?;
        Ok(Response::new(answer))
    }

    async fn list_patient_changes(
        &self,
        request: Request<pb::ListPatientChangesRequest>,
    ) -> Result<Response<pb::ListPatientChangesResponse>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let patient = patient_id(&r.patient_id, &mut v);
        let page = page(r.page_size, r.page_token, &mut v);
        let from = from_timestamp(r.from.as_ref());
        let to = from_timestamp(r.to.as_ref());
        if let (Some(f), Some(t)) = (from, to)
            && t <= f
        {
            v.add("to", "must be after from");
        }
        v.into_result()?;
        let patient = patient.ok_or_else(|| Failure::invalid_field("patient_id", "is required"))?;
        let facts = self.guard.admit(&mut ctx, patient).await?;
        let shown = disclosure(&self.guard, &ctx, &facts);
        let (mut changes, next_page_token) = self.history.changes(patient, from, to, &page).await?;
        let holders = changes.iter().map(|c| c.patient_id.as_str());
        let shown = Disclosures::of(&self.guard, &ctx, patient, shown, holders).await?;
        disclose_changes(&mut changes, &shown);
        withhold_changes(&mut changes, &ctx.actor);
        let mut reads = Reads::new();
        change_reads(&mut reads, &patient.to_string(), &changes);
        access::audit(&*self.access, &ctx, SERVICE, "ListPatientChanges", &reads).await?;
        Ok(Response::new(pb::ListPatientChangesResponse {
            changes,
            next_page_token,
        }))
    }

    async fn get_accessed_record(
        &self,
        request: Request<pb::GetAccessedRecordRequest>,
    ) -> Result<Response<pb::AccessedRecord>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let access_id = match r.access_id.trim() {
            "" => None,
            id => v.check("access_id", uuid::Uuid::parse_str(id)),
        };
        if r.access_sequence == 0 && r.access_id.trim().is_empty() {
            v.add("access_sequence", "is required (or access_id)");
        }
        v.into_result()?;
        let sequence = match (r.access_sequence, access_id) {
            (0, Some(id)) => self.history.access_sequence(id).await?,
            (sequence, _) => sequence,
        };
        let answer = self.history.accessed(sequence, access_id).await?;
        let patient = answer
            .access
            .as_ref()
            .and_then(|a| PatientId::parse(&a.patient_id).ok())
            .ok_or_else(|| Failure::not_found("access", &sequence.to_string()))?;
        let facts = self.guard.admit(&mut ctx, patient).await?;
        let shown = disclosure(&self.guard, &ctx, &facts);
        let mut answer = answer;
        let access_withheld =
            crate::audit_api::disclose_access(answer.access.as_mut(), shown.hides_now(), &ctx);
        // What the reader was shown: nothing confidential of another
        // organisation than theirs, nor a restricted patient's hidden fields
        // unless they might see them then; and of that, what the caller may
        // see now.
        let reader = answer
            .access
            .as_ref()
            .and_then(|a| a.actor.as_ref())
            .and_then(|a| {
                let organisation = carelog_kernel::OdsCode::parse(&a.organisation_ods).ok()?;
                Some(Actor {
                    user_id: a.user_id.clone(),
                    role: a.role.clone(),
                    organisation,
                    ..ctx.actor.clone()
                })
            });
        for s in answer.record.iter_mut() {
            let as_read = match (&reader, &s.patient) {
                (Some(r), Some(p)) => disclosure_as(&self.guard, r, &access_of(&p.patient_id, p)),
                _ => Disclosure::ORDINARY,
            };
            disclose_snapshot(s, as_read);
            let by_reader = reader.as_ref().map_or(0, |r| {
                withhold_snapshot(s, r);
                s.withheld_count
            });
            disclose_snapshot(s, shown);
            withhold_snapshot(s, &ctx.actor);
            s.withheld_count += by_reader;
        }
        // The access itself is part of the patient's record read (who looked,
        // why, the emergency reason), even when it showed no resource.
        let mut reads = Reads::new();
        let access_id = answer
            .access
            .as_ref()
            .map(|a| a.access_id.clone())
            .unwrap_or_default();
        reads.record(
            &patient.to_string(),
            &access_id,
            access::ACCESS,
            sequence,
            access_withheld,
        );
        answer
            .record
            .iter()
            .for_each(|s| snapshot_reads(&mut reads, s));
        access::audit(&*self.access, &ctx, SERVICE, "GetAccessedRecord", &reads).await?;
        Ok(Response::new(answer))
    }
}
