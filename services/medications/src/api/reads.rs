//! The query side of the gRPC service: the medication list, the issue
//! history and the allergy list, from the read models with read-your-writes
//! (`min_sequence`) and page tokens.

use carelog_demographics::api::page;
use carelog_kernel::ids::AuthorisationId;
use carelog_kernel::{RequestContext, Violations};
use carelog_proto::medications::v1 as pb;
use tonic::{Request, Response, Status};

use super::{MedicationsApi, missing, patient_id, typed};
use crate::queries::{AllergyFilter, Consistency, MedicationsQueries};

impl<Q: MedicationsQueries> MedicationsApi<Q> {
    pub(super) async fn read_list_medications(
        &self,
        request: Request<pb::ListMedicationsRequest>,
    ) -> Result<Response<pb::ListMedicationsResponse>, Status> {
        let (ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let patient = patient_id(&r.patient_id, &mut v);
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let patient = patient.ok_or_else(|| missing("patient", &r.patient_id))?;
        self.gate.open(patient).await?;
        let (authorisations, next_page_token) = self
            .queries
            .medications(
                patient,
                r.include_discontinued,
                &page,
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?;
        Ok(Response::new(pb::ListMedicationsResponse {
            authorisations,
            next_page_token,
        }))
    }

    pub(super) async fn read_list_issues(
        &self,
        request: Request<pb::ListIssuesRequest>,
    ) -> Result<Response<pb::ListIssuesResponse>, Status> {
        let (ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let patient = patient_id(&r.patient_id, &mut v);
        let authorisation = if r.authorisation_id.trim().is_empty() {
            None
        } else {
            typed::<AuthorisationId>("authorisation_id", &r.authorisation_id, &mut v)
        };
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let patient = patient.ok_or_else(|| missing("patient", &r.patient_id))?;
        self.gate.open(patient).await?;
        let (issues, next_page_token) = self
            .queries
            .issues(
                patient,
                authorisation,
                &page,
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?;
        Ok(Response::new(pb::ListIssuesResponse {
            issues,
            next_page_token,
        }))
    }

    pub(super) async fn read_list_allergies(
        &self,
        request: Request<pb::ListAllergiesRequest>,
    ) -> Result<Response<pb::ListAllergiesResponse>, Status> {
        let (ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let patient = patient_id(&r.patient_id, &mut v);
        let filter = match pb::AllergyStatus::try_from(r.status) {
            Ok(pb::AllergyStatus::Unspecified | pb::AllergyStatus::Active) => AllergyFilter::Active,
            Ok(pb::AllergyStatus::Resolved) => AllergyFilter::Resolved,
            _ => {
                v.add("status", "must be active or resolved");
                AllergyFilter::Active
            }
        };
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let patient = patient.ok_or_else(|| missing("patient", &r.patient_id))?;
        self.gate.open(patient).await?;
        let (allergies, next_page_token) = self
            .queries
            .allergies(
                patient,
                filter,
                &page,
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?;
        Ok(Response::new(pb::ListAllergiesResponse {
            allergies,
            next_page_token,
        }))
    }
}
