//! `verify`: every log recomputed from JetStream and compared with
//! PostgreSQL, entry by entry, and every signed checkpoint checked against
//! the recomputed trees.

use std::collections::HashMap;

use carelog_kernel::envelope::{GENESIS, StoredCommit};
use carelog_kernel::merkle::checkpoint::{Checkpoint, VerifyingKey};
use carelog_kernel::merkle::{Hash, Tree, leaf_hash};
use carelog_kernel::store::{ContextStream, EventStore};
use sqlx::{AssertSqlSafe, PgPool};

use crate::audit::{AuditRow, COLUMNS};

use super::{
    AuditError, HISTORY, LOGS, LogRow, NAME, StoredCheckpoint, all_checkpoints, is_chained, rows,
};

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
    /// The first row of the `audit_events` read model (what the audit
    /// queries answer from) of a stream that differs from its event in
    /// JetStream.
    AuditEvent {
        stream: String,
        stream_sequence: u64,
        event_index: i32,
        kind: Tamper,
    },
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
            Self::AuditEvent {
                stream,
                stream_sequence,
                event_index,
                kind,
            } => write!(
                f,
                "audit_events: {stream} sequence {stream_sequence} event {event_index}: {kind}"
            ),
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
    /// Rows of the `audit_events` read model compared with JetStream.
    pub audit_events: u64,
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
/// applied), checks every aggregate's hash chain (in the chained logs),
/// compares every entry with the PostgreSQL log, and checks every signed
/// checkpoint of every log against the recomputed tree (its signature too,
/// given the public key); the `history` log is recomputed from the stored
/// checkpoints, so a checkpoint removed or altered after the history named
/// it is found too.
pub async fn verify(
    pool: &PgPool,
    store: &EventStore,
    key: Option<&VerifyingKey>,
) -> Result<VerifyReport, AuditError> {
    // One snapshot of the projector's checkpoints, the rows and the signed
    // checkpoints (they commit together), so a projector running meanwhile
    // cannot make rows appear that the replay does not reach. It stays open
    // while each stream is compared in turn, so only one stream's rows and
    // commits are held at a time.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    // Before the snapshot is taken (LOCK takes none): a rebuild cannot
    // swap a table in between, which would hide its catch-up rows.
    sqlx::query("LOCK TABLE audit_log, audit_events, audit_checkpoints IN ACCESS SHARE MODE")
        .execute(&mut *tx)
        .await?;
    let checkpoints = all_checkpoints(&mut *tx).await?;
    let mut report = VerifyReport::default();
    let mut trees = HashMap::new();
    for log in LOGS {
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
        let (events_applied, events) = audit_events(&mut tx, &stream).await?;
        let commits = replay(store, &stream, applied.max(events_applied)).await?;
        // The two audit projections commit together (ADR 0030): rows
        // missing up to either checkpoint are missing, whichever was
        // lowered with them.
        let mut recomputed = Vec::new();
        let until = applied.max(events_applied);
        for c in commits.iter().filter(|c| c.stream_sequence <= until) {
            recomputed.extend(
                crate::audit::rows_of(&stream, c)
                    .map_err(|e| AuditError::Malformed(e.to_string()))?,
            );
        }
        if let Some((row, kind)) = first_changed_row(&recomputed, &events) {
            report.findings.push(Finding::AuditEvent {
                stream: stream.clone(),
                stream_sequence: row.stream_sequence as u64,
                event_index: row.event_index,
                kind,
            });
        }
        report.audit_events += events.len() as u64;
        let commits: Vec<StoredCommit> = commits
            .into_iter()
            .filter(|c| c.stream_sequence <= applied)
            .collect();
        if is_chained(log)
            && let Some(broken) = first_broken_link(&commits)
        {
            report.findings.push(Finding::Chain {
                log: log.to_owned(),
                subject: broken.subject.clone(),
                stream_sequence: broken.stream_sequence,
            });
        }
        let expected: Vec<LogRow> = commits
            .iter()
            .map(|c| LogRow {
                stream_sequence: c.stream_sequence,
                entry: c.bytes.to_vec(),
                leaf_hash: leaf_hash(&c.bytes).to_vec(),
            })
            .collect();
        compare(&mut report, log, &expected, &stored);
        trees.insert(
            log,
            Tree::from_entries(expected.iter().map(|r| r.entry.as_slice())),
        );
    }
    tx.commit().await?;
    // The history: every other log's checkpoints, in row order.
    let history: Vec<LogRow> = checkpoints
        .iter()
        .filter(|c| c.log != HISTORY)
        .map(|c| LogRow {
            stream_sequence: c.id,
            leaf_hash: leaf_hash(c.stored.note.as_bytes()).to_vec(),
            entry: c.stored.note.clone().into_bytes(),
        })
        .collect();
    trees.insert(
        HISTORY,
        Tree::from_entries(history.iter().map(|r| r.entry.as_slice())),
    );
    for log in LOGS.iter().copied().chain([HISTORY]) {
        let tree = &trees[log];
        let mine: Vec<_> = checkpoints.iter().filter(|c| c.log == log).collect();
        if let Some(reason) = mine
            .iter()
            .find_map(|c| checkpoint_fails(&c.stored, tree, key))
        {
            report.findings.push(Finding::Checkpoint {
                log: log.to_owned(),
                reason,
            });
        }
        let rows = if log == HISTORY {
            history.len()
        } else {
            report
                .logs
                .iter()
                .find(|l| l.log == log)
                .map_or(0, |l| l.rows as usize)
        };
        report.logs.retain(|l| l.log != log);
        report.logs.push(LogVerified {
            log: log.to_owned(),
            entries: tree.len(),
            rows: rows as u64,
            root: tree.root(),
            checkpoint_size: mine.iter().map(|c| c.stored.tree_size).max(),
        });
    }
    Ok(report)
}

