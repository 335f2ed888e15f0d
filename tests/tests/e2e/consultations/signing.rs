//! Who may sign, and a repeated request.

use carelog_proto::consultations::v1 as pb;
use carelog_tests::consultations::*;
use carelog_tests::harness::{TestStack, jane_smith};
use tonic::Code;

#[tokio::test]
async fn consultations_only_the_author_or_a_supervising_gp_signs_and_a_repeat_appends_nothing() {
    let stack = TestStack::start().await;
    let mut client = stack.consultations();
    let jane = stack.register(jane_smith()).await;
    let patient = jane.patient_id.clone();
    let request = pb::StartConsultationRequest {
        request_id: "start-1".into(),
        ..start_request(&patient)
    };
    let first = client
        .start_consultation(stack.req(request.clone()))
        .await
        .expect("start")
        .into_inner();
    let repeat = client
        .start_consultation(stack.req(request))
        .await
        .expect("repeat")
        .into_inner();
    let id = first.consultation.expect("c").consultation_id;
    assert_eq!(repeat.consultation.expect("c").consultation_id, id);
    assert_eq!(repeat.stream_sequence, first.stream_sequence);
    assert_eq!(
        stack.last_sequence_of("consultations").await,
        first.stream_sequence
    );

    let sign = pb::SignConsultationRequest {
        patient_id: patient.clone(),
        consultation_id: id.clone(),
        ..Default::default()
    };
    let empty = client
        .sign_consultation(stack.req(sign.clone()))
        .await
        .expect_err("empty");
    assert_eq!(reason(&empty), "CONSULTATION_EMPTY");
    client
        .add_entry(stack.req(add_request(&patient, &id, "", blood_pressure(150, 90))))
        .await
        .expect("entry");
    let other = client
        .sign_consultation(stack.req_in_role("dr-patel", "A81001", "R8000", sign.clone()))
        .await
        .expect_err("not the author");
    assert_eq!(other.code(), Code::PermissionDenied);
    // and that refusal is recorded, naming its rule
    let refusals = stack.refusals(&patient).await;
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(
        (
            refusals[0].method.as_str(),
            refusals[0].reason_code.as_str()
        ),
        ("SignConsultation", "NOT_AUTHOR_OR_SUPERVISOR")
    );
    let supervised = client
        .sign_consultation(stack.req_in_role("dr-lead", "A81001", "R0260", sign))
        .await
        .expect("supervisor signs")
        .into_inner();
    let signed_by = supervised
        .consultation
        .and_then(|c| c.signed_by)
        .expect("signed by");
    assert_eq!(signed_by.user_id, "dr-lead");
    stack.stop().await;
}
