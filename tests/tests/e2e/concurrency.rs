//! Concurrent commands on one patient from two carelog replicas: no update
//! is lost; a loser retries, or gets ABORTED and nothing of it is stored.

use std::sync::Arc;

use carelog_demographics::domain::{Command, PatientRecord, decide};
use carelog_kernel::{Actor, Executor, Failure, OdsCode, PatientId, RequestContext};
use carelog_proto::consultations::v1::consultations_service_client::ConsultationsServiceClient;
use carelog_proto::demographics::v1 as pb;
use carelog_proto::demographics::v1::demographics_service_client::DemographicsServiceClient;
use carelog_tests::consultations;
use carelog_tests::harness::{Servers, TestStack, jane_smith, new_phone, update_request};
use futures::future::join_all;
use tonic::Code;
use tonic_types::StatusExt as _;

fn ctx(user: &str) -> RequestContext {
    let actor = Actor {
        user_id: user.into(),
        display_name: String::new(),
        role: "R8000".into(),
        organisation: OdsCode::parse("A81001").expect("ods"),
        purpose_of_use: "DIRECT_CARE".into(),
    };
    RequestContext::for_actor(actor, &tonic::metadata::MetadataMap::new())
}

#[tokio::test]
async fn concurrent_updates_to_one_patient_from_two_replicas_lose_nothing() {
    let servers = Servers::start().await;
    let store = carelog::stack::event_store(&servers.nats.url, Default::default())
        .await
        .expect("store");
    let replica_a = Arc::new(Executor::<PatientRecord>::new(store.clone(), 1000));
    let replica_b = Arc::new(Executor::<PatientRecord>::new(store.clone(), 1000));
    let id = PatientId::new();
    let register = Command::Register {
        details: jane_smith(),
    };
    replica_a
        .execute(&ctx("admin"), &[id], |l| {
            decide(id, &l[0].state, &register).map_err(Failure::from)
        })
        .await
        .expect("registered");
    // Both replicas have the record cached at version 1.
    replica_b.load_current(id).await.expect("warm cache");

    let updates = (0..24).map(|i| {
        let executor = if i % 2 == 0 {
            replica_a.clone()
        } else {
            replica_b.clone()
        };
        async move {
            let mut details = jane_smith();
            details.telecom = vec![pb::ContactPoint {
                system: pb::ContactSystem::Phone as i32,
                value: format!("0113 496 {i:04}"),
                r#use: 0,
            }];
            let command = Command::Update {
                details,
                paths: vec!["telecom".into()],
                correction: false,
                reason: String::new(),
            };
            let result = executor
                .execute(&ctx(&format!("clerk-{i}")), &[id], |l| {
                    decide(id, &l[0].state, &command).map_err(Failure::from)
                })
                .await;
            (i, result)
        }
    });
    let results = join_all(updates).await;
    let mut won = Vec::new();
    for (i, result) in results {
        match result {
            Ok(committed) => won.push((i, committed.sequence)),
            Err(failure) => assert_eq!(
                failure.code,
                Code::Aborted,
                "only a lost race may fail: {failure}"
            ),
        }
    }
    assert!(!won.is_empty());
    // The history holds exactly the winners, each once, in a dense chain.
    let stream = carelog_kernel::store::ContextStream::new("demographics");
    let messages = store
        .read_subject(&stream.name, &stream.subject(&id), 0)
        .await
        .expect("history");
    assert_eq!(messages.len(), 1 + won.len());
    let mut authors: Vec<String> = Vec::new();
    for (n, m) in messages.iter().enumerate() {
        let commit = carelog_kernel::envelope::StoredCommit::decode(m).expect("commit");
        assert_eq!(commit.commit.aggregate_version, n as u64 + 1);
        authors.push(commit.commit.actor.expect("actor").user_id);
    }
    for (i, sequence) in &won {
        assert!(
            authors.contains(&format!("clerk-{i}")),
            "update {i} at {sequence} is in the history"
        );
    }
    let fresh = Executor::<PatientRecord>::new(store, 10)
        .load_current(id)
        .await
        .expect("reload");
    assert_eq!(fresh.version, 1 + won.len() as u64);
}

/// A replica decides a command's access on the record it holds when it can
/// (ADR 0032); this shows that a record changed through another replica is
/// not admitted on what the first replica still holds.
#[tokio::test]
async fn a_patient_who_moved_practice_through_another_replica_is_refused_to_her_old_practice() {
    // Given Jane registered at practice A81001, whose record replica A holds
    // after an update through it,
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    stack
        .client()
        .update_demographics(stack.req(new_phone(&jane.patient_id, "0113 496 0001")))
        .await
        .expect("an update through replica A");
    // when she moves to practice B82002, recorded through replica B,
    let (replica_b, channel_b) = stack.replica().await;
    let moved = pb::PatientDetails {
        registered_practice_ods: "B82002".into(),
        ..jane_smith()
    };
    DemographicsServiceClient::new(channel_b)
        .update_demographics(stack.req(update_request(
            &jane.patient_id,
            moved,
            &["registered_practice_ods"],
        )))
        .await
        .expect("the move through replica B");
    let before = stack.last_sequence().await;

    // then a clinician of her old practice updating her through replica A is
    // refused, as the record is now, not as replica A held it,
    let status = stack
        .client()
        .update_demographics(stack.req(new_phone(&jane.patient_id, "0113 496 0002")))
        .await
        .expect_err("her old practice no longer has access");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "NO_LEGITIMATE_RELATIONSHIP");
    // nothing is appended,
    assert_eq!(stack.last_sequence().await, before);
    // and the refusal is recorded, once.
    let refusals = stack.refusals(&jane.patient_id).await;
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].method, "UpdateDemographics");
    assert_eq!(refusals[0].reason_code, "NO_LEGITIMATE_RELATIONSHIP");
    replica_b
        .stop(std::time::Duration::from_secs(10))
        .await
        .expect("replica B stops");
}

