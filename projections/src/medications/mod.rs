//! The medications read models.

mod projector;
mod queries;

pub use projector::MedicationsProjection;
pub use queries::PgMedicationsQueries;

/// The projection's name, as checkpointed.
pub const NAME: &str = "medications";
