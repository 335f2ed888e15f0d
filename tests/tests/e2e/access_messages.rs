//! The accesses of concurrent reads share messages of `CARELOG_ACCESS`
//! (ADR 0029): each read is still recorded once, under its own patient and
//! reader, and what it showed can still be rebuilt.

use std::collections::BTreeSet;

use carelog_kernel::access::{self, AccessLog, AccessMessage, AccessSink, Reads, access_stream};
use carelog_kernel::{Actor, OdsCode, RequestContext};
use carelog_proto::access::v1::{AccessOutcome, RecordAccessed, StreamPosition};
use carelog_proto::audit::v1 as hpb;
use carelog_proto::audit::v1::record_history_service_client::RecordHistoryServiceClient;
use carelog_proto::kernel::v1::{Commit, EventRecord};
use carelog_tests::harness::{TestStack, jane_smith};
use prost::Message as _;
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

/// An access as recorded, with fixed ids and times for golden samples.
fn sample_access(access_id: &str, patient_id: &str, user: &str) -> RecordAccessed {
    RecordAccessed {
        access_id: access_id.into(),
        patient_id: patient_id.into(),
        actor: Some(carelog_proto::kernel::v1::Actor {
            user_id: user.into(),
            display_name: format!("Dr {user}"),
            role: "R8000".into(),
            organisation_ods: "A81001".into(),
        }),
        purpose_of_use: "DIRECT_CARE".into(),
        service: "carelog.demographics.v1.DemographicsService".into(),
        method: "GetPatient".into(),
        resource_ids: vec![patient_id.into()],
        record_count: 1,
        positions: vec![StreamPosition {
            stream: "CARELOG_DEMOGRAPHICS".into(),
            sequence: 7,
        }],
        accessed_at: Some(prost_types::Timestamp {
            seconds: 1_764_547_200,
            nanos: 0,
        }),
        outcome: AccessOutcome::Granted as i32,
        rule: "registered".into(),
        registered_organisation: "A81001".into(),
        ..Default::default()
    }
}

#[test]
fn access_messages_as_written_before_and_since_sharing_still_decode() {
    let jane = "01a20000-0000-7000-8000-000000000001";
    let john = "01a20000-0000-7000-8000-000000000002";
    let lone = sample_access("01a20000-0000-7000-8000-0000000000a1", jane, "dr-patel");
    let other = sample_access("01a20000-0000-7000-8000-0000000000a2", john, "dr-khan");
    // Until ADR 0029: one access per message, the access id as commit id.
    let before = Commit {
        commit_id: lone.access_id.clone(),
        context: access::ACCESS.into(),
        aggregate_id: jane.into(),
        patient_id: jane.into(),
        actor: lone.actor.clone(),
        purpose_of_use: lone.purpose_of_use.clone(),
        recorded_at: lone.accessed_at,
        events: vec![EventRecord {
            event_id: "01a20000-0000-7000-8000-0000000000e1".into(),
            event_type: access::RECORD_ACCESSED.into(),
            occurred_at: lone.accessed_at,
            payload: lone.encode_to_vec(),
        }],
        ..Default::default()
    };
    // Since: the accesses of reads made at the same moment in one message.
    let mut shared = AccessMessage::new(&[lone.clone(), other.clone()]).commit;
    shared.commit_id = "01a20000-0000-7000-8000-0000000000c1".into();
    let samples = [
        ("single-access-message.bin", before, vec![lone.clone()]),
        ("shared-access-message.bin", shared, vec![lone, other]),
    ];
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/access");
    let write = std::env::var("CARELOG_WRITE_GOLDEN").is_ok_and(|v| v == "1");
    for (name, commit, events) in samples {
        let path = dir.join(name);
        if write && !path.exists() {
            std::fs::create_dir_all(&dir).expect("golden dir");
            std::fs::write(&path, commit.encode_to_vec()).expect("write golden sample");
        }
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("golden sample {} missing ({e})", path.display()));
        assert_eq!(access::decode(&bytes), events, "{name}");
        assert_eq!(
            Commit::decode(bytes.as_slice())
                .expect(name)
                .encode_to_vec(),
            bytes
        );
    }
}
