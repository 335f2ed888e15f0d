//! Event schemas are forever: every consultations event type has an
//! encoded sample under tests/golden/consultations/ that must still decode.
//! `CARELOG_WRITE_GOLDEN=1` writes samples that are missing; it never
//! overwrites one.

use carelog_consultations::domain::PatientConsultations;
use carelog_kernel::Aggregate as _;
use carelog_proto::consultations::v1 as pb;
use carelog_tests::assert::golden_samples;
use carelog_tests::consultations::{blood_pressure, hypertension};
use pb::event::Event as E;

fn samples() -> Vec<pb::Event> {
    let consultation = "01a20000-0000-7000-8000-000000000101".to_owned();
    let topic = "01a20000-0000-7000-8000-000000000102".to_owned();
    let entry = "01a20000-0000-7000-8000-000000000103".to_owned();
    let at = Some(prost_types::Timestamp {
        seconds: 1_767_261_600,
        nanos: 0,
    });
    let clinician = Some(pb::Clinician {
        user_id: "dr-jones".into(),
        display_name: "Dr Jones".into(),
        role: "R8000".into(),
    });
    let content = |status| pb::EntryContent {
        effective_time: at,
        ..hypertension(status)
    };
    [
        E::ConsultationStarted(pb::ConsultationStarted {
            consultation_id: consultation.clone(),
            r#type: pb::ConsultationType::FaceToFace as i32,
            start_time: at,
            author: clinician.clone(),
            organisation_ods: "A81001".into(),
        }),
        E::TopicOpened(pb::TopicOpened {
            consultation_id: consultation.clone(),
            topic_id: topic.clone(),
            title: "Raised blood pressure".into(),
        }),
        E::EntryAdded(pb::EntryAdded {
            consultation_id: consultation.clone(),
            topic_id: topic,
            entry_id: entry.clone(),
            content: Some(content(pb::ProblemStatus::Active)),
            // Written before entries could be confidential: reads as not.
            confidential: false,
            author_organisation_ods: String::new(),
        }),
        E::EntryEdited(pb::EntryEdited {
            consultation_id: consultation.clone(),
            entry_id: entry.clone(),
            content: Some(pb::EntryContent {
                effective_time: at,
                ..blood_pressure(158, 96)
            }),
            changed_paths: vec!["observation".into()],
        }),
        E::EntryAmended(pb::EntryAmended {
            consultation_id: consultation.clone(),
            entry_id: entry.clone(),
            content: Some(content(pb::ProblemStatus::Inactive)),
            changed_paths: vec!["problem.status".into()],
            reason: "Home readings normal".into(),
        }),
        E::EntryEnteredInError(pb::EntryEnteredInError {
            consultation_id: consultation.clone(),
            entry_id: entry,
            reason: "Another patient's weight".into(),
        }),
        E::ConsultationEnteredInError(pb::ConsultationEnteredInError {
            consultation_id: consultation.clone(),
            reason: "Wrong patient".into(),
        }),
        E::ConsultationSigned(pb::ConsultationSigned {
            consultation_id: consultation,
            signed_by: clinician,
            on_behalf_of_author: false,
        }),
    ]
    .into_iter()
    .map(|e| pb::Event { event: Some(e) })
    .collect()
}

#[test]
fn every_consultations_event_type_has_a_golden_sample_that_still_decodes() {
    golden_samples::<PatientConsultations>("consultations", samples(), |e| {
        PatientConsultations::default().apply(e)
    });
}
