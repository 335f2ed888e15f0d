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
