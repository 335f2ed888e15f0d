//! Queries over the medications read models.

use carelog_medications::queries::MedicationsQueries;
use sqlx::PgPool;

/// The PostgreSQL implementation of the medications query port.
#[derive(Debug, Clone)]
pub struct PgMedicationsQueries {
    pool: PgPool,
}

impl PgMedicationsQueries {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl MedicationsQueries for PgMedicationsQueries {}
