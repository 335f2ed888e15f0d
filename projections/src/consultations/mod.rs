//! The consultations read models.

mod projector;
mod queries;

pub use projector::ConsultationsProjection;
pub use queries::PgConsultationsQueries;

/// The projection's name, as checkpointed.
pub const NAME: &str = "consultations";
