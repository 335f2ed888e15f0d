//! End-to-end scenarios against a real nats-server and PostgreSQL.

mod bad_input;
mod concurrency;
mod golden;
mod lifecycle;
mod merge;
mod projections;
mod reflection;
mod streams;
mod tasks;
