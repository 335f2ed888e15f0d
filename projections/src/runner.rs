//! The projection runner: one durable pull consumer per projection and
//! stream, started from the checkpoint in PostgreSQL (the truth; JetStream's
//! ack floor is only a hint). Each batch is applied with its checkpoint in one
//! transaction and acknowledged after the commit. An event that cannot be
//! applied stops that projector, visibly, and is never skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use carelog_kernel::envelope::{StoredCommit, StoredMessage};
use carelog_kernel::store::EventStore;
use futures::StreamExt as _;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::checkpoint;
use crate::projection::{Projection, ProjectionError};

/// Messages per batch (and per transaction).
pub const BATCH: usize = 500;
/// Longest wait for a batch to fill once its first message arrived.
const LINGER: Duration = Duration::from_millis(2);

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
        self.status.send_modify(|m| {
            m.insert(key.to_owned(), status);
        });
    }

    /// Runs every (projection, stream) until shutdown; returns the first
    /// projector failure, after the others stopped.
    pub async fn run(
        self: Arc<Self>,
        projections: Vec<Arc<dyn Projection>>,
        shutdown: CancellationToken,
    ) -> Result<(), ProjectionError> {
        let mut tasks = tokio::task::JoinSet::new();
        for projection in projections {
            for stream in projection.streams() {
                let (runner, projection, shutdown) =
                    (self.clone(), projection.clone(), shutdown.clone());
                tasks.spawn(async move { runner.run_one(projection, stream, shutdown).await });
            }
        }
        let mut first_error = None;
        while let Some(result) = tasks.join_next().await {
            if let Ok(Err(e)) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn run_one(
        &self,
        projection: Arc<dyn Projection>,
        stream: String,
        shutdown: CancellationToken,
    ) -> Result<(), ProjectionError> {
        let key = format!("{}/{stream}", projection.name());
        self.set(&key, ProjectorStatus::Starting);
        let mut pause = Duration::from_millis(100);
        loop {
            match self
                .consume(projection.as_ref(), &stream, &key, &shutdown)
                .await
            {
                Ok(()) => {
                    self.set(&key, ProjectorStatus::Stopped);
                    return Ok(());
                }
                Err(e) if e.is_transient() && !shutdown.is_cancelled() => {
                    tracing::warn!(projector = %key, error = %e, "projector interrupted; resuming from its checkpoint");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(projector = %key, error = %e, "projector stopped on an event it cannot apply");
                    self.set(
                        &key,
                        ProjectorStatus::Failed {
                            error: e.to_string(),
                        },
                    );
                    return Err(e);
                }
            }
        }
    }

    async fn consume(
        &self,
        projection: &dyn Projection,
        stream: &str,
        key: &str,
        shutdown: &CancellationToken,
    ) -> Result<(), ProjectionError> {
        let store_err = |e: &dyn std::fmt::Display| ProjectionError::Store(e.to_string());
        let start = checkpoint::read(&self.pool, projection.name(), stream).await?;
        self.set(
            key,
            ProjectorStatus::Running {
                last_sequence: start,
            },
        );
        let js_stream = self
            .store
            .jetstream()
            .get_stream(stream)
            .await
            .map_err(|e| store_err(&e))?;
        let durable = format!("carelog-{}", projection.name());
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
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(BATCH)
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await
            .map_err(|e| store_err(&e))?
            .ready_chunks(BATCH);
        loop {
            let chunk = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                chunk = messages.next() => chunk,
            };
            let Some(mut chunk) = chunk else {
                return Err(ProjectionError::Store("consumer closed".into()));
            };
            // Under load, wait a moment for a fuller batch: fewer, larger
            // transactions cost PostgreSQL far less per event.
            let until = tokio::time::Instant::now() + LINGER;
            while chunk.len() < BATCH {
                match tokio::time::timeout_at(until, messages.next()).await {
                    Ok(Some(more)) => chunk.extend(more),
                    Ok(None) | Err(_) => break,
                }
            }
            let mut batch = Vec::with_capacity(chunk.len());
            let mut last = None;
            for message in chunk {
                let message = message.map_err(|e| store_err(&e))?;
                batch.push(stored(&message).map_err(|e| store_err(&e))?);
                last = Some(message);
            }
            let mut tx = self.pool.begin().await?;
            let applied = apply_messages(&mut tx, projection, stream, &batch).await?;
            tx.commit().await?;
            if let Some(last) = last {
                last.ack().await.map_err(|e| store_err(&e))?;
            }
            if let Some(sequence) = applied {
                self.set(
                    key,
                    ProjectorStatus::Running {
                        last_sequence: sequence,
                    },
                );
            }
        }
    }
}

fn stored(message: &async_nats::jetstream::Message) -> Result<StoredMessage, async_nats::Error> {
    let info = message.info()?;
    Ok(StoredMessage {
        stream_sequence: info.stream_sequence,
        subject: message.subject.to_string(),
        headers: message.headers.clone().unwrap_or_default(),
        payload: message.payload.clone(),
        published: info.published,
    })
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
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    let at = checkpoint::lock(tx, projection.name(), stream).await?;
    let fresh: Vec<&StoredMessage> = messages.iter().filter(|m| m.stream_sequence > at).collect();
    let Some(last) = fresh.last().map(|m| m.stream_sequence) else {
        return Ok(None);
    };
    if let Some(first) = fresh.first()
        && first.stream_sequence != at + 1
    {
        return Err(ProjectionError::Unapplicable {
            sequence: first.stream_sequence,
            subject: first.subject.clone(),
            reason: format!("gap in the stream: expected sequence {} next", at + 1),
        });
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
