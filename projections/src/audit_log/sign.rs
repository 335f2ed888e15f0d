//! Signed checkpoints of the logs, the `history` log of those checkpoints
//! (ADR 0025), and inclusion and consistency proofs against them.
//!
//! Entry `i` of `history` is the signed note of the `i`-th checkpoint (in
//! `audit_checkpoints` row order) of any other log. Signing is serialised by
//! a PostgreSQL advisory lock held for the signing transaction, so rows are
//! numbered and committed in one order and the history never changes under a
//! checkpoint already signed. Each signing round signs the logs that grew,
//! then the history that now names their checkpoints: one signed root
//! commits to every log.

use carelog_kernel::merkle::Tree;
use carelog_kernel::merkle::checkpoint::{Checkpoint, SigningKey};
use carelog_kernel::merkle::proof::{ConsistencyProof, InclusionProof, ProofDocument};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::{AuditError, LOGS, StoredCheckpoint, check_log, log_origin, rows, to_hash, tree};

/// The log of every other log's signed checkpoints.
pub const HISTORY: &str = "history";

/// The advisory lock key that serialises signing ("carelog" and 1).
const SIGNING_LOCK: i64 = 0x6361_7265_6c6f_6701;

/// The history's entries: every other log's checkpoint row id and signed
/// note, in row order.
pub async fn history_entries(
    db: impl sqlx::PgExecutor<'_>,
) -> Result<Vec<(u64, String)>, AuditError> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, note FROM audit_checkpoints WHERE log <> $1 ORDER BY id")
            .bind(HISTORY)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|(id, n)| (id as u64, n)).collect())
}

type CheckpointRow = (String, String, i64, Vec<u8>, DateTime<Utc>, String);

/// A checkpoint row with its id first.
type NumberedCheckpointRow = (i64, String, String, i64, Vec<u8>, DateTime<Utc>, String);

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

/// A stored checkpoint and its row id (its place in the history).
#[derive(Debug, Clone)]
pub struct CheckpointRecord {
    pub id: u64,
    pub log: String,
    pub stored: StoredCheckpoint,
}

/// Every signed checkpoint of every log, in row order.
pub async fn all_checkpoints(
    db: impl sqlx::PgExecutor<'_>,
) -> Result<Vec<CheckpointRecord>, AuditError> {
    let rows: Vec<NumberedCheckpointRow> = sqlx::query_as(
        "SELECT id, log, origin, tree_size, root_hash, signed_at, note FROM audit_checkpoints ORDER BY id",
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(id, log, origin, size, root, at, note)| {
            Ok(CheckpointRecord {
                id: id as u64,
                log: log.clone(),
                stored: stored_checkpoint((log, origin, size, root, at, note))?,
            })
        })
        .collect()
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

/// Signs a checkpoint of `log`'s current tree and stores it, then the
/// history that names it. Unless `force`, nothing is signed when the log has
/// not grown since the latest checkpoint, or is empty (`None`).
pub async fn sign_checkpoint(
    pool: &PgPool,
    log: &str,
    origin: &str,
    key: &SigningKey,
    force: bool,
) -> Result<Option<StoredCheckpoint>, AuditError> {
    check_log(log)?;
    let mut tx = begin_signing(pool).await?;
    let signed = sign_one(&mut tx, log, origin, key, force).await?;
    if log != HISTORY {
        sign_one(&mut tx, HISTORY, origin, key, false).await?;
    }
    tx.commit().await?;
    Ok(signed)
}

/// A transaction holding the signing lock.
async fn begin_signing(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, AuditError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SIGNING_LOCK)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Signs one log within the signing transaction.
async fn sign_one(
    tx: &mut PgConnection,
    log: &str,
    origin: &str,
    key: &SigningKey,
    force: bool,
) -> Result<Option<StoredCheckpoint>, AuditError> {
    let latest = latest_checkpoint(&mut *tx, log).await?;
    let tree = tree(&mut *tx, log).await?;
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
    .execute(&mut *tx)
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

/// Signs every log that grew (or every log, when `force`), then the
/// history when it grew, in one transaction.
pub async fn sign_all(
    pool: &PgPool,
    origin: &str,
    key: &SigningKey,
    force: bool,
) -> Result<Vec<StoredCheckpoint>, AuditError> {
    let mut tx = begin_signing(pool).await?;
    let mut signed = Vec::new();
    for log in LOGS.iter().copied().chain([HISTORY]) {
        if let Some(cp) = sign_one(&mut tx, log, origin, key, force).await? {
            signed.push(cp);
        }
    }
    tx.commit().await?;
    Ok(signed)
}

/// The inclusion proof of entry `index` of `log` in its tree of `size`
/// entries, with the leaf hash, and the entry's bytes when `with_entry`
/// (an entry of an event log is a whole commit: it holds patient data; an
/// entry of `history` is a signed checkpoint).
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
    let row = rows
        .get(index as usize)
        .ok_or_else(|| AuditError::Invalid(format!("no entry {index}")))?;
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
