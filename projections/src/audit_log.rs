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
//! Besides the projection: signing checkpoints of each log's tree, proofs
//! against them, and [`verify`], which recomputes every log from JetStream.

use std::collections::HashMap;

use carelog_kernel::envelope::{GENESIS, StoredCommit};
use carelog_kernel::merkle::checkpoint::{Checkpoint, SigningKey, VerifyingKey};
use carelog_kernel::merkle::proof::{ConsistencyProof, InclusionProof, ProofDocument};
use carelog_kernel::merkle::{Hash, Tree, leaf_hash};
use carelog_kernel::store::{ContextStream, EventStore};
use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool};

use crate::projection::{Projection, ProjectionError};

/// The logs: one per clinical context, whose commits are hash-chained per
/// aggregate. Read-access events (`CARELOG_ACCESS`, ADR 0018) are not
/// chained and are not yet part of a Merkle log.
const CONTEXTS: [&str; 4] = ["demographics", "consultations", "medications", "tasks"];

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
    CONTEXTS
        .iter()
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
        CONTEXTS
            .iter()
            .map(|c| ContextStream::new(c).name)
            .collect()
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_log"]
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
    #[error("no such audit log {0:?} (one of demographics, consultations, medications, tasks)")]
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
    stream_of_log(log)
        .map(|_| ())
        .ok_or_else(|| AuditError::UnknownLog(log.to_owned()))
}

/// One row of the PostgreSQL log, in leaf order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    pub stream_sequence: u64,
    pub entry: Vec<u8>,
    pub leaf_hash: Vec<u8>,
}

/// The whole PostgreSQL log of `log`, in leaf order.
pub async fn rows(db: impl sqlx::PgExecutor<'_>, log: &str) -> Result<Vec<LogRow>, AuditError> {
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT stream_sequence, entry, leaf_hash FROM audit_log WHERE log = $1 ORDER BY stream_sequence",
    )
    .bind(log)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(s, entry, leaf_hash)| LogRow {
            stream_sequence: s as u64,
            entry,
            leaf_hash,
        })
        .collect())
}

