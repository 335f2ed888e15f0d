//! Given past events, when a command, then these events or this refusal.

use carelog_kernel::date::PartialDate;
use carelog_kernel::{Aggregate, PatientId};
use carelog_proto::demographics::v1 as pb;
use carelog_proto::kernel::v1::PartialDate as PbDate;
use pb::event::Event as E;

use super::*;
use crate::domain::decide::Command as C;

fn details() -> pb::PatientDetails {
    pb::PatientDetails {
        nhs_number: "9434765919".into(),
        nhs_number_verification_status: pb::NhsNumberVerificationStatus::Verified as i32,
        name: Some(pb::HumanName {
            family: "Smith".into(),
            given: vec!["Jane".into()],
            prefix: "Mrs".into(),
        }),
        birth_date: Some(PbDate {
            year: 1950,
            month: 3,
            day: 14,
        }),
        gender: pb::AdministrativeGender::Female as i32,
        addresses: vec![pb::Address {
            lines: vec!["1 Park Row".into()],
            postcode: "LS1 5AB".into(),
            ..Default::default()
        }],
        telecom: vec![],
        registered_practice_ods: "B82005".into(),
    }
}

fn ev(e: E) -> pb::Event {
    pb::Event { event: Some(e) }
}

fn registered() -> pb::Event {
    ev(E::PatientRegistered(pb::PatientRegistered {
        details: Some(details()),
    }))
}

fn deceased() -> pb::Event {
    ev(E::DeathRecorded(pb::DeathRecorded {
        date_of_death: Some(PbDate {
            year: 2020,
            month: 1,
            day: 0,
        }),
    }))
}

/// Given these past events, the record.
fn given(events: &[pb::Event]) -> PatientRecord {
    let mut record = PatientRecord::default();
    events.iter().for_each(|e| record.apply(e));
    record
}

/// When the command, the events decided (or the refusal).
fn when(record: &PatientRecord, command: C) -> Result<Vec<pb::Event>, Error> {
    let id = PatientId::new();
    decide(id, record, &command).map(|d| {
        d.changes
            .into_iter()
            .flat_map(|c| c.events)
            .map(|(e, _)| e)
            .collect()
    })
}

fn reason_field(err: Error) -> Vec<String> {
    match err {
        Error::Invalid(v) => v.iter().map(|v| v.field.clone()).collect(),
        other => panic!("expected invalid, got {other:?}"),
    }
}

fn date(y: i32, m: u32, d: u32) -> PartialDate {
    PartialDate::new(y, m, d).expect("date")
}

#[test]
fn registering_a_new_patient_claims_the_nhs_number() {
    let decision = decide(
        PatientId::new(),
        &given(&[]),
        &C::Register { details: details() },
    )
    .expect("registered");
    assert_eq!(decision.changes[0].events.len(), 1);
    assert!(
        matches!(&decision.claims[0], carelog_kernel::claims::ClaimChange::Take { value, .. } if value == "9434765919")
    );
}

#[test]
fn a_temporary_resident_without_an_nhs_number_claims_nothing() {
    let mut d = details();
    d.nhs_number.clear();
    d.nhs_number_verification_status = pb::NhsNumberVerificationStatus::NotPresent as i32;
    let decision =
        decide(PatientId::new(), &given(&[]), &C::Register { details: d }).expect("registered");
    assert!(decision.claims.is_empty());
}

#[test]
fn registering_twice_is_refused() {
    assert!(when(&given(&[registered()]), C::Register { details: details() }).is_err());
}

#[test]
fn an_address_change_records_only_the_changed_path() {
    let mut new = details();
    new.addresses[0].postcode = "M1 1AE".into();
    if let Some(n) = new.name.as_mut() {
        n.family = "Ignored".into();
    }
    let events = when(
        &given(&[registered()]),
        C::Update {
            details: new,
            paths: vec!["addresses".into()],
            correction: false,
            reason: String::new(),
        },
    )
    .expect("updated");
    let Some(E::DemographicsUpdated(u)) = &events[0].event else {
        panic!("{events:?}")
    };
    assert_eq!(u.changed_paths, vec!["addresses"]);
    let after = u.details.as_ref().expect("details");
    assert_eq!(after.addresses[0].postcode, "M1 1AE");
    assert_eq!(
        after.name.as_ref().map(|n| n.family.as_str()),
        Some("Smith")
    );
}

