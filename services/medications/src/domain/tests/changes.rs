//! Discontinuing, changing drug or dose, and medication reviews.

use super::*;

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

#[test]
fn when_a_review_names_an_acute_or_sets_a_date_after_a_repeats_expiry_then_it_is_refused() {
    // Given an acute and a repeat expiring in 180 days
    let (course, repeat_id) = (AuthorisationId::new(), AuthorisationId::new());
    let g = given(vec![
        authorised(course, acute(AMOXICILLIN_500)),
        authorised(repeat_id, repeat(CLARITHROMYCIN_500, 6)),
    ]);
    let review = |ids: Vec<AuthorisationId>, days: u64| Command::Review {
        authorisation_ids: ids,
        next_review_date: Some(in_days(days)),
        note: String::new(),
    };
    // When the acute is named, then it is refused naming it
    let error = g.when(review(vec![course], 30)).expect_err("acute");
    assert_eq!(fields(error), vec!["authorisation_ids[0]"]);
    // When the next review named for it would fall after the repeat has
    // expired, then it is refused naming the date
    let error = g
        .when(review(vec![repeat_id], 200))
        .expect_err("after expiry");
    assert_eq!(fields(error), vec!["next_review_date"]);
    // while a review of every repeat leaves out one that ends before it
    let error = g.when(review(vec![], 200)).expect_err("nothing due");
    assert!(matches!(error, Error::NothingToReview), "{error:?}");
    // And a review within its life is recorded
    g.when(review(vec![repeat_id], 90)).expect("reviewed");
    g.when(review(vec![], 90)).expect("every repeat reviewed");
}

#[test]
fn when_a_change_differs_only_in_what_input_ignores_then_it_changes_nothing() {
    // Given a clarithromycin repeat
    let old = AuthorisationId::new();
    let g = given(vec![authorised(old, repeat(CLARITHROMYCIN_500, 6))]);
    // When its product is "changed" to the same code with no display (the
    // display comes from the catalogue) and its dose to the same words
    // with spaces around them
    let error = g
        .when(Command::Change {
            authorisation_id: old,
            new_authorisation_id: AuthorisationId::new(),
            details: pb::AuthorisationDetails {
                product: Some(pb::Coding {
                    code: CLARITHROMYCIN_500.into(),
                    display: String::new(),
                }),
                dose_instructions: "  one tablet twice a day ".into(),
                ..Default::default()
            },
            paths: vec!["product".into(), "dose_instructions".into()],
            reason: "tidy".into(),
            override_reason: String::new(),
        })
        .expect_err("nothing changed");
    // Then it is refused, not recorded as a new authorisation with its
    // issues reset
    assert_eq!(fields(error), vec!["update_mask"]);
}
