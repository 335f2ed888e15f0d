//! The medications domain, without I/O: the patient's medication record
//! aggregate, input checks, and the rules of every command.

pub mod decide;
pub mod error;
pub mod record;
pub mod values;
pub mod views;

#[cfg(test)]
mod tests;

pub use decide::{Command, Facts, decide};
pub use error::Error;
pub use record::MedicationRecord;
