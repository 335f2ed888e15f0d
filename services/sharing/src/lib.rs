//! carelog sharing administration (ADR 0020): organisation groups and
//! sharing agreements for direct care, event-sourced on CARELOG_SHARING.
//! `domain` holds the rules without I/O; `api` maps the gRPC contract onto
//! it; the access guard reads the projected agreements.

pub mod api;
pub mod domain;
pub mod queries;
