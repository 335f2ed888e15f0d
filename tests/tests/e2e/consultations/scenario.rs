//! A hypertension review: recorded, edited as a draft, signed, amended and
//! corrected; read back from every read model, the audit and a rebuild.

use std::time::Duration;

use carelog_proto::consultations::v1 as pb;
use carelog_tests::consultations::*;
use carelog_tests::harness::{TestStack, jane_smith};
use tonic::Code;

async fn audit_count(stack: &TestStack, patient_id: &str, sequence: u64) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    assert!(
        carelog_projections::checkpoint::wait_for(
            &stack.pool,
            "audit_events",
            "CARELOG_CONSULTATIONS",
            sequence,
            deadline
        )
        .await
        .expect("checkpoint"),
        "audit did not reach {sequence}"
    );
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM audit_events WHERE stream = 'CARELOG_CONSULTATIONS' AND patient_id = $1",
    )
    .bind(patient_id)
    .fetch_one(&stack.pool)
    .await
    .expect("audit count");
    n
}

async fn dump(pool: &sqlx::PgPool) -> Vec<String> {
    let mut out = Vec::new();
    for (table, order) in [
        ("consultations", "consultation_id"),
        ("consultation_versions", "consultation_id, version"),
        ("consultation_problems", "patient_id, entry_id"),
        ("latest_observations", "patient_id, concept_id"),
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
async fn consultations_a_gp_records_signs_amends_and_corrects_a_hypertension_review() {
    let stack = TestStack::start().await;
    let mut client = stack.consultations();
    // Given Jane, registered a moment ago (no wait for any projector)
    let jane = stack.register(jane_smith()).await;
    let patient = jane.patient_id.clone();

    // When Dr Jones starts a consultation and records a blood pressure, the
    // diagnosis and a weight under one topic
    let started = start(&stack, &patient).await;
    let consultation = started.consultation.expect("consultation").consultation_id;
    let bp = client
        .add_entry(stack.req(add_request(
            &patient,
            &consultation,
            "",
            blood_pressure(162, 98),
        )))
        .await
        .expect("blood pressure")
        .into_inner();
    let topic = bp.topic_id.clone();
    let problem = client
        .add_entry(stack.req(add_request(
            &patient,
            &consultation,
            &topic,
            hypertension(pb::ProblemStatus::Active),
        )))
        .await
        .expect("problem")
        .into_inner();
    let weight = client
        .add_entry(stack.req(add_request(
            &patient,
            &consultation,
            &topic,
            weight("84.2", "kg"),
        )))
        .await
        .expect("weight")
        .into_inner();
    // and corrects the blood pressure while the consultation is a draft
    client
        .edit_entry(stack.req(pb::EditEntryRequest {
            patient_id: patient.clone(),
            consultation_id: consultation.clone(),
            entry_id: bp.entry_id.clone(),
            entry: Some(blood_pressure(158, 96)),
            update_mask: mask(&["observation"]),
            ..Default::default()
        }))
        .await
        .expect("edit draft");
    // and signs it
    let signed = client
        .sign_consultation(stack.req(pb::SignConsultationRequest {
            patient_id: patient.clone(),
            consultation_id: consultation.clone(),
            ..Default::default()
        }))
        .await
        .expect("sign")
        .into_inner();
    assert_eq!(
        signed.consultation.as_ref().expect("signed").status,
        pb::ConsultationStatus::Signed as i32
    );

    // Then an edit is refused: the consultation is locked
    let refused = client
        .edit_entry(stack.req(pb::EditEntryRequest {
            patient_id: patient.clone(),
            consultation_id: consultation.clone(),
            entry_id: problem.entry_id.clone(),
            entry: Some(hypertension(pb::ProblemStatus::Resolved)),
            update_mask: mask(&["problem.status"]),
            ..Default::default()
        }))
        .await
        .expect_err("locked");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "CONSULTATION_SIGNED");

    // When the problem is amended with a reason and the weight marked in error
    client
        .amend_entry(stack.req(pb::AmendEntryRequest {
            patient_id: patient.clone(),
            consultation_id: consultation.clone(),
            entry_id: problem.entry_id.clone(),
            entry: Some(hypertension(pb::ProblemStatus::Inactive)),
            update_mask: mask(&["problem.status"]),
            reason: "Home readings normal: not hypertensive".into(),
            ..Default::default()
        }))
        .await
        .expect("amend");
    let last = client
        .mark_entered_in_error(stack.req(pb::MarkEnteredInErrorRequest {
            patient_id: patient.clone(),
            consultation_id: consultation.clone(),
            entry_id: weight.entry_id.clone(),
            reason: "Weight of another patient".into(),
            ..Default::default()
        }))
        .await
        .expect("entered in error")
        .into_inner();
    let at = last.stream_sequence;

    // Then the read models show the consultation as it stands
    let current = client
        .get_consultation(stack.req(pb::GetConsultationRequest {
            patient_id: patient.clone(),
            consultation_id: consultation.clone(),
            min_sequence: at,
        }))
        .await
        .expect("get")
        .into_inner();
    let entries: Vec<&pb::Entry> = current.topics.iter().flat_map(|t| &t.entries).collect();
    assert_eq!(entries.len(), 2, "the weight left the current view");
    let amended = entries
        .iter()
        .find(|e| e.entry_id == problem.entry_id)
        .expect("problem entry");
    assert!(amended.amended);
    assert_eq!(
        amended.amendment_reason,
        "Home readings normal: not hypertensive"
    );
    assert_eq!(current.author.as_ref().expect("author").user_id, "dr-jones");
    assert_eq!(current.organisation_ods, "A81001");

    // and every version, with who, when and why: the original stays
    let versions = client
        .list_consultation_versions(stack.req(pb::ListConsultationVersionsRequest {
            patient_id: patient.clone(),
            consultation_id: consultation.clone(),
            page_size: 3,
            min_sequence: at,
            ..Default::default()
        }))
        .await
        .expect("versions")
        .into_inner();
    assert_eq!(versions.versions.len(), 3);
    assert!(!versions.next_page_token.is_empty());
    let rest = client
        .list_consultation_versions(stack.req(pb::ListConsultationVersionsRequest {
            patient_id: patient.clone(),
            consultation_id: consultation.clone(),
            page_token: versions.next_page_token.clone(),
            ..Default::default()
        }))
        .await
        .expect("versions page 2")
        .into_inner();
    let all: Vec<pb::ConsultationVersion> =
        versions.versions.into_iter().chain(rest.versions).collect();
    assert_eq!(
        all.len(),
        8,
        "start, 3 entries, edit, sign, amend, in error"
    );
    assert_eq!(all[6].event_types, ["EntryAmended"]);
    assert_eq!(all[6].reason, "Home readings normal: not hypertensive");
    assert_eq!(all[6].actor_user_id, "dr-jones");
    let original = all[2].consultation.as_ref().expect("v3");
    let first_problem = original
        .topics
        .iter()
        .flat_map(|t| &t.entries)
        .find(|e| e.entry_id == problem.entry_id)
        .expect("original problem");
    assert_eq!(
        first_problem
            .content
            .as_ref()
            .and_then(|c| c.problem)
            .expect("problem")
            .status,
        pb::ProblemStatus::Active as i32
    );
    let last_version = all[7].consultation.as_ref().expect("v8");
    assert!(
        last_version
            .topics
            .iter()
            .flat_map(|t| &t.entries)
            .any(|e| e.entry_id == weight.entry_id && e.entered_in_error),
        "the entry in error stays in the versions"
    );

    // and the problem list and latest observations
    let problems = client
        .list_problems(stack.req(pb::ListProblemsRequest {
            patient_id: patient.clone(),
            min_sequence: at,
            ..Default::default()
        }))
        .await
        .expect("problems")
        .into_inner()
        .problems;
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].status, pb::ProblemStatus::Inactive as i32);
    let active = client
        .list_problems(stack.req(pb::ListProblemsRequest {
            patient_id: patient.clone(),
            status: pb::ProblemStatus::Active as i32,
            ..Default::default()
        }))
        .await
        .expect("active problems")
        .into_inner()
        .problems;
    assert!(active.is_empty());
    let observations = client
        .list_latest_observations(stack.req(pb::ListLatestObservationsRequest {
            patient_id: patient.clone(),
            min_sequence: at,
            ..Default::default()
        }))
        .await
        .expect("observations")
        .into_inner()
        .observations;
    assert_eq!(
        observations.len(),
        1,
        "the weight in error is not an observation"
    );
    assert_eq!(observations[0].concept_id, BLOOD_PRESSURE);
    let Some(pb::observation_value::Value::BloodPressure(value)) =
        observations[0].value.clone().and_then(|v| v.value)
    else {
        panic!("expected a blood pressure")
    };
    assert_eq!((value.systolic, value.diastolic), (158, 96));
    let listed = client
        .list_consultations(stack.req(pb::ListConsultationsRequest {
            patient_id: patient.clone(),
            min_sequence: at,
            ..Default::default()
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.consultations.len(), 1);

    // and every event reached the audit (start, topic + entry, 2 entries,
    // edit, sign, amend, in error)
    assert_eq!(audit_count(&stack, &patient, at).await, 9);

    // and a rebuild from sequence 1 gives the same read models
    let before = dump(&stack.pool).await;
    stack.rebuild("consultations").await;
    assert_eq!(dump(&stack.pool).await, before);
    stack.stop().await;
}

#[tokio::test]
async fn consultations_one_request_id_reused_for_two_patients_starts_two_consultations() {
    // Given two registered patients
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let mut john_details = jane_smith();
    john_details.nhs_number.clear();
    john_details.nhs_number_verification_status = 0;
    john_details.name = Some(carelog_proto::demographics::v1::HumanName {
        family: "Smith".into(),
        given: vec!["John".into()],
        ..Default::default()
    });
    let john = stack.register(john_details).await;
    let mut client = stack.consultations();

    // When one clinician's client starts a consultation for each with the
    // same request id
    let mut started = Vec::new();
    let mut sent = Vec::new();
    for patient in [&jane.patient_id, &john.patient_id] {
        let mut request = start_request(patient);
        request.request_id = "clinic-7-slot-3".into();
        sent.push(request.clone());
        let answer = client
            .start_consultation(stack.req(request))
            .await
            .expect("started")
            .into_inner();
        started.push(answer);
    }

    // Then each patient has a consultation of their own, under its own id
    let [for_jane, for_john] = <[_; 2]>::try_from(started).expect("two answers");
    let (jane_c, john_c) = (
        for_jane.consultation.expect("consultation"),
        for_john.consultation.expect("consultation"),
    );
    assert_ne!(jane_c.consultation_id, john_c.consultation_id);
    assert_eq!(jane_c.patient_id, jane.patient_id);
    assert_eq!(john_c.patient_id, john.patient_id);
    // and the read model holds both, each on its patient
    for (patient, consultation, sequence) in [
        (&jane.patient_id, &jane_c, for_jane.stream_sequence),
        (&john.patient_id, &john_c, for_john.stream_sequence),
    ] {
        let read = client
            .get_consultation(stack.req(pb::GetConsultationRequest {
                patient_id: patient.clone(),
                consultation_id: consultation.consultation_id.clone(),
                min_sequence: sequence,
            }))
            .await
            .expect("projected")
            .into_inner();
        assert_eq!(read.patient_id, *patient);
    }
    // And when Jane's request is sent again, it answers with her consultation
    let repeated = client
        .start_consultation(stack.req(sent.swap_remove(0)))
        .await
        .expect("repeated")
        .into_inner();
    assert_eq!(
        repeated.consultation.expect("consultation").consultation_id,
        jane_c.consultation_id
    );
    // and that answer, which wrote nothing, is audited as a read of it
    let read = stack
        .access_events(&jane.patient_id)
        .await
        .into_iter()
        .any(|(_, e)| {
            e.method == "StartConsultation" && e.resource_ids.contains(&jane_c.consultation_id)
        });
    assert!(read, "the repeated request's answer is audited");
    stack.stop().await;
}
