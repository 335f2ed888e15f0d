//! Full clinical scenarios through the gRPC API and the read models, and a
//! rebuild of the read models that ends where the projector ended.

use carelog_proto::medications::v1 as pb;
use carelog_tests::audit::position;
use carelog_tests::harness::{TestStack, jane_smith};
use carelog_tests::medications::{
    AMOXICILLIN_500, CLARITHROMYCIN_500, PARACETAMOL_500, PENICILLIN, acute, authorise, in_days,
    issue, record_penicillin_allergy, repeat,
};
use tonic::Code;
use tonic_types::StatusExt as _;

use super::reason;
use carelog_tests::consultations::mask;

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
    assert_eq!(
        (
            info.metadata.get("conflictCount").map(String::as_str),
            info.metadata.get("reasons").map(String::as_str)
        ),
        (Some("1"), Some("ALLERGY_CONFLICT"))
    );
    assert!(
        refused.message().contains("Penicillin"),
        "{}",
        refused.message()
    );
    // and the prescriber being told of the allergy is audited as a read of
    // it, at the position of the record it was decided on
    let told = stack.last_access(&id, "AuthoriseMedication").await;
    assert_eq!(
        told.actor.as_ref().map(|a| a.user_id.as_str()),
        Some("dr-jones")
    );
    assert_eq!(told.resource_ids, [allergy.allergy_id.as_str()]);
    assert_eq!(
        position(&told, "CARELOG_MEDICATIONS"),
        Some(allergy.stream_sequence)
    );

    // And an alternative as a repeat of 7 days' supply, its supply
    // checked (a year at most) with nothing appended when wrong
    let week = pb::AuthorisationDetails {
        supply_days: 7,
        ..repeat(CLARITHROMYCIN_500, 6)
    };
    let before = stack.last_sequence_of("medications").await;
    let too_long = meds
        .authorise_medication(stack.req(authorise(
            &id,
            pb::AuthorisationDetails {
                supply_days: 400,
                ..week.clone()
            },
        )))
        .await
        .expect_err("more than a year");
    assert_eq!(too_long.code(), Code::InvalidArgument);
    assert_eq!(
        carelog_tests::assert::violated_fields(&too_long),
        ["authorisation.supply_days"]
    );
    assert_eq!(stack.last_sequence_of("medications").await, before);
    // is issued twice
    let clarithromycin = meds
        .authorise_medication(stack.req(authorise(&id, week)))
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
    // A second issue the same day is refused, naming the authorisation,
    // and nothing is appended
    let before = stack.last_sequence_of("medications").await;
    let again = meds
        .issue_prescription(stack.req(issue(&id, &clarithromycin.authorisation_id)))
        .await
        .expect_err("issued today already");
    // (issued today, which is not also told as early)
    assert_eq!(reason(&again), "ISSUED_TODAY");
    let info = again.get_details_error_info().expect("error info");
    assert_eq!(
        info.metadata.get("reasons").map(String::as_str),
        Some("ISSUED_TODAY")
    );
    assert_eq!(
        info.metadata.get("authorisationId"),
        Some(&clarithromycin.authorisation_id)
    );
    assert_eq!(stack.last_sequence_of("medications").await, before);
    // unless the prescriber gives a reason
    let second = meds
        .issue_prescription(stack.req(pb::IssuePrescriptionRequest {
            override_reason: "first prescription lost by the pharmacy".into(),
            ..issue(&id, &clarithromycin.authorisation_id)
        }))
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
    assert_eq!(current.details.as_ref().map(|d| d.supply_days), Some(7));
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
async fn medications_a_repeat_authorised_before_a_penicillin_allergy_is_not_issued_without_an_override()
 {
    let stack = TestStack::start().await;
    let mut meds = stack.medications();
    // Given an amoxicillin repeat, issued once
    let jane = stack.register(jane_smith()).await;
    let id = jane.patient_id.clone();
    let amoxicillin = meds
        .authorise_medication(stack.req(authorise(&id, repeat(AMOXICILLIN_500, 6))))
        .await
        .expect("repeat authorised")
        .into_inner();
    meds.issue_prescription(stack.req(issue(&id, &amoxicillin.authorisation_id)))
        .await
        .expect("first issue");
    // and a penicillin allergy recorded since
    let allergy = meds
        .record_allergy(stack.req(record_penicillin_allergy(&id)))
        .await
        .expect("allergy recorded")
        .into_inner();

    // When the repeat is issued again
    let before = stack.last_sequence_of("medications").await;
    let refused = meds
        .issue_prescription(stack.req(issue(&id, &amoxicillin.authorisation_id)))
        .await
        .expect_err("an allergy the authorisation never saw");

    // Then it is refused naming the allergy, and, as it was issued this
    // morning, that too: both rules are told, and nothing is appended
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "ALLERGY_CONFLICT");
    let info = refused.get_details_error_info().expect("error info");
    assert_eq!(info.metadata.get("allergyId"), Some(&allergy.allergy_id));
    assert_eq!(
        info.metadata.get("reasons").map(String::as_str),
        Some("ALLERGY_CONFLICT,ISSUED_TODAY")
    );
    assert_eq!(
        info.metadata.get("conflictCount").map(String::as_str),
        Some("2")
    );
    assert_eq!(stack.last_sequence_of("medications").await, before);

    // And with the prescriber's reason it is issued, the override shown on
    // the medication
    let second = meds
        .issue_prescription(stack.req(pb::IssuePrescriptionRequest {
            override_reason: "reaction was a viral rash; tolerated amoxicillin since".into(),
            ..issue(&id, &amoxicillin.authorisation_id)
        }))
        .await
        .expect("overridden")
        .into_inner();
    assert_eq!(second.issue_number, 2);
    let listed = meds
        .list_medications(stack.req(pb::ListMedicationsRequest {
            patient_id: id.clone(),
            min_sequence: second.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("listed")
        .into_inner();
    let shown = listed
        .authorisations
        .iter()
        .find(|a| a.authorisation_id == amoxicillin.authorisation_id)
        .expect("the repeat");
    assert!(
        shown
            .overrides
            .iter()
            .any(|o| o.allergy_id == allergy.allergy_id && o.reason.starts_with("reaction")),
        "{:?}",
        shown.overrides
    );
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
    meds.issue_prescription(stack.req(issue(&id, &paracetamol.authorisation_id)))
        .await
        .expect("issued this morning");

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
            update_mask: mask(&["dose_instructions"]),
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
    // and the new one, issued the same day, is refused as issued today,
    // naming the one it replaced, whose issue the patient holds
    let again = meds
        .issue_prescription(stack.req(issue(&id, &started.authorisation_id)))
        .await
        .expect_err("the old one was issued today");
    assert_eq!(reason(&again), "ISSUED_TODAY");
    let info = again.get_details_error_info().expect("error info");
    assert_eq!(
        info.metadata.get("authorisationId"),
        Some(&started.authorisation_id)
    );
    assert_eq!(
        info.metadata.get("lastIssuedAuthorisationId"),
        Some(&paracetamol.authorisation_id)
    );
    assert_eq!(stack.last_sequence_of("medications").await, before + 1);

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
    assert!(
        before[2].lines().count() == 3,
        "two issues (and the header): {before:?}"
    );
    stack.rebuild("medications").await;
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
async fn medications_a_penicillin_allergy_on_a_merged_duplicate_refuses_amoxicillin_on_the_survivor()
 {
    let stack = TestStack::start().await;
    let mut meds = stack.medications();
    // Given Jane registered twice, her penicillin allergy on the duplicate
    let duplicate = stack.register(jane_smith()).await;
    let survivor = stack.register(jane_smith()).await;
    let allergy = meds
        .record_allergy(stack.req(record_penicillin_allergy(&duplicate.patient_id)))
        .await
        .expect("allergy recorded")
        .into_inner();
    // and the duplicate merged into the survivor
    stack
        .client()
        .merge_patient(
            stack.req(carelog_proto::demographics::v1::MergePatientRequest {
                duplicate_patient_id: duplicate.patient_id.clone(),
                survivor_patient_id: survivor.patient_id.clone(),
                reason: "same person registered twice".into(),
                ..Default::default()
            }),
        )
        .await
        .expect("merged");

    // When amoxicillin is prescribed on the surviving record
    let before = stack.last_sequence_of("medications").await;
    let refused = meds
        .authorise_medication(stack.req(authorise(&survivor.patient_id, acute(AMOXICILLIN_500))))
        .await
        .expect_err("her allergy, recorded on the record merged into this one");

    // Then it is refused naming that allergy, and nothing is appended
    assert_eq!(reason(&refused), "ALLERGY_CONFLICT");
    let info = refused.get_details_error_info().expect("error info");
    assert_eq!(info.metadata.get("allergyId"), Some(&allergy.allergy_id));
    assert_eq!(stack.last_sequence_of("medications").await, before);
    // and the prescriber being told of it is audited as a read of the
    // record that holds it, at that record's position
    let told = stack
        .last_access(&duplicate.patient_id, "AuthoriseMedication")
        .await;
    assert_eq!(told.resource_ids, [allergy.allergy_id.as_str()]);
    assert_eq!(
        position(&told, "CARELOG_MEDICATIONS"),
        Some(allergy.stream_sequence)
    );

    // And the survivor's allergy list shows it, naming the record it is on
    let listed = meds
        .list_allergies(stack.req(pb::ListAllergiesRequest {
            patient_id: survivor.patient_id.clone(),
            min_sequence: allergy.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("listed")
        .into_inner()
        .allergies;
    assert_eq!(
        listed
            .iter()
            .map(|a| (a.allergy_id.as_str(), a.patient_id.as_str()))
            .collect::<Vec<_>>(),
        [(allergy.allergy_id.as_str(), duplicate.patient_id.as_str())]
    );

    // And when it was recorded against the wrong person, it is corrected on
    // the record that holds it, and amoxicillin is prescribed
    meds.mark_allergy_entered_in_error(stack.req(pb::MarkAllergyEnteredInErrorRequest {
        patient_id: duplicate.patient_id.clone(),
        allergy_id: allergy.allergy_id.clone(),
        reason: "recorded against the wrong patient".into(),
        ..Default::default()
    }))
    .await
    .expect("corrected on the merged record");
    meds.authorise_medication(stack.req(authorise(&survivor.patient_id, acute(AMOXICILLIN_500))))
        .await
        .expect("no allergy now");
    stack.stop().await;
}

/// A repeated command is answered with the record as it stands, and that
/// answer is audited as the read it is: naming the allergy it shows, at the
/// position it was read at, so the audit can say what the clinician saw.
#[tokio::test]
async fn a_repeated_allergy_recording_answers_with_the_allergy_now_and_its_read_names_it() {
    // Given Jane's penicillin allergy recorded under "allergy-1", and
    // resolved since
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let mut meds = stack.medications();
    let record = pb::RecordAllergyRequest {
        request_id: "allergy-1".into(),
        ..record_penicillin_allergy(&jane.patient_id)
    };
    let allergy = meds
        .record_allergy(stack.req(record.clone()))
        .await
        .expect("recorded")
        .into_inner();
    let resolved = meds
        .resolve_allergy(stack.req(pb::ResolveAllergyRequest {
            patient_id: jane.patient_id.clone(),
            allergy_id: allergy.allergy_id.clone(),
            reason: "negative challenge test".into(),
            ..Default::default()
        }))
        .await
        .expect("resolved")
        .into_inner();

    // When the recording is sent again
    let again = meds
        .record_allergy(stack.req(record))
        .await
        .expect("the recording again")
        .into_inner();

    // Then it answers with the allergy as it stands, resolved
    assert_eq!(again.allergy_id, allergy.allergy_id);
    assert_eq!(again.status, pb::AllergyStatus::Resolved as i32);
    // and its read is audited naming the allergy, read after its resolution
    let read = stack.last_access(&jane.patient_id, "RecordAllergy").await;
    assert_eq!(read.resource_ids, [allergy.allergy_id.as_str()]);
    assert_eq!(
        position(&read, "CARELOG_MEDICATIONS"),
        Some(resolved.stream_sequence)
    );
}
