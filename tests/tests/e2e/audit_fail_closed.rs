//! Fail closed in every service: with the access stream refusing writes, a
//! read of a patient's record from consultations, medications, tasks and the
//! audit service is UNAVAILABLE and carries no data, and nothing is
//! recorded (demographics is covered in `access`).

use carelog_kernel::access::access_stream;
use carelog_proto::audit::v1 as apb;
use carelog_proto::audit::v1::audit_service_client::AuditServiceClient;
use carelog_proto::consultations::v1 as cpb;
use carelog_proto::medications::v1 as mpb;
use carelog_proto::tasks::v1 as tpb;
use carelog_tests::audit::caught_up;
use carelog_tests::consultations::start_request;
use carelog_tests::harness::{TestStack, jane_smith};
use carelog_tests::medications::{
    CLARITHROMYCIN_500, authorise, record_penicillin_allergy, repeat,
};
use carelog_tests::tasks::{medication_review, organisation};
use tonic::Code;

fn unavailable<T: std::fmt::Debug>(what: &str, answer: Result<tonic::Response<T>, tonic::Status>) {
    let refused = answer.expect_err(what);
    assert_eq!(refused.code(), Code::Unavailable, "{what}: {refused:?}");
    assert!(
        refused.message().contains("could not be audited"),
        "{what}: {}",
        refused.message()
    );
}

#[tokio::test]
async fn with_the_access_stream_refusing_writes_no_service_shows_a_record() {
    // Given Jane with a consultation, an allergy, a repeat and a task, and
    // one earlier read of her record
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let id = jane.patient_id.clone();
    let mut consultations = stack.consultations();
    let started = consultations
        .start_consultation(stack.req(start_request(&id)))
        .await
        .expect("start")
        .into_inner();
    let mut meds = stack.medications();
    meds.record_allergy(stack.req(record_penicillin_allergy(&id)))
        .await
        .expect("allergy");
    let authorised = meds
        .authorise_medication(stack.req(authorise(&id, repeat(CLARITHROMYCIN_500, 6))))
        .await
        .expect("authorise")
        .into_inner();
    let mut tasks = stack.tasks();
    let task = tasks
        .create_task(stack.req(medication_review(
            &id,
            &authorised.authorisation_id,
            organisation("A81001"),
        )))
        .await
        .expect("task")
        .into_inner();
    stack
        .client()
        .get_patient(
            stack.req(carelog_proto::demographics::v1::GetPatientRequest {
                patient_id: id.clone(),
                min_sequence: jane.stream_sequence,
            }),
        )
        .await
        .expect("an audited read");
    caught_up(&stack, carelog_projections::audit::NAME).await;
    let medications_at = stack.last_sequence_of("medications").await;

    // When the access stream refuses every further write
    let js = stack.store.jetstream();
    let mut config = js
        .get_stream(access_stream().name)
        .await
        .expect("access stream")
        .info()
        .await
        .expect("info")
        .config
        .clone();
    config.sealed = true;
    js.update_stream(config).await.expect("seal");
    let accesses_before = stack.last_sequence_of("access").await;

    // Then every read that would show her record is refused
    unavailable(
        "ListConsultations",
        consultations
            .list_consultations(stack.req(cpb::ListConsultationsRequest {
                patient_id: id.clone(),
                min_sequence: started.stream_sequence,
                ..Default::default()
            }))
            .await,
    );
    unavailable(
        "ListAllergies",
        meds.list_allergies(stack.req(mpb::ListAllergiesRequest {
            patient_id: id.clone(),
            min_sequence: medications_at,
            ..Default::default()
        }))
        .await,
    );
    unavailable(
        "ListMedications",
        meds.list_medications(stack.req(mpb::ListMedicationsRequest {
            patient_id: id.clone(),
            min_sequence: medications_at,
            ..Default::default()
        }))
        .await,
    );
    unavailable(
        "GetTask",
        tasks
            .get_task(stack.req(tpb::GetTaskRequest {
                patient_id: id.clone(),
                task_id: task.task_id.clone(),
                min_sequence: task.stream_sequence,
            }))
            .await,
    );
    let mut audit = AuditServiceClient::new(stack.channel.clone());
    unavailable(
        "ListPatientAccess",
        audit
            .list_patient_access(stack.req(apb::ListPatientAccessRequest {
                patient_id: id.clone(),
                ..Default::default()
            }))
            .await,
    );
    unavailable(
        "ListActorActivity",
        audit
            .list_actor_activity(stack.req(apb::ListActorActivityRequest {
                user_id: "dr-jones".into(),
                ..Default::default()
            }))
            .await,
    );
    // And nothing was recorded
    assert_eq!(stack.last_sequence_of("access").await, accesses_before);
    stack.stop().await;
}
