//! Projectors: stopped and restarted they end where a full rebuild ends,
//! a backlog is read in full batches, a nats-server restart under them is
//! survived;
//! an event they cannot apply stops them visibly, never silently.

use std::time::Duration;

use carelog_projections::{ProjectorStatus, Runner};
use carelog_proto::demographics::v1 as pb;
use carelog_tests::consultations::mask;
use carelog_tests::harness::{TestStack, jane_smith, test_nhs_number};
use tokio_util::sync::CancellationToken;

async fn dump(pool: &sqlx::PgPool) -> Vec<String> {
    let mut out = Vec::new();
    for (table, order) in [
        ("patients", "patient_id"),
        ("patient_addresses", "patient_id, position"),
        ("patient_versions", "patient_id, version"),
        ("audit_events", "stream, stream_sequence, event_index"),
        ("audit_log", "log, stream_sequence"),
        ("projection_checkpoints", "projection, stream"),
    ] {
        let sql = format!(
            "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY {order}), '') FROM {table} t"
        );
        // A checkpoint at 0 (a stream with nothing yet) is no checkpoint.
        let sql = if table == "projection_checkpoints" {
            "SELECT coalesce(string_agg(projection || ':' || stream || ':' || last_sequence, E'\\n' ORDER BY projection, stream), '') FROM projection_checkpoints WHERE last_sequence > 0".to_owned()
        } else {
            sql
        };
        let (text,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .expect("dump");
        out.push(format!("== {table}\n{text}"));
    }
    out
}

async fn caught_up(pool: &sqlx::PgPool, projection: &str, sequence: u64) {
    caught_up_within(pool, projection, sequence, Duration::from_secs(20)).await;
}

async fn caught_up_within(pool: &sqlx::PgPool, projection: &str, sequence: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    assert!(
        carelog_projections::checkpoint::wait_for(
            pool,
            projection,
            "CARELOG_DEMOGRAPHICS",
            sequence,
            deadline
        )
        .await
        .expect("checkpoint"),
        "{projection} did not reach {sequence}"
    );
}

async fn some_clinical_activity(stack: &TestStack, n: usize) -> u64 {
    let mut client = stack.client();
    let mut last = 0;
    for i in 0..n {
        let p = stack
            .register(pb::PatientDetails {
                nhs_number: test_nhs_number(),
                ..jane_smith()
            })
            .await;
        let mut moved = jane_smith();
        moved.addresses[0].postcode = format!("LS{} 1AB", 1 + i % 9);
        let u = client
            .update_demographics(stack.req(pb::UpdateDemographicsRequest {
                patient_id: p.patient_id.clone(),
                details: Some(moved),
                update_mask: mask(&["addresses"]),
                ..Default::default()
            }))
            .await
            .expect("update")
            .into_inner();
        last = u.stream_sequence;
        if i % 3 == 0 {
            last = client
                .mark_restricted(stack.req(pb::PatientFlagRequest {
                    patient_id: p.patient_id.clone(),
                    ..Default::default()
                }))
                .await
                .expect("restrict")
                .into_inner()
                .stream_sequence;
        }
    }
    last
}

#[tokio::test]
async fn a_projector_stopped_mid_stream_and_restarted_ends_identical_to_a_full_rebuild() {
    let stack = TestStack::without_projectors().await;
    let projections = carelog_projections::all();

    // Given a projector that applied the first half and was stopped
    let first = CancellationToken::new();
    let runner = Runner::new(stack.pool.clone(), stack.store.clone());
    let task = tokio::spawn(runner.clone().run(projections.clone(), first.clone()));
    let half = some_clinical_activity(&stack, 12).await;
    caught_up(&stack.pool, "patients", half).await;
    caught_up(&stack.pool, "audit_events", half).await;
    caught_up(&stack.pool, "audit_log", half).await;
    first.cancel();
    task.await.expect("join").expect("clean stop");

    // When more happens while it is down, and it is restarted
    let end = some_clinical_activity(&stack, 12).await;
    assert!(end > half);
    let second = CancellationToken::new();
    let task = tokio::spawn(
        Runner::new(stack.pool.clone(), stack.store.clone())
            .run(projections.clone(), second.clone()),
    );
    caught_up(&stack.pool, "patients", end).await;
    caught_up(&stack.pool, "audit_events", end).await;
    caught_up(&stack.pool, "audit_log", end).await;
    second.cancel();
    task.await.expect("join").expect("clean stop");
    let restarted = dump(&stack.pool).await;

    // Then a full rebuild from sequence 1 gives byte-identical tables
    for projection in &projections {
        stack.rebuild(projection.name()).await;
    }
    let rebuilt = dump(&stack.pool).await;
    assert_eq!(restarted, rebuilt);
    assert!(restarted[0].lines().count() > 24, "patients were projected");
    stack.stop().await;
}

#[tokio::test]
async fn an_event_the_projector_cannot_apply_stops_it_and_fails_readiness() {
    let mut stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    caught_up(&stack.pool, "patients", jane.stream_sequence).await;
    // A commit whose payload is not a commit, on a fresh patient subject.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Carelog-Kind", "commit");
    let write = carelog_kernel::store::Write {
        subject: TestStack::demographics_stream().subject(&uuid::Uuid::now_v7()),
        expected_last_subject_sequence: 0,
        message_id: None,
        headers,
        payload: bytes::Bytes::from_static(b"\xff\xff not protobuf"),
    };
    let poisoned = stack
        .store
        .append(vec![write])
        .await
        .expect("append")
        .sequence;
    readiness_fails(&stack).await;
    // The checkpoint stays before the poisoned event: it was not skipped.
    let at = carelog_projections::checkpoint::read(&stack.pool, "patients", "CARELOG_DEMOGRAPHICS")
        .await
        .expect("checkpoint");
    assert!(
        at >= jane.stream_sequence && at < poisoned,
        "checkpoint {at}, poisoned {poisoned}"
    );
    // Stopping reports the projector's failure rather than hiding it.
    let stopped = stack
        .running
        .take()
        .expect("running")
        .stop(Duration::from_secs(10))
        .await;
    assert!(
        format!("{:#}", stopped.expect_err("the failure surfaces")).contains(&poisoned.to_string())
    );
}

/// Waits until carelog's readiness answers NOT_SERVING.
async fn readiness_fails(stack: &TestStack) {
    let mut health = tonic_health::pb::health_client::HealthClient::new(stack.channel.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "readiness".into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status;
        if status == tonic_health::pb::health_check_response::ServingStatus::NotServing as i32 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never failed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A registration commit of `details` sealed as carelog seals one, to be
/// appended by the test itself, past the API and its checks.
fn registration(details: pb::PatientDetails) -> carelog_kernel::store::Write {
    use carelog_kernel::envelope::{CommitSpec, GENESIS, NewEvent, seal};
    use prost::Message as _;
    let event = pb::Event {
        event: Some(pb::event::Event::PatientRegistered(pb::PatientRegistered {
            details: Some(details),
        })),
    };
    let actor = carelog_kernel::Actor {
        user_id: "dr-jones".into(),
        display_name: "Dr Jones".into(),
        role: "R8000".into(),
        organisation: carelog_kernel::OdsCode::parse("A81001").expect("ods"),
        purpose_of_use: "DIRECT_CARE".into(),
    };
    let ctx =
        carelog_kernel::RequestContext::for_actor(actor, &tonic::metadata::MetadataMap::new());
    let id = carelog_kernel::PatientId::new();
    let now = chrono::Utc::now();
    let sealed = seal(CommitSpec {
        ctx: &ctx,
        context: "demographics",
        aggregate_id: id,
        patient_id: id,
        version: 1,
        previous_hash: GENESIS,
        events: vec![NewEvent {
            event_type: "PatientRegistered",
            payload: event.encode_to_vec(),
            occurred_at: now,
        }],
        recorded_at: now,
    });
    carelog_kernel::store::Write {
        subject: TestStack::demographics_stream().subject(&id),
        expected_last_subject_sequence: 0,
        message_id: None,
        headers: sealed.headers,
        payload: sealed.bytes,
    }
}

/// Jane Smith's details under the family name `family`.
fn family_named(family: &str) -> pb::PatientDetails {
    pb::PatientDetails {
        name: Some(pb::HumanName {
            family: family.into(),
            given: vec!["Jane".into()],
            prefix: "Mrs".into(),
        }),
        ..jane_smith()
    }
}

/// Stores, past the API, a registration and right after it (one atomic
/// batch, so the projector reads them together) a registration whose family
/// name holds a NUL, which PostgreSQL refuses in text. Returns the second's
/// sequence.
async fn a_registration_and_one_postgresql_refuses(stack: &TestStack) -> u64 {
    stack
        .store
        .append(vec![
            registration(family_named("Smith")),
            registration(family_named("Smi\0th")),
        ])
        .await
        .expect("append")
        .sequence
}

#[tokio::test]
async fn a_commit_postgresql_refuses_stops_the_projector_failed_naming_its_sequence() {
    let stack = TestStack::without_projectors().await;
    // Given a registration, then one whose family name PostgreSQL refuses
    let refused = a_registration_and_one_postgresql_refuses(&stack).await;

    // When the patients projector reads them
    let runner = Runner::new(stack.pool.clone(), stack.store.clone());
    let patients: Vec<std::sync::Arc<dyn carelog_projections::Projection>> =
        vec![std::sync::Arc::new(
            carelog_projections::patients::PatientsProjection,
        )];
    let stopped = tokio::time::timeout(
        Duration::from_secs(60),
        runner.clone().run(patients, CancellationToken::new()),
    )
    .await
    .expect("the projector stops instead of retrying the refused commit")
    .expect_err("it stops on the refused commit");

    // Then it stands Failed, naming the commit's sequence and PostgreSQL's
    // message, and stopped with that error
    let status = runner
        .status()
        .borrow()
        .get("patients/CARELOG_DEMOGRAPHICS")
        .cloned();
    let Some(ProjectorStatus::Failed { error }) = status else {
        panic!("the projector is not Failed: {status:?}");
    };
    assert!(
        error.contains(&format!("stream sequence {refused} ")),
        "{error}"
    );
    assert!(
        error.contains("invalid byte sequence") && error.contains("(SQLSTATE 22021)"),
        "{error}"
    );
    assert_eq!(stopped.to_string(), error);
    // and the registration before it was applied, the refused one not skipped
    let at = carelog_projections::checkpoint::read(&stack.pool, "patients", "CARELOG_DEMOGRAPHICS")
        .await
        .expect("checkpoint");
    assert_eq!(at, refused - 1);
    let (families,): (Vec<String>,) =
        sqlx::query_as("SELECT array_agg(family_name_upper) FROM patients")
            .fetch_one(&stack.pool)
            .await
            .expect("patients");
    assert_eq!(families, vec!["SMITH".to_owned()]);
    stack.stop().await;
}

#[tokio::test]
async fn a_commit_postgresql_refuses_fails_readiness() {
    // Given carelog with its projectors, and a patient projected
    let mut stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    caught_up(&stack.pool, "patients", jane.stream_sequence).await;

    // When a commit PostgreSQL refuses is stored
    let refused = a_registration_and_one_postgresql_refuses(&stack).await;

    // Then readiness fails, rather than the projector retrying it unseen
    readiness_fails(&stack).await;
    let at = carelog_projections::checkpoint::read(&stack.pool, "patients", "CARELOG_DEMOGRAPHICS")
        .await
        .expect("checkpoint");
    assert_eq!(at, refused - 1, "stopped just before the refused commit");
    // and stopping reports the failure, naming the commit
    let stopped = stack
        .running
        .take()
        .expect("running")
        .stop(Duration::from_secs(10))
        .await;
    let failure = format!("{:#}", stopped.expect_err("the failure surfaces"));
    assert!(
        failure.contains(&format!("stream sequence {refused} "))
            && failure.contains("SQLSTATE 22021"),
        "{failure}"
    );
}

/// Three registrations, the live projector of patients in the middle of a
/// batch (the transaction holding the projection's lock), and a rebuild of
/// patients waiting for that lock at the tail.
async fn a_rebuild_waiting_for_the_live_projector(
    stack: &TestStack,
) -> (
    sqlx::Transaction<'static, sqlx::Postgres>,
    tokio::task::JoinHandle<
        Result<carelog_projections::rebuild::RebuildReport, carelog_projections::ProjectionError>,
    >,
) {
    for _ in 0..3 {
        stack.register(jane_smith()).await;
    }
    let mut live = stack.pool.begin().await.expect("begin");
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('patients'))")
        .execute(&mut *live)
        .await
        .expect("lock");
    let rebuild = rebuild_patients(stack);
    until_the_rebuild_waits_for_the_lock(&stack.pool).await;
    (live, rebuild)
}

/// Waits until a rebuild waits for a projection's lock (at the tail).
async fn until_the_rebuild_waits_for_the_lock(pool: &sqlx::PgPool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(pool)
        .await
        .expect("locks");
        if waiting > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rebuild never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The rebuild of patients, run in the background.
fn rebuild_patients(
    stack: &TestStack,
) -> tokio::task::JoinHandle<
    Result<carelog_projections::rebuild::RebuildReport, carelog_projections::ProjectionError>,
> {
    let (pool, store) = (stack.pool.clone(), stack.store.clone());
    tokio::spawn(async move {
        carelog_projections::rebuild::rebuild(
            &pool,
            &store,
            &carelog_projections::patients::PatientsProjection,
            &|_, _| {},
        )
        .await
    })
}

#[tokio::test]
async fn a_rebuild_reads_the_tail_only_once_the_live_projector_has_committed() {
    let stack = TestStack::without_projectors().await;
    let stream = "CARELOG_DEMOGRAPHICS";
    // Given the live projector in the middle of a batch: it holds the
    // projection's lock
    // When a rebuild of patients runs, and reaches the tail
    let (mut live, rebuild) = a_rebuild_waiting_for_the_live_projector(&stack).await;
    // while the live projector applies, and commits, a registration stored
    // meanwhile
    let late = stack.register(jane_smith()).await;
    let messages = stack.store.read_range(stream, 1, 1000).await.expect("read");
    let applied = carelog_projections::runner::apply_messages(
        &mut live,
        &carelog_projections::patients::PatientsProjection,
        stream,
        &messages,
    )
    .await
    .expect("live batch");
    assert_eq!(applied, Some(late.stream_sequence));
    live.commit().await.expect("commit");

    // Then the rebuild swaps in a checkpoint no older than the live one: at
    // the stream's end, with the late registration
    tokio::time::timeout(Duration::from_secs(120), rebuild)
        .await
        .expect("the rebuild ended within 120 s")
        .expect("join")
        .expect("rebuild");
    let last = stack.last_sequence().await;
    assert_eq!(last, late.stream_sequence);
    let at = carelog_projections::checkpoint::read(&stack.pool, "patients", stream)
        .await
        .expect("checkpoint");
    assert_eq!(at, last);
    let late_id: uuid::Uuid = late.patient_id.parse().expect("patient id");
    let (projected,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM patients WHERE patient_id = $1")
            .bind(late_id)
            .fetch_one(&stack.pool)
            .await
            .expect("count");
    assert_eq!(projected, 1);

    // And the live projector runs on from there
    let runner = Runner::new(stack.pool.clone(), stack.store.clone());
    let patients: Vec<std::sync::Arc<dyn carelog_projections::Projection>> =
        vec![std::sync::Arc::new(
            carelog_projections::patients::PatientsProjection,
        )];
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.clone().run(patients, stop.clone()));
    let next = stack.register(jane_smith()).await.stream_sequence;
    let mut status = runner.status();
    let running = tokio::time::timeout(
        Duration::from_secs(60),
        // Running at the new registration, or stopped
        status.wait_for(|all| match all.get("patients/CARELOG_DEMOGRAPHICS") {
            Some(ProjectorStatus::Running { last_sequence }) => *last_sequence >= next,
            Some(ProjectorStatus::Failed { .. } | ProjectorStatus::Stopped) => true,
            _ => false,
        }),
    )
    .await
    .expect("the projector reaches the new registration")
    .expect("status")
    .get("patients/CARELOG_DEMOGRAPHICS")
    .cloned();
    assert_eq!(
        running,
        Some(ProjectorStatus::Running {
            last_sequence: next
        })
    );
    stop.cancel();
    task.await.expect("join").expect("clean stop");
    stack.stop().await;
}

async fn consumers_of(stack: &TestStack, stream: &str) -> Vec<String> {
    use futures::TryStreamExt as _;
    let mut names: Vec<String> = stack
        .store
        .jetstream()
        .get_stream(stream)
        .await
        .expect("stream")
        .consumer_names()
        .try_collect()
        .await
        .expect("consumer names");
    names.sort();
    names
}

#[tokio::test]
async fn the_audit_projections_share_one_consumer_per_stream_and_each_keeps_its_own_checkpoint() {
    let stack = TestStack::without_projectors().await;
    let stream = "CARELOG_DEMOGRAPHICS";
    // Given the consumer an earlier carelog made for audit_log alone
    stack
        .store
        .jetstream()
        .get_stream(stream)
        .await
        .expect("stream")
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("carelog-audit_log".into()),
            ..Default::default()
        })
        .await
        .expect("old consumer");
    // and an audit log that ran on its own through the first half of the
    // activity, while audit_events had not started
    let audit_log: Vec<std::sync::Arc<dyn carelog_projections::Projection>> =
        vec![std::sync::Arc::new(
            carelog_projections::audit_log::AuditLogProjection,
        )];
    let first = CancellationToken::new();
    let task = tokio::spawn(
        Runner::new(stack.pool.clone(), stack.store.clone()).run(audit_log, first.clone()),
    );
    let half = some_clinical_activity(&stack, 6).await;
    caught_up(&stack.pool, "audit_log", half).await;
    first.cancel();
    task.await.expect("join").expect("clean stop");
    let behind = carelog_projections::checkpoint::read(&stack.pool, "audit_events", stream)
        .await
        .expect("checkpoint");
    assert_eq!(behind, 0, "audit_events has not started");

    // When every projector runs, and more happens
    let projections = carelog_projections::all();
    let second = CancellationToken::new();
    let task = tokio::spawn(
        Runner::new(stack.pool.clone(), stack.store.clone())
            .run(projections.clone(), second.clone()),
    );
    let end = some_clinical_activity(&stack, 6).await;
    caught_up(&stack.pool, "patients", end).await;
    caught_up(&stack.pool, "audit_events", end).await;
    caught_up(&stack.pool, "audit_log", end).await;

    // Then the stream serves one consumer for both audit projections (the
    // old one is gone) and one for the patients read model
    assert_eq!(
        consumers_of(&stack, stream).await,
        vec!["carelog-audit".to_owned(), "carelog-patients".to_owned()]
    );
    second.cancel();
    task.await.expect("join").expect("clean stop");

    // and each projection holds exactly what a rebuild of it alone holds:
    // audit_events caught up from the start, audit_log skipped what it had
    let shared = dump(&stack.pool).await;
    for projection in &projections {
        stack.rebuild(projection.name()).await;
    }
    assert_eq!(shared, dump(&stack.pool).await);
    let logged = shared[4]
        .lines()
        .filter(|l| l.contains("demographics"))
        .count();
    assert!(
        logged >= 12 + 6,
        "every registration and update is logged: {logged}"
    );
    stack.stop().await;
}

/// A projection that writes nothing and notes the size of every batch it
/// is given.
struct BatchSizes(std::sync::Arc<std::sync::Mutex<Vec<usize>>>);

impl carelog_projections::Projection for BatchSizes {
    fn name(&self) -> &'static str {
        "batch_sizes"
    }
    fn streams(&self) -> Vec<String> {
        vec!["CARELOG_DEMOGRAPHICS".to_owned()]
    }
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }
    fn apply<'a>(
        &'a self,
        _tx: &'a mut sqlx::PgConnection,
        _stream: &'a str,
        batch: &'a [carelog_kernel::envelope::StoredCommit],
    ) -> futures::future::BoxFuture<'a, Result<(), carelog_projections::ProjectionError>> {
        self.0.lock().expect("sizes").push(batch.len());
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn a_projector_behind_the_stream_catches_up_in_full_batches() {
    use futures::StreamExt as _;
    use prost::Message as _;
    let stack = TestStack::without_projectors().await;
    // Given two and a half batches' worth of commits (1,250) stored while
    // no projector ran
    let full = carelog_projections::runner::BATCH;
    let backlog = 2 * full + full / 2;
    let stream = TestStack::demographics_stream();
    let last = futures::stream::iter(0..backlog)
        .map(|_| {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Carelog-Kind", "commit");
            let write = carelog_kernel::store::Write {
                subject: stream.subject(&uuid::Uuid::now_v7()),
                expected_last_subject_sequence: 0,
                message_id: None,
                headers,
                payload: carelog_proto::kernel::v1::Commit::default()
                    .encode_to_vec()
                    .into(),
            };
            let store = stack.store.clone();
            async move { store.append(vec![write]).await.expect("append").sequence }
        })
        .buffer_unordered(32)
        .collect::<Vec<u64>>()
        .await
        .into_iter()
        .max()
        .unwrap_or(0);
    assert_eq!(last, backlog as u64);

    // When a projector starts from the beginning
    let sizes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let probe: Vec<std::sync::Arc<dyn carelog_projections::Projection>> =
        vec![std::sync::Arc::new(BatchSizes(sizes.clone()))];
    let stop = CancellationToken::new();
    let task =
        tokio::spawn(Runner::new(stack.pool.clone(), stack.store.clone()).run(probe, stop.clone()));
    caught_up(&stack.pool, "batch_sizes", last).await;
    stop.cancel();
    task.await.expect("join").expect("clean stop");

    // Then it read the backlog in full batches (500 messages), not message
    // by message nor in the small batches of a live stream
    let sizes = sizes.lock().expect("sizes").clone();
    assert_eq!(sizes, vec![full, full, full / 2]);
    stack.stop().await;
}

