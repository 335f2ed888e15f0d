//! carelog projections: durable JetStream consumers that build PostgreSQL
//! read models, each batch and its checkpoint in one transaction; one module
//! per read model (projector and queries); rebuilds into fresh tables.

pub mod access;
pub mod audit;
pub mod audit_log;
pub mod audit_queries;
pub mod checkpoint;
pub mod consultations;
pub mod history;
pub mod medications;
pub mod patients;
pub mod projection;
mod query;
pub mod rebuild;
pub mod runner;
pub mod sharing;
pub mod tasks;

pub use projection::{Projection, ProjectionError};
pub use query::db as read_model_failure;
pub use runner::{ProjectorStatus, Runner};

/// Every read-model migration, embedded at compile time. A migration the
/// database holds that this carelog does not know (applied by a newer
/// carelog) is passed over rather than refused: an older carelog restarted
/// during a rolling update, or after a rollback, runs on the newer schema,
/// which migrations only ever add to (docs/operations.md).
pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| {
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator
    });

/// Every projection carelog runs.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(patients::PatientsProjection),
        std::sync::Arc::new(consultations::ConsultationsProjection),
        std::sync::Arc::new(medications::MedicationsProjection),
        std::sync::Arc::new(tasks::TasksProjection),
        std::sync::Arc::new(sharing::SharingProjection),
        std::sync::Arc::new(audit::AuditEventsProjection),
        std::sync::Arc::new(audit_log::AuditLogProjection),
    ]
}

/// The projection of this name.
pub fn by_name(name: &str) -> Option<std::sync::Arc<dyn Projection>> {
    all().into_iter().find(|p| p.name() == name)
}
