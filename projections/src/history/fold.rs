//! The record's history, pure: a patient's commits in the four contexts
//! folded with each context's own `apply` up to a cut (an instant, an
//! instant plus later corrections, or recorded stream positions), the
//! resources stamped as the read models stamp them, and each commit's
//! resources before and after it (ADR 0027, ADR 0028).

use std::collections::BTreeMap;

use carelog_consultations::domain::views::{latest_observations, problems};
use carelog_consultations::domain::{PatientConsultations, consultation_of, current_view};
use carelog_demographics::domain::PatientRecord;
use carelog_kernel::Aggregate;
use carelog_kernel::envelope::{GENESIS, StoredCommit, timestamp};
use carelog_kernel::store::ContextStream;
use carelog_medications::domain::MedicationRecord;
use carelog_proto::access::v1::StreamPosition;
use carelog_proto::audit::v1 as pb;
use carelog_proto::consultations::v1 as cpb;
use carelog_proto::demographics::v1 as dpb;
use carelog_proto::medications::v1 as mpb;
use carelog_proto::tasks::v1 as tpb;
use carelog_tasks::domain::TaskList;
use chrono::{DateTime, Utc};
use pb::resource::Resource as R;
use prost::Message as _;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HistoryError {
    #[error("the commit at stream sequence {sequence} of {subject} cannot be read: {reason}")]
    Unreadable {
        subject: String,
        sequence: u64,
        reason: String,
    },
    #[error("the history of {subject} fails its hash chain at stream sequence {sequence}")]
    ChainBroken { subject: String, sequence: u64 },
}

/// One patient's commits in each context, oldest first: the subjects
/// `carelog.<context>.<patient_id>`.
#[derive(Debug, Clone, Default)]
pub struct PatientHistory {
    pub patient_id: String,
    pub demographics: Vec<StoredCommit>,
    pub consultations: Vec<StoredCommit>,
    pub medications: Vec<StoredCommit>,
    pub tasks: Vec<StoredCommit>,
}

/// Which commits of a history are folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    /// Commits recorded at or before the instant (AS_RECORDED).
    RecordedBy(DateTime<Utc>),
    /// Those, then the events of later commits that correct what they
    /// recorded (AS_CORRECTED).
    CorrectedSince(DateTime<Utc>),
    /// Commits at or below these stream positions (stream name to
    /// sequence); a stream not named folds nothing.
    Positions(BTreeMap<String, u64>),
}

impl Cut {
    /// For a view of the record at `as_of`.
    pub fn view(view: pb::RecordView, as_of: DateTime<Utc>) -> Self {
        match view {
            pb::RecordView::AsRecorded => Self::RecordedBy(as_of),
            pb::RecordView::AsCorrected | pb::RecordView::Unspecified => {
                Self::CorrectedSince(as_of)
            }
        }
    }

    /// Whether a commit is wholly inside the cut.
    fn holds(&self, stream: &str, commit: &StoredCommit) -> bool {
        match self {
            Self::RecordedBy(t) | Self::CorrectedSince(t) => commit.recorded_at() <= *t,
            Self::Positions(at) => at
                .get(stream)
                .is_some_and(|last| commit.stream_sequence <= *last),
        }
    }
}

/// Checks a subject's commits against their hash chain (from genesis).
pub fn verify_chain(subject: &str, commits: &[StoredCommit]) -> Result<(), HistoryError> {
    let mut last = GENESIS;
    for c in commits {
        if c.previous_hash() != last {
            return Err(HistoryError::ChainBroken {
                subject: subject.to_owned(),
                sequence: c.stream_sequence,
            });
        }
        last = c.hash;
    }
    Ok(())
}

