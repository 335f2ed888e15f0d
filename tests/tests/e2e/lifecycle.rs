//! A patient's life in the record: registration, finding, changes, death,
//! flags, and repeated requests.

use carelog_proto::demographics::v1 as pb;
use carelog_proto::kernel::v1::PartialDate;
use carelog_tests::assert::{reason, violated_fields};
use carelog_tests::consultations::mask;
use carelog_tests::harness::{TestStack, jane_smith, new_phone, test_nhs_number, update_request};
use tonic::Code;
use tonic_types::StatusExt as _;

#[tokio::test]
async fn a_registered_patient_can_be_found_by_every_search_at_once() {
    let stack = TestStack::start().await;
    let details = jane_smith();
    let jane = stack.register(details.clone()).await;
    assert_eq!(jane.version, 1);
    assert!(jane.stream_sequence > 0);
    let mut client = stack.client();
    let got = client
        .get_patient(stack.req(pb::GetPatientRequest {
            patient_id: jane.patient_id.clone(),
            min_sequence: jane.stream_sequence,
        }))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.details, jane.details);
    let search = |r: pb::SearchPatientsRequest| {
        let mut client = stack.client();
        let request = stack.req(pb::SearchPatientsRequest {
            min_sequence: jane.stream_sequence,
            ..r
        });
        async move {
            client
                .search_patients(request)
                .await
                .expect("search")
                .into_inner()
        }
    };
    let ids = |r: pb::SearchPatientsResponse| {
        r.patients
            .into_iter()
            .map(|p| p.patient_id)
            .collect::<Vec<_>>()
    };
    let me = vec![jane.patient_id.clone()];
    assert_eq!(
        ids(search(pb::SearchPatientsRequest {
            nhs_number: details.nhs_number.clone(),
            ..Default::default()
        })
        .await),
        me
    );
    assert_eq!(
        ids(search(pb::SearchPatientsRequest {
            family_name: "smith".into(),
            birth_date: Some(PartialDate {
                year: 1950,
                month: 3,
                day: 0
            }),
            ..Default::default()
        })
        .await),
        me
    );
    assert_eq!(
        ids(search(pb::SearchPatientsRequest {
            postcode: "ls15ab".into(),
            ..Default::default()
        })
        .await),
        me
    );
    assert_eq!(
        ids(search(pb::SearchPatientsRequest {
            family_name_prefix: "Smi".into(),
            ..Default::default()
        })
        .await),
        me
    );
    assert!(
        ids(search(pb::SearchPatientsRequest {
            family_name_prefix: "Jon".into(),
            ..Default::default()
        })
        .await)
        .is_empty()
    );
    stack.stop().await;
}

#[tokio::test]
async fn search_results_are_paged_with_opaque_tokens() {
    let stack = TestStack::start().await;
    let mut last = 0;
    let mut registered = Vec::new();
    for _ in 0..5 {
        let p = stack
            .register(pb::PatientDetails {
                nhs_number: test_nhs_number(),
                ..jane_smith()
            })
            .await;
        last = last.max(p.stream_sequence);
        registered.push(p.patient_id);
    }
    registered.sort();
    let mut client = stack.client();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .search_patients(stack.req(pb::SearchPatientsRequest {
                postcode: "LS1 5AB".into(),
                page_size: 2,
                page_token: token.clone(),
                min_sequence: last,
                ..Default::default()
            }))
            .await
            .expect("page")
            .into_inner();
        assert!(page.patients.len() <= 2);
        seen.extend(page.patients.into_iter().map(|p| p.patient_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, registered);
    let wrong = client
        .search_patients(stack.req(pb::SearchPatientsRequest {
            family_name_prefix: "Sm".into(),
            page_token: token_of_other_search(),
            ..Default::default()
        }))
        .await
        .expect_err("foreign token");
    assert_eq!(wrong.code(), Code::InvalidArgument);
    stack.stop().await;
}

fn token_of_other_search() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode("0000000000000000|00000000-0000-0000-0000-000000000000")
}

