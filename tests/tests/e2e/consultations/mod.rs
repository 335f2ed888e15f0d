//! Consultations on the real servers: a GP's consultation from start to
//! amendment through the gRPC API and the read models; signing rights; the
//! patient gate; refused input that appends nothing; golden event samples.

mod bad_input;
mod gate;
mod golden;
mod listing;
mod scenario;
mod signing;
