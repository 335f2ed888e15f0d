//! Issues against an authorisation, and why one is refused.

use super::*;

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
