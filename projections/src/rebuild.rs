//! `carelog rebuild <projection>`: replays the projection's streams from
//! sequence 1 into fresh tables (schema `carelog_rebuild`, same definitions
//! as the migrated tables), catches up the tail under the projection's lock,
//! and swaps the fresh tables in, in one transaction. The old tables are
//! dropped afterwards.

use std::time::{Duration, Instant};

use carelog_kernel::store::EventStore;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

use crate::projection::{Projection, ProjectionError};
use crate::runner::apply_messages;

const SCHEMA: &str = "carelog_rebuild";
const RETIRED: &str = "carelog_retired";
const FETCH: usize = 1000;
/// Messages per transaction while replaying.
const CHUNK: usize = 5000;

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
    for table in &tables {
        exec(
            &mut conn,
            format!("CREATE TABLE {SCHEMA}.{table} (LIKE public.{table} INCLUDING ALL)"),
        )
        .await?;
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
        done += replay(&mut conn, store, projection, stream, false, &mut |n| {
            progress(done + n, totals)
        })
        .await?;
    }
    // Catch up the tail and swap, under the projection's lock.
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for stream in &streams {
        done += replay(&mut tx, store, projection, stream, true, &mut |_| {}).await?;
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

/// Applies a stream into the rebuild schema from its checkpoint there to
/// the stream's end. With `in_tx` the caller's transaction is used (the tail
/// under the swap), else one transaction per chunk. Fetches the next range
/// while the current one is applied.
async fn replay(
    conn: &mut PgConnection,
    store: &EventStore,
    projection: &dyn Projection,
    stream: &str,
    in_tx: bool,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, ProjectionError> {
    let store_err = |e: carelog_kernel::store::StoreError| ProjectionError::Store(e.to_string());
    let at: Option<(i64,)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT last_sequence FROM {SCHEMA}.projection_checkpoints WHERE projection = $1 AND stream = $2"
    )))
    .bind(projection.name())
    .bind(stream)
    .fetch_optional(&mut *conn)
    .await?;
    let mut next = at.map(|r| r.0 as u64).unwrap_or(0) + 1;
    let mut applied = 0;
    let mut pending = Vec::new();
    let fetch = |from: u64| {
        let (store, stream) = (store.clone(), stream.to_owned());
        tokio::spawn(async move { store.read_range(&stream, from, FETCH).await })
    };
    let mut inflight = Some(fetch(next));
    while let Some(handle) = inflight.take() {
        let messages = handle
            .await
            .map_err(|e| ProjectionError::Store(e.to_string()))?
            .map_err(store_err)?;
        let full = messages.len() == FETCH;
        if let Some(last) = messages.last() {
            next = last.stream_sequence + 1;
        }
        if full {
            inflight = Some(fetch(next));
        }
        pending.extend(messages);
        if pending.len() >= CHUNK || inflight.is_none() {
            if in_tx {
                exec(conn, format!("SET LOCAL search_path TO {SCHEMA}")).await?;
                apply_messages(conn, projection, stream, &pending).await?;
                exec(conn, "SET LOCAL search_path TO public".into()).await?;
            } else {
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                exec(&mut tx, format!("SET LOCAL search_path TO {SCHEMA}")).await?;
                apply_messages(&mut tx, projection, stream, &pending).await?;
                tx.commit().await?;
            }
            applied += pending.len() as u64;
            progress(applied);
            pending.clear();
        }
    }
    Ok(applied)
}
