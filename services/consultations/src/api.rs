//! The gRPC face of consultations.

use std::sync::Arc;

use carelog_demographics::gate::PatientGate;
use carelog_kernel::{Executor, Failure};
use carelog_proto::consultations::v1 as pb;
use pb::consultations_service_server::ConsultationsService;
use tonic::{Request, Response, Status};

use crate::domain::PatientConsultations;
use crate::queries::ConsultationsQueries;

pub struct ConsultationsApi<Q> {
    executor: Arc<Executor<PatientConsultations>>,
    gate: PatientGate,
    queries: Arc<Q>,
}

impl<Q> std::fmt::Debug for ConsultationsApi<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsultationsApi")
    }
}

impl<Q: ConsultationsQueries> ConsultationsApi<Q> {
    pub fn new(
        executor: Arc<Executor<PatientConsultations>>,
        gate: PatientGate,
        queries: Arc<Q>,
    ) -> Self {
        Self {
            executor,
            gate,
            queries,
        }
    }
}

#[tonic::async_trait]
impl<Q: ConsultationsQueries> ConsultationsService for ConsultationsApi<Q> {
    async fn get_consultation(
        &self,
        _request: Request<pb::GetConsultationRequest>,
    ) -> Result<Response<pb::Consultation>, Status> {
        let _ = (&self.executor, &self.gate, &self.queries);
        Err(Failure::new(tonic::Code::Unimplemented, "UNIMPLEMENTED", "not yet").into())
    }
}
