//! The patient gate: unknown and merged patients are refused; a deceased
//! patient's administration goes on.

use carelog_proto::demographics::v1 as dpb;
use carelog_proto::kernel::v1::PartialDate;
use carelog_proto::tasks::v1 as pb;
use carelog_tests::harness::{TestStack, jane_smith};
use carelog_tests::tasks::{
    AUTHORISATION, PRACTICE_TEAM, medication_review, organisation, status, team,
};
use tonic::Code;
use tonic_types::StatusExt as _;

#[tokio::test]
async fn tasks_refuse_unknown_and_merged_patients_but_not_deceased_ones() {
    let stack = TestStack::start().await;
    let mut tasks = stack.tasks();
    let unknown = tasks
        .create_task(stack.req(medication_review(
            &uuid::Uuid::now_v7().to_string(),
            AUTHORISATION,
            team(PRACTICE_TEAM),
        )))
        .await
        .expect_err("unknown patient");
    assert_eq!(unknown.code(), Code::NotFound);

    let duplicate = stack.register(jane_smith()).await;
    let survivor = stack.register(jane_smith()).await;
    // (a review asked for on the duplicate before the merge)
    let review = pb::CreateTaskRequest {
        request_id: "review-1".into(),
        ..medication_review(&duplicate.patient_id, AUTHORISATION, team(PRACTICE_TEAM))
    };
    let asked = tasks
        .create_task(stack.req(review.clone()))
        .await
        .expect("review asked for")
        .into_inner();
    stack
        .client()
        .merge_patient(stack.req(dpb::MergePatientRequest {
            duplicate_patient_id: duplicate.patient_id.clone(),
            survivor_patient_id: survivor.patient_id.clone(),
            reason: "same person registered twice".into(),
            request_id: String::new(),
        }))
        .await
        .expect("merge");
    let merged = tasks
        .create_task(stack.req(medication_review(
            &duplicate.patient_id,
            AUTHORISATION,
            team(PRACTICE_TEAM),
        )))
        .await
        .expect_err("merged patient");
    assert_eq!(merged.code(), Code::FailedPrecondition);
    let info = merged.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "PATIENT_MERGED");
    assert_eq!(
        info.metadata.get("survivorPatientId"),
        Some(&survivor.patient_id)
    );
    // while the review asked for before the merge, sent again (its answer
    // was lost), is answered with that task, not refused as new
    let before = stack.last_sequence_of("tasks").await;
    let again = tasks
        .create_task(stack.req(review))
        .await
        .expect("the repeated creation is answered")
        .into_inner();
    assert_eq!(again.task_id, asked.task_id);
    assert_eq!(stack.last_sequence_of("tasks").await, before);

    // Administration continues after death: closing the record's loose ends.
    stack
        .client()
        .record_death(stack.req(dpb::RecordDeathRequest {
            patient_id: survivor.patient_id.clone(),
            date_of_death: Some(PartialDate {
                year: 2024,
                month: 2,
                day: 1,
            }),
            ..Default::default()
        }))
        .await
        .expect("death");
    let after_death = tasks
        .create_task(stack.req(pb::CreateTaskRequest {
            title: "Cancel outstanding repeat prescriptions".into(),
            ..medication_review(&survivor.patient_id, AUTHORISATION, organisation("A81001"))
        }))
        .await
        .expect("a task about a deceased patient")
        .into_inner();
    assert_eq!(status(&after_death), pb::TaskStatus::Requested);
    stack.stop().await;
}

#[tokio::test]
async fn tasks_left_open_on_a_merged_duplicate_can_still_be_closed() {
    let stack = TestStack::start().await;
    let mut tasks = stack.tasks();
    // Given a medication review requested on a record later found to be a
    // duplicate, and merged away
    let duplicate = stack.register(jane_smith()).await;
    let survivor = stack.register(jane_smith()).await;
    let review = tasks
        .create_task(stack.req(medication_review(
            &duplicate.patient_id,
            AUTHORISATION,
            team(PRACTICE_TEAM),
        )))
        .await
        .expect("review")
        .into_inner();
    stack
        .client()
        .merge_patient(stack.req(dpb::MergePatientRequest {
            duplicate_patient_id: duplicate.patient_id.clone(),
            survivor_patient_id: survivor.patient_id.clone(),
            reason: "same person registered twice".into(),
            request_id: String::new(),
        }))
        .await
        .expect("merge");
    let action = |reason: &str| pb::TaskActionRequest {
        patient_id: duplicate.patient_id.clone(),
        task_id: review.task_id.clone(),
        reason: reason.into(),
        ..Default::default()
    };
    // When someone would take it on, then it is refused naming the survivor
    let refused = tasks
        .claim_task(stack.req(action("")))
        .await
        .expect_err("new work on a merged record");
    assert_eq!(
        refused.get_details_error_info().map(|i| i.reason),
        Some("PATIENT_MERGED".into())
    );
    // But when the practice cancels it, then it is closed, not left open
    // in the team's work list for ever
    let cancelled = tasks
        .cancel_task(stack.req(action("record merged; review raised on the survivor")))
        .await
        .expect("closing a merged record's task")
        .into_inner();
    assert_eq!(status(&cancelled), pb::TaskStatus::Cancelled);
    stack.stop().await;
}
