//! carelog demographics: the patient's identity. `domain` holds every rule
//! without I/O; `api` maps the gRPC contract onto it and serves queries from
//! the read model through the `PatientQueries` port.

pub mod api;
pub mod domain;
pub mod gate;
pub mod queries;
