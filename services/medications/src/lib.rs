//! carelog medications. `domain` holds every rule without I/O; `catalogue`
//! loads the drug knowledge the safety checks use; `api` maps the gRPC
//! contract onto them and serves queries through the `queries` port.

pub mod api;
pub mod catalogue;
pub mod domain;
pub mod queries;
