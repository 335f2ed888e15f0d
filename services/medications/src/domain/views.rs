//! Medication resources as a reader may see them (ADR 0024).

use carelog_kernel::Actor;
use carelog_kernel::confidential::{self, withhold};
use carelog_proto::kernel::v1 as kpb;
use carelog_proto::medications::v1 as pb;
use chrono::NaiveDate;

use super::values::date_proto;
use super::{Command, MedicationRecord};

/// The authorisations `actor` may see, each as they may see it: another
/// organisation's confidential ones left out (their number returned), and
/// of the rest, the overrides withheld as [`withhold_overrides`] says.
pub fn withhold_authorisations(authorisations: &mut Vec<pb::Authorisation>, actor: &Actor) -> i32 {
    let withheld = withhold(authorisations, actor, |a| {
        (a.confidential, a.author_organisation_ods.as_str())
    });
    for a in authorisations {
        withhold_overrides(a, actor.organisation.as_str());
    }
    withheld
}

/// Leaves out of an authorisation's overridden safety checks which allergy
/// or authorisation each was, when another organisation than the reader's
/// recorded it confidentially: its id, its substance and its author, and
/// the prescriber's reason, which may name it, unless the reader's
/// organisation gave it (`reason_withheld`). One reason is given for every
/// check a command overrode, so the same words are left out of the other
/// overrides too. The override itself and its kind stay. Returns the
/// reasons left out.
pub fn withhold_overrides(
    authorisation: &mut pb::Authorisation,
    organisation: &str,
) -> Vec<String> {
    let mut reasons = Vec::new();
    for o in &mut authorisation.overrides {
        if !confidential::visible_to_organisation(
            organisation,
            o.confidential,
            &o.author_organisation_ods,
        ) {
            o.allergy_id.clear();
            o.substance = None;
            o.authorisation_id.clear();
            o.author_organisation_ods.clear();
            if o.prescriber_organisation_ods != organisation && !o.reason.is_empty() {
                reasons.push(o.reason.clone());
            }
        }
    }
    for o in &mut authorisation.overrides {
        if reasons.contains(&o.reason) {
            o.reason.clear();
            o.reason_withheld = true;
        }
    }
    reasons
}

/// Whether [`withhold_overrides`] left something out of this
/// authorisation's overrides (which item one overrode, or its reason): a
/// read of it is then audited as withheld.
pub fn overrides_withheld(authorisation: &pb::Authorisation) -> bool {
    authorisation
        .overrides
        .iter()
        .any(|o| o.reason_withheld || (o.confidential && o.author_organisation_ods.is_empty()))
}

/// The authorisations a medication review answers with, for `actor`: the
/// active ones they may see (a review of "every repeat" covers only those),
/// those it `named` when it named some, reviewed `today` and next due on
/// the date it set (`next_review_date`). The same for a review repeated
/// under its request id, which shows the first one's.
pub fn reviewed<'r: 'a, 'a>(
    record: &'r MedicationRecord,
    actor: &'a Actor,
    named: &'a [String],
    today: NaiveDate,
    next_review_date: Option<kpb::PartialDate>,
) -> impl Iterator<Item = &'r pb::Authorisation> + 'a {
    let today = Some(date_proto(today));
    record
        .active_authorisations()
        .filter(|a| confidential::visible_to(actor, a.confidential, &a.author_organisation_ods))
        .filter(move |a| named.is_empty() || named.contains(&a.authorisation_id))
        .filter(move |a| a.last_reviewed_on == today)
        .filter(move |a| {
            a.details
                .as_ref()
                .is_some_and(|d| d.review_date == next_review_date)
        })
}