/// A command that would change nothing on the record a replica holds is
/// decided again on the record as stored (ADR 0032), so a change made
/// through another replica is not mistaken for one already made.
#[tokio::test]
async fn an_objection_withdrawn_through_another_replica_is_recorded_again_through_the_first() {
    // Given Jane's sharing objection recorded through replica A, which holds
    // her record with it,
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let flag = |reason: &str| pb::PatientFlagRequest {
        patient_id: jane.patient_id.clone(),
        reason: reason.into(),
        ..Default::default()
    };
    stack
        .client()
        .record_sharing_objection(stack.req(flag("Patient asked not to share")))
        .await
        .expect("the objection through replica A");
    // and withdrawn through replica B,
    let (replica_b, channel_b) = stack.replica().await;
    let withdrawn = DemographicsServiceClient::new(channel_b)
        .withdraw_sharing_objection(stack.req(flag("Patient agreed to share")))
        .await
        .expect("the withdrawal through replica B")
        .into_inner();
    assert!(!withdrawn.sharing_objection);

    // when she objects again through replica A,
    let objected = stack
        .client()
        .record_sharing_objection(stack.req(flag("Patient changed her mind")))
        .await
        .expect("the objection again through replica A")
        .into_inner();

    // then the objection is stored after the withdrawal, not taken for one
    // already in place.
    assert!(objected.sharing_objection);
    assert!(
        objected.stream_sequence > withdrawn.stream_sequence,
        "stored at {} after the withdrawal at {}",
        objected.stream_sequence,
        withdrawn.stream_sequence
    );
    assert_eq!(stack.last_sequence().await, objected.stream_sequence);
    replica_b
        .stop(std::time::Duration::from_secs(10))
        .await
        .expect("replica B stops");
}

/// A refusal is given only on what the store holds: a consultation started
/// through another replica is not "not found" through the first, which held
/// the patient's consultations from before it.
#[tokio::test]
async fn an_entry_is_added_through_one_replica_to_a_consultation_started_through_another() {
    // Given Jane's morning consultation started through replica A, which
    // then holds her consultations,
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    consultations::start(&stack, &jane.patient_id).await;
    // and an afternoon one started through replica B,
    let (replica_b, channel_b) = stack.replica().await;
    let afternoon = ConsultationsServiceClient::new(channel_b)
        .start_consultation(stack.req(consultations::start_request(&jane.patient_id)))
        .await
        .expect("the afternoon consultation through replica B")
        .into_inner();
    let consultation_id = afternoon
        .consultation
        .expect("consultation")
        .consultation_id;

    // when the GP records a blood pressure in it through replica A,
    let added = stack
        .consultations()
        .add_entry(stack.req(consultations::add_request(
            &jane.patient_id,
            &consultation_id,
            "",
            consultations::blood_pressure(150, 95),
        )))
        .await
        .expect("the entry through replica A")
        .into_inner();

    // then it is stored in that consultation, after its start.
    assert_eq!(
        added.consultation.map(|c| c.consultation_id),
        Some(consultation_id)
    );
    assert!(added.stream_sequence > afternoon.stream_sequence);
    assert_eq!(
        stack.last_sequence_of("consultations").await,
        added.stream_sequence
    );
    replica_b
        .stop(std::time::Duration::from_secs(10))
        .await
        .expect("replica B stops");
}

/// A command that would change nothing on a replica's cached record is
/// decided again on the stored one before it is answered: a restriction
/// marked through replica B is cleared through replica A, which still held
/// the record unrestricted.
#[tokio::test]
async fn a_restriction_marked_through_another_replica_is_cleared_through_the_first() {
    let servers = Servers::start().await;
    let store = carelog::stack::event_store(&servers.nats.url, Default::default())
        .await
        .expect("store");
    let replica_a = Executor::<PatientRecord>::new(store.clone(), 1000);
    let replica_b = Executor::<PatientRecord>::new(store.clone(), 1000);
    let id = PatientId::new();
    let run = |executor: &'static str, command: Command| {
        let executor = if executor == "A" {
            &replica_a
        } else {
            &replica_b
        };
        async move {
            executor
                .execute(&ctx("dr-jones"), &[id], |l| {
                    decide(id, &l[0].state, &command).map_err(Failure::from)
                })
                .await
        }
    };
    // Given Jane registered through replica A, which holds her record,
    let register = Command::Register {
        details: jane_smith(),
    };
    replica_a
        .create(&ctx("admin"), id, |l| {
            decide(id, &l[0].state, &register).map_err(Failure::from)
        })
        .await
        .expect("registered");
    // and restricted through replica B,
    run("B", Command::MarkRestricted).await.expect("restricted");

    // when the restriction is cleared through replica A,
    let cleared = run(
        "A",
        Command::ClearRestricted {
            reason: "Patient asked for the restriction to be lifted".into(),
        },
    )
    .await
    .expect("cleared");

    // then the clearing is stored after the restriction.
    assert!(
        cleared.appended,
        "stored, not taken for a change already made"
    );
    let stored = Executor::<PatientRecord>::new(store, 10)
        .load_current(id)
        .await
        .expect("reload");
    assert_eq!(stored.version, 3);
    assert!(!stored.state.patient.restricted);
}
