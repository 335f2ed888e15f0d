//! The read side's port: what the medications service asks of its read
//! models. The PostgreSQL read models in `carelog-projections` implement it.

use std::future::Future;

pub use carelog_demographics::queries::{Consistency, PageRequest};
use carelog_kernel::ids::AuthorisationId;
use carelog_kernel::{Failure, PatientId};
use carelog_proto::medications::v1 as pb;

/// Which allergies to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllergyFilter {
    Active,
    Resolved,
}

pub trait MedicationsQueries: Send + Sync + 'static {
    /// The medication list of `patients` (a patient and the records merged
    /// into theirs): active authorisations (or all), oldest first.
    fn medications(
        &self,
        patients: &[PatientId],
        include_discontinued: bool,
        page: &PageRequest,
        at: Consistency,
    ) -> impl Future<Output = Result<(Vec<pb::Authorisation>, String), Failure>> + Send;

    /// The issue history of `patients` (a patient and the records merged
    /// into theirs; of one authorisation, or all), oldest first.
    fn issues(
        &self,
        patients: &[PatientId],
        authorisation: Option<AuthorisationId>,
        page: &PageRequest,
        at: Consistency,
    ) -> impl Future<Output = Result<(Vec<pb::Issue>, String), Failure>> + Send;

    /// The allergy list of these records (a patient's, and those merged
    /// into it); entered-in-error allergies never appear.
    fn allergies(
        &self,
        patients: &[PatientId],
        filter: AllergyFilter,
        page: &PageRequest,
        at: Consistency,
    ) -> impl Future<Output = Result<(Vec<pb::Allergy>, String), Failure>> + Send;
}