#[test]
fn an_update_that_changes_nothing_appends_nothing() {
    let events = when(
        &given(&[registered()]),
        C::Update {
            details: details(),
            paths: vec!["name".into()],
            correction: false,
            reason: String::new(),
        },
    )
    .expect("no-op");
    assert!(events.is_empty());
}

#[test]
fn changing_the_nhs_number_releases_the_old_and_claims_the_new() {
    let mut new = details();
    new.nhs_number = "4010232137".into();
    new.nhs_number_verification_status = pb::NhsNumberVerificationStatus::NotTraced as i32;
    let update = |paths: &[&str]| C::Update {
        details: new.clone(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        correction: true,
        reason: "typo".into(),
    };
    let d = decide(
        PatientId::new(),
        &given(&[registered()]),
        &update(&["nhs_number", "nhs_number_verification_status"]),
    )
    .expect("updated");
    assert_eq!(d.claims.len(), 2);
    // A new number does not keep the old one's "verified": the update names
    // its status
    let err = decide(
        PatientId::new(),
        &given(&[registered()]),
        &update(&["nhs_number"]),
    )
    .expect_err("status left as verified");
    assert_eq!(reason_field(err), vec!["update_mask.paths"]);
}

#[test]
fn after_death_only_corrections_with_a_reason_are_accepted() {
    let record = given(&[registered(), deceased()]);
    let update = |correction: bool, reason: &str| C::Update {
        details: pb::PatientDetails {
            name: Some(pb::HumanName {
                family: "Smyth".into(),
                ..Default::default()
            }),
            ..details()
        },
        paths: vec!["name.family".into()],
        correction,
        reason: reason.into(),
    };
    assert!(matches!(
        when(&record, update(false, "")),
        Err(Error::Deceased(_))
    ));
    assert_eq!(
        reason_field(when(&record, update(true, "")).expect_err("no reason")),
        vec!["reason"]
    );
    assert_eq!(
        when(&record, update(true, "spelling on the death certificate"))
            .expect("corrected")
            .len(),
        1
    );
    assert!(matches!(
        when(&record, C::MarkRestricted),
        Err(Error::Deceased(_))
    ));
}

#[test]
fn a_death_is_recorded_once_and_not_before_birth_nor_in_the_future() {
    let record = given(&[registered()]);
    assert_eq!(
        when(
            &record,
            C::RecordDeath {
                date: date(2021, 6, 2)
            }
        )
        .expect("recorded")
        .len(),
        1
    );
    assert_eq!(
        reason_field(
            when(
                &record,
                C::RecordDeath {
                    date: date(1949, 1, 1)
                }
            )
            .expect_err("before birth")
        ),
        vec!["date_of_death"]
    );
    assert_eq!(
        reason_field(
            when(
                &record,
                C::RecordDeath {
                    date: date(9000, 1, 1)
                }
            )
            .expect_err("future")
        ),
        vec!["date_of_death"]
    );
    let dead = given(&[registered(), deceased()]);
    assert!(matches!(
        when(
            &dead,
            C::RecordDeath {
                date: date(2021, 1, 1)
            }
        ),
        Err(Error::AlreadyDeceased(_))
    ));
}

#[test]
fn a_death_is_amended_or_entered_in_error_only_with_a_reason() {
    let dead = given(&[registered(), deceased()]);
    let amended = when(
        &dead,
        C::AmendDeath {
            date: Some(date(2020, 1, 5)),
            reason: "certificate".into(),
        },
    )
    .expect("amended");
    assert!(matches!(amended[0].event, Some(E::DeathAmended(_))));
    let error = when(
        &dead,
        C::AmendDeath {
            date: None,
            reason: "wrong patient".into(),
        },
    )
    .expect("entered in error");
    assert!(matches!(error[0].event, Some(E::DeathEnteredInError(_))));
    assert_eq!(
        reason_field(
            when(
                &dead,
                C::AmendDeath {
                    date: None,
                    reason: " ".into()
                }
            )
            .expect_err("reason")
        ),
        vec!["reason"]
    );
    assert!(matches!(
        when(
            &given(&[registered()]),
            C::AmendDeath {
                date: None,
                reason: "x".into()
            }
        ),
        Err(Error::NotDeceased(_))
    ));
    let revived = given(&[registered(), deceased(), error[0].clone()]);
    assert!(!revived.patient.deceased);
}

#[test]
fn restriction_and_objection_flags_toggle_and_clearing_needs_a_reason() {
    let record = given(&[registered()]);
    let marked = when(&record, C::MarkRestricted).expect("marked");
    let restricted = given(&[registered(), marked[0].clone()]);
    assert!(restricted.patient.restricted);
    assert!(
        when(&restricted, C::MarkRestricted)
            .expect("idempotent")
            .is_empty()
    );
    assert_eq!(
        reason_field(
            when(
                &restricted,
                C::ClearRestricted {
                    reason: String::new()
                }
            )
            .expect_err("reason")
        ),
        vec!["reason"]
    );
    assert_eq!(
        when(
            &restricted,
            C::ClearRestricted {
                reason: "patient asked".into()
            }
        )
        .expect("cleared")
        .len(),
        1
    );
    let objected = when(&record, C::RecordSharingObjection).expect("objected");
    let objecting = given(&[registered(), objected[0].clone()]);
    assert!(objecting.patient.sharing_objection);
    assert_eq!(
        when(
            &objecting,
            C::WithdrawSharingObjection {
                reason: "consented".into()
            }
        )
        .expect("withdrawn")
        .len(),
        1
    );
}

#[test]
fn a_restricted_record_hides_address_telecom_and_practice_in_ordinary_reads() {
    let record = given(&[
        registered(),
        ev(E::RestrictionMarked(pb::RestrictionMarked {})),
    ]);
    let shown = record.shown(Disclosure::ORDINARY);
    let d = shown.details.expect("details");
    assert!(d.addresses.is_empty() && d.registered_practice_ods.is_empty());
    assert!(shown.withheld);
    let privileged = Disclosure {
        restricted_now: true,
        privileged: true,
    };
    assert_eq!(
        record
            .shown(privileged)
            .details
            .expect("details")
            .addresses
            .len(),
        1
    );
}

#[test]
fn a_version_written_before_the_restriction_is_hidden_once_the_patient_is_restricted() {
    // Given a version of Jane's record written before she was restricted
    let before = given(&[registered()]);
    assert!(!before.patient.restricted);

    // When an ordinary caller reads it after the restriction was marked
    let shown = before.shown(Disclosure {
        restricted_now: true,
        privileged: false,
    });

    // Then her address, telecom and practice are hidden all the same
    let d = shown.details.expect("details");
    assert!(d.addresses.is_empty() && d.telecom.is_empty() && d.registered_practice_ods.is_empty());
    assert!(shown.withheld);
    // and a user of her practice who manages demographics still sees them
    let privileged = before.shown(Disclosure {
        restricted_now: true,
        privileged: true,
    });
    assert_eq!(privileged.details.expect("details").addresses.len(), 1);
    assert!(!privileged.withheld);
    // and once the restriction is cleared, the unrestricted version is shown
    let cleared = before.shown(Disclosure::ORDINARY);
    assert_eq!(cleared.details.expect("details").addresses.len(), 1);
}

#[test]
fn commands_on_an_unknown_patient_are_not_found() {
    assert!(matches!(
        when(
            &given(&[]),
            C::RecordDeath {
                date: date(2020, 1, 1)
            }
        ),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn merging_closes_the_duplicate_and_points_it_at_the_survivor() {
    let (dup, surv) = (PatientId::new(), PatientId::new());
    let (d, s) = (given(&[registered()]), given(&[registered()]));
    let merge = C::Merge {
        survivor: surv,
        reason: "same person".into(),
    };
    let decision = decide_merge((dup, &d), (surv, &s), &merge).expect("merged");
    assert_eq!(decision.changes.len(), 2);
    let mut closed = d.clone();
    decision.changes[0]
        .events
        .iter()
        .for_each(|(e, _)| closed.apply(e));
    assert_eq!(closed.merged_into(), Some(surv.to_string().as_str()));
    let err = decide(dup, &closed, &C::MarkRestricted).expect_err("merged");
    assert!(matches!(err, Error::Merged { ref survivor, .. } if *survivor == surv.to_string()));
    assert!(
        decide_merge(
            (dup, &d),
            (dup, &d),
            &C::Merge {
                survivor: dup,
                reason: "x".into()
            }
        )
        .is_err()
    );
    assert!(
        decide_merge(
            (dup, &d),
            (surv, &s),
            &C::Merge {
                survivor: surv,
                reason: String::new()
            }
        )
        .is_err()
    );
    assert!(matches!(
        decide_merge((dup, &closed), (surv, &s), &merge),
        Err(Error::Merged { .. })
    ));
}

/// A registered record merged into `survivor`.
fn merged_into(survivor: PatientId) -> PatientRecord {
    given(&[
        registered(),
        ev(E::PatientMerged(pb::PatientMerged {
            survivor_patient_id: survivor.to_string(),
        })),
    ])
}

/// The survivor's event of `duplicate` merged into it.
fn merged_in(duplicate: PatientId) -> pb::Event {
    ev(E::DuplicateMergedIn(pb::DuplicateMergedIn {
        duplicate_patient_id: duplicate.to_string(),
    }))
}

#[test]
fn unmerging_reopens_the_duplicate_and_detaches_it_from_the_survivor() {
    let (dup, surv) = (PatientId::new(), PatientId::new());
    let merged = merged_into(surv);
    let survivor = given(&[registered(), merged_in(dup)]);
    let decision = decide_merge(
        (dup, &merged),
        (surv, &survivor),
        &C::Unmerge {
            reason: "not the same person".into(),
        },
    )
    .expect("unmerged");
    let (mut d, mut s) = (merged.clone(), survivor.clone());
    decision.changes[0]
        .events
        .iter()
        .for_each(|(e, _)| d.apply(e));
    decision.changes[1]
        .events
        .iter()
        .for_each(|(e, _)| s.apply(e));
    assert_eq!(d.merged_into(), None);
    assert!(s.patient.merged_patient_ids.is_empty());
    assert!(matches!(
        decide_merge(
            (dup, &d),
            (surv, &s),
            &C::Unmerge {
                reason: "again".into()
            }
        ),
        Err(Error::NotMerged(_))
    ));
}

#[test]
fn a_survivor_may_take_over_the_nhs_number_of_a_duplicate_merged_into_it() {
    use carelog_kernel::claims::ClaimChange;
    let (dup, surv) = (PatientId::new(), PatientId::new());
    // Given a survivor registered without an NHS number, with a duplicate
    // holding the traced number merged into it
    let survivor = given(&[
        ev(E::PatientRegistered(pb::PatientRegistered {
            details: Some(pb::PatientDetails {
                nhs_number: String::new(),
                nhs_number_verification_status: 0,
                ..details()
            }),
        })),
        merged_in(dup),
    ]);
    // When the survivor is given the duplicate's NHS number
    let decision = decide(
        surv,
        &survivor,
        &C::Update {
            details: details(),
            paths: vec!["nhs_number".into(), "nhs_number_verification_status".into()],
            correction: false,
            reason: String::new(),
        },
    )
    .expect("updated");
    // Then its claim may be taken over from the duplicate, and only from it
    assert!(
        matches!(decision.claims.as_slice(), [ClaimChange::Take { value, owner, merged_in, .. }]
            if value == "9434765919" && *owner == surv && merged_in == &vec![dup]),
        "{:?}",
        decision.claims
    );

    // And when the duplicate is unmerged, it takes its number back (the
    // claim refuses the unmerge while the survivor still holds it)
    let merged = merged_into(surv);
    let decision = decide_merge(
        (dup, &merged),
        (surv, &survivor),
        &C::Unmerge {
            reason: "not the same person".into(),
        },
    )
    .expect("unmerged");
    assert!(
        matches!(decision.claims.as_slice(), [ClaimChange::Take { value, owner, merged_in, .. }]
            if value == "9434765919" && *owner == dup && merged_in.is_empty()),
        "{:?}",
        decision.claims
    );
}

#[test]
fn a_survivor_that_was_itself_merged_cannot_take_a_duplicate() {
    let (dup, surv) = (PatientId::new(), PatientId::new());
    let closed = given(&[
        registered(),
        ev(E::PatientMerged(pb::PatientMerged {
            survivor_patient_id: PatientId::new().to_string(),
        })),
    ]);
    let err = decide_merge(
        (dup, &given(&[registered()])),
        (surv, &closed),
        &C::Merge {
            survivor: surv,
            reason: "x".into(),
        },
    );
    assert!(matches!(err, Err(Error::SurvivorMerged { .. })));
}

#[test]
fn a_restricted_or_objecting_record_merges_only_with_a_record_flagged_the_same() {
    let (dup, surv) = (PatientId::new(), PatientId::new());
    let merge = C::Merge {
        survivor: surv,
        reason: "same person".into(),
    };
    let restricted = given(&[
        registered(),
        ev(E::RestrictionMarked(pb::RestrictionMarked {})),
    ]);
    let objecting = given(&[
        registered(),
        ev(E::SharingObjectionRecorded(pb::SharingObjectionRecorded {})),
    ]);
    let plain = given(&[registered()]);

    // Given a restricted duplicate, when it is merged into an unrestricted
    // survivor, then the merge is refused naming the flag and the survivor
    let err = decide_merge((dup, &restricted), (surv, &plain), &merge).expect_err("refused");
    assert!(
        matches!(err, Error::MergeFlagDiffers { flag, flagged, unflagged }
            if flag.contains("restricted") && flagged == dup && unflagged == surv),
        "{err:?}"
    );
    // and the same the other way round: the duplicate's own address would
    // otherwise still be shown through it
    let err = decide_merge((dup, &plain), (surv, &restricted), &merge).expect_err("refused");
    assert!(matches!(err, Error::MergeFlagDiffers { unflagged, .. } if unflagged == dup));
    // Given a duplicate objecting to sharing and a survivor that is not
    let err = decide_merge((dup, &objecting), (surv, &plain), &merge).expect_err("refused");
    assert!(matches!(err, Error::MergeFlagDiffers { flag, .. } if flag.contains("sharing")));

    // When both are restricted, then they merge
    let decision = decide_merge((dup, &restricted), (surv, &restricted), &merge).expect("merged");
    assert_eq!(decision.changes.len(), 2);
}

/// The fields `check_details` refuses in `details`, with their rules.
fn refused(details: pb::PatientDetails) -> Vec<(String, String)> {
    let mut v = carelog_kernel::Violations::new();
    values::check_details(&details, "details", &mut v);
    v.iter()
        .map(|x| (x.field.clone(), x.rule.clone()))
        .collect()
}

#[test]
fn each_malformed_detail_is_refused_naming_its_field_and_rule() {
    type Change = fn(&mut pb::PatientDetails);
    let cases: [(&str, Change, &str, &str); 12] = [
        (
            "an empty family name",
            |d| d.name.as_mut().expect("name").family = "  ".into(),
            "details.name.family",
            "is required",
        ),
        (
            "a NUL in the family name",
            |d| d.name.as_mut().expect("name").family = "Smith\0".into(),
            "details.name.family",
            "control characters",
        ),
        (
            "a birth date in the future",
            |d| {
                d.birth_date = Some(PbDate {
                    year: 9999,
                    month: 1,
                    day: 1,
                })
            },
            "details.birth_date",
            "must not be in the future",
        ),
        (
            "no administrative gender",
            |d| d.gender = pb::AdministrativeGender::Unspecified as i32,
            "details.gender",
            "must be male, female, other or unknown",
        ),
        (
            "a malformed ODS code",
            |d| d.registered_practice_ods = "not-a-code".into(),
            "details.registered_practice_ods",
            "",
        ),
        (
            "an NHS number whose check value is 10",
            |d| d.nhs_number = "1234567890".into(),
            "details.nhs_number",
            "",
        ),
        (
            "a verified status without an NHS number",
            |d| d.nhs_number.clear(),
            "details.nhs_number_verification_status",
            "cannot be verified without an NHS number",
        ),
        (
            "\"present but not traced\" without an NHS number",
            |d| {
                d.nhs_number.clear();
                d.nhs_number_verification_status =
                    pb::NhsNumberVerificationStatus::NotTraced as i32;
            },
            "details.nhs_number_verification_status",
            "needs an NHS number",
        ),
        (
            "\"number not present\" with an NHS number",
            |d| {
                d.nhs_number_verification_status =
                    pb::NhsNumberVerificationStatus::NotPresent as i32
            },
            "details.nhs_number_verification_status",
            "an NHS number is given",
        ),
        (
            "a district longer than 200 characters",
            |d| d.addresses[0].district = "x".repeat(201),
            "details.addresses[0].district",
            "must be at most 200 characters",
        ),
        (
            "a malformed postcode",
            |d| d.addresses[0].postcode = "LS1 4CP".into(),
            "details.addresses[0].postcode",
            "UK postcode",
        ),
        (
            "an escape sequence in an email address",
            |d| {
                d.telecom = vec![pb::ContactPoint {
                    system: pb::ContactSystem::Email as i32,
                    value: "jane@example.org\u{1b}[2J".into(),
                    r#use: pb::ContactUse::Home as i32,
                }]
            },
            "details.telecom[0].value",
            "control characters",
        ),
    ];
    assert!(refused(details()).is_empty(), "the base details are valid");
    for (what, change, field, rule) in cases {
        // Given otherwise valid details with one fault
        let mut d = details();
        change(&mut d);
        // When they are checked, then that field alone is refused, by its rule
        let refused = refused(d);
        assert_eq!(refused.len(), 1, "{what}: {refused:?}");
        assert_eq!(refused[0].0, field, "{what}");
        assert!(refused[0].1.contains(rule), "{what}: {refused:?}");
    }
}

#[test]
fn a_correction_cannot_move_the_birth_date_after_the_death() {
    // Given a patient who died in January 2020
    let record = given(&[registered(), deceased()]);
    let mut later = details();
    later.birth_date = Some(PbDate {
        year: 2021,
        month: 5,
        day: 1,
    });
    // When a correction moves her birth date to May 2021
    let err = when(
        &record,
        C::Update {
            details: later,
            paths: vec!["birth_date".into()],
            correction: true,
            reason: "transcription error".into(),
        },
    )
    .expect_err("refused");
    // Then it is refused, naming the birth date
    assert_eq!(reason_field(err), vec!["details.birth_date"]);
}

#[test]
fn withdrawing_a_sharing_objection_needs_a_reason() {
    let objecting = given(&[
        registered(),
        ev(E::SharingObjectionRecorded(pb::SharingObjectionRecorded {})),
    ]);
    let err = when(
        &objecting,
        C::WithdrawSharingObjection { reason: " ".into() },
    )
    .expect_err("no reason");
    assert_eq!(reason_field(err), vec!["reason"]);
    let events = when(
        &objecting,
        C::WithdrawSharingObjection {
            reason: "patient consented at review".into(),
        },
    )
    .expect("withdrawn");
    assert!(matches!(
        events[0].event,
        Some(E::SharingObjectionWithdrawn(_))
    ));
}

#[test]
fn a_record_with_duplicates_merged_into_it_cannot_itself_be_merged() {
    // Given a survivor that holds a merged duplicate
    let (other, target) = (PatientId::new(), PatientId::new());
    let holding = given(&[
        registered(),
        ev(E::DuplicateMergedIn(pb::DuplicateMergedIn {
            duplicate_patient_id: PatientId::new().to_string(),
        })),
    ]);
    // When it is merged into another record
    let err = decide_merge(
        (other, &holding),
        (target, &given(&[registered()])),
        &C::Merge {
            survivor: target,
            reason: "same person".into(),
        },
    )
    .expect_err("refused");
    // Then it is refused until its duplicates are unmerged
    assert!(matches!(err, Error::HasMergedDuplicates(id) if id == other));
}
