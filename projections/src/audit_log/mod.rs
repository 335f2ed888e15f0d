//! The verifiable audit log (ADR 0017): one append-only log per context
//! stream, one entry per commit, ordered by stream sequence. An entry is the
//! commit exactly as stored in JetStream, so its Merkle leaf hash is
//! `SHA-256(0x00 || commit bytes)` and its chain hash is `SHA-256(commit bytes)`.
//!
//! Leaf index `i` of log `L` is the `i`-th commit (from 0) of stream
//! `CARELOG_<L>` in stream-sequence order, skipping non-commit messages
//! (claims). A fresh replay of the stream reproduces the log exactly, and the
//! projection needs no state across batches (rebuilds apply partitions at
//! once).
//!
//! The access log (`CARELOG_ACCESS`, ADR 0018) is a log like the others:
//! its entries are the access messages' payloads, as stored (ADR 0025).
//!
//! Besides the projection: signing checkpoints of each log's tree and of the
//! `history` log of those checkpoints, proofs against them ([`sign`]), and
//! [`verify()`], which recomputes every log from JetStream ([`verify`]).

mod sign;
mod verify;

pub use sign::*;
pub use verify::*;

use carelog_kernel::envelope::StoredCommit;
use carelog_kernel::merkle::{Hash, Tree, leaf_hash};
use carelog_kernel::store::ContextStream;
use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use sqlx::PgConnection;

use crate::projection::{Projection, ProjectionError};

/// The logs of the event streams: one per context, whose commits are
/// hash-chained per aggregate (the clinical contexts, and `sharing`, the
/// organisation groups and sharing agreements that decide who may read a
/// record), and `access`, the read-access events (not chained: their
/// tamper evidence is this log alone).
pub const LOGS: [&str; 6] = [
    "demographics",
    "consultations",
    "medications",
    "tasks",
    "sharing",
    carelog_kernel::access::ACCESS,
];

/// Whether a log's commits are hash-chained per aggregate (ADR 0001).
pub fn is_chained(log: &str) -> bool {
    log != carelog_kernel::access::ACCESS
}

/// The projection's name (and its checkpoint key).
pub const NAME: &str = "audit_log";

/// The log of a context stream: `CARELOG_DEMOGRAPHICS` → `demographics`.
pub fn log_of_stream(stream: &str) -> String {
    stream
        .strip_prefix("CARELOG_")
        .unwrap_or(stream)
        .to_ascii_lowercase()
}

/// The stream of a log: `demographics` → `CARELOG_DEMOGRAPHICS`.
pub fn stream_of_log(log: &str) -> Option<String> {
    LOGS.iter()
        .find(|c| **c == log)
        .map(|c| ContextStream::new(c).name)
}

/// The checkpoint origin (signed-note key name) of a log: the deployment's
/// origin with `/<log>` appended, e.g. `carelog.example.nhs.uk/audit/tasks`.
pub fn log_origin(origin: &str, log: &str) -> String {
    format!("{}/{log}", origin.trim_end_matches('/'))
}

#[derive(Debug, Default)]
pub struct AuditLogProjection;

const INSERT: &str = "INSERT INTO audit_log (log, stream_sequence, subject, aggregate_id, aggregate_version, \
    recorded_at, entry, leaf_hash) \
    SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[], \
    $7::bytea[], $8::bytea[]) \
    ON CONFLICT (log, stream_sequence) DO NOTHING";

