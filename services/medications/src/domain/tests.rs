//! Given past events, when a command, then these events or this refusal:
//! the rules of the medication record as clinical scenarios.

use carelog_kernel::Aggregate as _;
use carelog_kernel::date::PartialDate;
use carelog_kernel::ids::{AllergyId, AuthorisationId, IssueId};
use carelog_proto::kernel::v1 as kpb;
use carelog_proto::medications::v1 as pb;
use chrono::{Days, NaiveDate};
use pb::event::Event as E;

use super::values::date_proto;
use super::{Command, Error, Facts, MedicationRecord, decide};
use crate::catalogue::DrugCatalogue;

const PENICILLIN: &str = "764146007";
const AMOXICILLIN_500: &str = "323509004";
const CLARITHROMYCIN_500: &str = "324430000";
const PARACETAMOL_500: &str = "322236009";

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 10).expect("date")
}

fn in_days(days: u64) -> kpb::PartialDate {
    date_proto(today() + Days::new(days))
}

/// The harness: a record built from past events, decided on today.
struct Given {
    record: MedicationRecord,
    today: NaiveDate,
    catalogue: DrugCatalogue,
}

fn given(events: Vec<pb::Event>) -> Given {
    let mut record = MedicationRecord::default();
    for e in &events {
        record.apply(e);
    }
    Given {
        record,
        today: today(),
        catalogue: DrugCatalogue::sample(),
    }
}

impl Given {
    fn on(mut self, day: NaiveDate) -> Self {
        self.today = day;
        self
    }

    fn when(&self, command: Command) -> Result<Vec<pb::Event>, Error> {
        let facts = Facts {
            today: self.today,
            birth_date: PartialDate::new(1950, 3, 14).ok(),
            catalogue: &self.catalogue,
        };
        decide(&self.record, &facts, &command)
    }
}

fn ev(e: E) -> pb::Event {
    pb::Event { event: Some(e) }
}

fn only(events: Vec<pb::Event>) -> E {
    assert_eq!(events.len(), 1, "{events:?}");
    events
        .into_iter()
        .next()
        .and_then(|e| e.event)
        .expect("an event")
}

fn penicillin_allergy() -> pb::AllergyDetails {
    pb::AllergyDetails {
        substance: Some(pb::Coding {
            code: PENICILLIN.into(),
            display: "Penicillin".into(),
        }),
        kind: pb::AllergyKind::Allergy as i32,
        reaction: "urticaria".into(),
        severity: pb::Severity::Moderate as i32,
        certainty: pb::Certainty::Confirmed as i32,
        onset: Some(kpb::PartialDate {
            year: 1998,
            month: 0,
            day: 0,
        }),
    }
}

fn allergy_recorded(id: AllergyId) -> pb::Event {
    ev(E::AllergyRecorded(pb::AllergyRecorded {
        allergy_id: id.to_string(),
        details: Some(penicillin_allergy()),
        recorded_on: Some(date_proto(today())),
    }))
}

fn repeat(product: &str, issues: u32) -> pb::AuthorisationDetails {
    pb::AuthorisationDetails {
        product: Some(pb::Coding {
            code: product.into(),
            display: String::new(),
        }),
        dose_instructions: "one tablet twice a day".into(),
        quantity: "28".into(),
        quantity_unit: "tablet".into(),
        prescription_type: pb::PrescriptionType::Repeat as i32,
        authorised_issues: issues,
        review_date: Some(in_days(90)),
        expiry_date: Some(in_days(180)),
    }
}

fn acute(product: &str) -> pb::AuthorisationDetails {
    pb::AuthorisationDetails {
        prescription_type: pb::PrescriptionType::Acute as i32,
        authorised_issues: 0,
        review_date: None,
        expiry_date: None,
        ..repeat(product, 0)
    }
}

/// The event of an authorisation decided on an empty record.
fn authorised(id: AuthorisationId, details: pb::AuthorisationDetails) -> pb::Event {
    let events = given(vec![])
        .when(Command::Authorise {
            authorisation_id: id,
            details,
            override_reason: String::new(),
        })
        .expect("authorised");
    events.into_iter().next().expect("one event")
}