#[tokio::test]
async fn every_version_is_kept_with_who_when_and_why() {
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let mut client = stack.client();
    let mut moved = jane_smith();
    moved.addresses[0].postcode = "M1 1AE".into();
    let updated = client
        .update_demographics(stack.req_as(
            "receptionist-1",
            pb::UpdateDemographicsRequest {
                patient_id: jane.patient_id.clone(),
                details: Some(moved),
                update_mask: mask(&["addresses"]),
                reason: "moved house".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.version, 2);
    assert_eq!(
        updated
            .details
            .as_ref()
            .map(|d| d.addresses[0].postcode.as_str()),
        Some("M1 1AE")
    );
    let versions = client
        .list_patient_versions(stack.req(pb::ListPatientVersionsRequest {
            patient_id: jane.patient_id.clone(),
            min_sequence: updated.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("versions")
        .into_inner()
        .versions;
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].event_types, vec!["PatientRegistered"]);
    assert_eq!(versions[1].event_types, vec!["DemographicsUpdated"]);
    assert_eq!(versions[1].actor_user_id, "receptionist-1");
    assert_eq!(versions[1].actor_organisation_ods, "A81001");
    assert_eq!(versions[1].reason, "moved house");
    let postcode = |v: &pb::PatientVersion| {
        v.patient
            .as_ref()
            .and_then(|p| p.details.as_ref())
            .map(|d| d.addresses[0].postcode.clone())
    };
    assert_eq!(postcode(&versions[0]).as_deref(), Some("LS1 5AB"));
    assert_eq!(postcode(&versions[1]).as_deref(), Some("M1 1AE"));
    stack.stop().await;
}

/// A registration of `details` under `request_id`.
fn registration(details: &pb::PatientDetails, request_id: &str) -> pb::RegisterPatientRequest {
    pb::RegisterPatientRequest {
        details: Some(details.clone()),
        request_id: request_id.into(),
        reason: String::new(),
    }
}

#[tokio::test]
async fn the_same_request_id_sent_twice_appends_once_and_returns_the_first_result() {
    let stack = TestStack::start().await;
    let mut client = stack.client();
    let details = jane_smith();
    let request = || registration(&details, "reg-7f3a");
    let first = client
        .register_patient(stack.req(request()))
        .await
        .expect("first")
        .into_inner();
    let after_first = stack.last_sequence().await;
    let second = client
        .register_patient(stack.req(request()))
        .await
        .expect("second")
        .into_inner();
    assert_eq!(second.patient_id, first.patient_id);
    assert_eq!(second.stream_sequence, first.stream_sequence);
    assert_eq!(
        stack.last_sequence().await,
        after_first,
        "nothing appended by the repeat"
    );
    // and the repeat's answer, the record as it stands, is audited as a read
    assert!(
        stack
            .access_events(&first.patient_id)
            .await
            .iter()
            .any(|(_, e)| e.method == "RegisterPatient"),
        "the repeated registration's answer is audited"
    );

    let flag = || pb::PatientFlagRequest {
        patient_id: first.patient_id.clone(),
        request_id: "restrict-1".into(),
        reason: String::new(),
    };
    let marked = client
        .mark_restricted(stack.req(flag()))
        .await
        .expect("mark")
        .into_inner();
    let before = stack.last_sequence().await;
    let again = client
        .mark_restricted(stack.req(flag()))
        .await
        .expect("mark again")
        .into_inner();
    assert_eq!(again.stream_sequence, marked.stream_sequence);
    assert_eq!(stack.last_sequence().await, before);
    stack.stop().await;
}

/// The telephone number a patient resource shows.
fn phone_of(patient: &pb::Patient) -> Option<&str> {
    patient
        .details
        .as_ref()
        .and_then(|d| d.telecom.first())
        .map(|t| t.value.as_str())
}

#[tokio::test]
async fn a_request_id_reused_on_another_patient_changes_that_patient_and_answers_for_it() {
    let stack = TestStack::start().await;
    let mut client = stack.client();
    let a = stack.register(jane_smith()).await;
    let b = stack.register(jane_smith()).await;
    let update = |patient: &str, number: &str| pb::UpdateDemographicsRequest {
        request_id: "phone-1".into(),
        ..new_phone(patient, number)
    };

    // Given dr-jones changed A's telephone with request id "phone-1"
    let on_a = client
        .update_demographics(stack.req(update(&a.patient_id, "0113 496 0001")))
        .await
        .expect("update A")
        .into_inner();
    assert_eq!(on_a.patient_id, a.patient_id);

    // When dr-jones sends request id "phone-1" again, within the duplicate
    // window, to change B's telephone
    let b_request = update(&b.patient_id, "0113 496 0002");
    let on_b = client
        .update_demographics(stack.req(b_request.clone()))
        .await
        .expect("update B")
        .into_inner();

    // Then B is changed and the answer names B
    assert_eq!(on_b.patient_id, b.patient_id);
    assert_eq!(on_b.version, 2);
    assert_eq!(phone_of(&on_b), Some("0113 496 0002"));
    assert!(
        on_b.stream_sequence > on_a.stream_sequence,
        "B's change was stored"
    );
    // and A is as its own change left it
    let a_now = client
        .get_patient(stack.req(pb::GetPatientRequest {
            patient_id: a.patient_id.clone(),
            min_sequence: on_b.stream_sequence,
        }))
        .await
        .expect("get A")
        .into_inner();
    assert_eq!(a_now.version, 2);
    assert_eq!(phone_of(&a_now), Some("0113 496 0001"));
    let b_now = client
        .get_patient(stack.req(pb::GetPatientRequest {
            patient_id: b.patient_id.clone(),
            min_sequence: on_b.stream_sequence,
        }))
        .await
        .expect("get B")
        .into_inner();
    assert_eq!(phone_of(&b_now), Some("0113 496 0002"));

    // And when B's request is sent again, it is answered with B's first
    // result and nothing is appended
    let before = stack.last_sequence().await;
    let again = client
        .update_demographics(stack.req(b_request))
        .await
        .expect("B again")
        .into_inner();
    assert_eq!(again.patient_id, b.patient_id);
    assert_eq!(again.stream_sequence, on_b.stream_sequence);
    assert_eq!(again.version, on_b.version);
    assert_eq!(stack.last_sequence().await, before, "nothing appended");
    stack.stop().await;
}

/// The refusal of a request id that was used for another request.
fn assert_reused(status: &tonic::Status) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(status), ["request_id"]);
    assert_eq!(reason(status), "REQUEST_ID_REUSED");
}

#[tokio::test]
async fn a_request_id_sent_again_with_a_different_request_is_refused_and_appends_nothing() {
    let stack = TestStack::start().await;
    let mut client = stack.client();

    // Given dr-jones registered Jane Smith with request id "reg-1"
    let jane = client
        .register_patient(stack.req(pb::RegisterPatientRequest {
            details: Some(jane_smith()),
            request_id: "reg-1".into(),
            reason: String::new(),
        }))
        .await
        .expect("register Jane")
        .into_inner();
    let before = stack.last_sequence().await;

    // When a client bug sends "reg-1" again to register another person
    let mut john = jane_smith();
    john.nhs_number = test_nhs_number();
    if let Some(name) = john.name.as_mut() {
        name.given = vec!["John".into()];
    }
    let refused = client
        .register_patient(stack.req(pb::RegisterPatientRequest {
            details: Some(john),
            request_id: "reg-1".into(),
            reason: String::new(),
        }))
        .await
        .expect_err("a second person under the first one's request id");

    // Then it is refused naming the request id, not answered with Jane's
    // record as though John had been registered, and nothing is appended
    assert_reused(&refused);
    assert_eq!(stack.last_sequence().await, before, "nothing appended");

    // Given a second patient, and Jane's telephone changed with "phone-1"
    let duplicate = stack.register(jane_smith()).await;
    client
        .update_demographics(stack.req(pb::UpdateDemographicsRequest {
            request_id: "phone-1".into(),
            ..new_phone(&jane.patient_id, "0113 496 0001")
        }))
        .await
        .expect("update Jane");
    let before = stack.last_sequence().await;

    // When "phone-1" is sent again to merge the second record into Jane's
    let merge = |request_id: &str| pb::MergePatientRequest {
        duplicate_patient_id: duplicate.patient_id.clone(),
        survivor_patient_id: jane.patient_id.clone(),
        reason: "same person registered twice".into(),
        request_id: request_id.into(),
    };
    let refused = client
        .merge_patient(stack.req(merge("phone-1")))
        .await
        .expect_err("a merge under the telephone change's request id");

    // Then the merge is refused, not answered as the telephone change
    assert_reused(&refused);
    assert_eq!(stack.last_sequence().await, before, "nothing appended");
    // and so is another telephone number under the same request id
    let refused = client
        .update_demographics(stack.req(pb::UpdateDemographicsRequest {
            request_id: "phone-1".into(),
            ..new_phone(&jane.patient_id, "0113 496 0009")
        }))
        .await
        .expect_err("another change under the same request id");
    assert_reused(&refused);
    assert_eq!(stack.last_sequence().await, before, "nothing appended");

    // And the merge goes through under a request id of its own
    let merged = client
        .merge_patient(stack.req(merge("merge-1")))
        .await
        .expect("merge")
        .into_inner();
    assert_eq!(
        merged.duplicate.map(|d| d.merged_into_patient_id),
        Some(jane.patient_id.clone())
    );
    // and sent again, it answers with the same position (the survivor's
    // commit, the later of its two) and appends nothing
    let after_merge = stack.last_sequence().await;
    let again = client
        .merge_patient(stack.req(merge("merge-1")))
        .await
        .expect("the merge again")
        .into_inner();
    assert_eq!(again.stream_sequence, merged.stream_sequence);
    assert_eq!(stack.last_sequence().await, after_merge, "nothing appended");
    stack.stop().await;
}

/// A repeated registration answers with the patient it registered, even
/// once the NHS number it claimed was corrected away and taken by another
/// patient: the claim is not judged again for a command already stored.
#[tokio::test]
async fn a_registration_sent_again_after_its_nhs_number_went_to_another_patient_returns_the_first_patient()
 {
    // Given Jane registered under "reg-jane" with NHS number V,
    let stack = TestStack::start().await;
    let mut client = stack.client();
    let details = jane_smith();
    let number = details.nhs_number.clone();
    let register = || registration(&details, "reg-jane");
    let jane = client
        .register_patient(stack.req(register()))
        .await
        .expect("register Jane")
        .into_inner();
    // her number corrected to W, and V then given to John,
    let corrected = pb::PatientDetails {
        nhs_number: test_nhs_number(),
        ..jane_smith()
    };
    let corrected = client
        .update_demographics(stack.req(update_request(
            &jane.patient_id,
            corrected,
            &["nhs_number", "nhs_number_verification_status"],
        )))
        .await
        .expect("Jane's number corrected")
        .into_inner();
    let mut john = jane_smith();
    john.name.as_mut().expect("name").given = vec!["John".into()];
    john.nhs_number = number;
    stack.register(john).await;
    let before = stack.last_sequence().await;

    // when Jane's registration is sent again,
    let again = client
        .register_patient(stack.req(register()))
        .await
        .expect("the registration again")
        .into_inner();

    // then it answers with Jane's record as it stands, not John's claim,
    // and appends nothing
    assert_eq!(again.patient_id, jane.patient_id);
    assert_eq!(again.stream_sequence, corrected.stream_sequence);
    assert_eq!(stack.last_sequence().await, before, "nothing appended");
    stack.stop().await;
}

/// A repeated registration shows the patient as they stand: once they have
/// moved to another practice, the old practice's repeat is refused as any
/// read of the record would be, and the refusal recorded.
#[tokio::test]
async fn a_registration_sent_again_after_the_patient_moved_practice_is_refused_to_the_old_practice()
{
    // Given Jane registered at A81001 under "reg-jane", who has moved to
    // B82002 since
    let stack = TestStack::start().await;
    let mut client = stack.client();
    let details = jane_smith();
    let register = || registration(&details, "reg-jane");
    let jane = client
        .register_patient(stack.req(register()))
        .await
        .expect("register Jane")
        .into_inner();
    let moved = pb::PatientDetails {
        registered_practice_ods: "B82002".into(),
        ..details.clone()
    };
    client
        .update_demographics(stack.req(update_request(
            &jane.patient_id,
            moved,
            &["registered_practice_ods"],
        )))
        .await
        .expect("moved to B82002");
    let before = stack.last_sequence().await;

    // When the old practice sends her registration again
    let status = client
        .register_patient(stack.req(register()))
        .await
        .expect_err("her old practice no longer has access");

    // Then it is refused, as a read of her record would be, nothing is
    // appended, and the refusal is recorded
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.get_details_error_info().map(|i| i.reason),
        Some("NO_LEGITIMATE_RELATIONSHIP".into())
    );
    assert_eq!(stack.last_sequence().await, before);
    let refusals = stack.refusals(&jane.patient_id).await;
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].method, "RegisterPatient");
    stack.stop().await;
}