/// The log's tree, from the stored leaf hashes.
pub async fn tree(pool: &PgPool, log: &str) -> Result<Tree, AuditError> {
    let leaves: Vec<(Vec<u8>,)> =
        sqlx::query_as("SELECT leaf_hash FROM audit_log WHERE log = $1 ORDER BY stream_sequence")
            .bind(log)
            .fetch_all(pool)
            .await?;
    let hashes = leaves
        .iter()
        .map(|(h,)| to_hash(h, "leaf hash"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Tree::from_leaf_hashes(hashes))
}

type CheckpointRow = (String, String, i64, Vec<u8>, DateTime<Utc>, String);

fn stored_checkpoint(r: CheckpointRow) -> Result<StoredCheckpoint, AuditError> {
    Ok(StoredCheckpoint {
        log: r.0,
        origin: r.1,
        tree_size: r.2 as u64,
        root_hash: to_hash(&r.3, "root hash")?,
        signed_at: r.4,
        note: r.5,
    })
}

/// The latest signed checkpoint of `log` (the largest, then the newest).
pub async fn latest_checkpoint(
    db: impl sqlx::PgExecutor<'_>,
    log: &str,
) -> Result<Option<StoredCheckpoint>, AuditError> {
    check_log(log)?;
    let row: Option<CheckpointRow> = sqlx::query_as(
        "SELECT log, origin, tree_size, root_hash, signed_at, note FROM audit_checkpoints \
         WHERE log = $1 ORDER BY tree_size DESC, id DESC LIMIT 1",
    )
    .bind(log)
    .fetch_optional(db)
    .await?;
    row.map(stored_checkpoint).transpose()
}

/// A signed checkpoint of `log` at exactly `size`, if one was made.
pub async fn checkpoint_at(
    pool: &PgPool,
    log: &str,
    size: u64,
) -> Result<Option<StoredCheckpoint>, AuditError> {
    let row: Option<CheckpointRow> = sqlx::query_as(
        "SELECT log, origin, tree_size, root_hash, signed_at, note FROM audit_checkpoints \
         WHERE log = $1 AND tree_size = $2 ORDER BY id DESC LIMIT 1",
    )
    .bind(log)
    .bind(size as i64)
    .fetch_optional(pool)
    .await?;
    row.map(stored_checkpoint).transpose()
}

/// Signs a checkpoint of `log`'s current tree and stores it. Unless
/// `force`, nothing is signed when the log has not grown since the latest
/// checkpoint, or is empty (`None`).
pub async fn sign_checkpoint(
    pool: &PgPool,
    log: &str,
    origin: &str,
    key: &SigningKey,
    force: bool,
) -> Result<Option<StoredCheckpoint>, AuditError> {
    check_log(log)?;
    let latest = latest_checkpoint(pool, log).await?;
    let tree = tree(pool, log).await?;
    // "Grew" counts from an empty log: an empty log is signed only on demand.
    if !force && tree.len() <= latest.as_ref().map_or(0, |c| c.tree_size) {
        return Ok(None);
    }
    let origin = log_origin(origin, log);
    let cp = Checkpoint::new(&origin, tree.len(), tree.root(), Utc::now())
        .map_err(|e| AuditError::Invalid(e.to_string()))?;
    let note = cp.sign(key);
    sqlx::query(
        "INSERT INTO audit_checkpoints (log, origin, tree_size, root_hash, signed_at, note) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(log)
    .bind(&origin)
    .bind(cp.size as i64)
    .bind(cp.root.to_vec())
    .bind(cp.time)
    .bind(&note)
    .execute(pool)
    .await?;
    Ok(Some(StoredCheckpoint {
        log: log.to_owned(),
        origin,
        tree_size: cp.size,
        root_hash: cp.root,
        signed_at: cp.time,
        note,
    }))
}

/// Signs every log that grew (or every log, when `force`).
pub async fn sign_all(
    pool: &PgPool,
    origin: &str,
    key: &SigningKey,
    force: bool,
) -> Result<Vec<StoredCheckpoint>, AuditError> {
    let mut signed = Vec::new();
    for log in CONTEXTS {
        if let Some(cp) = sign_checkpoint(pool, log, origin, key, force).await? {
            signed.push(cp);
        }
    }
    Ok(signed)
}

/// The inclusion proof of entry `index` of `log` in its tree of `size`
/// entries, with the leaf hash, and the entry's bytes when `with_entry`
/// (an entry is a whole commit: it holds patient data).
pub async fn inclusion_proof(
    pool: &PgPool,
    log: &str,
    index: u64,
    size: u64,
    with_entry: bool,
) -> Result<ProofDocument, AuditError> {
    check_log(log)?;
    let rows = rows(pool, log).await?;
    let tree = Tree::from_leaf_hashes(
        rows.iter()
            .map(|r| to_hash(&r.leaf_hash, "leaf hash"))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let path = tree
        .inclusion_proof(index, size)
        .map_err(|e| AuditError::Invalid(e.to_string()))?;
    let row = &rows[index as usize];
    let leaf = to_hash(&row.leaf_hash, "leaf hash")?;
    let proof = InclusionProof::new(index, size, &leaf, &path);
    Ok(ProofDocument::Inclusion(if with_entry {
        proof.with_entry(&row.entry)
    } else {
        proof
    }))
}

/// The consistency proof of `log` from `first` to `second` entries.
pub async fn consistency_proof(
    pool: &PgPool,
    log: &str,
    first: u64,
    second: u64,
) -> Result<ProofDocument, AuditError> {
    check_log(log)?;
    let tree = tree(pool, log).await?;
    let path = tree
        .consistency_proof(first, second)
        .map_err(|e| AuditError::Invalid(e.to_string()))?;
    Ok(ProofDocument::Consistency(ConsistencyProof::new(
        first, second, &path,
    )))
}

/// How a PostgreSQL row differs from the log recomputed from JetStream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// The row is there but its bytes (or leaf hash, or sequence) differ.
    Changed,
    /// The entry is missing from PostgreSQL.
    Deleted,
    /// PostgreSQL has an entry JetStream does not.
    Inserted,
    /// The entry is there, at another place.
    Reordered,
}

impl std::fmt::Display for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Changed => "changed row",
            Self::Deleted => "deleted row",
            Self::Inserted => "inserted row",
            Self::Reordered => "reordered row",
        })
    }
}

