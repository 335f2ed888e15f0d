//! Helpers for consultations scenarios: requests and entries a GP writes.

pub use crate::assert::{reason, violated_fields};
use carelog_proto::consultations::v1 as pb;
use pb::observation_value::Value;

use crate::harness::TestStack;

pub const HYPERTENSION: &str = "38341003";
pub const BLOOD_PRESSURE: &str = "75367002";
pub const BODY_WEIGHT: &str = "27113001";

/// Starts a face-to-face consultation fifteen minutes ago, as dr-jones.
pub async fn start(stack: &TestStack, patient_id: &str) -> pb::ConsultationCommandResponse {
    stack
        .consultations()
        .start_consultation(stack.req(start_request(patient_id)))
        .await
        .expect("start consultation")
        .into_inner()
}

pub fn start_request(patient_id: &str) -> pb::StartConsultationRequest {
    pb::StartConsultationRequest {
        patient_id: patient_id.to_owned(),
        r#type: pb::ConsultationType::FaceToFace as i32,
        start_time: Some(carelog_kernel::envelope::timestamp(
            chrono::Utc::now() - chrono::Duration::minutes(15),
        )),
        ..Default::default()
    }
}

/// An entry in a new topic (or `topic_id`) of a consultation.
pub fn add_request(
    patient_id: &str,
    consultation_id: &str,
    topic_id: &str,
    entry: pb::EntryContent,
) -> pb::AddEntryRequest {
    pb::AddEntryRequest {
        patient_id: patient_id.to_owned(),
        consultation_id: consultation_id.to_owned(),
        topic_id: topic_id.to_owned(),
        topic_title: if topic_id.is_empty() {
            "Raised blood pressure".into()
        } else {
            String::new()
        },
        entry: Some(entry),
        ..Default::default()
    }
}

pub fn blood_pressure(systolic: u32, diastolic: u32) -> pb::EntryContent {
    pb::EntryContent {
        kind: pb::EntryKind::Observation as i32,
        concept_id: BLOOD_PRESSURE.into(),
        display: "Blood pressure".into(),
        observation: Some(pb::ObservationValue {
            value: Some(Value::BloodPressure(pb::BloodPressure {
                systolic,
                diastolic,
                unit: "mm[Hg]".into(),
            })),
        }),
        ..Default::default()
    }
}

pub fn weight(value: &str, unit: &str) -> pb::EntryContent {
    pb::EntryContent {
        kind: pb::EntryKind::Observation as i32,
        concept_id: BODY_WEIGHT.into(),
        display: "Body weight".into(),
        observation: Some(pb::ObservationValue {
            value: Some(Value::Quantity(pb::Quantity {
                value: value.into(),
                unit: unit.into(),
            })),
        }),
        ..Default::default()
    }
}

pub fn hypertension(status: pb::ProblemStatus) -> pb::EntryContent {
    pb::EntryContent {
        kind: pb::EntryKind::Problem as i32,
        concept_id: HYPERTENSION.into(),
        display: "Hypertension".into(),
        text: "Raised readings on three occasions".into(),
        problem: Some(pb::ProblemDetails {
            status: status as i32,
            significance: pb::ProblemSignificance::Major as i32,
        }),
        ..Default::default()
    }
}

/// An update mask of these paths.
pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}
