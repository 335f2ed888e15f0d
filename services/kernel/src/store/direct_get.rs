//! Reads by Direct Get (ADR-31): one request returns a whole subject in
//! batches of up to 1,000 messages, ended by an EOB status; no consumer is
//! created per read.

use async_nats::{HeaderMap, Message, StatusCode};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;

use super::{EventStore, StoreError};
use crate::envelope::StoredMessage;

const BATCH: usize = 1000;

fn api_subject(stream: &str) -> String {
    format!("$JS.API.DIRECT.GET.{stream}")
}

/// Every message on `subject` with a sequence above `after`.
pub(super) async fn subject_after(
    store: &EventStore,
    stream: &str,
    subject: &str,
    after: u64,
) -> Result<Vec<StoredMessage>, StoreError> {
    let mut out = Vec::new();
    let mut from = after + 1;
    loop {
        let request = serde_json::json!({ "seq": from, "next_by_subj": subject, "batch": BATCH });
        let batch = request_batch(store, stream, request).await?;
        let n = batch.len();
        if let Some(last) = batch.last() {
            from = last.stream_sequence + 1;
        }
        out.extend(batch);
        if n < BATCH {
            return Ok(out);
        }
    }
}

/// Up to `batch` messages of the whole stream from sequence `from`.
pub(super) async fn range(
    store: &EventStore,
    stream: &str,
    from: u64,
    batch: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let request = serde_json::json!({ "seq": from.max(1), "batch": batch.min(BATCH) });
    request_batch(store, stream, request).await
}

pub(super) async fn last_by_subject(
    store: &EventStore,
    stream: &str,
    subject: &str,
) -> Result<Option<StoredMessage>, StoreError> {
    single(
        store,
        stream,
        serde_json::json!({ "last_by_subj": subject }),
    )
    .await
}

pub(super) async fn by_sequence(
    store: &EventStore,
    stream: &str,
    sequence: u64,
) -> Result<Option<StoredMessage>, StoreError> {
    single(store, stream, serde_json::json!({ "seq": sequence })).await
}

async fn single(
    store: &EventStore,
    stream: &str,
    request: serde_json::Value,
) -> Result<Option<StoredMessage>, StoreError> {
    let payload = serde_json::to_vec(&request).map_err(|e| StoreError::Malformed(e.to_string()))?;
    let reply = store
        .client()
        .request(api_subject(stream), payload.into())
        .await
        .map_err(|e| StoreError::Request(e.to_string()))?;
    if reply.status == Some(StatusCode::NOT_FOUND) {
        return Ok(None);
    }
    parse(reply).map(Some)
}

async fn request_batch(
    store: &EventStore,
    stream: &str,
    request: serde_json::Value,
) -> Result<Vec<StoredMessage>, StoreError> {
    let client = store.client();
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| StoreError::Request(e.to_string()))?;
    let payload = serde_json::to_vec(&request).map_err(|e| StoreError::Malformed(e.to_string()))?;
    client
        .publish_with_reply(api_subject(stream), inbox, payload.into())
        .await
        .map_err(|e| StoreError::Request(e.to_string()))?;
    let timeout = store.options().timeout;
    let mut out = Vec::new();
    loop {
        let message = tokio::time::timeout(timeout, replies.next())
            .await
            .map_err(|_| StoreError::Timeout(timeout))?
            .ok_or_else(|| StoreError::Request("reply subscription closed".into()))?;
        if message.status == Some(StatusCode::NOT_FOUND) || is_end(&message) {
            return Ok(out);
        }
        out.push(parse(message)?);
    }
}

/// The end-of-batch marker: an empty status message without a sequence.
fn is_end(message: &Message) -> bool {
    message.payload.is_empty()
        && message
            .headers
            .as_ref()
            .is_none_or(|h| h.get(async_nats::header::NATS_SEQUENCE).is_none())
}

fn parse(message: Message) -> Result<StoredMessage, StoreError> {
    if let Some(status) = message.status
        && status != StatusCode::OK
    {
        return Err(StoreError::Request(format!(
            "direct get answered {status}: {}",
            message.description.unwrap_or_default()
        )));
    }
    let headers: HeaderMap = message
        .headers
        .ok_or_else(|| StoreError::Malformed("direct get reply without headers".into()))?;
    let get = |name: &str| {
        headers
            .get(name)
            .map(|v| v.as_str().to_owned())
            .ok_or_else(|| StoreError::Malformed(format!("direct get reply without {name}")))
    };
    let stream_sequence = get("Nats-Sequence")?
        .parse()
        .map_err(|_| StoreError::Malformed("bad Nats-Sequence".into()))?;
    let subject = get("Nats-Subject")?;
    let published = DateTime::parse_from_rfc3339(&get("Nats-Time-Stamp")?)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Malformed("bad Nats-Time-Stamp".into()))?;
    Ok(StoredMessage {
        stream_sequence,
        subject,
        headers,
        payload: message.payload,
        published,
    })
}
