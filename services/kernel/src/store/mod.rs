//! The JetStream event store: one immutable stream per context, guarded
//! appends (single messages or atomic batches), and reads by batched Direct
//! Get. Every append in carelog goes through `EventStore::append`.

mod config;
mod direct_get;
mod group;
mod publish;

use std::time::Duration;

use async_nats::jetstream;
use thiserror::Error;

pub use config::{ContextStream, StreamCheckError, loggable_subject, required_config};
pub use group::GroupStats;
pub use publish::{Ack, AppendError, Write};

use tracing::Instrument as _;

use crate::envelope::StoredMessage;

/// Oldest nats-server carelog runs on (atomic batches, batched direct get,
/// the post-Jepsen durability fixes).
pub const MIN_SERVER: (i64, i64, i64) = (2, 14, 0);

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("nats-server {found} is too old: carelog needs 2.14.0 or newer with JetStream")]
    ServerTooOld { found: String },
    #[error(transparent)]
    WeakStream(#[from] StreamCheckError),
    #[error("JetStream request failed: {0}")]
    Request(String),
    #[error("JetStream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("malformed JetStream reply: {0}")]
    Malformed(String),
}

/// Options of the event store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Replicas of every stream (3 in production).
    pub replicas: usize,
    /// How long to wait for a JetStream reply.
    pub timeout: Duration,
    /// The deduplication window of `request_id`s.
    pub duplicate_window: Duration,
    /// The most bytes nats-server may send in one batch of a Direct Get
    /// read (`None`: the server's own limit, its `max_pending`). A batch
    /// ended at this limit is followed by the next one, so reads return the
    /// same either way; tests set it small to make the server end batches
    /// early.
    pub read_max_bytes: Option<usize>,
    /// How long `connect` keeps trying a server that does not answer yet
    /// (a pod started before NATS); zero: one attempt.
    pub connect_wait: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            replicas: 1,
            timeout: Duration::from_secs(5),
            duplicate_window: Duration::from_secs(10 * 60),
            read_max_bytes: None,
            connect_wait: Duration::ZERO,
        }
    }
}