/// The `audit_events` projection's checkpoint on `stream` and its rows of
/// that stream, in key order.
async fn audit_events(
    tx: &mut sqlx::PgConnection,
    stream: &str,
) -> Result<(u64, Vec<AuditRow>), AuditError> {
    let applied: Option<(i64,)> = sqlx::query_as(
        "SELECT last_sequence FROM projection_checkpoints WHERE projection = $1 AND stream = $2",
    )
    .bind(crate::audit::NAME)
    .bind(stream)
    .fetch_optional(&mut *tx)
    .await?;
    let rows = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_events WHERE stream = $1 ORDER BY stream_sequence, event_index"
    )))
    .bind(stream)
    .fetch_all(&mut *tx)
    .await?;
    Ok((applied.map_or(0, |(s,)| s as u64), rows))
}

/// The first `audit_events` row (by its key) that is not as recomputed:
/// changed, deleted, or inserted where JetStream has no such event.
fn first_changed_row<'a>(
    expected: &'a [AuditRow],
    stored: &'a [AuditRow],
) -> Option<(&'a AuditRow, Tamper)> {
    let key = |r: &AuditRow| (r.stream_sequence, r.event_index);
    let (mut e, mut s) = (expected.iter().peekable(), stored.iter().peekable());
    loop {
        return match (e.peek(), s.peek()) {
            (None, None) => None,
            (Some(x), None) => Some((x, Tamper::Deleted)),
            (None, Some(y)) => Some((y, Tamper::Inserted)),
            (Some(x), Some(y)) if key(x) < key(y) => Some((x, Tamper::Deleted)),
            (Some(x), Some(y)) if key(x) > key(y) => Some((y, Tamper::Inserted)),
            (Some(x), Some(y)) if x != y => Some((y, Tamper::Changed)),
            _ => {
                e.next();
                s.next();
                continue;
            }
        };
    }
}

/// The first commit whose `previous_hash` is not its aggregate's last hash.
fn first_broken_link(commits: &[StoredCommit]) -> Option<&StoredCommit> {
    let mut last: HashMap<&str, Hash> = HashMap::new();
    for c in commits {
        let previous = last.get(c.subject.as_str()).copied().unwrap_or(GENESIS);
        if c.previous_hash() != previous {
            return Some(c);
        }
        last.insert(c.subject.as_str(), c.hash);
    }
    None
}

/// Records the first difference between the recomputed and stored log, and
/// the log's counts (its root and checkpoint are filled in afterwards).
fn compare(report: &mut VerifyReport, log: &str, expected: &[LogRow], stored: &[LogRow]) {
    if let Some((index, kind)) = first_difference(expected, stored) {
        report.findings.push(Finding::Entry {
            log: log.to_owned(),
            index: index as u64,
            kind,
            expected_sequence: expected.get(index).map(|r| r.stream_sequence),
        });
    }
    report.logs.push(LogVerified {
        log: log.to_owned(),
        entries: expected.len() as u64,
        rows: stored.len() as u64,
        root: [0; 32],
        checkpoint_size: None,
    });
}

/// Why a signed checkpoint does not hold for the recomputed tree, if it
/// does not. Without the public key, the stored size and root are taken as
/// they are (the signature is not checked).
fn checkpoint_fails(
    cp: &StoredCheckpoint,
    tree: &Tree,
    key: Option<&VerifyingKey>,
) -> Option<String> {
    let signed_at = cp
        .signed_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (size, signed_root) = match key {
        Some(key) => match Checkpoint::verify(&cp.note, key) {
            Ok(c) => (c.size, c.root),
            Err(e) => {
                return Some(format!(
                    "the checkpoint of size {} signed {signed_at}: {e}",
                    cp.tree_size
                ));
            }
        },
        None => (cp.tree_size, cp.root_hash),
    };
    match tree.root_at(size) {
        Ok(root) if root == signed_root => None,
        Ok(_) => Some(format!(
            "the recomputed root of the first {size} entries differs from the root signed {signed_at}"
        )),
        Err(_) => Some(format!(
            "signed at size {size} ({signed_at}) but the log has {} entries",
            tree.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_log::{log_of_stream, log_origin, stream_of_log};

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
        assert_eq!(stream_of_log("access").as_deref(), Some("CARELOG_ACCESS"));
        assert_eq!(stream_of_log(HISTORY), None);
        assert_eq!(
            log_origin("x.example/audit/", "tasks"),
            "x.example/audit/tasks"
        );
    }
}
