//! The mixed clinical workload of `carelog bench`: each unit is one
//! patient's morning at the practice, over gRPC through all four services.
//! Registration, a consultation with three entries and its signature, a
//! penicillin allergy, a clarithromycin repeat issued twice, and a medication
//! review task claimed and completed: 13 commands, each timed on its own.
//! The products come from the built-in SAMPLE drug catalogue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use carelog_proto::consultations::v1 as consultations;
use carelog_proto::consultations::v1::consultations_service_client::ConsultationsServiceClient;
use carelog_proto::demographics::v1 as demographics;
use carelog_proto::demographics::v1::demographics_service_client::DemographicsServiceClient;
use carelog_proto::kernel::v1::PartialDate;
use carelog_proto::medications::v1 as medications;
use carelog_proto::medications::v1::medications_service_client::MedicationsServiceClient;
use carelog_proto::tasks::v1 as tasks;
use carelog_proto::tasks::v1::tasks_service_client::TasksServiceClient;
use chrono::Days;
use tonic::transport::Channel;

use super::{Phase, authorised, details, drive};

/// Commands in one unit of the workload.
pub const COMMANDS_PER_UNIT: u64 = 13;

const PENICILLIN: &str = "764146007";
const CLARITHROMYCIN_500: &str = "324430000";

/// Times one command, adding its latency to `latencies`.
async fn timed<T, F>(latencies: &mut Vec<Duration>, call: F) -> anyhow::Result<T>
where
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let started = Instant::now();
    let response = call.await?;
    latencies.push(started.elapsed());
    Ok(response.into_inner())
}

/// The date `days` from today in the UK (`date::uk_today`).
fn in_days(days: u64) -> PartialDate {
    carelog_kernel::date::PartialDate::from_naive(
        carelog_kernel::date::uk_today() + Days::new(days),
    )
    .to_proto()
}

fn entry(
    kind: consultations::EntryKind,
    concept: &str,
    display: &str,
) -> consultations::EntryContent {
    consultations::EntryContent {
        kind: kind as i32,
        concept_id: concept.into(),
        display: display.into(),
        ..Default::default()
    }
}

/// The three entries of the consultation: blood pressure, weight, a problem.
fn entries() -> [consultations::EntryContent; 3] {
    use consultations::observation_value::Value;
    let bp = consultations::EntryContent {
        observation: Some(consultations::ObservationValue {
            value: Some(Value::BloodPressure(consultations::BloodPressure {
                systolic: 148,
                diastolic: 92,
                unit: "mm[Hg]".into(),
            })),
        }),
        ..entry(
            consultations::EntryKind::Observation,
            "75367002",
            "Blood pressure",
        )
    };
    let weight = consultations::EntryContent {
        observation: Some(consultations::ObservationValue {
            value: Some(Value::Quantity(consultations::Quantity {
                value: "82.5".into(),
                unit: "kg".into(),
            })),
        }),
        ..entry(
            consultations::EntryKind::Observation,
            "27113001",
            "Body weight",
        )
    };
    let problem = consultations::EntryContent {
        problem: Some(consultations::ProblemDetails {
            status: consultations::ProblemStatus::Active as i32,
            significance: consultations::ProblemSignificance::Major as i32,
        }),
        ..entry(
            consultations::EntryKind::Problem,
            "38341003",
            "Hypertension",
        )
    };
    [bp, weight, problem]
}

