//! Why a medications command is refused.

use carelog_kernel::Violations;
use thiserror::Error;

#[derive(Debug, Clone, Error)]
pub enum Error {
    #[error("invalid request")]
    Invalid(Violations),
    #[error("allergy {0} is not in this patient's record")]
    AllergyNotFound(String),
    #[error("authorisation {0} is not in this patient's record")]
    AuthorisationNotFound(String),
    #[error("allergy {id} is {status}, not active")]
    AllergyNotActive { id: String, status: &'static str },
    #[error("allergy {id} was entered in error already")]
    AllergyEnteredInError { id: String },
    #[error(
        "{product} contains {substance_display} ({substance_code}), which the patient is allergic to (allergy {allergy_id}); give override_reason to prescribe anyway"
    )]
    AllergyConflict {
        allergy_id: String,
        substance_code: String,
        substance_display: String,
        product: String,
    },
    #[error(
        "{product} is already actively authorised (authorisation {authorisation_id}); change or discontinue it, or give override_reason"
    )]
    DuplicatePrescription {
        authorisation_id: String,
        product: String,
    },
    /// An allergy recorded confidentially by another organisation: neither
    /// it nor its substance is named.
    #[error(
        "{product} conflicts with an allergy recorded confidentially by another organisation; ask the patient, or give override_reason to prescribe anyway"
    )]
    ConfidentialAllergyConflict { product: String },
    /// An authorisation recorded confidentially by another organisation:
    /// it is not named.
    #[error(
        "{product} is already actively authorised, confidentially, by another organisation; give override_reason to prescribe anyway"
    )]
    ConfidentialDuplicate { product: String },
    /// `id` is the authorisation to issue; `issued` the one whose issue
    /// counts: `id` itself or, when `id` has not been issued yet, the
    /// authorisation of the same product it replaced (`ChangeMedication`),
    /// directly or through further changes.
    #[error(
        "{} was issued today already (issue {issue}); give override_reason to issue it again",
        line(.id, .issued)
    )]
    IssuedToday {
        id: String,
        issued: String,
        issue: u32,
    },
    #[error(
        "{} was last issued on {last_issued} for {supply_days} days: an issue before {due} is early; give override_reason to issue it anyway",
        line(.id, .issued)
    )]
    IssuedEarly {
        id: String,
        issued: String,
        last_issued: String,
        supply_days: u32,
        due: String,
    },
    #[error("authorisation {0} was stopped: authorise the medication again to prescribe it")]
    AuthorisationStopped(String),
    #[error("authorisation {id} has used all of its {authorised} authorised issues")]
    IssuesUsedUp { id: String, authorised: u32 },
    #[error("authorisation {id} expired on {expiry}")]
    AuthorisationExpired { id: String, expiry: String },
    #[error(
        "authorisation {id} was due for review on {review_date}: record a medication review before issuing"
    )]
    ReviewOverdue { id: String, review_date: String },
    #[error("the patient has no active repeat medication to review")]
    NothingToReview,
    /// Two or more safety checks refused: every one is named, so that an
    /// override_reason is given having seen them all.
    #[error("{} safety conflicts: {}", .0.len(), list(.0))]
    SafetyConflicts(Vec<Error>),
}

/// The authorisation whose last issue a check judged, as told: itself, or
/// the one it replaced.
fn line(id: &str, issued: &str) -> String {
    if id == issued {
        format!("authorisation {id}")
    } else {
        format!("authorisation {issued}, of which {id} is a changed version,")
    }
}

fn list(errors: &[Error]) -> String {
    errors
        .iter()
        .enumerate()
        .map(|(i, e)| format!("({}) {e}", i + 1))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// The refusal of these safety conflicts, if any: one named alone,
    /// several together.
    pub fn conflicts(mut conflicts: Vec<Error>) -> Option<Self> {
        match conflicts.len() {
            0 => None,
            1 => conflicts.pop(),
            _ => Some(Self::SafetyConflicts(conflicts)),
        }
    }

    /// One safety conflict (an override_reason would override it).
    pub fn is_safety_conflict(&self) -> bool {
        matches!(
            self,
            Self::AllergyConflict { .. }
                | Self::ConfidentialAllergyConflict { .. }
                | Self::DuplicatePrescription { .. }
                | Self::ConfidentialDuplicate { .. }
                | Self::IssuedToday { .. }
                | Self::IssuedEarly { .. }
        )
    }

    pub fn invalid(field: &str, rule: &str) -> Self {
        let mut v = Violations::new();
        v.add(field, rule);
        Self::Invalid(v)
    }

    /// Whether this refusal held back an item confidential to another
    /// organisation (it says one conflicts, naming nothing of it).
    pub fn withholds(&self) -> bool {
        match self {
            Self::ConfidentialAllergyConflict { .. } | Self::ConfidentialDuplicate { .. } => true,
            Self::SafetyConflicts(conflicts) => conflicts.iter().any(Self::withholds),
            _ => false,
        }
    }

    /// The items of the patient's record this refusal tells the caller of
    /// (an allergy the product conflicts with, an authorisation already
    /// active, when one was last issued, that one expired): a read of them,
    /// audited as one. A confidential item is named by none.
    pub fn items_named(&self) -> Vec<String> {
        let mut named = match self {
            Self::AllergyConflict { allergy_id, .. } => vec![allergy_id.clone()],
            Self::DuplicatePrescription {
                authorisation_id, ..
            } => vec![authorisation_id.clone()],
            Self::IssuedToday { id, issued, .. } | Self::IssuedEarly { id, issued, .. } => {
                vec![id.clone(), issued.clone()]
            }
            Self::AllergyNotActive { id, .. }
            | Self::AllergyEnteredInError { id }
            | Self::AuthorisationStopped(id)
            | Self::IssuesUsedUp { id, .. }
            | Self::AuthorisationExpired { id, .. }
            | Self::ReviewOverdue { id, .. } => vec![id.clone()],
            Self::SafetyConflicts(conflicts) => {
                conflicts.iter().flat_map(Self::items_named).collect()
            }
            Self::Invalid(_)
            | Self::AllergyNotFound(_)
            | Self::AuthorisationNotFound(_)
            | Self::ConfidentialAllergyConflict { .. }
            | Self::ConfidentialDuplicate { .. }
            | Self::NothingToReview => Vec::new(),
        };
        named.sort();
        named.dedup();
        named
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_items_it_tells_of_and_never_a_confidential_one() {
        // Given amoxicillin refused for the practice's penicillin allergy,
        // the clinic's confidential one and an issue already made today
        let refused = Error::SafetyConflicts(vec![
            Error::AllergyConflict {
                allergy_id: "practice-allergy".into(),
                substance_code: "764146007".into(),
                substance_display: "Penicillin".into(),
                product: "Amoxicillin 500mg capsules".into(),
            },
            Error::ConfidentialAllergyConflict {
                product: "Amoxicillin 500mg capsules".into(),
            },
            Error::IssuedToday {
                id: "changed-repeat".into(),
                issued: "first-repeat".into(),
                issue: 3,
            },
        ]);
        // Then it names the practice's allergy and both authorisations,
        // once each, and nothing of the clinic's, which it holds back
        assert_eq!(
            refused.items_named(),
            ["changed-repeat", "first-repeat", "practice-allergy"]
        );
        assert!(refused.withholds());
        // while a refusal of input names nothing of the record
        assert!(
            Error::invalid("details.supply_days", "at most 365")
                .items_named()
                .is_empty()
        );
    }
}
