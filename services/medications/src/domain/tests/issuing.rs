//! Issues against an authorisation, and why one is refused.

use super::*;

#[test]
fn given_a_repeat_of_two_issues_when_issued_twice_then_the_third_is_refused_as_used_up() {
    let id = AuthorisationId::new();
    let mut history = vec![authorised(id, repeat(CLARITHROMYCIN_500, 2))];
    // a month apart
    let month = |n: u32| today() + Days::new(28 * u64::from(n));
    for expected in 1..=2 {
        let events = given(history.clone())
            .on(month(expected - 1))
            .when(issue(id))
            .expect("issued");
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
    let error = g.on(month(2)).when(issue(id)).expect_err("used up");
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

#[test]
fn given_a_confidential_repeat_when_another_organisation_issues_or_reviews_it_then_it_is_not_there_for_them()
 {
    // Given a repeat the practice authorised as confidential
    let id = AuthorisationId::new();
    let authorisation = given(vec![])
        .when(Command::Authorise {
            authorisation_id: id,
            details: repeat(CLARITHROMYCIN_500, 3),
            override_reason: String::new(),
            confidential: true,
        })
        .expect("authorised");
    // When a hospital clinician issues it by id, then it is not found
    let hospital = given(authorisation.clone()).from(HOSPITAL);
    assert!(matches!(
        hospital.when(issue(id)),
        Err(Error::AuthorisationNotFound(ref named)) if *named == id.to_string()
    ));
    // and a review of all repeats by the hospital finds none to review
    let reviewed = hospital.when(Command::Review {
        authorisation_ids: Vec::new(),
        next_review_date: Some(in_days(30)),
        note: "Reviewed on the ward".into(),
    });
    assert!(
        matches!(reviewed, Err(Error::NothingToReview)),
        "{reviewed:?}"
    );
    // while the practice issues it
    assert!(matches!(
        only(given(authorisation).when(issue(id)).expect("issued")),
        E::PrescriptionIssued(_)
    ));
}

#[test]
fn given_an_amoxicillin_repeat_when_a_penicillin_allergy_is_recorded_later_then_its_next_issue_is_refused_naming_it()
 {
    // Given an amoxicillin repeat authorised in January, and a penicillin
    // allergy recorded since
    let repeat_id = AuthorisationId::new();
    let allergy = AllergyId::new();
    let history = vec![
        authorised(repeat_id, repeat(AMOXICILLIN_500, 6)),
        issued(repeat_id, 1),
        allergy_recorded(allergy),
    ];

    // When the repeat is issued
    let error = given(history.clone())
        .when(issue(repeat_id))
        .expect_err("an allergy the authorisation never saw");

    // Then it is refused naming the allergy
    assert!(
        matches!(&error, Error::AllergyConflict { allergy_id, substance_code, .. }
            if *allergy_id == allergy.to_string() && substance_code == PENICILLIN),
        "{error:?}"
    );

    // And when the prescriber issues it giving a reason, the override is
    // recorded on the issue and on the authorisation
    let events = given(history.clone())
        .when(issue_overriding(
            repeat_id,
            "reaction was a viral rash; tolerated amoxicillin since",
        ))
        .expect("overridden");
    let E::PrescriptionIssued(e) = only(events.clone()) else {
        panic!("PrescriptionIssued expected");
    };
    assert_eq!(e.issue_number, 2);
    assert_eq!(e.overrides.len(), 1);
    assert_eq!(e.overrides[0].allergy_id, allergy.to_string());
    assert!(
        e.overrides[0]
            .reason
            .starts_with("reaction was a viral rash")
    );

    // so next month's issue is not refused again for the same allergy
    let mut history = history;
    history.extend(events);
    given(history)
        .on(today() + Days::new(28))
        .when(issue(repeat_id))
        .expect("the allergy was considered");
}

#[test]
fn given_an_allergy_overridden_when_the_repeat_was_authorised_then_its_issues_are_not_refused_for_it()
 {
    let allergy = AllergyId::new();
    let repeat_id = AuthorisationId::new();
    let overridden = given(vec![allergy_recorded(allergy)])
        .when(Command::Authorise {
            authorisation_id: repeat_id,
            details: repeat(AMOXICILLIN_500, 6),
            override_reason: "allergy disputed, tolerated amoxicillin in 2020".into(),
            confidential: false,
        })
        .expect("overridden");
    let mut history = vec![allergy_recorded(allergy)];
    history.extend(overridden);
    given(history)
        .when(issue(repeat_id))
        .expect("issued: the prescriber overrode this allergy");
}

#[test]
fn given_a_repeat_issued_this_morning_when_it_is_issued_again_today_then_it_is_refused_unless_a_reason_is_given()
 {
    // Given a clarithromycin repeat issued this morning
    let id = AuthorisationId::new();
    let mut history = vec![authorised(id, repeat(CLARITHROMYCIN_500, 6))];
    history.extend(given(history.clone()).when(issue(id)).expect("issued"));
    // When another prescriber issues it again today, then it is refused
    // naming the authorisation and the issue already made
    let g = given(history);
    let error = g.when(issue(id)).expect_err("issued today already");
    assert!(
        matches!(&error, Error::IssuedToday { id: named, issued, issue: 1 } if *named == id.to_string() && issued == named),
        "{error:?}"
    );
    // and given a reason, the second issue is made and the override recorded
    let E::PrescriptionIssued(e) = only(
        g.when(issue_overriding(
            id,
            "first prescription lost by the pharmacy",
        ))
        .expect("issued again"),
    ) else {
        panic!("PrescriptionIssued expected");
    };
    assert_eq!(e.issue_number, 2);
    assert_eq!(
        e.overrides[0].kind,
        pb::safety_override::Kind::IssuedToday as i32
    );
    assert_eq!(e.overrides[0].authorisation_id, id.to_string());
    // while tomorrow it is issued as usual
    g.on(today() + Days::new(1))
        .when(issue(id))
        .expect("the next day");
}

#[test]
fn given_a_28_day_repeat_issued_ten_days_ago_when_it_is_issued_again_then_it_is_refused_as_early_unless_a_reason_is_given()
 {
    // Given a clarithromycin repeat of 28 days' supply, issued ten days ago
    let last = today() - Days::new(10);
    let (id, history) = issued_on(28, last);
    // When it is issued again today, then it is refused as early, naming
    // the last issue's day and the day three quarters of the supply have
    // passed
    let due = last + Days::new(21);
    let error = given(history.clone()).when(issue(id)).expect_err("early");
    assert!(
        matches!(&error, Error::IssuedEarly { id: named, issued, last_issued, supply_days: 28, due: on }
            if *named == id.to_string() && issued == named && *last_issued == last.to_string() && *on == due.to_string()),
        "{error:?}"
    );
    // as it still is the day before it falls due
    assert!(matches!(
        given(history.clone())
            .on(due - Days::new(1))
            .when(issue(id)),
        Err(Error::IssuedEarly { .. })
    ));
    // and given a reason, it is issued and the override recorded
    let E::PrescriptionIssued(e) = only(
        given(history.clone())
            .when(issue_overriding(id, "travelling abroad for six weeks"))
            .expect("issued early"),
    ) else {
        panic!("PrescriptionIssued expected");
    };
    assert_eq!(e.issue_number, 2);
    assert_eq!(
        e.overrides[0].kind,
        pb::safety_override::Kind::IssuedEarly as i32
    );
    assert_eq!(e.overrides[0].reason, "travelling abroad for six weeks");
    // while once it falls due it is issued as usual
    given(history).on(due).when(issue(id)).expect("due");
}

#[test]
fn a_30_day_supply_falls_due_once_three_quarters_of_it_have_wholly_passed() {
    // Given a repeat of 30 days' supply issued on a day
    let last = today() - Days::new(30);
    let (id, history) = issued_on(30, last);
    // Then 22 days on (22.5 days are three quarters) it is still early,
    // and 23 days on it is due
    assert!(matches!(
        given(history.clone())
            .on(last + Days::new(22))
            .when(issue(id)),
        Err(Error::IssuedEarly { .. })
    ));
    given(history)
        .on(last + Days::new(23))
        .when(issue(id))
        .expect("due");
}

#[test]
fn given_a_repeat_stating_no_supply_issued_yesterday_when_it_is_issued_today_then_it_is_not_judged_early()
 {
    let (id, history) = issued_on(0, today() - Days::new(1));
    given(history).when(issue(id)).expect("issued again");
}

#[test]
fn given_a_28_day_repeat_issued_ten_days_ago_whose_dose_is_changed_today_when_the_new_one_is_issued_then_it_is_early_naming_the_one_it_replaced()
 {
    // Given a clarithromycin repeat of 28 days' supply, issued ten days ago
    let last = today() - Days::new(10);
    let (old, mut history) = issued_on(28, last);
    // whose dose is changed today, to a week's supply at a time
    let new = AuthorisationId::new();
    history.extend(
        given(history.clone())
            .when(Command::Change {
                authorisation_id: old,
                new_authorisation_id: new,
                details: pb::AuthorisationDetails {
                    dose_instructions: "one tablet once a day".into(),
                    supply_days: 7,
                    ..Default::default()
                },
                paths: vec!["dose_instructions".into(), "supply_days".into()],
                reason: "dose reduced".into(),
                override_reason: String::new(),
            })
            .expect("changed"),
    );
    // When the new authorisation is issued, then it is refused as early,
    // by the 28 days the one it replaced supplied, which the patient holds
    let error = given(history.clone()).when(issue(new)).expect_err("early");
    assert!(
        matches!(&error, Error::IssuedEarly { id, issued, last_issued, supply_days: 28, .. }
            if *id == new.to_string() && *issued == old.to_string() && *last_issued == last.to_string()),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&format!(
            "authorisation {old}, of which {new} is a changed version, was last issued on {last}"
        )),
        "{error}"
    );
    // and given a reason, it is issued, its first issue
    let E::PrescriptionIssued(e) = only(
        given(history.clone())
            .when(issue_overriding(new, "dose reduced: new supply needed"))
            .expect("issued early"),
    ) else {
        panic!("PrescriptionIssued expected");
    };
    assert_eq!(e.issue_number, 1);
    assert_eq!(
        e.overrides[0].kind,
        pb::safety_override::Kind::IssuedEarly as i32
    );
    // while its own issues are judged by its own week's supply from then on
    history.extend(
        given(history.clone())
            .when(issue_overriding(new, "dose reduced"))
            .expect("issued"),
    );
    assert!(matches!(
        given(history.clone()).on(today() + Days::new(1)).when(issue(new)),
        Err(Error::IssuedEarly { id, issued, supply_days: 7, .. }) if id == issued
    ));
    given(history)
        .on(today() + Days::new(6))
        .when(issue(new))
        .expect("a week's supply falls due after six days");
}

#[test]
fn given_a_repeat_changed_twice_since_its_last_issue_when_the_latest_is_issued_then_it_is_judged_by_that_issue()
 {
    // Given a 28-day repeat issued ten days ago, its dose changed and then
    // its quantity
    let last = today() - Days::new(10);
    let (first, mut history) = issued_on(28, last);
    let (second, third) = (AuthorisationId::new(), AuthorisationId::new());
    for (from, to, paths) in [
        (first, second, &["dose_instructions"][..]),
        (second, third, &["quantity"][..]),
    ] {
        history.extend(
            given(history.clone())
                .when(change(from, to, "one tablet once a day", paths))
                .expect("changed"),
        );
    }
    // When the latest is issued, then it is early by the first one's issue
    let error = given(history).when(issue(third)).expect_err("early");
    assert!(
        matches!(&error, Error::IssuedEarly { id, issued, .. }
            if *id == third.to_string() && *issued == first.to_string()),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&format!(
            "authorisation {first}, of which {third} is a changed version"
        )),
        "{error}"
    );
}

