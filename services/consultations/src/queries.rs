//! The read side's port: what the consultations service asks of its read
//! models. The PostgreSQL read models in `carelog-projections` implement it.

use std::future::Future;

pub use carelog_demographics::queries::{Consistency, PageRequest};
use carelog_kernel::ids::ConsultationId;
use carelog_kernel::{Failure, PatientId};
use carelog_proto::consultations::v1 as pb;

pub trait ConsultationsQueries: Send + Sync + 'static {
    /// The whole consultation (entries entered in error included: the
    /// service decides what to show).
    fn get(
        &self,
        patient: PatientId,
        consultation: ConsultationId,
        at: Consistency,
    ) -> impl Future<Output = Result<Option<pb::Consultation>, Failure>> + Send;

    /// The consultations of `patients` (a patient and the records merged
    /// into theirs) not entered in error, newest first.
    fn list(
        &self,
        patients: &[PatientId],
        page: &PageRequest,
        at: Consistency,
    ) -> impl Future<Output = Result<(Vec<pb::Consultation>, String), Failure>> + Send;

    fn versions(
        &self,
        patient: PatientId,
        consultation: ConsultationId,
        page: &PageRequest,
        at: Consistency,
    ) -> impl Future<Output = Result<(Vec<pb::ConsultationVersion>, String), Failure>> + Send;

    /// The problem list of `patients` (a patient and the records merged
    /// into theirs), optionally of one status, most recent first.
    fn problems(
        &self,
        patients: &[PatientId],
        status: Option<pb::ProblemStatus>,
        page: &PageRequest,
        at: Consistency,
    ) -> impl Future<Output = Result<(Vec<pb::Problem>, String), Failure>> + Send;

    /// The latest observation of each concept, by concept id.
    fn observations(
        &self,
        patient: PatientId,
        page: &PageRequest,
        at: Consistency,
    ) -> impl Future<Output = Result<(Vec<pb::LatestObservation>, String), Failure>> + Send;
}
