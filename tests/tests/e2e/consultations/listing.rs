//! The patient's consultations, newest first, a page at a time; a
//! consultation entered in error leaves the list.

use carelog_kernel::envelope::timestamp;
use carelog_proto::consultations::v1 as pb;
use carelog_tests::consultations::*;
use carelog_tests::harness::{TestStack, jane_smith};
use chrono::{Duration, Utc};
use tonic::Code;

#[tokio::test]
async fn consultations_are_listed_newest_first_a_page_at_a_time_without_those_in_error() {
    let stack = TestStack::start().await;
    let mut client = stack.consultations();
    let jane = stack.register(jane_smith()).await;
    let patient = jane.patient_id.clone();
    // Given four consultations over four days, the newest entered in error
    let mut ids = Vec::new();
    for days in [4, 3, 2, 1] {
        let started = client
            .start_consultation(stack.req(pb::StartConsultationRequest {
                start_time: Some(timestamp(Utc::now() - Duration::days(days))),
                r#type: pb::ConsultationType::Telephone as i32,
                ..start_request(&patient)
            }))
            .await
            .expect("start")
            .into_inner();
        ids.push(started.consultation.expect("c").consultation_id);
    }
    let last = client
        .mark_entered_in_error(stack.req(pb::MarkEnteredInErrorRequest {
            patient_id: patient.clone(),
            consultation_id: ids[3].clone(),
            reason: "Opened on the wrong record".into(),
            ..Default::default()
        }))
        .await
        .expect("in error")
        .into_inner();

    // When they are listed two at a time
    let first = client
        .list_consultations(stack.req(pb::ListConsultationsRequest {
            patient_id: patient.clone(),
            page_size: 2,
            min_sequence: last.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("page 1")
        .into_inner();
    let second = client
        .list_consultations(stack.req(pb::ListConsultationsRequest {
            patient_id: patient.clone(),
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        }))
        .await
        .expect("page 2")
        .into_inner();

    // Then the three that stand come newest first, and the list ends
    let listed: Vec<String> = first
        .consultations
        .iter()
        .chain(&second.consultations)
        .map(|c| c.consultation_id.clone())
        .collect();
    assert_eq!(listed, [ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    assert!(second.next_page_token.is_empty());

    // and the consultation in error is still there when asked for by id
    let in_error = client
        .get_consultation(stack.req(pb::GetConsultationRequest {
            patient_id: patient.clone(),
            consultation_id: ids[3].clone(),
            min_sequence: last.stream_sequence,
        }))
        .await
        .expect("get")
        .into_inner();
    assert!(in_error.entered_in_error);

    // and a page token of another query is refused naming it
    let refused = client
        .list_problems(stack.req(pb::ListProblemsRequest {
            patient_id: patient.clone(),
            page_token: first.next_page_token,
            ..Default::default()
        }))
        .await
        .expect_err("foreign token");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["page_token"]);
    stack.stop().await;
}
