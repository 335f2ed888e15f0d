//! The patient gate: what the clinical contexts ask of demographics before a
//! command about a patient. It reads the patient's demographics history from
//! the event store itself (not the read model), so a patient registered a
//! moment ago is known at once and a death or merge recorded on another
//! replica is never missed.

use std::sync::Arc;

use carelog_kernel::access_control::PatientAccess;
use carelog_kernel::date::PartialDate;
use carelog_kernel::{Executor, Failure, PatientId};
use carelog_proto::demographics::v1 as pb;

use crate::domain::{self, PatientRecord};

/// What a clinical rule needs to know about the patient.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientFacts {
    pub id: PatientId,
    pub birth_date: Option<PartialDate>,
    pub deceased: bool,
    pub date_of_death: Option<PartialDate>,
    /// ODS code of the registered GP practice (empty when unknown).
    pub registered_practice: String,
    pub restricted: bool,
    pub sharing_objection: bool,
    /// Stream sequence of the demographics history this was read from.
    pub demographics_sequence: u64,
    /// Records merged into this one: the same person's closed records,
    /// whose clinical facts (allergies) still apply to them.
    pub merged_patient_ids: Vec<PatientId>,
}

impl PatientFacts {
    pub fn from_record(id: PatientId, record: &PatientRecord, sequence: u64) -> Self {
        let details = record.details();
        Self {
            id,
            birth_date: PartialDate::from_proto(details.birth_date.as_ref()).ok(),
            deceased: record.patient.deceased,
            date_of_death: PartialDate::from_proto(record.patient.date_of_death.as_ref()).ok(),
            registered_practice: details.registered_practice_ods.clone(),
            restricted: record.patient.restricted,
            sharing_objection: record.patient.sharing_objection,
            demographics_sequence: sequence,
            merged_patient_ids: record.merged_patient_ids(),
        }
    }
}

/// Checks patients against their demographics history.
#[derive(Debug, Clone)]
pub struct PatientGate {
    executor: Arc<Executor<PatientRecord>>,
}

impl PatientGate {
    pub fn new(executor: Arc<Executor<PatientRecord>>) -> Self {
        Self { executor }
    }

    /// A registered patient that was not merged away: `NOT_FOUND` for an
    /// unknown patient, `FAILED_PRECONDITION` (PATIENT_MERGED, naming the
    /// survivor) for a merged one. A deceased patient passes: corrections and
    /// reads of their record go on.
    pub async fn open(&self, id: PatientId) -> Result<PatientFacts, Failure> {
        self.facts(id, domain::open).await
    }

    /// The patient's facts as the store holds them now, if `check` passes
    /// on their record.
    async fn facts(
        &self,
        id: PatientId,
        check: fn(PatientId, &PatientRecord) -> Result<(), domain::Error>,
    ) -> Result<PatientFacts, Failure> {
        let loaded = self.executor.load_current(id).await?;
        check(id, &loaded.state).map_err(Failure::from)?;
        Ok(PatientFacts::from_record(
            id,
            &loaded.state,
            loaded.last_sequence,
        ))
    }

    /// A registered patient, merged away or not: for closing what was open
    /// on a duplicate when it was merged (its tasks, an unsigned
    /// consultation), which nothing else can close. `NOT_FOUND` for an
    /// unknown patient.
    pub async fn registered(&self, id: PatientId) -> Result<PatientFacts, Failure> {
        self.facts(id, |id, record| {
            if record.is_registered() {
                Ok(())
            } else {
                Err(domain::Error::NotFound(id))
            }
        })
        .await
    }

    /// What access control needs of the patient, from the event store;
    /// `None` when no such patient was registered. A merged or deceased
    /// patient still has facts: the rules that follow refuse them.
    ///
    /// A record merged into a survivor is the survivor's person (ADR 0034):
    /// a restriction or an objection recorded on the survivor since the
    /// merge protects it too, and the survivor's practice holds it.
    pub async fn access(&self, id: PatientId) -> Result<Option<PatientAccess>, Failure> {
        let loaded = self.executor.load_current(id).await?;
        let Some(mut facts) = access_facts(id, &loaded.state) else {
            return Ok(None);
        };
        if let Some(survivor) = loaded
            .state
            .merged_into()
            .and_then(|s| PatientId::parse(s).ok())
        {
            let survivor = self.executor.load_current(survivor).await?;
            if let Some(theirs) = access_facts(survivor.id, &survivor.state) {
                facts = facts.as_merged_into(&theirs);
            }
        }
        Ok(Some(facts))
    }

    /// As `open`, and not deceased (PATIENT_DECEASED): for new clinical
    /// activity.
    pub async fn alive(&self, id: PatientId) -> Result<PatientFacts, Failure> {
        self.facts(id, domain::alive).await
    }
}

/// The access facts of a patient's record; `None` when no such patient was
/// registered.
pub fn access_facts(id: PatientId, record: &PatientRecord) -> Option<PatientAccess> {
    record
        .is_registered()
        .then(|| access_of(&id.to_string(), &record.patient))
}

/// The access facts of a patient resource (as stored, before redaction).
pub fn access_of(patient_id: &str, patient: &pb::Patient) -> PatientAccess {
    PatientAccess {
        patient_id: patient_id.to_owned(),
        registered_practice: patient
            .details
            .as_ref()
            .map(|d| d.registered_practice_ods.clone())
            .unwrap_or_default(),
        sharing_objection: patient.sharing_objection,
        restricted: patient.restricted,
    }
}
