//! The patient gate: unknown, merged and (for new clinical activity)
//! deceased patients are refused.

use carelog_proto::consultations::v1 as pb;
use carelog_proto::demographics::v1 as demographics;
use carelog_tests::consultations::*;
use carelog_tests::harness::{TestStack, jane_smith};
use tonic::Code;

#[tokio::test]
async fn consultations_unknown_merged_and_deceased_patients_are_refused() {
    let stack = TestStack::start().await;
    let mut client = stack.consultations();
    let mut demographics_client = stack.client();

    // An unknown patient
    let before = stack.last_sequence_of("consultations").await;
    let unknown = client
        .start_consultation(stack.req(start_request(&uuid::Uuid::now_v7().to_string())))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);

    // A merged patient: the refusal names the survivor
    let duplicate = stack.register(jane_smith()).await;
    let survivor = stack.register(jane_smith()).await;
    demographics_client
        .merge_patient(stack.req(demographics::MergePatientRequest {
            duplicate_patient_id: duplicate.patient_id.clone(),
            survivor_patient_id: survivor.patient_id.clone(),
            reason: "same person registered twice".into(),
            request_id: "merge-1".into(),
        }))
        .await
        .expect("merge");
    let merged = client
        .start_consultation(stack.req(start_request(&duplicate.patient_id)))
        .await
        .expect_err("merged");
    assert_eq!(merged.code(), Code::FailedPrecondition);
    assert_eq!(reason(&merged), "PATIENT_MERGED");
    assert!(merged.message().contains(&survivor.patient_id));

    // A deceased patient: no new clinical activity, corrections go on
    let jane = stack.register(jane_smith()).await;
    let visit = pb::StartConsultationRequest {
        request_id: "visit-1".into(),
        ..start_request(&jane.patient_id)
    };
    let started = client
        .start_consultation(stack.req(visit.clone()))
        .await
        .expect("start consultation")
        .into_inner();
    let consultation = started.consultation.expect("c").consultation_id;
    demographics_client
        .record_death(stack.req(demographics::RecordDeathRequest {
            patient_id: jane.patient_id.clone(),
            date_of_death: Some(carelog_proto::kernel::v1::PartialDate {
                year: 2026,
                month: 1,
                day: 0,
            }),
            ..Default::default()
        }))
        .await
        .expect("death");
    let at = stack.last_sequence_of("consultations").await;
    let refused = client
        .start_consultation(stack.req(start_request(&jane.patient_id)))
        .await
        .expect_err("deceased");
    assert_eq!(reason(&refused), "PATIENT_DECEASED");
    // The start made before the death, sent again (its answer was lost), is
    // answered with that consultation, not refused as new activity
    let again = client
        .start_consultation(stack.req(visit))
        .await
        .expect("the repeated start is answered")
        .into_inner();
    assert_eq!(
        again.consultation.map(|c| c.consultation_id),
        Some(consultation.clone())
    );
    assert_eq!(again.stream_sequence, started.stream_sequence);
    // An entry timed after the death (the consultation started after the
    // date of death recorded) is refused naming its time
    let refused = client
        .add_entry(stack.req(add_request(
            &jane.patient_id,
            &consultation,
            "",
            weight("60", "kg"),
        )))
        .await
        .expect_err("after the death");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(
        carelog_tests::assert::violated_fields(&refused),
        ["entry.effective_time"]
    );
    assert_eq!(stack.last_sequence_of("consultations").await, at);
    assert_eq!(
        at,
        before + 1,
        "only the living patient's start was appended"
    );
    client
        .mark_entered_in_error(stack.req(pb::MarkEnteredInErrorRequest {
            patient_id: jane.patient_id.clone(),
            consultation_id: consultation,
            reason: "Started in error".into(),
            ..Default::default()
        }))
        .await
        .expect("a correction for a deceased patient");

    // Given a home visit this morning, and the patient's death recorded
    // today, the visit is still written up
    let john = stack.register(jane_smith()).await;
    let visit = start(&stack, &john.patient_id)
        .await
        .consultation
        .expect("c")
        .consultation_id;
    let today = carelog_kernel::date::uk_today();
    demographics_client
        .record_death(stack.req(demographics::RecordDeathRequest {
            patient_id: john.patient_id.clone(),
            date_of_death: Some(carelog_proto::kernel::v1::PartialDate {
                year: chrono::Datelike::year(&today),
                month: chrono::Datelike::month(&today) as i32,
                day: chrono::Datelike::day(&today) as i32,
            }),
            ..Default::default()
        }))
        .await
        .expect("death");
    client
        .add_entry(stack.req(add_request(
            &john.patient_id,
            &visit,
            "",
            weight("60", "kg"),
        )))
        .await
        .expect("the write-up of the visit in life");
    stack.stop().await;
}

#[tokio::test]
async fn consultations_a_draft_left_on_a_merged_duplicate_can_still_be_signed() {
    let stack = TestStack::start().await;
    let mut client = stack.consultations();
    // Given a consultation written on a record later merged away
    let duplicate = stack.register(jane_smith()).await;
    let survivor = stack.register(jane_smith()).await;
    let draft = start(&stack, &duplicate.patient_id)
        .await
        .consultation
        .expect("c")
        .consultation_id;
    client
        .add_entry(stack.req(add_request(
            &duplicate.patient_id,
            &draft,
            "",
            weight("60", "kg"),
        )))
        .await
        .expect("entry");
    stack
        .client()
        .merge_patient(stack.req(demographics::MergePatientRequest {
            duplicate_patient_id: duplicate.patient_id.clone(),
            survivor_patient_id: survivor.patient_id.clone(),
            reason: "same person registered twice".into(),
            ..Default::default()
        }))
        .await
        .expect("merge");
    // When its author signs it, then it is signed and locked
    let signed = client
        .sign_consultation(stack.req(pb::SignConsultationRequest {
            patient_id: duplicate.patient_id.clone(),
            consultation_id: draft.clone(),
            ..Default::default()
        }))
        .await
        .expect("closing the encounter")
        .into_inner();
    assert_eq!(
        signed.consultation.map(|c| c.status),
        Some(pb::ConsultationStatus::Signed as i32)
    );
    // while new entries on the merged record are still refused
    let refused = client
        .add_entry(stack.req(add_request(
            &duplicate.patient_id,
            &draft,
            "",
            weight("61", "kg"),
        )))
        .await
        .expect_err("merged away");
    assert_eq!(reason(&refused), "PATIENT_MERGED");
    stack.stop().await;
}
