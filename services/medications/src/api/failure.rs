//! Domain errors as the caller is told them: one mapping from `Error` to
//! `Failure` (INVALID_ARGUMENT with field violations, NOT_FOUND, or
//! FAILED_PRECONDITION with a stable reason naming the rule).

use carelog_kernel::Failure;
use tonic::Code;

use crate::domain::Error;

impl From<Error> for Failure {
    /// A safety conflict always carries `conflictCount` and `reasons`, one
    /// conflict as several, so a client reads them alike.
    fn from(error: Error) -> Self {
        let single_conflict = error.is_safety_conflict();
        let failure = told(error);
        if single_conflict {
            let reason = failure.reason;
            failure.with("conflictCount", "1").with("reasons", reason)
        } else {
            failure
        }
    }
}

/// The refusal as told, without the conflict counts of a single conflict.
fn told(error: Error) -> Failure {
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
        Error::IssuedToday { id, issued, .. } => replaced(
            rule("ISSUED_TODAY").with("authorisationId", &id),
            &id,
            issued,
        ),
        Error::IssuedEarly {
            id,
            issued,
            last_issued,
            due,
            ..
        } => replaced(
            rule("ISSUED_EARLY")
                .with("authorisationId", &id)
                .with("lastIssuedOn", last_issued)
                .with("dueOn", due),
            &id,
            issued,
        ),
        Error::AuthorisationStopped(id) => {
            rule("AUTHORISATION_STOPPED").with("authorisationId", id)
        }
        Error::IssuesUsedUp { id, .. } => rule("ISSUES_USED_UP").with("authorisationId", id),
        Error::AuthorisationExpired { id, .. } => {
            rule("AUTHORISATION_EXPIRED").with("authorisationId", id)
        }
        Error::ReviewOverdue { id, .. } => rule("REVIEW_OVERDUE").with("authorisationId", id),
        Error::NothingToReview => rule("NOTHING_TO_REVIEW"),
        // Told as the first conflict (its reason and ids, and what
        // conflicts of other rules add), with every conflict in the
        // message, their number, and every rule that refused (`reasons`):
        // one override_reason overrides them all.
        Error::SafetyConflicts(conflicts) => {
            let count = conflicts.len();
            let mut each = conflicts.into_iter().map(told);
            match each.next() {
                Some(mut failure) => {
                    let mut reasons = vec![failure.reason];
                    for other in each {
                        if !reasons.contains(&other.reason) {
                            reasons.push(other.reason);
                        }
                        // What a conflict of another rule adds that the
                        // first does not say (an early issue's days beside
                        // an allergy's ids); never its `confidential`, which
                        // says the first names nothing.
                        if other.reason != failure.reason {
                            for (key, value) in other.metadata {
                                let said = failure.metadata.iter().any(|(k, _)| *k == key);
                                if !said && key != "confidential" {
                                    failure.metadata.push((key, value));
                                }
                            }
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

/// A check that judged the issue of an authorisation `id` replaced
/// (`ChangeMedication`, directly or through further changes) names that one
/// too.
fn replaced(failure: Failure, id: &str, issued: String) -> Failure {
    if issued == id {
        failure
    } else {
        failure.with("lastIssuedAuthorisationId", issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(failure: &Failure) -> Vec<(&str, &str)> {
        failure
            .metadata
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect()
    }

    /// Amoxicillin refused for a penicillin allergy the caller may see.
    fn penicillin_in_amoxicillin() -> Error {
        Error::AllergyConflict {
            allergy_id: "allergy-1".into(),
            substance_code: "764146007".into(),
            substance_display: "Penicillin".into(),
            product: "Amoxicillin 500mg capsules".into(),
        }
    }

    #[test]
    fn an_early_issue_beside_an_allergy_keeps_its_days_and_names_the_authorisation_replaced() {
        let told = Failure::from(Error::SafetyConflicts(vec![
            penicillin_in_amoxicillin(),
            Error::IssuedEarly {
                id: "new".into(),
                issued: "old".into(),
                last_issued: "2026-11-26".into(),
                supply_days: 28,
                due: "2026-12-17".into(),
            },
        ]));
        assert_eq!(told.reason, "ALLERGY_CONFLICT");
        assert_eq!(
            metadata(&told),
            [
                ("allergyId", "allergy-1"),
                ("substanceCode", "764146007"),
                ("substanceDisplay", "Penicillin"),
                ("authorisationId", "new"),
                ("lastIssuedOn", "2026-11-26"),
                ("dueOn", "2026-12-17"),
                ("lastIssuedAuthorisationId", "old"),
                ("conflictCount", "2"),
                ("reasons", "ALLERGY_CONFLICT,ISSUED_EARLY"),
            ]
        );
        assert!(
            told.message
                .contains("authorisation old, of which new is a changed version,"),
            "{}",
            told.message
        );
    }

    #[test]
    fn a_named_allergy_beside_a_confidential_one_is_not_told_as_confidential() {
        let told = Failure::from(Error::SafetyConflicts(vec![
            penicillin_in_amoxicillin(),
            Error::ConfidentialAllergyConflict {
                product: "Amoxicillin 500mg capsules".into(),
            },
            Error::ConfidentialDuplicate {
                product: "Amoxicillin 500mg capsules".into(),
            },
        ]));
        assert!(
            !told.metadata.iter().any(|(k, _)| *k == "confidential"),
            "{:?}",
            told.metadata
        );
        assert_eq!(
            told.metadata.last(),
            Some(&(
                "reasons",
                "ALLERGY_CONFLICT,DUPLICATE_PRESCRIPTION".to_owned()
            ))
        );
    }

    #[test]
    fn an_issue_judged_by_its_own_last_issue_names_no_other() {
        let told = Failure::from(Error::IssuedToday {
            id: "a".into(),
            issued: "a".into(),
            issue: 1,
        });
        assert_eq!(
            metadata(&told),
            [
                ("authorisationId", "a"),
                ("conflictCount", "1"),
                ("reasons", "ISSUED_TODAY")
            ]
        );
    }
}
