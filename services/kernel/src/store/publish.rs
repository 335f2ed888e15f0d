//! Guarded publishes: one message, or an atomic batch (ADR-50) when a
//! command changes several subjects at once. Replies are parsed here so that
//! every JetStream error code is seen (wrong last sequence 10071, in-flight
//! 10164, leader not ready 10163, duplicate in process 10158).

use async_nats::{HeaderMap, Request};
use bytes::Bytes;
use serde::Deserialize;
use thiserror::Error;

/// What publishing needs: the connection and how long to wait.
#[derive(Clone, Debug)]
pub(super) struct Publisher {
    pub client: async_nats::Client,
    pub timeout: std::time::Duration,
}

/// One guarded message to append.
#[derive(Debug, Clone)]
pub struct Write {
    pub subject: String,
    /// The subject's last sequence the decision was made on (0: empty).
    pub expected_last_subject_sequence: u64,
    /// `Nats-Msg-Id`, derived from the client's request id.
    pub message_id: Option<String>,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

/// What JetStream acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Sequence of the last message written.
    pub sequence: u64,
    /// The message id was seen before: nothing was appended and `sequence`
    /// is the original's.
    pub duplicate: bool,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// Someone else wrote the subject first: reload and decide again.
    #[error("wrong last sequence on {subject}")]
    Conflict { subject: String },
    /// The same message id is still being stored: resend it.
    #[error("duplicate message id is in process")]
    InProcess,
    #[error("no stream answers for {0}")]
    NoStream(String),
    #[error("JetStream unavailable: {0}")]
    Unavailable(String),
    #[error("JetStream refused the append (error {code}): {description}")]
    Refused { code: u64, description: String },
}

impl AppendError {
    /// Whether the append failed for want of JetStream (no stream answering,
    /// the connection, or a refusal for resources or availability: storage,
    /// memory or account limits reached, the cluster or the stream
    /// unavailable, too many requests at once), so that it may succeed
    /// later; as opposed to a refusal of the append itself.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::NoStream(_) | Self::Unavailable(_) => true,
            Self::Refused { code, .. } => UNAVAILABLE.contains(code),
            Self::Conflict { .. } | Self::InProcess => false,
        }
    }
}

/// JetStream's refusals for resources or availability (nats-server's
/// errors.json): account resources exceeded (10002), cluster results
/// incomplete (10004), cluster temporarily unavailable (10008), not the
/// leader (10009), insufficient resources (10023), memory exhausted
/// (10028), JetStream not enabled for the account (10039), storage
/// exhausted (10047), expected stream sequence mismatch while clustered
/// (10063), JetStream not enabled (10076), storing failed (10077), stream
/// offline (10118, 10194), too many requests (10167), too many atomic
/// batches in flight (10210).
const UNAVAILABLE: [u64; 15] = [
    10002, 10004, 10008, 10009, 10023, 10028, 10039, 10047, 10063, 10076, 10077, 10118, 10167,
    10194, 10210,
];

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    duplicate: bool,
}

const WRONG_LAST_SEQUENCE: u64 = 10071;
const WRONG_LAST_SEQUENCE_IN_FLIGHT: u64 = 10164;
const EXPECTED_SEQUENCE_NOT_READY: u64 = 10163;
const DUPLICATE_IN_PROCESS: u64 = 10158;
/// An atomic batch holding a message id seen before: treated as a race, so
/// the executor reloads and finds the earlier commit of the request.
const BATCH_DUPLICATE_MESSAGE_ID: u64 = 10201;

