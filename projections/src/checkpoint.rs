//! Checkpoints: the last stream sequence a projection applied, read and
//! written inside the batch's transaction; and read-your-writes waits.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tokio::time::Instant;

/// The checkpoint, locked for this transaction (created at 0 if new).
pub async fn lock(
    tx: &mut PgConnection,
    projection: &str,
    stream: &str,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, stream, last_sequence) VALUES ($1, $2, 0) \
         ON CONFLICT (projection, stream) DO NOTHING",
    )
    .bind(projection)
    .bind(stream)
    .execute(&mut *tx)
    .await?;
    let (seq,): (i64,) = sqlx::query_as(
        "SELECT last_sequence FROM projection_checkpoints WHERE projection = $1 AND stream = $2 FOR UPDATE",
    )
    .bind(projection)
    .bind(stream)
    .fetch_one(&mut *tx)
    .await?;
    Ok(seq as u64)
}

pub async fn advance(
    tx: &mut PgConnection,
    projection: &str,
    stream: &str,
    to: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projection_checkpoints SET last_sequence = $3, updated_at = now() \
         WHERE projection = $1 AND stream = $2 AND last_sequence < $3",
    )
    .bind(projection)
    .bind(stream)
    .bind(to as i64)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub async fn read(pool: &PgPool, projection: &str, stream: &str) -> Result<u64, sqlx::Error> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT last_sequence FROM projection_checkpoints WHERE projection = $1 AND stream = $2",
    )
    .bind(projection)
    .bind(stream)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| r.0 as u64).unwrap_or(0))
}

/// Waits until the projection has applied `min_sequence`, or the deadline
/// passes (`false`).
pub async fn wait_for(
    pool: &PgPool,
    projection: &str,
    stream: &str,
    min_sequence: u64,
    deadline: Instant,
) -> Result<bool, sqlx::Error> {
    if min_sequence == 0 {
        return Ok(true);
    }
    let mut pause = Duration::from_millis(1);
    loop {
        if read(pool, projection, stream).await? >= min_sequence {
            return Ok(true);
        }
        if Instant::now() + pause >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