#[tokio::test]
async fn an_nhs_number_belongs_to_one_patient_only() {
    let stack = TestStack::start().await;
    let details = jane_smith();
    let jane = stack.register(details.clone()).await;
    let before = stack.last_sequence().await;
    let err = stack
        .client()
        .register_patient(stack.req(pb::RegisterPatientRequest {
            details: Some(details),
            ..Default::default()
        }))
        .await
        .expect_err("duplicate NHS number");
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(
        err.message().contains(&jane.patient_id),
        "{}",
        err.message()
    );
    assert_eq!(
        err.get_details_error_info()
            .map(|i| i.metadata.get("existingPatientId").cloned()),
        Some(Some(jane.patient_id))
    );
    assert_eq!(stack.last_sequence().await, before);
    stack.stop().await;
}

#[tokio::test]
async fn a_deceased_patient_accepts_only_corrections_and_amendments_of_the_death() {
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let mut client = stack.client();
    client
        .record_death(stack.req(pb::RecordDeathRequest {
            patient_id: jane.patient_id.clone(),
            date_of_death: Some(PartialDate {
                year: 2024,
                month: 2,
                day: 1,
            }),
            ..Default::default()
        }))
        .await
        .expect("death recorded");
    let rename = |correction: bool, reason: &str| pb::UpdateDemographicsRequest {
        patient_id: jane.patient_id.clone(),
        details: Some(pb::PatientDetails {
            name: Some(pb::HumanName {
                family: "Smyth".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        update_mask: mask(&["name.family"]),
        correction,
        reason: reason.into(),
        ..Default::default()
    };
    let refused = client
        .update_demographics(stack.req(rename(false, "")))
        .await
        .expect_err("deceased");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.get_details_error_info().map(|i| i.reason),
        Some("PATIENT_DECEASED".into())
    );
    let corrected = client
        .update_demographics(stack.req(rename(true, "spelling on the death certificate")))
        .await
        .expect("correction")
        .into_inner();
    assert_eq!(
        corrected.details.and_then(|d| d.name).map(|n| n.family),
        Some("Smyth".into())
    );
    let amended = client
        .amend_death(stack.req(pb::AmendDeathRequest {
            patient_id: jane.patient_id.clone(),
            date_of_death: Some(PartialDate {
                year: 2024,
                month: 2,
                day: 2,
            }),
            reason: "coroner's date".into(),
            ..Default::default()
        }))
        .await
        .expect("amended")
        .into_inner();
    assert_eq!(
        amended.date_of_death,
        Some(PartialDate {
            year: 2024,
            month: 2,
            day: 2
        })
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_restricted_record_shows_no_address_telecom_or_practice() {
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let mut client = stack.client();
    let marked = client
        .mark_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: jane.patient_id.clone(),
            ..Default::default()
        }))
        .await
        .expect("restricted")
        .into_inner();
    // Read by a nurse of the practice, who does not manage demographics
    // (its demographics staff see everything: docs/access.md).
    let got = client
        .get_patient(stack.req_in_role(
            "nurse-khan",
            "A81001",
            "R8001",
            pb::GetPatientRequest {
                patient_id: jane.patient_id.clone(),
                min_sequence: marked.stream_sequence,
            },
        ))
        .await
        .expect("get")
        .into_inner();
    assert!(got.restricted && got.withheld);
    let d = got.details.expect("details");
    assert!(d.addresses.is_empty() && d.telecom.is_empty() && d.registered_practice_ods.is_empty());
    assert_eq!(d.name.map(|n| n.family), Some("Smith".into()));
    let cleared = client
        .clear_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: jane.patient_id.clone(),
            ..Default::default()
        }))
        .await
        .expect_err("a reason is needed");
    assert_eq!(cleared.code(), Code::InvalidArgument);
    let objected = client
        .record_sharing_objection(stack.req(pb::PatientFlagRequest {
            patient_id: jane.patient_id.clone(),
            ..Default::default()
        }))
        .await
        .expect("objection")
        .into_inner();
    assert!(objected.sharing_objection);
    stack.stop().await;
}

