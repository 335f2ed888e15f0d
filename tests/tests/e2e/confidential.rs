//! Confidential entries: a practice marks a consultation entry, an allergy
//! and a medication authorisation confidential. A clinician of another
//! organisation sees the rest of the record and is told that items were
//! withheld, never what they were, and the access events of those reads are
//! marked withheld; the practice's own users see everything.

use carelog_proto::access::v1::RecordAccessed;
use carelog_proto::consultations::v1 as cpb;
use carelog_proto::medications::v1 as mpb;
use carelog_tests::consultations::{add_request, blood_pressure, hypertension};
use carelog_tests::harness::{TestStack, jane_smith};
use carelog_tests::medications::{
    AMOXICILLIN_500, CLARITHROMYCIN_500, PARACETAMOL_500, PENICILLIN, acute, authorise, issue,
    record_penicillin_allergy,
};
use tonic_types::StatusExt as _;

const PRACTICE: &str = "A81001";
const HOSPITAL: &str = "RR8";
/// A community health service.
const COMMUNITY: &str = "RY6";
const CLINICIAN: &str = "R8000";

fn at_practice<T>(stack: &TestStack, message: T) -> tonic::Request<T> {
    stack.req_in_role("dr-jones", PRACTICE, CLINICIAN, message)
}

fn at_hospital<T>(stack: &TestStack, message: T) -> tonic::Request<T> {
    stack.req_in_role("dr-ward", HOSPITAL, CLINICIAN, message)
}

fn at_community<T>(stack: &TestStack, message: T) -> tonic::Request<T> {
    stack.req_in_role("nurse-ali", COMMUNITY, CLINICIAN, message)
}

/// The practice shares its records with the hospital for direct care.
async fn share_with_hospital(stack: &TestStack) {
    crate::shared_care::share(
        stack,
        PRACTICE,
        carelog_proto::sharing::v1::party::Party::OrganisationOds(PRACTICE.into()),
        HOSPITAL,
    )
    .await;
}

/// A penicillin allergy the practice records as confidential.
async fn confidential_penicillin_allergy(stack: &TestStack, patient_id: &str) -> mpb::Allergy {
    stack
        .medications()
        .record_allergy(at_practice(
            stack,
            mpb::RecordAllergyRequest {
                confidential: true,
                ..record_penicillin_allergy(patient_id)
            },
        ))
        .await
        .expect("allergy")
        .into_inner()
}

/// Where the record stands after the practice's writes.
struct Positions {
    patient_id: String,
    consultation_id: String,
    consultations: u64,
    medications: u64,
}

/// Every query that can return a confidential item, as one caller saw it.
struct Answers {
    got: cpb::Consultation,
    listed: cpb::ListConsultationsResponse,
    versions: cpb::ListConsultationVersionsResponse,
    problems: cpb::ListProblemsResponse,
    observations: cpb::ListLatestObservationsResponse,
    allergies: mpb::ListAllergiesResponse,
    medications: mpb::ListMedicationsResponse,
    issues: mpb::ListIssuesResponse,
}