/// The items the answer to `command` shows `actor`, by id: what the answer
/// to the command repeated under its request id reads of the record, and
/// its access event names (ADR 0018).
pub fn answer_ids(
    record: &MedicationRecord,
    command: &Command,
    actor: &Actor,
    today: NaiveDate,
) -> Vec<String> {
    match command {
        Command::RecordAllergy { allergy_id, .. }
        | Command::ResolveAllergy { allergy_id, .. }
        | Command::MarkAllergyEnteredInError { allergy_id, .. } => vec![allergy_id.to_string()],
        Command::Authorise {
            authorisation_id, ..
        }
        | Command::Discontinue {
            authorisation_id, ..
        } => vec![authorisation_id.to_string()],
        Command::Change {
            authorisation_id,
            new_authorisation_id,
            ..
        } => vec![
            authorisation_id.to_string(),
            new_authorisation_id.to_string(),
        ],
        Command::Issue { issue_id, .. } => vec![issue_id.to_string()],
        Command::Review {
            authorisation_ids,
            next_review_date,
            ..
        } => {
            let named: Vec<String> = authorisation_ids.iter().map(ToString::to_string).collect();
            reviewed(record, actor, &named, today, *next_review_date)
                .map(|a| a.authorisation_id.clone())
                .collect()
        }
    }
}