/// A duplicate merged into Jane is Jane (ADR 0034): once she is restricted,
/// the duplicate's postcode no longer finds it, and a search by her name
/// shows it without its address.
#[tokio::test]
async fn a_restriction_of_the_survivor_hides_the_merged_duplicates_address_from_searches() {
    // Given a temporary registration of Jane at her refuge's postcode,
    // merged into her record, and Jane restricted since
    let stack = TestStack::start().await;
    let mut client = stack.client();
    let jane = stack.register(jane_smith()).await;
    let mut temporary = jane_smith();
    temporary.nhs_number.clear();
    temporary.nhs_number_verification_status = pb::NhsNumberVerificationStatus::NotPresent as i32;
    temporary.addresses[0].lines = vec!["2 Refuge Lane".into()];
    temporary.addresses[0].postcode = "LS2 7EW".into();
    let duplicate = stack.register(temporary).await;
    client
        .merge_patient(stack.req(pb::MergePatientRequest {
            duplicate_patient_id: duplicate.patient_id.clone(),
            survivor_patient_id: jane.patient_id.clone(),
            reason: "same person registered twice".into(),
            request_id: "merge-refuge".into(),
        }))
        .await
        .expect("merged");
    let marked = client
        .mark_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: jane.patient_id.clone(),
            reason: "at risk of harm".into(),
            ..Default::default()
        }))
        .await
        .expect("restricted")
        .into_inner();
    let as_nurse = |search: pb::SearchPatientsRequest| {
        stack.req_in_role(
            "nurse-khan",
            "A81001",
            "R8001",
            pb::SearchPatientsRequest {
                min_sequence: marked.stream_sequence,
                ..search
            },
        )
    };

    // When a nurse of the practice searches the refuge's postcode
    let found = client
        .search_patients(as_nurse(pb::SearchPatientsRequest {
            postcode: "LS2 7EW".into(),
            ..Default::default()
        }))
        .await
        .expect("search")
        .into_inner()
        .patients;
    // Then the search does not find the duplicate there
    assert!(found.is_empty(), "{found:?}");

    // And when she searches Jane's name and date of birth
    let by_name = client
        .search_patients(as_nurse(pb::SearchPatientsRequest {
            family_name: "Smith".into(),
            birth_date: jane_smith().birth_date,
            ..Default::default()
        }))
        .await
        .expect("search")
        .into_inner()
        .patients;
    // Then both records are found, neither with an address
    assert_eq!(by_name.len(), 2);
    for patient in &by_name {
        let d = patient.details.as_ref().expect("details");
        assert!(patient.withheld, "{}", patient.patient_id);
        assert!(d.addresses.is_empty(), "{d:?}");
    }
    stack.stop().await;
}

