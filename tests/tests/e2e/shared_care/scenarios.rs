//! Each access rule in a clinical scenario: registration, a relationship
//! that opens with a task and closes when it completes, break glass with
//! the privacy officer's review, S-flag redaction and region-wide search.

use carelog_proto::access::v1::AccessOutcome;
use carelog_proto::consultations::v1 as cpb;
use carelog_proto::demographics::v1 as dpb;
use carelog_proto::tasks::v1 as tpb;
use carelog_tests::assert::reason;
use carelog_tests::harness::{TestStack, jane_smith, test_nhs_number, update_request};
use carelog_tests::tasks::organisation;
use tonic::Code;

use super::{HOME, STRANGER, all_accesses, as_org, breaking_glass, in_role, refusals};

async fn register_at_home(stack: &TestStack) -> dpb::Patient {
    stack
        .client()
        .register_patient(as_org(
            stack,
            HOME,
            dpb::RegisterPatientRequest {
                details: Some(dpb::PatientDetails {
                    nhs_number: test_nhs_number(),
                    ..jane_smith()
                }),
                ..Default::default()
            },
        ))
        .await
        .expect("registered at the practice")
        .into_inner()
}

/// Jane, registered at home and then deducted: a patient with no practice.
async fn registered_nowhere(stack: &TestStack) -> String {
    let id = register_at_home(stack).await.patient_id;
    let mut details = jane_smith();
    details.registered_practice_ods.clear();
    stack
        .client()
        .update_demographics(as_org(
            stack,
            HOME,
            update_request(&id, details, &["registered_practice_ods"]),
        ))
        .await
        .expect("deducted");
    id
}

fn consultations_of(patient_id: &str) -> cpb::ListConsultationsRequest {
    cpb::ListConsultationsRequest {
        patient_id: patient_id.to_owned(),
        ..Default::default()
    }
}

/// Waits until the tasks read model holds `sequence` (a read-your-writes
/// query by the practice).
async fn tasks_projected(stack: &TestStack, patient_id: &str, sequence: u64) {
    stack
        .tasks()
        .list_tasks(as_org(
            stack,
            HOME,
            tpb::ListTasksRequest {
                patient_id: patient_id.to_owned(),
                min_sequence: sequence,
                ..Default::default()
            },
        ))
        .await
        .expect("the practice's list");
}

#[tokio::test]
async fn a_practice_registers_its_own_patients_and_no_one_elses() {
    let stack = TestStack::start().await;
    let jane = register_at_home(&stack).await;
    assert_eq!(
        jane.details
            .as_ref()
            .map(|d| d.registered_practice_ods.as_str()),
        Some(HOME)
    );
    let before = stack.last_sequence_of("demographics").await;
    let refused = stack
        .client()
        .register_patient(as_org(
            &stack,
            STRANGER,
            dpb::RegisterPatientRequest {
                details: Some(dpb::PatientDetails {
                    nhs_number: test_nhs_number(),
                    ..jane_smith()
                }),
                ..Default::default()
            },
        ))
        .await
        .expect_err("registering for another practice");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "REGISTERING_FOR_ANOTHER_ORGANISATION");
    assert_eq!(stack.last_sequence_of("demographics").await, before);
    stack.stop().await;
}

