//! Shared-care access control (docs/access.md, ADR 0020-0022): who may
//! see and change which patient's record, on every RPC of every service.

mod every_rpc;
mod golden;
mod scenarios;

use carelog_kernel::access::{self, access_stream};
use carelog_proto::access::v1::{AccessOutcome, RecordAccessed};
use carelog_tests::harness::TestStack;

/// The practice the test patients are registered at.
pub const HOME: &str = "A81001";
/// An organisation with no claim on them.
pub const STRANGER: &str = "B82002";

/// A request from a clinician (R8000) of `org`.
pub fn as_org<T>(stack: &TestStack, org: &str, message: T) -> tonic::Request<T> {
    stack.req_in_role(&format!("dr-{org}"), org, "R8000", message)
}

/// As `as_org`, in `role`.
pub fn in_role<T>(stack: &TestStack, org: &str, role: &str, message: T) -> tonic::Request<T> {
    stack.req_in_role(&format!("u-{role}-{org}"), org, role, message)
}

/// `org`'s privacy officer agrees that `from` shares with organisation `to`
/// for direct care, and waits until the access guard's read model holds
/// the agreement.
pub async fn share(
    stack: &TestStack,
    org: &str,
    from: carelog_proto::sharing::v1::party::Party,
    to: &str,
) -> carelog_proto::sharing::v1::SharingAgreement {
    use carelog_proto::sharing::v1 as spb;
    let admin = |m| in_role(stack, org, "LOCAL-PRIVACY-OFFICER", m);
    let mut sharing = spb::sharing_service_client::SharingServiceClient::new(stack.channel.clone());
    let agreement = sharing
        .create_sharing_agreement(admin(spb::CreateSharingAgreementRequest {
            from: Some(spb::Party { party: Some(from) }),
            to: Some(spb::Party {
                party: Some(spb::party::Party::OrganisationOds(to.into())),
            }),
            purpose: spb::SharingPurpose::DirectCare as i32,
            reason: "DSA 2026/14, direct care".into(),
            ..Default::default()
        }))
        .await
        .expect("agreement")
        .into_inner();
    sharing
        .get_sharing_agreement(in_role(
            stack,
            org,
            "LOCAL-PRIVACY-OFFICER",
            spb::GetSharingAgreementRequest {
                agreement_id: agreement.agreement_id.clone(),
                min_sequence: agreement.stream_sequence,
            },
        ))
        .await
        .expect("projected");
    agreement
}

/// As `as_org`, breaking glass with `reason`.
pub fn breaking_glass<T>(
    stack: &TestStack,
    org: &str,
    reason: &str,
    message: T,
) -> tonic::Request<T> {
    let mut request = as_org(stack, org, message);
    request.metadata_mut().insert(
        carelog_kernel::actor::BREAK_GLASS_HEADER,
        reason.parse().expect("metadata"),
    );
    request
}

/// Every access event on the access stream, in order.
pub async fn all_accesses(stack: &TestStack) -> Vec<RecordAccessed> {
    let stream = access_stream();
    stack
        .store
        .read_subject(&stream.name, &stream.all_subjects(), 0)
        .await
        .expect("read access stream")
        .iter()
        .flat_map(|m| access::decode(m.payload.as_ref()))
        .collect()
}

/// The refusals recorded for `method` called by `org`.
pub async fn refusals(stack: &TestStack, method: &str, org: &str) -> Vec<RecordAccessed> {
    all_accesses(stack)
        .await
        .into_iter()
        .filter(|e| {
            e.outcome == AccessOutcome::Denied as i32
                && e.method == method
                && e.actor.as_ref().is_some_and(|a| a.organisation_ods == org)
        })
        .collect()
}

/// The last sequence of every clinical stream.
pub async fn clinical_sequences(stack: &TestStack) -> [u64; 4] {
    [
        stack.last_sequence_of("demographics").await,
        stack.last_sequence_of("consultations").await,
        stack.last_sequence_of("medications").await,
        stack.last_sequence_of("tasks").await,
    ]
}
