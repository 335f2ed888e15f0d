//! Role permissions (docs/access-policy.md): a receptionist (R8010,
//! Clerical Access Role) registers patients but neither writes clinical
//! entries nor prescribes; a clinician (R8000) does all three. A refusal is
//! PERMISSION_DENIED naming the permission and the role, and appends
//! nothing.

use carelog_proto::demographics::v1 as dpb;
use carelog_tests::consultations::{add_request, blood_pressure, start_request};
use carelog_tests::harness::{TestStack, jane_smith};
use carelog_tests::medications::{PARACETAMOL_500, acute, authorise, issue};
use tonic::Code;
use tonic_types::StatusExt as _;

const RECEPTIONIST: &str = "R8010";
const CLINICIAN: &str = "R8000";

fn as_receptionist<T>(stack: &TestStack, message: T) -> tonic::Request<T> {
    stack.req_in_role("rec-brown", "A81001", RECEPTIONIST, message)
}

fn as_clinician<T>(stack: &TestStack, message: T) -> tonic::Request<T> {
    stack.req_in_role("dr-jones", "A81001", CLINICIAN, message)
}

/// The refusal is PERMISSION_MISSING naming `permission` and the role.
fn assert_missing(status: &tonic::Status, permission: &str) {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "PERMISSION_MISSING");
    assert_eq!(
        info.metadata.get("permission").map(String::as_str),
        Some(permission)
    );
    assert_eq!(
        info.metadata.get("role").map(String::as_str),
        Some(RECEPTIONIST)
    );
    assert!(
        status.message().contains(permission),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_receptionist_registers_but_neither_writes_clinical_entries_nor_prescribes() {
    let stack = TestStack::start().await;

    // The receptionist registers a patient and reads their demographics.
    let patient = stack
        .client()
        .register_patient(as_receptionist(
            &stack,
            dpb::RegisterPatientRequest {
                details: Some(jane_smith()),
                ..Default::default()
            },
        ))
        .await
        .expect("a receptionist registers")
        .into_inner();
    let id = patient.patient_id.clone();
    stack
        .client()
        .get_patient(as_receptionist(
            &stack,
            dpb::GetPatientRequest {
                patient_id: id.clone(),
                min_sequence: patient.stream_sequence,
            },
        ))
        .await
        .expect("a receptionist reads demographics");

    // A clinician starts a consultation; the receptionist may not add to it.
    let consultation = stack
        .consultations()
        .start_consultation(as_clinician(&stack, start_request(&id)))
        .await
        .expect("a clinician starts a consultation")
        .into_inner()
        .consultation
        .expect("consultation");
    let entry = add_request(
        &id,
        &consultation.consultation_id,
        "",
        blood_pressure(150, 95),
    );
    let before = stack.last_sequence_of("consultations").await;
    let refused = stack
        .consultations()
        .add_entry(as_receptionist(&stack, entry.clone()))
        .await
        .expect_err("a receptionist may not write a clinical entry");
    assert_missing(&refused, "write_clinical");
    assert_eq!(stack.last_sequence_of("consultations").await, before);

    // Nor prescribe.
    let before = stack.last_sequence_of("medications").await;
    let refused = stack
        .medications()
        .authorise_medication(as_receptionist(
            &stack,
            authorise(&id, acute(PARACETAMOL_500)),
        ))
        .await
        .expect_err("a receptionist may not prescribe");
    assert_missing(&refused, "prescribe");
    assert_eq!(stack.last_sequence_of("medications").await, before);

    // The clinician does both.
    stack
        .consultations()
        .add_entry(as_clinician(&stack, entry))
        .await
        .expect("a clinician writes the entry");
    let authorisation = stack
        .medications()
        .authorise_medication(as_clinician(&stack, authorise(&id, acute(PARACETAMOL_500))))
        .await
        .expect("a clinician authorises")
        .into_inner();
    let before = stack.last_sequence_of("medications").await;
    let refused = stack
        .medications()
        .issue_prescription(as_receptionist(
            &stack,
            issue(&id, &authorisation.authorisation_id),
        ))
        .await
        .expect_err("a receptionist may not issue");
    assert_missing(&refused, "prescribe");
    assert_eq!(stack.last_sequence_of("medications").await, before);
    stack
        .medications()
        .issue_prescription(as_clinician(
            &stack,
            issue(&id, &authorisation.authorisation_id),
        ))
        .await
        .expect("a clinician issues");

    // A role the policy does not know is granted nothing.
    let unknown = stack
        .client()
        .get_patient(stack.req_in_role(
            "who",
            "A81001",
            "R9999",
            dpb::GetPatientRequest {
                patient_id: id,
                ..Default::default()
            },
        ))
        .await
        .expect_err("unknown role");
    assert_eq!(unknown.code(), Code::PermissionDenied);

    stack.stop().await;
}
