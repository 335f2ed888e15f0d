//! Authorising, with the allergy and duplicate safety checks.

use super::*;

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
        supply_days: 400,
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
            "authorisation.supply_days",
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

#[test]
fn given_two_allergies_and_an_active_repeat_when_amoxicillin_is_prescribed_then_every_conflict_is_named_at_once()
 {
    // Given a penicillin allergy, an amoxicillin anaphylaxis and an active
    // amoxicillin repeat
    let (penicillin, amoxicillin) = (AllergyId::new(), AllergyId::new());
    let active = AuthorisationId::new();
    let g = given(vec![
        allergy_recorded(penicillin),
        allergy_to(amoxicillin, AMOXICILLIN_500, "Amoxicillin"),
        authorised(active, repeat(AMOXICILLIN_500, 6)),
    ]);

    // When amoxicillin is prescribed without a reason
    let error = g
        .when(authorise(acute(AMOXICILLIN_500), ""))
        .expect_err("refused");

    // Then the refusal names all three, so that a reason given next is
    // given having seen the anaphylaxis too
    let Error::SafetyConflicts(conflicts) = &error else {
        panic!("every conflict expected, got {error:?}");
    };
    assert_eq!(conflicts.len(), 3);
    let message = error.to_string();
    for id in [
        penicillin.to_string(),
        amoxicillin.to_string(),
        active.to_string(),
    ] {
        assert!(message.contains(&id), "{message} names {id}");
    }
    // And with a reason each is recorded as overridden
    let events = g
        .when(authorise(
            acute(AMOXICILLIN_500),
            "specialist advice: desensitised",
        ))
        .expect("overridden");
    let E::MedicationAuthorised(e) = only(events) else {
        panic!("MedicationAuthorised expected");
    };
    assert_eq!(e.overrides.len(), 3);
}

#[test]
fn given_a_penicillin_allergy_on_a_record_merged_into_this_one_when_amoxicillin_is_prescribed_then_it_is_refused()
 {
    // Given Jane's duplicate record, holding her penicillin allergy, merged
    // into this one
    let allergy = AllergyId::new();
    let g = given(vec![]).merged_in(vec![allergy_recorded(allergy)]);
    // When amoxicillin is authorised on the surviving record
    let error = g
        .when(authorise(acute(AMOXICILLIN_500), ""))
        .expect_err("the same person's allergy");
    // Then it is refused naming the allergy on the merged record
    assert!(
        matches!(&error, Error::AllergyConflict { allergy_id, .. } if *allergy_id == allergy.to_string()),
        "{error:?}"
    );
    // And an issue of a repeat authorised here is checked against it too
    let repeat_id = AuthorisationId::new();
    let error = given(vec![authorised(repeat_id, repeat(AMOXICILLIN_500, 6))])
        .merged_in(vec![allergy_recorded(allergy)])
        .when(issue(repeat_id))
        .expect_err("the same person's allergy");
    assert!(matches!(error, Error::AllergyConflict { .. }), "{error:?}");
}

#[test]
fn given_last_months_amoxicillin_course_issued_when_amoxicillin_is_prescribed_again_then_it_is_no_duplicate()
 {
    // Given an acute amoxicillin authorised and issued (used up)
    let course = AuthorisationId::new();
    let g = given(vec![
        authorised(course, acute(AMOXICILLIN_500)),
        issued(course, 1),
    ]);
    // When a new acute course is prescribed, then it is not refused as a
    // duplicate of the one that can no longer be issued
    g.when(authorise(acute(AMOXICILLIN_500), ""))
        .expect("a new course");
    // while an acute not yet issued still is
    let pending = AuthorisationId::new();
    let error = given(vec![authorised(pending, acute(AMOXICILLIN_500))])
        .when(authorise(acute(AMOXICILLIN_500), ""))
        .expect_err("duplicate");
    assert!(
        matches!(error, Error::DuplicatePrescription { .. }),
        "{error:?}"
    );
}

/// Recorded confidentially by a sexual health clinic, not the practice.
const CLINIC: &str = "RYJ01";

