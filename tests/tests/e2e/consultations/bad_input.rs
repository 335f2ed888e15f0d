//! Bad input is refused naming the field, and nothing is appended.

use carelog_proto::consultations::v1 as pb;
use carelog_tests::consultations::*;
use carelog_tests::harness::{TestStack, jane_smith};
use tonic::Code;

#[tokio::test]
async fn consultations_bad_input_names_the_field_and_appends_nothing() {
    let stack = TestStack::start().await;
    let mut client = stack.consultations();
    let jane = stack.register(jane_smith()).await;
    let patient = jane.patient_id.clone();
    let started = start(&stack, &patient).await;
    let id = started.consultation.expect("c").consultation_id;
    let before = stack.last_sequence_of("consultations").await;

    let starts: Vec<(&str, pb::StartConsultationRequest)> = vec![
        (
            "start_time",
            pb::StartConsultationRequest {
                start_time: Some(carelog_kernel::envelope::timestamp(
                    chrono::Utc::now() + chrono::Duration::days(1),
                )),
                ..start_request(&patient)
            },
        ),
        (
            "start_time",
            pb::StartConsultationRequest {
                start_time: Some(prost_types::Timestamp {
                    seconds: -700_000_000,
                    nanos: 0,
                }),
                ..start_request(&patient)
            },
        ),
        (
            "start_time",
            pb::StartConsultationRequest {
                // 7500 BC: no PostgreSQL timestamptz holds it
                start_time: Some(prost_types::Timestamp {
                    seconds: -300_000_000_000,
                    nanos: 0,
                }),
                ..start_request(&patient)
            },
        ),
        (
            "clinician.display_name",
            pb::StartConsultationRequest {
                clinician: Some(pb::Clinician {
                    user_id: "dr-b".into(),
                    display_name: "Dr B\u{1b}[2J".into(),
                    role: "R0260".into(),
                }),
                ..start_request(&patient)
            },
        ),
        (
            "type",
            pb::StartConsultationRequest {
                r#type: 0,
                ..start_request(&patient)
            },
        ),
        (
            "patient_id",
            pb::StartConsultationRequest {
                patient_id: "not-a-uuid".into(),
                ..start_request(&patient)
            },
        ),
    ];
    for (field, request) in starts {
        let status = client
            .start_consultation(stack.req(request))
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert_eq!(violated_fields(&status), [field], "{}", status.message());
    }
    let entries: Vec<(&str, pb::EntryContent)> = vec![
        ("entry.observation.quantity.unit", weight("84", "")),
        ("entry.observation.quantity.unit", weight("84", "kgs")),
        ("entry.concept_id", {
            let mut e = hypertension(pb::ProblemStatus::Active);
            e.concept_id = "38341004".into();
            e
        }),
        (
            "entry.observation.blood_pressure.systolic",
            blood_pressure(80, 90),
        ),
        ("entry.problem.significance", {
            let mut e = hypertension(pb::ProblemStatus::Active);
            e.problem = Some(pb::ProblemDetails {
                status: pb::ProblemStatus::Active as i32,
                significance: 0,
            });
            e
        }),
    ];
    for (field, entry) in entries {
        let status = client
            .add_entry(stack.req(add_request(&patient, &id, "", entry)))
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert_eq!(violated_fields(&status), [field], "{}", status.message());
    }
    let no_reason = client
        .amend_entry(stack.req(pb::AmendEntryRequest {
            patient_id: patient.clone(),
            consultation_id: id.clone(),
            entry_id: uuid::Uuid::now_v7().to_string(),
            entry: Some(weight("80", "kg")),
            update_mask: mask(&["observation"]),
            ..Default::default()
        }))
        .await
        .expect_err("no reason");
    assert_eq!(violated_fields(&no_reason), ["reason"]);
    let bad_mask = client
        .edit_entry(stack.req(pb::EditEntryRequest {
            patient_id: patient.clone(),
            consultation_id: id.clone(),
            entry_id: uuid::Uuid::now_v7().to_string(),
            entry: Some(weight("80", "kg")),
            update_mask: mask(&["kind"]),
            ..Default::default()
        }))
        .await
        .expect_err("kind cannot change");
    assert_eq!(violated_fields(&bad_mask), ["update_mask.paths[0]"]);
    assert_eq!(stack.last_sequence_of("consultations").await, before);
    stack.stop().await;
}
