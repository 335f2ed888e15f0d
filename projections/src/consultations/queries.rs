//! Queries over the consultations read models.

use carelog_consultations::queries::ConsultationsQueries;
use sqlx::PgPool;

/// The PostgreSQL implementation of the consultations query port.
#[derive(Debug, Clone)]
pub struct PgConsultationsQueries {
    pool: PgPool,
}

impl PgConsultationsQueries {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl ConsultationsQueries for PgConsultationsQueries {}