fn confidential_at_clinic(event: pb::Event) -> pb::Event {
    let event = match event.event {
        Some(E::AllergyRecorded(e)) => E::AllergyRecorded(pb::AllergyRecorded {
            confidential: true,
            author_organisation_ods: CLINIC.into(),
            ..e
        }),
        Some(E::MedicationAuthorised(e)) => E::MedicationAuthorised(pb::MedicationAuthorised {
            confidential: true,
            author_organisation_ods: CLINIC.into(),
            ..e
        }),
        other => panic!("not a confidential item: {other:?}"),
    };
    ev(event)
}

#[test]
fn given_a_clinics_confidential_penicillin_allergy_when_the_practice_prescribes_amoxicillin_then_it_is_refused_naming_neither_allergy_nor_substance()
 {
    // Given a penicillin allergy the clinic recorded confidentially
    let allergy = AllergyId::new();
    let g = given(vec![confidential_at_clinic(allergy_recorded(allergy))]);
    // When the practice prescribes amoxicillin, then it is refused all the
    // same, without saying which allergy or substance
    let error = g
        .when(authorise(acute(AMOXICILLIN_500), ""))
        .expect_err("refused");
    assert!(
        matches!(&error, Error::ConfidentialAllergyConflict { product } if product == "Amoxicillin 500mg capsules"),
        "{error:?}"
    );
    let told = format!("{error} {error:?}");
    assert!(!told.contains(&allergy.to_string()), "{told}");
    assert!(
        !told.contains(PENICILLIN) && !told.contains("Penicillin"),
        "{told}"
    );
    // When the prescriber overrides it, having asked the patient, then the
    // override records the allergy, marked confidential to the clinic
    let E::MedicationAuthorised(e) = only(
        g.when(authorise(
            acute(AMOXICILLIN_500),
            "patient says they took amoxicillin last year without reaction",
        ))
        .expect("overridden"),
    ) else {
        panic!("MedicationAuthorised expected");
    };
    let o = &e.overrides[0];
    assert_eq!(o.allergy_id, allergy.to_string());
    assert!(o.confidential);
    assert_eq!(o.author_organisation_ods, CLINIC);
    // while the clinic itself is told which allergy it is
    assert!(matches!(
        g.from(CLINIC).when(authorise(acute(AMOXICILLIN_500), "")),
        Err(Error::AllergyConflict { allergy_id, .. }) if allergy_id == allergy.to_string()
    ));
}

#[test]
fn given_a_clinics_confidential_clarithromycin_repeat_when_the_practice_authorises_it_then_it_is_refused_as_a_duplicate_without_naming_it()
 {
    // Given a clarithromycin repeat the clinic authorised confidentially
    let first = AuthorisationId::new();
    let g = given(vec![confidential_at_clinic(authorised(
        first,
        repeat(CLARITHROMYCIN_500, 6),
    ))]);
    // When the practice authorises clarithromycin
    let error = g
        .when(authorise(repeat(CLARITHROMYCIN_500, 6), ""))
        .expect_err("duplicate");
    // Then it is refused as a duplicate, not naming the clinic's authorisation
    assert!(
        matches!(&error, Error::ConfidentialDuplicate { .. }),
        "{error:?}"
    );
    assert!(!format!("{error} {error:?}").contains(&first.to_string()));
    // and an override records which it was, marked confidential
    let E::MedicationAuthorised(e) = only(
        g.when(authorise(
            repeat(CLARITHROMYCIN_500, 6),
            "clinic course ended, confirmed with the patient",
        ))
        .expect("overridden"),
    ) else {
        panic!("MedicationAuthorised expected");
    };
    assert_eq!(e.overrides[0].authorisation_id, first.to_string());
    assert!(e.overrides[0].confidential);
    assert_eq!(e.overrides[0].author_organisation_ods, CLINIC);
    // and given by the practice, which is shown its own reason
    assert_eq!(e.overrides[0].prescriber_organisation_ods, PRACTICE);
}

