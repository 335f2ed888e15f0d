//! What a projection is: a name, the streams it reads, the tables it owns,
//! and `apply`, given the open transaction and a batch of commits.

use std::time::Duration;

use carelog_kernel::envelope::{StoredCommit, StoredMessage};
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
    /// A rebuild was asked for while another ran on the same database.
    #[error("another rebuild is running on this database; rebuild one projection at a time")]
    RebuildRunning,
    /// The connection holding the rebuild's lock was closed while it ran:
    /// nothing was swapped in.
    #[error(
        "the rebuild lost its lock (its database connection was closed); nothing was swapped in: run it again"
    )]
    RebuildLockLost,
}

impl ProjectionError {
    pub fn unapplicable(commit: &StoredCommit, reason: impl std::fmt::Display) -> Self {
        Self::Unapplicable {
            sequence: commit.stream_sequence,
            subject: commit.subject.clone(),
            reason: reason.to_string(),
        }
    }

    /// `message` does not follow on from `at`: a message between them was
    /// not delivered. The streams deny deletes and purges, so every
    /// sequence holds a message and none may be passed over.
    pub fn gap(message: &StoredMessage, at: u64) -> Self {
        Self::Unapplicable {
            sequence: message.stream_sequence,
            subject: message.subject.clone(),
            reason: format!("gap in the stream: expected sequence {} next", at + 1),
        }
    }

    /// The commit PostgreSQL refused to store (see
    /// [`database_unavailable`]): it stops the projector, naming the commit
    /// and PostgreSQL's message.
    pub fn refused(message: &StoredMessage, error: &sqlx::Error) -> Self {
        let reason = match error {
            sqlx::Error::Database(db) => format!(
                "PostgreSQL refused it: {} (SQLSTATE {})",
                db.message(),
                db.code().as_deref().unwrap_or("unknown")
            ),
            other => format!("the read model database failed on it: {other}"),
        };
        Self::Unapplicable {
            sequence: message.stream_sequence,
            subject: message.subject.clone(),
            reason,
        }
    }

    /// An outage (of the event store, or of the database: see
    /// [`database_unavailable`]) is retried; anything else, an event that
    /// cannot be applied or a statement PostgreSQL refuses for what it
    /// holds, stops the projector.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(_) => true,
            Self::Database(e) => database_unavailable(e),
            Self::Unapplicable { .. } | Self::RebuildRunning | Self::RebuildLockLost => false,
        }
    }
}

/// Whether a database error says the database could not be reached or
/// could not serve just then (the connection, a shutdown or restart, a
/// recovery, too many connections, a deadlock or serialisation failure, a
/// standby after a failover), which passes by itself; as opposed to an
/// error the statement or its data caused (SQLSTATE class 22 data
/// exception, 23 integrity constraint violation, 42 syntax or access rule,
/// 54 program limit...), which recurs on every attempt.
pub fn database_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| sqlstate_unavailable(&code)),
        _ => false,
    }
}

/// The SQLSTATEs of [`database_unavailable`]: class 08 connection
/// exception, 40 transaction rollback (40001 serialization failure, 40P01
/// deadlock), 53 insufficient resources, 57 operator intervention (57P01
/// admin shutdown, 57P03 cannot connect now) but not 57014 (a statement
/// cancelled, most often by `statement_timeout`: the same batch would be
/// cancelled again), 58 system error (I/O), 55P03 lock not available,
/// 25006 read-only transaction (a standby answering after a failover).
fn sqlstate_unavailable(code: &str) -> bool {
    (matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58")) && code != "57014")
        || matches!(code, "55P03" | "25006")
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

/// A PostgreSQL error of the given SQLSTATE, as sqlx reports one.
#[cfg(test)]
pub(crate) fn postgres_error(code: &'static str, message: &'static str) -> sqlx::Error {
    #[derive(Debug)]
    struct Postgres {
        code: &'static str,
        message: &'static str,
    }
    impl std::fmt::Display for Postgres {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.message)
        }
    }
    impl std::error::Error for Postgres {}
    impl sqlx::error::DatabaseError for Postgres {
        fn message(&self) -> &str {
            self.message
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.code.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }
    sqlx::Error::Database(Box::new(Postgres { code, message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(code: &'static str) -> ProjectionError {
        ProjectionError::Database(postgres_error(code, "refused"))
    }

    #[test]
    fn an_event_postgresql_refuses_for_its_data_stops_the_projector() {
        // invalid byte sequence (a NUL in text), value too long, unique,
        // not-null and check violations, a row too big
        for code in [
            "22021", "22001", "23505", "23502", "23514", "54000", "42703",
        ] {
            assert!(!database(code).is_transient(), "{code} is retried");
        }
    }

    #[test]
    fn a_database_that_cannot_serve_just_then_is_waited_for() {
        // connection failures, deadlock and serialisation failure, too many
        // connections, shutdown, starting up, I/O, lock timeout, a standby
        for code in [
            "08006", "08001", "40001", "40P01", "53300", "57P01", "57P03", "58030", "55P03",
            "25006",
        ] {
            assert!(database(code).is_transient(), "{code} stops the projector");
        }
        assert!(
            !database("57014").is_transient(),
            "a statement cancelled by its timeout would be cancelled again"
        );
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        ] {
            assert!(ProjectionError::Database(e).is_transient());
        }
        assert!(ProjectionError::Store("no responders".into()).is_transient());
    }

    #[test]
    fn a_refused_commit_is_named_by_its_sequence_with_postgresqls_message() {
        let message = StoredMessage {
            stream_sequence: 42,
            subject: "carelog.demographics.0190".into(),
            headers: async_nats::HeaderMap::new(),
            payload: Default::default(),
            published: chrono::Utc::now(),
        };
        let refused = ProjectionError::refused(
            &message,
            &postgres_error("22021", "invalid byte sequence for encoding \"UTF8\": 0x00"),
        );
        assert!(!refused.is_transient());
        assert_eq!(
            refused.to_string(),
            "cannot apply stream sequence 42 (carelog.demographics.0190): PostgreSQL refused it: \
             invalid byte sequence for encoding \"UTF8\": 0x00 (SQLSTATE 22021)"
        );
    }
}
