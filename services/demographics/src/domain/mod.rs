//! The demographics domain, without I/O: values, the patient record
//! aggregate, and the rules of every command.

pub mod decide;
pub mod error;
pub mod record;
pub mod values;

#[cfg(test)]
mod tests;

pub use decide::{Command, NHS_NUMBER_CLAIM, alive, decide, decide_merge, open};
pub use error::Error;
pub use record::{Disclosure, PatientRecord};