#[tokio::test]
async fn projectors_go_on_after_nats_server_restarts_under_them() {
    // Given carelog with its projectors, busy with registrations
    let mut stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    caught_up(&stack.pool, "patients", jane.stream_sequence).await;
    let mut busy = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let mut client = stack.client();
        let request = stack.req(pb::RegisterPatientRequest {
            details: Some(jane_smith()),
            ..Default::default()
        });
        // Answered, or UNAVAILABLE when the restart cuts the append off:
        // both are outcomes a caller can meet; the test needs only the load.
        busy.spawn(async move {
            client
                .register_patient(request)
                .await
                .ok()
                .map(|answer| answer.into_inner().patient_id)
        });
    }
    tokio::time::sleep(Duration::from_millis(5)).await;

    // When nats-server restarts on the same port and store, so that a
    // projector's pull or fetch in flight is lost with its connection
    stack
        .servers
        .nats
        .restart()
        .await
        .expect("restart nats-server");
    let mut answered = Vec::new();
    while let Some(registered) = busy.join_next().await {
        answered.extend(registered.expect("join"));
    }

    // Then the projectors resume from their checkpoints (a pull ends with
    // its connection; a fetch lost with it is given up after 10 s, ADR 0033):
    // what was stored before and after the restart reaches the read models
    // and the audit history
    // (once carelog's client has reconnected: its attempts back off to
    // seconds apart, and a command sent before is refused UNAVAILABLE)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stack.store.client().connection_state() != async_nats::connection::State::Connected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "carelog's NATS client reconnected within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    answered.push(stack.register(jane_smith()).await.patient_id);
    let last = stack.last_sequence().await;
    // (a lost fetch, a consumer re-created on a reconnecting client and
    // the runner's back-off may add up to some 20 s)
    let within = Duration::from_secs(45);
    caught_up_within(&stack.pool, "patients", last, within).await;
    caught_up_within(&stack.pool, "audit_events", last, within).await;
    caught_up_within(&stack.pool, "audit_log", last, within).await;
    // and every registration that was answered is in the read model
    let ids: Vec<uuid::Uuid> = answered
        .iter()
        .map(|id| id.parse().expect("patient id"))
        .collect();
    let (projected,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM patients WHERE patient_id = ANY($1)")
            .bind(&ids)
            .fetch_one(&stack.pool)
            .await
            .expect("count");
    assert_eq!(projected as usize, ids.len(), "answered: {answered:?}");
    stack.stop().await;
}

