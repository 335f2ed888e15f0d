//! The tasks domain, without I/O.

mod record;

pub use record::TaskList;
