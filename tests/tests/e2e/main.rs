//! End-to-end scenarios against a real nats-server and PostgreSQL.

mod access;
mod access_messages;
mod audit_fail_closed;
mod audit_log;
mod audit_queries;
mod audit_report;
mod bad_input;
mod concurrency;
mod confidential;
mod consultations;
mod golden;
mod health;
mod history;
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
mod tls;
mod unknown_outcome;
