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

async fn next_reply(replies: &mut async_nats::Subscriber) -> async_nats::Message {
    use futures::StreamExt as _;
    tokio::time::timeout(std::time::Duration::from_secs(10), replies.next())
        .await
        .expect("a reply")
        .expect("subscribed")
}

#[tokio::test]
async fn reads_go_on_past_a_batch_the_server_ends_at_its_byte_limit() {
    let servers = Servers::start().await;
    let store = carelog::stack::event_store(&servers.nats.url, StoreOptions::default())
        .await
        .expect("store");
    let stream = ContextStream::new("demographics");
    // Given a subject of 40 messages, interleaved with 40 on other subjects
    let mine = stream.subject(&uuid::Uuid::now_v7());
    let mut my_sequences = Vec::new();
    for _ in 0..40 {
        let previous = my_sequences.last().copied().unwrap_or(0);
        let ack = store
            .append(vec![write(mine.clone(), previous)])
            .await
            .expect("append");
        my_sequences.push(ack.sequence);
        let other = stream.subject(&uuid::Uuid::now_v7());
        store.append(vec![write(other, 0)]).await.expect("append");
    }
    assert_eq!(store.last_sequence(&stream.name).await.expect("last"), 80);

    // and nats-server ending a Direct Get batch at its byte limit: one
    // message of the 1,000 asked, then an end-of-batch marker counting
    // what is left
    let client = store.client();
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.expect("subscribe");
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{}", stream.name),
            inbox,
            br#"{"seq":1,"batch":1000,"max_bytes":1}"#.as_slice().into(),
        )
        .await
        .expect("request");
    let first = next_reply(&mut replies).await;
    let header = |m: &async_nats::Message, name: &str| {
        m.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    assert_eq!(header(&first, "Nats-Sequence").as_deref(), Some("1"));
    let end = next_reply(&mut replies).await;
    assert!(end.payload.is_empty(), "the end-of-batch marker follows");
    assert_eq!(header(&end, "Nats-Num-Pending").as_deref(), Some("79"));

    // When the history is read by a store whose every batch the server
    // ends after one message
    let small = carelog::stack::event_store(
        &servers.nats.url,
        StoreOptions {
            read_max_bytes: Some(1),
            ..StoreOptions::default()
        },
    )
    .await
    .expect("store");

    // Then the whole subject is read
    let subject: Vec<u64> = small
        .read_subject(&stream.name, &mine, 0)
        .await
        .expect("read subject")
        .iter()
        .map(|m| m.stream_sequence)
        .collect();
    assert_eq!(subject, my_sequences);
    // and the whole stream, or as much of it as asked
    let all: Vec<u64> = small
        .read_range(&stream.name, 1, 1000)
        .await
        .expect("read range")
        .iter()
        .map(|m| m.stream_sequence)
        .collect();
    assert_eq!(all, (1..=80).collect::<Vec<u64>>());
    let some = small
        .read_range(&stream.name, 11, 30)
        .await
        .expect("read range");
    assert_eq!(
        some.iter().map(|m| m.stream_sequence).collect::<Vec<_>>(),
        (11..=40).collect::<Vec<u64>>()
    );
}
