//! Every sharing event type has an encoded sample under tests/golden/, and
//! every sample must still decode to the same event (see
//! `carelog_tests::assert::golden_samples`).

use carelog_kernel::Aggregate as _;
use carelog_proto::sharing::v1 as pb;
use carelog_sharing::domain::SharingRecord;
use carelog_tests::assert::golden_samples;
use pb::event::Event as E;

fn at(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn samples() -> Vec<pb::Event> {
    let group_id = "01a20000-0000-7000-8000-0000000000a1".to_owned();
    let agreement_id = "01a20000-0000-7000-8000-0000000000b1".to_owned();
    [
        E::GroupCreated(pb::OrganisationGroupCreated {
            group_id: group_id.clone(),
            name: "West Yorkshire ICS".into(),
            member_ods: vec!["A81001".into(), "A81002".into()],
        }),
        E::MemberAdded(pb::GroupMemberAdded {
            group_id: group_id.clone(),
            organisation_ods: "A81003".into(),
        }),
        E::MemberRemoved(pb::GroupMemberRemoved {
            group_id: group_id.clone(),
            organisation_ods: "A81002".into(),
        }),
        E::AgreementMade(pb::SharingAgreementMade {
            agreement_id: agreement_id.clone(),
            from: Some(pb::Party {
                party: Some(pb::party::Party::GroupId(group_id)),
            }),
            to: Some(pb::Party {
                party: Some(pb::party::Party::OrganisationOds("RY600".into())),
            }),
            purpose: pb::SharingPurpose::DirectCare as i32,
            valid_from: at(1_767_225_600),
            valid_until: at(1_798_761_600),
        }),
        E::AgreementEnded(pb::SharingAgreementEnded {
            agreement_id,
            ended_at: at(1_780_000_000),
            reason: "DSA 2026/14 withdrawn".into(),
        }),
    ]
    .into_iter()
    .map(|e| pb::Event { event: Some(e) })
    .collect()
}

#[test]
fn every_sharing_event_type_has_a_golden_sample_that_still_decodes() {
    let mut record = SharingRecord::default();
    golden_samples::<SharingRecord>("sharing", samples(), |e| record.apply(e));
    let group = record.group.expect("the group");
    assert_eq!(group.member_ods, ["A81001", "A81003"]);
    assert!(record.agreement.is_some());
}