/// A finding of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The first entry of the log where PostgreSQL differs from JetStream.
    Entry {
        log: String,
        /// The leaf index (from 0).
        index: u64,
        kind: Tamper,
        /// The stream sequence of the entry JetStream has at that index, if any.
        expected_sequence: Option<u64>,
    },
    /// An aggregate's hash chain is broken in JetStream itself.
    Chain {
        log: String,
        subject: String,
        stream_sequence: u64,
    },
    /// The latest signed checkpoint does not hold for the recomputed log.
    Checkpoint { log: String, reason: String },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Entry {
                log,
                index,
                kind,
                expected_sequence,
            } => {
                write!(f, "log {log}: entry {index}: {kind}")?;
                if let Some(s) = expected_sequence {
                    write!(f, " (JetStream has stream sequence {s} there)")?;
                }
                Ok(())
            }
            Self::Chain {
                log,
                subject,
                stream_sequence,
            } => write!(
                f,
                "log {log}: the hash chain of {subject} is broken at stream sequence {stream_sequence}"
            ),
            Self::Checkpoint { log, reason } => write!(f, "log {log}: checkpoint: {reason}"),
        }
    }
}

/// What [`verify`] checked, per log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogVerified {
    pub log: String,
    /// Entries recomputed from JetStream (up to the projector's checkpoint).
    pub entries: u64,
    /// Rows in PostgreSQL.
    pub rows: u64,
    /// The recomputed root of the whole log.
    pub root: Hash,
    /// The size of the latest signed checkpoint checked, if any.
    pub checkpoint_size: Option<u64>,
}

/// The outcome of [`verify`]: ok when there are no findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub logs: Vec<LogVerified>,
    /// At most one entry finding per log (the first that differs).
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }

    pub fn entries(&self) -> u64 {
        self.logs.iter().map(|l| l.entries).sum()
    }
}

/// The commits of `stream` up to `until` (inclusive), as stored, in order.
async fn replay(
    store: &EventStore,
    stream: &str,
    until: u64,
) -> Result<Vec<StoredCommit>, AuditError> {
    const FETCH: usize = 1000;
    let mut commits = Vec::new();
    let mut next = 1;
    while next <= until {
        let messages = store
            .read_range(stream, next, FETCH)
            .await
            .map_err(|e| AuditError::Store(e.to_string()))?;
        let Some(last) = messages.last().map(|m| m.stream_sequence) else {
            break;
        };
        for m in messages
            .iter()
            .filter(|m| m.stream_sequence <= until && m.is_commit())
        {
            commits.push(StoredCommit::decode(m).map_err(|e| {
                AuditError::Malformed(format!(
                    "{stream} sequence {} is not a commit: {e}",
                    m.stream_sequence
                ))
            })?);
        }
        next = last + 1;
    }
    Ok(commits)
}