#[tokio::test]
async fn only_the_registered_practice_transfers_its_patient_to_another() {
    let stack = TestStack::start().await;
    let jane = register_at_home(&stack).await;
    let move_to = |practice: &str| {
        let mut details = jane_smith();
        details.registered_practice_ods = practice.into();
        update_request(&jane.patient_id, details, &["registered_practice_ods"])
    };

    // Given a clinician of another organisation admitted in an emergency
    // When they move Jane's registration to their own organisation
    let before = stack.last_sequence_of("demographics").await;
    let recorded = refusals(&stack, "UpdateDemographics", STRANGER).await.len();
    let refused = stack
        .client()
        .update_demographics(breaking_glass(
            &stack,
            STRANGER,
            "unconscious in A&E, no next of kin",
            move_to(STRANGER),
        ))
        .await
        .expect_err("a transfer by someone other than her practice");

    // Then it is refused, the refusal is recorded, and nothing is appended
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(reason(&refused), "NOT_THE_REGISTERED_PRACTICE");
    let now = refusals(&stack, "UpdateDemographics", STRANGER).await;
    assert_eq!(now.len(), recorded + 1, "the refusal is recorded");
    assert_eq!(
        now.last().map(|e| e.reason_code.as_str()),
        Some("NOT_THE_REGISTERED_PRACTICE")
    );
    assert_eq!(stack.last_sequence_of("demographics").await, before);

    // When her own practice transfers her to the other organisation
    let moved = stack
        .client()
        .update_demographics(as_org(&stack, HOME, move_to(STRANGER)))
        .await
        .expect("the practice transfers its patient")
        .into_inner();

    // Then the other organisation holds her registration
    assert_eq!(
        moved.details.map(|d| d.registered_practice_ods),
        Some(STRANGER.to_owned())
    );
    stack
        .client()
        .get_patient(as_org(
            &stack,
            STRANGER,
            dpb::GetPatientRequest {
                patient_id: jane.patient_id.clone(),
                min_sequence: moved.stream_sequence,
            },
        ))
        .await
        .expect("her new practice reads her record");
    stack.stop().await;
}

