//! The medications domain, without I/O.

mod record;

pub use record::MedicationRecord;
