//! carelog: the one binary's library side, shared by its subcommands and tests.

pub mod audit_api;
pub mod audit_cli;
pub mod audit_report;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod embedded;
pub mod history_api;
pub mod metrics;
pub mod rpc;
pub mod shutdown;
pub mod stack;
pub mod telemetry;
