//! The aggregate: a patient's demographic record, as the `Patient` resource
//! it shows. `apply` folds one event into it, holds no rules and never
//! fails; the write model and the read model both use it.

use carelog_kernel::{Aggregate, PatientId};
use carelog_proto::demographics::v1 as pb;
use pb::event::Event as E;

/// What a caller may see of the fields the S flag hides: address, telecom
/// and registered practice.
///
/// They are hidden when the version shown is restricted, and also when the
/// patient is restricted now, whatever the version shown says: an earlier
/// version, or a read-model row that has not caught up with the restriction,
/// still holds the address the restriction protects. Only a privileged
/// caller (a user of the registered practice who manages demographics,
/// ADR 0020) sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disclosure {
    /// The patient is restricted now, as the event store says.
    pub restricted_now: bool,
    /// The caller may see a restricted patient's hidden fields.
    pub privileged: bool,
}

impl Disclosure {
    /// An ordinary caller, with nothing known beyond the version shown.
    pub const ORDINARY: Self = Self {
        restricted_now: false,
        privileged: false,
    };

    /// Hides the fields whatever the version says: for a record whose
    /// access facts cannot be found.
    pub const HIDDEN: Self = Self {
        restricted_now: true,
        privileged: false,
    };

    /// What a version withheld this way does not say of how it was written:
    /// the writing organisation, most often the registered practice, and
    /// the reason, which may say where the patient went ("moved to a refuge
    /// in Leeds"). Whether a reason was left out.
    pub fn withhold_writing(organisation: &mut String, reason: &mut String) -> bool {
        organisation.clear();
        let given = !reason.is_empty();
        reason.clear();
        given
    }

    /// Whether a version that is (or is not) `restricted` is shown without
    /// its hidden fields.
    pub fn hides(&self, restricted: bool) -> bool {
        (restricted || self.restricted_now) && !self.privileged
    }

    /// Whether the hidden fields are hidden from this caller now, whatever
    /// a version says: what an access event's practice and a reason follow.
    pub fn hides_now(&self) -> bool {
        self.hides(false)
    }
}

/// A patient's demographic record (the patient id and version bookkeeping
/// are set by whoever holds it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientRecord {
    pub patient: pb::Patient,
    registered: bool,
}

impl PatientRecord {
    pub fn from_resource(patient: pb::Patient) -> Self {
        Self {
            registered: patient.details.is_some(),
            patient,
        }
    }

    pub fn is_registered(&self) -> bool {
        self.registered
    }

    pub fn details(&self) -> &pb::PatientDetails {
        static EMPTY: std::sync::OnceLock<pb::PatientDetails> = std::sync::OnceLock::new();
        self.patient
            .details
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }

    pub fn merged_into(&self) -> Option<&str> {
        Some(self.patient.merged_into_patient_id.as_str()).filter(|s| !s.is_empty())
    }

    /// The records merged into this one (the same person's closed records).
    pub fn merged_patient_ids(&self) -> Vec<PatientId> {
        self.patient
            .merged_patient_ids
            .iter()
            .filter_map(|d| PatientId::parse(d).ok())
            .collect()
    }

    /// A read-model resource (a current row or an earlier version) as a
    /// caller sees it.
    pub fn shown_resource(patient: pb::Patient, disclosure: Disclosure) -> pb::Patient {
        Self::from_resource(patient).shown(disclosure)
    }

    /// A search hit the caller may not access: minimal identity only (id,
    /// name, birth date, gender, NHS number), to confirm who it is.
    pub fn identity_only(patient: &pb::Patient) -> pb::Patient {
        let details = patient.details.as_ref().map(|d| pb::PatientDetails {
            nhs_number: d.nhs_number.clone(),
            nhs_number_verification_status: d.nhs_number_verification_status,
            name: d.name.clone(),
            birth_date: d.birth_date,
            gender: d.gender,
            ..Default::default()
        });
        pb::Patient {
            patient_id: patient.patient_id.clone(),
            details,
            stream_sequence: patient.stream_sequence,
            withheld: true,
            identity_only: true,
            ..Default::default()
        }
    }

    /// The resource as a caller sees it: a restricted record hides address,
    /// telecom and registered practice (see [`Disclosure`]).
    pub fn shown(&self, disclosure: Disclosure) -> pb::Patient {
        let mut patient = self.patient.clone();
        if disclosure.hides(patient.restricted) {
            if let Some(d) = patient.details.as_mut() {
                d.addresses.clear();
                d.telecom.clear();
                d.registered_practice_ods.clear();
            }
            patient.withheld = true;
        }
        patient
    }
}

impl Aggregate for PatientRecord {
    const CONTEXT: &'static str = "demographics";
    type Event = pb::Event;

    fn event_type(event: &pb::Event) -> &'static str {
        match &event.event {
            Some(E::PatientRegistered(_)) => "PatientRegistered",
            Some(E::DemographicsUpdated(_)) => "DemographicsUpdated",
            Some(E::DeathRecorded(_)) => "DeathRecorded",
            Some(E::DeathAmended(_)) => "DeathAmended",
            Some(E::DeathEnteredInError(_)) => "DeathEnteredInError",
            Some(E::PatientMerged(_)) => "PatientMerged",
            Some(E::DuplicateMergedIn(_)) => "DuplicateMergedIn",
            Some(E::PatientUnmerged(_)) => "PatientUnmerged",
            Some(E::DuplicateUnmerged(_)) => "DuplicateUnmerged",
            Some(E::RestrictionMarked(_)) => "RestrictionMarked",
            Some(E::RestrictionCleared(_)) => "RestrictionCleared",
            Some(E::SharingObjectionRecorded(_)) => "SharingObjectionRecorded",
            Some(E::SharingObjectionWithdrawn(_)) => "SharingObjectionWithdrawn",
            None => "Unknown",
        }
    }

    fn apply(&mut self, event: &pb::Event) {
        let p = &mut self.patient;
        match &event.event {
            Some(E::PatientRegistered(e)) => {
                p.details = e.details.clone();
                self.registered = true;
            }
            Some(E::DemographicsUpdated(e)) => p.details = e.details.clone(),
            Some(E::DeathRecorded(e)) => {
                p.deceased = true;
                p.date_of_death = e.date_of_death;
            }
            Some(E::DeathAmended(e)) => p.date_of_death = e.date_of_death,
            Some(E::DeathEnteredInError(_)) => {
                p.deceased = false;
                p.date_of_death = None;
            }
            Some(E::PatientMerged(e)) => p.merged_into_patient_id = e.survivor_patient_id.clone(),
            Some(E::PatientUnmerged(_)) => p.merged_into_patient_id.clear(),
            Some(E::DuplicateMergedIn(e)) => {
                p.merged_patient_ids.push(e.duplicate_patient_id.clone())
            }
            Some(E::DuplicateUnmerged(e)) => p
                .merged_patient_ids
                .retain(|d| *d != e.duplicate_patient_id),
            Some(E::RestrictionMarked(_)) => p.restricted = true,
            Some(E::RestrictionCleared(_)) => p.restricted = false,
            Some(E::SharingObjectionRecorded(_)) => p.sharing_objection = true,
            Some(E::SharingObjectionWithdrawn(_)) => p.sharing_objection = false,
            None => {}
        }
    }
}