#[test]
fn given_a_repeat_issued_this_morning_switched_to_another_drug_and_then_changed_when_issued_then_the_first_drugs_issue_does_not_count()
 {
    // Given clarithromycin issued this morning, switched to paracetamol,
    // whose dose is then changed
    let (first, mut history) = issued_on(28, today());
    let (second, third) = (AuthorisationId::new(), AuthorisationId::new());
    history.extend(
        given(history.clone())
            .when(switched_to_paracetamol(first, second))
            .expect("switched"),
    );
    history.extend(
        given(history.clone())
            .when(change(
                second,
                third,
                "two tablets four times a day",
                &["dose_instructions"],
            ))
            .expect("changed"),
    );
    // Then the paracetamol is issued today without a reason
    given(history)
        .when(issue(third))
        .expect("a new drug's first issue");
}

#[test]
fn given_a_repeat_issued_this_morning_whose_quantity_is_changed_when_the_new_one_is_issued_today_then_it_is_refused_as_issued_today()
 {
    let (old, mut history) = issued_on(0, today());
    let new = AuthorisationId::new();
    history.extend(
        given(history.clone())
            .when(change(old, new, "", &["quantity"]))
            .expect("changed"),
    );
    let error = given(history).when(issue(new)).expect_err("issued today");
    assert!(
        matches!(&error, Error::IssuedToday { id, issued, issue: 1 }
            if *id == new.to_string() && *issued == old.to_string()),
        "{error:?}"
    );
}

