//! The projection runner: one durable pull consumer per projection (or group
//! of projections sharing one, `Projection::consumer`) and stream, started
//! from the checkpoint in PostgreSQL (the truth; JetStream's
//! ack floor is only a hint). Each batch is applied with its checkpoint in one
//! transaction and acknowledged after the commit. An event that cannot be
//! applied stops that projector (with the projections sharing its
//! consumer), visibly, and is never skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use carelog_kernel::envelope::{StoredCommit, StoredMessage};
use carelog_kernel::store::EventStore;
use futures::StreamExt as _;
use opentelemetry::trace::TraceContextExt as _;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::checkpoint;
use crate::projection::{Linger, Projection, ProjectionError, database_unavailable};

/// Messages per batch (and per transaction).
pub const BATCH: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectorStatus {
    Starting,
    Running {
        last_sequence: u64,
    },
    /// Stopped on an event it cannot apply: readiness fails until fixed.
    Failed {
        error: String,
    },
    Stopped,
}

/// Runs projections and reports how each stands.
pub struct Runner {
    pool: PgPool,
    store: EventStore,
    status: watch::Sender<BTreeMap<String, ProjectorStatus>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl Runner {
    pub fn new(pool: PgPool, store: EventStore) -> Arc<Self> {
        Arc::new(Self {
            pool,
            store,
            status: watch::Sender::new(BTreeMap::new()),
        })
    }

    /// Every projector's status, keyed "projection/stream".
    pub fn status(&self) -> watch::Receiver<BTreeMap<String, ProjectorStatus>> {
        self.status.subscribe()
    }

    fn set(&self, key: &str, status: ProjectorStatus) {
        let up = matches!(
            status,
            ProjectorStatus::Running { .. } | ProjectorStatus::Starting
        );
        metrics::gauge!("carelog_projector_up", "projector" => key.to_owned()).set(if up {
            1.0
        } else {
            0.0
        });
        self.status.send_modify(|m| {
            m.insert(key.to_owned(), status);
        });
    }

    /// Runs every (projection, stream) until shutdown; returns the first
    /// projector failure, after the others stopped. Projections that name
    /// the same [`Projection::consumer`] read each stream through one
    /// consumer.
    pub async fn run(
        self: Arc<Self>,
        projections: Vec<Arc<dyn Projection>>,
        shutdown: CancellationToken,
    ) -> Result<(), ProjectionError> {
        let mut tasks = tokio::task::JoinSet::new();
        for (stream, group) in groups(projections) {
            let (runner, shutdown) = (self.clone(), shutdown.clone());
            tasks.spawn(async move { runner.run_one(group, stream, shutdown).await });
        }
        let mut first_error = None;
        while let Some(result) = tasks.join_next().await {
            if let Ok(Err(e)) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Sets the status of every projection of `group` on `stream`.
    fn set_all(&self, group: &Group, stream: &str, status: &ProjectorStatus) {
        for projection in &group.members {
            self.set(&status_key(projection.name(), stream), status.clone());
        }
    }

    async fn run_one(
        &self,
        group: Group,
        stream: String,
        shutdown: CancellationToken,
    ) -> Result<(), ProjectionError> {
        let key = status_key(group.consumer, &stream);
        self.set_all(&group, &stream, &ProjectorStatus::Starting);
        // A member that had a consumer of its own before it joined a group
        // left it behind (carelog before ADR 0030): remove it once, or the
        // stream keeps serving it.
        for projection in &group.members {
            if projection.name() != group.consumer {
                let _ = self
                    .store
                    .jetstream()
                    .delete_consumer_from_stream(format!("carelog-{}", projection.name()), &stream)
                    .await;
            }
        }
        let mut backoff = Backoff::default();
        loop {
            match self.consume(&group, &stream, &shutdown, &mut backoff).await {
                Ok(()) => {
                    self.set_all(&group, &stream, &ProjectorStatus::Stopped);
                    return Ok(());
                }
                // Connections closing under a shutdown are not a failure.
                Err(e) if e.is_transient() && shutdown.is_cancelled() => {
                    tracing::debug!(projector = %key, error = %e, "projector interrupted by the shutdown");
                    self.set_all(&group, &stream, &ProjectorStatus::Stopped);
                    return Ok(());
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(projector = %key, error = %e, "projector interrupted; resuming from its checkpoint");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(backoff.next_pause()) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(projector = %key, error = %e, "projector stopped on an event it cannot apply");
                    let failed = ProjectorStatus::Failed {
                        error: e.to_string(),
                    };
                    self.set_all(&group, &stream, &failed);
                    return Err(e);
                }
            }
        }
    }

    async fn consume(
        &self,
        group: &Group,
        stream: &str,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<(), ProjectionError> {
        let store_err = |e: &dyn std::fmt::Display| ProjectionError::Store(e.to_string());
        // The group starts where its furthest-behind member stands; each
        // member skips what is at or below its own checkpoint.
        let mut checkpoints = Vec::with_capacity(group.members.len());
        for projection in &group.members {
            let at = checkpoint::read(&self.pool, projection.name(), stream).await?;
            self.set(
                &status_key(projection.name(), stream),
                ProjectorStatus::Running { last_sequence: at },
            );
            checkpoints.push(at);
        }
        let start = checkpoints.into_iter().min().unwrap_or(0);
        let js_stream = self
            .store
            .jetstream()
            .get_stream(stream)
            .await
            .map_err(|e| store_err(&e))?;
        let durable = format!("carelog-{}", group.consumer);
        // The checkpoint decides where to start: recreate the durable there.
        let _ = js_stream.delete_consumer(&durable).await;
        let consumer = js_stream
            .create_consumer(pull::Config {
                durable_name: Some(durable),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start + 1,
                },
                ack_policy: AckPolicy::All,
                ack_wait: Duration::from_secs(60),
                max_deliver: -1,
                max_ack_pending: 20_000,
                ..Default::default()
            })
            .await
            .map_err(|e| store_err(&e))?;
        let linger = group.linger;
        loop {
            let chunk = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                chunk = gather(&consumer, linger) => chunk.map_err(|e| store_err(&e))?,
            };
            if chunk.is_empty() {
                continue;
            }
            let mut batch = Vec::with_capacity(chunk.len());
            let mut last = None;
            let mut pending = 0;
            for mut message in chunk {
                pending = message.info().map_or(0, |i| i.pending);
                batch.push(stored(&mut message).map_err(|e| store_err(&e))?);
                last = Some(message);
            }
            let started = std::time::Instant::now();
            let span = process_span(group, stream, &batch);
            let applied = async {
                let transaction = tracing::info_span!(
                    "transaction",
                    otel.name = "projector transaction",
                    db.system.name = "postgresql",
                    db.operation.name = "apply batch",
                    carelog.projection = group.names.as_str(),
                    messaging.batch.message_count = batch.len() as i64,
                );
                self.apply_batch(group, stream, &batch)
                    .instrument(transaction)
                    .await
            }
            .instrument(span.clone())
            .await;
            // PostgreSQL refused the batch for what one of its commits
            // holds: apply it one commit at a time, so that the commits
            // before that one are applied and the projector stops naming
            // it.
            let applied = match applied {
                Err(ProjectionError::Database(e)) if !database_unavailable(&e) => {
                    self.apply_one_by_one(group, stream, &batch, e)
                        .instrument(span.clone())
                        .await
                }
                other => other,
            };
            if applied.is_err() {
                span.record("otel.status_code", "ERROR");
            }
            let applied = applied?;
            // Committed: the projector is making progress again, so the
            // next interruption starts its pauses from the shortest.
            backoff.reset();
            if let Some(last) = last {
                last.ack().await.map_err(|e| store_err(&e))?;
            }
            for (projection, at) in group.members.iter().zip(applied) {
                record_batch(projection.name(), stream, &batch, pending, started);
                if let Some(sequence) = at {
                    self.set(
                        &status_key(projection.name(), stream),
                        ProjectorStatus::Running {
                            last_sequence: sequence,
                        },
                    );
                }
            }
        }
    }
}

impl Runner {
    /// Applies `batch` to every member of `group` in one transaction;
    /// returns each member's new checkpoint (None: nothing was new to it).
    async fn apply_batch(
        &self,
        group: &Group,
        stream: &str,
        batch: &[StoredMessage],
    ) -> Result<Vec<Option<u64>>, ProjectionError> {
        let mut tx = self.pool.begin().await?;
        let mut applied = Vec::with_capacity(group.members.len());
        for projection in &group.members {
            applied.push(apply_messages(&mut tx, projection.as_ref(), stream, batch).await?);
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// Applies `batch`, which PostgreSQL refused as a whole with `refused`,
    /// one message per transaction: the first message it refuses on its
    /// own stops the projector, named ([`ProjectionError::refused`]), with
    /// every message before it applied.
    async fn apply_one_by_one(
        &self,
        group: &Group,
        stream: &str,
        batch: &[StoredMessage],
        refused: sqlx::Error,
    ) -> Result<Vec<Option<u64>>, ProjectionError> {
        tracing::warn!(
            projection = group.names.as_str(),
            stream,
            error = %refused,
            "PostgreSQL refused a batch; applying it one commit at a time"
        );
        let mut last = vec![None; group.members.len()];
        for message in batch {
            match self
                .apply_batch(group, stream, std::slice::from_ref(message))
                .await
            {
                Ok(applied) => {
                    for (last, at) in last.iter_mut().zip(applied) {
                        *last = at.or(*last);
                    }
                }
                Err(ProjectionError::Database(e)) if !database_unavailable(&e) => {
                    return Err(ProjectionError::refused(message, &e));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(last)
    }
}

/// The pause before a projector interrupted by a transient error (the
/// connection, the server restarting) resumes from its checkpoint: doubling
/// from [`Backoff::FIRST`] up to [`Backoff::MAX`] while the interruptions
/// follow each other, and back to the first once a batch commits, so a
/// projector that recovered is not left waiting the longest pause at its
/// next interruption, hours later.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    /// The pause to wait now; the one after it is twice as long.
    fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(Self::MAX);
        pause
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

/// How long a pull for the first message of a batch is held by the server.
const FIRST_WAIT: Duration = Duration::from_secs(5);
/// How long a fetch (a pull the server answers at once) may go unanswered.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Gathers one batch (see [`Linger`]). The server holds one pull for the
/// first message; what follows is fetched in bursts (`fetch_times`), each a
/// single pull answered with everything then stored, so that under load the
/// server delivers many messages per wake-up instead of one message per
/// append. Empty when the first pull expired with nothing new.
async fn gather(
    consumer: &PullConsumer,
    linger: Linger,
) -> Result<Vec<async_nats::jetstream::Message>, async_nats::Error> {
    let mut first = consumer
        .batch()
        .max_messages(1)
        .expires(FIRST_WAIT)
        .messages()
        .await?;
    let Some(message) = first.next().await else {
        return Ok(Vec::new());
    };
    let message = message?;
    let behind = message.info().is_ok_and(|i| i.pending > 0);
    let mut chunk = vec![message];
    for at in fetch_times(linger, tokio::time::Instant::now(), behind) {
        if chunk.len() >= BATCH {
            break;
        }
        tokio::time::sleep_until(at).await;
        let burst = fetch(consumer, BATCH - chunk.len()).await?;
        if burst.is_empty() {
            break;
        }
        chunk.extend(burst);
    }
    Ok(chunk)
}

/// When the rest of a batch whose first message came at `start` is
/// fetched: at `idle` (at once when the consumer is `behind`: a backlog
/// goes in full batches), and, if that fetch brought more, the stream is
/// busy: once more at `max`. A fetch that brings nothing ends the batch.
fn fetch_times(
    linger: Linger,
    start: tokio::time::Instant,
    behind: bool,
) -> Vec<tokio::time::Instant> {
    let last = start + linger.max;
    let first = if behind {
        start
    } else {
        (start + linger.idle).min(last)
    };
    if first < last {
        vec![first, last]
    } else {
        vec![first]
    }
}

/// What is stored, up to `max` messages, in one pull the server answers at
/// once. One lost with its connection fails the batch after
/// `FETCH_TIMEOUT` (the runner resumes from its checkpoint).
async fn fetch(
    consumer: &PullConsumer,
    max: usize,
) -> Result<Vec<async_nats::jetstream::Message>, async_nats::Error> {
    let answered = tokio::time::timeout(FETCH_TIMEOUT, async {
        let mut burst = consumer.fetch().max_messages(max).messages().await?;
        let mut got = Vec::new();
        while let Some(message) = burst.next().await {
            got.push(message?);
        }
        Ok::<_, async_nats::Error>(got)
    })
    .await;
    answered.map_err(|_| format!("a fetch was not answered within {FETCH_TIMEOUT:?}"))?
}

/// The key of a projector's status and log lines: "projection/stream".
fn status_key(projection: &str, stream: &str) -> String {
    format!("{projection}/{stream}")
}

/// Projections reading a stream through one consumer.
struct Group {
    consumer: &'static str,
    members: Vec<Arc<dyn Projection>>,
    /// The members' names, comma-separated (spans' `carelog.projection`).
    names: String,
    /// The most patient of the members' (a group is for projections that
    /// wait alike).
    linger: Linger,
}

impl Group {
    fn new(members: Vec<Arc<dyn Projection>>) -> Self {
        let consumer = members.first().map_or("", |p| p.consumer());
        let linger = members
            .iter()
            .map(|p| p.linger())
            .max_by_key(|l| (l.max, l.idle))
            .unwrap_or(Linger::READ_MODEL);
        let names = members
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(",");
        Self {
            consumer,
            members,
            names,
            linger,
        }
    }
}

/// Each stream with the groups of projections that read it, one group per
/// consumer, in the order given.
fn groups(projections: Vec<Arc<dyn Projection>>) -> Vec<(String, Group)> {
    let mut groups: Vec<(String, Vec<Arc<dyn Projection>>)> = Vec::new();
    for projection in projections {
        for stream in projection.streams() {
            let consumer = projection.consumer();
            match groups.iter_mut().find(|(s, members)| {
                *s == stream && members.first().is_some_and(|m| m.consumer() == consumer)
            }) {
                Some((_, members)) => members.push(projection.clone()),
                None => groups.push((stream, vec![projection.clone()])),
            }
        }
    }
    groups
        .into_iter()
        .map(|(stream, members)| (stream, Group::new(members)))
        .collect()
}

/// Links beyond this many are dropped (the SDK keeps 128 per span).
const MAX_LINKS: usize = 127;

/// The `process` span of a batch: parented on the `traceparent` of its first
/// commit (the append's `publish` span), linked to those of the others.
fn process_span(group: &Group, stream: &str, batch: &[StoredMessage]) -> tracing::Span {
    let span = tracing::info_span!(
        "process",
        otel.name = %format!("process {stream}"),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        messaging.system = carelog_kernel::trace::MESSAGING_SYSTEM,
        messaging.operation.name = "process",
        "messaging.operation.type" = "process",
        messaging.destination.name = stream,
        messaging.consumer.group.name = %format!("carelog-{}", group.consumer),
        messaging.batch.message_count = batch.len() as i64,
        messaging.nats.sequence = batch.first().map_or(0, |m| m.stream_sequence as i64),
        carelog.projection = group.names.as_str(),
        carelog.last_sequence = batch.last().map_or(0, |m| m.stream_sequence as i64),
    );
    let mut parented = false;
    let mut links = 0;
    for message in batch {
        let cx = carelog_kernel::trace::extract(&message.headers);
        let remote = cx.span().span_context().clone();
        if !remote.is_valid() {
            continue;
        }
        if !parented {
            if span.set_parent(cx).is_err() {
                // No OpenTelemetry layer: nothing to parent or link.
                break;
            }
            parented = true;
        } else if links < MAX_LINKS {
            span.add_link(remote);
            links += 1;
        }
    }
    span
}

/// Projector metrics after a committed batch. Lag in messages is what the
/// consumer still has pending; lag in seconds is the age of the batch's last
/// message while more are pending (an upper bound of the oldest unapplied
/// message's age), 0 once caught up.
fn record_batch(
    projection: &'static str,
    stream: &str,
    batch: &[StoredMessage],
    pending: u64,
    started: std::time::Instant,
) {
    let labels = [
        ("projection", projection.to_owned()),
        ("stream", stream.to_owned()),
    ];
    metrics::counter!("carelog_projector_messages_total", &labels).increment(batch.len() as u64);
    metrics::histogram!("carelog_projector_batch_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    metrics::gauge!("carelog_projector_lag_messages", &labels).set(pending as f64);
    let age = match batch.last() {
        Some(last) if pending > 0 => (chrono::Utc::now() - last.published)
            .to_std()
            .map_or(0.0, |d| d.as_secs_f64()),
        _ => 0.0,
    };
    metrics::gauge!("carelog_projector_lag_seconds", &labels).set(age);
    if let Some(last) = batch.last() {
        metrics::gauge!("carelog_projector_position", &labels).set(last.stream_sequence as f64);
    }
}

/// The stored message a delivery carries. Its headers are moved out (the
/// delivery is kept only to be acknowledged).
fn stored(
    message: &mut async_nats::jetstream::Message,
) -> Result<StoredMessage, async_nats::Error> {
    let info = message.info()?;
    let (stream_sequence, published) = (info.stream_sequence, info.published);
    Ok(StoredMessage {
        stream_sequence,
        subject: message.subject.to_string(),
        headers: message.message.headers.take().unwrap_or_default(),
        payload: message.payload.clone(),
        published,
    })
}

/// Takes the projection's lock for the rest of `tx`: the live projector
/// applies each batch under it, and a rebuild reads the tail of the
/// stream and swaps its tables in under it.
pub(crate) async fn lock_projection(
    tx: &mut PgConnection,
    projection: &str,
) -> Result<(), ProjectionError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(projection)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Applies messages above the checkpoint and advances it, inside `tx`.
/// Returns the new checkpoint when anything was new. Shared by the live
/// projector and rebuilds, so both produce the same rows.
pub async fn apply_messages(
    tx: &mut PgConnection,
    projection: &dyn Projection,
    stream: &str,
    messages: &[StoredMessage],
) -> Result<Option<u64>, ProjectionError> {
    // Read models are rebuilt from JetStream and the checkpoint commits with
    // the rows, so a crash can only lose work that is then redone: no WAL
    // flush is awaited (the disk's fsyncs belong to JetStream).
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    lock_projection(tx, projection.name()).await?;
    let at = checkpoint::lock(tx, projection.name(), stream).await?;
    let fresh: Vec<&StoredMessage> = messages.iter().filter(|m| m.stream_sequence > at).collect();
    let Some(last) = fresh.last().map(|m| m.stream_sequence) else {
        return Ok(None);
    };
    // Each message follows on from the one before: a batch missing one
    // would otherwise move the checkpoint (and the ack) past it.
    let mut expected = at;
    for message in &fresh {
        if message.stream_sequence != expected + 1 {
            return Err(ProjectionError::gap(message, expected));
        }
        expected = message.stream_sequence;
    }
    let mut commits = Vec::with_capacity(fresh.len());
    for message in fresh.into_iter().filter(|m| m.is_commit()) {
        let commit = StoredCommit::decode(message).map_err(|e| ProjectionError::Unapplicable {
            sequence: message.stream_sequence,
            subject: message.subject.clone(),
            reason: format!("not a commit: {e}"),
        })?;
        commits.push(commit);
    }
    projection.apply(tx, stream, &commits).await?;
    checkpoint::advance(tx, projection.name(), stream, last).await?;
    Ok(Some(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_projector_waits_longer_each_time_up_to_five_seconds() {
        let mut backoff = Backoff::default();
        let pauses: Vec<u64> = (0..9)
            .map(|_| backoff.next_pause().as_millis() as u64)
            .collect();
        assert_eq!(
            pauses,
            [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000]
        );
    }

    #[test]
    fn a_projector_that_committed_since_its_last_interruption_waits_the_shortest_pause_again() {
        let mut backoff = Backoff::default();
        for _ in 0..8 {
            backoff.next_pause();
        }
        assert_eq!(backoff.next_pause(), Backoff::MAX);
        backoff.reset();
        assert_eq!(backoff.next_pause(), Duration::from_millis(100));
        assert_eq!(backoff.next_pause(), Duration::from_millis(200));
    }

    #[test]
    fn the_rest_of_a_batch_is_fetched_at_idle_and_on_a_busy_stream_once_more_at_max() {
        let start = tokio::time::Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(
            fetch_times(Linger::READ_MODEL, start, false),
            [start + ms(2), start + ms(20)]
        );
    }

    #[test]
    fn a_consumer_behind_the_stream_fetches_at_once() {
        let start = tokio::time::Instant::now();
        assert_eq!(
            fetch_times(Linger::READ_MODEL, start, true),
            [start, start + Duration::from_millis(20)]
        );
    }

    #[test]
    fn the_audit_projections_fetch_once_when_their_idle_is_their_max() {
        let start = tokio::time::Instant::now();
        assert_eq!(
            fetch_times(Linger::AUDIT, start, false),
            [start + Duration::from_millis(100)]
        );
    }

    #[test]
    fn the_audit_projections_read_each_stream_through_one_consumer_and_the_read_models_alone() {
        let groups = groups(crate::all());
        let on = |stream: &str| -> Vec<(&'static str, String)> {
            groups
                .iter()
                .filter(|(s, _)| s == stream)
                .map(|(_, g)| (g.consumer, g.names.clone()))
                .collect()
        };
        assert_eq!(
            on("CARELOG_DEMOGRAPHICS"),
            [
                ("patients", "patients".to_owned()),
                ("audit", "audit_events,audit_log".to_owned())
            ]
        );
        assert_eq!(
            on("CARELOG_ACCESS"),
            [("audit", "audit_events,audit_log".to_owned())]
        );
        let audit = groups
            .iter()
            .find(|(_, g)| g.consumer == "audit")
            .map(|(_, g)| g.linger);
        assert_eq!(audit, Some(Linger::AUDIT));
    }
}
