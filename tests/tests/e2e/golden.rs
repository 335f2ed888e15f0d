//! Event schemas are forever: every demographics event type has an encoded
//! sample under tests/golden/, and every sample must still decode to the
//! same event. `CARELOG_WRITE_GOLDEN=1` writes samples that are missing; it
//! never overwrites one.

use carelog_demographics::domain::PatientRecord;
use carelog_kernel::Aggregate as _;
use carelog_proto::demographics::v1 as pb;
use carelog_proto::kernel::v1::PartialDate;
use carelog_tests::assert::golden_samples;
use carelog_tests::harness::jane_smith;
use pb::event::Event as E;

fn samples() -> Vec<pb::Event> {
    let mut details = jane_smith();
    details.nhs_number = "9990000018".into();
    let id = "01a20000-0000-7000-8000-000000000001".to_owned();
    let date = Some(PartialDate {
        year: 2024,
        month: 2,
        day: 1,
    });
    [
        E::PatientRegistered(pb::PatientRegistered {
            details: Some(details.clone()),
        }),
        E::DemographicsUpdated(pb::DemographicsUpdated {
            details: Some(details),
            changed_paths: vec!["addresses".into()],
            correction: true,
        }),
        E::DeathRecorded(pb::DeathRecorded {
            date_of_death: date,
        }),
        E::DeathAmended(pb::DeathAmended {
            date_of_death: Some(PartialDate {
                year: 2024,
                month: 2,
                day: 0,
            }),
        }),
        E::DeathEnteredInError(pb::DeathEnteredInError {}),
        E::PatientMerged(pb::PatientMerged {
            survivor_patient_id: id.clone(),
        }),
        E::DuplicateMergedIn(pb::DuplicateMergedIn {
            duplicate_patient_id: id.clone(),
        }),
        E::PatientUnmerged(pb::PatientUnmerged {
            survivor_patient_id: id.clone(),
        }),
        E::DuplicateUnmerged(pb::DuplicateUnmerged {
            duplicate_patient_id: id,
        }),
        E::RestrictionMarked(pb::RestrictionMarked {}),
        E::RestrictionCleared(pb::RestrictionCleared {}),
        E::SharingObjectionRecorded(pb::SharingObjectionRecorded {}),
        E::SharingObjectionWithdrawn(pb::SharingObjectionWithdrawn {}),
    ]
    .into_iter()
    .map(|e| pb::Event { event: Some(e) })
    .collect()
}

#[test]
fn every_demographics_event_type_has_a_golden_sample_that_still_decodes() {
    golden_samples::<PatientRecord>("demographics", samples(), |e| {
        PatientRecord::default().apply(e)
    });
}
