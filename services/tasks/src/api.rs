//! The gRPC face of tasks.

use std::sync::Arc;

use carelog_demographics::gate::PatientGate;
use carelog_kernel::{Executor, Failure};
use carelog_proto::tasks::v1 as pb;
use pb::tasks_service_server::TasksService;
use tonic::{Request, Response, Status};

use crate::domain::TaskList;
use crate::queries::TasksQueries;

pub struct TasksApi<Q> {
    executor: Arc<Executor<TaskList>>,
    gate: PatientGate,
    queries: Arc<Q>,
}

impl<Q> std::fmt::Debug for TasksApi<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TasksApi")
    }
}

impl<Q: TasksQueries> TasksApi<Q> {
    pub fn new(executor: Arc<Executor<TaskList>>, gate: PatientGate, queries: Arc<Q>) -> Self {
        Self {
            executor,
            gate,
            queries,
        }
    }
}

#[tonic::async_trait]
impl<Q: TasksQueries> TasksService for TasksApi<Q> {
    async fn get_task(
        &self,
        _request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let _ = (&self.executor, &self.gate, &self.queries);
        Err(Failure::new(tonic::Code::Unimplemented, "UNIMPLEMENTED", "not yet").into())
    }
}
