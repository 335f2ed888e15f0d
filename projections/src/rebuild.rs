//! `carelog rebuild <projection>`: replays the projection's streams from
//! sequence 1 into fresh tables (schema `carelog_rebuild`, same definitions
//! as the migrated tables), catches up the tail under the projection's lock,
//! and swaps the fresh tables in, in one transaction. The old tables are
//! dropped afterwards.

use std::time::{Duration, Instant};

use carelog_kernel::envelope::{StoredCommit, StoredMessage};
use carelog_kernel::store::{EventStore, StoreError};
use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::projection::{Projection, ProjectionError};
use crate::runner::{apply_messages, lock_projection};

const SCHEMA: &str = "carelog_rebuild";
const RETIRED: &str = "carelog_retired";
const FETCH: usize = 1000;
/// Ranges fetched ahead of the one being applied.
const READ_AHEAD: usize = 16;
/// Transactions applying one chunk at once.
const PARTITIONS: usize = 3;
/// Messages per transaction while replaying.
const CHUNK: usize = 9000;

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildReport {
    pub messages: u64,
    pub elapsed: Duration,
}

impl RebuildReport {
    pub fn per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

async fn exec(conn: &mut PgConnection, sql: String) -> Result<(), ProjectionError> {
    sqlx::query(AssertSqlSafe(sql)).execute(conn).await?;
    Ok(())
}

/// Rebuilds `projection`; `progress(done, total)` is called as it goes.
pub async fn rebuild(
    pool: &PgPool,
    store: &EventStore,
    projection: &dyn Projection,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<RebuildReport, ProjectionError> {
    let span = tracing::info_span!(
        "rebuild",
        otel.name = %format!("rebuild {}", projection.name()),
        carelog.projection = projection.name(),
    );
    async {
        // Every rebuild builds in the one schema `carelog_rebuild`: a second
        // at the same time would drop the first's tables under it, or write
        // into them from elsewhere in the stream. The lock is held by a
        // connection of its own: unlocked when the rebuild ends, and released
        // by the server if that connection is cut.
        let mut lock =
            <PgConnection as sqlx::Connection>::connect_with(&pool.connect_options()).await?;
        let (locked, holder): (bool, i32) =
            sqlx::query_as("SELECT pg_try_advisory_lock(hashtext($1)), pg_backend_pid()")
                .bind(SCHEMA)
                .fetch_one(&mut lock)
                .await?;
        if !locked {
            return Err(ProjectionError::RebuildRunning);
        }
        let rebuilt = rebuild_in_span(pool, store, projection, progress, holder).await;
        // Unlocked before the rebuild returns: a closed connection's lock is
        // released only once its server process has gone, which a rebuild
        // started straight after this one could beat.
        let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
            .bind(SCHEMA)
            .execute(&mut lock)
            .await;
        if let Err(e) = unlocked {
            tracing::warn!(error = %e, "the rebuild's lock is left to its connection's close");
        }
        let _ = sqlx::Connection::close(lock).await;
        rebuilt
    }
    .instrument(span)
    .await
}

async fn rebuild_in_span(
    pool: &PgPool,
    store: &EventStore,
    projection: &dyn Projection,
    progress: &(dyn Fn(u64, u64) + Sync),
    lock_holder: i32,
) -> Result<RebuildReport, ProjectionError> {
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    let tables: Vec<&str> = projection
        .tables()
        .iter()
        .copied()
        .chain(["projection_checkpoints"])
        .collect();
    exec(&mut conn, format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")).await?;
    exec(&mut conn, format!("CREATE SCHEMA {SCHEMA}")).await?;
    // Copies without secondary indexes (built once, after the replay, which
    // is much faster than maintaining them row by row); primary keys stay,
    // since the projectors upsert on them.
    for table in &tables {
        exec(&mut conn, format!("CREATE TABLE {SCHEMA}.{table} (LIKE public.{table} INCLUDING ALL EXCLUDING INDEXES)")).await?;
        let keys: Vec<(String, String)> = sqlx::query_as(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = ('public.' || $1)::regclass AND contype = 'p'",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
        for (name, definition) in keys {
            exec(
                &mut conn,
                format!("ALTER TABLE {SCHEMA}.{table} ADD CONSTRAINT {name} {definition}"),
            )
            .await?;
        }
    }
    let streams = projection.streams();
    let mut totals = 0;
    for stream in &streams {
        totals += store
            .last_sequence(stream)
            .await
            .map_err(|e| ProjectionError::Store(e.to_string()))?;
    }
    let mut done = 0;
    for stream in &streams {
        done += replay_parallel(pool, store, projection, stream, &mut |n| {
            progress(done + n, totals)
        })
        .await?;
    }
    for table in projection.tables() {
        let indexes: Vec<(String,)> = sqlx::query_as(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1 \
             AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = ('public.' || $1)::regclass)",
        )
        .bind(*table)
        .fetch_all(&mut *conn)
        .await?;
        for (definition,) in indexes {
            exec(
                &mut conn,
                definition.replacen(" ON public.", &format!(" ON {SCHEMA}."), 1),
            )
            .await?;
        }
    }
    // Catch up the tail and swap, under the projection's lock, taken before
    // the tail is read: the live projector cannot commit past what the
    // rebuild reads, so the checkpoint swapped in is never behind its own.
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    lock_projection(&mut tx, projection.name()).await?;
    // Nothing is swapped in unless this rebuild still holds the lock that
    // kept others out: its connection may have been cut while it ran (an
    // idle timeout, a proxy), and another rebuild started since. The lock
    // itself is looked for: a server process that is exiting lets go of
    // its locks before it leaves the list of sessions.
    let (held,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND pid = $1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND objsubid = 1 AND objid = (hashtext($2)::bigint & 4294967295)::oid)",
    )
    .bind(lock_holder)
    .bind(SCHEMA)
    .fetch_one(&mut *tx)
    .await?;
    if !held {
        return Err(ProjectionError::RebuildLockLost);
    }
    for stream in &streams {
        done += catch_up(&mut tx, store, projection, stream).await?;
    }
    exec(&mut tx, format!("CREATE SCHEMA IF NOT EXISTS {RETIRED}")).await?;
    for table in projection.tables() {
        exec(&mut tx, format!("DROP TABLE IF EXISTS {RETIRED}.{table}")).await?;
        exec(
            &mut tx,
            format!("ALTER TABLE public.{table} SET SCHEMA {RETIRED}"),
        )
        .await?;
        exec(
            &mut tx,
            format!("ALTER TABLE {SCHEMA}.{table} SET SCHEMA public"),
        )
        .await?;
    }
    sqlx::query("DELETE FROM public.projection_checkpoints WHERE projection = $1")
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO public.projection_checkpoints SELECT * FROM {SCHEMA}.projection_checkpoints WHERE projection = $1"
    )))
    .bind(projection.name())
    .execute(&mut *tx)
    .await?;
    exec(&mut tx, format!("DROP SCHEMA {SCHEMA} CASCADE")).await?;
    tx.commit().await?;
    exec(
        &mut conn,
        format!("DROP SCHEMA IF EXISTS {RETIRED} CASCADE"),
    )
    .await?;
    progress(totals.max(done), totals);
    Ok(RebuildReport {
        messages: done,
        elapsed: started.elapsed(),
    })
}