/// A batch that lacks a message (one lost in its delivery) is refused whole:
/// the projector stops on the message after the gap, naming the one it
/// expected, and its checkpoint does not pass over the one it never saw.
#[tokio::test]
async fn a_batch_missing_a_message_is_refused_and_its_checkpoint_does_not_pass_it() {
    // Given three registrations stored, and a batch of them lacking the second message
    let stack = TestStack::without_projectors().await;
    let stream = "CARELOG_DEMOGRAPHICS";
    for _ in 0..3 {
        stack.register(jane_smith()).await;
    }
    let mut messages = stack.store.read_range(stream, 1, 1000).await.expect("read");
    let lost = messages.remove(1).stream_sequence;

    // When the patients projection is given that batch
    let mut tx = stack.pool.begin().await.expect("begin");
    let refused = carelog_projections::runner::apply_messages(
        &mut tx,
        &carelog_projections::patients::PatientsProjection,
        stream,
        &messages,
    )
    .await
    .expect_err("a batch with a gap");
    tx.rollback().await.expect("rollback");

    // Then it names the message after the gap and the one it expected
    match refused {
        carelog_projections::ProjectionError::Unapplicable {
            sequence, reason, ..
        } => {
            assert_eq!(sequence, lost + 1);
            assert_eq!(
                reason,
                format!("gap in the stream: expected sequence {lost} next")
            );
        }
        other => panic!("not refused as unapplicable: {other}"),
    }
    // and nothing of it is projected
    let at = carelog_projections::checkpoint::read(&stack.pool, "patients", stream)
        .await
        .expect("checkpoint");
    assert_eq!(at, 0);
    let (projected,): (i64,) = sqlx::query_as("SELECT count(*) FROM patients")
        .fetch_one(&stack.pool)
        .await
        .expect("count");
    assert_eq!(projected, 0);
}

