//! Domain errors as the caller is told them: one mapping from `Error` to
//! `Failure` (INVALID_ARGUMENT with field violations, NOT_FOUND, or
//! FAILED_PRECONDITION with a stable reason naming the rule).

use carelog_kernel::Failure;
use tonic::Code;

use crate::domain::Error;

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        let rule = |reason| Failure::new(Code::FailedPrecondition, reason, message.clone());
        match error {
            Error::Invalid(v) => Failure::invalid(v),
            Error::AllergyNotFound(id) => Failure::not_found("allergy", &id),
            Error::AuthorisationNotFound(id) => Failure::not_found("authorisation", &id),
            Error::AllergyNotActive { id, .. } | Error::AllergyEnteredInError { id } => {
                rule("ALLERGY_NOT_ACTIVE").with("allergyId", id)
            }
            Error::AllergyConflict {
                allergy_id,
                substance_code,
                substance_display,
                ..
            } => rule("ALLERGY_CONFLICT")
                .with("allergyId", allergy_id)
                .with("substanceCode", substance_code)
                .with("substanceDisplay", substance_display),
            Error::DuplicatePrescription {
                authorisation_id, ..
            } => rule("DUPLICATE_PRESCRIPTION").with("authorisationId", authorisation_id),
            // The same rules, saying the item is confidential and naming
            // nothing of it.
            Error::ConfidentialAllergyConflict { .. } => {
                rule("ALLERGY_CONFLICT").with("confidential", "true")
            }
            Error::ConfidentialDuplicate { .. } => {
                rule("DUPLICATE_PRESCRIPTION").with("confidential", "true")
            }
            Error::IssuedToday { id, .. } => rule("ISSUED_TODAY").with("authorisationId", id),
            Error::AuthorisationStopped(id) => {
                rule("AUTHORISATION_STOPPED").with("authorisationId", id)
            }
            Error::IssuesUsedUp { id, .. } => rule("ISSUES_USED_UP").with("authorisationId", id),
            Error::AuthorisationExpired { id, .. } => {
                rule("AUTHORISATION_EXPIRED").with("authorisationId", id)
            }
            Error::ReviewOverdue { id, .. } => rule("REVIEW_OVERDUE").with("authorisationId", id),
            Error::NothingToReview => rule("NOTHING_TO_REVIEW"),
            // Told as the first conflict (its reason and ids), with every
            // conflict in the message, their number, and every rule that
            // refused (`reasons`): one override_reason overrides them all.
            Error::SafetyConflicts(conflicts) => {
                let count = conflicts.len();
                let mut told = conflicts.into_iter().map(Failure::from);
                match told.next() {
                    Some(mut failure) => {
                        let mut reasons = vec![failure.reason];
                        for other in told {
                            if !reasons.contains(&other.reason) {
                                reasons.push(other.reason);
                            }
                        }
                        failure.message = message;
                        failure
                            .with("conflictCount", count.to_string())
                            .with("reasons", reasons.join(","))
                    }
                    None => rule("SAFETY_CONFLICT"),
                }
            }
        }
    }
}
