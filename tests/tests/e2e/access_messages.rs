//! The accesses of concurrent reads share messages of `CARELOG_ACCESS`
//! (ADR 0029): each read is still recorded once, under its own patient and
//! reader, and what it showed can still be rebuilt.

use std::collections::BTreeSet;

use carelog_kernel::access::{self, AccessLog, AccessSink, Reads, access_stream};
use carelog_kernel::{Actor, OdsCode, RequestContext};
use carelog_proto::audit::v1 as hpb;
use carelog_proto::audit::v1::record_history_service_client::RecordHistoryServiceClient;
use carelog_tests::harness::{TestStack, jane_smith};
use tonic::Code;

/// A clinician of practice A81001 reading with the demographics service.
fn clinician(user: &str) -> RequestContext {
    let actor = Actor {
        user_id: user.into(),
        display_name: format!("Dr {user}"),
        role: "R8000".into(),
        organisation: OdsCode::parse("A81001").expect("ods"),
        purpose_of_use: "DIRECT_CARE".into(),
    };
    RequestContext::for_actor(actor, &tonic::metadata::MetadataMap::new())
}

#[tokio::test]
async fn reads_at_the_same_moment_share_messages_and_each_is_recorded_once_under_its_own_patient() {
    // Given twelve registered patients
    let stack = TestStack::start().await;
    let mut patients = Vec::new();
    for _ in 0..12 {
        patients.push(stack.register(jane_smith()).await);
    }

    // When two clinicians read all of them at the same moment, 48 reads in all
    let log = AccessLog::new(stack.store.clone());
    let mut answers = Vec::new();
    for _ in 0..2 {
        for user in ["dr-patel", "dr-khan"] {
            for p in &patients {
                let mut reads = Reads::new();
                reads.record(
                    &p.patient_id,
                    &p.patient_id,
                    "demographics",
                    p.stream_sequence,
                    false,
                );
                answers.push(access::events(&clinician(user), "S", "GetPatient", &reads));
            }
        }
    }
    let recorded: Vec<_> = answers.iter().flatten().cloned().collect();
    let stored =
        futures::future::join_all(answers.into_iter().map(|events| log.append(events))).await;
    assert!(stored.iter().all(Result::is_ok), "{stored:?}");

    // Then every read is in the access stream exactly once
    let stream = access_stream();
    let messages = stack
        .store
        .read_subject(&stream.name, &stream.all_subjects(), 0)
        .await
        .expect("access stream");
    let in_stream: Vec<_> = messages
        .iter()
        .flat_map(|m| access::decode(m.payload.as_ref()))
        .collect();
    let ids: BTreeSet<_> = in_stream.iter().map(|e| e.access_id.clone()).collect();
    assert_eq!(in_stream.len(), recorded.len());
    assert_eq!(ids, recorded.iter().map(|e| e.access_id.clone()).collect());
    assert_eq!(recorded.len(), 48);

    // and reads that waited for the stream shared its messages: fewer
    // messages than reads, and a message about several patients is on the
    // shared subject while one about a single patient is on that patient's
    assert!(
        messages.len() < recorded.len(),
        "{} messages for {} reads",
        messages.len(),
        recorded.len()
    );
    for m in &messages {
        let events = access::decode(m.payload.as_ref());
        let patients: BTreeSet<_> = events.iter().map(|e| e.patient_id.as_str()).collect();
        match patients.len() {
            1 => assert_eq!(m.subject, stream.subject(&events[0].patient_id)),
            _ => assert_eq!(m.subject, "carelog.access.shared"),
        }
    }
    let shared = messages
        .iter()
        .find(|m| m.subject == "carelog.access.shared")
        .expect("a message shared by several patients' reads");

    // and the audit history lists each access under its own patient and reader
    carelog_tests::audit::caught_up(&stack, "audit_events").await;
    let rows: Vec<(String, String, uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT patient_id, actor_user_id, commit_id, stream_sequence FROM audit_events \
         WHERE stream = 'CARELOG_ACCESS' ORDER BY stream_sequence, event_index",
    )
    .fetch_all(&stack.pool)
    .await
    .expect("audit rows");
    assert_eq!(rows.len(), recorded.len());
    for (patient, user, access_id, _) in &rows {
        let event = recorded
            .iter()
            .find(|e| e.access_id == access_id.to_string())
            .expect("each row is one recorded access");
        assert_eq!(patient, &event.patient_id);
        assert_eq!(user, &event.actor.as_ref().expect("actor").user_id);
    }

    // and what a shared message's access showed is found by its access id,
    // while its sequence alone is ambiguous and says so
    let in_shared = access::decode(shared.payload.as_ref());
    let chosen = &in_shared[in_shared.len() - 1];
    let mut history = RecordHistoryServiceClient::new(stack.channel.clone());
    let ambiguous = history
        .get_accessed_record(stack.req(hpb::GetAccessedRecordRequest {
            access_sequence: shared.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect_err("several accesses share the message");
    assert_eq!(ambiguous.code(), Code::InvalidArgument);
    assert!(
        ambiguous.message().contains("access_id"),
        "{}",
        ambiguous.message()
    );
    let shown = history
        .get_accessed_record(stack.req(hpb::GetAccessedRecordRequest {
            access_id: chosen.access_id.clone(),
            ..Default::default()
        }))
        .await
        .expect("found by access id")
        .into_inner();
    assert_eq!(shown.access_sequence, shared.stream_sequence);
    assert_eq!(shown.access.as_ref(), Some(chosen));
    let patient = shown.record.expect("record").patient.expect("patient");
    assert_eq!(patient.patient_id, chosen.patient_id);
    stack.stop().await;
}
