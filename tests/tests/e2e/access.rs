//! Every read of a patient's record appends `RecordAccessed` to
//! `CARELOG_ACCESS` before the answer is returned, and with the access stream
//! refusing writes the read is UNAVAILABLE and shows nothing (ADR 0018).

use carelog_kernel::access::access_stream;
use carelog_proto::access::v1::RecordAccessed;
use carelog_proto::consultations::v1 as cpb;
use carelog_proto::demographics::v1 as pb;
use carelog_proto::medications::v1 as mpb;
use carelog_tests::audit::position;
use carelog_tests::consultations::start_request;
use carelog_tests::harness::{TestStack, jane_smith};
use carelog_tests::medications::{CLARITHROMYCIN_500, authorise, repeat};
use prost::Message as _;
use tonic::Code;

/// Every access event recorded for a patient, in order.
async fn accesses(stack: &TestStack, patient_id: &str) -> Vec<RecordAccessed> {
    stack
        .access_events(patient_id)
        .await
        .into_iter()
        .map(|(_, event)| event)
        .collect()
}

#[tokio::test]
async fn a_get_patient_records_who_read_what_and_what_was_withheld() {
    let stack = TestStack::start().await;
    let mut client = stack.client();
    let jane = stack.register(jane_smith()).await;
    let restricted = client
        .mark_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: jane.patient_id.clone(),
            reason: "At risk of harm".into(),
            ..Default::default()
        }))
        .await
        .expect("restricted")
        .into_inner();
    assert!(accesses(&stack, &jane.patient_id).await.is_empty());

    // A nurse of the practice does not manage demographics: the restricted
    // fields are withheld from her (docs/access.md).
    let mut request = stack.req_in_role(
        "dr-patel",
        "A81001",
        "R8001",
        pb::GetPatientRequest {
            patient_id: jane.patient_id.clone(),
            min_sequence: restricted.stream_sequence,
        },
    );
    request
        .metadata_mut()
        .insert("x-correlation-id", "corr-get-1".parse().expect("metadata"));
    let shown = client.get_patient(request).await.expect("get").into_inner();
    assert!(shown.withheld);

    let events = accesses(&stack, &jane.patient_id).await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    let actor = e.actor.clone().expect("actor");
    assert_eq!(actor.user_id, "dr-patel");
    assert_eq!(actor.organisation_ods, "A81001");
    assert_eq!(actor.role, "R8001");
    assert!(!e.purpose_of_use.is_empty());
    assert_eq!(e.service, "carelog.demographics.v1.DemographicsService");
    assert_eq!(e.method, "GetPatient");
    assert_eq!(e.resource_ids, vec![jane.patient_id.clone()]);
    assert_eq!(e.record_count, 1);
    assert_eq!(
        position(e, "CARELOG_DEMOGRAPHICS"),
        Some(restricted.stream_sequence)
    );
    assert_eq!(shown.stream_sequence, restricted.stream_sequence);
    assert!(e.withheld);
    assert_eq!(e.correlation_id, "corr-get-1");
    assert!(e.accessed_at.is_some());

    // And the access reaches the audit_events read model
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let rows: Vec<(String, String, String, String, Vec<u8>)> = loop {
        let rows: Vec<(String, String, String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT stream, event_type, actor_user_id, correlation_id, payload FROM audit_events \
             WHERE patient_id = $1 AND context = 'access'",
        )
        .bind(&jane.patient_id)
        .fetch_all(&stack.pool)
        .await
        .expect("audit events");
        if !rows.is_empty() || tokio::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(rows.len(), 1);
    let (stream, event_type, actor, correlation, payload) = &rows[0];
    assert_eq!(stream, "CARELOG_ACCESS");
    assert_eq!(event_type, "RecordAccessed");
    assert_eq!(actor, "dr-patel");
    assert_eq!(correlation, "corr-get-1");
    assert_eq!(
        &RecordAccessed::decode(payload.as_slice()).expect("payload"),
        e
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_search_records_one_access_per_patient_returned() {
    let stack = TestStack::start().await;
    let family = format!("Acc{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut patients = Vec::new();
    for given in ["Ann", "Bob", "Cat"] {
        let mut details = jane_smith();
        details.name = Some(pb::HumanName {
            family: family.clone(),
            given: vec![given.into()],
            prefix: String::new(),
        });
        patients.push(stack.register(details).await);
    }
    let last = patients
        .iter()
        .map(|p| p.stream_sequence)
        .max()
        .unwrap_or(0);
    let found = stack
        .client()
        .search_patients(stack.req(pb::SearchPatientsRequest {
            family_name_prefix: family.clone(),
            min_sequence: last,
            ..Default::default()
        }))
        .await
        .expect("search")
        .into_inner();
    assert_eq!(found.patients.len(), 3);
    for p in &patients {
        let events = accesses(&stack, &p.patient_id).await;
        assert_eq!(events.len(), 1, "one access for {}", p.patient_id);
        assert_eq!(events[0].method, "SearchPatients");
        assert_eq!(events[0].resource_ids, vec![p.patient_id.clone()]);
        assert_eq!(
            position(&events[0], "CARELOG_DEMOGRAPHICS"),
            Some(p.stream_sequence)
        );
        assert!(!events[0].withheld);
    }
    let correlation: Vec<_> = {
        let mut all = Vec::new();
        for p in &patients {
            all.push(
                accesses(&stack, &p.patient_id).await[0]
                    .correlation_id
                    .clone(),
            );
        }
        all
    };
    assert!(correlation.iter().all(|c| c == &correlation[0]));
    stack.stop().await;
}

#[tokio::test]
async fn consultation_and_medication_lists_record_their_resources_and_sequences() {
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let id = jane.patient_id.clone();
    let mut consultations = stack.consultations();
    let mut started = Vec::new();
    for _ in 0..2 {
        let c = consultations
            .start_consultation(stack.req(start_request(&id)))
            .await
            .expect("start")
            .into_inner();
        started.push(c);
    }
    let listed = consultations
        .list_consultations(stack.req(cpb::ListConsultationsRequest {
            patient_id: id.clone(),
            min_sequence: started[1].stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.consultations.len(), 2);

    let mut meds = stack.medications();
    let authorised = meds
        .authorise_medication(stack.req(authorise(&id, repeat(CLARITHROMYCIN_500, 6))))
        .await;
    let authorised = match authorised {
        Ok(a) => a.into_inner(),
        Err(e) => panic!("authorise: {e:?}"),
    };
    let medications = meds
        .list_medications(stack.req(mpb::ListMedicationsRequest {
            patient_id: id.clone(),
            min_sequence: authorised.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("list medications")
        .into_inner();
    assert_eq!(medications.authorisations.len(), 1);

    let events = accesses(&stack, &id).await;
    assert_eq!(events.len(), 2);
    let c = &events[0];
    assert_eq!(c.service, "carelog.consultations.v1.ConsultationsService");
    assert_eq!(c.method, "ListConsultations");
    assert_eq!(c.record_count, 2);
    let mut ids: Vec<_> = started
        .iter()
        .map(|s| s.consultation.clone().expect("c").consultation_id)
        .collect();
    let mut recorded = c.resource_ids.clone();
    ids.sort();
    recorded.sort();
    assert_eq!(recorded, ids);
    assert_eq!(
        position(c, "CARELOG_CONSULTATIONS"),
        Some(started[1].stream_sequence)
    );
    let m = &events[1];
    assert_eq!(m.service, "carelog.medications.v1.MedicationsService");
    assert_eq!(m.method, "ListMedications");
    assert_eq!(
        m.resource_ids,
        vec![medications.authorisations[0].authorisation_id.clone()]
    );
    assert_eq!(
        position(m, "CARELOG_MEDICATIONS"),
        Some(medications.authorisations[0].stream_sequence)
    );
    assert!(medications.authorisations[0].stream_sequence > 0);
    stack.stop().await;
}

#[tokio::test]
async fn with_the_access_stream_refusing_writes_a_read_is_unavailable() {
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    // The access stream is sealed: JetStream refuses every further write.
    let js = stack.store.jetstream();
    let mut config = js
        .get_stream(access_stream().name)
        .await
        .expect("access stream")
        .info()
        .await
        .expect("info")
        .config
        .clone();
    config.sealed = true;
    js.update_stream(config).await.expect("seal");

    let refused = stack
        .client()
        .get_patient(stack.req(pb::GetPatientRequest {
            patient_id: jane.patient_id.clone(),
            min_sequence: jane.stream_sequence,
        }))
        .await
        .expect_err("not audited, not shown");
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(!refused.message().contains("Smith"));
    assert!(accesses(&stack, &jane.patient_id).await.is_empty());
    stack.stop().await;
}

#[tokio::test]
async fn every_other_read_rpc_records_exactly_one_access_with_its_positions() {
    use carelog_proto::tasks::v1 as tpb;
    use carelog_tests::consultations::{add_request, blood_pressure, hypertension};
    use carelog_tests::medications::{issue, record_penicillin_allergy};
    use carelog_tests::tasks::{medication_review, organisation};

    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let id = jane.patient_id.clone();
    // Given a consultation with a problem and an observation, an allergy, a
    // repeat issued once and a task about the patient
    let mut consultations = stack.consultations();
    let started = consultations
        .start_consultation(stack.req(start_request(&id)))
        .await
        .expect("start")
        .into_inner();
    let consultation_id = started.consultation.clone().expect("c").consultation_id;
    let problem = consultations
        .add_entry(stack.req(add_request(
            &id,
            &consultation_id,
            "",
            hypertension(cpb::ProblemStatus::Active),
        )))
        .await
        .expect("problem")
        .into_inner();
    let observed = consultations
        .add_entry(stack.req(add_request(
            &id,
            &consultation_id,
            &problem.topic_id,
            blood_pressure(150, 95),
        )))
        .await
        .expect("observation")
        .into_inner();
    let mut meds = stack.medications();
    let allergy = meds
        .record_allergy(stack.req(record_penicillin_allergy(&id)))
        .await
        .expect("allergy")
        .into_inner();
    let authorised = meds
        .authorise_medication(stack.req(authorise(&id, repeat(CLARITHROMYCIN_500, 6))))
        .await
        .expect("authorise")
        .into_inner();
    let issued = meds
        .issue_prescription(stack.req(issue(&id, &authorised.authorisation_id)))
        .await
        .expect("issue")
        .into_inner();
    let mut tasks = stack.tasks();
    let task = tasks
        .create_task(stack.req(medication_review(
            &id,
            &authorised.authorisation_id,
            organisation("A81001"),
        )))
        .await
        .expect("task")
        .into_inner();

    // When every other read of the patient's record is made once
    stack
        .client()
        .list_patient_versions(stack.req(pb::ListPatientVersionsRequest {
            patient_id: id.clone(),
            min_sequence: jane.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("versions");
    consultations
        .get_consultation(stack.req(cpb::GetConsultationRequest {
            patient_id: id.clone(),
            consultation_id: consultation_id.clone(),
            min_sequence: observed.stream_sequence,
        }))
        .await
        .expect("get consultation");
    consultations
        .list_consultation_versions(stack.req(cpb::ListConsultationVersionsRequest {
            patient_id: id.clone(),
            consultation_id: consultation_id.clone(),
            min_sequence: observed.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("consultation versions");
    let problems = consultations
        .list_problems(stack.req(cpb::ListProblemsRequest {
            patient_id: id.clone(),
            min_sequence: observed.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("problems")
        .into_inner();
    assert_eq!(problems.problems.len(), 1);
    let observations = consultations
        .list_latest_observations(stack.req(cpb::ListLatestObservationsRequest {
            patient_id: id.clone(),
            min_sequence: observed.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("observations")
        .into_inner();
    assert_eq!(observations.observations.len(), 1);
    meds.list_issues(stack.req(mpb::ListIssuesRequest {
        patient_id: id.clone(),
        min_sequence: issued.stream_sequence,
        ..Default::default()
    }))
    .await
    .expect("issues");
    meds.list_allergies(stack.req(mpb::ListAllergiesRequest {
        patient_id: id.clone(),
        min_sequence: issued.stream_sequence,
        ..Default::default()
    }))
    .await
    .expect("allergies");
    tasks
        .get_task(stack.req(tpb::GetTaskRequest {
            patient_id: id.clone(),
            task_id: task.task_id.clone(),
            min_sequence: task.stream_sequence,
        }))
        .await
        .expect("get task");
    tasks
        .list_tasks(stack.req(tpb::ListTasksRequest {
            patient_id: id.clone(),
            min_sequence: task.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("list tasks");
    tasks
        .list_task_history(stack.req(tpb::ListTaskHistoryRequest {
            patient_id: id.clone(),
            task_id: task.task_id.clone(),
            min_sequence: task.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("task history");

    // Then each appended exactly one access, naming what it showed and where
    // in which stream the answer was built from
    let events = accesses(&stack, &id).await;
    let shown: Vec<(&str, Vec<String>, Option<u64>)> = events
        .iter()
        .map(|e| {
            let stream = match e.service.as_str() {
                "carelog.demographics.v1.DemographicsService" => "CARELOG_DEMOGRAPHICS",
                "carelog.consultations.v1.ConsultationsService" => "CARELOG_CONSULTATIONS",
                "carelog.medications.v1.MedicationsService" => "CARELOG_MEDICATIONS",
                _ => "CARELOG_TASKS",
            };
            (
                e.method.as_str(),
                e.resource_ids.clone(),
                position(e, stream),
            )
        })
        .collect();
    let task_id = task.task_id.clone();
    assert_eq!(
        shown,
        vec![
            (
                "ListPatientVersions",
                vec![id.clone()],
                Some(jane.stream_sequence)
            ),
            (
                "GetConsultation",
                vec![consultation_id.clone()],
                Some(observed.stream_sequence)
            ),
            (
                "ListConsultationVersions",
                vec![consultation_id.clone()],
                Some(observed.stream_sequence)
            ),
            (
                "ListProblems",
                vec![problem.entry_id.clone()],
                Some(observed.stream_sequence)
            ),
            (
                "ListLatestObservations",
                vec![observed.entry_id.clone()],
                Some(observed.stream_sequence)
            ),
            (
                "ListIssues",
                vec![issued.issue_id.clone()],
                Some(issued.stream_sequence)
            ),
            (
                "ListAllergies",
                vec![allergy.allergy_id.clone()],
                Some(allergy.stream_sequence)
            ),
            ("GetTask", vec![task_id.clone()], Some(task.stream_sequence)),
            (
                "ListTasks",
                vec![task_id.clone()],
                Some(task.stream_sequence)
            ),
            ("ListTaskHistory", vec![task_id], Some(task.stream_sequence)),
        ]
    );
    // Three versions of the consultation were listed
    assert_eq!(events[2].record_count, 3);
    stack.stop().await;
}