/// `user` of organisation `org` reads the whole record, in this order.
async fn read_record(stack: &TestStack, (user, org): (&str, &str), at: &Positions) -> Answers {
    let mut consultations = stack.consultations();
    let mut meds = stack.medications();
    let (patient_id, consultation_id) = (at.patient_id.clone(), at.consultation_id.clone());
    let got = consultations
        .get_consultation(stack.req_in_role(
            user,
            org,
            CLINICIAN,
            cpb::GetConsultationRequest {
                patient_id: patient_id.clone(),
                consultation_id: consultation_id.clone(),
                min_sequence: at.consultations,
            },
        ))
        .await
        .expect("get");
    let listed = consultations
        .list_consultations(stack.req_in_role(
            user,
            org,
            CLINICIAN,
            cpb::ListConsultationsRequest {
                patient_id: patient_id.clone(),
                min_sequence: at.consultations,
                ..Default::default()
            },
        ))
        .await
        .expect("list");
    let versions = consultations
        .list_consultation_versions(stack.req_in_role(
            user,
            org,
            CLINICIAN,
            cpb::ListConsultationVersionsRequest {
                patient_id: patient_id.clone(),
                consultation_id,
                min_sequence: at.consultations,
                ..Default::default()
            },
        ))
        .await
        .expect("versions");
    let problems = consultations
        .list_problems(stack.req_in_role(
            user,
            org,
            CLINICIAN,
            cpb::ListProblemsRequest {
                patient_id: patient_id.clone(),
                min_sequence: at.consultations,
                ..Default::default()
            },
        ))
        .await
        .expect("problems");
    let observations = consultations
        .list_latest_observations(stack.req_in_role(
            user,
            org,
            CLINICIAN,
            cpb::ListLatestObservationsRequest {
                patient_id: patient_id.clone(),
                min_sequence: at.consultations,
                ..Default::default()
            },
        ))
        .await
        .expect("observations");
    let allergies = meds
        .list_allergies(stack.req_in_role(
            user,
            org,
            CLINICIAN,
            mpb::ListAllergiesRequest {
                patient_id: patient_id.clone(),
                min_sequence: at.medications,
                ..Default::default()
            },
        ))
        .await
        .expect("allergies");
    let medications = meds
        .list_medications(stack.req_in_role(
            user,
            org,
            CLINICIAN,
            mpb::ListMedicationsRequest {
                patient_id: patient_id.clone(),
                min_sequence: at.medications,
                ..Default::default()
            },
        ))
        .await
        .expect("medications");
    let issues = meds
        .list_issues(stack.req_in_role(
            user,
            org,
            CLINICIAN,
            mpb::ListIssuesRequest {
                patient_id,
                min_sequence: at.medications,
                ..Default::default()
            },
        ))
        .await
        .expect("issues");
    Answers {
        got: got.into_inner(),
        listed: listed.into_inner(),
        versions: versions.into_inner(),
        problems: problems.into_inner(),
        observations: observations.into_inner(),
        allergies: allergies.into_inner(),
        medications: medications.into_inner(),
        issues: issues.into_inner(),
    }
}

async fn accesses_by(stack: &TestStack, patient_id: &str, user: &str) -> Vec<RecordAccessed> {
    stack
        .access_events(patient_id)
        .await
        .into_iter()
        .map(|(_, event)| event)
        .filter(|e| e.actor.as_ref().is_some_and(|a| a.user_id == user))
        .collect()
}

/// `user`'s last `method` read of the patient's record, as audited.
async fn last_read(
    stack: &TestStack,
    patient_id: &str,
    user: &str,
    method: &str,
) -> RecordAccessed {
    accesses_by(stack, patient_id, user)
        .await
        .into_iter()
        .rfind(|e| e.method == method)
        .expect("the read audited")
}

fn entry_ids(c: &cpb::Consultation) -> Vec<String> {
    c.topics
        .iter()
        .flat_map(|t| t.entries.iter().map(|e| e.entry_id.clone()))
        .collect()
}

/// The practice's consultation of `id` with a blood pressure and, under the
/// same topic, a confidential hypertension problem: its id and the answers
/// to the two entries.
async fn with_confidential_problem(
    stack: &TestStack,
    id: &str,
) -> (
    String,
    cpb::ConsultationCommandResponse,
    cpb::ConsultationCommandResponse,
) {
    let mut consultations = stack.consultations();
    let consultation_id = consultations
        .start_consultation(at_practice(
            stack,
            carelog_tests::consultations::start_request(id),
        ))
        .await
        .expect("start")
        .into_inner()
        .consultation
        .expect("consultation")
        .consultation_id;
    let bp = consultations
        .add_entry(at_practice(
            stack,
            add_request(id, &consultation_id, "", blood_pressure(150, 95)),
        ))
        .await
        .expect("blood pressure")
        .into_inner();
    let problem = consultations
        .add_entry(at_practice(
            stack,
            cpb::AddEntryRequest {
                confidential: true,
                ..add_request(
                    id,
                    &consultation_id,
                    &bp.topic_id,
                    hypertension(cpb::ProblemStatus::Active),
                )
            },
        ))
        .await
        .expect("confidential problem")
        .into_inner();
    (consultation_id, bp, problem)
}

