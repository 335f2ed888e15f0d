//! The record's history for a medico-legal request: the whole record as it
//! stood at past instants (as recorded, and as since corrected) around an
//! amendment, an entered-in-error, a merge and an unmerge; every change with
//! who, when, why and before/after; and what a clinician was shown by a
//! recorded access, after later changes (ADR 0027, ADR 0028).

use carelog_kernel::access::access_stream;
use carelog_kernel::envelope::timestamp;
use carelog_projections::history::fold::order_key;
use carelog_proto::audit::v1 as hpb;
use carelog_proto::audit::v1::record_history_service_client::RecordHistoryServiceClient;
use carelog_proto::consultations::v1 as cpb;
use carelog_proto::demographics::v1 as pb;
use carelog_proto::medications::v1 as mpb;
use carelog_tests::consultations::{add_request, hypertension, mask, start, start_request, weight};
use carelog_tests::harness::{TestStack, jane_smith, test_nhs_number};
use carelog_tests::medications::{
    CLARITHROMYCIN_500, authorise, record_penicillin_allergy, repeat,
};
use chrono::{DateTime, Utc};
use hpb::RecordView::{AsCorrected, AsRecorded};
use tonic::Code;
use tonic::transport::Channel;

fn history(stack: &TestStack) -> RecordHistoryServiceClient<Channel> {
    RecordHistoryServiceClient::new(stack.channel.clone())
}

async fn as_of(
    stack: &TestStack,
    patient_id: &str,
    at: DateTime<Utc>,
    view: hpb::RecordView,
) -> hpb::RecordAsOf {
    history(stack)
        .get_record_as_of(stack.req(hpb::GetRecordAsOfRequest {
            patient_id: patient_id.to_owned(),
            as_of: Some(timestamp(at)),
            view: view as i32,
        }))
        .await
        .expect("record as of")
        .into_inner()
}

/// The problem entry's status and whether the weight entry stands, in a
/// snapshot.
fn problem_status(s: &hpb::PatientRecordSnapshot, entry_id: &str) -> Option<cpb::ProblemStatus> {
    s.problems
        .iter()
        .find(|p| p.entry_id == entry_id)
        .map(|p| p.status())
}

fn entry<'a>(s: &'a hpb::PatientRecordSnapshot, entry_id: &str) -> Option<&'a cpb::Entry> {
    s.consultations
        .iter()
        .flat_map(|c| c.topics.iter())
        .flat_map(|t| t.entries.iter())
        .find(|e| e.entry_id == entry_id)
}

fn allergy_status(s: &hpb::PatientRecordSnapshot) -> Vec<mpb::AllergyStatus> {
    s.allergies.iter().map(|a| a.status()).collect()
}

fn record(answer: &hpb::RecordAsOf) -> &hpb::PatientRecordSnapshot {
    answer.record.as_ref().expect("record")
}

fn patient(answer: &hpb::RecordAsOf) -> &pb::Patient {
    record(answer).patient.as_ref().expect("patient")
}