/// A search judges each patient by the event store, not by a read-model row
/// that has not caught up: a restriction recorded a moment ago hides the
/// address at once.
#[tokio::test]
async fn a_restriction_not_yet_projected_already_hides_the_address_from_a_search() {
    // Given Jane registered and projected, then the projectors stopped
    let stack = TestStack::without_projectors().await;
    let jane = stack.register(jane_smith()).await;
    stack.project_patients_until(jane.stream_sequence).await;
    // and her restriction recorded since, which her row does not show
    let mut client = stack.client();
    client
        .mark_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: jane.patient_id.clone(),
            reason: "at risk of harm".into(),
            ..Default::default()
        }))
        .await
        .expect("restricted");
    let nurse = |search: pb::SearchPatientsRequest| {
        stack.req_in_role("nurse-khan", "A81001", "R8001", search)
    };

    // When a nurse of the practice searches her NHS number
    let found = client
        .search_patients(nurse(pb::SearchPatientsRequest {
            nhs_number: jane.details.as_ref().expect("details").nhs_number.clone(),
            ..Default::default()
        }))
        .await
        .expect("search")
        .into_inner()
        .patients;

    // Then she is shown without her address
    assert_eq!(found.len(), 1);
    assert!(found[0].withheld);
    let d = found[0].details.as_ref().expect("details");
    assert!(d.addresses.is_empty(), "{d:?}");
    // and her postcode does not find her
    let by_postcode = client
        .search_patients(nurse(pb::SearchPatientsRequest {
            postcode: "LS1 5AB".into(),
            ..Default::default()
        }))
        .await
        .expect("search")
        .into_inner()
        .patients;
    assert!(by_postcode.is_empty(), "{by_postcode:?}");
    stack.stop().await;
}