#[tokio::test]
async fn another_organisation_sees_the_rest_of_the_record_and_that_items_were_withheld() {
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let id = jane.patient_id.clone();

    // Given the practice records a consultation with a blood pressure and a
    // confidential problem
    let mut consultations = stack.consultations();
    let (consultation_id, bp, problem) = with_confidential_problem(&stack, &id).await;
    let shown_to_author = problem.consultation.clone().expect("consultation");
    assert_eq!(shown_to_author.withheld_count, 0);
    assert_eq!(entry_ids(&shown_to_author).len(), 2);

    // and a confidential allergy, an ordinary acute prescription and a
    // confidential one, issued
    let mut meds = stack.medications();
    let allergy = confidential_penicillin_allergy(&stack, &id).await;
    assert!(allergy.confidential);
    assert_eq!(allergy.author_organisation_ods, PRACTICE);
    let paracetamol = meds
        .authorise_medication(at_practice(&stack, authorise(&id, acute(PARACETAMOL_500))))
        .await
        .expect("paracetamol")
        .into_inner();
    let private = meds
        .authorise_medication(at_practice(
            &stack,
            mpb::AuthoriseMedicationRequest {
                confidential: true,
                ..authorise(&id, acute(CLARITHROMYCIN_500))
            },
        ))
        .await
        .expect("confidential prescription")
        .into_inner();
    let issued = meds
        .issue_prescription(at_practice(&stack, issue(&id, &private.authorisation_id)))
        .await
        .expect("issue")
        .into_inner();
    let meds_at = issued.stream_sequence.max(private.stream_sequence);
    let consultations_at = problem.stream_sequence;

    // and the practice shares its records with the hospital for direct care
    share_with_hospital(&stack).await;

    // When a hospital clinician reads the record
    let at = Positions {
        patient_id: id.clone(),
        consultation_id: consultation_id.clone(),
        consultations: consultations_at,
        medications: meds_at,
    };
    let Answers {
        got,
        listed,
        versions,
        problems,
        observations,
        allergies,
        medications,
        issues,
    } = read_record(&stack, ("dr-okafor", HOSPITAL), &at).await;

    // Then the blood pressure and the paracetamol are shown, the
    // confidential items are not, and each answer counts what it withheld
    assert_eq!(entry_ids(&got), vec![bp.entry_id.clone()]);
    assert_eq!(got.withheld_count, 1);
    assert_eq!(listed.consultations.len(), 1);
    assert_eq!(
        entry_ids(&listed.consultations[0]),
        vec![bp.entry_id.clone()]
    );
    assert_eq!(listed.withheld_count, 1);
    assert!(!versions.versions.is_empty());
    for version in &versions.versions {
        let c = version.consultation.as_ref().expect("consultation");
        assert!(!entry_ids(c).contains(&problem.entry_id), "{version:?}");
    }
    assert_eq!(versions.withheld_count, 1);
    assert!(problems.problems.is_empty(), "{problems:?}");
    assert_eq!(problems.withheld_count, 1);
    assert_eq!(observations.observations.len(), 1);
    assert_eq!(observations.observations[0].entry_id, bp.entry_id);
    assert_eq!(observations.withheld_count, 0);
    assert!(allergies.allergies.is_empty());
    assert_eq!(allergies.withheld_count, 1);
    assert_eq!(
        medications
            .authorisations
            .iter()
            .map(|a| a.authorisation_id.clone())
            .collect::<Vec<_>>(),
        vec![paracetamol.authorisation_id.clone()]
    );
    assert_eq!(medications.withheld_count, 1);
    assert!(issues.issues.is_empty());
    assert_eq!(issues.withheld_count, 1);
    // and nothing of what was withheld leaks into the answers
    let answers =
        format!("{got:?}{listed:?}{versions:?}{problems:?}{allergies:?}{medications:?}{issues:?}");
    assert!(!answers.contains(&problem.entry_id));
    assert!(!answers.contains(&allergy.allergy_id));
    assert!(!answers.contains(&private.authorisation_id));
    assert!(!answers.contains("Hypertension") && !answers.contains("enicillin"));

    // and every read that left something out is audited as withheld
    let reads = accesses_by(&stack, &id, "dr-okafor").await;
    let withheld: Vec<(&str, bool)> = reads
        .iter()
        .map(|e| (e.method.as_str(), e.withheld))
        .collect();
    assert_eq!(
        withheld,
        vec![
            ("GetConsultation", true),
            ("ListConsultations", true),
            ("ListConsultationVersions", true),
            ("ListProblems", true),
            ("ListLatestObservations", false),
            ("ListAllergies", true),
            ("ListMedications", true),
            ("ListIssues", true),
        ]
    );

    // When a hospital clinician names the confidential items by id to change
    // them, then each is not found for them (nothing is revealed) and
    // nothing is appended
    let before = (
        stack.last_sequence_of("consultations").await,
        stack.last_sequence_of("medications").await,
    );
    let refused = [
        consultations
            .mark_entered_in_error(at_hospital(
                &stack,
                cpb::MarkEnteredInErrorRequest {
                    patient_id: id.clone(),
                    consultation_id: consultation_id.clone(),
                    entry_id: problem.entry_id.clone(),
                    reason: "Not this patient's".into(),
                    ..Default::default()
                },
            ))
            .await
            .expect_err("the confidential problem is not there for the hospital"),
        meds.mark_allergy_entered_in_error(at_hospital(
            &stack,
            mpb::MarkAllergyEnteredInErrorRequest {
                patient_id: id.clone(),
                allergy_id: allergy.allergy_id.clone(),
                reason: "Not this patient's".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("the confidential allergy is not there for the hospital"),
        meds.issue_prescription(at_hospital(&stack, issue(&id, &private.authorisation_id)))
            .await
            .expect_err("the confidential prescription is not there for the hospital"),
    ];
    for status in &refused {
        assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    }
    assert_eq!(
        (
            stack.last_sequence_of("consultations").await,
            stack.last_sequence_of("medications").await,
        ),
        before
    );

    // When the hospital clinician asks the record's history instead: the
    // record as it stands, and every change to it
    let as_of = history_as_of(&stack, &id, at_hospital).await;
    let changes = changes_seen(&stack, &id, at_hospital).await;
    // Then the history withholds the same items, and says so
    let snapshot = as_of.record.as_ref().expect("record");
    assert_eq!(
        snapshot.withheld_count, 5,
        "entry, problem, allergy, prescription and its issue"
    );
    let told = format!("{as_of:?}{changes:?}");
    assert!(!told.contains(&problem.entry_id));
    assert!(!told.contains(&allergy.allergy_id));
    assert!(!told.contains(&private.authorisation_id));
    assert!(!told.contains("Hypertension") && !told.contains("enicillin"));
    assert!(
        changes.iter().filter(|c| c.withheld_count > 0).count() >= 3,
        "the changes that wrote confidential items say they withheld them"
    );
    // and a change withheld whole says neither who made it nor what it was
    let whole: Vec<_> = changes.iter().filter(|c| c.resources.is_empty()).collect();
    assert!(!whole.is_empty());
    for c in whole {
        assert!(c.withheld_count > 0 && c.reason_withheld, "{c:?}");
        assert!(c.actor.is_none() && c.event_types.is_empty(), "{c:?}");
    }
    // and asked for a window holding nothing but the allergy, the read is
    // still audited, marked withheld
    let recorded = changes_seen(&stack, &id, at_practice)
        .await
        .into_iter()
        .find(|c| c.event_types.iter().any(|t| t == "AllergyRecorded"))
        .and_then(|c| carelog_kernel::envelope::from_timestamp(c.recorded_at.as_ref()))
        .expect("the allergy's change");
    let audited_before = accesses_by(&stack, &id, "dr-ward").await.len();
    let window = history_client(&stack)
        .list_patient_changes(at_hospital(
            &stack,
            carelog_proto::audit::v1::ListPatientChangesRequest {
                patient_id: id.clone(),
                from: Some(carelog_kernel::envelope::timestamp(recorded)),
                to: Some(carelog_kernel::envelope::timestamp(
                    recorded + chrono::TimeDelta::microseconds(1),
                )),
                ..Default::default()
            },
        ))
        .await
        .expect("the window")
        .into_inner();
    assert_eq!(window.changes.len(), 1, "{window:?}");
    assert!(window.changes[0].resources.is_empty());
    let mut audited = accesses_by(&stack, &id, "dr-ward").await;
    assert_eq!(
        audited.len(),
        audited_before + 1,
        "the window's read is audited"
    );
    let last = audited.pop().expect("audited");
    assert_eq!(last.method, "ListPatientChanges");
    assert!(last.withheld);

    // When a colleague at the practice reads the same record
    let Answers {
        got,
        problems,
        allergies,
        medications,
        issues,
        ..
    } = read_record(&stack, ("dr-patel", PRACTICE), &at).await;

    // Then everything is shown, marked confidential, and nothing withheld
    assert_eq!(
        entry_ids(&got),
        vec![bp.entry_id.clone(), problem.entry_id.clone()]
    );
    assert_eq!(got.withheld_count, 0);
    assert_eq!(problems.problems.len(), 1);
    assert!(problems.problems[0].confidential);
    assert_eq!(problems.problems[0].author_organisation_ods, PRACTICE);
    assert_eq!(problems.withheld_count, 0);
    assert_eq!(allergies.allergies.len(), 1);
    assert_eq!(allergies.withheld_count, 0);
    assert_eq!(medications.authorisations.len(), 2);
    assert_eq!(medications.withheld_count, 0);
    assert_eq!(issues.issues.len(), 1);
    assert!(issues.issues[0].confidential);
    assert!(
        accesses_by(&stack, &id, "dr-patel")
            .await
            .iter()
            .all(|e| !e.withheld)
    );

    // When the practice marks its confidential allergy entered in error,
    // and the hospital asks for the record as it stood before, corrected
    let before_correction = chrono::Utc::now();
    let corrected = meds
        .mark_allergy_entered_in_error(at_practice(
            &stack,
            mpb::MarkAllergyEnteredInErrorRequest {
                patient_id: id.clone(),
                allergy_id: allergy.allergy_id.clone(),
                reason: "the clinic's penicillin label was another patient's".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("marked entered in error")
        .into_inner();
    let as_corrected = history_client(&stack)
        .get_record_as_of(at_hospital(
            &stack,
            carelog_proto::audit::v1::GetRecordAsOfRequest {
                patient_id: id.clone(),
                as_of: Some(carelog_kernel::envelope::timestamp(before_correction)),
                view: carelog_proto::audit::v1::RecordView::AsCorrected as i32,
            },
        ))
        .await
        .expect("record as corrected")
        .into_inner();
    // Then the correction is listed, withholding the allergy and the
    // practice's reason, which names it
    let correction = as_corrected
        .corrections
        .iter()
        .find(|c| c.context == "medications" && c.stream_sequence == corrected.stream_sequence)
        .expect("the correction");
    assert!(correction.resources.is_empty(), "{correction:?}");
    assert_eq!(correction.withheld_count, 1);
    assert!(correction.reason.is_empty() && correction.reason_withheld);
    let told = format!("{as_corrected:?}");
    assert!(!told.contains(&allergy.allergy_id) && !told.contains("enicillin"));
    stack.stop().await;
}

#[tokio::test]
async fn the_reason_for_amending_a_confidential_entry_is_not_shown_to_another_organisation() {
    let stack = TestStack::start().await;
    let id = stack.register(jane_smith()).await.patient_id;
    let mut consultations = stack.consultations();
    // Given the practice's signed consultation with a blood pressure and a
    // confidential problem
    let (consultation_id, _, problem) = with_confidential_problem(&stack, &id).await;
    consultations
        .sign_consultation(at_practice(
            &stack,
            cpb::SignConsultationRequest {
                patient_id: id.clone(),
                consultation_id: consultation_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("signed");
    // When the practice amends the confidential problem, saying why
    let secret = "viral load entered under the wrong code";
    let amended = consultations
        .amend_entry(at_practice(
            &stack,
            cpb::AmendEntryRequest {
                patient_id: id.clone(),
                consultation_id: consultation_id.clone(),
                entry_id: problem.entry_id.clone(),
                entry: Some(hypertension(cpb::ProblemStatus::Resolved)),
                update_mask: carelog_tests::consultations::mask(&["problem.status"]),
                reason: secret.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("amended")
        .into_inner();
    share_with_hospital(&stack).await;
    let versions = |request: tonic::Request<cpb::ListConsultationVersionsRequest>| {
        let mut client = stack.consultations();
        async move {
            client
                .list_consultation_versions(request)
                .await
                .expect("versions")
                .into_inner()
        }
    };
    let request = || cpb::ListConsultationVersionsRequest {
        patient_id: id.clone(),
        consultation_id: consultation_id.clone(),
        min_sequence: amended.stream_sequence,
        ..Default::default()
    };

    // Then the hospital sees the versions without the reason
    let hospital = versions(at_hospital(&stack, request())).await;
    assert!(!hospital.versions.is_empty());
    assert!(
        !format!("{hospital:?}").contains(secret),
        "{:?}",
        hospital.versions
    );
    // while the practice sees it
    let practice = versions(at_practice(&stack, request())).await;
    assert!(practice.versions.iter().any(|v| v.reason == secret));
    stack.stop().await;
}

#[tokio::test]
async fn a_hospitals_review_of_every_repeat_does_not_return_the_practices_confidential_one() {
    let stack = TestStack::start().await;
    let id = stack.register(jane_smith()).await.patient_id;
    let mut meds = stack.medications();
    // Given the practice's confidential repeat, shared with the hospital
    let private = meds
        .authorise_medication(at_practice(
            &stack,
            mpb::AuthoriseMedicationRequest {
                confidential: true,
                ..authorise(
                    &id,
                    carelog_tests::medications::repeat(CLARITHROMYCIN_500, 6),
                )
            },
        ))
        .await
        .expect("confidential repeat")
        .into_inner();
    let open = meds
        .authorise_medication(at_practice(
            &stack,
            authorise(&id, carelog_tests::medications::repeat(PARACETAMOL_500, 6)),
        ))
        .await
        .expect("repeat")
        .into_inner();
    // and reviewed by the practice this morning, next due in 90 days
    let review = || mpb::RecordMedicationReviewRequest {
        patient_id: id.clone(),
        next_review_date: Some(carelog_tests::medications::in_days(90)),
        note: "reviewed".into(),
        ..Default::default()
    };
    meds.record_medication_review(at_practice(&stack, review()))
        .await
        .expect("the practice's review");
    share_with_hospital(&stack).await;
    // When the hospital reviews every repeat, setting the next date the
    // practice's own review would set
    let reviewed = meds
        .record_medication_review(at_hospital(&stack, review()))
        .await
        .expect("reviewed")
        .into_inner();
    // Then the answer names only the repeat it may see
    assert_eq!(
        reviewed
            .reviewed
            .iter()
            .map(|a| a.authorisation_id.as_str())
            .collect::<Vec<_>>(),
        [open.authorisation_id.as_str()]
    );
    assert!(!format!("{reviewed:?}").contains(&private.authorisation_id));
    stack.stop().await;
}

/// The patient's medication list as `who`'s caller sees it, read at
/// `at`.
async fn medications_seen(
    stack: &TestStack,
    patient_id: &str,
    at: u64,
    who: fn(&TestStack, mpb::ListMedicationsRequest) -> tonic::Request<mpb::ListMedicationsRequest>,
) -> Vec<mpb::Authorisation> {
    let mut meds = stack.medications();
    meds.list_medications(who(
        stack,
        mpb::ListMedicationsRequest {
            patient_id: patient_id.into(),
            min_sequence: at,
            ..Default::default()
        },
    ))
    .await
    .expect("medications")
    .into_inner()
    .authorisations
}

#[tokio::test]
async fn a_confidential_penicillin_allergy_refuses_the_hospitals_amoxicillin_without_being_named_to_it()
 {
    let stack = TestStack::start().await;
    let id = stack.register(jane_smith()).await.patient_id;
    let mut meds = stack.medications();
    // Given a penicillin allergy the practice recorded confidentially, and
    // the practice sharing its records with the hospital
    let allergy = confidential_penicillin_allergy(&stack, &id).await;
    share_with_hospital(&stack).await;
    let before = stack.last_sequence_of("medications").await;

    // When a hospital clinician prescribes amoxicillin
    let refused = meds
        .authorise_medication(at_hospital(&stack, authorise(&id, acute(AMOXICILLIN_500))))
        .await
        .expect_err("refused");
    // Then it is refused as an allergy conflict all the same, marked
    // confidential, naming neither the allergy nor its substance, and
    // nothing is appended
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(carelog_tests::assert::reason(&refused), "ALLERGY_CONFLICT");
    let info = refused.get_details_error_info().expect("error info");
    assert_eq!(
        info.metadata.get("confidential").map(String::as_str),
        Some("true")
    );
    assert!(!info.metadata.contains_key("allergyId"), "{info:?}");
    let told = format!("{} {info:?}", refused.message());
    assert!(
        !told.contains(&allergy.allergy_id) && !told.contains("enicillin"),
        "{told}"
    );
    assert!(!told.contains(PENICILLIN), "{told}");
    assert_eq!(stack.last_sequence_of("medications").await, before);

    // When the clinician, having asked the patient, overrides it
    let overriding = mpb::AuthoriseMedicationRequest {
        override_reason: "patient took amoxicillin in 2024 without reaction".into(),
        request_id: "hospital-amoxicillin".into(),
        ..authorise(&id, acute(AMOXICILLIN_500))
    };
    let overridden = meds
        .authorise_medication(at_hospital(&stack, overriding.clone()))
        .await
        .expect("overridden")
        .into_inner();
    // Then the answer, the hospital's medication list and the record's
    // history show a confidential allergy overridden, with the hospital's
    // own reason, and not which allergy or substance it was
    let as_of = history_as_of(&stack, &id, at_hospital).await;
    let listed = medications_seen(&stack, &id, overridden.stream_sequence, at_hospital).await;
    let from_history = as_of
        .record
        .expect("record")
        .authorisations
        .into_iter()
        .find(|a| a.authorisation_id == overridden.authorisation_id)
        .expect("the hospital's own prescription");
    let changes = changes_seen(&stack, &id, at_hospital).await;
    let changed = changes
        .iter()
        .flat_map(|c| &c.resources)
        .filter_map(
            |r| match r.after.as_ref().and_then(|a| a.resource.as_ref()) {
                Some(carelog_proto::audit::v1::resource::Resource::Authorisation(a)) => Some(a),
                _ => None,
            },
        )
        .find(|a| a.authorisation_id == overridden.authorisation_id)
        .expect("the prescription's change");
    for shown in [&overridden, &listed[0], &from_history, changed] {
        let o = &shown.overrides[0];
        assert!(o.confidential);
        assert_eq!(
            o.reason,
            "patient took amoxicillin in 2024 without reaction"
        );
        assert!(
            o.allergy_id.is_empty()
                && o.substance.is_none()
                && o.author_organisation_ods.is_empty()
        );
    }
    // and the answer to the same request sent again, which writes nothing
    // and is a read of the record, is audited as withheld too
    let before = stack.last_sequence_of("medications").await;
    let again = meds
        .authorise_medication(at_hospital(&stack, overriding))
        .await
        .expect("answered again")
        .into_inner();
    assert_eq!(again.authorisation_id, overridden.authorisation_id);
    assert_eq!(stack.last_sequence_of("medications").await, before);
    assert!(
        last_read(&stack, &id, "dr-ward", "AuthoriseMedication")
            .await
            .withheld
    );
    // and the hospital's read of its medication list, which left out which
    // allergy was overridden, is audited as withheld
    assert!(
        last_read(&stack, &id, "dr-ward", "ListMedications")
            .await
            .withheld
    );
    // as is its read of the record's changes over nothing but its
    // prescription, whose reason is its own
    let prescribed_at = changes
        .iter()
        .find(|c| c.context == "medications" && c.stream_sequence == overridden.stream_sequence)
        .and_then(|c| carelog_kernel::envelope::from_timestamp(c.recorded_at.as_ref()))
        .expect("the prescription's change");
    let window = history_client(&stack)
        .list_patient_changes(at_hospital(
            &stack,
            carelog_proto::audit::v1::ListPatientChangesRequest {
                patient_id: id.clone(),
                from: Some(carelog_kernel::envelope::timestamp(prescribed_at)),
                to: Some(carelog_kernel::envelope::timestamp(
                    prescribed_at + chrono::TimeDelta::microseconds(1),
                )),
                ..Default::default()
            },
        ))
        .await
        .expect("the window")
        .into_inner();
    assert_eq!(window.changes.len(), 1, "{window:?}");
    assert_eq!(window.changes[0].withheld_count, 0);
    assert!(!window.changes[0].reason_withheld);
    assert!(
        last_read(&stack, &id, "dr-ward", "ListPatientChanges")
            .await
            .withheld
    );
    // while a community service the practice also shares with is shown
    // the override without the hospital's reason, which may name the
    // allergy, and told that it was withheld
    crate::shared_care::share(
        &stack,
        PRACTICE,
        carelog_proto::sharing::v1::party::Party::OrganisationOds(PRACTICE.into()),
        COMMUNITY,
    )
    .await;
    let at_community_list =
        medications_seen(&stack, &id, overridden.stream_sequence, at_community).await;
    let o = &at_community_list[0].overrides[0];
    assert!(o.confidential && o.reason_withheld);
    assert!(o.reason.is_empty() && o.allergy_id.is_empty());
    assert_eq!(o.prescriber_organisation_ods, HOSPITAL);
    // nor in the record's changes, where the override's reason was the
    // commit's
    let prescribed = changes_seen(&stack, &id, at_community)
        .await
        .into_iter()
        .find(|c| c.context == "medications" && c.stream_sequence == overridden.stream_sequence)
        .expect("the prescription's change");
    assert!(
        prescribed.reason.is_empty() && prescribed.reason_withheld,
        "{prescribed:?}"
    );
    assert!(
        !format!("{prescribed:?}").contains("amoxicillin in 2024"),
        "{prescribed:?}"
    );
    // and the practice that recorded the allergy sees which it was
    let at_practice_list =
        medications_seen(&stack, &id, overridden.stream_sequence, at_practice).await;
    let o = &at_practice_list[0].overrides[0];
    assert_eq!(o.allergy_id, allergy.allergy_id);
    assert_eq!(
        o.substance.as_ref().map(|s| s.code.as_str()),
        Some(PENICILLIN)
    );
    // and its read withheld nothing
    assert!(
        !last_read(&stack, &id, "dr-jones", "ListMedications")
            .await
            .withheld
    );
    // When the hospital stops its prescription with a reason of its own,
    // then the community service is shown that reason
    let stopped = meds
        .discontinue_medication(at_hospital(
            &stack,
            mpb::DiscontinueMedicationRequest {
                patient_id: id.clone(),
                authorisation_id: overridden.authorisation_id.clone(),
                reason: "course complete".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("discontinued")
        .into_inner();
    let discontinued = changes_seen(&stack, &id, at_community)
        .await
        .into_iter()
        .find(|c| c.context == "medications" && c.stream_sequence == stopped.stream_sequence)
        .expect("the discontinuation");
    assert_eq!(discontinued.reason, "course complete");
    assert!(!discontinued.reason_withheld);
    stack.stop().await;
}

fn history_client(
    stack: &TestStack,
) -> carelog_proto::audit::v1::record_history_service_client::RecordHistoryServiceClient<
    tonic::transport::Channel,
> {
    carelog_proto::audit::v1::record_history_service_client::RecordHistoryServiceClient::new(
        stack.channel.clone(),
    )
}

/// Every change to the record, as `at`'s caller is shown them.
async fn changes_seen(
    stack: &TestStack,
    patient_id: &str,
    at: fn(
        &TestStack,
        carelog_proto::audit::v1::ListPatientChangesRequest,
    ) -> tonic::Request<carelog_proto::audit::v1::ListPatientChangesRequest>,
) -> Vec<carelog_proto::audit::v1::PatientChange> {
    history_client(stack)
        .list_patient_changes(at(
            stack,
            carelog_proto::audit::v1::ListPatientChangesRequest {
                patient_id: patient_id.into(),
                page_size: 200,
                ..Default::default()
            },
        ))
        .await
        .expect("changes")
        .into_inner()
        .changes
}

/// The record as it stands now, asked of its history by `at`'s caller.
async fn history_as_of(
    stack: &TestStack,
    patient_id: &str,
    at: fn(
        &TestStack,
        carelog_proto::audit::v1::GetRecordAsOfRequest,
    ) -> tonic::Request<carelog_proto::audit::v1::GetRecordAsOfRequest>,
) -> carelog_proto::audit::v1::RecordAsOf {
    history_client(stack)
        .get_record_as_of(at(
            stack,
            carelog_proto::audit::v1::GetRecordAsOfRequest {
                patient_id: patient_id.into(),
                as_of: Some(carelog_kernel::envelope::timestamp(chrono::Utc::now())),
                view: carelog_proto::audit::v1::RecordView::AsRecorded as i32,
            },
        ))
        .await
        .expect("record as of")
        .into_inner()
}
