//! The edge of the consultations API: domain errors mapped once to
//! `Failure`, ids parsed from requests (or derived from the request id for
//! what a request creates), the caller as a clinician, update masks.

use carelog_kernel::ids::ConsultationId;
use carelog_kernel::{Failure, PatientId, RequestContext, Violations};
use carelog_proto::consultations::v1 as pb;
use tonic::Code;
use uuid::Uuid;

use crate::domain::Error;
use crate::domain::values::UPDATABLE_PATHS;

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        let rule = |reason| Failure::new(Code::FailedPrecondition, reason, message.clone());
        match error {
            Error::Invalid(v) => Failure::invalid(v),
            Error::ConsultationNotFound(id) => Failure::not_found("consultation", &id),
            Error::TopicNotFound { topic, .. } => Failure::not_found("topic", &topic),
            Error::EntryNotFound { entry, .. } => Failure::not_found("entry", &entry),
            Error::ConsultationExists(id) => {
                Failure::new(Code::AlreadyExists, "ALREADY_EXISTS", message).with("id", id)
            }
            Error::Signed(id) => rule("CONSULTATION_SIGNED").with("consultationId", id),
            Error::NotSigned(id) => rule("CONSULTATION_NOT_SIGNED").with("consultationId", id),
            Error::AlreadySigned(id) => rule("ALREADY_SIGNED").with("consultationId", id),
            Error::ConsultationInError(id) => {
                rule("CONSULTATION_ENTERED_IN_ERROR").with("consultationId", id)
            }
            Error::EntryInError(id) => rule("ENTRY_ENTERED_IN_ERROR").with("entryId", id),
            Error::Empty(id) => rule("CONSULTATION_EMPTY").with("consultationId", id),
            Error::NotAuthor { consultation, .. } => {
                Failure::new(Code::PermissionDenied, "NOT_AUTHOR_OR_SUPERVISOR", message)
                    .with("consultationId", consultation)
            }
            Error::OtherOrganisation {
                consultation,
                organisation,
            } => Failure::new(
                Code::PermissionDenied,
                "CONSULTATION_OF_ANOTHER_ORGANISATION",
                message,
            )
            .with("consultationId", consultation)
            .with("organisationOds", organisation),
        }
    }
}

pub use carelog_kernel::edge::required;

pub fn patient(text: &str, v: &mut Violations) -> Option<PatientId> {
    required("patient_id", text, PatientId::parse, v)
}

pub fn consultation(text: &str, v: &mut Violations) -> Option<ConsultationId> {
    required("consultation_id", text, ConsultationId::parse, v)
}

/// An id for something the request creates in `patient`'s record: derived
/// from (user, request id, what, patient) when the caller sent a request
/// id, so a repeat names the same thing; else fresh.
pub fn derived(ctx: &RequestContext, what: &str, patient: Option<PatientId>) -> Uuid {
    ctx.new_resource_id(&format!("carelog.consultations.{what}"), patient)
}

pub fn typed<T, E: std::error::Error>(
    uuid: Uuid,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, Failure> {
    parse(&uuid.to_string()).map_err(|_| Failure::new(Code::Internal, "INTERNAL", "internal error"))
}

/// The caller as a clinician.
pub fn caller(ctx: &RequestContext) -> pb::Clinician {
    pb::Clinician {
        user_id: ctx.actor.user_id.clone(),
        display_name: ctx.actor.display_name.clone(),
        role: ctx.actor.role.clone(),
    }
}

pub fn mask_paths(mask: Option<prost_types::FieldMask>, v: &mut Violations) -> Vec<String> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        v.add("update_mask", "is required: name the fields to change");
    }
    for (i, path) in paths.iter().enumerate() {
        if !UPDATABLE_PATHS.contains(&path.as_str()) {
            v.add(
                format!("update_mask.paths[{i}]"),
                format!(
                    "unknown or unchangeable field '{path}'; updatable fields: {}",
                    UPDATABLE_PATHS.join(", ")
                ),
            );
        }
    }
    paths
}

/// A request that failed its checks without naming which id was missing.
pub fn missing() -> Failure {
    Failure::invalid_field("patient_id", "is required")
}