/// A sharing commit this projector does not know stops it: passed over, the
/// access guard would go on reading agreements as they were before it.
#[tokio::test]
async fn a_sharing_event_of_a_later_carelog_stops_the_sharing_projector() {
    // Given a commit on an agreement holding an event of a kind this
    // carelog does not know (field 99 of the sharing event envelope)
    let stack = TestStack::without_projectors().await;
    let agreement = uuid::Uuid::now_v7();
    let unknown = |event_type: &str| carelog_proto::kernel::v1::EventRecord {
        event_id: uuid::Uuid::now_v7().to_string(),
        event_type: event_type.into(),
        occurred_at: None,
        payload: vec![0x98, 0x06, 0x01],
    };
    let commit = |events| carelog_kernel::envelope::StoredCommit {
        stream_sequence: 1,
        subject: format!("carelog.sharing.{agreement}"),
        commit: carelog_proto::kernel::v1::Commit {
            context: "sharing".into(),
            aggregate_id: agreement.to_string(),
            aggregate_version: 1,
            events,
            ..Default::default()
        },
        hash: [0; 32],
        published: chrono::Utc::now(),
        bytes: Default::default(),
    };
    let projection = carelog_projections::sharing::SharingProjection;
    for (stored, why) in [
        (
            commit(vec![unknown("AgreementSuspended")]),
            "unknown event type AgreementSuspended",
        ),
        // and a commit with no event of a group or agreement never made
        (
            commit(vec![]),
            "a change to a group or agreement that was never made",
        ),
    ] {
        // When the sharing projection is given it
        let mut tx = stack.pool.begin().await.expect("begin");
        let refused = carelog_projections::Projection::apply(
            &projection,
            &mut tx,
            "CARELOG_SHARING",
            std::slice::from_ref(&stored),
        )
        .await
        .expect_err("an event it cannot apply");
        tx.rollback().await.expect("rollback");
        // Then it refuses it as one it cannot apply, saying why, and
        // stops (the runner does not retry it)
        assert!(!refused.is_transient());
        assert_eq!(
            refused.to_string(),
            format!("cannot apply stream sequence 1 (carelog.sharing.{agreement}): {why}")
        );
    }
}