fn issued(authorisation: AuthorisationId, number: u32) -> pb::Event {
    ev(E::PrescriptionIssued(pb::PrescriptionIssued {
        issue_id: IssueId::new().to_string(),
        authorisation_id: authorisation.to_string(),
        issue_number: number,
        issued_on: Some(date_proto(today())),
    }))
}

fn authorise(details: pb::AuthorisationDetails, override_reason: &str) -> Command {
    Command::Authorise {
        authorisation_id: AuthorisationId::new(),
        details,
        override_reason: override_reason.into(),
    }
}

fn issue(authorisation_id: AuthorisationId) -> Command {
    Command::Issue {
        issue_id: IssueId::new(),
        authorisation_id,
    }
}

fn fields(error: Error) -> Vec<String> {
    match error {
        Error::Invalid(v) => v.iter().map(|v| v.field.clone()).collect(),
        other => panic!("expected invalid input, got {other:?}"),
    }
}

// Allergies.

#[test]
fn when_a_penicillin_allergy_is_recorded_then_it_is_active() {
    let id = AllergyId::new();
    let events = given(vec![])
        .when(Command::RecordAllergy {
            allergy_id: id,
            details: penicillin_allergy(),
        })
        .expect("recorded");
    let E::AllergyRecorded(e) = only(events.clone()) else {
        panic!("AllergyRecorded expected");
    };
    assert_eq!(e.allergy_id, id.to_string());
    assert_eq!(e.recorded_on, Some(date_proto(today())));
    let record = given(events).record;
    assert_eq!(record.active_allergies().count(), 1);
}

#[test]
fn when_an_allergy_lacks_its_substance_reaction_severity_and_certainty_then_each_field_is_named() {
    let error = given(vec![])
        .when(Command::RecordAllergy {
            allergy_id: AllergyId::new(),
            details: pb::AllergyDetails {
                substance: Some(pb::Coding {
                    code: "764146008".into(),
                    display: String::new(),
                }),
                onset: Some(kpb::PartialDate {
                    year: 1940,
                    month: 1,
                    day: 1,
                }),
                ..Default::default()
            },
        })
        .expect_err("refused");
    assert_eq!(
        fields(error),
        vec![
            "allergy.substance.code",
            "allergy.substance.display",
            "allergy.reaction",
            "allergy.severity",
            "allergy.certainty",
            "allergy.onset"
        ]
    );
}

#[test]
fn when_an_allergys_onset_is_in_the_future_then_it_is_refused() {
    let mut details = penicillin_allergy();
    details.onset = Some(in_days(3));
    let error = given(vec![])
        .when(Command::RecordAllergy {
            allergy_id: AllergyId::new(),
            details,
        })
        .expect_err("refused");
    assert_eq!(fields(error), vec!["allergy.onset"]);
}

#[test]
fn given_an_active_allergy_when_it_is_resolved_with_a_reason_then_it_is_resolved_apart() {
    let id = AllergyId::new();
    let g = given(vec![allergy_recorded(id)]);
    let events = g
        .when(Command::ResolveAllergy {
            allergy_id: id,
            resolved_on: None,
            reason: "tolerated a challenge dose in clinic".into(),
        })
        .expect("resolved");
    let E::AllergyResolved(e) = only(events.clone()) else {
        panic!("AllergyResolved expected");
    };
    assert_eq!(e.resolved_on, Some(date_proto(today())));
    let record = given([vec![allergy_recorded(id)], events].concat()).record;
    assert_eq!(record.active_allergies().count(), 0);
    assert_eq!(
        record.allergy(&id.to_string()).map(|a| a.status),
        Some(pb::AllergyStatus::Resolved as i32)
    );
}

#[test]
fn given_an_active_allergy_when_it_is_resolved_without_a_reason_then_it_is_refused() {
    let id = AllergyId::new();
    let error = given(vec![allergy_recorded(id)])
        .when(Command::ResolveAllergy {
            allergy_id: id,
            resolved_on: None,
            reason: " ".into(),
        })
        .expect_err("refused");
    assert_eq!(fields(error), vec!["reason"]);
}

