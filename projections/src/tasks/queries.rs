//! Queries over the tasks read models.

use carelog_tasks::queries::TasksQueries;
use sqlx::PgPool;

/// The PostgreSQL implementation of the tasks query port.
#[derive(Debug, Clone)]
pub struct PgTasksQueries {
    pool: PgPool,
}

impl PgTasksQueries {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl TasksQueries for PgTasksQueries {}
