//! Streams are immutable by configuration, and checked at start-up.

use carelog_kernel::store::{ContextStream, StoreOptions, required_config};
use carelog_tests::harness::Servers;

#[tokio::test]
async fn a_stream_pre_created_with_deletes_allowed_is_refused_at_start_up() {
    let servers = Servers::start().await;
    let client = async_nats::connect(&servers.nats.url)
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client);
    let stream = ContextStream::new("demographics");
    let mut weak = required_config(&stream, &StoreOptions::default());
    weak.deny_delete = false;
    js.create_stream(weak).await.expect("pre-create");
    let err = carelog::stack::event_store(&servers.nats.url, StoreOptions::default())
        .await
        .expect_err("a weaker stream must be refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("CARELOG_DEMOGRAPHICS has deny_delete: false"),
        "{message}"
    );
    assert!(message.contains("requires deny_delete: true"), "{message}");
}

#[tokio::test]
async fn a_new_stream_is_created_immutable() {
    let servers = Servers::start().await;
    let store = carelog::stack::event_store(&servers.nats.url, StoreOptions::default())
        .await
        .expect("store");
    let mut stream = store
        .jetstream()
        .get_stream("CARELOG_DEMOGRAPHICS")
        .await
        .expect("stream");
    let config = stream.info().await.expect("info").config.clone();
    assert!(config.deny_delete && config.deny_purge && !config.allow_rollup && config.allow_direct);
    assert_eq!(config.max_age, std::time::Duration::ZERO);
    // And it refuses a delete.
    assert!(stream.delete_message(1).await.is_err());
}

fn write(subject: String, expected: u64) -> carelog_kernel::store::Write {
    carelog_kernel::store::Write {
        subject,
        expected_last_subject_sequence: expected,
        message_id: None,
        headers: Default::default(),
        payload: bytes::Bytes::from(subject_payload()),
    }
}

fn subject_payload() -> Vec<u8> {
    vec![b'x'; 300]
}

#[tokio::test]
async fn concurrent_appends_share_batches_and_each_learns_its_own_sequence() {
    let servers = Servers::start().await;
    let store = carelog::stack::event_store(&servers.nats.url, StoreOptions::default())
        .await
        .expect("store");
    let stream = ContextStream::new("demographics");
    let subjects: Vec<String> = (0..300)
        .map(|_| stream.subject(&uuid::Uuid::now_v7()))
        .collect();
    // One of them claims a history it does not have: only it may fail.
    let appends = subjects.iter().enumerate().map(|(i, subject)| {
        let store = store.clone();
        let expected = if i == 150 { 7 } else { 0 };
        let subject = subject.clone();
        async move {
            (
                subject.clone(),
                store.append(vec![write(subject, expected)]).await,
            )
        }
    });
    let results = futures::future::join_all(appends).await;
    let mut sequences = std::collections::BTreeSet::new();
    for (i, (subject, result)) in results.into_iter().enumerate() {
        if i == 150 {
            assert!(
                matches!(
                    result,
                    Err(carelog_kernel::store::AppendError::Conflict { .. })
                ),
                "{result:?}"
            );
            continue;
        }
        let ack = result.expect("appended");
        assert!(
            sequences.insert(ack.sequence),
            "sequence {} given twice",
            ack.sequence
        );
        let stored = store
            .get(&stream.name, ack.sequence)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(
            stored.subject, subject,
            "the sequence returned is the command's own"
        );
    }
    assert_eq!(sequences.len(), 299);
    let stats = store.group_stats();
    assert!(
        stats.batches.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "some commands shared a batch"
    );
    assert_eq!(store.last_sequence(&stream.name).await.expect("last"), 299);
}