/// The first place where `rows` (PostgreSQL) differ from `expected`
/// (recomputed), classified.
pub fn first_difference(expected: &[LogRow], rows: &[LogRow]) -> Option<(usize, Tamper)> {
    let same = |a: &LogRow, b: &LogRow| a.entry == b.entry;
    let exact = |a: &LogRow, b: &LogRow| {
        a.entry == b.entry
            && a.stream_sequence == b.stream_sequence
            && b.leaf_hash == leaf_hash(&b.entry).to_vec()
    };
    let i = (0..expected.len().max(rows.len()))
        .find(|&i| !matches!((expected.get(i), rows.get(i)), (Some(e), Some(r)) if exact(e, r)))?;
    let kind = match (expected.get(i), rows.get(i)) {
        (Some(_), None) => Tamper::Deleted,
        (None, Some(_)) => Tamper::Inserted,
        (Some(e), Some(r)) => {
            let next_expected = expected.get(i + 1);
            let next_row = rows.get(i + 1);
            if same(e, r) {
                // The bytes are right; its sequence or leaf hash is not.
                Tamper::Changed
            } else if next_expected.is_some_and(|n| same(n, r))
                && next_row.is_some_and(|n| same(e, n))
            {
                Tamper::Reordered
            } else if next_expected.is_some_and(|n| same(n, r)) {
                Tamper::Deleted
            } else if next_row.is_some_and(|n| same(e, n)) {
                Tamper::Inserted
            } else if expected.iter().any(|x| same(x, r)) {
                Tamper::Reordered
            } else {
                Tamper::Changed
            }
        }
        (None, None) => return None,
    };
    Some((i, kind))
}

