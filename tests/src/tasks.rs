//! Helpers for tasks scenarios: requests from members of a team, a
//! medication review task, and the field names of a refusal.

use std::time::Duration;

pub use crate::assert::{reason, violated_fields as fields};
use carelog_proto::tasks::v1 as pb;

use crate::harness::TestStack;

/// The practice team of the scenarios.
pub const PRACTICE_TEAM: &str = "a81001-pharmacists";

/// A medication authorisation the review is about.
pub const AUTHORISATION: &str = "01930000-0000-7000-8000-0000000000bb";

/// A task's status.
pub fn status(task: &pb::Task) -> pb::TaskStatus {
    pb::TaskStatus::try_from(task.status).expect("status")
}

/// A request from `user` of organisation `org` (role R8000) whose token
/// names them a member of `teams`.
pub fn req_in_teams<T>(
    stack: &TestStack,
    user: &str,
    org: &str,
    teams: &[&str],
    message: T,
) -> tonic::Request<T> {
    let teams: Vec<String> = teams.iter().map(|t| (*t).to_owned()).collect();
    let token = stack
        .issuer
        .token_in_teams(
            user,
            &format!("Dr {user}"),
            org,
            "R8000",
            &teams,
            Duration::from_secs(600),
        )
        .expect("token");
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}").parse().expect("metadata");
    request.metadata_mut().insert("authorization", value);
    request
}

/// A request from ph-patel, a pharmacist of the practice team.
pub fn as_practice_pharmacist<T>(stack: &TestStack, message: T) -> tonic::Request<T> {
    req_in_teams(stack, "ph-patel", "A81001", &[PRACTICE_TEAM], message)
}

pub fn team(id: &str) -> Option<pb::Performer> {
    Some(pb::Performer {
        performer: Some(pb::performer::Performer::TeamId(id.into())),
    })
}

pub fn organisation(ods: &str) -> Option<pb::Performer> {
    Some(pb::Performer {
        performer: Some(pb::performer::Performer::OrganisationOds(ods.into())),
    })
}

/// A medication review of a patient's authorisation, for `performer`.
pub fn medication_review(
    patient_id: &str,
    authorisation_id: &str,
    performer: Option<pb::Performer>,
) -> pb::CreateTaskRequest {
    pb::CreateTaskRequest {
        patient_id: patient_id.into(),
        title: "Medication review".into(),
        description: "Review the repeat before further issues".into(),
        focus: Some(pb::Focus {
            kind: pb::FocusKind::MedicationAuthorisation as i32,
            reference: authorisation_id.into(),
            display: "Repeat authorisation".into(),
        }),
        performer,
        priority: pb::TaskPriority::Routine as i32,
        request_id: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    }
}

/// A status change request on a task.
pub fn action(task: &pb::Task, reason: &str) -> pb::TaskActionRequest {
    pb::TaskActionRequest {
        patient_id: task.patient_id.clone(),
        task_id: task.task_id.clone(),
        reason: reason.into(),
        request_id: uuid::Uuid::now_v7().to_string(),
    }
}