/// A resource an event changes: its type and id.
pub type ResourceRef = (&'static str, String);

/// What the history needs of a context's aggregate beyond its `apply`.
pub trait Recorded: Aggregate {
    /// The resources an event changes.
    fn touched(patient_id: &str, event: &Self::Event) -> Vec<ResourceRef>;
    /// Whether the event corrects something this state holds: an edit or
    /// amendment of it, or marking it entered in error.
    fn corrects(&self, event: &Self::Event) -> bool;
    /// After a commit: the bookkeeping the read model sets on the
    /// resources it changed (patient id, version, stream sequence, time).
    fn stamp(&mut self, patient_id: &str, commit: &StoredCommit, touched: &[ResourceRef]);
    /// A resource as its service returns it.
    fn resource(&self, kind: &str, id: &str) -> Option<R>;
}

impl Recorded for PatientRecord {
    fn touched(patient_id: &str, _event: &dpb::Event) -> Vec<ResourceRef> {
        vec![("Patient", patient_id.to_owned())]
    }

    fn corrects(&self, event: &dpb::Event) -> bool {
        use dpb::event::Event as E;
        matches!(
            event.event,
            Some(E::DeathAmended(_) | E::DeathEnteredInError(_))
        ) && self.patient.deceased
    }

    fn stamp(&mut self, patient_id: &str, commit: &StoredCommit, _touched: &[ResourceRef]) {
        let p = &mut self.patient;
        p.patient_id = patient_id.to_owned();
        p.version = commit.commit.aggregate_version as i64;
        p.stream_sequence = commit.stream_sequence;
        p.updated_at = Some(timestamp(commit.recorded_at()));
    }

    fn resource(&self, kind: &str, _id: &str) -> Option<R> {
        // Whole: the record history's API shows each caller what they may
        // see of a restricted patient (ADR 0034).
        (kind == "Patient" && self.is_registered()).then(|| R::Patient(self.patient.clone()))
    }
}

impl Recorded for PatientConsultations {
    fn touched(_patient_id: &str, event: &cpb::Event) -> Vec<ResourceRef> {
        consultation_of(event)
            .map(|id| vec![("Consultation", id.to_owned())])
            .unwrap_or_default()
    }

    fn corrects(&self, event: &cpb::Event) -> bool {
        use cpb::event::Event as E;
        let entry = |c: &str, e: &str| {
            self.get(c)
                .is_some_and(|c| carelog_consultations::domain::record::find_entry(c, e).is_some())
        };
        match &event.event {
            Some(E::EntryEdited(e)) => entry(&e.consultation_id, &e.entry_id),
            Some(E::EntryAmended(e)) => entry(&e.consultation_id, &e.entry_id),
            Some(E::EntryEnteredInError(e)) => entry(&e.consultation_id, &e.entry_id),
            Some(E::ConsultationEnteredInError(e)) => self.get(&e.consultation_id).is_some(),
            _ => false,
        }
    }

    fn stamp(&mut self, patient_id: &str, commit: &StoredCommit, touched: &[ResourceRef]) {
        for (_, id) in touched {
            if let Some(c) = self.get_mut(id) {
                c.patient_id = patient_id.to_owned();
                c.version += 1;
                c.stream_sequence = commit.stream_sequence;
                c.updated_at = Some(timestamp(commit.recorded_at()));
            }
        }
    }

    fn resource(&self, kind: &str, id: &str) -> Option<R> {
        (kind == "Consultation")
            .then(|| self.get(id).cloned().map(R::Consultation))
            .flatten()
    }
}

impl Recorded for MedicationRecord {
    fn touched(_patient_id: &str, event: &mpb::Event) -> Vec<ResourceRef> {
        let (allergies, authorisations) = carelog_medications::domain::record::touched(event);
        let mut out: Vec<ResourceRef> = allergies
            .into_iter()
            .map(|id| ("Allergy", id.to_owned()))
            .chain(
                authorisations
                    .into_iter()
                    .map(|id| ("Authorisation", id.to_owned())),
            )
            .collect();
        if let Some(mpb::event::Event::PrescriptionIssued(e)) = &event.event {
            out.push(("Issue", e.issue_id.clone()));
        }
        out
    }

    fn corrects(&self, event: &mpb::Event) -> bool {
        match &event.event {
            Some(mpb::event::Event::AllergyEnteredInError(e)) => {
                self.allergy(&e.allergy_id).is_some()
            }
            _ => false,
        }
    }

    fn stamp(&mut self, patient_id: &str, commit: &StoredCommit, touched: &[ResourceRef]) {
        let sequence = commit.stream_sequence;
        let is = |kind: &str, id: &str| touched.iter().any(|(k, t)| *k == kind && t == id);
        for a in &mut self.allergies {
            if is("Allergy", &a.allergy_id) {
                a.patient_id = patient_id.to_owned();
                a.stream_sequence = sequence;
            }
        }
        for a in &mut self.authorisations {
            if is("Authorisation", &a.authorisation_id) {
                a.patient_id = patient_id.to_owned();
                a.stream_sequence = sequence;
            }
        }
        // An issue never changes after it is made.
        for i in &mut self.issues {
            if is("Issue", &i.issue_id) {
                i.patient_id = patient_id.to_owned();
                i.stream_sequence = sequence;
            }
        }
    }

    fn resource(&self, kind: &str, id: &str) -> Option<R> {
        match kind {
            "Allergy" => self.allergy(id).cloned().map(R::Allergy),
            "Authorisation" => self.authorisation(id).cloned().map(R::Authorisation),
            "Issue" => self.issue(id).cloned().map(R::Issue),
            _ => None,
        }
    }
}

impl Recorded for TaskList {
    fn touched(_patient_id: &str, event: &tpb::Event) -> Vec<ResourceRef> {
        vec![("Task", TaskList::task_of(event).to_owned())]
    }

    fn corrects(&self, event: &tpb::Event) -> bool {
        match &event.event {
            Some(tpb::event::Event::TaskEnteredInError(e)) => self.task(&e.task_id).is_some(),
            _ => false,
        }
    }

    fn stamp(&mut self, _patient_id: &str, commit: &StoredCommit, touched: &[ResourceRef]) {
        for (_, id) in touched {
            if let Some(t) = self.tasks.get_mut(id) {
                t.stream_sequence = commit.stream_sequence;
                t.updated_at = Some(timestamp(commit.recorded_at()));
            }
        }
    }

    fn resource(&self, kind: &str, id: &str) -> Option<R> {
        (kind == "Task")
            .then(|| self.task(id).cloned().map(R::Task))
            .flatten()
    }
}

/// One context folded to a cut.
#[derive(Debug, Clone, Default)]
pub struct Folded<A> {
    pub state: A,
    /// The last stream sequence folded in (0: nothing).
    pub last_sequence: u64,
    /// Commits after the cut's instant whose corrections were applied, with
    /// what they corrected, before and after.
    pub corrections: Vec<pb::PatientChange>,
    /// Every commit folded, with its resources before and after (when
    /// asked for).
    pub changes: Vec<pb::PatientChange>,
}

fn decode<A: Recorded>(stream: &str, commit: &StoredCommit) -> Result<Vec<A::Event>, HistoryError> {
    commit
        .commit
        .events
        .iter()
        .map(|record| {
            A::Event::decode(record.payload.as_slice()).map_err(|e| HistoryError::Unreadable {
                subject: format!("{stream} {}", commit.subject),
                sequence: commit.stream_sequence,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// A commit as a change, without its resources.
pub fn change(stream: &str, commit: &StoredCommit) -> pb::PatientChange {
    let c = &commit.commit;
    pb::PatientChange {
        stream: stream.to_owned(),
        stream_sequence: commit.stream_sequence,
        context: c.context.clone(),
        commit_id: c.commit_id.clone(),
        aggregate_version: c.aggregate_version,
        event_types: c.events.iter().map(|e| e.event_type.clone()).collect(),
        actor: c.actor.clone(),
        on_behalf_of: c.on_behalf_of.clone(),
        purpose_of_use: c.purpose_of_use.clone(),
        reason: c.reason.clone(),
        occurred_at: c.events.first().and_then(|e| e.occurred_at),
        recorded_at: Some(timestamp(commit.recorded_at())),
        request_id: c.request_id.clone(),
        correlation_id: c.correlation_id.clone(),
        resources: Vec::new(),
        patient_id: c.patient_id.clone(),
        withheld_count: 0,
        reason_withheld: false,
    }
}

fn resource_changes<A: Recorded>(
    state: &A,
    touched: &[ResourceRef],
    before: Vec<Option<R>>,
) -> Vec<pb::ResourceChange> {
    touched
        .iter()
        .zip(before)
        .map(|((kind, id), before)| pb::ResourceChange {
            resource_type: (*kind).to_owned(),
            resource_id: id.clone(),
            before: before.map(|r| pb::Resource { resource: Some(r) }),
            after: state
                .resource(kind, id)
                .map(|r| pb::Resource { resource: Some(r) }),
        })
        .collect()
}

/// Folds one context's commits of a patient to a cut; with `with_changes`,
/// every commit folded is kept with its resources before and after.
pub fn fold<A: Recorded>(
    patient_id: &str,
    commits: &[StoredCommit],
    cut: &Cut,
    with_changes: bool,
) -> Result<Folded<A>, HistoryError> {
    let stream = ContextStream::new(A::CONTEXT).name;
    let mut folded = Folded::<A>::default();
    for commit in commits {
        let whole = cut.holds(&stream, commit);
        let corrections_only = !whole && matches!(cut, Cut::CorrectedSince(_));
        if !whole && !corrections_only {
            continue;
        }
        let events: Vec<A::Event> = decode::<A>(&stream, commit)?
            .into_iter()
            .filter(|e| whole || folded.state.corrects(e))
            .collect();
        if events.is_empty() {
            continue;
        }
        let mut touched: Vec<ResourceRef> = Vec::new();
        for event in &events {
            for r in A::touched(patient_id, event) {
                if !touched.contains(&r) {
                    touched.push(r);
                }
            }
        }
        // A correction is listed like a change, with its resources before
        // and after it, so that reads withhold them alike.
        let before: Vec<Option<R>> = if with_changes || corrections_only {
            touched
                .iter()
                .map(|(kind, id)| folded.state.resource(kind, id))
                .collect()
        } else {
            Vec::new()
        };
        events.iter().for_each(|e| folded.state.apply(e));
        folded.state.stamp(patient_id, commit, &touched);
        folded.last_sequence = commit.stream_sequence;
        if corrections_only || with_changes {
            let mut c = change(&stream, commit);
            c.resources = resource_changes(&folded.state, &touched, before);
            if with_changes {
                folded.changes.push(c.clone());
            }
            if corrections_only {
                folded.corrections.push(c);
            }
        }
    }
    Ok(folded)
}

/// The four contexts of one patient folded to one cut.
#[derive(Debug, Clone, Default)]
pub struct FoldedRecord {
    pub patient_id: String,
    pub demographics: Folded<PatientRecord>,
    pub consultations: Folded<PatientConsultations>,
    pub medications: Folded<MedicationRecord>,
    pub tasks: Folded<TaskList>,
}

impl FoldedRecord {
    pub fn fold(history: &PatientHistory, cut: &Cut) -> Result<Self, HistoryError> {
        let id = history.patient_id.as_str();
        Ok(Self {
            patient_id: history.patient_id.clone(),
            demographics: fold(id, &history.demographics, cut, false)?,
            consultations: fold(id, &history.consultations, cut, false)?,
            medications: fold(id, &history.medications, cut, false)?,
            tasks: fold(id, &history.tasks, cut, false)?,
        })
    }

    /// The duplicates merged into this patient by the cut.
    pub fn merged_patient_ids(&self) -> &[String] {
        &self.demographics.state.patient.merged_patient_ids
    }

    /// The later corrections applied, oldest first.
    pub fn corrections(&self) -> Vec<pb::PatientChange> {
        let mut all: Vec<pb::PatientChange> = [
            &self.demographics.corrections,
            &self.consultations.corrections,
            &self.medications.corrections,
            &self.tasks.corrections,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        all.sort_by_key(order_key);
        all
    }

    /// The whole record: every resource, consultations with their entries
    /// entered in error kept and marked.
    pub fn snapshot(&self) -> pb::PatientRecordSnapshot {
        let mut consultations: Vec<cpb::Consultation> =
            self.consultations.state.consultations().cloned().collect();
        newest_first(&mut consultations);
        let meds = &self.medications.state;
        pb::PatientRecordSnapshot {
            patient_id: self.patient_id.clone(),
            patient: self
                .demographics
                .state
                .is_registered()
                .then(|| self.demographics.state.patient.clone()),
            consultations,
            problems: problems(&self.consultations.state),
            latest_observations: latest_observations(&self.consultations.state),
            allergies: meds.allergies.clone(),
            authorisations: meds.authorisations.clone(),
            issues: meds.issues.clone(),
            tasks: self.tasks.state.tasks.values().cloned().collect(),
            positions: self.positions(),
            withheld_count: 0,
        }
    }

    /// Only the resources named, each as a read showed it: consultations in
    /// their current view (entries entered in error left out) unless the
    /// read listed versions.
    pub fn snapshot_of(&self, resource_ids: &[String], method: &str) -> pb::PatientRecordSnapshot {
        let named = |id: &str| resource_ids.iter().any(|r| r == id);
        let all = self.snapshot();
        let versions = method == "ListConsultationVersions";
        pb::PatientRecordSnapshot {
            patient_id: all.patient_id,
            patient: all.patient.filter(|p| named(&p.patient_id)),
            consultations: all
                .consultations
                .into_iter()
                .filter(|c| named(&c.consultation_id))
                .map(|c| if versions { c } else { current_view(&c) })
                .collect(),
            problems: all
                .problems
                .into_iter()
                .filter(|p| named(&p.entry_id))
                .collect(),
            latest_observations: all
                .latest_observations
                .into_iter()
                .filter(|o| named(&o.entry_id))
                .collect(),
            allergies: all
                .allergies
                .into_iter()
                .filter(|a| named(&a.allergy_id))
                .collect(),
            authorisations: all
                .authorisations
                .into_iter()
                .filter(|a| named(&a.authorisation_id))
                .collect(),
            issues: all
                .issues
                .into_iter()
                .filter(|i| named(&i.issue_id))
                .collect(),
            tasks: all
                .tasks
                .into_iter()
                .filter(|t| named(&t.task_id))
                .collect(),
            positions: all.positions,
            withheld_count: 0,
        }
    }

    fn positions(&self) -> Vec<StreamPosition> {
        [
            (PatientRecord::CONTEXT, self.demographics.last_sequence),
            (
                PatientConsultations::CONTEXT,
                self.consultations.last_sequence,
            ),
            (MedicationRecord::CONTEXT, self.medications.last_sequence),
            (TaskList::CONTEXT, self.tasks.last_sequence),
        ]
        .into_iter()
        .filter(|(_, sequence)| *sequence > 0)
        .map(|(context, sequence)| StreamPosition {
            stream: ContextStream::new(context).name,
            sequence,
        })
        .collect()
    }
}

/// Newest first by start time, as ListConsultations answers.
fn newest_first(consultations: &mut [cpb::Consultation]) {
    consultations.sort_by(|a, b| {
        let key =
            |c: &cpb::Consultation| c.start_time.map_or((i64::MIN, 0), |t| (t.seconds, t.nanos));
        key(b)
            .cmp(&key(a))
            .then_with(|| a.consultation_id.cmp(&b.consultation_id))
    });
}

/// The order of changes across streams: recorded time, then stream and
/// sequence.
pub fn order_key(c: &pb::PatientChange) -> (i64, i32, String, u64) {
    let t = c.recorded_at.unwrap_or_default();
    (t.seconds, t.nanos, c.stream.clone(), c.stream_sequence)
}

/// A patient's changes, and who is merged into the patient now.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Every commit of the patient's record, oldest first.
    pub changes: Vec<pb::PatientChange>,
    /// The duplicates merged into the patient and not since unmerged.
    pub merged_patient_ids: Vec<String>,
}

/// Every commit of the patient's record, oldest first, with each changed
/// resource before and after.
pub fn changes(history: &PatientHistory) -> Result<Changes, HistoryError> {
    let id = history.patient_id.as_str();
    let all = Cut::Positions(
        [
            PatientRecord::CONTEXT,
            PatientConsultations::CONTEXT,
            MedicationRecord::CONTEXT,
            TaskList::CONTEXT,
        ]
        .into_iter()
        .map(|c| (ContextStream::new(c).name, u64::MAX))
        .collect(),
    );
    let demographics = fold::<PatientRecord>(id, &history.demographics, &all, true)?;
    let mut out = demographics.changes;
    out.extend(fold::<PatientConsultations>(id, &history.consultations, &all, true)?.changes);
    out.extend(fold::<MedicationRecord>(id, &history.medications, &all, true)?.changes);
    out.extend(fold::<TaskList>(id, &history.tasks, &all, true)?.changes);
    out.sort_by_key(order_key);
    Ok(Changes {
        changes: out,
        merged_patient_ids: demographics.state.patient.merged_patient_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use carelog_kernel::envelope::digest;
    use carelog_proto::kernel::v1 as kpb;
    use cpb::event::Event as CE;
    use mpb::event::Event as ME;

    const PATIENT: &str = "0190f5a0-0000-7000-8000-000000000001";
    const CONSULTATION: &str = "0190f5a0-0000-7000-8000-0000000000c1";
    const ENTRY: &str = "0190f5a0-0000-7000-8000-0000000000e1";
    const LATER_ENTRY: &str = "0190f5a0-0000-7000-8000-0000000000e2";
    const ALLERGY: &str = "0190f5a0-0000-7000-8000-0000000000a1";

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + minute * 60, 0).expect("instant")
    }

    /// A subject's commits, chained, one per (sequence, minute recorded,
    /// reason, events).
    fn commits<E: prost::Message>(
        context: &str,
        list: Vec<(u64, i64, &str, Vec<E>)>,
    ) -> Vec<StoredCommit> {
        let mut previous = GENESIS;
        list.into_iter()
            .enumerate()
            .map(|(i, (sequence, minute, reason, events))| {
                let commit = kpb::Commit {
                    commit_id: format!("commit-{sequence}"),
                    context: context.to_owned(),
                    aggregate_id: PATIENT.to_owned(),
                    patient_id: PATIENT.to_owned(),
                    aggregate_version: i as u64 + 1,
                    actor: Some(kpb::Actor {
                        user_id: "dr-patel".into(),
                        ..Default::default()
                    }),
                    reason: reason.to_owned(),
                    recorded_at: Some(timestamp(at(minute))),
                    events: events
                        .iter()
                        .map(|e| kpb::EventRecord {
                            event_type: "Event".into(),
                            occurred_at: Some(timestamp(at(minute))),
                            payload: e.encode_to_vec(),
                            ..Default::default()
                        })
                        .collect(),
                    previous_hash: previous.to_vec(),
                    ..Default::default()
                };
                let bytes = prost::bytes::Bytes::from(commit.encode_to_vec());
                let hash = digest(&bytes);
                previous = hash;
                StoredCommit {
                    stream_sequence: sequence,
                    subject: format!("carelog.{context}.{PATIENT}"),
                    commit,
                    hash,
                    published: at(minute),
                    bytes,
                }
            })
            .collect()
    }

    fn c(event: CE) -> cpb::Event {
        cpb::Event { event: Some(event) }
    }

    fn m(event: ME) -> mpb::Event {
        mpb::Event { event: Some(event) }
    }

    fn comment(text: &str) -> Option<cpb::EntryContent> {
        Some(cpb::EntryContent {
            kind: cpb::EntryKind::Comment as i32,
            text: text.into(),
            ..Default::default()
        })
    }

    fn entry_added(entry: &str, text: &str) -> cpb::Event {
        c(CE::EntryAdded(cpb::EntryAdded {
            consultation_id: CONSULTATION.into(),
            topic_id: "t1".into(),
            entry_id: entry.into(),
            content: comment(text),
            ..Default::default()
        }))
    }

    /// A consultation written at minute 0, an amendment at minute 20, an
    /// entry added at minute 30 and the first entry entered in error at
    /// minute 40.
    fn consultation_history() -> Vec<StoredCommit> {
        commits(
            "consultations",
            vec![
                (
                    3,
                    0,
                    "",
                    vec![
                        c(CE::ConsultationStarted(cpb::ConsultationStarted {
                            consultation_id: CONSULTATION.into(),
                            ..Default::default()
                        })),
                        c(CE::TopicOpened(cpb::TopicOpened {
                            consultation_id: CONSULTATION.into(),
                            topic_id: "t1".into(),
                            title: "Cough".into(),
                        })),
                        entry_added(ENTRY, "Chest clear"),
                    ],
                ),
                (
                    7,
                    20,
                    "wrong side recorded",
                    vec![c(CE::EntryAmended(cpb::EntryAmended {
                        consultation_id: CONSULTATION.into(),
                        entry_id: ENTRY.into(),
                        content: comment("Crackles left base"),
                        reason: "wrong side recorded".into(),
                        ..Default::default()
                    }))],
                ),
                (
                    9,
                    30,
                    "",
                    vec![entry_added(LATER_ENTRY, "Review in a week")],
                ),
                (
                    12,
                    40,
                    "wrong patient",
                    vec![c(CE::EntryEnteredInError(cpb::EntryEnteredInError {
                        consultation_id: CONSULTATION.into(),
                        entry_id: ENTRY.into(),
                        reason: "wrong patient".into(),
                    }))],
                ),
            ],
        )
    }

    fn entries(folded: &Folded<PatientConsultations>) -> Vec<cpb::Entry> {
        folded
            .state
            .get(CONSULTATION)
            .map(|c| c.topics.iter().flat_map(|t| t.entries.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn as_recorded_shows_only_what_was_written_by_then() {
        // Given a consultation amended at minute 20
        let history = consultation_history();
        // When it is shown as recorded at minute 10
        let folded: Folded<PatientConsultations> =
            fold(PATIENT, &history, &Cut::RecordedBy(at(10)), false).expect("fold");
        // Then the entry reads as first written, and nothing later is there
        let shown = entries(&folded);
        assert_eq!(shown.len(), 1);
        let content = shown[0].content.clone().expect("content");
        assert_eq!(content.text, "Chest clear");
        assert!(!shown[0].amended);
        assert_eq!(folded.last_sequence, 3);
        assert!(folded.corrections.is_empty());
        let c = folded.state.get(CONSULTATION).expect("consultation");
        assert_eq!((c.version, c.stream_sequence), (1, 3));
        assert_eq!(c.patient_id, PATIENT);
    }

    #[test]
    fn as_corrected_applies_later_amendments_and_entered_in_error_to_what_existed() {
        // Given the same history
        let history = consultation_history();
        // When it is shown as corrected at minute 10
        let folded: Folded<PatientConsultations> =
            fold(PATIENT, &history, &Cut::CorrectedSince(at(10)), false).expect("fold");
        // Then the entry of then reads as amended and is marked entered in
        // error; the entry added at minute 30 is not shown
        let shown = entries(&folded);
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].entry_id, ENTRY);
        let content = shown[0].content.clone().expect("content");
        assert_eq!(content.text, "Crackles left base");
        assert!(shown[0].amended);
        assert!(shown[0].entered_in_error);
        assert_eq!(shown[0].entered_in_error_reason, "wrong patient");
        // And the two corrections are listed with why and what they changed
        let corrections: Vec<(u64, &str)> = folded
            .corrections
            .iter()
            .map(|c| (c.stream_sequence, c.reason.as_str()))
            .collect();
        assert_eq!(
            corrections,
            [(7, "wrong side recorded"), (12, "wrong patient")]
        );
        assert_eq!(folded.corrections[0].resources[0].resource_id, CONSULTATION);
        assert_eq!(folded.last_sequence, 12);
    }

    #[test]
    fn positions_fold_each_stream_up_to_its_recorded_sequence() {
        let history = consultation_history();
        let cut = Cut::Positions([("CARELOG_CONSULTATIONS".to_owned(), 9)].into());
        let folded: Folded<PatientConsultations> =
            fold(PATIENT, &history, &cut, false).expect("fold");
        let shown = entries(&folded);
        assert_eq!(shown.len(), 2);
        assert!(!shown[0].entered_in_error);
        // A stream the cut does not name folds nothing
        let none = Cut::Positions([("CARELOG_MEDICATIONS".to_owned(), 99)].into());
        let folded: Folded<PatientConsultations> =
            fold(PATIENT, &history, &none, false).expect("fold");
        assert_eq!(folded.last_sequence, 0);
    }

    #[test]
    fn each_change_shows_the_resource_before_and_after_it() {
        let history = PatientHistory {
            patient_id: PATIENT.into(),
            consultations: consultation_history(),
            ..Default::default()
        };
        let changes = changes(&history).expect("changes").changes;
        assert_eq!(changes.len(), 4);
        let amendment = &changes[1];
        assert_eq!(amendment.reason, "wrong side recorded");
        assert_eq!(
            amendment.actor.as_ref().map(|a| a.user_id.as_str()),
            Some("dr-patel")
        );
        let r = &amendment.resources[0];
        assert_eq!(r.resource_type, "Consultation");
        let text = |x: &Option<pb::Resource>| match x.as_ref().and_then(|x| x.resource.as_ref()) {
            Some(R::Consultation(c)) => c.topics[0].entries[0]
                .content
                .as_ref()
                .map(|c| c.text.clone()),
            _ => None,
        };
        assert_eq!(text(&r.before).as_deref(), Some("Chest clear"));
        assert_eq!(text(&r.after).as_deref(), Some("Crackles left base"));
        // The first commit created the consultation: nothing before it
        assert!(changes[0].resources[0].before.is_none());
    }

    #[test]
    fn an_allergy_entered_in_error_later_is_shown_as_such_when_corrected() {
        let details = Some(mpb::AllergyDetails::default());
        let history = commits(
            "medications",
            vec![
                (
                    2,
                    0,
                    "",
                    vec![m(ME::AllergyRecorded(mpb::AllergyRecorded {
                        allergy_id: ALLERGY.into(),
                        details: details.clone(),
                        recorded_on: None,
                        ..Default::default()
                    }))],
                ),
                (
                    5,
                    30,
                    "recorded against the wrong patient",
                    vec![m(ME::AllergyEnteredInError(mpb::AllergyEnteredInError {
                        allergy_id: ALLERGY.into(),
                        reason: "recorded against the wrong patient".into(),
                    }))],
                ),
            ],
        );
        let recorded: Folded<MedicationRecord> =
            fold(PATIENT, &history, &Cut::RecordedBy(at(10)), false).expect("fold");
        assert_eq!(
            recorded.state.allergies[0].status,
            mpb::AllergyStatus::Active as i32
        );
        assert_eq!(recorded.state.allergies[0].stream_sequence, 2);
        let corrected: Folded<MedicationRecord> =
            fold(PATIENT, &history, &Cut::CorrectedSince(at(10)), false).expect("fold");
        let allergy = &corrected.state.allergies[0];
        assert_eq!(allergy.status, mpb::AllergyStatus::EnteredInError as i32);
        assert_eq!(allergy.stream_sequence, 5);
        assert_eq!(allergy.patient_id, PATIENT);
        // Before the allergy was recorded, a later entered-in-error corrects nothing
        let before: Folded<MedicationRecord> =
            fold(PATIENT, &history, &Cut::CorrectedSince(at(-5)), false).expect("fold");
        assert!(before.state.allergies.is_empty());
        assert!(before.corrections.is_empty());
    }

    #[test]
    fn a_broken_hash_chain_is_named() {
        let mut history = consultation_history();
        assert!(verify_chain("s", &history).is_ok());
        history.remove(1);
        assert_eq!(
            verify_chain("s", &history),
            Err(HistoryError::ChainBroken {
                subject: "s".into(),
                sequence: 9
            })
        );
    }
}