/// One rebuild at a time: every rebuild builds in the same schema, so a
/// second started while one runs is refused, and the first goes on.
#[tokio::test]
async fn a_rebuild_started_while_another_runs_is_refused_and_the_first_completes() {
    // Given a rebuild of patients waiting at the tail for the live
    // projector, which holds the projection's lock
    let stack = TestStack::without_projectors().await;
    let (live, first) = a_rebuild_waiting_for_the_live_projector(&stack).await;

    // When a rebuild of the tasks projection is started meanwhile
    let second = rebuild_tasks(&stack).await;

    // Then it is refused, saying why
    let refused = second.expect_err("a second rebuild at the same time");
    assert!(
        matches!(
            refused,
            carelog_projections::ProjectionError::RebuildRunning
        ),
        "{refused}"
    );
    assert!(!refused.is_transient());
    // and the first, once the live projector commits, swaps its tables in
    live.commit().await.expect("commit");
    let report = tokio::time::timeout(Duration::from_secs(120), first)
        .await
        .expect("the first rebuild ended within 120 s")
        .expect("join")
        .expect("the first rebuild");
    assert!(report.messages > 0);
    let (patients,): (i64,) = sqlx::query_as("SELECT count(*) FROM patients")
        .fetch_one(&stack.pool)
        .await
        .expect("count");
    assert_eq!(patients, 3);
    // And once it has ended, another rebuild runs
    rebuild_tasks(&stack)
        .await
        .expect("a rebuild after the first");
}

