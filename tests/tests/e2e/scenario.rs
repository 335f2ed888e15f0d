//! One morning at the practice, across all four services: a patient is
//! registered, seen, found allergic to penicillin, refused amoxicillin,
//! prescribed clarithromycin as a repeat that is issued twice, and a
//! medication review task for the practice is claimed and completed. Every
//! step is in the audit read model, attributed to whoever did it.

use carelog_proto::consultations::v1 as consultations;
use carelog_proto::medications::v1 as medications;
use carelog_proto::tasks::v1 as tasks;
use carelog_tests::consultations::{add_request, blood_pressure, start_request};
use carelog_tests::harness::{TestStack, jane_smith};
use carelog_tests::medications::{
    AMOXICILLIN_500, CLARITHROMYCIN_500, acute, authorise, issue, record_penicillin_allergy, repeat,
};
use carelog_tests::tasks::{medication_review, organisation, status};
use tonic::Code;
use tonic_types::StatusExt as _;

/// A request from the practice pharmacist (another user of A81001).
fn as_pharmacist<T>(stack: &TestStack, message: T) -> tonic::Request<T> {
    stack.req_in_role("pharm-patel", "A81001", "R8003", message)
}

#[tokio::test]
async fn register_consult_refuse_amoxicillin_prescribe_clarithromycin_and_review_it() {
    let stack = TestStack::start().await;

    // Given a patient registered a moment ago by the receptionist
    let jane = stack.register(jane_smith()).await;
    let patient = jane.patient_id.clone();

    // When the GP sees her at once and records her blood pressure
    let started = stack
        .consultations()
        .start_consultation(stack.req(start_request(&patient)))
        .await
        .expect("consultation starts for a patient registered a moment ago")
        .into_inner();
    let consultation = started.consultation.expect("consultation");
    stack
        .consultations()
        .add_entry(stack.req(add_request(
            &patient,
            &consultation.consultation_id,
            "",
            blood_pressure(148, 92),
        )))
        .await
        .expect("blood pressure recorded");
    let signed = stack
        .consultations()
        .sign_consultation(stack.req(consultations::SignConsultationRequest {
            patient_id: patient.clone(),
            consultation_id: consultation.consultation_id.clone(),
            ..Default::default()
        }))
        .await
        .expect("the author signs")
        .into_inner();

    // And records a penicillin allergy
    let allergy = stack
        .medications()
        .record_allergy(stack.req(record_penicillin_allergy(&patient)))
        .await
        .expect("allergy recorded")
        .into_inner();
    let medications_before = stack.last_sequence_of("medications").await;

    // Then amoxicillin is refused, naming the allergy, and nothing is appended
    let refused = stack
        .medications()
        .authorise_medication(stack.req(authorise(&patient, acute(AMOXICILLIN_500))))
        .await
        .expect_err("amoxicillin contains penicillin");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let info = refused.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "ALLERGY_CONFLICT");
    assert_eq!(info.metadata["allergyId"], allergy.allergy_id);
    assert!(
        refused.message().to_lowercase().contains("penicillin"),
        "the refusal names the allergy: {}",
        refused.message()
    );
    assert_eq!(
        stack.last_sequence_of("medications").await,
        medications_before
    );

    // When clarithromycin is prescribed as a repeat and issued twice (the
    // second the same day, so with a reason)
    let repeat = stack
        .medications()
        .authorise_medication(stack.req(authorise(&patient, repeat(CLARITHROMYCIN_500, 6))))
        .await
        .expect("clarithromycin has no penicillin")
        .into_inner();
    let mut last = 0;
    for n in 1..=2 {
        let issued = stack
            .medications()
            .issue_prescription(stack.req(medications::IssuePrescriptionRequest {
                override_reason: if n == 1 {
                    String::new()
                } else {
                    "supply for the care home".into()
                },
                ..issue(&patient, &repeat.authorisation_id)
            }))
            .await
            .expect("issue")
            .into_inner();
        assert_eq!(issued.issue_number, n);
        last = issued.stream_sequence;
    }
    let list = stack
        .medications()
        .list_medications(stack.req(medications::ListMedicationsRequest {
            patient_id: patient.clone(),
            min_sequence: last,
            ..Default::default()
        }))
        .await
        .expect("medication list")
        .into_inner();
    assert_eq!(
        list.authorisations.len(),
        1,
        "amoxicillin was never authorised"
    );
    assert_eq!(list.authorisations[0].issues_made, 2);

    // And a medication review task goes to the practice, is claimed by the
    // practice pharmacist and completed
    let task = stack
        .tasks()
        .create_task(stack.req(medication_review(
            &patient,
            &repeat.authorisation_id,
            organisation("A81001"),
        )))
        .await
        .expect("task created")
        .into_inner();
    let claimed = stack
        .tasks()
        .claim_task(as_pharmacist(
            &stack,
            tasks::TaskActionRequest {
                patient_id: patient.clone(),
                task_id: task.task_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("a practice user claims the practice's task")
        .into_inner();
    assert_eq!(claimed.owner_user_id, "pharm-patel");
    let done = stack
        .tasks()
        .complete_task(as_pharmacist(
            &stack,
            tasks::CompleteTaskRequest {
                patient_id: patient.clone(),
                task_id: task.task_id.clone(),
                outcome: "Reviewed: continue clarithromycin, no interactions".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("the owner completes it")
        .into_inner();
    assert_eq!(status(&done), tasks::TaskStatus::Completed);

    // Then the practice's completed work list shows it
    let list = stack
        .tasks()
        .list_tasks(stack.req(tasks::ListTasksRequest {
            organisation_ods: "A81001".into(),
            statuses: vec![tasks::TaskStatus::Completed as i32],
            min_sequence: done.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("patient's tasks")
        .into_inner();
    assert_eq!(list.tasks.len(), 1);
    assert_eq!(status(&list.tasks[0]), tasks::TaskStatus::Completed);

    // And the audit read model holds every step, in each context, by whom
    let expected = [
        ("demographics", "PatientRegistered", "dr-jones"),
        ("consultations", "ConsultationStarted", "dr-jones"),
        ("consultations", "ConsultationSigned", "dr-jones"),
        ("medications", "AllergyRecorded", "dr-jones"),
        ("medications", "MedicationAuthorised", "dr-jones"),
        ("medications", "PrescriptionIssued", "dr-jones"),
        ("tasks", "TaskCreated", "dr-jones"),
        ("tasks", "TaskClaimed", "pharm-patel"),
        ("tasks", "TaskCompleted", "pharm-patel"),
    ];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let rows: Vec<(String, String, String)> = loop {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT context, event_type, actor_user_id FROM audit_events WHERE patient_id = $1 \
             ORDER BY recorded_at, event_index",
        )
        .bind(&patient)
        .fetch_all(&stack.pool)
        .await
        .expect("audit events");
        // (each stream's audit is projected on its own: both issues, not
        // only the first, before the count below)
        let complete = expected.iter().all(|(c, e, a)| {
            rows.iter()
                .any(|(rc, re, ra)| rc == c && re == e && ra == a)
        }) && rows
            .iter()
            .filter(|(_, e, _)| e == "PrescriptionIssued")
            .count()
            >= 2;
        if complete || tokio::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    for (context, event, actor) in expected {
        assert!(
            rows.iter()
                .any(|(c, e, a)| c == context && e == event && a == actor),
            "audit lacks {context} {event} by {actor}: {rows:?}"
        );
    }
    let issues = rows
        .iter()
        .filter(|(_, e, _)| e == "PrescriptionIssued")
        .count();
    assert_eq!(issues, 2);
    assert!(signed.stream_sequence > started.stream_sequence);
    stack.stop().await;
}
