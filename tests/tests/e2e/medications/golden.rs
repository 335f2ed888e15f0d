//! Event schemas are forever: one encoded sample per medications event
//! type under tests/golden/medications/ (`CARELOG_WRITE_GOLDEN=1` writes
//! missing ones, never overwrites), each still decoding to the same event.
use std::path::PathBuf;

use carelog_kernel::Aggregate as _;
use carelog_medications::domain::MedicationRecord;
use carelog_proto::kernel::v1::PartialDate;
use carelog_proto::medications::v1 as pb;
use carelog_tests::medications::{CLARITHROMYCIN_500, PENICILLIN, penicillin_allergy, repeat};
use pb::event::Event as E;
use prost::Message as _;

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
            }],
            ingredient_codes: vec!["372709008".into()],
        }),
        E::PrescriptionIssued(pb::PrescriptionIssued {
            issue_id: "01a20000-0000-7000-8000-0000000000c1".into(),
            authorisation_id: replacement.clone(),
            issue_number: 1,
            issued_on: date(4),
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

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/medications")
}

#[test]
fn every_medications_event_type_has_a_golden_sample_that_still_decodes() {
    let write = std::env::var("CARELOG_WRITE_GOLDEN").is_ok_and(|v| v == "1");
    for sample in samples() {
        let name = MedicationRecord::event_type(&sample);
        let path = dir().join(format!("{name}.bin"));
        if write && !path.exists() {
            std::fs::write(&path, sample.encode_to_vec()).expect("write golden sample");
        }
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("golden sample {} missing ({e})", path.display()));
        let decoded = pb::Event::decode(bytes.as_slice())
            .unwrap_or_else(|e| panic!("{name} no longer decodes: {e}"));
        assert_eq!(MedicationRecord::event_type(&decoded), name);
        assert_eq!(
            decoded.encode_to_vec(),
            bytes,
            "{name} re-encodes differently"
        );
        let mut record = MedicationRecord::default();
        record.apply(&decoded);
    }
    let files = std::fs::read_dir(dir()).expect("golden dir").count();
    assert_eq!(
        files,
        samples().len(),
        "a golden sample without an event type, or the reverse"
    );
}