/// Tries `attempt` until it succeeds or `wait` has passed, backing off
/// from a quarter second to five, and logging each failure with `what`:
/// a process started before its server waits for it rather than exiting.
/// Only an error `unreachable` says is the server not answering yet is
/// tried again; any other (credentials, TLS, a malformed URL) is a
/// configuration error, returned at once.
pub async fn until_reachable<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
    what: &str,
    wait: Duration,
    unreachable: impl Fn(&E) -> bool,
    mut attempt: impl FnMut() -> F,
) -> Result<T, E> {
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(e) if unreachable(&e) && started.elapsed() + delay < wait => {
                tracing::warn!(what, error = %e, retry_in = ?delay, "not reachable yet; waiting");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The `publish` span of an append. Its destination is the aggregate's
/// subject (a patient UUID is a surrogate id); claim subjects, derived from
/// identifiers such as the NHS number, are never recorded.
fn publish_span(writes: &[Write]) -> tracing::Span {
    let aggregate = writes
        .iter()
        .map(|w| w.subject.as_str())
        .find(|s| !config::is_claim_subject(s))
        .unwrap_or_default();
    let stream = config::subject_prefix(aggregate);
    tracing::info_span!(
        "publish",
        otel.name = %format!("publish {stream}"),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        "error.type" = tracing::field::Empty,
        messaging.system = crate::trace::MESSAGING_SYSTEM,
        messaging.operation.name = "publish",
        "messaging.operation.type" = "send",
        messaging.destination.name = aggregate,
        messaging.batch.message_count = writes.len() as i64,
        messaging.nats.sequence = tracing::field::Empty,
    )
}

fn append_error_type(e: &AppendError) -> &'static str {
    match e {
        AppendError::Conflict { .. } => "conflict",
        AppendError::InProcess => "in_process",
        AppendError::NoStream(_) => "no_stream",
        AppendError::Unavailable(_) => "unavailable",
        AppendError::Refused { .. } => "refused",
    }
}

/// A connection to JetStream used as carelog's event store.
#[derive(Clone, Debug)]
pub struct EventStore {
    client: async_nats::Client,
    js: jetstream::Context,
    options: StoreOptions,
    committers: std::sync::Arc<group::Committers>,
}

/// `url` as it may be printed or logged: any user and password in it
/// (`nats://user:secret@host:4222`) replaced by `***`.
pub fn redacted_url(url: &str) -> String {
    // A list of servers, each with or without its scheme.
    url.split(',')
        .map(|server| {
            let start = server.find("://").map_or(0, |scheme| scheme + 3);
            match server.rfind('@') {
                Some(at) if at >= start => {
                    format!("{}***{}", &server[..start], &server[at..])
                }
                _ => server.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl EventStore {
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let shown = redacted_url(url);
        let unreachable = |e: &async_nats::ConnectError| {
            use async_nats::ConnectErrorKind as K;
            matches!(e.kind(), K::Io | K::TimedOut | K::Dns)
        };
        let client = until_reachable(
            &format!("NATS at {shown}"),
            options.connect_wait,
            unreachable,
            || {
                async_nats::ConnectOptions::new()
                    .name("carelog")
                    .request_timeout(Some(options.timeout))
                    .connect(url)
            },
        )
        .await
        .map_err(|e| StoreError::Connect {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        Self::from_client(client, options)
    }

    pub fn from_client(
        client: async_nats::Client,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let (major, minor, patch) = MIN_SERVER;
        if !client.is_server_compatible(major, minor, patch) {
            return Err(StoreError::ServerTooOld {
                found: client.server_info().version,
            });
        }
        let mut js = jetstream::new(client.clone());
        js.set_timeout(options.timeout);
        Ok(Self {
            client,
            js,
            options,
            committers: Default::default(),
        })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Creates the context's stream with the immutable configuration, or
    /// checks an existing one and names the first setting that is weaker.
    pub async fn ensure_stream(&self, stream: &ContextStream) -> Result<(), StoreError> {
        let wanted = required_config(stream, &self.options);
        match self.js.get_stream(&stream.name).await {
            Ok(mut existing) => {
                let info = existing
                    .info()
                    .await
                    .map_err(|e| StoreError::Request(e.to_string()))?;
                config::check(&info.config, &wanted)?;
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(ref j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                self.js
                    .create_stream(wanted)
                    .await
                    .map_err(|e| StoreError::Request(e.to_string()))?;
                tracing::info!(stream = %stream.name, "created stream");
                Ok(())
            }
            Err(e) => Err(StoreError::Request(e.to_string())),
        }
    }

    /// Every message on `subject` after `after_sequence`, in order.
    pub async fn read_subject(
        &self,
        stream: &str,
        subject: &str,
        after_sequence: u64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        direct_get::subject_after(self, stream, subject, after_sequence).await
    }

    /// Up to `batch` (at most 1,000) messages of the stream from `from`;
    /// fewer only when the stream holds no more.
    pub async fn read_range(
        &self,
        stream: &str,
        from: u64,
        batch: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        direct_get::range(self, stream, from, batch).await
    }

    /// The last message on a subject, if any.
    pub async fn last_on_subject(
        &self,
        stream: &str,
        subject: &str,
    ) -> Result<Option<StoredMessage>, StoreError> {
        direct_get::last_by_subject(self, stream, subject).await
    }

    /// The message at a stream sequence, if any.
    pub async fn get(
        &self,
        stream: &str,
        sequence: u64,
    ) -> Result<Option<StoredMessage>, StoreError> {
        direct_get::by_sequence(self, stream, sequence).await
    }

    /// The stream's last sequence (0 when empty).
    pub async fn last_sequence(&self, stream: &str) -> Result<u64, StoreError> {
        let mut s = self
            .js
            .get_stream(stream)
            .await
            .map_err(|e| StoreError::Request(e.to_string()))?;
        let info = s
            .info()
            .await
            .map_err(|e| StoreError::Request(e.to_string()))?;
        Ok(info.state.last_sequence)
    }

    /// Appends one write, or several as one atomic batch: all stored or
    /// none. Every write is guarded by its expected last subject sequence.
    /// Concurrent appends share batches (group commit, see `group`).
    ///
    /// Each append is a `publish` span (messaging.system `nats`), and its
    /// context replaces the `traceparent` header of every write, so a
    /// projector parents its work on it.
    pub async fn append(&self, mut writes: Vec<Write>) -> Result<Ack, AppendError> {
        let span = publish_span(&writes);
        for write in &mut writes {
            crate::trace::inject(&span, &mut write.headers);
        }
        let result = self
            .committers
            .append(&self.publisher(), writes)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(ack) => {
                span.record(
                    "messaging.nats.sequence",
                    i64::try_from(ack.sequence).unwrap_or(i64::MAX),
                );
            }
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", append_error_type(e));
            }
        }
        result
    }

    /// Appends without group commit: one publish (or atomic batch) per call.
    /// The benchmark's raw ceiling uses it.
    pub async fn append_alone(&self, writes: Vec<Write>) -> Result<Ack, AppendError> {
        publish::append(&self.publisher(), writes).await
    }

    /// How often concurrent commands shared a batch.
    pub fn group_stats(&self) -> &GroupStats {
        &self.committers.stats
    }

    fn publisher(&self) -> publish::Publisher {
        publish::Publisher {
            client: self.client.clone(),
            timeout: self.options.timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn a_nats_url_is_printed_without_its_credentials() {
        assert_eq!(
            redacted_url("nats://carelog:s3cret@nats.carelog:4222"),
            "nats://***@nats.carelog:4222"
        );
        assert_eq!(redacted_url("tls://token@nats:4222"), "tls://***@nats:4222");
        assert_eq!(
            redacted_url("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
        // without a scheme, and a list of servers
        assert_eq!(redacted_url("carelog:s3cret@nats:4222"), "***@nats:4222");
        assert_eq!(
            redacted_url("nats://a:x@n1:4222,nats://a:x@n2:4222"),
            "nats://***@n1:4222,nats://***@n2:4222"
        );
    }
}
