//! Allergies and intolerances: recorded, resolved, entered in error.

use super::*;

#[test]
fn when_a_penicillin_allergy_is_recorded_then_it_is_active() {
    let id = AllergyId::new();
    let events = given(vec![])
        .when(Command::RecordAllergy {
            allergy_id: id,
            details: penicillin_allergy(),
            confidential: false,
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
            confidential: false,
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
            confidential: false,
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

#[test]
fn a_confidential_allergy_records_the_flag_and_the_authors_organisation() {
    let events = given(vec![])
        .when(Command::RecordAllergy {
            allergy_id: AllergyId::new(),
            details: penicillin_allergy(),
            confidential: true,
        })
        .expect("recorded");
    let E::AllergyRecorded(e) = only(events) else {
        panic!("not an AllergyRecorded");
    };
    assert!(e.confidential);
    assert_eq!(e.author_organisation_ods, "A81001");
}

#[test]
fn given_a_confidential_allergy_when_another_organisation_names_it_then_it_is_not_there_for_them() {
    // Given a penicillin allergy the practice recorded as confidential
    let id = AllergyId::new();
    let recorded = given(vec![])
        .when(Command::RecordAllergy {
            allergy_id: id,
            details: penicillin_allergy(),
            confidential: true,
        })
        .expect("recorded");
    let in_error = Command::MarkAllergyEnteredInError {
        allergy_id: id,
        reason: "Recorded against the wrong patient".into(),
    };
    let resolve = Command::ResolveAllergy {
        allergy_id: id,
        resolved_on: None,
        reason: "Tolerated amoxicillin since".into(),
    };
    // When a hospital clinician names it by id, then it is not found for
    // them (its existence is not revealed) and nothing is decided
    let hospital = given(recorded.clone()).from(HOSPITAL);
    for command in [in_error.clone(), resolve] {
        assert!(matches!(
            hospital.when(command),
            Err(Error::AllergyNotFound(ref named)) if *named == id.to_string()
        ));
    }
    // while the practice that recorded it may correct it
    assert!(matches!(
        only(given(recorded).when(in_error).expect("corrected")),
        E::AllergyEnteredInError(_)
    ));
}