pub(super) async fn append(store: &Publisher, writes: Vec<Write>) -> Result<Ack, AppendError> {
    let n = writes.len();
    // Several writes go as one atomic batch (ADR-50), named by this id.
    let batch_id = (n > 1).then(|| uuid::Uuid::new_v4().simple().to_string());
    let mut last = None;
    for (i, write) in writes.into_iter().enumerate() {
        let mut headers = write.headers;
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            write.expected_last_subject_sequence.to_string().as_str(),
        );
        if let Some(id) = &write.message_id {
            headers.insert("Nats-Msg-Id", id.as_str());
        }
        if let Some(batch_id) = &batch_id {
            headers.insert("Nats-Batch-Id", batch_id.as_str());
            headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
            if i + 1 == n {
                headers.insert("Nats-Batch-Commit", "1");
            }
        }
        let first_of_batch = n > 1 && i == 0;
        if i + 1 == n || first_of_batch {
            let reply = request(store, &write.subject, headers, write.payload).await?;
            if first_of_batch && reply.is_empty() {
                continue;
            }
            last = Some(parse_reply(&write.subject, &reply)?);
        } else {
            store
                .client
                .publish_with_headers(write.subject, headers, write.payload)
                .await
                .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        }
    }
    last.ok_or_else(|| AppendError::Refused {
        code: 0,
        description: "nothing to append".into(),
    })
}

async fn request(
    store: &Publisher,
    subject: &str,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<Bytes, AppendError> {
    let request = Request::new()
        .headers(headers)
        .payload(payload)
        .timeout(Some(store.timeout));
    match store.client.send_request(subject.to_owned(), request).await {
        Ok(message) => Ok(message.payload),
        Err(e) => match e.kind() {
            async_nats::RequestErrorKind::NoResponders => {
                Err(AppendError::NoStream(subject.to_owned()))
            }
            _ => Err(AppendError::Unavailable(e.to_string())),
        },
    }
}

fn parse_reply(subject: &str, payload: &[u8]) -> Result<Ack, AppendError> {
    let reply: Reply = serde_json::from_slice(payload).map_err(|e| AppendError::Refused {
        code: 0,
        description: format!("malformed reply: {e}"),
    })?;
    match reply.error {
        None => Ok(Ack {
            sequence: reply.seq,
            duplicate: reply.duplicate,
        }),
        Some(error) => Err(match error.err_code {
            WRONG_LAST_SEQUENCE
            | WRONG_LAST_SEQUENCE_IN_FLIGHT
            | EXPECTED_SEQUENCE_NOT_READY
            | BATCH_DUPLICATE_MESSAGE_ID => AppendError::Conflict {
                subject: subject.to_owned(),
            },
            DUPLICATE_IN_PROCESS => AppendError::InProcess,
            code => AppendError::Refused {
                code,
                description: error.description,
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jetstream_error_codes_are_classified() {
        let conflict =
            br#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 7"}}"#;
        assert!(matches!(
            parse_reply("s", conflict),
            Err(AppendError::Conflict { .. })
        ));
        let inflight =
            br#"{"error":{"code":400,"err_code":10164,"description":"wrong last sequence"}}"#;
        assert!(matches!(
            parse_reply("s", inflight),
            Err(AppendError::Conflict { .. })
        ));
        let dup = br#"{"stream":"S","seq":9,"duplicate":true}"#;
        assert_eq!(
            parse_reply("s", dup),
            Ok(Ack {
                sequence: 9,
                duplicate: true
            })
        );
    }

    #[test]
    fn a_refusal_for_resources_may_succeed_later_and_any_other_refusal_will_not() {
        let resources =
            br#"{"error":{"code":503,"err_code":10023,"description":"insufficient resources"}}"#;
        let refused = parse_reply("s", resources).expect_err("refused");
        assert!(matches!(refused, AppendError::Refused { code: 10023, .. }));
        assert!(refused.is_unavailable());
        let storage = br#"{"error":{"code":500,"err_code":10047,"description":"insufficient storage resources available"}}"#;
        assert!(
            parse_reply("s", storage)
                .expect_err("refused")
                .is_unavailable()
        );
        let too_large =
            br#"{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}"#;
        assert!(
            !parse_reply("s", too_large)
                .expect_err("refused")
                .is_unavailable()
        );
        assert!(AppendError::Unavailable("timed out".into()).is_unavailable());
        assert!(
            !AppendError::Conflict {
                subject: "s".into()
            }
            .is_unavailable()
        );
    }
}
