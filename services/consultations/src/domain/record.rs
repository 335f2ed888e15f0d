//! The aggregate: one patient's consultations, each held as the
//! `Consultation` resource it shows. `apply` folds one event into it, holds
//! no rules and never fails; the write model and the read model both use it.

use std::collections::BTreeMap;

use carelog_kernel::Aggregate;
use carelog_proto::consultations::v1 as pb;
use pb::event::Event as E;

/// Every consultation of one patient, by consultation id (entries entered
/// in error included: they leave current views, never the record).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientConsultations {
    consultations: BTreeMap<String, pb::Consultation>,
}

impl PatientConsultations {
    /// The record from stored resources (the read model's rows).
    pub fn from_resources(resources: impl IntoIterator<Item = pb::Consultation>) -> Self {
        Self {
            consultations: resources
                .into_iter()
                .map(|c| (c.consultation_id.clone(), c))
                .collect(),
        }
    }

    pub fn get(&self, consultation_id: &str) -> Option<&pb::Consultation> {
        self.consultations.get(consultation_id)
    }

    pub fn get_mut(&mut self, consultation_id: &str) -> Option<&mut pb::Consultation> {
        self.consultations.get_mut(consultation_id)
    }

    pub fn consultations(&self) -> impl Iterator<Item = &pb::Consultation> {
        self.consultations.values()
    }

    fn entry_mut<'a>(
        &'a mut self,
        consultation_id: &str,
        entry_id: &str,
    ) -> Option<&'a mut pb::Entry> {
        self.consultations
            .get_mut(consultation_id)?
            .topics
            .iter_mut()
            .flat_map(|t| t.entries.iter_mut())
            .find(|e| e.entry_id == entry_id)
    }
}

/// The entry of a consultation, wherever its topic.
pub fn find_entry<'a>(consultation: &'a pb::Consultation, entry_id: &str) -> Option<&'a pb::Entry> {
    consultation
        .topics
        .iter()
        .flat_map(|t| t.entries.iter())
        .find(|e| e.entry_id == entry_id)
}

/// Entries that stand (not entered in error), with their consultation.
pub fn current_entries(consultation: &pb::Consultation) -> impl Iterator<Item = &pb::Entry> {
    consultation
        .topics
        .iter()
        .flat_map(|t| t.entries.iter())
        .filter(|e| !e.entered_in_error)
}

/// The current view of a consultation: entries entered in error, and topics
/// left without entries, are left out.
pub fn current_view(consultation: &pb::Consultation) -> pb::Consultation {
    let mut shown = consultation.clone();
    for topic in &mut shown.topics {
        topic.entries.retain(|e| !e.entered_in_error);
    }
    shown.topics.retain(|t| !t.entries.is_empty());
    shown
}

/// The consultation an event is about.
pub fn consultation_of(event: &pb::Event) -> Option<&str> {
    Some(match event.event.as_ref()? {
        E::ConsultationStarted(e) => &e.consultation_id,
        E::TopicOpened(e) => &e.consultation_id,
        E::EntryAdded(e) => &e.consultation_id,
        E::EntryEdited(e) => &e.consultation_id,
        E::EntryAmended(e) => &e.consultation_id,
        E::EntryEnteredInError(e) => &e.consultation_id,
        E::ConsultationEnteredInError(e) => &e.consultation_id,
        E::ConsultationSigned(e) => &e.consultation_id,
    })
}

impl Aggregate for PatientConsultations {
    const CONTEXT: &'static str = "consultations";
    type Event = pb::Event;

    fn event_type(event: &pb::Event) -> &'static str {
        match event.event {
            Some(E::ConsultationStarted(_)) => "ConsultationStarted",
            Some(E::TopicOpened(_)) => "TopicOpened",
            Some(E::EntryAdded(_)) => "EntryAdded",
            Some(E::EntryEdited(_)) => "EntryEdited",
            Some(E::EntryAmended(_)) => "EntryAmended",
            Some(E::EntryEnteredInError(_)) => "EntryEnteredInError",
            Some(E::ConsultationEnteredInError(_)) => "ConsultationEnteredInError",
            Some(E::ConsultationSigned(_)) => "ConsultationSigned",
            None => "Unknown",
        }
    }

    fn apply(&mut self, event: &pb::Event) {
        match &event.event {
            Some(E::ConsultationStarted(e)) => {
                self.consultations.insert(
                    e.consultation_id.clone(),
                    pb::Consultation {
                        consultation_id: e.consultation_id.clone(),
                        r#type: e.r#type,
                        start_time: e.start_time,
                        author: e.author.clone(),
                        organisation_ods: e.organisation_ods.clone(),
                        status: pb::ConsultationStatus::Draft as i32,
                        ..Default::default()
                    },
                );
            }
            Some(E::TopicOpened(e)) => {
                if let Some(c) = self.consultations.get_mut(&e.consultation_id) {
                    c.topics.push(pb::Topic {
                        topic_id: e.topic_id.clone(),
                        title: e.title.clone(),
                        entries: Vec::new(),
                    });
                }
            }
            Some(E::EntryAdded(e)) => {
                if let Some(topic) = self
                    .consultations
                    .get_mut(&e.consultation_id)
                    .and_then(|c| c.topics.iter_mut().find(|t| t.topic_id == e.topic_id))
                {
                    topic.entries.push(pb::Entry {
                        entry_id: e.entry_id.clone(),
                        content: e.content.clone(),
                        revision: 1,
                        confidential: e.confidential,
                        author_organisation_ods: e.author_organisation_ods.clone(),
                        ..Default::default()
                    });
                }
            }
            Some(E::EntryEdited(e)) => {
                if let Some(entry) = self.entry_mut(&e.consultation_id, &e.entry_id) {
                    entry.content = e.content.clone();
                    entry.revision += 1;
                }
            }
            Some(E::EntryAmended(e)) => {
                if let Some(entry) = self.entry_mut(&e.consultation_id, &e.entry_id) {
                    entry.content = e.content.clone();
                    entry.revision += 1;
                    entry.amended = true;
                    entry.amendment_reason = e.reason.clone();
                }
            }
            Some(E::EntryEnteredInError(e)) => {
                if let Some(entry) = self.entry_mut(&e.consultation_id, &e.entry_id) {
                    entry.entered_in_error = true;
                    entry.entered_in_error_reason = e.reason.clone();
                }
            }
            Some(E::ConsultationEnteredInError(e)) => {
                if let Some(c) = self.consultations.get_mut(&e.consultation_id) {
                    c.entered_in_error = true;
                    c.entered_in_error_reason = e.reason.clone();
                }
            }
            Some(E::ConsultationSigned(e)) => {
                if let Some(c) = self.consultations.get_mut(&e.consultation_id) {
                    c.status = pb::ConsultationStatus::Signed as i32;
                    c.signed_by = e.signed_by.clone();
                }
            }
            None => {}
        }
    }
}
