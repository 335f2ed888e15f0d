//! carelog's end-to-end test harness: a real nats-server and a real
//! PostgreSQL on free ports in a temporary directory, carelog started on
//! them in-process, and clients that carry a development token.

pub mod assert;
pub mod audit;
pub mod consultations;
pub mod harness;
pub mod http;
pub mod medications;
pub mod tasks;
