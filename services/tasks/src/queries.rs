//! The read side's port: what the tasks service asks of its read model.
//! The PostgreSQL read model in `carelog-projections` implements it.

use std::future::Future;

use carelog_kernel::ids::TaskId;
use carelog_kernel::{Failure, PatientId};
use carelog_proto::tasks::v1 as pb;

pub use carelog_demographics::queries::{Consistency, PageRequest};

/// Whose work list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkList {
    Owner(String),
    Team(String),
    Organisation(String),
    Patient(PatientId),
}

pub trait TasksQueries: Send + Sync + 'static {
    fn get(
        &self,
        task_id: TaskId,
        at: Consistency,
    ) -> impl Future<Output = Result<Option<pb::Task>, Failure>> + Send;

    /// Tasks of a work list in these statuses: overdue first, then by
    /// priority (highest first), then by due date (none last).
    fn list(
        &self,
        list: &WorkList,
        statuses: &[pb::TaskStatus],
        page: &PageRequest,
        at: Consistency,
    ) -> impl Future<Output = Result<(Vec<pb::Task>, String), Failure>> + Send;

    /// Every change of one task, oldest first.
    fn history(
        &self,
        task_id: TaskId,
        page: &PageRequest,
        at: Consistency,
    ) -> impl Future<Output = Result<(Vec<pb::TaskHistoryEntry>, String), Failure>> + Send;
}
