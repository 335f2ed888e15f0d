//! End-to-end scenarios against a real nats-server and PostgreSQL.

mod access;
mod audit_log;
mod bad_input;
mod concurrency;
mod consultations;
mod golden;
mod health;
mod lifecycle;
mod medications;
mod merge;
mod policy;
mod projections;
mod reflection;
mod scenario;
mod shared_care;
mod streams;
mod tasks;
mod telemetry;
