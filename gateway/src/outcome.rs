//! carelog's errors as FHIR OperationOutcomes: the HTTP status of the
//! kernel's one table (`carelog_kernel::error::http_status`), an issue per
//! field violation naming the field (as the FHIR caller named it) and the
//! rule, and carelog's stable reason as a coding. Pure.

pub use carelog_kernel::error::Violation;
use carelog_kernel::error::{http_status, reason_of, violations_of};
use serde_json::{Value, json};
use std::error::Error as _;

use tonic::Code;

/// The code system of carelog's stable error reasons (`PATIENT_MERGED`,
/// `NOT_YET_CONSISTENT`, ...), as the gRPC API gives them in `ErrorInfo`.
pub const REASON_SYSTEM: &str = "https://carelog.io/fhir/CodeSystem/error-reason";

/// An item a service answered that the gateway cannot represent faithfully
/// in FHIR (a status it does not know, say, from a newer service): the
/// whole answer is refused rather than the item misrepresented or dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unrepresentable(pub &'static str);

impl From<Unrepresentable> for Outcome {
    fn from(Unrepresentable(what): Unrepresentable) -> Self {
        tracing::error!(
            what,
            "the gateway cannot represent what the service answered"
        );
        Self {
            status: 502,
            body: json!({ "resourceType": "OperationOutcome", "issue": [{
                "severity": "error",
                "code": "exception",
                "diagnostics": format!(
                    "the service answered {what}, which this gateway cannot represent; nothing of the answer is shown rather than part of it"
                ),
            }] }),
        }
    }
}

/// An answer that is not a resource: HTTP status and OperationOutcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: u16,
    pub body: Value,
}

/// The FHIR issue type of a gRPC code.
fn issue_type(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument | Code::OutOfRange => "invalid",
        Code::Unauthenticated => "login",
        Code::PermissionDenied => "forbidden",
        Code::NotFound => "not-found",
        Code::AlreadyExists => "duplicate",
        Code::Aborted => "conflict",
        Code::FailedPrecondition => "business-rule",
        Code::ResourceExhausted => "throttled",
        Code::Unimplemented => "not-supported",
        Code::DeadlineExceeded => "timeout",
        Code::Unavailable => "transient",
        _ => "exception",
    }
}

fn issue(code: Code, text: &str, reason: Option<&str>, field: Option<&str>) -> Value {
    let mut issue = json!({
        "severity": if code == Code::Ok { "information" } else { "error" },
        "code": issue_type(code),
        "diagnostics": text,
    });
    if let Some(reason) = reason {
        issue["details"] = json!({
            "coding": [{ "system": REASON_SYSTEM, "code": reason }],
            "text": text,
        });
    }
    if let Some(field) = field {
        issue["expression"] = json!([field]);
    }
    issue
}

impl Outcome {
    /// An OperationOutcome for `code` with one issue, or one per violation.
    pub fn new(code: Code, message: &str, reason: Option<&str>, violations: &[Violation]) -> Self {
        let issues: Vec<Value> = if violations.is_empty() {
            vec![issue(code, message, reason, None)]
        } else {
            violations
                .iter()
                .map(|v| {
                    issue(
                        code,
                        &format!("{}: {}", v.field, v.rule),
                        reason,
                        Some(&v.field),
                    )
                })
                .collect()
        };
        Self {
            status: http_status(code),
            body: json!({ "resourceType": "OperationOutcome", "issue": issues }),
        }
    }

    /// What this server does not do (an interaction, a format, a method),
    /// answered with `status`.
    pub fn not_supported(status: u16, message: &str) -> Self {
        Self {
            status,
            body: json!({ "resourceType": "OperationOutcome", "issue": [{
                "severity": "error",
                "code": "not-supported",
                "diagnostics": message,
            }] }),
        }
    }

    /// Bad input found by the gateway itself, before any call.
    pub fn invalid(violations: &[Violation]) -> Self {
        Self::new(
            Code::InvalidArgument,
            "invalid request",
            Some("INVALID_ARGUMENT"),
            violations,
        )
    }

    /// A service's answer, its field names given as the caller knows them.
    pub fn from_status(status: &tonic::Status, rename: impl Fn(&str) -> String) -> Self {
        let violations: Vec<Violation> = violations_of(status)
            .into_iter()
            .map(|v| Violation::new(rename(&v.field), v.rule))
            .collect();
        let reason = reason_of(status);
        // A call that never reached the service (refused connection, TLS
        // handshake) comes back from tonic as UNKNOWN with the transport
        // error as its source: to the caller, the service is unavailable.
        if status.code() == Code::Unknown && status.source().is_some() {
            tracing::warn!(error = %status, "the service could not be reached");
            return Self::new(
                Code::Unavailable,
                "the service could not be reached; try again later",
                Some("UNAVAILABLE"),
                &[],
            );
        }
        Self::new(
            status.code(),
            status.message(),
            reason.as_deref(),
            &violations,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carelog_kernel::error::Failure;

    #[test]
    fn an_invalid_nhs_number_names_the_search_parameter_and_the_rule() {
        let status: tonic::Status =
            Failure::invalid_field("nhs_number", "fails the modulus 11 check").into();
        let outcome = Outcome::from_status(&status, |f| crate::search::parameter_of(f).to_owned());
        assert_eq!(outcome.status, 400);
        let issue = &outcome.body["issue"][0];
        assert_eq!(outcome.body["resourceType"], "OperationOutcome");
        assert_eq!(issue["code"], "invalid");
        assert_eq!(issue["expression"], json!(["identifier"]));
        assert_eq!(
            issue["diagnostics"],
            "identifier: fails the modulus 11 check"
        );
        assert_eq!(issue["details"]["coding"][0]["code"], "INVALID_ARGUMENT");
    }

    #[test]
    fn each_refusal_has_its_http_status_and_issue_type() {
        for (code, http, kind) in [
            (Code::Unauthenticated, 401, "login"),
            (Code::PermissionDenied, 403, "forbidden"),
            (Code::NotFound, 404, "not-found"),
            (Code::FailedPrecondition, 400, "business-rule"),
            (Code::Aborted, 409, "conflict"),
            (Code::Unavailable, 503, "transient"),
            (Code::DeadlineExceeded, 504, "timeout"),
            (Code::Internal, 500, "exception"),
        ] {
            let outcome = Outcome::from_status(&tonic::Status::new(code, "why"), str::to_owned);
            assert_eq!(outcome.status, http, "{code:?}");
            assert_eq!(outcome.body["issue"][0]["code"], kind, "{code:?}");
            assert_eq!(outcome.body["issue"][0]["diagnostics"], "why");
        }
    }
}