/// Fetches the stream from `from` onwards, up to READ_AHEAD ranges ahead of
/// whoever applies them.
fn read_ahead(
    store: &EventStore,
    stream: &str,
    from: u64,
) -> mpsc::Receiver<Result<Vec<StoredMessage>, StoreError>> {
    let (ranges, received) = mpsc::channel(READ_AHEAD);
    let (store, stream) = (store.clone(), stream.to_owned());
    tokio::spawn(async move {
        let mut next = from;
        loop {
            let messages = store.read_range(&stream, next, FETCH).await;
            let last = messages
                .as_ref()
                .ok()
                .and_then(|m| m.last())
                .map(|m| m.stream_sequence);
            // A range falls short of FETCH only where the stream ends
            // (`read_range` follows a batch the server ended early).
            let full = messages.as_ref().is_ok_and(|m| m.len() == FETCH);
            if ranges.send(messages).await.is_err() || !full {
                return;
            }
            next = last.map_or(next, |l| l + 1);
        }
    });
    received
}

async fn rebuild_checkpoint(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    stream: &str,
) -> Result<u64, ProjectionError> {
    let at: Option<(i64,)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT last_sequence FROM {SCHEMA}.projection_checkpoints WHERE projection = $1 AND stream = $2"
    )))
    .bind(projection.name())
    .bind(stream)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(at.map(|r| r.0 as u64).unwrap_or(0))
}

