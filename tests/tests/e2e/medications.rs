//! The medication record on the real servers: allergies, prescribing with
//! its safety checks, issues and reviews through the gRPC API and the read
//! models; the patient gate; bad input appends nothing; every event audited.

use std::time::Duration;

use carelog_proto::demographics::v1 as dpb;
use carelog_proto::kernel::v1::PartialDate;
use carelog_proto::medications::v1 as pb;
use carelog_tests::harness::{TestStack, jane_smith, test_nhs_number};
use carelog_tests::medications::{
    AMOXICILLIN_500, CLARITHROMYCIN_500, PARACETAMOL_500, PENICILLIN, acute, authorise, in_days,
    issue, record_penicillin_allergy, repeat,
};
use tonic::Code;
use tonic_types::StatusExt as _;

fn reason(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn medications_allergy_refuses_amoxicillin_then_a_clarithromycin_repeat_is_issued_twice_and_listed()
 {
    let stack = TestStack::start().await;
    let mut meds = stack.medications();
    // Given a patient registered a moment ago
    let jane = stack.register(jane_smith()).await;
    let id = jane.patient_id.clone();

    // When a penicillin allergy is recorded (at once: no wait for any projector)
    let allergy = meds
        .record_allergy(stack.req(record_penicillin_allergy(&id)))
        .await
        .expect("allergy recorded")
        .into_inner();
    assert_eq!(allergy.status, pb::AllergyStatus::Active as i32);
    assert_eq!(allergy.patient_id, id);

    // Then amoxicillin is refused, naming the allergy
    let refused = meds
        .authorise_medication(stack.req(authorise(&id, acute(AMOXICILLIN_500))))
        .await
        .expect_err("allergy conflict");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "ALLERGY_CONFLICT");
    let info = refused.get_details_error_info().expect("error info");
    assert_eq!(info.metadata.get("allergyId"), Some(&allergy.allergy_id));
    assert_eq!(
        info.metadata.get("substanceCode").map(String::as_str),
        Some(PENICILLIN)
    );
    assert!(
        refused.message().contains("Penicillin"),
        "{}",
        refused.message()
    );

    // And an alternative as a repeat is issued twice
    let clarithromycin = meds
        .authorise_medication(stack.req(authorise(&id, repeat(CLARITHROMYCIN_500, 6))))
        .await
        .expect("repeat authorised")
        .into_inner();
    assert_eq!(
        clarithromycin
            .details
            .as_ref()
            .and_then(|d| d.product.as_ref())
            .map(|p| p.display.as_str()),
        Some("Clarithromycin 500mg tablets")
    );
    let first = meds
        .issue_prescription(stack.req(issue(&id, &clarithromycin.authorisation_id)))
        .await
        .expect("first issue")
        .into_inner();
    let second = meds
        .issue_prescription(stack.req(issue(&id, &clarithromycin.authorisation_id)))
        .await
        .expect("second issue")
        .into_inner();
    assert_eq!((first.issue_number, second.issue_number), (1, 2));

    // And the same product again is refused as a duplicate
    let duplicate = meds
        .authorise_medication(stack.req(authorise(&id, repeat(CLARITHROMYCIN_500, 6))))
        .await
        .expect_err("duplicate");
    assert_eq!(reason(&duplicate), "DUPLICATE_PRESCRIPTION");

    // Then the read models show it, read-your-writes
    let list = meds
        .list_medications(stack.req(pb::ListMedicationsRequest {
            patient_id: id.clone(),
            min_sequence: second.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("medication list")
        .into_inner();
    assert_eq!(list.authorisations.len(), 1);
    let current = &list.authorisations[0];
    assert_eq!(current.authorisation_id, clarithromycin.authorisation_id);
    assert_eq!(current.issues_made, 2);
    assert_eq!(current.last_issued_on, Some(in_days(0)));
    assert_eq!(
        current.details.as_ref().and_then(|d| d.review_date),
        Some(in_days(90))
    );
    let issues = meds
        .list_issues(stack.req(pb::ListIssuesRequest {
            patient_id: id.clone(),
            page_size: 1,
            min_sequence: second.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("issue history")
        .into_inner();
    assert_eq!(issues.issues.len(), 1);
    assert_eq!(issues.issues[0].issue_id, first.issue_id);
    let next = meds
        .list_issues(stack.req(pb::ListIssuesRequest {
            patient_id: id.clone(),
            page_size: 1,
            page_token: issues.next_page_token.clone(),
            ..Default::default()
        }))
        .await
        .expect("second page")
        .into_inner();
    assert_eq!(next.issues.len(), 1);
    assert_eq!(next.issues[0].issue_id, second.issue_id);
    let allergies = meds
        .list_allergies(stack.req(pb::ListAllergiesRequest {
            patient_id: id.clone(),
            min_sequence: second.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("allergy list")
        .into_inner();
    assert_eq!(allergies.allergies.len(), 1);
    assert_eq!(allergies.allergies[0].allergy_id, allergy.allergy_id);
    stack.stop().await;
}

#[tokio::test]
async fn medications_change_review_discontinue_and_allergy_resolution_reach_the_read_models() {
    let stack = TestStack::start().await;
    let mut meds = stack.medications();
    let jane = stack.register(jane_smith()).await;
    let id = jane.patient_id.clone();
    let allergy = meds
        .record_allergy(stack.req(record_penicillin_allergy(&id)))
        .await
        .expect("allergy")
        .into_inner();
    let paracetamol = meds
        .authorise_medication(stack.req(authorise(&id, repeat(PARACETAMOL_500, 3))))
        .await
        .expect("paracetamol")
        .into_inner();

    // A change of dose stops the old and links the new, in one commit
    let before = stack.last_sequence_of("medications").await;
    let changed = meds
        .change_medication(stack.req(pb::ChangeMedicationRequest {
            patient_id: id.clone(),
            authorisation_id: paracetamol.authorisation_id.clone(),
            authorisation: Some(pb::AuthorisationDetails {
                dose_instructions: "two tablets up to four times a day".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["dose_instructions".into()],
            }),
            reason: "pain not controlled".into(),
            ..Default::default()
        }))
        .await
        .expect("changed")
        .into_inner();
    assert_eq!(stack.last_sequence_of("medications").await, before + 1);
    let started = changed.started.expect("started");
    assert_eq!(
        started.replaces_authorisation_id,
        paracetamol.authorisation_id
    );

    // A review resets the review date
    let reviewed = meds
        .record_medication_review(stack.req(pb::RecordMedicationReviewRequest {
            patient_id: id.clone(),
            next_review_date: Some(in_days(120)),
            note: "reviewed, continue".into(),
            ..Default::default()
        }))
        .await
        .expect("reviewed")
        .into_inner();
    assert_eq!(reviewed.reviewed.len(), 1);
    assert_eq!(reviewed.reviewed[0].last_reviewed_on, Some(in_days(0)));

    // The allergy resolves; then the new one is discontinued
    meds.resolve_allergy(stack.req(pb::ResolveAllergyRequest {
        patient_id: id.clone(),
        allergy_id: allergy.allergy_id.clone(),
        reason: "negative challenge test".into(),
        ..Default::default()
    }))
    .await
    .expect("resolved");
    let stopped = meds
        .discontinue_medication(stack.req(pb::DiscontinueMedicationRequest {
            patient_id: id.clone(),
            authorisation_id: started.authorisation_id.clone(),
            reason: "no longer needed".into(),
            ..Default::default()
        }))
        .await
        .expect("discontinued")
        .into_inner();

    let current = meds
        .list_medications(stack.req(pb::ListMedicationsRequest {
            patient_id: id.clone(),
            min_sequence: stopped.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("list")
        .into_inner();
    assert!(current.authorisations.is_empty(), "{current:?}");
    let all = meds
        .list_medications(stack.req(pb::ListMedicationsRequest {
            patient_id: id.clone(),
            include_discontinued: true,
            min_sequence: stopped.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("list all")
        .into_inner();
    assert_eq!(all.authorisations.len(), 2);
    assert_eq!(all.authorisations[1].last_reviewed_on, Some(in_days(0)));
    assert_eq!(
        all.authorisations[1]
            .details
            .as_ref()
            .and_then(|d| d.review_date),
        Some(in_days(120))
    );
    let active = meds
        .list_allergies(stack.req(pb::ListAllergiesRequest {
            patient_id: id.clone(),
            min_sequence: stopped.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("active allergies")
        .into_inner();
    assert!(active.allergies.is_empty());
    let resolved = meds
        .list_allergies(stack.req(pb::ListAllergiesRequest {
            patient_id: id.clone(),
            status: pb::AllergyStatus::Resolved as i32,
            ..Default::default()
        }))
        .await
        .expect("resolved allergies")
        .into_inner();
    assert_eq!(resolved.allergies.len(), 1);
    assert_eq!(
        resolved.allergies[0].resolution_reason,
        "negative challenge test"
    );

    // With the allergy resolved, amoxicillin is allowed now
    let amoxicillin = meds
        .authorise_medication(stack.req(authorise(&id, acute(AMOXICILLIN_500))))
        .await
        .expect("no active allergy")
        .into_inner();
    meds.issue_prescription(stack.req(issue(&id, &amoxicillin.authorisation_id)))
        .await
        .expect("issued");

    // And `carelog rebuild medications` gives the same read models
    let last = stack.last_sequence_of("medications").await;
    meds.list_medications(stack.req(pb::ListMedicationsRequest {
        patient_id: id.clone(),
        min_sequence: last,
        ..Default::default()
    }))
    .await
    .expect("caught up");
    let before = dump(&stack.pool).await;
    assert!(before[2].lines().count() == 2, "one issue: {before:?}");
    let projection = carelog_projections::by_name("medications").expect("projection");
    carelog_projections::rebuild::rebuild(
        &stack.pool,
        &stack.store,
        projection.as_ref(),
        &|_, _| {},
    )
    .await
    .expect("rebuild");
    assert_eq!(dump(&stack.pool).await, before);
    stack.stop().await;
}

async fn dump(pool: &sqlx::PgPool) -> Vec<String> {
    let mut out = Vec::new();
    for (table, order) in [
        ("medication_allergies", "allergy_id"),
        ("medication_authorisations", "authorisation_id"),
        ("medication_issues", "issue_id"),
    ] {
        let sql = format!(
            "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY {order}), '') FROM {table} t"
        );
        let (text,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .expect("dump");
        out.push(format!("== {table}\n{text}"));
    }
    out
}

#[tokio::test]
async fn medications_refuse_unknown_merged_and_for_new_activity_deceased_patients() {
    let stack = TestStack::start().await;
    let mut meds = stack.medications();
    let mut demographics = stack.client();

    let unknown = meds
        .record_allergy(stack.req(record_penicillin_allergy(&uuid::Uuid::now_v7().to_string())))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);

    let duplicate = stack.register(jane_smith()).await;
    let survivor = stack
        .register(dpb::PatientDetails {
            nhs_number: test_nhs_number(),
            ..jane_smith()
        })
        .await;
    demographics
        .merge_patient(stack.req(dpb::MergePatientRequest {
            duplicate_patient_id: duplicate.patient_id.clone(),
            survivor_patient_id: survivor.patient_id.clone(),
            reason: "registered twice".into(),
            request_id: "merge-meds".into(),
        }))
        .await
        .expect("merged");
    let merged = meds
        .authorise_medication(stack.req(authorise(&duplicate.patient_id, acute(PARACETAMOL_500))))
        .await
        .expect_err("merged");
    assert_eq!(merged.code(), Code::FailedPrecondition);
    assert_eq!(reason(&merged), "PATIENT_MERGED");
    assert!(merged.message().contains(&survivor.patient_id));

    // A deceased patient: no new clinical activity, but the record can be closed
    let jane = stack.register(jane_smith()).await;
    let id = jane.patient_id.clone();
    let repeat = meds
        .authorise_medication(stack.req(authorise(&id, repeat(CLARITHROMYCIN_500, 6))))
        .await
        .expect("authorised")
        .into_inner();
    let allergy = meds
        .record_allergy(stack.req(record_penicillin_allergy(&id)))
        .await
        .expect("allergy")
        .into_inner();
    demographics
        .record_death(stack.req(dpb::RecordDeathRequest {
            patient_id: id.clone(),
            date_of_death: Some(PartialDate {
                year: 2025,
                month: 1,
                day: 2,
            }),
            ..Default::default()
        }))
        .await
        .expect("death recorded");
    let before = stack.last_sequence_of("medications").await;
    for status in [
        meds.record_allergy(stack.req(record_penicillin_allergy(&id)))
            .await
            .expect_err("allergy after death"),
        meds.authorise_medication(stack.req(authorise(&id, acute(PARACETAMOL_500))))
            .await
            .expect_err("authorise after death"),
        meds.issue_prescription(stack.req(issue(&id, &repeat.authorisation_id)))
            .await
            .expect_err("issue after death"),
    ] {
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(reason(&status), "PATIENT_DECEASED");
    }
    assert_eq!(stack.last_sequence_of("medications").await, before);
    meds.discontinue_medication(stack.req(pb::DiscontinueMedicationRequest {
        patient_id: id.clone(),
        authorisation_id: repeat.authorisation_id.clone(),
        reason: "patient died".into(),
        ..Default::default()
    }))
    .await
    .expect("discontinue after death");
    meds.mark_allergy_entered_in_error(stack.req(pb::MarkAllergyEnteredInErrorRequest {
        patient_id: id.clone(),
        allergy_id: allergy.allergy_id.clone(),
        reason: "recorded against the wrong patient".into(),
        ..Default::default()
    }))
    .await
    .expect("correction after death");
    stack.stop().await;
}

#[tokio::test]
async fn medications_bad_input_names_the_field_and_appends_nothing() {
    let stack = TestStack::start().await;
    let mut meds = stack.medications();
    let jane = stack.register(jane_smith()).await;
    let id = jane.patient_id.clone();
    let authorised = meds
        .authorise_medication(stack.req(authorise(&id, repeat(CLARITHROMYCIN_500, 1))))
        .await
        .expect("authorised")
        .into_inner();
    let before = stack.last_sequence_of("medications").await;

    let mut bad_substance = record_penicillin_allergy(&id);
    if let Some(s) = bad_substance
        .allergy
        .as_mut()
        .and_then(|a| a.substance.as_mut())
    {
        s.code = "764146008".into();
    }
    let status = meds
        .record_allergy(stack.req(bad_substance))
        .await
        .expect_err("bad substance");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(fields(&status), vec!["allergy.substance.code"]);

    let mut unknown_product = repeat(CLARITHROMYCIN_500, 1);
    unknown_product.product = Some(pb::Coding {
        code: "387517004".into(),
        display: String::new(),
    });
    unknown_product.quantity = "0".into();
    let status = meds
        .authorise_medication(stack.req(authorise(&id, unknown_product)))
        .await
        .expect_err("not in the catalogue");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&status),
        vec!["authorisation.product.code", "authorisation.quantity"]
    );

    let status = meds
        .change_medication(stack.req(pb::ChangeMedicationRequest {
            patient_id: id.clone(),
            authorisation_id: authorised.authorisation_id.clone(),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["colour".into()],
            }),
            reason: "typo".into(),
            ..Default::default()
        }))
        .await
        .expect_err("unknown path");
    assert_eq!(fields(&status), vec!["update_mask.paths[0]"]);

    let status = meds
        .issue_prescription(stack.req(issue(&id, "not-a-uuid")))
        .await
        .expect_err("bad id");
    assert_eq!(fields(&status), vec!["authorisation_id"]);

    let status = meds
        .discontinue_medication(stack.req(pb::DiscontinueMedicationRequest {
            patient_id: id.clone(),
            authorisation_id: authorised.authorisation_id.clone(),
            ..Default::default()
        }))
        .await
        .expect_err("no reason");
    assert_eq!(fields(&status), vec!["reason"]);
    assert_eq!(stack.last_sequence_of("medications").await, before);

    // The one authorised issue is used, then the next is refused
    meds.issue_prescription(stack.req(issue(&id, &authorised.authorisation_id)))
        .await
        .expect("issued");
    let used_up = stack.last_sequence_of("medications").await;
    let status = meds
        .issue_prescription(stack.req(issue(&id, &authorised.authorisation_id)))
        .await
        .expect_err("used up");
    assert_eq!(reason(&status), "ISSUES_USED_UP");
    assert_eq!(stack.last_sequence_of("medications").await, used_up);
    stack.stop().await;
}

#[tokio::test]
async fn medications_a_repeated_request_returns_the_first_result_and_overrides_are_audited() {
    let stack = TestStack::start().await;
    let mut meds = stack.medications();
    let jane = stack.register(jane_smith()).await;
    let id = jane.patient_id.clone();
    meds.record_allergy(stack.req(record_penicillin_allergy(&id)))
        .await
        .expect("allergy");
    let request = pb::AuthoriseMedicationRequest {
        override_reason: "tolerated amoxicillin last year; allergy label doubtful".into(),
        request_id: "amox-override-1".into(),
        ..authorise(&id, acute(AMOXICILLIN_500))
    };
    let first = meds
        .authorise_medication(stack.req(request.clone()))
        .await
        .expect("overridden")
        .into_inner();
    assert_eq!(first.overrides.len(), 1);
    let after = stack.last_sequence_of("medications").await;
    let again = meds
        .authorise_medication(stack.req(request))
        .await
        .expect("repeat")
        .into_inner();
    assert_eq!(again.authorisation_id, first.authorisation_id);
    assert_eq!(stack.last_sequence_of("medications").await, after);

    // Every event reaches the audit history, the override's reason with it
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let types = loop {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT event_type FROM audit_events WHERE context = 'medications' AND patient_id = $1 \
             ORDER BY stream_sequence, event_index",
        )
        .bind(&id)
        .fetch_all(&stack.pool)
        .await
        .expect("audit rows");
        if rows.len() >= 2 || tokio::time::Instant::now() > deadline {
            break rows.into_iter().map(|r| r.0).collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(types, vec!["AllergyRecorded", "MedicationAuthorised"]);
    let (payload,): (Vec<u8>,) = sqlx::query_as(
        "SELECT payload FROM audit_events WHERE patient_id = $1 AND event_type = 'MedicationAuthorised'",
    )
    .bind(&id)
    .fetch_one(&stack.pool)
    .await
    .expect("audit payload");
    let event = <pb::Event as prost::Message>::decode(payload.as_slice()).expect("decodes");
    let Some(pb::event::Event::MedicationAuthorised(e)) = event.event else {
        panic!("MedicationAuthorised expected");
    };
    assert!(e.overrides[0].reason.contains("doubtful"));
    stack.stop().await;
}

/// Event schemas are forever: one encoded sample per medications event
/// type under tests/golden/medications/ (`CARELOG_WRITE_GOLDEN=1` writes
/// missing ones, never overwrites), each still decoding to the same event.
mod golden {
    use std::path::PathBuf;

    use carelog_kernel::Aggregate as _;
    use carelog_medications::domain::MedicationRecord;
    use carelog_proto::kernel::v1::PartialDate;
    use carelog_proto::medications::v1 as pb;
    use carelog_tests::medications::{CLARITHROMYCIN_500, PENICILLIN, penicillin_allergy, repeat};
    use pb::event::Event as E;
    use prost::Message as _;

    fn samples() -> Vec<pb::Event> {
        let allergy = "01a20000-0000-7000-8000-0000000000a1".to_owned();
        let authorisation = "01a20000-0000-7000-8000-0000000000b1".to_owned();
        let replacement = "01a20000-0000-7000-8000-0000000000b2".to_owned();
        let date = |day| {
            Some(PartialDate {
                year: 2026,
                month: 3,
                day,
            })
        };
        let mut details = repeat(CLARITHROMYCIN_500, 6);
        details.product = Some(pb::Coding {
            code: CLARITHROMYCIN_500.into(),
            display: "Clarithromycin 500mg tablets".into(),
        });
        details.review_date = date(30);
        details.expiry_date = date(31);
        let mut allergy_details = penicillin_allergy();
        allergy_details.onset = Some(PartialDate {
            year: 1998,
            month: 0,
            day: 0,
        });
        [
            E::AllergyRecorded(pb::AllergyRecorded {
                allergy_id: allergy.clone(),
                details: Some(allergy_details),
                recorded_on: date(1),
            }),
            E::AllergyResolved(pb::AllergyResolved {
                allergy_id: allergy.clone(),
                resolved_on: date(2),
                reason: "negative challenge test".into(),
            }),
            E::AllergyEnteredInError(pb::AllergyEnteredInError {
                allergy_id: allergy.clone(),
                reason: "wrong patient".into(),
            }),
            E::MedicationAuthorised(pb::MedicationAuthorised {
                authorisation_id: replacement.clone(),
                details: Some(details),
                authorised_on: date(3),
                replaces_authorisation_id: authorisation.clone(),
                overrides: vec![pb::SafetyOverride {
                    kind: pb::safety_override::Kind::Allergy as i32,
                    allergy_id: allergy,
                    substance: Some(pb::Coding {
                        code: PENICILLIN.into(),
                        display: "Penicillin".into(),
                    }),
                    authorisation_id: String::new(),
                    reason: "allergy label doubtful".into(),
                }],
                ingredient_codes: vec!["372709008".into()],
            }),
            E::PrescriptionIssued(pb::PrescriptionIssued {
                issue_id: "01a20000-0000-7000-8000-0000000000c1".into(),
                authorisation_id: replacement.clone(),
                issue_number: 1,
                issued_on: date(4),
            }),
            E::MedicationDiscontinued(pb::MedicationDiscontinued {
                authorisation_id: authorisation,
                discontinued_on: date(3),
                reason: "dose change".into(),
                replaced_by_authorisation_id: replacement.clone(),
            }),
            E::MedicationReviewed(pb::MedicationReviewed {
                authorisation_ids: vec![replacement],
                reviewed_on: date(5),
                next_review_date: date(28),
                note: "continue".into(),
            }),
        ]
        .into_iter()
        .map(|e| pb::Event { event: Some(e) })
        .collect()
    }

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/medications")
    }

    #[test]
    fn every_medications_event_type_has_a_golden_sample_that_still_decodes() {
        let write = std::env::var("CARELOG_WRITE_GOLDEN").is_ok_and(|v| v == "1");
        for sample in samples() {
            let name = MedicationRecord::event_type(&sample);
            let path = dir().join(format!("{name}.bin"));
            if write && !path.exists() {
                std::fs::write(&path, sample.encode_to_vec()).expect("write golden sample");
            }
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("golden sample {} missing ({e})", path.display()));
            let decoded = pb::Event::decode(bytes.as_slice())
                .unwrap_or_else(|e| panic!("{name} no longer decodes: {e}"));
            assert_eq!(MedicationRecord::event_type(&decoded), name);
            assert_eq!(
                decoded.encode_to_vec(),
                bytes,
                "{name} re-encodes differently"
            );
            let mut record = MedicationRecord::default();
            record.apply(&decoded);
        }
        let files = std::fs::read_dir(dir()).expect("golden dir").count();
        assert_eq!(
            files,
            samples().len(),
            "a golden sample without an event type, or the reverse"
        );
    }
}
