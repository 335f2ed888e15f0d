//! The patient gate (unknown, merged, deceased), bad input that appends
//! nothing, idempotent repeats, and the audit history.

use std::time::Duration;

use carelog_proto::demographics::v1 as dpb;
use carelog_proto::kernel::v1::PartialDate;
use carelog_proto::medications::v1 as pb;
use carelog_tests::harness::{TestStack, jane_smith, test_nhs_number};
use carelog_tests::medications::{
    AMOXICILLIN_500, CLARITHROMYCIN_500, PARACETAMOL_500, acute, authorise, issue,
    record_penicillin_allergy, repeat,
};
use tonic::Code;

use super::{fields, reason};
use carelog_tests::consultations::mask;

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
    let recorded = pb::RecordAllergyRequest {
        request_id: "penicillin-1".into(),
        ..record_penicillin_allergy(&id)
    };
    let allergy = meds
        .record_allergy(stack.req(recorded.clone()))
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
    // The allergy recorded before the death, sent again (its answer was
    // lost), is answered with that allergy, not refused as new activity
    let again = meds
        .record_allergy(stack.req(recorded))
        .await
        .expect("the repeated recording is answered")
        .into_inner();
    assert_eq!(again.allergy_id, allergy.allergy_id);
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
            update_mask: mask(&["colour"]),
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
    let (audited_reason,): (String,) = sqlx::query_as(
        "SELECT reason FROM audit_events WHERE patient_id = $1 AND event_type = 'MedicationAuthorised'",
    )
    .bind(&id)
    .fetch_one(&stack.pool)
    .await
    .expect("audit reason");
    assert!(audited_reason.contains("doubtful"), "{audited_reason}");
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

#[tokio::test]
async fn medications_two_prescribers_authorising_the_same_product_at_once_get_one_authorisation() {
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let id = jane.patient_id.clone();
    let attempts = ["dr-jones", "dr-patel"].map(|user| {
        let mut meds = stack.medications();
        let request = stack.req_as(user, authorise(&id, repeat(CLARITHROMYCIN_500, 6)));
        tokio::spawn(async move { meds.authorise_medication(request).await })
    });
    let mut granted = 0;
    let mut duplicates = 0;
    for attempt in attempts {
        match attempt.await.expect("join") {
            Ok(_) => granted += 1,
            Err(status) => {
                assert_eq!(reason(&status), "DUPLICATE_PRESCRIPTION", "{status:?}");
                duplicates += 1;
            }
        }
    }
    assert_eq!((granted, duplicates), (1, 1));
    stack.stop().await;
}
