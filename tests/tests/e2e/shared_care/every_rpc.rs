//! One table over every RPC of every service: for each, a clinician of an
//! unrelated organisation is refused (PERMISSION_DENIED with a reason
//! code), the refusal is on the access stream, and a refused command
//! appends nothing; then a clinician of the patient's registered practice
//! succeeds with the same call. The services' descriptors are enumerated:
//! an RPC with no case here fails the test.

use std::collections::BTreeSet;

use carelog_proto::consultations::v1 as cpb;
use carelog_proto::demographics::v1 as dpb;
use carelog_proto::medications::v1 as mpb;
use carelog_proto::tasks::v1 as tpb;
use carelog_tests::consultations::{add_request, blood_pressure, mask, start_request, weight};
use carelog_tests::harness::{TestStack, jane_smith, test_nhs_number};
use carelog_tests::medications::{
    PARACETAMOL_500, authorise, in_days, issue, record_penicillin_allergy, repeat,
};
use carelog_tests::tasks::organisation;
use prost::Message as _;
use tonic::Code;
use tonic_types::StatusExt as _;

use super::{HOME, STRANGER, as_org, clinical_sequences, in_role, refusals};

/// Runs one case: `$call` (an expression using `$org` for the caller's
/// organisation) is refused for STRANGER, recorded, appends nothing, and
/// then succeeds for HOME; evaluates to the successful response.
macro_rules! case {
    ($stack:expr, $seen:expr, $method:literal, |$org:ident| $call:expr) => {{
        let stack: &TestStack = $stack;
        let before = clinical_sequences(stack).await;
        let recorded = refusals(stack, $method, STRANGER).await.len();
        let refused = {
            let $org = STRANGER;
            $call
                .await
                .expect_err(concat!($method, ": a stranger is refused"))
        };
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "{}: {refused:?}",
            $method
        );
        let reason = refused
            .get_details_error_info()
            .map(|i| i.reason)
            .unwrap_or_default();
        assert!(!reason.is_empty(), "{}: a reason code", $method);
        let now = refusals(stack, $method, STRANGER).await;
        assert_eq!(
            now.len(),
            recorded + 1,
            "{}: the refusal is recorded",
            $method
        );
        assert_eq!(now.last().map(|e| e.reason_code.clone()), Some(reason));
        assert_eq!(
            clinical_sequences(stack).await,
            before,
            "{}: a refusal appends nothing",
            $method
        );
        let answer = {
            let $org = HOME;
            $call
                .await
                .expect(concat!($method, ": the registered practice succeeds"))
                .into_inner()
        };
        $seen.insert($method.to_owned());
        answer
    }};
}

/// As `case!` for an RPC that concerns no patient: a role without its
/// permission (`$without`) is refused and the refusal recorded; then the
/// call is made in a role with it (`$with`) and its answer returned.
macro_rules! role_case {
    ($stack:expr, $seen:expr, $method:literal, $without:literal, $with:literal, |$role:ident| $call:expr) => {{
        let stack: &TestStack = $stack;
        let recorded = refusals(stack, $method, HOME).await.len();
        let refused = {
            let $role = $without;
            $call
                .await
                .expect_err(concat!($method, ": refused without the permission"))
        };
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "{}: {refused:?}",
            $method
        );
        let now = refusals(stack, $method, HOME).await;
        assert_eq!(
            now.len(),
            recorded + 1,
            "{}: the refusal is recorded",
            $method
        );
        assert_eq!(
            now.last().map(|e| e.reason_code.as_str()),
            Some("PERMISSION_MISSING")
        );
        let $role = $with;
        let answer = $call.await;
        $seen.insert($method.to_owned());
        answer
    }};
}

fn register(details: dpb::PatientDetails, request_id: &str) -> dpb::RegisterPatientRequest {
    dpb::RegisterPatientRequest {
        details: Some(dpb::PatientDetails {
            nhs_number: test_nhs_number(),
            ..details
        }),
        request_id: request_id.to_owned(),
        ..Default::default()
    }
}