/// Whether the answer to `command`, repeated under its request id, withholds
/// something of the authorisations it shows from `actor` (which item an
/// override was over, or its reason): the read it is then is audited as
/// withheld.
pub fn answer_withholds(
    record: &MedicationRecord,
    command: &Command,
    actor: &Actor,
    today: NaiveDate,
) -> bool {
    answer_ids(record, command, actor, today)
        .iter()
        .filter_map(|id| record.authorisation(id))
        .any(|a| {
            let mut a = a.clone();
            withhold_overrides(&mut a, actor.organisation.as_str());
            overrides_withheld(&a)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use carelog_kernel::ids::AuthorisationId;

    fn overridden_against_the_clinics_allergy() -> pb::Authorisation {
        pb::Authorisation {
            overrides: vec![
                pb::SafetyOverride {
                    kind: pb::safety_override::Kind::Allergy as i32,
                    allergy_id: "clinic-allergy".into(),
                    substance: Some(pb::Coding {
                        code: "764146007".into(),
                        display: "Penicillin".into(),
                    }),
                    reason: "tolerated amoxicillin last year".into(),
                    confidential: true,
                    author_organisation_ods: "RYJ01".into(),
                    prescriber_organisation_ods: "A81001".into(),
                    ..Default::default()
                },
                pb::SafetyOverride {
                    kind: pb::safety_override::Kind::Duplicate as i32,
                    authorisation_id: "practice-repeat".into(),
                    reason: "second supply while away".into(),
                    author_organisation_ods: "A81001".into(),
                    prescriber_organisation_ods: "A81001".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn an_override_of_a_confidential_allergy_names_it_only_inside_its_authors_organisation() {
        // Given a practice prescription that overrode the sexual health
        // clinic's confidential penicillin allergy and a practice repeat
        let mut at_clinic = overridden_against_the_clinics_allergy();
        let mut at_practice = at_clinic.clone();
        let mut at_hospital = at_clinic.clone();
        // When the clinic, the practice and a hospital read it
        withhold_overrides(&mut at_clinic, "RYJ01");
        withhold_overrides(&mut at_practice, "A81001");
        withhold_overrides(&mut at_hospital, "RR8");
        // Then the clinic sees what it recorded, and its read withheld
        // nothing
        assert_eq!(at_clinic, overridden_against_the_clinics_allergy());
        assert!(!overrides_withheld(&at_clinic));
        // while the practice's and the hospital's reads withheld something
        assert!(overrides_withheld(&at_practice) && overrides_withheld(&at_hospital));
        // and the practice sees that a confidential allergy was overridden,
        // and its own reason, but not which allergy, substance or
        // organisation
        let allergy = &at_practice.overrides[0];
        assert!(allergy.confidential);
        assert_eq!(allergy.kind, pb::safety_override::Kind::Allergy as i32);
        assert_eq!(allergy.reason, "tolerated amoxicillin last year");
        assert!(!allergy.reason_withheld);
        assert!(allergy.allergy_id.is_empty());
        assert!(allergy.substance.is_none());
        assert!(allergy.author_organisation_ods.is_empty());
        // and the ordinary duplicate override whole
        assert_eq!(
            at_practice.overrides[1],
            overridden_against_the_clinics_allergy().overrides[1]
        );
        // while the hospital is not shown the practice's reason either,
        // which may name the allergy, and is told it was withheld
        let allergy = &at_hospital.overrides[0];
        assert!(allergy.confidential && allergy.reason_withheld);
        assert!(allergy.reason.is_empty() && allergy.allergy_id.is_empty());
        assert_eq!(allergy.prescriber_organisation_ods, "A81001");
        assert_eq!(
            at_hospital.overrides[1],
            overridden_against_the_clinics_allergy().overrides[1]
        );
    }

    #[test]
    fn one_reason_given_for_two_checks_is_withheld_from_both() {
        // Given the practice's single reason for overriding the clinic's
        // confidential allergy and its own duplicate repeat
        let mut shown = overridden_against_the_clinics_allergy();
        shown.overrides[1].reason = shown.overrides[0].reason.clone();
        // When a hospital reads it
        let withheld = withhold_overrides(&mut shown, "RR8");
        // Then the reason is left out of both overrides, the duplicate
        // still named
        assert_eq!(withheld, ["tolerated amoxicillin last year"]);
        assert!(
            shown
                .overrides
                .iter()
                .all(|o| o.reason.is_empty() && o.reason_withheld)
        );
        assert_eq!(shown.overrides[1].authorisation_id, "practice-repeat");
    }

    fn reader(organisation: &str) -> Actor {
        Actor {
            user_id: "reader".into(),
            display_name: String::new(),
            role: "R8000".into(),
            organisation: carelog_kernel::OdsCode::parse(organisation).expect("ods"),
            purpose_of_use: "DIRECT_CARE".into(),
        }
    }

    #[test]
    fn a_repeated_prescription_over_the_clinics_allergy_is_an_answer_that_withholds_outside_the_clinic()
     {
        // Given the practice's repeat, reviewed today and next due in three
        // months, that overrode the clinic's confidential penicillin allergy
        let today = NaiveDate::from_ymd_opt(2026, 12, 6).expect("date");
        let next = Some(date_proto(
            NaiveDate::from_ymd_opt(2027, 3, 6).expect("date"),
        ));
        let id = AuthorisationId::new();
        let repeat = pb::Authorisation {
            authorisation_id: id.to_string(),
            status: pb::AuthorisationStatus::Active as i32,
            last_reviewed_on: Some(date_proto(today)),
            details: Some(pb::AuthorisationDetails {
                prescription_type: pb::PrescriptionType::Repeat as i32,
                review_date: next,
                ..Default::default()
            }),
            author_organisation_ods: "A81001".into(),
            ..overridden_against_the_clinics_allergy()
        };
        let record = MedicationRecord {
            authorisations: vec![repeat.clone()],
            ..Default::default()
        };
        let authorised = Command::Authorise {
            authorisation_id: id,
            details: pb::AuthorisationDetails::default(),
            override_reason: String::new(),
            confidential: false,
        };
        let review = |next_review_date| Command::Review {
            authorisation_ids: Vec::new(),
            next_review_date,
            note: String::new(),
        };
        // Then its answer, repeated, withholds something from the practice
        // and the hospital, and nothing from the clinic
        let withholds = |command: &Command, organisation: &str| {
            answer_withholds(&record, command, &reader(organisation), today)
        };
        assert!(withholds(&authorised, "A81001"));
        assert!(withholds(&review(next), "RR8"));
        assert!(!withholds(&authorised, "RYJ01"));
        // while a review whose answer does not show it (another date set)
        // withholds nothing, nor does an answer that shows no authorisation
        assert!(!withholds(&review(None), "RR8"));
        let resolved = Command::ResolveAllergy {
            allergy_id: carelog_kernel::ids::AllergyId::new(),
            resolved_on: None,
            reason: String::new(),
        };
        assert!(!withholds(&resolved, "RR8"));
        // and no more than the review itself shows
        let shown: Vec<_> = reviewed(&record, &reader("RR8"), &[], today, next).collect();
        assert_eq!(shown, [&repeat]);
    }
}
