//! `verify`: every log recomputed from JetStream and compared with
//! PostgreSQL, entry by entry, and every signed checkpoint checked against
//! the recomputed trees.

use std::collections::{HashMap, VecDeque};

use carelog_kernel::envelope::{GENESIS, StoredCommit};
use carelog_kernel::merkle::checkpoint::{Checkpoint, CheckpointError, VerifyingKey};
use carelog_kernel::merkle::{Hash, Tree, leaf_hash};
use carelog_kernel::store::{ContextStream, EventStore};
use sqlx::{AssertSqlSafe, PgPool};

use crate::audit::{AuditRow, COLUMNS};

use super::{
    AuditError, HISTORY, LOGS, LogRow, NAME, StoredCheckpoint, all_checkpoints, is_chained,
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
        /// As the row has it (an inserted row may have any).
        stream_sequence: i64,
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

/// How many messages or rows [`verify`] reads at a time.
pub const PAGE: usize = 1000;

/// The commits of `stream` from `from` up to `until` (inclusive), as
/// stored, in order: one Direct Get range of up to `page` messages, and
/// where the next range starts (None when the replay is done).
async fn replay_page(
    store: &EventStore,
    stream: &str,
    from: u64,
    until: u64,
    page: usize,
) -> Result<(Vec<StoredCommit>, Option<u64>), AuditError> {
    let messages = store
        .read_range(stream, from, page)
        .await
        .map_err(|e| AuditError::Store(e.to_string()))?;
    let Some(last) = messages.last().map(|m| m.stream_sequence) else {
        return Ok((Vec::new(), None));
    };
    let mut commits = Vec::with_capacity(messages.len());
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
    Ok((commits, (last < until).then(|| last + 1)))
}

/// Whether a stored log row is exactly the recomputed one: the same bytes,
/// at the same stream sequence, under the leaf hash of those bytes.
fn exact(expected: &LogRow, row: &LogRow) -> bool {
    expected.entry == row.entry
        && expected.stream_sequence == row.stream_sequence
        && row.leaf_hash == leaf_hash(&row.entry).to_vec()
}

/// The first place where `rows` (PostgreSQL) differ from `expected`
/// (recomputed), classified.
pub fn first_difference(expected: &[LogRow], rows: &[LogRow]) -> Option<(usize, Tamper)> {
    let same = |a: &LogRow, b: &LogRow| a.entry == b.entry;
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

/// A recomputed sequence and the stored one walked side by side, each fed a
/// page at a time, so that neither is ever held whole: what is matched is
/// dropped, and once a difference is found nothing more is kept.
#[derive(Debug)]
struct Walk<T> {
    expected: VecDeque<T>,
    stored: VecDeque<T>,
    /// Items matched so far: the log's leaf index of the fronts.
    matched: u64,
    /// Stored rows read.
    rows: u64,
    found: bool,
}

impl<T> Default for Walk<T> {
    fn default() -> Self {
        Self {
            expected: VecDeque::new(),
            stored: VecDeque::new(),
            matched: 0,
            rows: 0,
            found: false,
        }
    }
}

impl<T> Walk<T> {
    fn expect(&mut self, items: impl IntoIterator<Item = T>) {
        if !self.found {
            self.expected.extend(items);
        }
    }

    fn store(&mut self, rows: Vec<T>) {
        self.rows += rows.len() as u64;
        if !self.found {
            self.stored.extend(rows);
        }
    }

    /// Whether the walk wants another page of stored rows: it keeps up to
    /// a window more of them than of the recomputed items, no more.
    fn wants_rows(&self, window: usize) -> bool {
        self.found || self.stored.len() <= self.expected.len() + window
    }

    fn found(&mut self) {
        self.found = true;
        self.expected.clear();
        self.stored.clear();
    }
}

/// The log walked as far as its buffers allow. A difference is classified
/// by what follows it ([`first_difference`]), so each side must hold more
/// than `window` items beyond the front, or all it has (`*_done`): a
/// reordering further apart than that is named a change. Returns the first
/// difference: its leaf index, kind, and the stream sequence JetStream has
/// there.
fn walk_log(
    w: &mut Walk<LogRow>,
    expected_done: bool,
    stored_done: bool,
    window: usize,
) -> Option<(u64, Tamper, Option<u64>)> {
    let ready = |len: usize, done: bool| done || len > window;
    while !w.found && ready(w.expected.len(), expected_done) && ready(w.stored.len(), stored_done) {
        match (w.expected.front(), w.stored.front()) {
            (None, None) => return None,
            (Some(e), Some(r)) if exact(e, r) => {
                w.expected.pop_front();
                w.stored.pop_front();
                w.matched += 1;
            }
            _ => {
                let (i, kind) =
                    first_difference(w.expected.make_contiguous(), w.stored.make_contiguous())?;
                let found = (
                    w.matched + i as u64,
                    kind,
                    w.expected.get(i).map(|r| r.stream_sequence),
                );
                w.found();
                return Some(found);
            }
        }
    }
    None
}

/// The `audit_events` rows walked in key order as far as the buffers allow:
/// the first row that is not as recomputed (changed, deleted, or inserted
/// where JetStream has no such event), by its key.
fn walk_events(
    w: &mut Walk<AuditRow>,
    expected_done: bool,
    stored_done: bool,
) -> Option<(i64, i32, Tamper)> {
    let key = |r: &AuditRow| (r.stream_sequence, r.event_index);
    while !w.found {
        let found = match (w.expected.front(), w.stored.front()) {
            (None, _) if !expected_done => return None,
            (_, None) if !stored_done => return None,
            (None, None) => return None,
            (Some(x), None) => (x, Tamper::Deleted),
            (None, Some(y)) => (y, Tamper::Inserted),
            (Some(x), Some(y)) if key(x) < key(y) => (x, Tamper::Deleted),
            (Some(x), Some(y)) if key(x) > key(y) => (y, Tamper::Inserted),
            (Some(x), Some(y)) if x != y => (y, Tamper::Changed),
            _ => {
                w.expected.pop_front();
                w.stored.pop_front();
                w.matched += 1;
                continue;
            }
        };
        let found = (found.0.stream_sequence, found.0.event_index, found.1);
        w.found();
        return Some(found);
    }
    None
}

/// Recomputes every log from JetStream (up to what the projector has
/// applied), checks every aggregate's hash chain (in the chained logs),
/// compares every entry with the PostgreSQL log, and checks every signed
/// checkpoint of every log against the recomputed tree (its signature too,
/// given the public key); the `history` log is recomputed from the stored
/// checkpoints, so a checkpoint removed or altered after the history named
/// it is found too. Reads [`PAGE`] messages or rows at a time.
pub async fn verify(
    pool: &PgPool,
    store: &EventStore,
    keys: &[VerifyingKey],
) -> Result<VerifyReport, AuditError> {
    verify_in_pages(pool, store, keys, PAGE).await
}

/// [`verify`], reading `page` messages or rows at a time. What is held in
/// memory is a few pages of entries and rows, each log's tree (64 bytes an
/// entry, as the projector holds it), the last hash of each aggregate
/// (while its chain is checked) and the signed checkpoints.
pub async fn verify_in_pages(
    pool: &PgPool,
    store: &EventStore,
    keys: &[VerifyingKey],
    page: usize,
) -> Result<VerifyReport, AuditError> {
    let page = page.max(1);
    // One snapshot of the projector's checkpoints, the rows and the signed
    // checkpoints (they commit together), so a projector running meanwhile
    // cannot make rows appear that the replay does not reach. It stays open
    // while each stream is read in turn, a page at a time.
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
    let mut trees = Vec::new();
    for log in LOGS {
        let stream = ContextStream::new(log).name;
        let (tree, rows) = verify_stream(&mut tx, store, &mut report, log, &stream, page).await?;
        trees.push((log, tree, rows));
    }
    tx.commit().await?;
    // The history: every other log's checkpoints, in row order.
    let history = Tree::from_entries(
        checkpoints
            .iter()
            .filter(|c| c.log != HISTORY)
            .map(|c| c.stored.note.as_bytes()),
    );
    let rows = history.len();
    trees.push((HISTORY, history, rows));
    for (log, tree, rows) in trees {
        let mine: Vec<_> = checkpoints.iter().filter(|c| c.log == log).collect();
        if let Some(reason) = mine
            .iter()
            .find_map(|c| checkpoint_fails(&c.stored, &tree, keys))
        {
            report.findings.push(Finding::Checkpoint {
                log: log.to_owned(),
                reason,
            });
        }
        report.logs.push(LogVerified {
            log: log.to_owned(),
            entries: tree.len(),
            rows,
            root: tree.root(),
            checkpoint_size: mine.iter().map(|c| c.stored.tree_size).max(),
        });
    }
    Ok(report)
}

/// A projection's checkpoint on `stream` (0 before its first batch).
async fn applied(
    tx: &mut sqlx::PgConnection,
    projection: &str,
    stream: &str,
) -> Result<u64, AuditError> {
    let applied: Option<(i64,)> = sqlx::query_as(
        "SELECT last_sequence FROM projection_checkpoints WHERE projection = $1 AND stream = $2",
    )
    .bind(projection)
    .bind(stream)
    .fetch_optional(&mut *tx)
    .await?;
    // A checkpoint below 0 (altered) is taken as 0: every row is then one
    // JetStream does not account for.
    Ok(applied.map_or(0, |(s,)| s.max(0) as u64))
}

/// One stream replayed a page at a time: its log's entries compared with
/// `audit_log` and its events with `audit_events`, its hash chains checked,
/// each first difference reported. Returns the recomputed tree and the
/// number of `audit_log` rows.
async fn verify_stream(
    tx: &mut sqlx::PgConnection,
    store: &EventStore,
    report: &mut VerifyReport,
    log: &str,
    stream: &str,
    page: usize,
) -> Result<(Tree, u64), AuditError> {
    let applied_log = applied(&mut *tx, NAME, stream).await?;
    // The two audit projections commit together (ADR 0030): rows missing
    // up to either checkpoint are missing, whichever was lowered with them.
    let until = applied_log.max(applied(&mut *tx, crate::audit::NAME, stream).await?);
    let mut tree = Tree::new();
    let mut last_hash: HashMap<String, Hash> = HashMap::new();
    let mut broken = None;
    let (mut entries, mut events) = (Walk::default(), Walk::default());
    // Rows are read from the lowest key up, below sequence 1 too: a row
    // inserted there is one JetStream never held.
    let (mut entries_after, mut events_after) = (Some(i64::MIN), Some((i64::MIN, i32::MIN)));
    let (mut entry_finding, mut event_finding) = (None, None);
    let mut next = (until > 0).then_some(1);
    loop {
        if let Some(from) = next {
            let (commits, after) = replay_page(store, stream, from, until, page).await?;
            next = after;
            for c in &commits {
                events.expect(
                    crate::audit::rows_of(stream, c)
                        .map_err(|e| AuditError::Malformed(e.to_string()))?,
                );
                if c.stream_sequence > applied_log {
                    continue;
                }
                if is_chained(log) && broken.is_none() {
                    let previous = last_hash.get(c.subject.as_str()).unwrap_or(&GENESIS);
                    if c.previous_hash() == *previous {
                        last_hash.insert(c.subject.clone(), c.hash);
                    } else {
                        broken = Some((c.subject.clone(), c.stream_sequence));
                        last_hash = HashMap::new();
                    }
                }
                tree.append_entry(&c.bytes);
                entries.expect([LogRow {
                    stream_sequence: c.stream_sequence,
                    entry: c.bytes.to_vec(),
                    leaf_hash: leaf_hash(&c.bytes).to_vec(),
                }]);
            }
        }
        let replayed = next.is_none();
        while let Some(after) = entries_after.filter(|_| entries.wants_rows(page)) {
            let rows = log_rows_after(&mut *tx, log, after, page).await?;
            // As stored (a sequence below 0 read back as it was).
            entries_after = rows
                .last()
                .map(|r| r.stream_sequence as i64)
                .filter(|_| rows.len() == page);
            entries.store(rows);
        }
        while let Some(after) = events_after.filter(|_| events.wants_rows(page)) {
            let rows = events_after_key(&mut *tx, stream, after, page).await?;
            events_after = rows
                .last()
                .map(|r| (r.stream_sequence, r.event_index))
                .filter(|_| rows.len() == page);
            events.store(rows);
        }
        entry_finding = entry_finding
            .or_else(|| walk_log(&mut entries, replayed, entries_after.is_none(), page));
        event_finding =
            event_finding.or_else(|| walk_events(&mut events, replayed, events_after.is_none()));
        if replayed && entries_after.is_none() && events_after.is_none() {
            break;
        }
    }
    // In the same order whatever the page size.
    if let Some((stream_sequence, event_index, kind)) = event_finding {
        report.findings.push(Finding::AuditEvent {
            stream: stream.to_owned(),
            stream_sequence,
            event_index,
            kind,
        });
    }
    if let Some((subject, stream_sequence)) = broken {
        report.findings.push(Finding::Chain {
            log: log.to_owned(),
            subject,
            stream_sequence,
        });
    }
    if let Some((index, kind, expected_sequence)) = entry_finding {
        report.findings.push(Finding::Entry {
            log: log.to_owned(),
            index,
            kind,
            expected_sequence,
        });
    }
    report.audit_events += events.rows;
    Ok((tree, entries.rows))
}

/// Up to `limit` rows of the PostgreSQL log of `log` after stream sequence
/// `after`, in leaf order.
async fn log_rows_after(
    tx: &mut sqlx::PgConnection,
    log: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<LogRow>, AuditError> {
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT stream_sequence, entry, leaf_hash FROM audit_log \
         WHERE log = $1 AND stream_sequence > $2 ORDER BY stream_sequence LIMIT $3",
    )
    .bind(log)
    .bind(after)
    .bind(limit as i64)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows.into_iter().map(LogRow::from_columns).collect())
}

/// Up to `limit` rows of `audit_events` of `stream` after the key `after`
/// (stream sequence, event index), in key order.
async fn events_after_key(
    tx: &mut sqlx::PgConnection,
    stream: &str,
    after: (i64, i32),
    limit: usize,
) -> Result<Vec<AuditRow>, AuditError> {
    Ok(sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_events WHERE stream = $1 \
         AND (stream_sequence, event_index) > ($2, $3) \
         ORDER BY stream_sequence, event_index LIMIT $4"
    )))
    .bind(stream)
    .bind(after.0)
    .bind(after.1)
    .bind(limit as i64)
    .fetch_all(&mut *tx)
    .await?)
}

