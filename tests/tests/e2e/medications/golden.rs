//! Event schemas are forever: one encoded sample per medications event
//! type under tests/golden/medications/ (`CARELOG_WRITE_GOLDEN=1` writes
//! missing ones, never overwrites), each still decoding to the same event.
use carelog_kernel::Aggregate as _;
use carelog_medications::domain::MedicationRecord;
use carelog_proto::kernel::v1::PartialDate;
use carelog_proto::medications::v1 as pb;
use carelog_tests::assert::golden_samples;
use carelog_tests::medications::{CLARITHROMYCIN_500, PENICILLIN, penicillin_allergy, repeat};
use pb::event::Event as E;

fn samples() -> Vec<pb::Event> {
    let allergy = "01a20000-0000-7000-8000-0000000000a1".to_owned();
    let authorisation = "01a20000-0000-7000-8000-0000000000b1".to_owned();
    let replacement = "01a20000-0000-7000-8000-0000000000b2".to_owned();
    let date = |day| {
        Some(PartialDate {
            year: 2026,
            month: 3,
            day,
        })
    };
    let mut details = repeat(CLARITHROMYCIN_500, 6);
    details.product = Some(pb::Coding {
        code: CLARITHROMYCIN_500.into(),
        display: "Clarithromycin 500mg tablets".into(),
    });
    details.review_date = date(30);
    details.expiry_date = date(31);
    let mut allergy_details = penicillin_allergy();
    allergy_details.onset = Some(PartialDate {
        year: 1998,
        month: 0,
        day: 0,
    });
    [
        E::AllergyRecorded(pb::AllergyRecorded {
            allergy_id: allergy.clone(),
            details: Some(allergy_details),
            recorded_on: date(1),
            // Written before allergies could be confidential: reads as not.
            confidential: false,
            author_organisation_ods: String::new(),
        }),
        E::AllergyResolved(pb::AllergyResolved {
            allergy_id: allergy.clone(),
            resolved_on: date(2),
            reason: "negative challenge test".into(),
        }),
        E::AllergyEnteredInError(pb::AllergyEnteredInError {
            allergy_id: allergy.clone(),
            reason: "wrong patient".into(),
        }),
        E::MedicationAuthorised(pb::MedicationAuthorised {
            authorisation_id: replacement.clone(),
            details: Some(details),
            authorised_on: date(3),
            confidential: false,
            author_organisation_ods: String::new(),
            replaces_authorisation_id: authorisation.clone(),
            overrides: vec![pb::SafetyOverride {
                kind: pb::safety_override::Kind::Allergy as i32,
                allergy_id: allergy,
                substance: Some(pb::Coding {
                    code: PENICILLIN.into(),
                    display: "Penicillin".into(),
                }),
                authorisation_id: String::new(),
                reason: "allergy label doubtful".into(),
                confidential: false,
                author_organisation_ods: String::new(),
                prescriber_organisation_ods: String::new(),
                reason_withheld: false,
            }],
            ingredient_codes: vec!["372709008".into()],
        }),
        E::PrescriptionIssued(pb::PrescriptionIssued {
            issue_id: "01a20000-0000-7000-8000-0000000000c1".into(),
            authorisation_id: replacement.clone(),
            issue_number: 1,
            issued_on: date(4),
            // An issue written before issues recorded overrides: the golden
            // file shows old issues still decode the same.
            overrides: vec![],
        }),
        E::MedicationDiscontinued(pb::MedicationDiscontinued {
            authorisation_id: authorisation,
            discontinued_on: date(3),
            reason: "dose change".into(),
            replaced_by_authorisation_id: replacement.clone(),
        }),
        E::MedicationReviewed(pb::MedicationReviewed {
            authorisation_ids: vec![replacement],
            reviewed_on: date(5),
            next_review_date: date(28),
            note: "continue".into(),
        }),
    ]
    .into_iter()
    .map(|e| pb::Event { event: Some(e) })
    .collect()
}

#[test]
fn every_medications_event_type_has_a_golden_sample_that_still_decodes() {
    golden_samples::<MedicationRecord>("medications", samples(), |e| {
        MedicationRecord::default().apply(e)
    });
}
