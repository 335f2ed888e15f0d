//! The query side of the gRPC service: the medication list, the issue
//! history and the allergy list, from the read models with read-your-writes
//! (`min_sequence`) and page tokens.

use carelog_demographics::api::page;
use carelog_kernel::access::{self, Reads};
use carelog_kernel::confidential::withhold;
use carelog_kernel::ids::AuthorisationId;
use carelog_kernel::{PatientId, RequestContext, Violations};
use carelog_proto::medications::v1 as pb;
use tonic::{Request, Response, Status};

use super::{MedicationsApi, missing, patient_id, typed};
use crate::domain::views::{overrides_withheld, withhold_authorisations};
use crate::queries::{AllergyFilter, Consistency, MedicationsQueries};

pub(super) const SERVICE: &str = "carelog.medications.v1.MedicationsService";
pub(super) const CONTEXT: &str = "medications";

/// The resources of an answer (id, patient, sequence), for the access log;
/// something was `withheld` from it (an item confidential to another
/// organisation, or what an override was over), and the read of `patient`
/// is marked so even when nothing is left.
fn reads<'a>(
    resources: impl Iterator<Item = (&'a str, &'a str, u64)>,
    patient: &PatientId,
    withheld: bool,
) -> Reads {
    let mut reads = Reads::new();
    for (id, patient, sequence) in resources {
        reads.record(patient, id, CONTEXT, sequence, withheld);
    }
    if withheld && reads.is_empty() {
        reads.record(&patient.to_string(), "", CONTEXT, 0, true);
    }
    reads
}

/// An item's confidential marking.
macro_rules! marking {
    () => {
        |x| (x.confidential, x.author_organisation_ods.as_str())
    };
}

impl<Q: MedicationsQueries> MedicationsApi<Q> {
    pub(super) async fn read_list_medications(
        &self,
        request: Request<pb::ListMedicationsRequest>,
    ) -> Result<Response<pb::ListMedicationsResponse>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let patient = patient_id(&r.patient_id, &mut v);
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let patient = patient.ok_or_else(|| missing("patient", &r.patient_id))?;
        self.guard.admit(&mut ctx, patient).await?;
        // The records merged into this one are the same person's: their
        // medication is listed (each naming its record) and audited with it.
        let facts = self.gate.open(patient).await?;
        let records: Vec<PatientId> = std::iter::once(patient)
            .chain(facts.merged_patient_ids)
            .collect();
        let (mut authorisations, next_page_token) = self
            .queries
            .medications(
                &records,
                r.include_discontinued,
                &page,
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?;
        let withheld_count = withhold_authorisations(&mut authorisations, &ctx.actor);
        let withheld = withheld_count > 0 || authorisations.iter().any(overrides_withheld);
        let read = reads(
            authorisations.iter().map(|x| {
                (
                    x.authorisation_id.as_str(),
                    x.patient_id.as_str(),
                    x.stream_sequence,
                )
            }),
            &patient,
            withheld,
        );
        access::audit(&*self.access, &ctx, SERVICE, "ListMedications", &read).await?;
        Ok(Response::new(pb::ListMedicationsResponse {
            authorisations,
            next_page_token,
            withheld_count,
        }))
    }

    pub(super) async fn read_list_issues(
        &self,
        request: Request<pb::ListIssuesRequest>,
    ) -> Result<Response<pb::ListIssuesResponse>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
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
        self.guard.admit(&mut ctx, patient).await?;
        // With the issues of the records merged into this one.
        let facts = self.gate.open(patient).await?;
        let records: Vec<PatientId> = std::iter::once(patient)
            .chain(facts.merged_patient_ids)
            .collect();
        let (mut issues, next_page_token) = self
            .queries
            .issues(
                &records,
                authorisation,
                &page,
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?;
        let withheld_count = withhold(&mut issues, &ctx.actor, marking!());
        let read = reads(
            issues.iter().map(|x| {
                (
                    x.issue_id.as_str(),
                    x.patient_id.as_str(),
                    x.stream_sequence,
                )
            }),
            &patient,
            withheld_count > 0,
        );
        access::audit(&*self.access, &ctx, SERVICE, "ListIssues", &read).await?;
        Ok(Response::new(pb::ListIssuesResponse {
            issues,
            next_page_token,
            withheld_count,
        }))
    }

    pub(super) async fn read_list_allergies(
        &self,
        request: Request<pb::ListAllergiesRequest>,
    ) -> Result<Response<pb::ListAllergiesResponse>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
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
        self.guard.admit(&mut ctx, patient).await?;
        // The records merged into this one are the same person's: their
        // allergies are listed (each naming its record) and audited with it.
        let facts = self.gate.open(patient).await?;
        let records: Vec<PatientId> = std::iter::once(patient)
            .chain(facts.merged_patient_ids)
            .collect();
        let (mut allergies, next_page_token) = self
            .queries
            .allergies(
                &records,
                filter,
                &page,
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?;
        let withheld_count = withhold(&mut allergies, &ctx.actor, marking!());
        let read = reads(
            allergies.iter().map(|x| {
                (
                    x.allergy_id.as_str(),
                    x.patient_id.as_str(),
                    x.stream_sequence,
                )
            }),
            &patient,
            withheld_count > 0,
        );
        access::audit(&*self.access, &ctx, SERVICE, "ListAllergies", &read).await?;
        Ok(Response::new(pb::ListAllergiesResponse {
            allergies,
            next_page_token,
            withheld_count,
        }))
    }
}
