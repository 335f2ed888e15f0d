//! Event schemas are forever: every demographics event type has an encoded
//! sample under tests/golden/, and every sample must still decode to the
//! same event. `CARELOG_WRITE_GOLDEN=1` writes samples that are missing; it
//! never overwrites one.

use std::path::PathBuf;

use carelog_demographics::domain::PatientRecord;
use carelog_kernel::Aggregate as _;
use carelog_proto::demographics::v1 as pb;
use carelog_proto::kernel::v1::PartialDate;
use carelog_tests::harness::jane_smith;
use pb::event::Event as E;
use prost::Message as _;

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

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/demographics")
}

#[test]
fn every_demographics_event_type_has_a_golden_sample_that_still_decodes() {
    let write = std::env::var("CARELOG_WRITE_GOLDEN").is_ok_and(|v| v == "1");
    for sample in samples() {
        let name = PatientRecord::event_type(&sample);
        let path = dir().join(format!("{name}.bin"));
        if write && !path.exists() {
            std::fs::write(&path, sample.encode_to_vec()).expect("write golden sample");
        }
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("golden sample {} missing ({e})", path.display()));
        let decoded = pb::Event::decode(bytes.as_slice())
            .unwrap_or_else(|e| panic!("{name} no longer decodes: {e}"));
        assert_eq!(PatientRecord::event_type(&decoded), name);
        assert_eq!(
            decoded.encode_to_vec(),
            bytes,
            "{name} re-encodes differently"
        );
        let mut record = PatientRecord::default();
        record.apply(&decoded);
    }
    let files = std::fs::read_dir(dir()).expect("golden dir").count();
    assert_eq!(
        files,
        samples().len(),
        "a golden sample without an event type, or the reverse"
    );
}
