//! Bad input gets the right status with a field violation naming the
//! field, and nothing is appended.

use carelog_proto::demographics::v1 as pb;
use carelog_proto::kernel::v1::PartialDate;
use carelog_tests::assert::violated_fields as fields;
use carelog_tests::consultations::mask;
use carelog_tests::harness::{TestStack, jane_smith};
use tonic::Code;

#[tokio::test]
async fn each_bad_registration_names_its_field_and_appends_nothing() {
    let stack = TestStack::start().await;
    let existing = stack.register(jane_smith()).await;
    let before = stack.last_sequence().await;
    let mut client = stack.client();
    let cases: Vec<(&str, pb::PatientDetails)> = vec![
        (
            "details.nhs_number",
            pb::PatientDetails {
                nhs_number: "9434765918".into(),
                ..jane_smith()
            },
        ),
        (
            "details.birth_date",
            pb::PatientDetails {
                birth_date: Some(PartialDate {
                    year: 2999,
                    month: 1,
                    day: 1,
                }),
                ..jane_smith()
            },
        ),
        ("details.addresses[0].postcode", {
            let mut d = jane_smith();
            d.addresses[0].postcode = "LS1 ZZZ".into();
            d
        }),
        (
            "details.name.family",
            pb::PatientDetails {
                name: Some(pb::HumanName {
                    family: "  ".into(),
                    ..Default::default()
                }),
                ..jane_smith()
            },
        ),
        (
            "details.registered_practice_ods",
            pb::PatientDetails {
                registered_practice_ods: "not-a-code".into(),
                ..jane_smith()
            },
        ),
        (
            "details.gender",
            pb::PatientDetails {
                gender: 0,
                ..jane_smith()
            },
        ),
        (
            // PostgreSQL text cannot hold it: the read models would stop on it
            "details.name.family",
            pb::PatientDetails {
                name: Some(pb::HumanName {
                    family: "Smith\0".into(),
                    ..Default::default()
                }),
                ..jane_smith()
            },
        ),
    ];
    for (field, details) in cases {
        let status = client
            .register_patient(stack.req(pb::RegisterPatientRequest {
                details: Some(details),
                ..Default::default()
            }))
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert_eq!(
            fields(&status),
            vec![field.to_owned()],
            "{}",
            status.message()
        );
        assert!(status.message().contains(field), "{}", status.message());
    }
    let unknown_mask = client
        .update_demographics(stack.req(pb::UpdateDemographicsRequest {
            patient_id: existing.patient_id.clone(),
            details: Some(jane_smith()),
            update_mask: mask(&["favourite_colour"]),
            ..Default::default()
        }))
        .await
        .expect_err("unknown mask path");
    assert_eq!(unknown_mask.code(), Code::InvalidArgument);
    assert_eq!(fields(&unknown_mask), vec!["update_mask.paths[0]"]);
    assert!(unknown_mask.message().contains("favourite_colour"));
    let bad_update = client
        .update_demographics(stack.req(pb::UpdateDemographicsRequest {
            patient_id: existing.patient_id.clone(),
            details: Some(pb::PatientDetails {
                birth_date: Some(PartialDate {
                    year: 2999,
                    month: 1,
                    day: 1,
                }),
                ..Default::default()
            }),
            update_mask: mask(&["birth_date"]),
            ..Default::default()
        }))
        .await
        .expect_err("future birth date");
    assert_eq!(fields(&bad_update), vec!["details.birth_date"]);
    let bad_reason = client
        .mark_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: existing.patient_id.clone(),
            reason: "at risk\0".into(),
            ..Default::default()
        }))
        .await
        .expect_err("a NUL in the reason");
    assert_eq!(bad_reason.code(), Code::InvalidArgument);
    assert_eq!(fields(&bad_reason), vec!["reason"]);
    assert_eq!(stack.last_sequence().await, before, "nothing was appended");
    stack.stop().await;
}

#[tokio::test]
async fn a_call_without_a_valid_token_is_unauthenticated_and_appends_nothing() {
    let stack = TestStack::start().await;
    let before = stack.last_sequence().await;
    let mut client = stack.client();
    let request = || pb::RegisterPatientRequest {
        details: Some(jane_smith()),
        ..Default::default()
    };
    let missing = client
        .register_patient(tonic::Request::new(request()))
        .await
        .expect_err("no token");
    assert_eq!(missing.code(), Code::Unauthenticated);
    let mut forged = tonic::Request::new(request());
    let other = carelog_kernel::auth::DevIssuer::ephemeral();
    let token = other
        .token(
            "mallory",
            "",
            "A81001",
            "R8000",
            std::time::Duration::from_secs(60),
        )
        .expect("token");
    forged.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("metadata"),
    );
    assert_eq!(
        client
            .register_patient(forged)
            .await
            .expect_err("forged")
            .code(),
        Code::Unauthenticated
    );
    let mut garbage = tonic::Request::new(request());
    garbage.metadata_mut().insert(
        "authorization",
        "Bearer not.a.jwt".parse().expect("metadata"),
    );
    assert_eq!(
        client
            .register_patient(garbage)
            .await
            .expect_err("garbage")
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(stack.last_sequence().await, before);
    stack.stop().await;
}

#[tokio::test]
async fn a_search_must_name_exactly_one_way_of_searching() {
    let stack = TestStack::start().await;
    let mut client = stack.client();
    let both = client
        .search_patients(stack.req(pb::SearchPatientsRequest {
            nhs_number: "9434765919".into(),
            postcode: "LS1 5AB".into(),
            ..Default::default()
        }))
        .await
        .expect_err("two modes");
    assert_eq!(both.code(), Code::InvalidArgument);
    assert_eq!(fields(&both), vec!["nhs_number", "postcode"]);
    let none = client
        .search_patients(stack.req(pb::SearchPatientsRequest::default()))
        .await
        .expect_err("no mode");
    assert_eq!(fields(&none), vec!["nhs_number"]);
    let stray_birth_date = client
        .search_patients(stack.req(pb::SearchPatientsRequest {
            postcode: "LS1 5AB".into(),
            birth_date: jane_smith().birth_date,
            ..Default::default()
        }))
        .await
        .expect_err("a birth date without a family name");
    assert_eq!(fields(&stray_birth_date), vec!["birth_date"]);
    let short = client
        .search_patients(stack.req(pb::SearchPatientsRequest {
            family_name_prefix: "S".into(),
            ..Default::default()
        }))
        .await
        .expect_err("short prefix");
    assert_eq!(fields(&short), vec!["family_name_prefix"]);
    let negative = client
        .search_patients(stack.req(pb::SearchPatientsRequest {
            postcode: "LS1 5AB".into(),
            page_size: -1,
            ..Default::default()
        }))
        .await
        .expect_err("negative page size");
    assert_eq!(fields(&negative), vec!["page_size"]);
    stack.stop().await;
}
