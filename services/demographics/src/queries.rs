//! The read side's port: what the demographics service asks of its read
//! model. The PostgreSQL read model in `carelog-projections` implements it.

use std::future::Future;

use carelog_kernel::date::PartialDate;
use carelog_kernel::{Failure, PatientId, RequestContext};
use carelog_proto::demographics::v1 as pb;
use tokio::time::Instant;

/// One way of finding patients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    NhsNumber(String),
    FamilyAndBirthDate {
        family: String,
        birth_date: PartialDate,
    },
    Postcode(String),
    FamilyPrefix(String),
}

/// A page request: `size` already bounded, `token` as the caller sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: u32,
    pub token: String,
}

/// Read-your-writes: wait until the read model has applied `min_sequence`
/// of the demographics stream, until `deadline`.
#[derive(Debug, Clone, Copy)]
pub struct Consistency {
    pub min_sequence: u64,
    pub deadline: Instant,
}

impl Consistency {
    /// `min_sequence` (0: no wait), waited for until the request's deadline.
    pub fn until_deadline(ctx: &RequestContext, min_sequence: u64) -> Self {
        Self {
            min_sequence,
            deadline: ctx.deadline,
        }
    }
}

pub trait PatientQueries: Send + Sync + 'static {
    /// The full record (nothing withheld: the service decides what to show).
    fn get(
        &self,
        id: PatientId,
        at: Consistency,
    ) -> impl Future<Output = Result<Option<pb::Patient>, Failure>> + Send;

    fn search(
        &self,
        search: &Search,
        page: &PageRequest,
        at: Consistency,
    ) -> impl Future<Output = Result<(Vec<pb::Patient>, String), Failure>> + Send;

    fn versions(
        &self,
        id: PatientId,
        page: &PageRequest,
        at: Consistency,
    ) -> impl Future<Output = Result<(Vec<pb::PatientVersion>, String), Failure>> + Send;
}
