//! Reads by Direct Get (ADR-31): one request returns a whole subject in
//! batches of up to 1,000 messages, each ended by an EOB status that counts
//! what is left (`Nats-Num-Pending`); no consumer is created per read.

use async_nats::{HeaderMap, Message, StatusCode};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;

use super::{EventStore, StoreError};
use crate::envelope::StoredMessage;

const BATCH: usize = 1000;
const NUM_PENDING: &str = "Nats-Num-Pending";

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
        let more = batch.more(BATCH);
        let Some(last) = batch.messages.last().map(|m| m.stream_sequence) else {
            return Ok(out);
        };
        from = last + 1;
        out.extend(batch.messages);
        if !more {
            return Ok(out);
        }
    }
}

/// Up to `batch` messages of the whole stream from sequence `from`; fewer
/// only when the stream holds no more. A batch the server ended early (at
/// its byte limit) is followed by the next.
pub(super) async fn range(
    store: &EventStore,
    stream: &str,
    from: u64,
    batch: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let wanted = batch.min(BATCH);
    let mut out = Vec::with_capacity(wanted);
    let mut from = from.max(1);
    while out.len() < wanted {
        let asked = wanted - out.len();
        let request = serde_json::json!({ "seq": from, "batch": asked });
        let got = request_batch(store, stream, request).await?;
        let more = got.more(asked);
        let Some(last) = got.messages.last().map(|m| m.stream_sequence) else {
            break;
        };
        from = last + 1;
        out.extend(got.messages);
        if !more {
            break;
        }
    }
    Ok(out)
}

/// Adds the store's `read_max_bytes`, when set, to a batch request.
fn limit_bytes(store: &EventStore, request: &mut serde_json::Value) {
    if let (Some(max), Some(fields)) = (store.options().read_max_bytes, request.as_object_mut()) {
        fields.insert("max_bytes".into(), max.into());
    }
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
    check_status(&reply)?;
    parse(reply).map(Some)
}

/// One batch of a Direct Get, as the server sent it.
#[derive(Debug)]
struct Batch {
    messages: Vec<StoredMessage>,
    /// What its end-of-batch marker said was left matching the request
    /// (`Nats-Num-Pending`); `None` when there was no marker to say it
    /// (nothing matched at all).
    pending: Option<u64>,
}

impl Batch {
    /// Whether more messages match than this batch carried. nats-server
    /// ends a batch when it has sent `asked` messages, when nothing more
    /// matches, or early, once it has sent its byte limit; its end-of-batch
    /// marker then counts what is left, so only that count says whether
    /// the batch ended the data.
    fn more(&self, asked: usize) -> bool {
        match self.pending {
            Some(pending) => pending > 0,
            // No marker (nothing matched, or a server without batches):
            // only a full batch may have more behind it.
            None => self.messages.len() >= asked,
        }
    }
}

/// Sends one batch request (with the store's byte limit) and gathers its
/// replies.
async fn request_batch(
    store: &EventStore,
    stream: &str,
    mut request: serde_json::Value,
) -> Result<Batch, StoreError> {
    limit_bytes(store, &mut request);
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
    let mut messages = Vec::new();
    loop {
        let message = tokio::time::timeout(timeout, replies.next())
            .await
            .map_err(|_| StoreError::Timeout(timeout))?
            .ok_or_else(|| StoreError::Request("reply subscription closed".into()))?;
        if message.status == Some(StatusCode::NOT_FOUND) {
            return Ok(Batch {
                messages,
                pending: None,
            });
        }
        // Only "204 EOB" ends a batch: any other status would otherwise cut
        // a history short.
        check_status(&message)?;
        if is_end(&message) {
            let pending = num_pending(&message)?;
            return Ok(Batch { messages, pending });
        }
        messages.push(parse(message)?);
    }
}

/// The `Nats-Num-Pending` of an end-of-batch marker: how many messages
/// matching the request are left after the batch.
fn num_pending(message: &Message) -> Result<Option<u64>, StoreError> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(NUM_PENDING))
        .map(|v| {
            v.as_str()
                .parse()
                .map_err(|_| StoreError::Malformed(format!("bad {NUM_PENDING}")))
        })
        .transpose()
}

/// The end-of-batch marker: an empty status message without a sequence.
fn is_end(message: &Message) -> bool {
    message.payload.is_empty()
        && message
            .headers
            .as_ref()
            .is_none_or(|h| h.get(async_nats::header::NATS_SEQUENCE).is_none())
}

/// A reply that is neither a message (200) nor an end of batch (204): a
/// refusal to report (503 while the stream has no leader, 408), never data
/// or the end of a history.
fn check_status(message: &Message) -> Result<(), StoreError> {
    match message.status {
        Some(status) if !matches!(status.as_u16(), 200 | 204) => Err(StoreError::Request(format!(
            "direct get answered {status}: {}",
            message.description.as_deref().unwrap_or_default()
        ))),
        _ => Ok(()),
    }
}

/// A stored message (its status checked by [`check_status`]).
fn parse(message: Message) -> Result<StoredMessage, StoreError> {
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