impl Projection for AuditLogProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn streams(&self) -> Vec<String> {
        LOGS.iter().map(|c| ContextStream::new(c).name).collect()
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_log"]
    }

    fn linger(&self) -> crate::projection::Linger {
        crate::projection::Linger::AUDIT
    }

    fn consumer(&self) -> &'static str {
        crate::projection::AUDIT_CONSUMER
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        stream: &'a str,
        batch: &'a [StoredCommit],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        async move {
            if batch.is_empty() {
                return Ok(());
            }
            let log = log_of_stream(stream);
            let n = batch.len();
            let (mut logs, mut seqs, mut subjects, mut aggregates, mut versions) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let (mut recorded, mut entries, mut leaves) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for stored in batch {
                logs.push(log.clone());
                seqs.push(stored.stream_sequence as i64);
                subjects.push(stored.subject.clone());
                aggregates.push(stored.commit.aggregate_id.clone());
                versions.push(stored.commit.aggregate_version as i64);
                recorded.push(stored.recorded_at());
                entries.push(stored.bytes.to_vec());
                leaves.push(leaf_hash(&stored.bytes).to_vec());
            }
            sqlx::query(INSERT)
                .bind(logs)
                .bind(seqs)
                .bind(subjects)
                .bind(aggregates)
                .bind(versions)
                .bind(recorded)
                .bind(entries)
                .bind(leaves)
                .execute(&mut *tx)
                .await?;
            Ok(())
        }
        .boxed()
    }
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub log: String,
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: Hash,
    pub signed_at: DateTime<Utc>,
    /// The C2SP signed note.
    pub note: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event store: {0}")]
    Store(String),
    #[error(
        "no such audit log {0:?} (one of demographics, consultations, medications, tasks, sharing, access, history)"
    )]
    UnknownLog(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no signed checkpoint of log {0} yet")]
    NoCheckpoint(String),
    #[error("stored data is malformed: {0}")]
    Malformed(String),
}

fn to_hash(bytes: &[u8], what: &str) -> Result<Hash, AuditError> {
    Hash::try_from(bytes).map_err(|_| AuditError::Malformed(format!("{what} is not 32 bytes")))
}

fn check_log(log: &str) -> Result<(), AuditError> {
    if log == HISTORY || stream_of_log(log).is_some() {
        Ok(())
    } else {
        Err(AuditError::UnknownLog(log.to_owned()))
    }
}

/// One row of the PostgreSQL log, in leaf order. In the `history` log the
/// "sequence" is the checkpoint's row id and the entry its signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    pub stream_sequence: u64,
    pub entry: Vec<u8>,
    pub leaf_hash: Vec<u8>,
}

impl LogRow {
    /// A row of `audit_log` from its `stream_sequence, entry, leaf_hash`.
    fn from_columns((stream_sequence, entry, leaf_hash): (i64, Vec<u8>, Vec<u8>)) -> Self {
        Self {
            stream_sequence: stream_sequence as u64,
            entry,
            leaf_hash,
        }
    }
}

/// The whole PostgreSQL log of `log`, in leaf order.
pub async fn rows(db: impl sqlx::PgExecutor<'_>, log: &str) -> Result<Vec<LogRow>, AuditError> {
    if log == HISTORY {
        return Ok(history_entries(db)
            .await?
            .into_iter()
            .map(|(id, note)| LogRow {
                stream_sequence: id,
                leaf_hash: leaf_hash(note.as_bytes()).to_vec(),
                entry: note.into_bytes(),
            })
            .collect());
    }
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT stream_sequence, entry, leaf_hash FROM audit_log WHERE log = $1 ORDER BY stream_sequence",
    )
    .bind(log)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(LogRow::from_columns).collect())
}

/// The log's tree, from the stored leaf hashes (for `history`, from the
/// stored checkpoints' notes).
pub async fn tree(db: impl sqlx::PgExecutor<'_>, log: &str) -> Result<Tree, AuditError> {
    if log == HISTORY {
        let notes = history_entries(db).await?;
        return Ok(Tree::from_entries(notes.iter().map(|(_, n)| n.as_bytes())));
    }
    let leaves: Vec<(Vec<u8>,)> =
        sqlx::query_as("SELECT leaf_hash FROM audit_log WHERE log = $1 ORDER BY stream_sequence")
            .bind(log)
            .fetch_all(db)
            .await?;
    let hashes = leaves
        .iter()
        .map(|(h,)| to_hash(h, "leaf hash"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Tree::from_leaf_hashes(hashes))
}