#[test]
fn given_a_resolved_allergy_when_it_is_resolved_again_then_it_is_refused_as_not_active() {
    let id = AllergyId::new();
    let resolved = ev(E::AllergyResolved(pb::AllergyResolved {
        allergy_id: id.to_string(),
        resolved_on: Some(date_proto(today())),
        reason: "outgrown".into(),
    }));
    let error = given(vec![allergy_recorded(id), resolved])
        .when(Command::ResolveAllergy {
            allergy_id: id,
            resolved_on: None,
            reason: "again".into(),
        })
        .expect_err("refused");
    assert!(matches!(error, Error::AllergyNotActive { .. }), "{error:?}");
}

#[test]
fn when_an_unknown_allergy_is_resolved_then_it_is_not_found() {
    let error = given(vec![])
        .when(Command::ResolveAllergy {
            allergy_id: AllergyId::new(),
            resolved_on: None,
            reason: "why".into(),
        })
        .expect_err("refused");
    assert!(matches!(error, Error::AllergyNotFound(_)), "{error:?}");
}

#[test]
fn given_an_allergy_recorded_by_mistake_when_marked_entered_in_error_then_it_leaves_the_current_list()
 {
    let id = AllergyId::new();
    let g = given(vec![allergy_recorded(id)]);
    let events = g
        .when(Command::MarkAllergyEnteredInError {
            allergy_id: id,
            reason: "recorded on the wrong patient".into(),
        })
        .expect("entered in error");
    assert!(matches!(only(events.clone()), E::AllergyEnteredInError(_)));
    let later = given([vec![allergy_recorded(id)], events.clone()].concat());
    assert_eq!(later.record.active_allergies().count(), 0);
    let again = later
        .when(Command::MarkAllergyEnteredInError {
            allergy_id: id,
            reason: "again".into(),
        })
        .expect_err("twice");
    assert!(matches!(again, Error::AllergyEnteredInError { .. }));
    let no_reason = given(vec![allergy_recorded(id)])
        .when(Command::MarkAllergyEnteredInError {
            allergy_id: id,
            reason: String::new(),
        })
        .expect_err("no reason");
    assert_eq!(fields(no_reason), vec!["reason"]);
}

// Authorising, with the safety checks.

#[test]
fn when_a_repeat_is_authorised_then_the_catalogue_names_the_product_and_its_ingredients_are_recorded()
 {
    let events = given(vec![])
        .when(authorise(repeat(CLARITHROMYCIN_500, 6), ""))
        .expect("authorised");
    let E::MedicationAuthorised(e) = only(events) else {
        panic!("MedicationAuthorised expected");
    };
    let details = e.details.expect("details");
    assert_eq!(
        details.product.map(|p| p.display),
        Some("Clarithromycin 500mg tablets".to_owned())
    );
    assert_eq!(details.authorised_issues, 6);
    assert_eq!(e.ingredient_codes, vec!["372709008"]);
    assert!(e.overrides.is_empty());
}

#[test]
fn when_an_acute_is_authorised_then_it_allows_exactly_one_issue() {
    let events = given(vec![])
        .when(authorise(acute(PARACETAMOL_500), ""))
        .expect("authorised");
    let E::MedicationAuthorised(e) = only(events) else {
        panic!("MedicationAuthorised expected");
    };
    assert_eq!(e.details.map(|d| d.authorised_issues), Some(1));
}

#[test]
fn given_a_penicillin_allergy_when_amoxicillin_is_prescribed_then_it_is_refused_naming_the_allergy()
{
    let allergy = AllergyId::new();
    let error = given(vec![allergy_recorded(allergy)])
        .when(authorise(acute(AMOXICILLIN_500), ""))
        .expect_err("refused");
    match error {
        Error::AllergyConflict {
            allergy_id,
            substance_code,
            substance_display,
            product,
        } => {
            assert_eq!(allergy_id, allergy.to_string());
            assert_eq!(substance_code, PENICILLIN);
            assert_eq!(substance_display, "Penicillin");
            assert_eq!(product, "Amoxicillin 500mg capsules");
        }
        other => panic!("expected an allergy conflict, got {other:?}"),
    }
}

#[test]
fn given_a_penicillin_allergy_when_amoxicillin_is_prescribed_with_an_override_reason_then_the_override_is_recorded()
 {
    let allergy = AllergyId::new();
    let events = given(vec![allergy_recorded(allergy)])
        .when(authorise(
            acute(AMOXICILLIN_500),
            "allergy disputed: tolerated amoxicillin in 2020, discussed with patient",
        ))
        .expect("overridden");
    let E::MedicationAuthorised(e) = only(events) else {
        panic!("MedicationAuthorised expected");
    };
    assert_eq!(e.overrides.len(), 1);
    let o = &e.overrides[0];
    assert_eq!(o.kind, pb::safety_override::Kind::Allergy as i32);
    assert_eq!(o.allergy_id, allergy.to_string());
    assert!(o.reason.starts_with("allergy disputed"));
}

