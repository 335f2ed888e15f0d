//! What a projection is: a name, the streams it reads, the tables it owns,
//! and `apply`, given the open transaction and a batch of commits.

use std::time::Duration;

use carelog_kernel::envelope::StoredCommit;
use futures::future::BoxFuture;
use sqlx::PgConnection;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProjectionError {
    /// The event cannot be applied: the projector stops on it.
    #[error("cannot apply stream sequence {sequence} ({subject}): {reason}")]
    Unapplicable {
        sequence: u64,
        subject: String,
        reason: String,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event store: {0}")]
    Store(String),
}

impl ProjectionError {
    pub fn unapplicable(commit: &StoredCommit, reason: impl std::fmt::Display) -> Self {
        Self::Unapplicable {
            sequence: commit.stream_sequence,
            subject: commit.subject.clone(),
            reason: reason.to_string(),
        }
    }

    /// A database outage is retried; anything else stops the projector.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Database(e) if !matches!(e, sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. }))
            || matches!(self, Self::Store(_))
    }
}

/// How the runner gathers a batch once its first message has arrived: it
/// fetches what came in the next `idle` and applies the batch if that was
/// nothing; otherwise it fetches once more at `max` (a full batch, or a
/// backlog, goes at once). Under load, fewer and larger transactions and
/// deliveries in bursts cost far less per event; alone, a message waits
/// only `idle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linger {
    pub idle: Duration,
    pub max: Duration,
}

impl Linger {
    /// Read models that queries wait on for their own writes
    /// (`min_sequence`): a lone command's event is applied within about
    /// 2 ms, a stream of them in batches of up to 20 ms.
    pub const READ_MODEL: Linger = Linger {
        idle: Duration::from_millis(2),
        max: Duration::from_millis(20),
    };
    /// The audit projections: they read every stream, so they carry the
    /// most events, and no query waits on them for its own writes.
    pub const AUDIT: Linger = Linger {
        idle: Duration::from_millis(100),
        max: Duration::from_millis(100),
    };
}

/// The consumer the audit projections (`audit_events`, `audit_log`) share:
/// both read every stream, at the same pace.
pub const AUDIT_CONSUMER: &str = "audit";

pub trait Projection: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The streams it reads, e.g. `CARELOG_DEMOGRAPHICS`.
    fn streams(&self) -> Vec<String>;
    /// The tables it owns (rebuilt and swapped together).
    fn tables(&self) -> &'static [&'static str];
    /// How the runner gathers its batches.
    fn linger(&self) -> Linger {
        Linger::READ_MODEL
    }
    /// The durable consumer it reads through (`carelog-<consumer>` on each
    /// of its streams). Projections that name the same consumer share it:
    /// each message is delivered once for all of them and applied to each,
    /// with each one's checkpoint, in one transaction. Every consumer on a
    /// stream costs the stream's writers (the server delivers and tracks
    /// acknowledgements under the stream's lock), so projections that read
    /// the same streams at the same pace share one.
    fn consumer(&self) -> &'static str {
        self.name()
    }
    /// Applies commits (in stream order, all above the checkpoint) inside the
    /// batch's transaction.
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        stream: &'a str,
        batch: &'a [StoredCommit],
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;
}

/// The columns a versions table takes from each commit's envelope (who,
/// why, when, which events), gathered for one `UNNEST` insert.
#[derive(Debug, Default)]
pub(crate) struct EnvelopeColumns {
    pub stream_sequence: Vec<i64>,
    pub event_types: Vec<String>,
    pub actor_user_id: Vec<String>,
    pub actor_display_name: Vec<String>,
    pub actor_role: Vec<String>,
    pub actor_organisation: Vec<String>,
    pub reason: Vec<String>,
    pub recorded_at: Vec<chrono::DateTime<chrono::Utc>>,
}

impl EnvelopeColumns {
    /// One version row's envelope: `stored`'s, with the types of its events
    /// that made the version (stored comma-joined).
    pub fn push(&mut self, stored: &StoredCommit, types: &[String]) {
        let actor = stored.commit.actor.clone().unwrap_or_default();
        self.stream_sequence.push(stored.stream_sequence as i64);
        self.event_types.push(types.join(","));
        self.actor_user_id.push(actor.user_id);
        self.actor_display_name.push(actor.display_name);
        self.actor_role.push(actor.role);
        self.actor_organisation.push(actor.organisation_ods);
        self.reason.push(stored.commit.reason.clone());
        self.recorded_at.push(stored.recorded_at());
    }
}

/// The aggregate id of every commit of a batch, in order; one that is not a
/// UUID makes its commit unapplicable.
pub(crate) fn aggregate_ids(batch: &[StoredCommit]) -> Result<Vec<uuid::Uuid>, ProjectionError> {
    batch
        .iter()
        .map(|stored| {
            uuid::Uuid::parse_str(&stored.commit.aggregate_id)
                .map_err(|e| ProjectionError::unapplicable(stored, e))
        })
        .collect()
}

/// A resource a read-model row holds (its `what`, keyed `id`), decoded;
/// unreadable, it stops the projector.
pub(crate) fn stored_resource<M: prost::Message + Default>(
    what: &str,
    id: uuid::Uuid,
    bytes: &[u8],
) -> Result<M, ProjectionError> {
    M::decode(bytes).map_err(|e| ProjectionError::Unapplicable {
        sequence: 0,
        subject: id.to_string(),
        reason: format!("stored {what} unreadable: {e}"),
    })
}