#[test]
fn an_override_recorded_before_overrides_carried_their_marking_takes_the_confidential_allergys() {
    // Given the clinic's confidential penicillin allergy, and amoxicillin
    // authorised over it by an event of before overrides were marked
    let allergy = AllergyId::new();
    let authorisation = AuthorisationId::new();
    let old_override = pb::SafetyOverride {
        kind: pb::safety_override::Kind::Allergy as i32,
        allergy_id: allergy.to_string(),
        substance: Some(pb::Coding {
            code: PENICILLIN.into(),
            display: "Penicillin".into(),
        }),
        reason: "tolerated it last year".into(),
        ..Default::default()
    };
    let g = given(vec![
        confidential_at_clinic(allergy_recorded(allergy)),
        ev(E::MedicationAuthorised(pb::MedicationAuthorised {
            authorisation_id: authorisation.to_string(),
            details: Some(acute(AMOXICILLIN_500)),
            overrides: vec![old_override],
            author_organisation_ods: PRACTICE.into(),
            ..Default::default()
        })),
    ]);
    // When the practice that authorised it, and a hospital, are shown the
    // authorisation
    let shown = |reader| shown_to(&g, authorisation, reader).overrides[0].clone();
    // Then the override is marked as the clinic's allergy and withheld,
    // and taken as the practice's: the practice is shown its reason
    let o = shown(PRACTICE);
    assert!(o.confidential);
    assert!(o.allergy_id.is_empty() && o.substance.is_none());
    assert_eq!(o.prescriber_organisation_ods, PRACTICE);
    assert_eq!(o.reason, "tolerated it last year");
    // and the hospital is not
    let o = shown("RR8");
    assert!(o.reason.is_empty() && o.reason_withheld);
}

#[test]
fn an_old_issues_override_of_a_confidential_allergy_shows_its_reason_only_inside_the_allergys_organisation()
 {
    // Given the practice's repeat, and an issue of it recorded before
    // overrides named who gave them, overriding the clinic's confidential
    // penicillin allergy (the event does not say who issued)
    let allergy = AllergyId::new();
    let authorisation = AuthorisationId::new();
    let g = given(vec![
        confidential_at_clinic(allergy_recorded(allergy)),
        ev(E::MedicationAuthorised(pb::MedicationAuthorised {
            authorisation_id: authorisation.to_string(),
            details: Some(repeat(AMOXICILLIN_500, 6)),
            author_organisation_ods: PRACTICE.into(),
            ..Default::default()
        })),
        ev(E::PrescriptionIssued(pb::PrescriptionIssued {
            issue_id: IssueId::new().to_string(),
            authorisation_id: authorisation.to_string(),
            issue_number: 1,
            issued_on: Some(date_proto(today())),
            overrides: vec![pb::SafetyOverride {
                kind: pb::safety_override::Kind::Allergy as i32,
                allergy_id: allergy.to_string(),
                reason: "clinic confirms the penicillin label is wrong".into(),
                ..Default::default()
            }],
        })),
    ]);
    // Then the practice that authorised it is not shown the reason, which
    // the issuer may have been the clinic to give
    let o = shown_to(&g, authorisation, PRACTICE).overrides[0].clone();
    assert!(o.reason.is_empty() && o.reason_withheld);
    // while the clinic is
    let o = shown_to(&g, authorisation, CLINIC).overrides[0].clone();
    assert_eq!(o.reason, "clinic confirms the penicillin label is wrong");
}

#[test]
fn an_old_override_of_an_allergy_this_record_does_not_hold_is_withheld_from_every_reader() {
    // Given amoxicillin authorised, before overrides were marked, over an
    // allergy of a record since merged in (not in this record's events)
    let authorisation = AuthorisationId::new();
    let g = given(vec![ev(E::MedicationAuthorised(
        pb::MedicationAuthorised {
            authorisation_id: authorisation.to_string(),
            details: Some(acute(AMOXICILLIN_500)),
            overrides: vec![pb::SafetyOverride {
                kind: pb::safety_override::Kind::Allergy as i32,
                allergy_id: AllergyId::new().to_string(),
                reason: "tolerated it last year".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    ))]);
    // Then whoever reads it is not told which allergy it was
    for reader in [PRACTICE, CLINIC] {
        let shown = shown_to(&g, authorisation, reader);
        assert!(shown.overrides[0].allergy_id.is_empty(), "{reader}");
    }
}

/// The authorisation as a user of `reader` is shown it.
fn shown_to(g: &Given, authorisation: AuthorisationId, reader: &str) -> pb::Authorisation {
    let mut shown = g
        .record
        .authorisation(&authorisation.to_string())
        .expect("authorisation")
        .clone();
    super::super::views::withhold_overrides(&mut shown, reader);
    shown
}
