//! An append whose outcome is unknown (ADR 0032): the store stalled after
//! the command was sent, so the commit may be stored although no reply
//! came. The caller is told UNAVAILABLE with no patient data; nothing is
//! lost or stored twice, and a retry with the same `request_id` is
//! answered with what was stored.

use std::time::Duration;

use carelog_proto::demographics::v1 as pb;
use carelog_tests::harness::{TestStack, jane_smith, new_phone};
use tonic::Code;

#[tokio::test]
async fn an_update_stored_after_its_reply_was_lost_is_stored_once_and_answered_on_retry() {
    // Given Jane registered, so the server holds her record,
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let registered_at = stack.last_sequence().await;
    let first_change = pb::UpdateDemographicsRequest {
        request_id: "phone-1".into(),
        ..new_phone(&jane.patient_id, "0113 496 0001")
    };

    // when her new telephone number is sent to a nats-server that has just
    // stalled (it stores nothing and answers nothing until it goes on),
    stack.servers.nats.pause().await.expect("pause nats-server");
    let answer = stack
        .client()
        .update_demographics(stack.req(first_change.clone()))
        .await;
    stack
        .servers
        .nats
        .resume()
        .await
        .expect("resume nats-server");

    // then the caller is told the store is unavailable, with none of Jane's
    // data,
    let refused = answer.expect_err("no reply came from the store");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    for data in ["0113 496", "Smith", "Jane", "LS1"] {
        assert!(!refused.message().contains(data), "{refused:?}");
    }
    // the update is stored once the server goes on,
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stack.last_sequence().await == registered_at {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the update was never stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored_at = stack.last_sequence().await;
    assert_eq!(stored_at, registered_at + 1);

    // the same request sent again is answered with what was stored and
    // appends nothing,
    let retried = stack
        .client()
        .update_demographics(stack.req(first_change))
        .await
        .expect("the retry is answered")
        .into_inner();
    assert_eq!((retried.version, retried.stream_sequence), (2, stored_at));
    assert_eq!(stack.last_sequence().await, stored_at);

    // and her next change of number is made on the record that holds the
    // first: every version once, in order.
    let next = stack
        .client()
        .update_demographics(stack.req(new_phone(&jane.patient_id, "0113 496 0002")))
        .await
        .expect("the next update")
        .into_inner();
    assert_eq!(next.version, 3);
    let versions = stack
        .client()
        .list_patient_versions(stack.req(pb::ListPatientVersionsRequest {
            patient_id: jane.patient_id.clone(),
            min_sequence: next.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("versions")
        .into_inner()
        .versions;
    let phones: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            let details = v.patient.as_ref().and_then(|p| p.details.as_ref());
            details.map_or_else(Vec::new, |d| {
                d.telecom.iter().map(|t| t.value.clone()).collect()
            })
        })
        .collect();
    assert_eq!(
        phones,
        ["0113 496 0000", "0113 496 0001", "0113 496 0002"].map(|n| vec![n.to_owned()]),
        "{versions:?}"
    );
    stack.stop().await;
}
