//! Merging a duplicate record into its survivor, and undoing it.

use carelog_proto::demographics::v1 as pb;
use carelog_tests::consultations::mask;
use carelog_tests::harness::{TestStack, jane_smith, test_nhs_number};
use tonic::Code;
use tonic_types::StatusExt as _;

#[tokio::test]
async fn merge_then_edit_then_unmerge_keeps_every_edit_on_the_right_patient() {
    let stack = TestStack::start().await;
    let mut client = stack.client();
    let mut temporary = jane_smith();
    temporary.nhs_number.clear();
    temporary.nhs_number_verification_status = pb::NhsNumberVerificationStatus::NotPresent as i32;
    temporary.name = Some(pb::HumanName {
        family: "Smith".into(),
        given: vec!["J".into()],
        prefix: String::new(),
    });
    let duplicate = stack.register(temporary).await;
    let survivor = stack
        .register(pb::PatientDetails {
            nhs_number: test_nhs_number(),
            ..jane_smith()
        })
        .await;

    // Given the duplicate merged into the survivor
    let merged = client
        .merge_patient(stack.req(pb::MergePatientRequest {
            duplicate_patient_id: duplicate.patient_id.clone(),
            survivor_patient_id: survivor.patient_id.clone(),
            reason: "same person registered twice".into(),
            request_id: "merge-1".into(),
        }))
        .await
        .expect("merged")
        .into_inner();
    assert_eq!(
        merged
            .duplicate
            .as_ref()
            .map(|d| d.merged_into_patient_id.as_str()),
        Some(survivor.patient_id.as_str())
    );
    assert_eq!(
        merged
            .survivor
            .as_ref()
            .map(|s| s.merged_patient_ids.clone()),
        Some(vec![duplicate.patient_id.clone()])
    );

    // A command on the duplicate names the survivor
    let refused = client
        .mark_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: duplicate.patient_id.clone(),
            ..Default::default()
        }))
        .await
        .expect_err("merged away");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains(&survivor.patient_id));
    let info = refused.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "PATIENT_MERGED");
    assert_eq!(
        info.metadata.get("survivorPatientId"),
        Some(&survivor.patient_id)
    );
    // and so does a transfer of the duplicate to another practice, or input
    // it would refuse, rather than a refusal of the transfer or the input
    for (details, paths) in [
        (
            pb::PatientDetails {
                registered_practice_ods: "B82002".into(),
                ..jane_smith()
            },
            ["registered_practice_ods"],
        ),
        (
            pb::PatientDetails {
                nhs_number: "1234567890".into(),
                ..jane_smith()
            },
            ["nhs_number"],
        ),
    ] {
        let refused = client
            .update_demographics(stack.req(pb::UpdateDemographicsRequest {
                patient_id: duplicate.patient_id.clone(),
                details: Some(details),
                update_mask: mask(&paths),
                ..Default::default()
            }))
            .await
            .expect_err("merged away");
        let info = refused.get_details_error_info().expect("error info");
        assert_eq!(
            (refused.code(), info.reason.as_str()),
            (Code::FailedPrecondition, "PATIENT_MERGED"),
            "{refused:?}"
        );
        assert_eq!(
            info.metadata.get("survivorPatientId"),
            Some(&survivor.patient_id)
        );
    }

    // A query for the duplicate says where it went
    let found = client
        .get_patient(stack.req(pb::GetPatientRequest {
            patient_id: duplicate.patient_id.clone(),
            min_sequence: merged.stream_sequence,
        }))
        .await
        .expect("get duplicate")
        .into_inner();
    assert_eq!(found.merged_into_patient_id, survivor.patient_id);

    // When the survivor is edited while merged
    let mut renamed = jane_smith();
    renamed.name = Some(pb::HumanName {
        family: "Smith-Jones".into(),
        given: vec!["Jane".into()],
        prefix: "Mrs".into(),
    });
    client
        .update_demographics(stack.req_as(
            "dr-patel",
            pb::UpdateDemographicsRequest {
                patient_id: survivor.patient_id.clone(),
                details: Some(renamed),
                update_mask: mask(&["name"]),
                reason: "marriage".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("survivor edited");

    // Then the unmerge reopens the duplicate as it was, and the edit stays on the survivor
    let unmerge_1 = pb::UnmergePatientRequest {
        duplicate_patient_id: duplicate.patient_id.clone(),
        reason: "not the same person: different mother's maiden name".into(),
        request_id: "unmerge-1".into(),
    };
    let unmerged = client
        .unmerge_patient(stack.req(unmerge_1.clone()))
        .await
        .expect("unmerged")
        .into_inner();
    let dup = unmerged.duplicate.expect("duplicate");
    let surv = unmerged.survivor.expect("survivor");
    assert!(dup.merged_into_patient_id.is_empty());
    assert!(surv.merged_patient_ids.is_empty());
    assert_eq!(
        dup.details.and_then(|d| d.name).map(|n| n.given),
        Some(vec!["J".to_owned()])
    );
    assert_eq!(
        surv.details.and_then(|d| d.name).map(|n| n.family),
        Some("Smith-Jones".into())
    );
    // and the unmerge sent again (its answer was lost) is answered with
    // that unmerge, not refused as not merged, and appends nothing
    let before = stack.last_sequence().await;
    let again = client
        .unmerge_patient(stack.req(unmerge_1.clone()))
        .await
        .expect("the repeated unmerge is answered")
        .into_inner();
    assert_eq!(again.stream_sequence, unmerged.stream_sequence);
    assert_eq!(
        again.survivor.map(|s| s.patient_id),
        Some(survivor.patient_id.clone())
    );
    assert_eq!(stack.last_sequence().await, before, "nothing appended");
    // while the same request id with another reason is refused as reused
    let reused = client
        .unmerge_patient(stack.req(pb::UnmergePatientRequest {
            reason: "another reason".into(),
            ..unmerge_1.clone()
        }))
        .await
        .expect_err("a request id reused for another request");
    assert_eq!(reused.code(), Code::InvalidArgument, "{reused:?}");

    let versions = client
        .list_patient_versions(stack.req(pb::ListPatientVersionsRequest {
            patient_id: survivor.patient_id.clone(),
            min_sequence: unmerged.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("survivor versions")
        .into_inner()
        .versions;
    let types: Vec<String> = versions
        .iter()
        .flat_map(|v| v.event_types.clone())
        .collect();
    assert_eq!(
        types,
        vec![
            "PatientRegistered",
            "DuplicateMergedIn",
            "DemographicsUpdated",
            "DuplicateUnmerged"
        ]
    );
    assert_eq!(versions[2].actor_user_id, "dr-patel");
    let dup_versions = client
        .list_patient_versions(stack.req(pb::ListPatientVersionsRequest {
            patient_id: duplicate.patient_id.clone(),
            ..Default::default()
        }))
        .await
        .expect("duplicate versions")
        .into_inner()
        .versions;
    let dup_types: Vec<String> = dup_versions
        .iter()
        .flat_map(|v| v.event_types.clone())
        .collect();
    assert_eq!(
        dup_types,
        vec!["PatientRegistered", "PatientMerged", "PatientUnmerged"]
    );

    // And after the duplicate was merged into another record and unmerged
    // from it again, the first unmerge sent once more is still answered
    // with that unmerge, from its own survivor
    let other = stack.register(jane_smith()).await;
    let answered_from = |answer: pb::MergePatientResponse| {
        assert_eq!(answer.stream_sequence, unmerged.stream_sequence);
        answer.survivor.map(|s| s.patient_id)
    };
    client
        .merge_patient(stack.req(pb::MergePatientRequest {
            duplicate_patient_id: duplicate.patient_id.clone(),
            survivor_patient_id: other.patient_id.clone(),
            reason: "same person registered twice".into(),
            request_id: "merge-2".into(),
        }))
        .await
        .expect("merged into another record");
    let while_merged = client
        .unmerge_patient(stack.req(unmerge_1.clone()))
        .await
        .expect("the first unmerge sent again while merged")
        .into_inner();
    assert_eq!(
        answered_from(while_merged),
        Some(survivor.patient_id.clone())
    );
    client
        .unmerge_patient(stack.req(pb::UnmergePatientRequest {
            duplicate_patient_id: duplicate.patient_id.clone(),
            reason: "not the same person either".into(),
            request_id: "unmerge-2".into(),
        }))
        .await
        .expect("unmerged from the other record");
    let after = client
        .unmerge_patient(stack.req(unmerge_1.clone()))
        .await
        .expect("the first unmerge sent again after")
        .into_inner();
    assert_eq!(answered_from(after), Some(survivor.patient_id.clone()));

    // And the duplicate accepts commands again
    client
        .mark_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: duplicate.patient_id.clone(),
            ..Default::default()
        }))
        .await
        .expect("open again");
    stack.stop().await;
}

/// The holder of an NHS number, as a registration of it is told.
async fn holder_of(stack: &TestStack, nhs_number: &str) -> Option<String> {
    let refused = stack
        .client()
        .register_patient(stack.req(pb::RegisterPatientRequest {
            details: Some(pb::PatientDetails {
                nhs_number: nhs_number.into(),
                ..jane_smith()
            }),
            ..Default::default()
        }))
        .await
        .err()?;
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    refused
        .get_details_error_info()
        .and_then(|i| i.metadata.get("existingPatientId").cloned())
}

#[tokio::test]
async fn a_survivor_takes_over_its_duplicates_nhs_number_and_gives_it_back_to_unmerge() {
    let stack = TestStack::start().await;
    let mut client = stack.client();
    // Given Jane registered in A&E without an NHS number, where her
    // consultations are recorded
    let mut unidentified = jane_smith();
    unidentified.nhs_number.clear();
    unidentified.nhs_number_verification_status =
        pb::NhsNumberVerificationStatus::NotPresent as i32;
    let survivor = stack.register(unidentified).await;
    // and a second record with her traced NHS number, merged into the first
    let traced = jane_smith();
    let number = traced.nhs_number.clone();
    let duplicate = stack.register(traced.clone()).await;
    client
        .merge_patient(stack.req(pb::MergePatientRequest {
            duplicate_patient_id: duplicate.patient_id.clone(),
            survivor_patient_id: survivor.patient_id.clone(),
            reason: "same person registered twice".into(),
            request_id: "merge-1".into(),
        }))
        .await
        .expect("merged");

    // When the survivor is given the duplicate's traced NHS number
    let numbered = client
        .update_demographics(stack.req(pb::UpdateDemographicsRequest {
            patient_id: survivor.patient_id.clone(),
            details: Some(traced.clone()),
            update_mask: mask(&["nhs_number", "nhs_number_verification_status"]),
            reason: "traced on PDS".into(),
            ..Default::default()
        }))
        .await
        .expect("the survivor takes the number its duplicate held")
        .into_inner();

    // Then the survivor holds it
    assert_eq!(numbered.details.map(|d| d.nhs_number), Some(number.clone()));
    assert_eq!(
        holder_of(&stack, &number).await,
        Some(survivor.patient_id.clone())
    );

    // When the merge is undone while the survivor holds the number
    let unmerge = || pb::UnmergePatientRequest {
        duplicate_patient_id: duplicate.patient_id.clone(),
        reason: "not the same person".into(),
        ..Default::default()
    };
    let before = stack.last_sequence().await;
    let refused = client
        .unmerge_patient(stack.req(unmerge()))
        .await
        .expect_err("two open records would show one NHS number");

    // Then it is refused naming the duplicate's number and its holder, and
    // nothing is appended
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    let info = refused.get_details_error_info().expect("error info");
    assert_eq!(
        info.metadata.get("field").map(String::as_str),
        Some("duplicate.details.nhs_number")
    );
    assert_eq!(
        info.metadata.get("existingPatientId"),
        Some(&survivor.patient_id)
    );
    assert_eq!(stack.last_sequence().await, before, "nothing appended");

    // When the survivor's number is corrected away first
    let mut without = traced;
    without.nhs_number.clear();
    without.nhs_number_verification_status = pb::NhsNumberVerificationStatus::NotPresent as i32;
    client
        .update_demographics(stack.req(pb::UpdateDemographicsRequest {
            patient_id: survivor.patient_id.clone(),
            details: Some(without),
            update_mask: mask(&["nhs_number", "nhs_number_verification_status"]),
            correction: true,
            reason: "the number is the other record's".into(),
            ..Default::default()
        }))
        .await
        .expect("number removed");
    // the number goes back to the duplicate whose record shows it, not to
    // whoever registers it next
    assert_eq!(
        holder_of(&stack, &number).await,
        Some(duplicate.patient_id.clone())
    );

    // Then the unmerge goes through and the duplicate holds its number again
    let unmerged = client
        .unmerge_patient(stack.req(unmerge()))
        .await
        .expect("unmerged")
        .into_inner();
    assert_eq!(
        unmerged
            .duplicate
            .and_then(|d| d.details)
            .map(|d| d.nhs_number),
        Some(number.clone())
    );
    assert_eq!(
        holder_of(&stack, &number).await,
        Some(duplicate.patient_id.clone())
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_duplicates_medication_problems_and_consultations_are_listed_with_its_survivor_after_the_merge()
 {
    use carelog_proto::consultations::v1 as cpb;
    use carelog_proto::medications::v1 as mpb;
    use carelog_tests::consultations::{HYPERTENSION, add_request, hypertension, start};
    use carelog_tests::medications::{CLARITHROMYCIN_500, authorise, issue, repeat};

    // Given Jane registered twice, her repeat and her hypertension recorded
    // on the duplicate
    let stack = TestStack::start().await;
    let survivor = stack.register(jane_smith()).await;
    let duplicate = stack.register(jane_smith()).await;
    let clarithromycin = stack
        .medications()
        .authorise_medication(stack.req(authorise(
            &duplicate.patient_id,
            repeat(CLARITHROMYCIN_500, 6),
        )))
        .await
        .expect("authorised on the duplicate")
        .into_inner();
    let issued = stack
        .medications()
        .issue_prescription(stack.req(issue(
            &duplicate.patient_id,
            &clarithromycin.authorisation_id,
        )))
        .await
        .expect("issued on the duplicate")
        .into_inner();
    let consultation = start(&stack, &duplicate.patient_id).await;
    let consultation_id = consultation
        .consultation
        .map(|c| c.consultation_id)
        .expect("consultation");
    let problem = stack
        .consultations()
        .add_entry(stack.req(add_request(
            &duplicate.patient_id,
            &consultation_id,
            "",
            hypertension(cpb::ProblemStatus::Active),
        )))
        .await
        .expect("problem on the duplicate")
        .into_inner();

    // When the duplicate is merged into the survivor
    stack
        .client()
        .merge_patient(stack.req(pb::MergePatientRequest {
            duplicate_patient_id: duplicate.patient_id.clone(),
            survivor_patient_id: survivor.patient_id.clone(),
            reason: "same person registered twice".into(),
            request_id: "merge-lists".into(),
        }))
        .await
        .expect("merged");

    // Then the survivor's medication list holds the repeat, naming the
    // record it was written on, issued once
    let medication = stack
        .medications()
        .list_medications(stack.req(mpb::ListMedicationsRequest {
            patient_id: survivor.patient_id.clone(),
            min_sequence: clarithromycin.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("the survivor's medication")
        .into_inner();
    let listed: Vec<(&str, &str)> = medication
        .authorisations
        .iter()
        .map(|a| (a.authorisation_id.as_str(), a.patient_id.as_str()))
        .collect();
    assert_eq!(
        listed,
        [(
            clarithromycin.authorisation_id.as_str(),
            duplicate.patient_id.as_str()
        )]
    );
    // and its issue history holds the issue
    let issues = stack
        .medications()
        .list_issues(stack.req(mpb::ListIssuesRequest {
            patient_id: survivor.patient_id.clone(),
            authorisation_id: clarithromycin.authorisation_id.clone(),
            min_sequence: issued.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("the survivor's issues")
        .into_inner();
    let listed: Vec<&str> = issues.issues.iter().map(|i| i.issue_id.as_str()).collect();
    assert_eq!(listed, [issued.issue_id.as_str()]);
    // and the survivor's problem list holds the hypertension
    let problems = stack
        .consultations()
        .list_problems(stack.req(cpb::ListProblemsRequest {
            patient_id: survivor.patient_id.clone(),
            min_sequence: problem.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("the survivor's problems")
        .into_inner();
    let listed: Vec<(&str, &str)> = problems
        .problems
        .iter()
        .map(|p| (p.entry_id.as_str(), p.concept_id.as_str()))
        .collect();
    assert_eq!(listed, [(problem.entry_id.as_str(), HYPERTENSION)]);
    // and the survivor's consultations hold the one held on the duplicate
    let consultations = stack
        .consultations()
        .list_consultations(stack.req(cpb::ListConsultationsRequest {
            patient_id: survivor.patient_id.clone(),
            min_sequence: problem.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("the survivor's consultations")
        .into_inner();
    let listed: Vec<(&str, &str)> = consultations
        .consultations
        .iter()
        .map(|c| (c.consultation_id.as_str(), c.patient_id.as_str()))
        .collect();
    assert_eq!(
        listed,
        [(consultation_id.as_str(), duplicate.patient_id.as_str())]
    );

    // and the duplicate's own lists are refused, naming the survivor
    for refused in [
        stack
            .medications()
            .list_medications(stack.req(mpb::ListMedicationsRequest {
                patient_id: duplicate.patient_id.clone(),
                ..Default::default()
            }))
            .await
            .map(|_| ())
            .expect_err("the duplicate's medication"),
        stack
            .consultations()
            .list_problems(stack.req(cpb::ListProblemsRequest {
                patient_id: duplicate.patient_id.clone(),
                ..Default::default()
            }))
            .await
            .map(|_| ())
            .expect_err("the duplicate's problems"),
        stack
            .consultations()
            .list_consultations(stack.req(cpb::ListConsultationsRequest {
                patient_id: duplicate.patient_id.clone(),
                ..Default::default()
            }))
            .await
            .map(|_| ())
            .expect_err("the duplicate's consultations"),
    ] {
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert_eq!(
            refused
                .get_details_error_info()
                .map(|i| i.reason)
                .as_deref(),
            Some("PATIENT_MERGED")
        );
        assert!(
            refused.message().contains(&survivor.patient_id),
            "{refused:?}"
        );
    }
}
