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
