//! The tasks domain, without I/O: the task list aggregate, the FHIR Task
//! state machine, and the rules of every command.

pub mod decide;
pub mod error;
pub mod record;
pub mod status;

#[cfg(test)]
mod tests;

pub use decide::{Command, NewTask, Patient, Who, decide};
pub use error::Error;
pub use record::TaskList;