/// A rebuild whose lock was lost while it ran (its connection cut by an
/// idle timeout or a proxy) swaps nothing in: another rebuild may have
/// started since.
#[tokio::test]
async fn a_rebuild_that_lost_its_lock_swaps_nothing_in() {
    // Given a rebuild of patients waiting at the tail for the live projector
    let stack = TestStack::without_projectors().await;
    let (live, rebuild) = a_rebuild_waiting_for_the_live_projector(&stack).await;
    // when the connection holding its lock is cut (and its server process
    // has gone: the call waits up to 10 s for it)
    let (terminated,): (bool,) = sqlx::query_as(
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
         WHERE query LIKE 'SELECT pg_try_advisory_lock%' AND state = 'idle' \
         AND datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&stack.pool)
    .await
    .expect("the rebuild's lock connection");
    assert!(terminated);
    live.commit().await.expect("commit");

    // then it ends refused, saying why
    let refused = tokio::time::timeout(Duration::from_secs(120), rebuild)
        .await
        .expect("the rebuild ended within 120 s")
        .expect("join")
        .expect_err("no lock, no swap");
    assert!(
        matches!(
            refused,
            carelog_projections::ProjectionError::RebuildLockLost
        ),
        "{refused}"
    );
    // and the live tables are the ones still in place
    let (patients,): (i64,) = sqlx::query_as("SELECT count(*) FROM patients")
        .fetch_one(&stack.pool)
        .await
        .expect("count");
    assert_eq!(patients, 0, "nothing projected was swapped in");
}