#[tokio::test]
async fn a_task_for_the_community_team_opens_the_record_until_it_is_completed() {
    let stack = TestStack::start().await;
    let jane = register_at_home(&stack).await;
    let id = jane.patient_id.clone();

    // Given the district nursing service has no claim on Jane
    let refused = stack
        .consultations()
        .list_consultations(as_org(&stack, STRANGER, consultations_of(&id)))
        .await
        .expect_err("no relationship yet");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "NO_LEGITIMATE_RELATIONSHIP");

    // When the practice asks it to dress Jane's leg ulcer
    let task = stack
        .tasks()
        .create_task(as_org(
            &stack,
            HOME,
            tpb::CreateTaskRequest {
                patient_id: id.clone(),
                title: "Dress leg ulcer".into(),
                performer: organisation(STRANGER),
                ..Default::default()
            },
        ))
        .await
        .expect("task")
        .into_inner();
    tasks_projected(&stack, &id, task.stream_sequence).await;

    // Then the nurses read her record under that task
    stack
        .consultations()
        .list_consultations(as_org(&stack, STRANGER, consultations_of(&id)))
        .await
        .expect("the task opens the record");
    let shown = stack
        .tasks()
        .get_task(as_org(
            &stack,
            STRANGER,
            tpb::GetTaskRequest {
                patient_id: id.clone(),
                task_id: task.task_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("their task")
        .into_inner();
    let rule = all_accesses(&stack)
        .await
        .into_iter()
        .rfind(|e| e.method == "GetTask")
        .map(|e| e.rule);
    assert_eq!(rule, Some(format!("task:{}", task.task_id)));
    // and their organisation's work list shows it, recorded under that task
    let listed = stack
        .tasks()
        .list_tasks(as_org(
            &stack,
            STRANGER,
            tpb::ListTasksRequest {
                organisation_ods: STRANGER.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("their work list")
        .into_inner();
    assert!(listed.tasks.iter().any(|t| t.task_id == task.task_id));
    let rule = all_accesses(&stack)
        .await
        .into_iter()
        .rfind(|e| e.method == "ListTasks")
        .map(|e| e.rule);
    assert_eq!(rule, Some(format!("task:{}", task.task_id)));

    // When they complete it
    let action = |reason: &str| tpb::TaskActionRequest {
        patient_id: id.clone(),
        task_id: shown.task_id.clone(),
        reason: reason.to_owned(),
        ..Default::default()
    };
    let mut tasks = stack.tasks();
    tasks
        .claim_task(as_org(&stack, STRANGER, action("")))
        .await
        .expect("claim");
    tasks
        .start_task(as_org(&stack, STRANGER, action("")))
        .await
        .expect("start");
    let done = tasks
        .complete_task(as_org(
            &stack,
            STRANGER,
            tpb::CompleteTaskRequest {
                patient_id: id.clone(),
                task_id: shown.task_id.clone(),
                outcome: "dressed; healing".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("complete")
        .into_inner();
    tasks_projected(&stack, &id, done.stream_sequence).await;

    // Then the record is closed to them again, and the refusal recorded
    let refused = stack
        .consultations()
        .list_consultations(as_org(&stack, STRANGER, consultations_of(&id)))
        .await
        .expect_err("the relationship ended");
    assert_eq!(reason(&refused), "NO_LEGITIMATE_RELATIONSHIP");
    let denials = all_accesses(&stack)
        .await
        .into_iter()
        .filter(|e| {
            e.outcome == AccessOutcome::Denied as i32
                && e.method == "ListConsultations"
                && e.patient_id == id
        })
        .count();
    assert_eq!(denials, 2);
    stack.stop().await;
}

#[tokio::test]
async fn breaking_glass_is_recorded_as_an_emergency_and_raises_the_privacy_officers_review() {
    let stack = TestStack::start().await;
    let jane = register_at_home(&stack).await;
    let id = jane.patient_id.clone();
    let get = || dpb::GetPatientRequest {
        patient_id: id.clone(),
        min_sequence: jane.stream_sequence,
    };

    // Given an A&E doctor elsewhere with no claim on Jane
    let mut people = stack.client();
    let refused = people
        .get_patient(as_org(&stack, STRANGER, get()))
        .await
        .expect_err("no claim");
    assert_eq!(reason(&refused), "NO_LEGITIMATE_RELATIONSHIP");

    // When they break glass stating why
    let shown = people
        .get_patient(breaking_glass(
            &stack,
            STRANGER,
            "unconscious in A&E, no history available",
            get(),
        ))
        .await
        .expect("emergency access")
        .into_inner();
    assert_eq!(shown.patient_id, id);

    // Then the access is an emergency, with the reason
    let emergency: Vec<_> = all_accesses(&stack)
        .await
        .into_iter()
        .filter(|e| e.patient_id == id && e.emergency)
        .collect();
    assert!(!emergency.is_empty());
    assert!(emergency.iter().all(|e| e.rule == "break_glass"
        && e.break_glass_reason == "unconscious in A&E, no history available"
        && e.registered_organisation == HOME));

    // And the practice's privacy officer finds the review in its work list
    let last = stack.last_sequence_of("tasks").await;
    assert!(last > 0, "a review task was raised");
    let list = stack
        .tasks()
        .list_tasks(in_role(
            &stack,
            HOME,
            "LOCAL-PRIVACY-OFFICER",
            tpb::ListTasksRequest {
                organisation_ods: HOME.into(),
                min_sequence: last,
                ..Default::default()
            },
        ))
        .await
        .expect("the privacy officer's list")
        .into_inner();
    let review: Vec<_> = list
        .tasks
        .iter()
        .filter(|t| t.patient_id == id && t.title.contains("emergency access"))
        .collect();
    assert_eq!(review.len(), 1, "{:?}", list.tasks);
    assert!(review[0].description.contains("unconscious in A&E"));
    stack.stop().await;
}

#[tokio::test]
async fn a_restricted_patients_address_is_seen_only_by_the_practices_demographics_staff() {
    let stack = TestStack::start().await;
    let jane = register_at_home(&stack).await;
    let id = jane.patient_id.clone();
    let marked = stack
        .client()
        .mark_restricted(as_org(
            &stack,
            HOME,
            dpb::PatientFlagRequest {
                patient_id: id.clone(),
                reason: "at risk of harm".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("S-flag")
        .into_inner();
    let get = || dpb::GetPatientRequest {
        patient_id: id.clone(),
        min_sequence: marked.stream_sequence,
    };
    let mut people = stack.client();
    // The practice's clinician manages demographics: sees everything.
    let whole = people
        .get_patient(as_org(&stack, HOME, get()))
        .await
        .expect("clinician")
        .into_inner();
    let d = whole.details.expect("details");
    assert!(!d.addresses.is_empty() && d.registered_practice_ods == HOME);
    assert!(!whole.withheld);
    // The practice's nurse does not manage demographics: hidden.
    let nursed = people
        .get_patient(in_role(&stack, HOME, "R8001", get()))
        .await
        .expect("nurse")
        .into_inner();
    let d = nursed.details.expect("details");
    assert!(d.addresses.is_empty() && d.telecom.is_empty() && d.registered_practice_ods.is_empty());
    assert!(nursed.withheld);
    // A clinician elsewhere in an emergency: hidden too.
    let elsewhere = people
        .get_patient(breaking_glass(
            &stack,
            STRANGER,
            "collapsed in clinic",
            get(),
        ))
        .await
        .expect("emergency")
        .into_inner();
    assert!(elsewhere.details.expect("details").addresses.is_empty());
    assert!(elsewhere.withheld);
    stack.stop().await;
}

#[tokio::test]
async fn a_region_wide_search_shows_strangers_minimal_identity_only() {
    let stack = TestStack::start().await;
    let jane = register_at_home(&stack).await;
    let nhs = jane.details.as_ref().expect("details").nhs_number.clone();
    let search = || dpb::SearchPatientsRequest {
        nhs_number: nhs.clone(),
        min_sequence: jane.stream_sequence,
        ..Default::default()
    };
    let mut people = stack.client();
    let theirs = people
        .search_patients(as_org(&stack, STRANGER, search()))
        .await
        .expect("search")
        .into_inner();
    assert_eq!(theirs.patients.len(), 1);
    let hit = &theirs.patients[0];
    assert!(hit.identity_only && hit.withheld);
    let d = hit.details.as_ref().expect("identity");
    assert_eq!(d.nhs_number, nhs);
    assert_eq!(d.name.as_ref().map(|n| n.family.as_str()), Some("Smith"));
    assert!(d.birth_date.is_some());
    assert!(d.addresses.is_empty() && d.telecom.is_empty() && d.registered_practice_ods.is_empty());
    let read = all_accesses(&stack)
        .await
        .into_iter()
        .rfind(|e| e.method == "SearchPatients")
        .expect("the search was recorded");
    assert_eq!(read.rule, "identity_only");

    let ours = people
        .search_patients(as_org(&stack, HOME, search()))
        .await
        .expect("search")
        .into_inner();
    assert!(!ours.patients[0].identity_only);
    assert!(
        !ours.patients[0]
            .details
            .as_ref()
            .expect("details")
            .addresses
            .is_empty()
    );
    stack.stop().await;
}

/// The community trust every scenario below shares with.
const TRUST: &str = "RY600";

fn admin<T>(stack: &TestStack, message: T) -> tonic::Request<T> {
    in_role(stack, HOME, "LOCAL-PRIVACY-OFFICER", message)
}

/// The practices of the care system share with the trust, through a group.
async fn care_system_shares_with_the_trust(
    stack: &TestStack,
) -> carelog_proto::sharing::v1::SharingAgreement {
    use carelog_proto::sharing::v1 as spb;
    let mut sharing = spb::sharing_service_client::SharingServiceClient::new(stack.channel.clone());
    let group = sharing
        .create_organisation_group(admin(
            stack,
            spb::CreateOrganisationGroupRequest {
                name: "Leeds care system practices".into(),
                member_ods: vec![HOME.into(), "A81002".into()],
                reason: "ICS membership".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("group")
        .into_inner();
    crate::shared_care::share(
        stack,
        HOME,
        spb::party::Party::GroupId(group.group_id),
        TRUST,
    )
    .await
}

#[tokio::test]
async fn an_agreement_shares_the_record_unless_the_patient_objected() {
    let stack = TestStack::start().await;
    let jane = register_at_home(&stack).await;
    let id = jane.patient_id.clone();
    let mut cons = stack.consultations();
    // Given no agreement, the trust's nurses are refused
    let refused = cons
        .list_consultations(as_org(&stack, TRUST, consultations_of(&id)))
        .await
        .expect_err("no agreement yet");
    assert_eq!(reason(&refused), "NO_LEGITIMATE_RELATIONSHIP");

    // When the care system's practices share with the trust
    let agreement = care_system_shares_with_the_trust(&stack).await;

    // Then the trust reads Jane's record under the agreement
    let shown = stack
        .client()
        .get_patient(as_org(
            &stack,
            TRUST,
            dpb::GetPatientRequest {
                patient_id: id.clone(),
                min_sequence: jane.stream_sequence,
            },
        ))
        .await
        .expect("shared")
        .into_inner();
    assert_eq!(shown.patient_id, id);
    let rule = all_accesses(&stack)
        .await
        .into_iter()
        .rfind(|e| e.method == "GetPatient" && e.patient_id == id)
        .map(|e| e.rule);
    assert_eq!(rule, Some(format!("agreement:{}", agreement.agreement_id)));

    // When Jane objects to sharing beyond her practice
    stack
        .client()
        .record_sharing_objection(as_org(
            &stack,
            HOME,
            dpb::PatientFlagRequest {
                patient_id: id.clone(),
                reason: "patient's wish".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("objection");

    // Then the trust is refused, naming the objection; her practice is not
    let refused = cons
        .list_consultations(as_org(&stack, TRUST, consultations_of(&id)))
        .await
        .expect_err("objected");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "SHARING_OBJECTION");
    cons.list_consultations(as_org(&stack, HOME, consultations_of(&id)))
        .await
        .expect("her practice still reads it");
    stack.stop().await;
}

#[tokio::test]
async fn ending_an_agreement_ends_access_from_that_moment() {
    use carelog_proto::sharing::v1 as spb;
    let stack = TestStack::start().await;
    let jane = register_at_home(&stack).await;
    let id = jane.patient_id.clone();
    let agreement = care_system_shares_with_the_trust(&stack).await;
    let mut cons = stack.consultations();
    cons.list_consultations(as_org(&stack, TRUST, consultations_of(&id)))
        .await
        .expect("shared while the agreement stands");

    // When the practice ends the agreement
    let mut sharing = spb::sharing_service_client::SharingServiceClient::new(stack.channel.clone());
    let ended = sharing
        .end_sharing_agreement(admin(
            &stack,
            spb::EndSharingAgreementRequest {
                agreement_id: agreement.agreement_id.clone(),
                reason: "DSA withdrawn".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("ended")
        .into_inner();
    assert!(ended.ended_at.is_some());
    sharing
        .get_sharing_agreement(admin(
            &stack,
            spb::GetSharingAgreementRequest {
                agreement_id: agreement.agreement_id.clone(),
                min_sequence: ended.stream_sequence,
            },
        ))
        .await
        .expect("projected");

    // Then the trust is refused, naming the ended agreement
    let refused = cons
        .list_consultations(as_org(&stack, TRUST, consultations_of(&id)))
        .await
        .expect_err("ended");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "AGREEMENT_ENDED");
    let recorded = all_accesses(&stack)
        .await
        .into_iter()
        .filter(|e| e.outcome == AccessOutcome::Denied as i32 && e.patient_id == id)
        .map(|e| e.reason_code)
        .collect::<Vec<_>>();
    assert_eq!(recorded, ["AGREEMENT_ENDED"]);
    stack.stop().await;
}

#[tokio::test]
async fn an_objection_recorded_on_the_survivor_after_a_merge_protects_the_merged_record_too() {
    let stack = TestStack::start().await;
    // Given Jane registered twice at her practice, shared with the trust,
    // and the duplicate merged into the survivor
    let duplicate = register_at_home(&stack).await;
    let survivor = register_at_home(&stack).await;
    care_system_shares_with_the_trust(&stack).await;
    stack
        .client()
        .merge_patient(as_org(
            &stack,
            HOME,
            dpb::MergePatientRequest {
                duplicate_patient_id: duplicate.patient_id.clone(),
                survivor_patient_id: survivor.patient_id.clone(),
                reason: "same person registered twice".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("merged");
    // the trust reads her: the merged record's list lets it through the
    // access check and refuses it only as merged, naming the survivor
    // (its consultations are listed with the survivor's, ADR 0005)
    let mut cons = stack.consultations();
    let merged = cons
        .list_consultations(as_org(
            &stack,
            TRUST,
            consultations_of(&duplicate.patient_id),
        ))
        .await
        .expect_err("a merged record's own list");
    assert_eq!(reason(&merged), "PATIENT_MERGED");
    cons.list_consultations(as_org(
        &stack,
        TRUST,
        consultations_of(&survivor.patient_id),
    ))
    .await
    .expect("shared before her objection");

    // When Jane objects to sharing, recorded on the surviving record
    stack
        .client()
        .record_sharing_objection(as_org(
            &stack,
            HOME,
            dpb::PatientFlagRequest {
                patient_id: survivor.patient_id.clone(),
                reason: "patient's wish".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("objection");

    // Then the trust is refused her merged record as well as the survivor
    for id in [&duplicate.patient_id, &survivor.patient_id] {
        let refused = cons
            .list_consultations(as_org(&stack, TRUST, consultations_of(id)))
            .await
            .expect_err("objected");
        assert_eq!(reason(&refused), "SHARING_OBJECTION", "{id}");
    }
    // while her practice is still let through to both (the merged one
    // refused only as merged)
    cons.list_consultations(as_org(&stack, HOME, consultations_of(&survivor.patient_id)))
        .await
        .expect("her practice");
    let merged = cons
        .list_consultations(as_org(
            &stack,
            HOME,
            consultations_of(&duplicate.patient_id),
        ))
        .await
        .expect_err("a merged record's own list");
    assert_eq!(reason(&merged), "PATIENT_MERGED");
    stack.stop().await;
}

#[tokio::test]
async fn emergency_access_opens_no_standing_way_to_the_record() {
    let stack = TestStack::start().await;
    // Given Jane has left her practice and has none
    let id = registered_nowhere(&stack).await;
    let reason_given = "unconscious in A&E, no history available";
    let consultations = |org_glass: Option<&str>, sequence: u64| {
        let request = consultations_of(&id);
        let request = cpb::ListConsultationsRequest {
            min_sequence: sequence,
            ..request
        };
        match org_glass {
            Some(why) => breaking_glass(&stack, STRANGER, why, request),
            None => as_org(&stack, STRANGER, request),
        }
    };

    // When an A&E doctor breaks glass: the review goes to their own
    // organisation, since she has no practice
    let mut cons = stack.consultations();
    cons.list_consultations(consultations(Some(reason_given), 0))
        .await
        .expect("emergency access");
    let mut tasks = stack.tasks();
    tasks
        .list_tasks(breaking_glass(
            &stack,
            STRANGER,
            reason_given,
            tpb::ListTasksRequest {
                patient_id: id.clone(),
                min_sequence: stack.last_sequence_of("tasks").await,
                ..Default::default()
            },
        ))
        .await
        .expect("the review is projected");

    // Then the review task does not open the record to them afterwards
    let refused = cons
        .list_consultations(consultations(None, 0))
        .await
        .expect_err("a review of an emergency access is no relationship");
    assert_eq!(reason(&refused), "NO_LEGITIMATE_RELATIONSHIP");
    // but their privacy officer, who may not read Jane's record either,
    // finds the review in their organisation's work list and takes it on
    let list = tasks
        .list_tasks(in_role(
            &stack,
            STRANGER,
            "LOCAL-PRIVACY-OFFICER",
            tpb::ListTasksRequest {
                organisation_ods: STRANGER.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("their work list")
        .into_inner();
    let review = list
        .tasks
        .iter()
        .find(|t| t.patient_id == id)
        .expect("the review of the emergency access");
    let claimed = tasks
        .claim_task(in_role(
            &stack,
            STRANGER,
            "LOCAL-PRIVACY-OFFICER",
            tpb::TaskActionRequest {
                patient_id: id.clone(),
                task_id: review.task_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("the review is theirs to do")
        .into_inner();
    assert_eq!(claimed.status, tpb::TaskStatus::Accepted as i32);

    // When, in the emergency, they write up yesterday's encounter and leave
    // it unsigned
    let start = |hours_ago: i64| cpb::StartConsultationRequest {
        start_time: Some(carelog_kernel::envelope::timestamp(
            chrono::Utc::now() - chrono::Duration::hours(hours_ago),
        )),
        ..carelog_tests::consultations::start_request(&id)
    };
    let old = cons
        .start_consultation(breaking_glass(&stack, STRANGER, reason_given, start(48)))
        .await
        .expect("write-up")
        .into_inner();
    cons.list_consultations(consultations(Some(reason_given), old.stream_sequence))
        .await
        .expect("projected");
    // Then a draft started two days ago opens nothing either
    let refused = cons
        .list_consultations(consultations(None, 0))
        .await
        .expect_err("an old draft is no standing access");
    assert_eq!(reason(&refused), "NO_LEGITIMATE_RELATIONSHIP");
    // but its write-up goes on without breaking glass again: the doctor
    // records the blood pressure and signs it, answered with that
    // consultation alone
    let old_id = old
        .consultation
        .as_ref()
        .expect("draft")
        .consultation_id
        .clone();
    let entry = carelog_tests::consultations::add_request(
        &id,
        &old_id,
        "",
        carelog_tests::consultations::blood_pressure(90, 60),
    );
    let refused = cons
        .add_entry(as_org(&stack, "Y01234", entry.clone()))
        .await
        .expect_err("another organisation's draft");
    assert_eq!(reason(&refused), "NO_LEGITIMATE_RELATIONSHIP");
    let refused = cons
        .add_entry(in_role(&stack, STRANGER, "R8000", entry.clone()))
        .await
        .expect_err("a colleague's old draft is no way into the record");
    assert_eq!(reason(&refused), "NO_LEGITIMATE_RELATIONSHIP");
    cons.add_entry(as_org(&stack, STRANGER, entry))
        .await
        .expect("the write-up of their own draft");
    let signed = cons
        .sign_consultation(as_org(
            &stack,
            STRANGER,
            cpb::SignConsultationRequest {
                patient_id: id.clone(),
                consultation_id: old_id,
                ..Default::default()
            },
        ))
        .await
        .expect("signed")
        .into_inner()
        .consultation
        .expect("consultation");
    assert_eq!(signed.status, cpb::ConsultationStatus::Signed as i32);
    let refused = cons
        .list_consultations(consultations(None, 0))
        .await
        .expect_err("writing up a draft opens no other part of the record");
    assert_eq!(reason(&refused), "NO_LEGITIMATE_RELATIONSHIP");

    // while the encounter in progress does, as the relationship it is
    let now = cons
        .start_consultation(breaking_glass(&stack, STRANGER, reason_given, start(0)))
        .await
        .expect("encounter")
        .into_inner();
    cons.list_consultations(consultations(Some(reason_given), now.stream_sequence))
        .await
        .expect("projected");
    cons.list_consultations(consultations(None, 0))
        .await
        .expect("their encounter in progress");
    stack.stop().await;
}

#[tokio::test]
async fn emergency_access_to_a_patient_with_no_practice_is_reviewed_by_the_configured_host() {
    // Given a shared-care host whose information governance team reviews
    // emergency access to patients with no practice
    const HOST: &str = "Y12345";
    let stack = TestStack::start_with(
        carelog::stack::Parts {
            api: true,
            projectors: true,
        },
        carelog::stack::Settings {
            break_glass_reviewer: Some(carelog_kernel::OdsCode::parse(HOST).expect("ods")),
            ..Default::default()
        },
    )
    .await;
    // and Jane, who has left her practice and has none
    let id = registered_nowhere(&stack).await;

    // When an A&E doctor breaks glass
    let reason_given = "unconscious in A&E, no history available";
    stack
        .consultations()
        .list_consultations(breaking_glass(
            &stack,
            STRANGER,
            reason_given,
            consultations_of(&id),
        ))
        .await
        .expect("emergency access");

    // Then the review is in the host's work list, not the A&E's own
    let work_list = |org: &'static str| {
        let stack = &stack;
        async move {
            let sequence = stack.last_sequence_of("tasks").await;
            stack
                .tasks()
                .list_tasks(in_role(
                    stack,
                    org,
                    "LOCAL-PRIVACY-OFFICER",
                    tpb::ListTasksRequest {
                        organisation_ods: org.into(),
                        min_sequence: sequence,
                        ..Default::default()
                    },
                ))
                .await
                .expect("work list")
                .into_inner()
                .tasks
        }
    };
    let at_host = work_list(HOST).await;
    assert_eq!(at_host.len(), 1, "{at_host:?}");
    assert_eq!(at_host[0].patient_id, id);
    assert!(at_host[0].description.contains(reason_given));
    assert!(work_list(STRANGER).await.iter().all(|t| t.patient_id != id));
    stack.stop().await;
}
