//! What a projection is: a name, the streams it reads, the tables it owns,
//! and `apply`, given the open transaction and a batch of commits.

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

pub trait Projection: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The streams it reads, e.g. `CARELOG_DEMOGRAPHICS`.
    fn streams(&self) -> Vec<String>;
    /// The tables it owns (rebuilt and swapped together).
    fn tables(&self) -> &'static [&'static str];
    /// Applies commits (in stream order, all above the checkpoint) inside the
    /// batch's transaction.
    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        stream: &'a str,
        batch: &'a [StoredCommit],
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;
}
