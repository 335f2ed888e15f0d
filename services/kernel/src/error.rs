//! The one error vocabulary of carelog: a `Failure` is what a caller is told
//! (canonical code, stable reason, message naming the field and the rule,
//! field violations), and it becomes a `tonic::Status` in exactly one place.
//! The FHIR gateway reads the same vocabulary back from a `tonic::Status`
//! (`violations_of`, `reason_of`) and answers with `http_status`.

use std::collections::HashMap;
use std::fmt;

use tonic::Code;
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// The `ErrorInfo.domain` of every carelog error.
pub const ERROR_DOMAIN: &str = "carelog";

/// One broken rule on one input field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Path of the field in the request, e.g. `details.birth_date`.
    pub field: String,
    /// The rule it broke, in words a clinician's integrator understands.
    pub rule: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

/// Collects every field violation of a request before answering, so a
/// caller learns all that is wrong at once.
#[derive(Debug, Default, Clone)]
pub struct Violations(Vec<Violation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, rule: impl Into<String>) {
        self.0.push(Violation {
            field: field.into(),
            rule: rule.into(),
        });
    }

    /// Records the error of a parse, returning the value when it parsed.
    pub fn check<T, E: fmt::Display>(&mut self, field: &str, parsed: Result<T, E>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(error) => {
                self.add(field, error.to_string());
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Violation> {
        self.0.iter()
    }

    /// `Ok(())` when nothing was wrong, else the `INVALID_ARGUMENT` failure.
    pub fn into_result(self) -> Result<(), Failure> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Failure::invalid(self))
        }
    }
}

/// What a caller is told when a request fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Code,
    /// Stable, machine-readable UPPER_SNAKE_CASE reason (AIP-193).
    pub reason: &'static str,
    pub message: String,
    pub violations: Vec<Violation>,
    /// Dynamic values of the message, with lowerCamelCase keys.
    pub metadata: Vec<(&'static str, String)>,
}

impl Failure {
    pub fn new(code: Code, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            violations: Vec::new(),
            metadata: Vec::new(),
        }
    }

    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.metadata.push((key, value.into()));
        self
    }

    /// `INVALID_ARGUMENT` naming every field and rule.
    pub fn invalid(violations: Violations) -> Self {
        let message = violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.rule))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            code: Code::InvalidArgument,
            reason: "INVALID_ARGUMENT",
            message,
            violations: violations.0,
            metadata: Vec::new(),
        }
    }

    /// A single bad field.
    pub fn invalid_field(field: impl Into<String>, rule: impl Into<String>) -> Self {
        let mut violations = Violations::new();
        violations.add(field, rule);
        Self::invalid(violations)
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            Code::NotFound,
            "NOT_FOUND",
            format!("{what} {id} was not found"),
        )
        .with("resource", what)
        .with("id", id)
    }

    pub fn unauthenticated(why: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, "UNAUTHENTICATED", why)
    }

    pub fn unavailable(what: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, "UNAVAILABLE", what)
    }

    /// An internal fault: the details are logged, never returned.
    pub fn internal(error: &dyn std::error::Error) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::new(Code::Internal, "INTERNAL", "internal error")
    }
}

/// The HTTP status for a gRPC code, as the gateway answers.
pub fn http_status(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::InvalidArgument | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::FailedPrecondition => 400,
        Code::ResourceExhausted => 429,
        Code::Cancelled => 499,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        _ => 500,
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for Failure {}

impl From<Failure> for tonic::Status {
    fn from(failure: Failure) -> Self {
        let metadata: HashMap<String, String> = failure
            .metadata
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect();
        let mut details = ErrorDetails::with_error_info(failure.reason, ERROR_DOMAIN, metadata);
        if !failure.violations.is_empty() {
            details.set_bad_request(
                failure
                    .violations
                    .iter()
                    .map(|v| FieldViolation::new(v.field.clone(), v.rule.clone()))
                    .collect::<Vec<_>>(),
            );
        }
        tonic::Status::with_error_details(failure.code, failure.message, details)
    }
}

/// The field violations a `tonic::Status` carries (none when it has no
/// `BadRequest` detail).
pub fn violations_of(status: &tonic::Status) -> Vec<Violation> {
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|f| Violation::new(f.field, f.description))
                .collect()
        })
        .unwrap_or_default()
}

/// The stable reason of a carelog `tonic::Status` (its `ErrorInfo`).
pub fn reason_of(status: &tonic::Status) -> Option<String> {
    status
        .get_details_error_info()
        .filter(|i| i.domain == ERROR_DOMAIN)
        .map(|i| i.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_every_field_violation() {
        let mut v = Violations::new();
        v.add("details.nhs_number", "fails the modulus 11 check");
        v.add("details.birth_date", "is in the future");
        let status: tonic::Status = Failure::invalid(v).into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let fields: Vec<_> = details
            .bad_request()
            .map(|b| b.field_violations.iter().map(|f| f.field.clone()).collect())
            .unwrap_or_default();
        assert_eq!(fields, vec!["details.nhs_number", "details.birth_date"]);
        assert!(status.message().contains("modulus 11"));
    }
}