/// Replays a stream into the rebuild schema from its start, applying each
/// chunk in PARTITIONS transactions at once, split by aggregate (so each
/// aggregate's events stay in order). The rebuild tables are private until
/// the swap, so a chunk need not be one transaction; the checkpoint moves
/// after all partitions of a chunk committed.
async fn replay_parallel(
    pool: &PgPool,
    store: &EventStore,
    projection: &dyn Projection,
    stream: &str,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, ProjectionError> {
    let mut conn = pool.acquire().await?;
    let mut at = rebuild_checkpoint(&mut conn, projection, stream).await?;
    let mut received = read_ahead(store, stream, at + 1);
    let mut applied = 0;
    let mut pending: Vec<StoredMessage> = Vec::new();
    let mut done = false;
    while !done {
        match received.recv().await {
            Some(messages) => {
                pending.extend(messages.map_err(|e| ProjectionError::Store(e.to_string()))?)
            }
            None => done = true,
        }
        let last_chunk = done && !pending.is_empty();
        if pending.len() < CHUNK && !last_chunk {
            continue;
        }
        let mut parts: Vec<Vec<StoredCommit>> = (0..PARTITIONS).map(|_| Vec::new()).collect();
        for message in &pending {
            if message.stream_sequence != at + 1 {
                return Err(ProjectionError::gap(message, at));
            }
            at = message.stream_sequence;
            if !message.is_commit() {
                continue;
            }
            let commit =
                StoredCommit::decode(message).map_err(|e| ProjectionError::Unapplicable {
                    sequence: message.stream_sequence,
                    subject: message.subject.clone(),
                    reason: format!("not a commit: {e}"),
                })?;
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&commit.subject, &mut hasher);
            parts[(std::hash::Hasher::finish(&hasher) as usize) % PARTITIONS].push(commit);
        }
        futures::future::try_join_all(parts.iter().map(|part| {
            let span = tracing::info_span!(
                "transaction",
                otel.name = "rebuild transaction",
                db.system.name = "postgresql",
                db.operation.name = "apply batch",
                carelog.projection = projection.name(),
                messaging.batch.message_count = part.len() as i64,
            );
            async move {
                let mut tx = pool.begin().await?;
                exec(&mut tx, format!("SET LOCAL search_path TO {SCHEMA}")).await?;
                exec(&mut tx, "SET LOCAL synchronous_commit = off".into()).await?;
                projection.apply(&mut tx, stream, part).await?;
                tx.commit().await?;
                Ok::<_, ProjectionError>(())
            }
            .instrument(span)
        }))
        .await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {SCHEMA}.projection_checkpoints (projection, stream, last_sequence) VALUES ($1, $2, $3) \
             ON CONFLICT (projection, stream) DO UPDATE SET last_sequence = EXCLUDED.last_sequence, updated_at = now()"
        )))
        .bind(projection.name())
        .bind(stream)
        .bind(at as i64)
        .execute(&mut *conn)
        .await?;
        applied += pending.len() as u64;
        progress(applied);
        pending.clear();
    }
    Ok(applied)
}

/// Applies the rest of a stream (the tail) in the caller's transaction,
/// as the live projector would.
async fn catch_up(
    conn: &mut PgConnection,
    store: &EventStore,
    projection: &dyn Projection,
    stream: &str,
) -> Result<u64, ProjectionError> {
    let at = rebuild_checkpoint(conn, projection, stream).await?;
    let mut received = read_ahead(store, stream, at + 1);
    let mut applied = 0;
    while let Some(messages) = received.recv().await {
        let messages = messages.map_err(|e| ProjectionError::Store(e.to_string()))?;
        exec(conn, format!("SET LOCAL search_path TO {SCHEMA}")).await?;
        apply_messages(conn, projection, stream, &messages).await?;
        exec(conn, "SET LOCAL search_path TO public".into()).await?;
        applied += messages.len() as u64;
    }
    Ok(applied)
}
