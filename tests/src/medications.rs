//! Medications test helpers: the codes of the sample drug catalogue and the
//! requests a clinical scenario needs (a penicillin allergy, an amoxicillin
//! prescription that it refuses, a clarithromycin repeat instead).

use carelog_proto::kernel::v1::PartialDate;
use carelog_proto::medications::v1 as pb;
use chrono::Days;

/// Penicillin (substance), SNOMED CT.
pub const PENICILLIN: &str = "764146007";
/// Amoxicillin 500mg capsules (sample catalogue: contains penicillin).
pub const AMOXICILLIN_500: &str = "323509004";
/// Clarithromycin 500mg tablets (sample catalogue: no penicillin).
pub const CLARITHROMYCIN_500: &str = "324430000";
/// Paracetamol 500mg tablets (sample catalogue).
pub const PARACETAMOL_500: &str = "322236009";

/// The date `days` from today in the UK, the day carelog dates an issue
/// or a review by (`date::uk_today`).
pub fn in_days(days: u64) -> PartialDate {
    carelog_kernel::date::PartialDate::from_naive(
        carelog_kernel::date::uk_today() + Days::new(days),
    )
    .to_proto()
}

/// A confirmed, moderate penicillin allergy (urticaria).
pub fn penicillin_allergy() -> pb::AllergyDetails {
    pb::AllergyDetails {
        substance: Some(pb::Coding {
            code: PENICILLIN.into(),
            display: "Penicillin".into(),
        }),
        kind: pb::AllergyKind::Allergy as i32,
        reaction: "urticaria".into(),
        severity: pb::Severity::Moderate as i32,
        certainty: pb::Certainty::Confirmed as i32,
        onset: None,
    }
}

/// A repeat of `issues` issues, review in 90 days, expiry in 180.
pub fn repeat(product: &str, issues: u32) -> pb::AuthorisationDetails {
    pb::AuthorisationDetails {
        product: Some(pb::Coding {
            code: product.into(),
            display: String::new(),
        }),
        dose_instructions: "one tablet twice a day".into(),
        quantity: "14".into(),
        quantity_unit: "tablet".into(),
        prescription_type: pb::PrescriptionType::Repeat as i32,
        authorised_issues: issues,
        review_date: Some(in_days(90)),
        expiry_date: Some(in_days(180)),
        supply_days: 0,
    }
}

/// An acute prescription (one issue).
pub fn acute(product: &str) -> pb::AuthorisationDetails {
    pb::AuthorisationDetails {
        prescription_type: pb::PrescriptionType::Acute as i32,
        authorised_issues: 0,
        review_date: None,
        expiry_date: None,
        ..repeat(product, 0)
    }
}

/// A request to record a penicillin allergy for `patient_id`.
pub fn record_penicillin_allergy(patient_id: &str) -> pb::RecordAllergyRequest {
    pb::RecordAllergyRequest {
        patient_id: patient_id.into(),
        allergy: Some(penicillin_allergy()),
        ..Default::default()
    }
}

/// A request to authorise `details` for `patient_id`.
pub fn authorise(
    patient_id: &str,
    details: pb::AuthorisationDetails,
) -> pb::AuthoriseMedicationRequest {
    pb::AuthoriseMedicationRequest {
        patient_id: patient_id.into(),
        authorisation: Some(details),
        ..Default::default()
    }
}

/// A request to issue against `authorisation_id`.
pub fn issue(patient_id: &str, authorisation_id: &str) -> pb::IssuePrescriptionRequest {
    pb::IssuePrescriptionRequest {
        patient_id: patient_id.into(),
        authorisation_id: authorisation_id.into(),
        ..Default::default()
    }
}