#[tokio::test]
async fn history_the_record_as_it_stood_around_an_amendment_an_error_a_merge_and_an_unmerge() {
    let stack = TestStack::start().await;
    let mut consultations = stack.consultations();
    let mut medications = stack.medications();
    let mut demographics = stack.client();
    let before_registration = Utc::now();

    // Given Jane, a duplicate record of her made at reception, and a
    // consultation on each: on Jane's a hypertension diagnosis and a weight,
    // signed, and a penicillin allergy
    let (j, d) = jane_and_a_duplicate(&stack).await;
    let consultation = start(&stack, &j)
        .await
        .consultation
        .expect("consultation")
        .consultation_id;
    let problem = consultations
        .add_entry(stack.req(add_request(
            &j,
            &consultation,
            "",
            hypertension(cpb::ProblemStatus::Active),
        )))
        .await
        .expect("problem")
        .into_inner();
    let weighed = consultations
        .add_entry(stack.req(add_request(
            &j,
            &consultation,
            &problem.topic_id,
            weight("84.2", "kg"),
        )))
        .await
        .expect("weight")
        .into_inner();
    consultations
        .sign_consultation(stack.req(cpb::SignConsultationRequest {
            patient_id: j.clone(),
            consultation_id: consultation.clone(),
            ..Default::default()
        }))
        .await
        .expect("signed");
    let allergy = medications
        .record_allergy(stack.req(record_penicillin_allergy(&j)))
        .await
        .expect("allergy")
        .into_inner();
    let duplicate_consultation = consultations
        .start_consultation(stack.req(start_request(&d)))
        .await
        .expect("consultation on the duplicate")
        .into_inner()
        .consultation
        .expect("consultation")
        .consultation_id;
    let t1_written = Utc::now();

    // When Dr Patel amends the diagnosis (home readings were normal)
    consultations
        .amend_entry(stack.req_as(
            "dr-patel",
            cpb::AmendEntryRequest {
                patient_id: j.clone(),
                consultation_id: consultation.clone(),
                entry_id: problem.entry_id.clone(),
                entry: Some(hypertension(cpb::ProblemStatus::Inactive)),
                update_mask: mask(&["problem.status"]),
                reason: "Home readings normal: not hypertensive".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("amended");
    let t2_amended = Utc::now();
    // and the weight and the allergy are found to be another patient's
    consultations
        .mark_entered_in_error(stack.req(cpb::MarkEnteredInErrorRequest {
            patient_id: j.clone(),
            consultation_id: consultation.clone(),
            entry_id: weighed.entry_id.clone(),
            reason: "Weight of another patient".into(),
            ..Default::default()
        }))
        .await
        .expect("weight in error");
    medications
        .mark_allergy_entered_in_error(stack.req(mpb::MarkAllergyEnteredInErrorRequest {
            patient_id: j.clone(),
            allergy_id: allergy.allergy_id.clone(),
            reason: "Allergy of another patient".into(),
            ..Default::default()
        }))
        .await
        .expect("allergy in error");
    let t3_corrected = Utc::now();
    // and the duplicate is merged into Jane
    demographics
        .merge_patient(stack.req(pb::MergePatientRequest {
            duplicate_patient_id: d.clone(),
            survivor_patient_id: j.clone(),
            reason: "same person registered twice".into(),
            request_id: "history-merge".into(),
        }))
        .await
        .expect("merged");
    let t4_merged = Utc::now();
    // and unmerged again
    demographics
        .unmerge_patient(stack.req(pb::UnmergePatientRequest {
            duplicate_patient_id: d.clone(),
            reason: "not the same person: different mother's maiden name".into(),
            request_id: "history-unmerge".into(),
        }))
        .await
        .expect("unmerged");
    let t5_unmerged = Utc::now();

    // Then before she was registered, there is no record of Jane
    let none = history(&stack)
        .get_record_as_of(stack.req(hpb::GetRecordAsOfRequest {
            patient_id: j.clone(),
            as_of: Some(timestamp(before_registration)),
            view: AsRecorded as i32,
        }))
        .await
        .expect_err("not registered then");
    assert_eq!(none.code(), Code::NotFound);

    // As recorded at t1: the diagnosis active, the weight and allergy
    // standing, nothing corrected, nothing merged
    let recorded = as_of(&stack, &j, t1_written, AsRecorded).await;
    let r = record(&recorded);
    assert_eq!(recorded.view, AsRecorded as i32);
    assert_eq!(
        problem_status(r, &problem.entry_id),
        Some(cpb::ProblemStatus::Active)
    );
    let w = entry(r, &weighed.entry_id).expect("weight entry");
    assert!(!w.entered_in_error);
    assert_eq!(r.latest_observations.len(), 1);
    assert_eq!(allergy_status(r), [mpb::AllergyStatus::Active]);
    assert!(recorded.corrections.is_empty());
    assert!(recorded.merged_records.is_empty());
    assert!(patient(&recorded).merged_patient_ids.is_empty());
    assert_eq!(
        r.consultations[0].status,
        cpb::ConsultationStatus::Signed as i32
    );

    // As corrected at t1: the same items, with what was learnt since
    // applied: the diagnosis amended (with why), the weight and the allergy
    // kept but marked entered in error (and out of the derived views)
    let corrected = as_of(&stack, &j, t1_written, AsCorrected).await;
    let c = record(&corrected);
    assert_eq!(
        problem_status(c, &problem.entry_id),
        Some(cpb::ProblemStatus::Inactive)
    );
    let amended = entry(c, &problem.entry_id).expect("problem entry");
    assert!(amended.amended);
    assert_eq!(
        amended.amendment_reason,
        "Home readings normal: not hypertensive"
    );
    let w = entry(c, &weighed.entry_id).expect("weight kept");
    assert!(w.entered_in_error);
    assert_eq!(w.entered_in_error_reason, "Weight of another patient");
    assert!(c.latest_observations.is_empty());
    assert_eq!(allergy_status(c), [mpb::AllergyStatus::EnteredInError]);
    let why: Vec<(&str, &str, &str)> = corrected
        .corrections
        .iter()
        .map(|x| {
            (
                x.event_types[0].as_str(),
                x.reason.as_str(),
                x.actor.as_ref().map_or("", |a| a.user_id.as_str()),
            )
        })
        .collect();
    assert_eq!(
        why,
        [
            (
                "EntryAmended",
                "Home readings normal: not hypertensive",
                "dr-patel"
            ),
            (
                "EntryEnteredInError",
                "Weight of another patient",
                "dr-jones"
            ),
            (
                "AllergyEnteredInError",
                "Allergy of another patient",
                "dr-jones"
            ),
        ]
    );
    // and the merge that came later is not a correction: nothing merged yet
    assert!(corrected.merged_records.is_empty());

    // As recorded at t2: the amendment is there, the errors not yet known
    let amended_then = as_of(&stack, &j, t2_amended, AsRecorded).await;
    let a = record(&amended_then);
    assert_eq!(
        problem_status(a, &problem.entry_id),
        Some(cpb::ProblemStatus::Inactive)
    );
    assert!(
        !entry(a, &weighed.entry_id)
            .expect("weight")
            .entered_in_error
    );
    assert_eq!(allergy_status(a), [mpb::AllergyStatus::Active]);

    // As recorded at t3: both errors recorded, still two separate patients
    let errors_then = as_of(&stack, &j, t3_corrected, AsRecorded).await;
    assert!(
        entry(record(&errors_then), &weighed.entry_id)
            .expect("weight")
            .entered_in_error
    );
    assert!(errors_then.merged_records.is_empty());
    let dup_then = as_of(&stack, &d, t3_corrected, AsRecorded).await;
    assert!(patient(&dup_then).merged_into_patient_id.is_empty());

    // While merged (t4), in both views: Jane's record carries the
    // duplicate's record, and the duplicate points at Jane
    for view in [AsRecorded, AsCorrected] {
        let merged = as_of(&stack, &j, t4_merged, view).await;
        assert_eq!(
            patient(&merged).merged_patient_ids,
            std::slice::from_ref(&d)
        );
        assert_eq!(merged.merged_records.len(), 1);
        let dup = &merged.merged_records[0];
        assert_eq!(dup.patient_id, d);
        assert_eq!(
            dup.consultations
                .iter()
                .map(|c| c.consultation_id.as_str())
                .collect::<Vec<_>>(),
            [duplicate_consultation.as_str()]
        );
        let dup_merged = as_of(&stack, &d, t4_merged, view).await;
        assert_eq!(patient(&dup_merged).merged_into_patient_id, j);
    }

    // After the unmerge (t5): two patients again, each with their own record
    let apart = as_of(&stack, &j, t5_unmerged, AsRecorded).await;
    assert!(apart.merged_records.is_empty());
    assert!(patient(&apart).merged_patient_ids.is_empty());
    assert_eq!(record(&apart).consultations.len(), 1);
    let dup_apart = as_of(&stack, &d, t5_unmerged, AsRecorded).await;
    assert!(patient(&dup_apart).merged_into_patient_id.is_empty());

    // And each of these answers was itself audited as a read of the record,
    // the merged duplicate's too
    let jane_reads = stack.access_events(&j).await;
    assert_eq!(
        jane_reads
            .iter()
            .filter(|(_, a)| a.method == "GetRecordAsOf")
            .count(),
        7
    );
    let first = &jane_reads[0].1;
    assert_eq!(first.service, "carelog.audit.v1.RecordHistoryService");
    assert!(first.resource_ids.contains(&j));
    assert!(first.resource_ids.contains(&consultation));
    assert!(
        stack
            .access_events(&d)
            .await
            .iter()
            .any(|(_, a)| a.method == "GetRecordAsOf"
                && a.resource_ids.contains(&duplicate_consultation))
    );
}

/// A consultation by Dr Jones with an active hypertension diagnosis, signed:
/// the consultation, the diagnosis entry and the signature's sequence.
async fn signed_hypertension(stack: &TestStack, patient_id: &str) -> (String, String, u64) {
    let mut consultations = stack.consultations();
    let consultation = start(stack, patient_id)
        .await
        .consultation
        .expect("consultation")
        .consultation_id;
    let problem = consultations
        .add_entry(stack.req(add_request(
            patient_id,
            &consultation,
            "",
            hypertension(cpb::ProblemStatus::Active),
        )))
        .await
        .expect("problem")
        .into_inner();
    let signed = consultations
        .sign_consultation(stack.req(cpb::SignConsultationRequest {
            patient_id: patient_id.to_owned(),
            consultation_id: consultation.clone(),
            ..Default::default()
        }))
        .await
        .expect("signed")
        .into_inner();
    (consultation, problem.entry_id, signed.stream_sequence)
}

#[tokio::test]
async fn history_each_change_says_who_when_why_and_what_it_was_before_and_after() {
    let stack = TestStack::start().await;
    let mut consultations = stack.consultations();
    // Given Jane with a hypertension diagnosis recorded and signed by Dr Jones
    let jane = stack.register(jane_smith()).await;
    let j = jane.patient_id.clone();
    let (consultation, problem, _) = signed_hypertension(&stack, &j).await;
    let before_amendment = Utc::now();
    // When Dr Patel amends it, giving a reason
    consultations
        .amend_entry(stack.req_as(
            "dr-patel",
            cpb::AmendEntryRequest {
                patient_id: j.clone(),
                consultation_id: consultation.clone(),
                entry_id: problem.clone(),
                entry: Some(hypertension(cpb::ProblemStatus::Resolved)),
                update_mask: mask(&["problem.status"]),
                reason: "Resolved after weight loss".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("amended");

    // Then the change history lists every commit across the services,
    // oldest first: registration, start, entry, signature, amendment
    let all = history(&stack)
        .list_patient_changes(stack.req(hpb::ListPatientChangesRequest {
            patient_id: j.clone(),
            ..Default::default()
        }))
        .await
        .expect("changes")
        .into_inner();
    let kinds: Vec<(&str, &str)> = all
        .changes
        .iter()
        .map(|c| (c.context.as_str(), c.event_types[0].as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("demographics", "PatientRegistered"),
            ("consultations", "ConsultationStarted"),
            ("consultations", "TopicOpened"),
            ("consultations", "ConsultationSigned"),
            ("consultations", "EntryAmended"),
        ]
    );
    assert!(all.next_page_token.is_empty());
    // The registration created the patient: nothing before it
    let registered = &all.changes[0].resources[0];
    assert_eq!(registered.resource_type, "Patient");
    assert!(registered.before.is_none());
    assert!(matches!(
        registered.after.as_ref().and_then(|r| r.resource.as_ref()),
        Some(hpb::resource::Resource::Patient(p)) if p.patient_id == j
    ));

    // The amendment: who, when, why, and the problem before and after
    let amendment = &all.changes[4];
    let actor = amendment.actor.as_ref().expect("actor");
    assert_eq!(actor.user_id, "dr-patel");
    assert_eq!(actor.organisation_ods, "A81001");
    assert_eq!(amendment.reason, "Resolved after weight loss");
    assert!(amendment.recorded_at.is_some() && amendment.occurred_at.is_some());
    let change = &amendment.resources[0];
    assert_eq!(
        (change.resource_type.as_str(), change.resource_id.as_str()),
        ("Consultation", consultation.as_str())
    );
    let status = |r: &Option<hpb::Resource>| match r.as_ref().and_then(|r| r.resource.as_ref()) {
        Some(hpb::resource::Resource::Consultation(c)) => c
            .topics
            .iter()
            .flat_map(|t| t.entries.iter())
            .find(|e| e.entry_id == problem)
            .and_then(|e| e.content.as_ref())
            .and_then(|c| c.problem)
            .map(|p| p.status()),
        _ => None,
    };
    assert_eq!(status(&change.before), Some(cpb::ProblemStatus::Active));
    assert_eq!(status(&change.after), Some(cpb::ProblemStatus::Resolved));

    // Paged two at a time, the pages make up the same history
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = history(&stack)
            .list_patient_changes(stack.req(hpb::ListPatientChangesRequest {
                patient_id: j.clone(),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .expect("page")
            .into_inner();
        assert!(page.changes.len() <= 2);
        paged.extend(page.changes);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, all.changes);

    // From a time on, only what was recorded since
    let since = history(&stack)
        .list_patient_changes(stack.req(hpb::ListPatientChangesRequest {
            patient_id: j.clone(),
            from: Some(timestamp(before_amendment)),
            ..Default::default()
        }))
        .await
        .expect("since")
        .into_inner();
    assert_eq!(since.changes, all.changes[4..]);

    // A nurse, without view_audit, is refused
    let refused = history(&stack)
        .list_patient_changes(stack.req_in_role(
            "nurse-kaur",
            "A81001",
            "R8001",
            hpb::ListPatientChangesRequest {
                patient_id: j.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("no view_audit");
    assert_eq!(refused.code(), Code::PermissionDenied);
}

/// Jane (with her NHS number) and a duplicate record of her made at
/// reception without one: their patient ids.
async fn jane_and_a_duplicate(stack: &TestStack) -> (String, String) {
    let jane = stack
        .register(pb::PatientDetails {
            nhs_number: test_nhs_number(),
            ..jane_smith()
        })
        .await;
    let mut temporary = jane_smith();
    temporary.nhs_number.clear();
    temporary.nhs_number_verification_status = pb::NhsNumberVerificationStatus::NotPresent as i32;
    let duplicate = stack.register(temporary).await;
    (jane.patient_id, duplicate.patient_id)
}

/// The holders of a patient's changes: (patient id, context, first event).
fn holders(changes: &[hpb::PatientChange]) -> Vec<(String, String, String)> {
    changes
        .iter()
        .map(|c| {
            (
                c.patient_id.clone(),
                c.context.clone(),
                c.event_types[0].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn history_a_merged_duplicates_changes_are_in_the_survivors_history_until_unmerged() {
    let stack = TestStack::start().await;
    let mut demographics = stack.client();
    // Given Jane, and a duplicate record of her made at reception on which a
    // consultation was started
    let (j, d) = jane_and_a_duplicate(&stack).await;
    let duplicate_consultation = start(&stack, &d)
        .await
        .consultation
        .expect("consultation")
        .consultation_id;
    let changes_of = |patient: String| {
        let stack = &stack;
        async move {
            history(stack)
                .list_patient_changes(stack.req(hpb::ListPatientChangesRequest {
                    patient_id: patient,
                    ..Default::default()
                }))
                .await
                .expect("changes")
                .into_inner()
                .changes
        }
    };
    // Before the merge, Jane's history is Jane's registration alone
    assert_eq!(
        holders(&changes_of(j.clone()).await),
        [(j.clone(), "demographics".into(), "PatientRegistered".into())]
    );

    // When the duplicate is merged into Jane
    demographics
        .merge_patient(stack.req(pb::MergePatientRequest {
            duplicate_patient_id: d.clone(),
            survivor_patient_id: j.clone(),
            reason: "same person registered twice".into(),
            request_id: "merged-history-merge".into(),
        }))
        .await
        .expect("merged");

    // Then Jane's history holds the duplicate's changes too, each naming
    // the record it is in, in the order they were recorded
    let merged = changes_of(j.clone()).await;
    let kinds = holders(&merged);
    assert!(kinds.contains(&(j.clone(), "demographics".into(), "PatientRegistered".into())));
    assert!(kinds.contains(&(d.clone(), "demographics".into(), "PatientRegistered".into())));
    assert!(kinds.contains(&(
        d.clone(),
        "consultations".into(),
        "ConsultationStarted".into()
    )));
    assert!(kinds.contains(&(j.clone(), "demographics".into(), "DuplicateMergedIn".into())));
    assert!(kinds.contains(&(d.clone(), "demographics".into(), "PatientMerged".into())));
    let recorded: Vec<_> = merged.iter().map(order_key).collect();
    let mut sorted = recorded.clone();
    sorted.sort();
    assert_eq!(recorded, sorted, "oldest first across both records");
    let started = merged
        .iter()
        .find(|c| c.context == "consultations")
        .expect("the duplicate's consultation");
    assert_eq!(started.resources[0].resource_id, duplicate_consultation);
    // and reading them was audited as a read of the duplicate's record
    assert!(
        stack
            .access_events(&d)
            .await
            .iter()
            .any(|(_, a)| a.method == "ListPatientChanges"
                && a.resource_ids.contains(&duplicate_consultation))
    );

    // When the merge is undone
    demographics
        .unmerge_patient(stack.req(pb::UnmergePatientRequest {
            duplicate_patient_id: d.clone(),
            reason: "not the same person".into(),
            request_id: "merged-history-unmerge".into(),
        }))
        .await
        .expect("unmerged");

    // Then Jane's history is hers again (the merge and the unmerge stay in
    // it), and the duplicate's changes are in the duplicate's own history
    let apart = holders(&changes_of(j.clone()).await);
    assert!(apart.iter().all(|(holder, _, _)| *holder == j), "{apart:?}");
    assert!(apart.contains(&(j.clone(), "demographics".into(), "DuplicateUnmerged".into())));
    let own = holders(&changes_of(d.clone()).await);
    assert!(own.contains(&(
        d.clone(),
        "consultations".into(),
        "ConsultationStarted".into()
    )));
    assert!(own.contains(&(d.clone(), "demographics".into(), "PatientUnmerged".into())));
}

#[tokio::test]
async fn history_what_a_clinician_was_shown_is_rebuilt_after_later_changes() {
    let stack = TestStack::start().await;
    let mut consultations = stack.consultations();
    let mut medications = stack.medications();
    // Given Jane with a signed consultation and a repeat medication
    let jane = stack.register(jane_smith()).await;
    let j = jane.patient_id.clone();
    let (consultation, problem, signed_at) = signed_hypertension(&stack, &j).await;
    let authorised = medications
        .authorise_medication(stack.req(authorise(&j, repeat(CLARITHROMYCIN_500, 6))))
        .await
        .expect("authorised")
        .into_inner();

    // When Dr Lee reads the consultation and the medication list
    let shown = consultations
        .get_consultation(stack.req_as(
            "dr-lee",
            cpb::GetConsultationRequest {
                patient_id: j.clone(),
                consultation_id: consultation.clone(),
                min_sequence: signed_at,
            },
        ))
        .await
        .expect("get consultation")
        .into_inner();
    let listed = medications
        .list_medications(stack.req_as(
            "dr-lee",
            mpb::ListMedicationsRequest {
                patient_id: j.clone(),
                min_sequence: authorised.stream_sequence,
                ..Default::default()
            },
        ))
        .await
        .expect("list medications")
        .into_inner();
    // and afterwards the diagnosis is amended and the medication stopped
    consultations
        .amend_entry(stack.req(cpb::AmendEntryRequest {
            patient_id: j.clone(),
            consultation_id: consultation.clone(),
            entry_id: problem.clone(),
            entry: Some(hypertension(cpb::ProblemStatus::Resolved)),
            update_mask: mask(&["problem.status"]),
            reason: "Resolved".into(),
            ..Default::default()
        }))
        .await
        .expect("amended");
    medications
        .discontinue_medication(stack.req(mpb::DiscontinueMedicationRequest {
            patient_id: j.clone(),
            authorisation_id: authorised.authorisation_id.clone(),
            reason: "Course complete".into(),
            ..Default::default()
        }))
        .await
        .expect("discontinued");

    // Then each of Dr Lee's reads is rebuilt exactly as it was shown
    let reads = stack.access_events(&j).await;
    let (get_at, get) = reads
        .iter()
        .find(|(_, a)| a.method == "GetConsultation")
        .expect("GetConsultation audited");
    let rebuilt = history(&stack)
        .get_accessed_record(stack.req(hpb::GetAccessedRecordRequest {
            access_sequence: *get_at,
            ..Default::default()
        }))
        .await
        .expect("accessed record")
        .into_inner();
    assert_eq!(rebuilt.access.as_ref(), Some(get));
    let r = rebuilt.record.expect("record");
    assert_eq!(r.consultations, [shown]);
    assert!(r.authorisations.is_empty() && r.patient.is_none());

    let (list_at, list) = reads
        .iter()
        .find(|(_, a)| a.method == "ListMedications")
        .expect("ListMedications audited");
    let rebuilt = history(&stack)
        .get_accessed_record(stack.req(hpb::GetAccessedRecordRequest {
            access_sequence: *list_at,
            ..Default::default()
        }))
        .await
        .expect("accessed record")
        .into_inner();
    let r = rebuilt.record.expect("record");
    assert_eq!(r.authorisations, listed.authorisations);
    assert_eq!(
        r.authorisations[0].status,
        mpb::AuthorisationStatus::Active as i32
    );
    assert!(r.consultations.is_empty());

    // and found by its access id once the audit has indexed it
    let last_access = stack
        .store
        .last_sequence(&access_stream().name)
        .await
        .expect("access stream");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    assert!(
        carelog_projections::checkpoint::wait_for(
            &stack.pool,
            "audit_events",
            &access_stream().name,
            last_access,
            deadline
        )
        .await
        .expect("checkpoint")
    );
    let by_id = history(&stack)
        .get_accessed_record(stack.req(hpb::GetAccessedRecordRequest {
            access_id: list.access_id.clone(),
            ..Default::default()
        }))
        .await
        .expect("by access id")
        .into_inner();
    assert_eq!(by_id.access_sequence, *list_at);
    assert_eq!(
        by_id.record.expect("record").authorisations,
        listed.authorisations
    );

    // And the answer about a refused request, which showed nothing, is
    // itself audited, naming the refusal
    stack
        .client()
        .get_patient(stack.req_in_role(
            "dr-x",
            "B82002",
            "R8000",
            pb::GetPatientRequest {
                patient_id: j.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("another organisation is refused");
    let (denied_at, denied) = stack
        .access_events(&j)
        .await
        .into_iter()
        .rfind(|(_, a)| a.outcome == carelog_proto::access::v1::AccessOutcome::Denied as i32)
        .expect("the refusal is recorded");
    history(&stack)
        .get_accessed_record(stack.req(hpb::GetAccessedRecordRequest {
            access_sequence: denied_at,
            ..Default::default()
        }))
        .await
        .expect("the refusal as recorded");
    let asked = stack
        .access_events(&j)
        .await
        .into_iter()
        .rfind(|(_, a)| a.method == "GetAccessedRecord")
        .map(|(_, a)| a.resource_ids)
        .expect("the question is audited");
    assert!(asked.contains(&denied.access_id), "{asked:?}");
}

/// A request as the practice's privacy officer, who audits the record but
/// does not manage demographics.
fn officer<T>(stack: &TestStack, m: T) -> tonic::Request<T> {
    stack.req_in_role("po-ahmed", "A81001", "LOCAL-PRIVACY-OFFICER", m)
}

/// Every change to the patient's record, as the practice's privacy officer
/// is shown them.
async fn changes_seen_by_the_officer(
    stack: &TestStack,
    patient_id: &str,
) -> Vec<hpb::PatientChange> {
    history(stack)
        .list_patient_changes(officer(
            stack,
            hpb::ListPatientChangesRequest {
                patient_id: patient_id.to_owned(),
                ..Default::default()
            },
        ))
        .await
        .expect("changes")
        .into_inner()
        .changes
}

#[tokio::test]
async fn history_a_restricted_patients_earlier_versions_are_withheld_from_those_who_may_not_see_them()
 {
    // Given Jane, registered with her address, and restricted later
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let before_restriction = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    stack
        .client()
        .mark_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: jane.patient_id.clone(),
            reason: "at risk of harm".into(),
            ..Default::default()
        }))
        .await
        .expect("restricted");
    let asked = || hpb::GetRecordAsOfRequest {
        patient_id: jane.patient_id.clone(),
        as_of: Some(timestamp(before_restriction)),
        view: AsRecorded as i32,
    };

    // When the practice's privacy officer, who audits but does not manage
    // demographics, asks for her record as it stood before the restriction
    let then = history(&stack)
        .get_record_as_of(officer(&stack, asked()))
        .await
        .expect("record as of")
        .into_inner();

    // Then her address, telephone and practice are withheld all the same
    let patient = then.record.and_then(|r| r.patient).expect("patient");
    assert!(patient.withheld);
    let d = patient.details.expect("details");
    assert!(d.addresses.is_empty() && d.telecom.is_empty() && d.registered_practice_ods.is_empty());
    // and so in the registration among her changes
    let changes = changes_seen_by_the_officer(&stack, &jane.patient_id).await;
    let registered = changes[0].resources[0]
        .after
        .clone()
        .and_then(|r| r.resource);
    let Some(hpb::resource::Resource::Patient(registered)) = registered else {
        panic!("{:?}", changes[0]);
    };
    assert!(registered.withheld);
    assert!(registered.details.expect("details").addresses.is_empty());
    // nor does a change of her withheld record name the organisation that
    // wrote it, most often her practice
    assert!(
        changes
            .iter()
            .filter(|c| c.context == "demographics")
            .all(|c| c
                .actor
                .as_ref()
                .is_some_and(|a| a.organisation_ods.is_empty())),
        "{changes:?}"
    );
    // nor give the restriction's reason, which may say what it protects
    let restriction = changes
        .iter()
        .find(|c| c.event_types.iter().any(|t| t == "RestrictionMarked"))
        .expect("the restriction");
    assert!(restriction.reason.is_empty() && restriction.reason_withheld);

    // and so, once her restriction is cleared, in the versions written
    // while she was restricted
    let restricted_at = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    stack
        .client()
        .clear_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: jane.patient_id.clone(),
            reason: "no longer at risk".into(),
            ..Default::default()
        }))
        .await
        .expect("cleared");
    let while_restricted = history(&stack)
        .get_record_as_of(officer(
            &stack,
            hpb::GetRecordAsOfRequest {
                as_of: Some(timestamp(restricted_at)),
                ..asked()
            },
        ))
        .await
        .expect("record as of")
        .into_inner()
        .record
        .and_then(|r| r.patient)
        .expect("patient");
    assert!(while_restricted.restricted && while_restricted.withheld);
    assert!(
        while_restricted
            .details
            .expect("details")
            .addresses
            .is_empty()
    );
    // and among her changes the restriction's reason stays withheld, while
    // who lifted it and why are told, as her versions tell them
    let changes = changes_seen_by_the_officer(&stack, &jane.patient_id).await;
    let with_type = |t: &str| {
        changes
            .iter()
            .find(|c| c.event_types.iter().any(|e| e == t))
            .expect("the change")
    };
    assert!(with_type("RestrictionMarked").reason_withheld);
    let lifted = with_type("RestrictionCleared");
    assert_eq!(lifted.reason, "no longer at risk");
    assert_eq!(
        lifted.actor.as_ref().map(|a| a.organisation_ods.as_str()),
        Some("A81001")
    );
    stack
        .client()
        .mark_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: jane.patient_id.clone(),
            reason: "at risk again".into(),
            ..Default::default()
        }))
        .await
        .expect("restricted again");

    // While her practice's clinician, who manages demographics, sees them
    let whole = history(&stack)
        .get_record_as_of(stack.req(asked()))
        .await
        .expect("record as of")
        .into_inner();
    let patient = whole.record.and_then(|r| r.patient).expect("patient");
    assert!(!patient.withheld);
    assert_eq!(patient.details.expect("details").addresses.len(), 1);
    // in the restricted version too, as in her record now
    let now = history(&stack)
        .get_record_as_of(stack.req(hpb::GetRecordAsOfRequest {
            as_of: Some(timestamp(Utc::now())),
            ..asked()
        }))
        .await
        .expect("record as of now")
        .into_inner();
    let patient = now.record.and_then(|r| r.patient).expect("patient");
    assert!(patient.restricted && !patient.withheld, "{patient:?}");
    assert_eq!(patient.details.expect("details").addresses.len(), 1);
    // and in her changes, each naming the practice that wrote it
    let changes = history(&stack)
        .list_patient_changes(stack.req(hpb::ListPatientChangesRequest {
            patient_id: jane.patient_id.clone(),
            ..Default::default()
        }))
        .await
        .expect("changes")
        .into_inner()
        .changes;
    let restriction = changes.last().expect("the restriction");
    let Some(hpb::resource::Resource::Patient(after)) = restriction.resources[0]
        .after
        .clone()
        .and_then(|r| r.resource)
    else {
        panic!("{restriction:?}");
    };
    assert!(after.restricted && !after.withheld, "{after:?}");
    assert!(!restriction.reason.is_empty() && !restriction.reason_withheld);
    assert!(
        changes.iter().all(|c| c
            .actor
            .as_ref()
            .is_some_and(|a| a.organisation_ods == "A81001")),
        "{changes:?}"
    );
    stack.stop().await;
}

/// Jane and a duplicate of her, both restricted, the duplicate merged into
/// Jane: their patient ids.
async fn restricted_and_merged(stack: &TestStack) -> (String, String) {
    let mut demographics = stack.client();
    let (j, d) = jane_and_a_duplicate(stack).await;
    for patient in [&j, &d] {
        demographics
            .mark_restricted(stack.req(pb::PatientFlagRequest {
                patient_id: patient.clone(),
                reason: "at risk of harm".into(),
                ..Default::default()
            }))
            .await
            .expect("restricted");
    }
    demographics
        .merge_patient(stack.req(pb::MergePatientRequest {
            duplicate_patient_id: d.clone(),
            survivor_patient_id: j.clone(),
            reason: "same person registered twice".into(),
            request_id: format!("merge-{d}"),
        }))
        .await
        .expect("merged");
    (j, d)
}

#[tokio::test]
async fn history_a_merged_duplicate_still_restricted_is_withheld_though_the_survivor_no_longer_is()
{
    // Given Jane and a duplicate of her, both restricted, the duplicate
    // merged into Jane, and Jane's restriction cleared since: the
    // duplicate, closed, keeps its own
    let stack = TestStack::start().await;
    let mut demographics = stack.client();
    let (j, d) = restricted_and_merged(&stack).await;
    let cleared = demographics
        .clear_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: j.clone(),
            reason: "no longer at risk".into(),
            ..Default::default()
        }))
        .await
        .expect("cleared")
        .into_inner();
    assert!(!cleared.restricted);

    // When the practice's privacy officer, who does not manage
    // demographics, reads Jane's changes and her record now
    let changes = changes_seen_by_the_officer(&stack, &j).await;
    let now = history(&stack)
        .get_record_as_of(officer(
            &stack,
            hpb::GetRecordAsOfRequest {
                patient_id: j.clone(),
                as_of: Some(timestamp(Utc::now())),
                view: AsRecorded as i32,
            },
        ))
        .await
        .expect("record now")
        .into_inner();

    // Then every version of the duplicate, even its registration from
    // before any restriction, is withheld, as GetPatient withholds it
    let duplicate_versions: Vec<pb::Patient> = changes
        .iter()
        .filter(|c| c.patient_id == d)
        .flat_map(|c| &c.resources)
        .flat_map(|r| [r.before.clone(), r.after.clone()])
        .filter_map(|x| match x.and_then(|x| x.resource) {
            Some(hpb::resource::Resource::Patient(p)) => Some(p),
            _ => None,
        })
        .collect();
    assert!(!duplicate_versions.is_empty(), "{changes:?}");
    for p in &duplicate_versions {
        let details = p.details.as_ref().expect("details");
        assert!(
            p.withheld
                && details.addresses.is_empty()
                && details.registered_practice_ods.is_empty(),
            "{p:?}"
        );
    }
    let merged = now
        .merged_records
        .iter()
        .find(|s| s.patient_id == d)
        .and_then(|s| s.patient.as_ref())
        .expect("the duplicate merged in");
    assert!(merged.withheld, "{merged:?}");
    // while Jane's record now, no longer restricted, is shown whole
    let jane_now = now.record.and_then(|r| r.patient).expect("Jane");
    assert!(!jane_now.withheld);
    assert_eq!(jane_now.details.expect("details").addresses.len(), 1);
    stack.stop().await;
}

#[tokio::test]
async fn history_a_duplicate_unmerged_since_is_shown_as_its_own_practice_would_show_it() {
    // Given Jane and a duplicate of her, both restricted, merged, then
    // unmerged as not the same person, the duplicate since registered
    // elsewhere
    let stack = TestStack::start().await;
    let mut demographics = stack.client();
    let (j, d) = restricted_and_merged(&stack).await;
    let while_merged = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    demographics
        .unmerge_patient(stack.req(pb::UnmergePatientRequest {
            duplicate_patient_id: d.clone(),
            reason: "not the same person".into(),
            request_id: "restricted-unmerge".into(),
        }))
        .await
        .expect("unmerged");
    demographics
        .update_demographics(stack.req(pb::UpdateDemographicsRequest {
            patient_id: d.clone(),
            details: Some(pb::PatientDetails {
                registered_practice_ods: "B82001".into(),
                ..Default::default()
            }),
            update_mask: mask(&["registered_practice_ods"]),
            reason: "registered with another practice".into(),
            ..Default::default()
        }))
        .await
        .expect("registered elsewhere");

    // When Jane's practice's clinician, who manages demographics, asks for
    // Jane's record as it stood while the two were merged
    let then = history(&stack)
        .get_record_as_of(stack.req(hpb::GetRecordAsOfRequest {
            patient_id: j.clone(),
            as_of: Some(timestamp(while_merged)),
            view: AsRecorded as i32,
        }))
        .await
        .expect("record as of")
        .into_inner();

    // Then Jane's record is whole, and the other person's, restricted and no
    // longer theirs to see, is withheld
    let jane = then.record.and_then(|r| r.patient).expect("Jane");
    assert!(!jane.withheld && !jane.details.expect("details").addresses.is_empty());
    let other = then
        .merged_records
        .iter()
        .find(|s| s.patient_id == d)
        .and_then(|s| s.patient.as_ref())
        .expect("the record merged in then");
    let details = other.details.as_ref().expect("details");
    assert!(
        other.withheld
            && details.addresses.is_empty()
            && details.registered_practice_ods.is_empty(),
        "{other:?}"
    );
    stack.stop().await;
}