#[test]
fn given_a_resolved_or_mistaken_penicillin_allergy_when_amoxicillin_is_prescribed_then_it_is_allowed()
 {
    let allergy = AllergyId::new();
    let mistaken = ev(E::AllergyEnteredInError(pb::AllergyEnteredInError {
        allergy_id: allergy.to_string(),
        reason: "wrong patient".into(),
    }));
    given(vec![allergy_recorded(allergy), mistaken])
        .when(authorise(acute(AMOXICILLIN_500), ""))
        .expect("no active allergy");
}

#[test]
fn given_an_active_clarithromycin_repeat_when_it_is_authorised_again_then_it_is_refused_as_a_duplicate()
 {
    let first = AuthorisationId::new();
    let g = given(vec![authorised(first, repeat(CLARITHROMYCIN_500, 6))]);
    let error = g
        .when(authorise(repeat(CLARITHROMYCIN_500, 6), ""))
        .expect_err("duplicate");
    assert!(
        matches!(&error, Error::DuplicatePrescription { authorisation_id, .. } if *authorisation_id == first.to_string()),
        "{error:?}"
    );
    let events = g
        .when(authorise(
            repeat(CLARITHROMYCIN_500, 6),
            "second supply for a care home",
        ))
        .expect("overridden");
    let E::MedicationAuthorised(e) = only(events) else {
        panic!("MedicationAuthorised expected");
    };
    assert_eq!(
        e.overrides[0].kind,
        pb::safety_override::Kind::Duplicate as i32
    );
    assert_eq!(e.overrides[0].authorisation_id, first.to_string());
}

#[test]
fn when_an_authorisation_is_malformed_then_every_field_is_named() {
    let details = pb::AuthorisationDetails {
        product: Some(pb::Coding {
            code: "387517004".into(),
            display: String::new(),
        }),
        dose_instructions: String::new(),
        quantity: "-3".into(),
        quantity_unit: String::new(),
        prescription_type: pb::PrescriptionType::Repeat as i32,
        authorised_issues: 0,
        review_date: Some(kpb::PartialDate {
            year: 2026,
            month: 1,
            day: 1,
        }),
        expiry_date: Some(kpb::PartialDate {
            year: 2027,
            month: 0,
            day: 0,
        }),
    };
    let error = given(vec![])
        .when(authorise(details, ""))
        .expect_err("refused");
    assert_eq!(
        fields(error),
        vec![
            "authorisation.product.code",
            "authorisation.dose_instructions",
            "authorisation.quantity",
            "authorisation.quantity_unit",
            "authorisation.authorised_issues",
            "authorisation.review_date",
            "authorisation.expiry_date"
        ]
    );
}

#[test]
fn when_a_repeat_has_a_review_after_its_expiry_or_an_acute_has_a_review_date_then_it_is_refused() {
    let mut details = repeat(CLARITHROMYCIN_500, 6);
    details.review_date = Some(in_days(200));
    let error = given(vec![])
        .when(authorise(details, ""))
        .expect_err("refused");
    assert_eq!(fields(error), vec!["authorisation.review_date"]);
    let mut details = acute(PARACETAMOL_500);
    details.review_date = Some(in_days(10));
    details.authorised_issues = 2;
    let error = given(vec![])
        .when(authorise(details, ""))
        .expect_err("refused");
    assert_eq!(
        fields(error),
        vec![
            "authorisation.authorised_issues",
            "authorisation.review_date"
        ]
    );
}

// Issuing.

