//! The audit history answers a medico-legal request: who looked at a
//! patient's record, when, from which organisation and why
//! (`ListPatientAccess`), and what a user did across patients
//! (`ListActorActivity`), paged and filtered by time, for holders of
//! `view_audit` only.

use carelog_proto::audit::v1 as apb;
use carelog_proto::audit::v1::audit_service_client::AuditServiceClient;
use carelog_proto::demographics::v1 as pb;
use carelog_tests::audit::caught_up;
use carelog_tests::harness::{TestStack, jane_smith};
use tonic::Code;

const PRIVACY_OFFICER: &str = "LOCAL-PRIVACY-OFFICER";
const OFFICER_ORG: &str = "A81001";

fn who(access: &apb::PatientAccess) -> (String, String) {
    let actor = access
        .access
        .as_ref()
        .and_then(|a| a.actor.clone())
        .expect("the access event names its actor");
    (actor.user_id, actor.organisation_ods)
}

#[tokio::test]
async fn a_privacy_officer_sees_who_read_a_record_and_what_each_user_did() {
    // Given Jane registered by dr-jones, then read by dr-patel twice and
    // once by dr-khan of another organisation
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let get = |user: &str, org: &str| {
        stack.req_in_role(
            user,
            org,
            "R8000",
            pb::GetPatientRequest {
                patient_id: jane.patient_id.clone(),
                min_sequence: jane.stream_sequence,
            },
        )
    };
    let mut client = stack.client();
    client
        .get_patient(get("dr-patel", "A81001"))
        .await
        .expect("dr-patel reads");
    // Whether another organisation's read is answered is the access
    // policy's business; either way the attempt is an access event.
    let _answered_or_denied = client.get_patient(get("dr-khan", "B82002")).await;
    client
        .get_patient(get("dr-patel", "A81001"))
        .await
        .expect("dr-patel reads again");
    caught_up(&stack, carelog_projections::audit::NAME).await;
    // Listing accesses is itself an access (ADR 0026): the questions below
    // look at what happened before they were asked.
    let asked = carelog_kernel::envelope::timestamp(chrono::Utc::now());

    // When the privacy officer lists the accesses to Jane's record, two a page
    let mut audit = AuditServiceClient::new(stack.channel.clone());
    let list = |page_token: String, range: Option<apb::TimeRange>| {
        let range = range.unwrap_or_default();
        stack.req_in_role(
            "po-1",
            OFFICER_ORG,
            PRIVACY_OFFICER,
            apb::ListPatientAccessRequest {
                patient_id: jane.patient_id.clone(),
                range: Some(apb::TimeRange {
                    from: range.from,
                    to: range.to.or(Some(asked)),
                }),
                page_size: 2,
                page_token,
                min_sequence: 0,
            },
        )
    };
    let first = audit
        .list_patient_access(list(String::new(), None))
        .await
        .expect("first page")
        .into_inner();
    assert_eq!(first.accesses.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = audit
        .list_patient_access(list(first.next_page_token.clone(), None))
        .await
        .expect("second page")
        .into_inner();
    assert!(second.next_page_token.is_empty());

    // Then every access is there, oldest first, naming who, where, why, what
    let all: Vec<_> = first.accesses.iter().chain(&second.accesses).collect();
    let people: Vec<_> = all.iter().map(|a| who(a)).collect();
    assert_eq!(
        people,
        [
            ("dr-patel".to_owned(), "A81001".to_owned()),
            ("dr-khan".to_owned(), "B82002".to_owned()),
            ("dr-patel".to_owned(), "A81001".to_owned()),
        ]
    );
    for access in &all {
        let event = access.access.as_ref().expect("event");
        assert_eq!(event.patient_id, jane.patient_id);
        assert_eq!(event.method, "GetPatient");
        assert!(!event.purpose_of_use.is_empty());
        let position = access.position.as_ref().expect("position");
        assert_eq!(position.stream, "CARELOG_ACCESS");
        assert!(position.stream_sequence > 0);
        // Recorded to the microsecond (PostgreSQL's precision).
        let (recorded, accessed) = (
            access.recorded_at.expect("recorded_at"),
            event.accessed_at.expect("accessed_at"),
        );
        assert_eq!(
            (recorded.seconds, recorded.nanos / 1000),
            (accessed.seconds, accessed.nanos / 1000)
        );
    }
    assert_eq!(all[0].access.as_ref().expect("event").record_count, 1);
    assert_eq!(
        all[0].access.as_ref().expect("event").resource_ids,
        std::slice::from_ref(&jane.patient_id)
    );

    // And a time range keeps only the accesses recorded within it
    let second_at = all[1].recorded_at;
    let from_second = audit
        .list_patient_access(list(
            String::new(),
            Some(apb::TimeRange {
                from: second_at,
                to: None,
            }),
        ))
        .await
        .expect("from")
        .into_inner();
    let mut since: Vec<_> = from_second.accesses.iter().map(who).collect();
    if !from_second.next_page_token.is_empty() {
        let more = audit
            .list_patient_access(list(
                from_second.next_page_token.clone(),
                Some(apb::TimeRange {
                    from: second_at,
                    to: None,
                }),
            ))
            .await
            .expect("from, page 2")
            .into_inner();
        since.extend(more.accesses.iter().map(who));
    }
    assert_eq!(since, people[1..]);
    let before_second = audit
        .list_patient_access(list(
            String::new(),
            Some(apb::TimeRange {
                from: None,
                to: second_at,
            }),
        ))
        .await
        .expect("to")
        .into_inner();
    assert_eq!(
        before_second.accesses.iter().map(who).collect::<Vec<_>>(),
        people[..1]
    );
    // A page token of one query is refused by another.
    let foreign = audit
        .list_patient_access(list(
            first.next_page_token.clone(),
            Some(apb::TimeRange {
                from: second_at,
                to: None,
            }),
        ))
        .await
        .expect_err("a token of another range");
    assert_eq!(foreign.code(), Code::InvalidArgument);

    // When the officer asks what dr-patel did: two reads of Jane's record
    let activity = |user: &str| {
        stack.req_in_role(
            "po-1",
            OFFICER_ORG,
            PRIVACY_OFFICER,
            apb::ListActorActivityRequest {
                user_id: user.into(),
                ..Default::default()
            },
        )
    };
    let patel = audit
        .list_actor_activity(activity("dr-patel"))
        .await
        .expect("dr-patel's activity")
        .into_inner()
        .activities;
    assert_eq!(patel.len(), 2);
    for a in &patel {
        assert_eq!(
            (a.context.as_str(), a.event_type.as_str()),
            ("access", "RecordAccessed")
        );
        assert_eq!(a.patient_id, jane.patient_id);
        assert_eq!(a.actor.as_ref().expect("actor").organisation_ods, "A81001");
        assert_eq!(
            a.access.as_ref().expect("the access event").method,
            "GetPatient"
        );
    }
    // And what dr-jones did: the registration, a write, with no access event
    let jones = audit
        .list_actor_activity(activity("dr-jones"))
        .await
        .expect("dr-jones's activity")
        .into_inner()
        .activities;
    let registration = jones
        .iter()
        .find(|a| a.event_type == "PatientRegistered")
        .expect("the registration");
    assert_eq!(registration.context, "demographics");
    assert_eq!(registration.patient_id, jane.patient_id);
    assert_eq!(registration.aggregate_id, jane.patient_id);
    assert!(registration.access.is_none());
    assert_eq!(
        registration.position.as_ref().expect("position").stream,
        "CARELOG_DEMOGRAPHICS"
    );

    // But the privacy officer of an organisation with no claim on Jane is
    // told only that entries were left out
    let elsewhere = audit
        .list_actor_activity(stack.req_in_role(
            "po-2",
            "B82002",
            PRIVACY_OFFICER,
            apb::ListActorActivityRequest {
                user_id: "dr-patel".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("asked")
        .into_inner();
    assert!(
        elsewhere.activities.is_empty(),
        "{:?}",
        elsewhere.activities
    );
    assert_eq!(elsewhere.withheld_count, 2);

    // And the officer's questions are themselves recorded as accesses to
    // Jane's record
    caught_up(&stack, carelog_projections::audit::NAME).await;
    let since = audit
        .list_patient_access(stack.req_in_role(
            "po-1",
            OFFICER_ORG,
            PRIVACY_OFFICER,
            apb::ListPatientAccessRequest {
                patient_id: jane.patient_id.clone(),
                range: Some(apb::TimeRange {
                    from: Some(asked),
                    to: None,
                }),
                page_size: 200,
                ..Default::default()
            },
        ))
        .await
        .expect("accesses since")
        .into_inner()
        .accesses;
    let officer: Vec<_> = since
        .iter()
        .filter_map(|a| a.access.as_ref())
        .filter(|e| e.actor.as_ref().is_some_and(|a| a.user_id == "po-1"))
        .map(|e| (e.service.as_str(), e.method.as_str()))
        .collect();
    assert!(
        officer.contains(&("carelog.audit.v1.AuditService", "ListPatientAccess")),
        "{officer:?}"
    );
    assert!(
        officer.contains(&("carelog.audit.v1.AuditService", "ListActorActivity")),
        "{officer:?}"
    );

    // A receptionist, without view_audit, may ask neither question
    let refused = audit
        .list_patient_access(stack.req_in_role(
            "rec-1",
            "A81001",
            "R8010",
            apb::ListPatientAccessRequest {
                patient_id: jane.patient_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("no view_audit");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = audit
        .list_actor_activity(stack.req_in_role(
            "rec-1",
            "A81001",
            "R8010",
            apb::ListActorActivityRequest {
                user_id: "dr-patel".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("no view_audit");
    assert_eq!(refused.code(), Code::PermissionDenied);
    // And a request without a patient names the field
    let blank = audit
        .list_patient_access(list(String::new(), None).map(|mut r| {
            r.patient_id.clear();
            r
        }))
        .await
        .expect_err("no patient");
    assert_eq!(blank.code(), Code::InvalidArgument);
    stack.stop().await;
}

#[tokio::test]
async fn a_restricted_patients_practice_is_not_named_to_another_organisation_by_the_access_history()
{
    // Given Jane, her practice sharing its records with the hospital, and
    // restricted (the S flag hides her practice), read by a hospital
    // clinician
    let stack = TestStack::start().await;
    let jane = registered_and_shared_with_the_hospital(&stack).await;
    // (her practice read her record, address and all, before the
    // restriction)
    let before_restriction = stack
        .client()
        .get_patient(stack.req(pb::GetPatientRequest {
            patient_id: jane.patient_id.clone(),
            min_sequence: jane.stream_sequence,
        }))
        .await
        .expect("the practice reads her record")
        .into_inner();
    assert!(!before_restriction.withheld);
    let restricted = stack
        .client()
        .mark_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: jane.patient_id.clone(),
            reason: "at risk of harm".into(),
            ..Default::default()
        }))
        .await
        .expect("restricted")
        .into_inner();
    fn at_hospital<T>(stack: &TestStack, m: T) -> tonic::Request<T> {
        stack.req_in_role("dr-ward", "RR8", "R8000", m)
    }
    let read = stack
        .client()
        .get_patient(at_hospital(
            &stack,
            pb::GetPatientRequest {
                patient_id: jane.patient_id.clone(),
                min_sequence: restricted.stream_sequence,
            },
        ))
        .await
        .expect("the hospital reads her record")
        .into_inner();
    assert!(
        read.details
            .expect("details")
            .registered_practice_ods
            .is_empty()
    );
    caught_up(&stack, carelog_projections::audit::NAME).await;
    let mut audit = AuditServiceClient::new(stack.channel.clone());
    let accesses = |m: tonic::Request<apb::ListPatientAccessRequest>| async {
        AuditServiceClient::new(stack.channel.clone())
            .list_patient_access(m)
            .await
            .expect("accesses")
            .into_inner()
            .accesses
    };
    let asked = || apb::ListPatientAccessRequest {
        patient_id: jane.patient_id.clone(),
        ..Default::default()
    };

    // When the hospital clinician asks who looked at her record, and what
    // they themselves did
    let listed = accesses(at_hospital(&stack, asked())).await;
    let activity = audit
        .list_actor_activity(at_hospital(
            &stack,
            apb::ListActorActivityRequest {
                user_id: "dr-ward".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("activity")
        .into_inner();

    // Then no access event names her practice
    assert!(!listed.is_empty());
    let events = listed
        .iter()
        .filter_map(|a| a.access.as_ref())
        .chain(activity.activities.iter().filter_map(|a| a.access.as_ref()));
    for event in events {
        assert!(event.registered_organisation.is_empty(), "{event:?}");
    }
    // and both questions are audited as reads that withheld something
    let audited = |user: &'static str, method: &'static str| {
        let stack = &stack;
        let patient_id = jane.patient_id.clone();
        async move {
            stack
                .access_events(&patient_id)
                .await
                .into_iter()
                .rev()
                .map(|(_, e)| e)
                .find(|e| e.method == method && e.actor.as_ref().is_some_and(|a| a.user_id == user))
                .expect("the question audited")
        }
    };
    assert!(audited("dr-ward", "ListPatientAccess").await.withheld);
    assert!(audited("dr-ward", "ListActorActivity").await.withheld);
    // and the practice's restriction of her record is listed without its
    // reason, which may say what it protects
    let practice_activity = |m| async {
        AuditServiceClient::new(stack.channel.clone())
            .list_actor_activity(m)
            .await
            .expect("activity")
            .into_inner()
            .activities
    };
    let asked_about_the_practice = || apb::ListActorActivityRequest {
        user_id: "dr-jones".into(),
        ..Default::default()
    };
    let restriction = |activities: Vec<apb::ActorActivity>| {
        activities
            .into_iter()
            .find(|a| a.event_type == "RestrictionMarked")
            .expect("the restriction")
    };
    let seen_by_hospital =
        restriction(practice_activity(at_hospital(&stack, asked_about_the_practice())).await);
    assert!(seen_by_hospital.reason.is_empty() && seen_by_hospital.reason_withheld);
    let seen_by_practice =
        restriction(practice_activity(stack.req(asked_about_the_practice())).await);
    assert_eq!(seen_by_practice.reason, "at risk of harm");
    // nor does the hospital's read asked for by its id, whose record is
    // shown as the hospital saw it: without her address or practice
    let read_by = |user: &'static str| {
        move |accesses: &[apb::PatientAccess]| {
            accesses
                .iter()
                .filter_map(|a| a.access.as_ref())
                .find(|e| {
                    e.method == "GetPatient" && e.actor.as_ref().is_some_and(|a| a.user_id == user)
                })
                .map(|e| e.access_id.clone())
                .expect("the read")
        }
    };
    let accessed = |m: tonic::Request<apb::GetAccessedRecordRequest>| async {
        carelog_proto::audit::v1::record_history_service_client::RecordHistoryServiceClient::new(
            stack.channel.clone(),
        )
        .get_accessed_record(m)
        .await
        .expect("the accessed record")
        .into_inner()
    };
    let asking_for = |access_id: String| apb::GetAccessedRecordRequest {
        access_id,
        ..Default::default()
    };
    let hospitals_read = read_by("dr-ward")(&listed);
    let asked_by_hospital = accessed(at_hospital(&stack, asking_for(hospitals_read.clone()))).await;
    assert!(
        asked_by_hospital
            .access
            .as_ref()
            .is_some_and(|e| e.registered_organisation.is_empty()),
        "{:?}",
        asked_by_hospital.access
    );
    let hidden = |answer: &carelog_proto::audit::v1::AccessedRecord| {
        let patient = answer
            .record
            .as_ref()
            .and_then(|r| r.patient.as_ref())
            .expect("the patient read");
        let details = patient.details.as_ref().expect("details");
        patient.withheld
            && details.registered_practice_ods.is_empty()
            && details.addresses.is_empty()
    };
    assert!(hidden(&asked_by_hospital), "{asked_by_hospital:?}");
    assert!(audited("dr-ward", "GetAccessedRecord").await.withheld);
    // and shown her practice's read from before she was restricted
    // without them either, as she is now
    let practices_read = read_by("dr-jones")(&listed);
    let earlier = accessed(at_hospital(&stack, asking_for(practices_read.clone()))).await;
    assert!(hidden(&earlier), "{earlier:?}");
    // while her practice's clinician is told her practice, and shown that
    // read as it was
    let own = accesses(stack.req(asked())).await;
    assert!(
        own.iter()
            .filter_map(|a| a.access.as_ref())
            .any(|e| e.registered_organisation == OFFICER_ORG),
        "{own:?}"
    );
    assert!(!audited("dr-jones", "ListPatientAccess").await.withheld);
    let own_accessed = accessed(stack.req(asking_for(practices_read))).await;
    assert!(!hidden(&own_accessed), "{own_accessed:?}");
    assert!(!audited("dr-jones", "GetAccessedRecord").await.withheld);
    let shown = own_accessed
        .record
        .and_then(|r| r.patient)
        .and_then(|p| p.details)
        .expect("details");
    assert_eq!(shown.registered_practice_ods, OFFICER_ORG);
    assert!(!shown.addresses.is_empty());
    // and the hospital's read as the hospital saw it, without them
    let as_the_hospital_saw_it = accessed(stack.req(asking_for(hospitals_read))).await;
    assert!(
        hidden(&as_the_hospital_saw_it),
        "{as_the_hospital_saw_it:?}"
    );
    // and their own read since the restriction whole, as they saw it
    stack
        .client()
        .get_patient(stack.req(pb::GetPatientRequest {
            patient_id: jane.patient_id.clone(),
            min_sequence: restricted.stream_sequence,
        }))
        .await
        .expect("the practice reads her record again");
    caught_up(&stack, carelog_projections::audit::NAME).await;
    let since = accesses(stack.req(asked())).await;
    let latest = since
        .iter()
        .filter_map(|a| a.access.as_ref())
        .filter(|e| {
            e.method == "GetPatient" && e.actor.as_ref().is_some_and(|a| a.user_id == "dr-jones")
        })
        .max_by_key(|e| e.accessed_at.as_ref().map(|t| (t.seconds, t.nanos)))
        .map(|e| e.access_id.clone())
        .expect("the read since");
    let restricted_read = accessed(stack.req(asking_for(latest))).await;
    assert!(!hidden(&restricted_read), "{restricted_read:?}");
    assert!(
        restricted_read
            .record
            .and_then(|r| r.patient)
            .is_some_and(|p| p.restricted),
        "the version read was restricted"
    );
    stack.stop().await;
}

#[tokio::test]
async fn another_organisation_is_not_shown_the_reasons_of_a_users_clinical_writes() {
    // Given the practice's clinician recording a confidential penicillin
    // allergy for Jane and then marking it entered in error, with a reason
    // that names it, and the practice sharing its records with the hospital
    let stack = TestStack::start().await;
    let jane = registered_and_shared_with_the_hospital(&stack).await;
    let mut meds = stack.medications();
    let allergy = meds
        .record_allergy(
            stack.req(carelog_proto::medications::v1::RecordAllergyRequest {
                confidential: true,
                ..carelog_tests::medications::record_penicillin_allergy(&jane.patient_id)
            }),
        )
        .await
        .expect("allergy")
        .into_inner();
    let reason = "the clinic's penicillin label was another patient's";
    meds.mark_allergy_entered_in_error(stack.req(
        carelog_proto::medications::v1::MarkAllergyEnteredInErrorRequest {
            patient_id: jane.patient_id.clone(),
            allergy_id: allergy.allergy_id.clone(),
            reason: reason.into(),
            ..Default::default()
        },
    ))
    .await
    .expect("entered in error");
    caught_up(&stack, carelog_projections::audit::NAME).await;
    let activity_of = |caller: tonic::Request<apb::ListActorActivityRequest>| async {
        AuditServiceClient::new(stack.channel.clone())
            .list_actor_activity(caller)
            .await
            .expect("activity")
            .into_inner()
            .activities
            .into_iter()
            .find(|a| a.event_type == "AllergyEnteredInError")
            .expect("the correction")
    };
    let asked = || apb::ListActorActivityRequest {
        user_id: "dr-jones".into(),
        ..Default::default()
    };

    // When a hospital clinician lists what the practice's clinician did
    let seen = activity_of(stack.req_in_role("dr-ward", "RR8", "R8000", asked())).await;
    // Then the correction is listed without its reason, said withheld
    assert!(seen.reason.is_empty() && seen.reason_withheld, "{seen:?}");
    // while the practice's privacy officer is shown it
    let own =
        activity_of(stack.req_in_role("po-ahmed", OFFICER_ORG, PRIVACY_OFFICER, asked())).await;
    assert_eq!(own.reason, reason);
    assert!(!own.reason_withheld);
    stack.stop().await;
}

/// Jane, registered at the practice, which shares its records with the
/// hospital (RR8) for direct care.
async fn registered_and_shared_with_the_hospital(stack: &TestStack) -> pb::Patient {
    let jane = stack.register(jane_smith()).await;
    crate::shared_care::share(
        stack,
        OFFICER_ORG,
        carelog_proto::sharing::v1::party::Party::OrganisationOds(OFFICER_ORG.into()),
        "RR8",
    )
    .await;
    jane
}