#[test]
fn given_a_repeat_issued_this_morning_changed_to_another_drug_when_the_new_one_is_issued_then_it_is_judged_afresh()
 {
    // Given clarithromycin issued this morning, switched to paracetamol
    let (old, mut history) = issued_on(28, today());
    let new = AuthorisationId::new();
    history.extend(
        given(history.clone())
            .when(switched_to_paracetamol(old, new))
            .expect("changed"),
    );
    // Then the new product's first issue is not judged by the old one's
    given(history).when(issue(new)).expect("a new drug");
}

/// `ChangeMedication` of the authorisation `old` into `new`, a paracetamol
/// repeat: another product.
fn switched_to_paracetamol(old: AuthorisationId, new: AuthorisationId) -> Command {
    Command::Change {
        authorisation_id: old,
        new_authorisation_id: new,
        details: pb::AuthorisationDetails {
            product: Some(pb::Coding {
                code: PARACETAMOL_500.into(),
                display: String::new(),
            }),
            ..Default::default()
        },
        paths: vec!["product".into()],
        reason: "switched".into(),
        override_reason: String::new(),
    }
}

/// `ChangeMedication` of the authorisation `old` into `new`: these mask
/// paths, with a dose of `dose` and a quantity of 14.
fn change(old: AuthorisationId, new: AuthorisationId, dose: &str, paths: &[&str]) -> Command {
    Command::Change {
        authorisation_id: old,
        new_authorisation_id: new,
        details: pb::AuthorisationDetails {
            dose_instructions: dose.into(),
            quantity: "14".into(),
            ..Default::default()
        },
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        reason: "dose reduced".into(),
        override_reason: String::new(),
    }
}

/// A clarithromycin repeat of `supply_days` (0: not stated), issued once on
/// `day`: its id and its events.
fn issued_on(supply_days: u32, day: NaiveDate) -> (AuthorisationId, Vec<pb::Event>) {
    let id = AuthorisationId::new();
    let mut history = vec![authorised(
        id,
        pb::AuthorisationDetails {
            supply_days,
            ..repeat(CLARITHROMYCIN_500, 6)
        },
    )];
    history.extend(
        given(history.clone())
            .on(day)
            .when(issue(id))
            .expect("issued"),
    );
    (id, history)
}