#[test]
fn given_a_repeat_of_two_issues_when_issued_twice_then_the_third_is_refused_as_used_up() {
    let id = AuthorisationId::new();
    let mut history = vec![authorised(id, repeat(CLARITHROMYCIN_500, 2))];
    for expected in 1..=2 {
        let events = given(history.clone()).when(issue(id)).expect("issued");
        let E::PrescriptionIssued(e) = only(events.clone()) else {
            panic!("PrescriptionIssued expected");
        };
        assert_eq!(e.issue_number, expected);
        history.extend(events);
    }
    let g = given(history);
    let a = g
        .record
        .authorisation(&id.to_string())
        .expect("authorisation");
    assert_eq!(a.issues_made, 2);
    assert_eq!(g.record.issues.len(), 2);
    let error = g.when(issue(id)).expect_err("used up");
    assert!(
        matches!(error, Error::IssuesUsedUp { authorised: 2, .. }),
        "{error:?}"
    );
}

#[test]
fn given_an_acute_issued_once_when_issued_again_then_it_is_refused_as_used_up() {
    let id = AuthorisationId::new();
    let error = given(vec![authorised(id, acute(PARACETAMOL_500)), issued(id, 1)])
        .when(issue(id))
        .expect_err("used up");
    assert!(matches!(error, Error::IssuesUsedUp { authorised: 1, .. }));
}

#[test]
fn given_a_repeat_past_its_expiry_when_issued_then_it_is_refused_as_expired() {
    let id = AuthorisationId::new();
    let g = given(vec![authorised(id, repeat(CLARITHROMYCIN_500, 6))]);
    let error = g
        .on(today() + Days::new(181))
        .when(issue(id))
        .expect_err("expired");
    assert!(
        matches!(error, Error::AuthorisationExpired { .. }),
        "{error:?}"
    );
}

#[test]
fn given_a_repeat_past_its_review_date_when_issued_then_it_is_refused_until_a_review() {
    let id = AuthorisationId::new();
    let history = vec![authorised(id, repeat(CLARITHROMYCIN_500, 6))];
    let later = today() + Days::new(91);
    let error = given(history.clone())
        .on(later)
        .when(issue(id))
        .expect_err("review overdue");
    assert!(matches!(error, Error::ReviewOverdue { .. }), "{error:?}");
    let review = given(history.clone())
        .on(later)
        .when(Command::Review {
            authorisation_ids: vec![],
            next_review_date: Some(date_proto(later + Days::new(60))),
            note: "reviewed with patient, continue".into(),
        })
        .expect("reviewed");
    let E::MedicationReviewed(e) = only(review.clone()) else {
        panic!("MedicationReviewed expected");
    };
    assert_eq!(e.authorisation_ids, vec![id.to_string()]);
    given([history, review].concat())
        .on(later)
        .when(issue(id))
        .expect("issued after the review");
}

#[test]
fn given_a_discontinued_authorisation_when_issued_then_it_is_refused_as_stopped() {
    let id = AuthorisationId::new();
    let stopped = ev(E::MedicationDiscontinued(pb::MedicationDiscontinued {
        authorisation_id: id.to_string(),
        discontinued_on: Some(date_proto(today())),
        reason: "side effects".into(),
        replaced_by_authorisation_id: String::new(),
    }));
    let error = given(vec![authorised(id, repeat(CLARITHROMYCIN_500, 6)), stopped])
        .when(issue(id))
        .expect_err("stopped");
    assert!(matches!(error, Error::AuthorisationStopped(_)), "{error:?}");
}

#[test]
fn when_an_unknown_authorisation_is_issued_then_it_is_not_found() {
    let error = given(vec![])
        .when(issue(AuthorisationId::new()))
        .expect_err("unknown");
    assert!(matches!(error, Error::AuthorisationNotFound(_)));
}

// Discontinuing, changing and reviewing.

#[test]
fn given_an_active_repeat_when_discontinued_with_a_reason_then_it_is_stopped_and_a_reason_is_required()
 {
    let id = AuthorisationId::new();
    let g = given(vec![authorised(id, repeat(CLARITHROMYCIN_500, 6))]);
    let error = g
        .when(Command::Discontinue {
            authorisation_id: id,
            reason: String::new(),
        })
        .expect_err("no reason");
    assert_eq!(fields(error), vec!["reason"]);
    let events = g
        .when(Command::Discontinue {
            authorisation_id: id,
            reason: "course complete".into(),
        })
        .expect("discontinued");
    assert!(matches!(only(events.clone()), E::MedicationDiscontinued(_)));
    let later = given([vec![authorised(id, repeat(CLARITHROMYCIN_500, 6))], events].concat());
    assert_eq!(later.record.active_authorisations().count(), 0);
    let again = later
        .when(Command::Discontinue {
            authorisation_id: id,
            reason: "again".into(),
        })
        .expect_err("already stopped");
    assert!(matches!(again, Error::AuthorisationStopped(_)));
}

