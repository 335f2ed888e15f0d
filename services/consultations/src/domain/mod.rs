//! The consultations domain, without I/O.

mod record;

pub use record::PatientConsultations;