#[tokio::test]
async fn a_restriction_hides_what_earlier_versions_and_postcode_searches_would_tell() {
    // Given Jane, who moved house, and was then restricted (the S flag)
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let id = jane.patient_id.clone();
    let mut client = stack.client();
    let mut moved = jane_smith();
    moved.addresses[0].lines = vec!["2 Refuge Lane".into()];
    moved.addresses[0].postcode = "LS2 7EW".into();
    client
        .update_demographics(stack.req(pb::UpdateDemographicsRequest {
            patient_id: id.clone(),
            details: Some(moved),
            update_mask: mask(&["addresses"]),
            ..Default::default()
        }))
        .await
        .expect("moved");
    let marked = client
        .mark_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: id.clone(),
            reason: "at risk of harm".into(),
            ..Default::default()
        }))
        .await
        .expect("restricted")
        .into_inner();
    let versions = || pb::ListPatientVersionsRequest {
        patient_id: id.clone(),
        min_sequence: marked.stream_sequence,
        ..Default::default()
    };

    // When a nurse of the practice, who does not manage demographics, lists
    // her versions
    let listed = client
        .list_patient_versions(stack.req_in_role("nurse-khan", "A81001", "R8001", versions()))
        .await
        .expect("versions")
        .into_inner()
        .versions;

    // Then no version shows an address, telephone, practice or the
    // organisation that wrote it, not even those written before the
    // restriction
    assert_eq!(listed.len(), 3);
    for version in &listed {
        let patient = version.patient.as_ref().expect("patient");
        let d = patient.details.as_ref().expect("details");
        assert!(patient.withheld, "version {}", version.version);
        assert!(
            d.addresses.is_empty() && d.telecom.is_empty() && d.registered_practice_ods.is_empty(),
            "version {}: {d:?}",
            version.version
        );
        assert_eq!(version.actor_organisation_ods, "");
        assert_eq!(d.name.as_ref().map(|n| n.family.as_str()), Some("Smith"));
    }
    // nor the restriction's reason, which may say what it protects
    let restriction = listed.last().expect("the restriction");
    assert!(restriction.reason.is_empty() && restriction.reason_withheld);
    // while the practice's demographics staff still see every address she had
    let whole = client
        .list_patient_versions(stack.req(versions()))
        .await
        .expect("versions")
        .into_inner()
        .versions;
    let postcodes: Vec<String> = whole
        .iter()
        .map(|v| {
            let d = v.patient.as_ref().and_then(|p| p.details.as_ref());
            d.map(|d| d.addresses[0].postcode.clone())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(postcodes, ["LS1 5AB", "LS2 7EW", "LS2 7EW"]);
    assert!(whole.iter().all(|v| v.actor_organisation_ods == "A81001"));
    assert_eq!(whole[2].reason, "at risk of harm");
    assert!(!whole[2].reason_withheld);

    // When anyone searches her postcode, even her own practice
    let found = client
        .search_patients(stack.req(pb::SearchPatientsRequest {
            postcode: "LS2 7EW".into(),
            min_sequence: marked.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("search")
        .into_inner()
        .patients;
    // Then the search does not find her there
    assert!(found.is_empty(), "{found:?}");
    // but her name and date of birth still find her
    let by_name = client
        .search_patients(stack.req_in_role(
            "nurse-khan",
            "A81001",
            "R8001",
            pb::SearchPatientsRequest {
                family_name: "Smith".into(),
                birth_date: jane_smith().birth_date,
                min_sequence: marked.stream_sequence,
                ..Default::default()
            },
        ))
        .await
        .expect("search")
        .into_inner()
        .patients;
    assert_eq!(by_name.len(), 1);
    assert!(by_name[0].withheld);

    // And once the restriction is cleared, her postcode finds her again
    let cleared = client
        .clear_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: id.clone(),
            reason: "no longer at risk".into(),
            ..Default::default()
        }))
        .await
        .expect("cleared")
        .into_inner();
    let found = client
        .search_patients(stack.req_in_role(
            "nurse-khan",
            "A81001",
            "R8001",
            pb::SearchPatientsRequest {
                postcode: "LS2 7EW".into(),
                min_sequence: cleared.stream_sequence,
                ..Default::default()
            },
        ))
        .await
        .expect("search")
        .into_inner()
        .patients;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].patient_id, id);
    stack.stop().await;
}