#[test]
fn given_a_repeat_when_its_dose_changes_then_it_is_stopped_and_a_linked_authorisation_starts_in_one_commit()
 {
    let old = AuthorisationId::new();
    let new = AuthorisationId::new();
    let history = vec![authorised(old, repeat(CLARITHROMYCIN_500, 6))];
    let events = given(history.clone())
        .when(Command::Change {
            authorisation_id: old,
            new_authorisation_id: new,
            details: pb::AuthorisationDetails {
                dose_instructions: "one tablet once a day".into(),
                quantity: "14".into(),
                ..Default::default()
            },
            paths: vec!["dose_instructions".into(), "quantity".into()],
            reason: "dose reduced: renal function".into(),
            override_reason: String::new(),
        })
        .expect("changed");
    assert_eq!(events.len(), 2);
    let record = given([history.clone(), events].concat()).record;
    let stopped = record.authorisation(&old.to_string()).expect("old");
    let started = record.authorisation(&new.to_string()).expect("new");
    assert_eq!(stopped.status, pb::AuthorisationStatus::Discontinued as i32);
    assert_eq!(stopped.replaced_by_authorisation_id, new.to_string());
    assert_eq!(started.replaces_authorisation_id, old.to_string());
    assert_eq!(
        started.details.as_ref().map(|d| d.quantity.as_str()),
        Some("14")
    );
    let error = given(history.clone())
        .when(Command::Change {
            authorisation_id: old,
            new_authorisation_id: AuthorisationId::new(),
            details: pb::AuthorisationDetails::default(),
            paths: vec!["dose_instructions".into()],
            reason: "dose reduced".into(),
            override_reason: String::new(),
        })
        .expect_err("empty dose");
    assert_eq!(fields(error), vec!["authorisation.dose_instructions"]);
    let error = given(history)
        .when(Command::Change {
            authorisation_id: old,
            new_authorisation_id: AuthorisationId::new(),
            details: pb::AuthorisationDetails::default(),
            paths: vec!["quantity".into()],
            reason: String::new(),
            override_reason: String::new(),
        })
        .expect_err("no reason");
    assert_eq!(fields(error), vec!["reason"]);
}

#[test]
fn given_a_penicillin_allergy_when_a_drug_is_changed_to_amoxicillin_then_the_allergy_check_applies()
{
    let allergy = AllergyId::new();
    let old = AuthorisationId::new();
    let error = given(vec![
        allergy_recorded(allergy),
        authorised(old, repeat(CLARITHROMYCIN_500, 6)),
    ])
    .when(Command::Change {
        authorisation_id: old,
        new_authorisation_id: AuthorisationId::new(),
        details: pb::AuthorisationDetails {
            product: Some(pb::Coding {
                code: AMOXICILLIN_500.into(),
                display: String::new(),
            }),
            ..Default::default()
        },
        paths: vec!["product".into()],
        reason: "switch antibiotic".into(),
        override_reason: String::new(),
    })
    .expect_err("allergy");
    assert!(matches!(error, Error::AllergyConflict { .. }), "{error:?}");
}

#[test]
fn when_a_review_has_no_active_repeat_or_a_bad_date_then_it_is_refused() {
    let error = given(vec![])
        .when(Command::Review {
            authorisation_ids: vec![],
            next_review_date: Some(in_days(30)),
            note: String::new(),
        })
        .expect_err("nothing");
    assert!(matches!(error, Error::NothingToReview));
    let error = given(vec![])
        .when(Command::Review {
            authorisation_ids: vec![],
            next_review_date: Some(date_proto(today())),
            note: String::new(),
        })
        .expect_err("today");
    assert_eq!(fields(error), vec!["next_review_date"]);
    let error = given(vec![])
        .when(Command::Review {
            authorisation_ids: vec![AuthorisationId::new()],
            next_review_date: Some(in_days(30)),
            note: String::new(),
        })
        .expect_err("unknown");
    assert!(matches!(error, Error::AuthorisationNotFound(_)));
}
