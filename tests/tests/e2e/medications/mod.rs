//! The medication record on the real servers: allergies, prescribing with
//! its safety checks, issues and reviews through the gRPC API and the read
//! models; the patient gate; bad input appends nothing; every event audited.

mod gate;
mod golden;
mod scenarios;

use tonic_types::StatusExt as _;

fn reason(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}
