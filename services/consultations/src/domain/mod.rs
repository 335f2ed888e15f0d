//! The consultations domain, without I/O: the aggregate (one patient's
//! consultations), entry values and UCUM units, and the rules of every
//! command.

pub mod decide;
pub mod error;
pub mod record;
pub mod ucum;
pub mod values;
pub mod views;

#[cfg(test)]
mod tests;

pub use decide::{Command, Context, SUPERVISING_ROLES, TopicRef, decide};
pub use error::Error;
pub use record::{PatientConsultations, consultation_of, current_view};