fn flag(patient_id: &str, reason: &str) -> dpb::PatientFlagRequest {
    dpb::PatientFlagRequest {
        patient_id: patient_id.to_owned(),
        reason: reason.to_owned(),
        ..Default::default()
    }
}

fn task_action(patient_id: &str, task_id: &str, reason: &str) -> tpb::TaskActionRequest {
    tpb::TaskActionRequest {
        patient_id: patient_id.to_owned(),
        task_id: task_id.to_owned(),
        reason: reason.to_owned(),
        ..Default::default()
    }
}

fn new_task(patient_id: &str, title: &str) -> tpb::CreateTaskRequest {
    tpb::CreateTaskRequest {
        patient_id: patient_id.to_owned(),
        title: title.to_owned(),
        performer: organisation(HOME),
        ..Default::default()
    }
}

#[test]
fn every_rpc_refuses_an_unrelated_organisation_and_serves_the_registered_practice() {
    // The table is one long future whose polling needs more stack than a
    // test thread has in a debug build: run it on a thread of its own.
    std::thread::Builder::new()
        .stack_size(64 * 1024 * 1024)
        .spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(every_rpc())
        })
        .expect("a thread for the table")
        .join()
        .expect("every RPC's case passed");
}

async fn every_rpc() {
    let stack = TestStack::start().await;
    let s = &stack;
    let mut seen = BTreeSet::new();
    let mut people = s.client();
    let mut cons = s.consultations();
    let mut meds = s.medications();
    let mut tasks = s.tasks();

    // Demographics. A stranger may not register a patient at the practice.
    let jane = case!(s, seen, "RegisterPatient", |org| people
        .register_patient(as_org(s, org, register(jane_smith(), "reg-jane"))));
    let id = jane.patient_id.clone();
    let p = id.as_str();
    case!(s, seen, "UpdateDemographics", |org| people
        .update_demographics(as_org(
            s,
            org,
            dpb::UpdateDemographicsRequest {
                patient_id: id.clone(),
                details: Some(dpb::PatientDetails {
                    telecom: vec![],
                    ..jane_smith()
                }),
                update_mask: mask(&["telecom"]),
                reason: "phone number withdrawn".into(),
                ..Default::default()
            }
        )));
    case!(s, seen, "MarkRestricted", |org| people
        .mark_restricted(as_org(s, org, flag(p, "at risk"))));
    case!(s, seen, "ClearRestricted", |org| people
        .clear_restricted(as_org(s, org, flag(p, "risk passed"))));
    case!(s, seen, "RecordSharingObjection", |org| people
        .record_sharing_objection(as_org(
            s,
            org,
            flag(p, "patient's wish")
        )));
    case!(s, seen, "WithdrawSharingObjection", |org| people
        .withdraw_sharing_objection(as_org(
            s,
            org,
            flag(p, "patient's wish")
        )));
    case!(s, seen, "GetPatient", |org| people.get_patient(as_org(
        s,
        org,
        dpb::GetPatientRequest {
            patient_id: id.clone(),
            min_sequence: 0,
        }
    )));
    case!(s, seen, "ListPatientVersions", |org| people
        .list_patient_versions(as_org(
            s,
            org,
            dpb::ListPatientVersionsRequest {
                patient_id: id.clone(),
                ..Default::default()
            }
        )));

    // Consultations.
    let started = case!(s, seen, "StartConsultation", |org| cons
        .start_consultation(as_org(s, org, start_request(p))));
    let consultation = started
        .consultation
        .as_ref()
        .map(|c| c.consultation_id.clone())
        .expect("consultation");
    let added = case!(s, seen, "AddEntry", |org| cons.add_entry(as_org(
        s,
        org,
        add_request(p, &consultation, "", blood_pressure(150, 95))
    )));
    let entry = added.entry_id.clone();
    case!(s, seen, "EditEntry", |org| cons.edit_entry(as_org(
        s,
        org,
        cpb::EditEntryRequest {
            patient_id: id.clone(),
            consultation_id: consultation.clone(),
            entry_id: entry.clone(),
            entry: Some(blood_pressure(152, 95)),
            update_mask: mask(&["observation"]),
            ..Default::default()
        }
    )));
    case!(s, seen, "SignConsultation", |org| cons.sign_consultation(
        as_org(
            s,
            org,
            cpb::SignConsultationRequest {
                patient_id: id.clone(),
                consultation_id: consultation.clone(),
                ..Default::default()
            }
        )
    ));
    case!(s, seen, "AmendEntry", |org| cons.amend_entry(as_org(
        s,
        org,
        cpb::AmendEntryRequest {
            patient_id: id.clone(),
            consultation_id: consultation.clone(),
            entry_id: entry.clone(),
            entry: Some(blood_pressure(152, 96)),
            update_mask: mask(&["observation"]),
            reason: "misread the diastolic".into(),
            ..Default::default()
        }
    )));
    let _ = weight;
    case!(s, seen, "MarkEnteredInError", |org| cons
        .mark_entered_in_error(as_org(
            s,
            org,
            cpb::MarkEnteredInErrorRequest {
                patient_id: id.clone(),
                consultation_id: consultation.clone(),
                entry_id: entry.clone(),
                reason: "wrong patient's reading".into(),
                ..Default::default()
            }
        )));
    case!(s, seen, "GetConsultation", |org| cons.get_consultation(
        as_org(
            s,
            org,
            cpb::GetConsultationRequest {
                patient_id: id.clone(),
                consultation_id: consultation.clone(),
                ..Default::default()
            }
        )
    ));
    case!(s, seen, "ListConsultations", |org| cons.list_consultations(
        as_org(
            s,
            org,
            cpb::ListConsultationsRequest {
                patient_id: id.clone(),
                ..Default::default()
            }
        )
    ));
    case!(s, seen, "ListConsultationVersions", |org| cons
        .list_consultation_versions(as_org(
            s,
            org,
            cpb::ListConsultationVersionsRequest {
                patient_id: id.clone(),
                consultation_id: consultation.clone(),
                ..Default::default()
            }
        )));
    case!(s, seen, "ListProblems", |org| cons.list_problems(as_org(
        s,
        org,
        cpb::ListProblemsRequest {
            patient_id: id.clone(),
            ..Default::default()
        }
    )));
    case!(s, seen, "ListLatestObservations", |org| cons
        .list_latest_observations(as_org(
            s,
            org,
            cpb::ListLatestObservationsRequest {
                patient_id: id.clone(),
                ..Default::default()
            }
        )));

    // Medications.
    let allergy = case!(s, seen, "RecordAllergy", |org| meds.record_allergy(as_org(
        s,
        org,
        record_penicillin_allergy(p)
    )));
    case!(s, seen, "ResolveAllergy", |org| meds.resolve_allergy(
        as_org(
            s,
            org,
            mpb::ResolveAllergyRequest {
                patient_id: id.clone(),
                allergy_id: allergy.allergy_id.clone(),
                reason: "desensitised".into(),
                ..Default::default()
            }
        )
    ));
    case!(s, seen, "MarkAllergyEnteredInError", |org| meds
        .mark_allergy_entered_in_error(as_org(
            s,
            org,
            mpb::MarkAllergyEnteredInErrorRequest {
                patient_id: id.clone(),
                allergy_id: allergy.allergy_id.clone(),
                reason: "recorded against the wrong patient".into(),
                ..Default::default()
            }
        )));
    let authorised = case!(s, seen, "AuthoriseMedication", |org| meds
        .authorise_medication(as_org(s, org, authorise(p, repeat(PARACETAMOL_500, 3)))));
    let authorisation = authorised.authorisation_id.clone();
    case!(s, seen, "IssuePrescription", |org| meds
        .issue_prescription(as_org(s, org, issue(p, &authorisation))));
    case!(s, seen, "RecordMedicationReview", |org| meds
        .record_medication_review(as_org(
            s,
            org,
            mpb::RecordMedicationReviewRequest {
                patient_id: id.clone(),
                next_review_date: Some(in_days(120)),
                note: "reviewed, continue".into(),
                ..Default::default()
            }
        )));
    let changed = case!(s, seen, "ChangeMedication", |org| meds.change_medication(
        as_org(
            s,
            org,
            mpb::ChangeMedicationRequest {
                patient_id: id.clone(),
                authorisation_id: authorisation.clone(),
                authorisation: Some(mpb::AuthorisationDetails {
                    dose_instructions: "two tablets up to four times a day".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["dose_instructions"]),
                reason: "pain not controlled".into(),
                ..Default::default()
            }
        )
    ));
    let current = changed
        .started
        .map(|a| a.authorisation_id)
        .expect("the new authorisation");
    case!(s, seen, "DiscontinueMedication", |org| meds
        .discontinue_medication(as_org(
            s,
            org,
            mpb::DiscontinueMedicationRequest {
                patient_id: id.clone(),
                authorisation_id: current.clone(),
                reason: "pain resolved".into(),
                ..Default::default()
            }
        )));
    case!(s, seen, "ListMedications", |org| meds.list_medications(
        as_org(
            s,
            org,
            mpb::ListMedicationsRequest {
                patient_id: id.clone(),
                include_discontinued: true,
                ..Default::default()
            }
        )
    ));
    case!(s, seen, "ListIssues", |org| meds.list_issues(as_org(
        s,
        org,
        mpb::ListIssuesRequest {
            patient_id: id.clone(),
            ..Default::default()
        }
    )));
    case!(s, seen, "ListAllergies", |org| meds.list_allergies(as_org(
        s,
        org,
        mpb::ListAllergiesRequest {
            patient_id: id.clone(),
            ..Default::default()
        }
    )));

    // Tasks (each a task about the patient, for the practice).
    let task = case!(s, seen, "CreateTask", |org| tasks.create_task(as_org(
        s,
        org,
        new_task(p, "Repeat blood pressure")
    )));
    let t = task.task_id.clone();
    case!(s, seen, "ClaimTask", |org| tasks.claim_task(as_org(
        s,
        org,
        task_action(p, &t, "")
    )));
    case!(s, seen, "StartTask", |org| tasks.start_task(as_org(
        s,
        org,
        task_action(p, &t, "")
    )));
    case!(s, seen, "PutTaskOnHold", |org| tasks.put_task_on_hold(
        as_org(s, org, task_action(p, &t, "awaiting the cuff"))
    ));
    case!(s, seen, "ResumeTask", |org| tasks.resume_task(as_org(
        s,
        org,
        task_action(p, &t, "")
    )));
    case!(s, seen, "CommentOnTask", |org| tasks.comment_on_task(
        as_org(
            s,
            org,
            tpb::CommentOnTaskRequest {
                patient_id: id.clone(),
                task_id: t.clone(),
                text: "cuff arrived".into(),
                ..Default::default()
            }
        )
    ));
    case!(s, seen, "AssignTask", |org| tasks.assign_task(as_org(
        s,
        org,
        tpb::AssignTaskRequest {
            patient_id: id.clone(),
            task_id: t.clone(),
            owner_user_id: format!("dr-{HOME}"),
            update_mask: mask(&["owner_user_id"]),
            reason: "still mine".into(),
            ..Default::default()
        }
    )));
    case!(s, seen, "CompleteTask", |org| tasks.complete_task(as_org(
        s,
        org,
        tpb::CompleteTaskRequest {
            patient_id: id.clone(),
            task_id: t.clone(),
            outcome: "148/92".into(),
            ..Default::default()
        }
    )));
    for (method, title) in [
        ("CancelTask", "To cancel"),
        ("RejectTask", "To reject"),
        ("MarkTaskEnteredInError", "In error"),
    ] {
        let other = tasks
            .create_task(as_org(s, HOME, new_task(p, title)))
            .await
            .expect("task")
            .into_inner();
        let o = other.task_id.as_str();
        match method {
            "CancelTask" => case!(s, seen, "CancelTask", |org| tasks.cancel_task(as_org(
                s,
                org,
                task_action(p, o, "not needed")
            ))),
            "RejectTask" => case!(s, seen, "RejectTask", |org| tasks.reject_task(as_org(
                s,
                org,
                task_action(p, o, "not ours")
            ))),
            _ => case!(s, seen, "MarkTaskEnteredInError", |org| tasks
                .mark_task_entered_in_error(as_org(
                    s,
                    org,
                    task_action(p, o, "wrong patient")
                ))),
        };
    }
    case!(s, seen, "GetTask", |org| tasks.get_task(as_org(
        s,
        org,
        tpb::GetTaskRequest {
            patient_id: id.clone(),
            task_id: t.clone(),
            ..Default::default()
        }
    )));
    case!(s, seen, "ListTasks", |org| tasks.list_tasks(as_org(
        s,
        org,
        tpb::ListTasksRequest {
            patient_id: id.clone(),
            statuses: vec![tpb::TaskStatus::Completed as i32],
            ..Default::default()
        }
    )));
    case!(s, seen, "ListTaskHistory", |org| tasks.list_task_history(
        as_org(
            s,
            org,
            tpb::ListTaskHistoryRequest {
                patient_id: id.clone(),
                task_id: t.clone(),
                ..Default::default()
            }
        )
    ));

    // Death and merge, on patients of their own.
    let other = people
        .register_patient(as_org(s, HOME, register(jane_smith(), "reg-other")))
        .await
        .expect("register")
        .into_inner();
    let o = other.patient_id.clone();
    case!(s, seen, "RecordDeath", |org| people.record_death(as_org(
        s,
        org,
        dpb::RecordDeathRequest {
            patient_id: o.clone(),
            date_of_death: Some(carelog_proto::kernel::v1::PartialDate {
                year: 2025,
                month: 6,
                day: 1,
            }),
            ..Default::default()
        }
    )));
    case!(s, seen, "AmendDeath", |org| people.amend_death(as_org(
        s,
        org,
        dpb::AmendDeathRequest {
            patient_id: o.clone(),
            entered_in_error: true,
            reason: "a different patient died".into(),
            ..Default::default()
        }
    )));
    let duplicate = people
        .register_patient(as_org(s, HOME, register(jane_smith(), "reg-duplicate")))
        .await
        .expect("register")
        .into_inner();
    case!(s, seen, "MergePatient", |org| people.merge_patient(as_org(
        s,
        org,
        dpb::MergePatientRequest {
            duplicate_patient_id: duplicate.patient_id.clone(),
            survivor_patient_id: o.clone(),
            reason: "the same person".into(),
            ..Default::default()
        }
    )));
    case!(s, seen, "UnmergePatient", |org| people.unmerge_patient(
        as_org(
            s,
            org,
            dpb::UnmergePatientRequest {
                duplicate_patient_id: duplicate.patient_id.clone(),
                reason: "not the same person after all".into(),
                ..Default::default()
            }
        )
    ));

    // A search is not refused: a stranger sees minimal identity only
    // (scenarios::a_region_wide_search...); here the practice sees all.
    let found = people
        .search_patients(as_org(
            s,
            STRANGER,
            dpb::SearchPatientsRequest {
                nhs_number: jane
                    .details
                    .as_ref()
                    .map(|d| d.nhs_number.clone())
                    .unwrap_or_default(),
                ..Default::default()
            },
        ))
        .await
        .expect("a search")
        .into_inner();
    assert!(found.patients.iter().all(|p| p.identity_only));
    assert!(!found.patients.is_empty());
    seen.insert("SearchPatients".to_owned());

    // The audit service concerns no patient: its permission is checked.
    let mut audit =
        carelog_proto::audit::v1::audit_service_client::AuditServiceClient::new(s.channel.clone());
    use carelog_proto::audit::v1 as apb;
    let _ = role_case!(s, seen, "GetLatestCheckpoint", "R8010", "R8000", |role| {
        audit.get_latest_checkpoint(in_role(
            s,
            HOME,
            role,
            apb::GetLatestCheckpointRequest {
                log: "demographics".into(),
            },
        ))
    });
    let _ = role_case!(s, seen, "SignCheckpoint", "R8010", "R8000", |role| audit
        .sign_checkpoint(in_role(
            s,
            HOME,
            role,
            apb::SignCheckpointRequest {
                log: "demographics".into()
            }
        )));
    let _ = role_case!(s, seen, "GetInclusionProof", "R8010", "R8000", |role| audit
        .get_inclusion_proof(in_role(
            s,
            HOME,
            role,
            apb::GetInclusionProofRequest {
                log: "demographics".into(),
                ..Default::default()
            }
        )));
    let _ = role_case!(s, seen, "GetConsistencyProof", "R8010", "R8000", |role| {
        audit.get_consistency_proof(in_role(
            s,
            HOME,
            role,
            apb::GetConsistencyProofRequest {
                log: "demographics".into(),
                ..Default::default()
            },
        ))
    });

    // The audit questions about one patient need both view_audit and access
    // to the patient: a stranger's privacy officer may not read another
    // practice's patient's history.
    let patient_id = jane.patient_id.clone();
    let accesses = case!(s, seen, "ListPatientAccess", |org| audit
        .list_patient_access(as_org(
            s,
            org,
            apb::ListPatientAccessRequest {
                patient_id: patient_id.clone(),
                ..Default::default()
            }
        )));
    let _ = accesses;
    // (taken from the access stream itself: the audit read model may lag)
    let seen_access = s
        .access_events(&patient_id)
        .await
        .into_iter()
        .find(|(_, a)| {
            a.outcome == carelog_proto::access::v1::AccessOutcome::Granted as i32
                && !a.resource_ids.is_empty()
        })
        .map(|(sequence, _)| sequence)
        .expect("a granted read of the patient on the access stream");
    let _ = role_case!(s, seen, "ListActorActivity", "R8010", "R8000", |role| {
        audit.list_actor_activity(in_role(
            s,
            HOME,
            role,
            apb::ListActorActivityRequest {
                user_id: "dr-a".into(),
                ..Default::default()
            },
        ))
    })
    .expect("activity");
    let mut history =
        carelog_proto::audit::v1::record_history_service_client::RecordHistoryServiceClient::new(
            s.channel.clone(),
        );
    // To the nanosecond: a whole second could fall before the registration.
    let now = chrono::Utc::now();
    let now = prost_types::Timestamp {
        seconds: now.timestamp(),
        nanos: now.timestamp_subsec_nanos() as i32,
    };
    case!(s, seen, "GetRecordAsOf", |org| history.get_record_as_of(
        as_org(
            s,
            org,
            apb::GetRecordAsOfRequest {
                patient_id: patient_id.clone(),
                as_of: Some(now),
                ..Default::default()
            }
        )
    ));
    case!(s, seen, "ListPatientChanges", |org| history
        .list_patient_changes(as_org(
            s,
            org,
            apb::ListPatientChangesRequest {
                patient_id: patient_id.clone(),
                ..Default::default()
            }
        )));
    case!(s, seen, "GetAccessedRecord", |org| history
        .get_accessed_record(as_org(
            s,
            org,
            apb::GetAccessedRecordRequest {
                access_sequence: seen_access,
                ..Default::default()
            }
        )));

    // Sharing administration concerns no patient: administer_sharing is
    // checked (a clinician lacks it, a privacy officer holds it).
    use carelog_proto::sharing::v1 as spb;
    let mut sharing = carelog_proto::sharing::v1::sharing_service_client::SharingServiceClient::new(
        s.channel.clone(),
    );
    const ADMIN: &str = "LOCAL-PRIVACY-OFFICER";
    let org_party = |ods: &str| spb::Party {
        party: Some(spb::party::Party::OrganisationOds(ods.into())),
    };
    let group = role_case!(
        s,
        seen,
        "CreateOrganisationGroup",
        "R8000",
        "LOCAL-PRIVACY-OFFICER",
        |role| sharing.create_organisation_group(in_role(
            s,
            HOME,
            role,
            spb::CreateOrganisationGroupRequest {
                name: "Leeds practices".into(),
                member_ods: vec![HOME.into()],
                request_id: "group-1".into(),
                reason: "care system".into(),
            }
        ))
    )
    .expect("created")
    .into_inner();
    let member = |ods: &str| spb::GroupMemberRequest {
        group_id: group.group_id.clone(),
        organisation_ods: ods.into(),
        ..Default::default()
    };
    role_case!(
        s,
        seen,
        "AddGroupMember",
        "R8000",
        "LOCAL-PRIVACY-OFFICER",
        |role| sharing.add_group_member(in_role(s, HOME, role, member("A81002")))
    )
    .expect("added");
    role_case!(
        s,
        seen,
        "RemoveGroupMember",
        "R8000",
        "LOCAL-PRIVACY-OFFICER",
        |role| sharing.remove_group_member(in_role(s, HOME, role, member("A81002")))
    )
    .expect("removed");
    role_case!(
        s,
        seen,
        "GetOrganisationGroup",
        "R8000",
        "LOCAL-PRIVACY-OFFICER",
        |role| sharing.get_organisation_group(in_role(
            s,
            HOME,
            role,
            spb::GetOrganisationGroupRequest {
                group_id: group.group_id.clone(),
                min_sequence: group.stream_sequence,
            }
        ))
    )
    .expect("got");
    role_case!(
        s,
        seen,
        "ListOrganisationGroups",
        "R8000",
        "LOCAL-PRIVACY-OFFICER",
        |role| sharing.list_organisation_groups(in_role(
            s,
            HOME,
            role,
            spb::ListOrganisationGroupsRequest::default()
        ))
    )
    .expect("listed");
    let agreement = role_case!(
        s,
        seen,
        "CreateSharingAgreement",
        "R8000",
        "LOCAL-PRIVACY-OFFICER",
        |role| sharing.create_sharing_agreement(in_role(
            s,
            HOME,
            role,
            spb::CreateSharingAgreementRequest {
                from: Some(org_party(HOME)),
                to: Some(org_party("RY600")),
                purpose: spb::SharingPurpose::DirectCare as i32,
                request_id: "agreement-1".into(),
                reason: "DSA 2026/14".into(),
                ..Default::default()
            }
        ))
    )
    .expect("made")
    .into_inner();
    role_case!(
        s,
        seen,
        "GetSharingAgreement",
        "R8000",
        "LOCAL-PRIVACY-OFFICER",
        |role| sharing.get_sharing_agreement(in_role(
            s,
            HOME,
            role,
            spb::GetSharingAgreementRequest {
                agreement_id: agreement.agreement_id.clone(),
                min_sequence: agreement.stream_sequence,
            }
        ))
    )
    .expect("got");
    role_case!(
        s,
        seen,
        "ListSharingAgreements",
        "R8000",
        "LOCAL-PRIVACY-OFFICER",
        |role| sharing.list_sharing_agreements(in_role(
            s,
            HOME,
            role,
            spb::ListSharingAgreementsRequest::default()
        ))
    )
    .expect("listed");
    role_case!(
        s,
        seen,
        "EndSharingAgreement",
        "R8000",
        "LOCAL-PRIVACY-OFFICER",
        |role| sharing.end_sharing_agreement(in_role(
            s,
            HOME,
            role,
            spb::EndSharingAgreementRequest {
                agreement_id: agreement.agreement_id.clone(),
                reason: "DSA withdrawn".into(),
                ..Default::default()
            }
        ))
    )
    .expect("ended");
    let _ = ADMIN;

    // Every RPC of every carelog service has its case.
    let set = prost_types::FileDescriptorSet::decode(carelog_proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    let mut missing = Vec::new();
    for file in set.file {
        for service in &file.service {
            for method in &service.method {
                if !seen.contains(method.name()) {
                    missing.push(format!(
                        "{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    assert!(missing.is_empty(), "RPCs with no access case: {missing:?}");
    stack.stop().await;
}
