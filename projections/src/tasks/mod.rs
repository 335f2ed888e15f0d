//! The tasks read models.

mod projector;
mod queries;

pub use projector::TasksProjection;
pub use queries::PgTasksQueries;

/// The projection's name, as checkpointed.
pub const NAME: &str = "tasks";