#[tokio::test]
async fn a_postcode_search_fills_its_page_past_a_household_member_restricted_a_moment_ago() {
    // Given three members of one household registered and projected
    let stack = TestStack::without_projectors().await;
    let mut household = Vec::new();
    for given in ["Jane", "John", "Amy"] {
        let mut details = jane_smith();
        details.name.as_mut().expect("name").given = vec![given.into()];
        household.push(stack.register(details).await);
    }
    stack
        .project_patients_until(household[2].stream_sequence)
        .await;
    // and the second restricted since, which the read model does not show yet
    let mut client = stack.client();
    client
        .mark_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: household[1].patient_id.clone(),
            reason: "at risk of harm".into(),
            ..Default::default()
        }))
        .await
        .expect("restricted");

    // When a nurse of the practice searches their postcode two at a time
    let search = |page_token: String| {
        stack.req_in_role(
            "nurse-khan",
            "A81001",
            "R8001",
            pb::SearchPatientsRequest {
                postcode: "LS1 5AB".into(),
                page_size: 2,
                page_token,
                ..Default::default()
            },
        )
    };
    let first = client
        .search_patients(search(String::new()))
        .await
        .expect("search")
        .into_inner();

    // Then the first page is full: the restricted member is left out and
    // the page goes on to the one after them
    let ids = |page: &pb::SearchPatientsResponse| {
        page.patients
            .iter()
            .map(|p| p.patient_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&first),
        vec![
            household[0].patient_id.clone(),
            household[2].patient_id.clone()
        ]
    );
    // and, nothing following it, it says so
    assert!(first.next_page_token.is_empty(), "{first:?}");
    stack.stop().await;
}