/// Recomputes every log from JetStream (up to what the projector has
/// applied), checks every aggregate's hash chain, compares every entry with
/// the PostgreSQL log, and checks the latest signed checkpoint of each log
/// against the recomputed tree (its signature too, given the public key).
pub async fn verify(
    pool: &PgPool,
    store: &EventStore,
    key: Option<&VerifyingKey>,
) -> Result<VerifyReport, AuditError> {
    // One snapshot of the projector's checkpoints, the rows and the signed
    // checkpoints (they commit together), so a projector running meanwhile
    // cannot make rows appear that the replay does not reach.
    let mut snapshot = Vec::new();
    {
        let mut tx = pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        for log in CONTEXTS {
            let stream = ContextStream::new(log).name;
            let applied: Option<(i64,)> = sqlx::query_as(
                "SELECT last_sequence FROM projection_checkpoints WHERE projection = $1 AND stream = $2",
            )
            .bind(NAME)
            .bind(&stream)
            .fetch_optional(&mut *tx)
            .await?;
            let applied = applied.map_or(0, |(s,)| s as u64);
            let stored = rows(&mut *tx, log).await?;
            let latest = latest_checkpoint(&mut *tx, log).await?;
            snapshot.push((log, stream, applied, stored, latest));
        }
        tx.commit().await?;
    }
    let mut report = VerifyReport::default();
    for (log, stream, applied, stored, latest) in snapshot {
        let commits = replay(store, &stream, applied).await?;
        // Per-aggregate hash chains.
        let mut last: HashMap<&str, Hash> = HashMap::new();
        for c in &commits {
            let previous = last.get(c.subject.as_str()).copied().unwrap_or(GENESIS);
            if c.previous_hash() != previous {
                report.findings.push(Finding::Chain {
                    log: log.to_owned(),
                    subject: c.subject.clone(),
                    stream_sequence: c.stream_sequence,
                });
                break;
            }
            last.insert(c.subject.as_str(), c.hash);
        }
        let expected: Vec<LogRow> = commits
            .iter()
            .map(|c| LogRow {
                stream_sequence: c.stream_sequence,
                entry: c.bytes.to_vec(),
                leaf_hash: leaf_hash(&c.bytes).to_vec(),
            })
            .collect();
        if let Some((index, kind)) = first_difference(&expected, &stored) {
            report.findings.push(Finding::Entry {
                log: log.to_owned(),
                index: index as u64,
                kind,
                expected_sequence: expected.get(index).map(|r| r.stream_sequence),
            });
        }
        let tree = Tree::from_entries(expected.iter().map(|r| r.entry.as_slice()));
        let mut checkpoint_size = None;
        if let Some(cp) = latest {
            checkpoint_size = Some(cp.tree_size);
            let mut fail = |reason: String| {
                report.findings.push(Finding::Checkpoint {
                    log: log.to_owned(),
                    reason,
                })
            };
            // Without the public key, the stored size and root are taken
            // as they are (the signature is not checked).
            let signed = match key {
                Some(key) => match Checkpoint::verify(&cp.note, key) {
                    Ok(c) => Some((c.size, c.root)),
                    Err(e) => {
                        fail(format!("the checkpoint of size {}: {e}", cp.tree_size));
                        None
                    }
                },
                None => Some((cp.tree_size, cp.root_hash)),
            };
            if let Some((size, signed_root)) = signed {
                match tree.root_at(size) {
                    Ok(root) if root == signed_root => {}
                    Ok(_) => fail(format!(
                        "the recomputed root of the first {size} entries differs from the signed root"
                    )),
                    Err(_) => fail(format!(
                        "signed at size {size} but JetStream has {} entries",
                        tree.len()
                    )),
                }
            }
        }
        report.logs.push(LogVerified {
            log: log.to_owned(),
            entries: expected.len() as u64,
            rows: stored.len() as u64,
            root: tree.root(),
            checkpoint_size,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64, entry: &[u8]) -> LogRow {
        LogRow {
            stream_sequence: seq,
            entry: entry.to_vec(),
            leaf_hash: leaf_hash(entry).to_vec(),
        }
    }

    fn log(n: u64) -> Vec<LogRow> {
        (1..=n)
            .map(|s| row(s, format!("e{s}").as_bytes()))
            .collect()
    }

    #[test]
    fn untouched_log_has_no_difference() {
        assert_eq!(first_difference(&log(5), &log(5)), None);
        assert_eq!(first_difference(&[], &[]), None);
    }

    #[test]
    fn classifies_the_first_difference() {
        let expected = log(5);
        let mut changed = log(5);
        changed[2].entry = b"forged".to_vec();
        changed[2].leaf_hash = leaf_hash(b"forged").to_vec();
        assert_eq!(
            first_difference(&expected, &changed),
            Some((2, Tamper::Changed))
        );
        let mut hash_only = log(5);
        hash_only[1].leaf_hash = vec![0; 32];
        assert_eq!(
            first_difference(&expected, &hash_only),
            Some((1, Tamper::Changed))
        );
        let mut deleted = log(5);
        deleted.remove(1);
        assert_eq!(
            first_difference(&expected, &deleted),
            Some((1, Tamper::Deleted))
        );
        let mut last_deleted = log(5);
        last_deleted.pop();
        assert_eq!(
            first_difference(&expected, &last_deleted),
            Some((4, Tamper::Deleted))
        );
        let mut inserted = log(5);
        inserted.insert(3, row(3, b"extra"));
        assert_eq!(
            first_difference(&expected, &inserted),
            Some((3, Tamper::Inserted))
        );
        let mut appended = log(5);
        appended.push(row(9, b"extra"));
        assert_eq!(
            first_difference(&expected, &appended),
            Some((5, Tamper::Inserted))
        );
        let mut swapped = log(5);
        let (a, b) = (swapped[1].entry.clone(), swapped[2].entry.clone());
        swapped[1].entry = b;
        swapped[2].entry = a;
        swapped[1].leaf_hash = leaf_hash(&swapped[1].entry).to_vec();
        swapped[2].leaf_hash = leaf_hash(&swapped[2].entry).to_vec();
        assert_eq!(
            first_difference(&expected, &swapped),
            Some((1, Tamper::Reordered))
        );
        let mut far = log(5);
        far.swap(0, 4);
        assert_eq!(
            first_difference(&expected, &far),
            Some((0, Tamper::Reordered))
        );
    }

    #[test]
    fn logs_and_streams_map_both_ways() {
        assert_eq!(log_of_stream("CARELOG_DEMOGRAPHICS"), "demographics");
        assert_eq!(stream_of_log("tasks").as_deref(), Some("CARELOG_TASKS"));
        assert_eq!(stream_of_log("access"), None);
        assert_eq!(
            log_origin("x.example/audit/", "tasks"),
            "x.example/audit/tasks"
        );
    }
}