/// An operator rebuilding every projection one after another, as
/// `carelog rebuild` in a loop does: each rebuild is let in once the one
/// before has returned, not refused as still running while its
/// connection's server process is going away.
#[tokio::test]
async fn rebuilds_run_one_straight_after_another_are_each_let_in() {
    let stack = TestStack::without_projectors().await;
    for round in 0..40 {
        rebuild_tasks(&stack)
            .await
            .unwrap_or_else(|e| panic!("rebuild {round}: {e}"));
        // Its lock is let go of by the time it returns.
        let (held,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&stack.pool)
        .await
        .expect("locks");
        assert_eq!(held, 0, "rebuild {round} still holds its lock");
    }
    stack.stop().await;
}

/// `carelog rebuild tasks` (a small projection: quick to rebuild).
async fn rebuild_tasks(
    stack: &TestStack,
) -> Result<carelog_projections::rebuild::RebuildReport, carelog_projections::ProjectionError> {
    carelog_projections::rebuild::rebuild(
        &stack.pool,
        &stack.store,
        &carelog_projections::tasks::TasksProjection,
        &|_, _| {},
    )
    .await
}

/// A pod of the previous release restarted during a rolling update, or a
/// rollback: the database holds a migration this carelog does not know,
/// and it starts on that schema instead of refusing to.
#[tokio::test]
async fn a_carelog_older_than_the_database_schema_still_starts() {
    // Given a database migrated by a newer carelog
    let stack = TestStack::without_projectors().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'a newer carelog''s migration', true, '\\x00', 1)",
    )
    .execute(&stack.pool)
    .await
    .expect("a newer migration");

    // When this carelog connects and migrates
    let pool = carelog::stack::database(&stack.servers.database_url, 2).await;

    // Then it starts, on the schema as it is
    let pool = pool.expect("an older carelog starts on a newer schema");
    let (patients,): (i64,) = sqlx::query_as("SELECT count(*) FROM patients")
        .fetch_one(&pool)
        .await
        .expect("the read model");
    assert_eq!(patients, 0);
    stack.stop().await;
}
