//! The gRPC face of medications.

use std::sync::Arc;

use carelog_demographics::gate::PatientGate;
use carelog_kernel::{Executor, Failure};
use carelog_proto::medications::v1 as pb;
use pb::medications_service_server::MedicationsService;
use tonic::{Request, Response, Status};

use crate::domain::MedicationRecord;
use crate::queries::MedicationsQueries;

pub struct MedicationsApi<Q> {
    executor: Arc<Executor<MedicationRecord>>,
    gate: PatientGate,
    queries: Arc<Q>,
}

impl<Q> std::fmt::Debug for MedicationsApi<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MedicationsApi")
    }
}

impl<Q: MedicationsQueries> MedicationsApi<Q> {
    pub fn new(
        executor: Arc<Executor<MedicationRecord>>,
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
impl<Q: MedicationsQueries> MedicationsService for MedicationsApi<Q> {
    async fn get_medication_record_view(
        &self,
        _request: Request<pb::GetMedicationRecordViewRequest>,
    ) -> Result<Response<pb::MedicationRecordView>, Status> {
        let _ = (&self.executor, &self.gate, &self.queries);
        Err(Failure::new(tonic::Code::Unimplemented, "UNIMPLEMENTED", "not yet").into())
    }
}
