//! carelog's kernel: what every bounded context shares. The event envelope
//! and its hash chain, the JetStream event store, the command executor,
//! identity (JWT → `Actor`), identifiers and dates, and the one error
//! vocabulary mapped to `tonic::Status`.

pub mod access;
pub mod access_control;
pub mod actor;
pub mod auth;
pub mod claims;
pub mod confidential;
pub mod date;
pub mod edge;
pub mod envelope;
pub mod error;
pub mod executor;
pub mod guard;
pub mod ids;
pub mod merkle;
pub mod policy;
pub mod snomed;
pub mod store;
pub mod trace;

pub use actor::{Actor, RequestContext};
pub use error::{Failure, Violations};
pub use executor::{Aggregate, Change, Committed, Decision, Executor, Loaded};
pub use ids::{NhsNumber, OdsCode, PatientId};
