//! carelog tasks. `domain` holds every rule without I/O; `api` maps the
//! gRPC contract onto it and serves queries through the `queries` port.

pub mod api;
pub mod break_glass;
pub mod domain;
mod input;
pub mod queries;