pub async fn workload(
    channel: Channel,
    token: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Phase> {
    let token = Arc::new(token.to_owned());
    drive(clients, duration, move |i| {
        let channel = channel.clone();
        let token = token.clone();
        async move { one_visit(channel, &token, i).await }
    })
    .await
}

async fn one_visit(channel: Channel, token: &str, i: u64) -> anyhow::Result<Vec<Duration>> {
    let mut people = DemographicsServiceClient::new(channel.clone());
    let mut notes = ConsultationsServiceClient::new(channel.clone());
    let mut drugs = MedicationsServiceClient::new(channel.clone());
    let mut work = TasksServiceClient::new(channel);
    let mut l = Vec::with_capacity(COMMANDS_PER_UNIT as usize);

    let patient = timed(
        &mut l,
        people.register_patient(authorised(
            demographics::RegisterPatientRequest {
                details: Some(details(i)),
                ..Default::default()
            },
            token,
        )?),
    )
    .await?
    .patient_id;

    let started = timed(
        &mut l,
        notes.start_consultation(authorised(
            consultations::StartConsultationRequest {
                patient_id: patient.clone(),
                r#type: consultations::ConsultationType::FaceToFace as i32,
                start_time: Some(carelog_kernel::envelope::timestamp(
                    chrono::Utc::now() - chrono::Duration::minutes(10),
                )),
                ..Default::default()
            },
            token,
        )?),
    )
    .await?;
    let consultation = started
        .consultation
        .map(|c| c.consultation_id)
        .unwrap_or_default();
    let mut topic = String::new();
    for content in entries() {
        let added = timed(
            &mut l,
            notes.add_entry(authorised(
                consultations::AddEntryRequest {
                    patient_id: patient.clone(),
                    consultation_id: consultation.clone(),
                    topic_id: topic.clone(),
                    topic_title: if topic.is_empty() {
                        "Blood pressure review".into()
                    } else {
                        String::new()
                    },
                    entry: Some(content),
                    ..Default::default()
                },
                token,
            )?),
        )
        .await?;
        topic = added.topic_id;
    }
    timed(
        &mut l,
        notes.sign_consultation(authorised(
            consultations::SignConsultationRequest {
                patient_id: patient.clone(),
                consultation_id: consultation,
                ..Default::default()
            },
            token,
        )?),
    )
    .await?;

    timed(
        &mut l,
        drugs.record_allergy(authorised(
            medications::RecordAllergyRequest {
                patient_id: patient.clone(),
                allergy: Some(medications::AllergyDetails {
                    substance: Some(medications::Coding {
                        code: PENICILLIN.into(),
                        display: "Penicillin".into(),
                    }),
                    kind: medications::AllergyKind::Allergy as i32,
                    reaction: "urticaria".into(),
                    severity: medications::Severity::Moderate as i32,
                    certainty: medications::Certainty::Confirmed as i32,
                    onset: None,
                }),
                ..Default::default()
            },
            token,
        )?),
    )
    .await?;
    let authorisation = timed(
        &mut l,
        drugs.authorise_medication(authorised(
            medications::AuthoriseMedicationRequest {
                patient_id: patient.clone(),
                authorisation: Some(medications::AuthorisationDetails {
                    product: Some(medications::Coding {
                        code: CLARITHROMYCIN_500.into(),
                        display: String::new(),
                    }),
                    dose_instructions: "one tablet twice a day".into(),
                    quantity: "14".into(),
                    quantity_unit: "tablet".into(),
                    prescription_type: medications::PrescriptionType::Repeat as i32,
                    authorised_issues: 6,
                    review_date: Some(in_days(90)),
                    expiry_date: Some(in_days(180)),
                    supply_days: 7,
                }),
                ..Default::default()
            },
            token,
        )?),
    )
    .await?
    .authorisation_id;
    // The second issue the same day needs a reason (ISSUED_TODAY).
    for reason in ["", "supply for the care home"] {
        timed(
            &mut l,
            drugs.issue_prescription(authorised(
                medications::IssuePrescriptionRequest {
                    patient_id: patient.clone(),
                    authorisation_id: authorisation.clone(),
                    override_reason: reason.into(),
                    ..Default::default()
                },
                token,
            )?),
        )
        .await?;
    }

    let task = timed(
        &mut l,
        work.create_task(authorised(
            tasks::CreateTaskRequest {
                patient_id: patient.clone(),
                title: "Medication review".into(),
                focus: Some(tasks::Focus {
                    kind: tasks::FocusKind::MedicationAuthorisation as i32,
                    reference: authorisation,
                    display: "Repeat authorisation".into(),
                }),
                performer: Some(tasks::Performer {
                    performer: Some(tasks::performer::Performer::OrganisationOds(
                        "A81001".into(),
                    )),
                }),
                priority: tasks::TaskPriority::Routine as i32,
                ..Default::default()
            },
            token,
        )?),
    )
    .await?
    .task_id;
    timed(
        &mut l,
        work.claim_task(authorised(
            tasks::TaskActionRequest {
                patient_id: patient.clone(),
                task_id: task.clone(),
                ..Default::default()
            },
            token,
        )?),
    )
    .await?;
    timed(
        &mut l,
        work.complete_task(authorised(
            tasks::CompleteTaskRequest {
                patient_id: patient,
                task_id: task,
                outcome: "Reviewed, continue".into(),
                ..Default::default()
            },
            token,
        )?),
    )
    .await?;
    Ok(l)
}