/// Why a signed checkpoint does not hold for the recomputed tree, if it
/// does not. Its signature must be valid for one of `keys` (every key the
/// log was signed with, old ones after a rotation); without any, the stored
/// size and root are taken as they are (the signature is not checked).
fn checkpoint_fails(cp: &StoredCheckpoint, tree: &Tree, keys: &[VerifyingKey]) -> Option<String> {
    let signed_at = cp
        .signed_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (size, signed_root) = if keys.is_empty() {
        (cp.tree_size, cp.root_hash)
    } else {
        let mut refused = None;
        let verified = keys
            .iter()
            .find_map(|key| match Checkpoint::verify(&cp.note, key) {
                Ok(c) => Some(c),
                Err(e) => {
                    // A key that signed it and finds it altered says more
                    // than one that did not sign it.
                    let unsigned = matches!(e, CheckpointError::NoSignature { .. });
                    if refused.is_none() || !unsigned {
                        refused = Some(e);
                    }
                    None
                }
            });
        match verified {
            Some(c) => (c.size, c.root),
            None => {
                let with = match keys.len() {
                    1 => String::new(),
                    n => format!(" (with none of the {n} public keys)"),
                };
                return Some(format!(
                    "the checkpoint of size {} signed {signed_at}: {}{with}",
                    cp.tree_size,
                    refused.map(|e| e.to_string()).unwrap_or_default()
                ));
            }
        }
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

    /// The ways a log can be tampered with, each with the first difference
    /// verify names.
    fn tamperings() -> Vec<(&'static str, Vec<LogRow>, (usize, Tamper))> {
        let mut changed = log(5);
        changed[2].entry = b"forged".to_vec();
        changed[2].leaf_hash = leaf_hash(b"forged").to_vec();
        let mut hash_only = log(5);
        hash_only[1].leaf_hash = vec![0; 32];
        let mut deleted = log(5);
        deleted.remove(1);
        let mut last_deleted = log(5);
        last_deleted.pop();
        let mut inserted = log(5);
        inserted.insert(3, row(3, b"extra"));
        let mut appended = log(5);
        appended.push(row(9, b"extra"));
        let mut swapped = log(5);
        let (a, b) = (swapped[1].entry.clone(), swapped[2].entry.clone());
        swapped[1].entry = b;
        swapped[2].entry = a;
        swapped[1].leaf_hash = leaf_hash(&swapped[1].entry).to_vec();
        swapped[2].leaf_hash = leaf_hash(&swapped[2].entry).to_vec();
        let mut far = log(5);
        far.swap(0, 4);
        vec![
            ("changed", changed, (2, Tamper::Changed)),
            ("hash only", hash_only, (1, Tamper::Changed)),
            ("deleted", deleted, (1, Tamper::Deleted)),
            ("last deleted", last_deleted, (4, Tamper::Deleted)),
            ("inserted", inserted, (3, Tamper::Inserted)),
            ("appended", appended, (5, Tamper::Inserted)),
            ("swapped", swapped, (1, Tamper::Reordered)),
            ("far", far, (0, Tamper::Reordered)),
        ]
    }

    #[test]
    fn classifies_the_first_difference() {
        for (name, stored, found) in tamperings() {
            assert_eq!(first_difference(&log(5), &stored), Some(found), "{name}");
        }
    }

    /// Walks `expected` and `stored` fed `page` items at a time, as verify
    /// feeds a replay page and the rows it wants.
    fn walked<T: Clone>(
        expected: &[T],
        stored: &[T],
        page: usize,
        mut walk: impl FnMut(&mut Walk<T>, bool, bool) -> Option<(u64, Tamper)>,
    ) -> (Option<(u64, Tamper)>, u64) {
        let mut w = Walk::default();
        let (mut pages, mut rows) = (expected.chunks(page), stored.chunks(page));
        let (mut replayed, mut read) = (false, false);
        let mut found = None;
        while !(replayed && read) {
            match pages.next() {
                Some(p) => w.expect(p.to_vec()),
                None => replayed = true,
            }
            while !read && w.wants_rows(page) {
                match rows.next() {
                    Some(r) => w.store(r.to_vec()),
                    None => read = true,
                }
            }
            found = found.or_else(|| walk(&mut w, replayed, read));
            assert!(
                w.expected.len() <= expected.len().min(2 * page + 1),
                "expected held whole"
            );
            assert!(w.stored.len() <= 4 * page + 1, "rows held whole");
        }
        (found, w.rows)
    }

    #[test]
    fn a_log_walked_a_page_at_a_time_finds_what_the_whole_log_does() {
        assert_eq!(
            walked(&log(7), &log(7), 2, |w, e, s| walk_log(w, e, s, 2)
                .map(|(i, k, _)| (i, k))),
            (None, 7)
        );
        for page in 1..=6 {
            for (name, stored, (index, kind)) in tamperings() {
                let (found, rows) = walked(&log(5), &stored, page, |w, e, s| {
                    walk_log(w, e, s, page).map(|(i, k, _)| (i, k))
                });
                // A reordering more than a page apart may be named a
                // change: it lies beyond what the walk holds.
                let kind = if name == "far" && page < 3 {
                    Tamper::Changed
                } else {
                    kind
                };
                assert_eq!(found, Some((index as u64, kind)), "{name}, page {page}");
                assert_eq!(rows, stored.len() as u64, "{name}, page {page}");
            }
        }
    }

    fn event(sequence: i64, index: i32, actor: &str) -> AuditRow {
        AuditRow {
            stream_sequence: sequence,
            event_index: index,
            actor_user_id: actor.to_owned(),
            ..AuditRow::default()
        }
    }

    #[test]
    fn audit_events_walked_a_page_at_a_time_name_the_first_row_not_as_recomputed() {
        let events: Vec<_> = (1..=6)
            .flat_map(|s| [event(s, 0, "dr-patel"), event(s, 1, "dr-patel")])
            .collect();
        let mut changed = events.clone();
        changed[5].actor_user_id = "dr-someone-else".into();
        let mut deleted = events.clone();
        deleted.remove(7);
        let mut inserted = events.clone();
        inserted.insert(4, event(2, 7, "dr-patel"));
        let mut appended = events.clone();
        appended.push(event(9, 0, "dr-patel"));
        let mut last_deleted = events.clone();
        last_deleted.pop();
        let cases = [
            ("untouched", events.clone(), None),
            ("changed", changed, Some((3, 1, Tamper::Changed))),
            ("deleted", deleted, Some((4, 1, Tamper::Deleted))),
            ("inserted", inserted, Some((2, 7, Tamper::Inserted))),
            ("appended", appended, Some((9, 0, Tamper::Inserted))),
            ("last deleted", last_deleted, Some((6, 1, Tamper::Deleted))),
        ];
        for page in 1..=13 {
            for (name, stored, expected) in &cases {
                let mut found = None;
                let (_, rows) = walked(&events, stored, page, |w, e, s| {
                    found = found.or(walk_events(w, e, s));
                    None
                });
                assert_eq!(found, *expected, "{name}, page {page}");
                assert_eq!(rows, stored.len() as u64, "{name}, page {page}");
            }
        }
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

    /// After the signing key is rotated, the log holds checkpoints signed
    /// by the old key and by the new: each verifies with the keys of its
    /// time given together, and fails, naming why, without its own.
    #[test]
    fn checkpoints_signed_before_and_after_a_key_rotation_verify_with_both_keys() {
        use carelog_kernel::merkle::checkpoint::generate_signing_key;
        let (old, new) = (generate_signing_key(), generate_signing_key());
        let tree = Tree::from_entries(["e1", "e2", "e3"].iter().map(|e| e.as_bytes()));
        let signed = |size: u64, key: &carelog_kernel::merkle::checkpoint::SigningKey| {
            let root = tree.root_at(size).expect("root");
            let at = chrono::Utc::now();
            let cp = Checkpoint::new("carelog.example/audit/tasks", size, root, at).expect("cp");
            StoredCheckpoint {
                log: "tasks".into(),
                origin: cp.origin.clone(),
                tree_size: size,
                root_hash: root,
                signed_at: at,
                note: cp.sign(key),
            }
        };
        let before = signed(2, &old);
        let after = signed(3, &new);
        let both = [old.verifying_key(), new.verifying_key()];
        assert_eq!(checkpoint_fails(&before, &tree, &both), None);
        assert_eq!(checkpoint_fails(&after, &tree, &both), None);
        let refused = checkpoint_fails(&before, &tree, &both[1..]).expect("not the new key's");
        assert!(refused.contains("size 2"), "{refused}");
        assert!(checkpoint_fails(&after, &tree, &both[..1]).is_some());
        // A checkpoint the new key signed, altered since, is reported as
        // such, not as signed by neither key.
        let mut altered = signed(3, &new);
        altered.note = altered.note.replacen("\n3\n", "\n2\n", 1);
        let refused = checkpoint_fails(&altered, &tree, &both).expect("altered");
        assert!(refused.contains("not valid"), "{refused}");
        // With no key, the stored size and root are compared alone.
        assert_eq!(checkpoint_fails(&before, &tree, &[]), None);
    }
}
