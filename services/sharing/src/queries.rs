//! The read side of sharing administration: a port the projections crate
//! implements over PostgreSQL.

use std::future::Future;

use carelog_kernel::Failure;
use carelog_proto::sharing::v1 as pb;

pub use carelog_demographics::queries::{Consistency, PageRequest};

pub trait SharingQueries: Send + Sync + 'static {
    fn group(
        &self,
        id: &str,
        at: Consistency,
    ) -> impl Future<Output = Result<Option<pb::OrganisationGroup>, Failure>> + Send;

    fn groups(
        &self,
        page: &PageRequest,
        at: Consistency,
    ) -> impl Future<Output = Result<(Vec<pb::OrganisationGroup>, String), Failure>> + Send;

    fn agreement(
        &self,
        id: &str,
        at: Consistency,
    ) -> impl Future<Output = Result<Option<pb::SharingAgreement>, Failure>> + Send;

    fn agreements(
        &self,
        page: &PageRequest,
        at: Consistency,
    ) -> impl Future<Output = Result<(Vec<pb::SharingAgreement>, String), Failure>> + Send;
}
