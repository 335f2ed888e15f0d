//! The `patients` read model: each patient's current record (with search
//! keys: NHS number, family name, birth date, postcodes) and every version
//! of it with who, when and why. Built by folding events with the
//! demographics aggregate's own `apply`, so the read model and the write
//! model cannot disagree.

mod projector;
mod queries;

pub use projector::PatientsProjection;
pub use queries::PgPatientQueries;

/// The projection's name, as checkpointed.
pub const NAME: &str = "patients";
