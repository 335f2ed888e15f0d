//! One organisation group or one sharing agreement per aggregate, folded by
//! `apply` (no rules), changed by `decide` (every rule, no I/O).

use carelog_kernel::Aggregate;
use carelog_proto::sharing::v1 as pb;
use chrono::{DateTime, Utc};
use pb::event::Event as E;
use thiserror::Error;

/// A group or an agreement, as the resource it shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SharingRecord {
    pub group: Option<pb::OrganisationGroup>,
    pub agreement: Option<pb::SharingAgreement>,
}

impl Aggregate for SharingRecord {
    const CONTEXT: &'static str = "sharing";
    type Event = pb::Event;

    fn event_type(event: &pb::Event) -> &'static str {
        match &event.event {
            Some(E::GroupCreated(_)) => "OrganisationGroupCreated",
            Some(E::MemberAdded(_)) => "GroupMemberAdded",
            Some(E::MemberRemoved(_)) => "GroupMemberRemoved",
            Some(E::AgreementMade(_)) => "SharingAgreementMade",
            Some(E::AgreementEnded(_)) => "SharingAgreementEnded",
            None => "Unknown",
        }
    }

    fn apply(&mut self, event: &pb::Event) {
        match &event.event {
            Some(E::GroupCreated(e)) => {
                let mut members = e.member_ods.clone();
                members.sort();
                members.dedup();
                self.group = Some(pb::OrganisationGroup {
                    group_id: e.group_id.clone(),
                    name: e.name.clone(),
                    member_ods: members,
                    ..Default::default()
                });
            }
            Some(E::MemberAdded(e)) => {
                if let Some(g) = self.group.as_mut()
                    && let Err(at) = g.member_ods.binary_search(&e.organisation_ods)
                {
                    g.member_ods.insert(at, e.organisation_ods.clone());
                }
            }
            Some(E::MemberRemoved(e)) => {
                if let Some(g) = self.group.as_mut() {
                    g.member_ods.retain(|m| *m != e.organisation_ods);
                }
            }
            Some(E::AgreementMade(e)) => {
                self.agreement = Some(pb::SharingAgreement {
                    agreement_id: e.agreement_id.clone(),
                    from: e.from.clone(),
                    to: e.to.clone(),
                    purpose: e.purpose,
                    valid_from: e.valid_from,
                    valid_until: e.valid_until,
                    ..Default::default()
                });
            }
            Some(E::AgreementEnded(e)) => {
                if let Some(a) = self.agreement.as_mut() {
                    a.ended_at = e.ended_at;
                    a.ended_reason = e.reason.clone();
                }
            }
            None => {}
        }
    }
}

/// A sharing command, checked for shape at the edge.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    CreateGroup {
        group_id: String,
        name: String,
        members: Vec<String>,
    },
    AddMember {
        ods: String,
    },
    RemoveMember {
        ods: String,
    },
    MakeAgreement {
        agreement_id: String,
        from: pb::Party,
        to: pb::Party,
        valid_from: DateTime<Utc>,
        valid_until: Option<DateTime<Utc>>,
    },
    EndAgreement {
        at: DateTime<Utc>,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    #[error("{0} already exists")]
    Exists(String),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("{0} is already a member of the group")]
    AlreadyMember(String),
    #[error("{0} is not a member of the group")]
    NotMember(String),
    #[error("the agreement has already ended")]
    AlreadyEnded,
    #[error("{field} {rule}")]
    Invalid { field: &'static str, rule: String },
}

fn ts(at: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(carelog_kernel::envelope::timestamp(at))
}

/// What a command changes, or why it may not.
pub fn decide(record: &SharingRecord, command: &Command) -> Result<Vec<pb::Event>, Error> {
    let event = |e: E| pb::Event { event: Some(e) };
    match command {
        Command::CreateGroup {
            group_id,
            name,
            members,
        } => {
            if record.group.is_some() || record.agreement.is_some() {
                return Err(Error::Exists(group_id.clone()));
            }
            Ok(vec![event(E::GroupCreated(pb::OrganisationGroupCreated {
                group_id: group_id.clone(),
                name: name.clone(),
                member_ods: members.clone(),
            }))])
        }
        Command::AddMember { ods } => {
            let group = record.group.as_ref().ok_or(Error::NotFound("group"))?;
            if group.member_ods.contains(ods) {
                return Err(Error::AlreadyMember(ods.clone()));
            }
            Ok(vec![event(E::MemberAdded(pb::GroupMemberAdded {
                group_id: group.group_id.clone(),
                organisation_ods: ods.clone(),
            }))])
        }
        Command::RemoveMember { ods } => {
            let group = record.group.as_ref().ok_or(Error::NotFound("group"))?;
            if !group.member_ods.contains(ods) {
                return Err(Error::NotMember(ods.clone()));
            }
            Ok(vec![event(E::MemberRemoved(pb::GroupMemberRemoved {
                group_id: group.group_id.clone(),
                organisation_ods: ods.clone(),
            }))])
        }
        Command::MakeAgreement {
            agreement_id,
            from,
            to,
            valid_from,
            valid_until,
        } => {
            if record.group.is_some() || record.agreement.is_some() {
                return Err(Error::Exists(agreement_id.clone()));
            }
            if valid_until.is_some_and(|until| until <= *valid_from) {
                return Err(Error::Invalid {
                    field: "valid_until",
                    rule: "must be after valid_from".into(),
                });
            }
            Ok(vec![event(E::AgreementMade(pb::SharingAgreementMade {
                agreement_id: agreement_id.clone(),
                from: Some(from.clone()),
                to: Some(to.clone()),
                purpose: pb::SharingPurpose::DirectCare as i32,
                valid_from: ts(*valid_from),
                valid_until: valid_until.and_then(ts),
            }))])
        }
        Command::EndAgreement { at, reason } => {
            let agreement = record
                .agreement
                .as_ref()
                .ok_or(Error::NotFound("agreement"))?;
            if agreement.ended_at.is_some() {
                return Err(Error::AlreadyEnded);
            }
            Ok(vec![event(E::AgreementEnded(pb::SharingAgreementEnded {
                agreement_id: agreement.agreement_id.clone(),
                ended_at: ts(*at),
                reason: reason.clone(),
            }))])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(ods: &str) -> pb::Party {
        pb::Party {
            party: Some(pb::party::Party::OrganisationOds(ods.into())),
        }
    }

    fn fold(events: &[pb::Event]) -> SharingRecord {
        let mut r = SharingRecord::default();
        events.iter().for_each(|e| r.apply(e));
        r
    }

    #[test]
    fn a_group_gains_and_loses_members() {
        let created = decide(
            &SharingRecord::default(),
            &Command::CreateGroup {
                group_id: "g".into(),
                name: "Leeds practices".into(),
                members: vec!["A81002".into(), "A81001".into()],
            },
        )
        .expect("created");
        let mut record = fold(&created);
        assert_eq!(
            record.group.as_ref().map(|g| g.member_ods.clone()),
            Some(vec!["A81001".to_owned(), "A81002".to_owned()])
        );
        let added = decide(
            &record,
            &Command::AddMember {
                ods: "A81003".into(),
            },
        )
        .expect("added");
        added.iter().for_each(|e| record.apply(e));
        assert_eq!(
            decide(
                &record,
                &Command::AddMember {
                    ods: "A81003".into()
                }
            ),
            Err(Error::AlreadyMember("A81003".into()))
        );
        let removed = decide(
            &record,
            &Command::RemoveMember {
                ods: "A81001".into(),
            },
        )
        .expect("removed");
        removed.iter().for_each(|e| record.apply(e));
        assert_eq!(
            record.group.map(|g| g.member_ods),
            Some(vec!["A81002".to_owned(), "A81003".to_owned()])
        );
    }

    #[test]
    fn an_agreement_ends_once() {
        let now = Utc::now();
        let made = decide(
            &SharingRecord::default(),
            &Command::MakeAgreement {
                agreement_id: "a".into(),
                from: org("A81001"),
                to: org("RY600"),
                valid_from: now,
                valid_until: None,
            },
        )
        .expect("made");
        let mut record = fold(&made);
        let end = Command::EndAgreement {
            at: now,
            reason: "contract ended".into(),
        };
        decide(&record, &end)
            .expect("ended")
            .iter()
            .for_each(|e| record.apply(e));
        assert!(
            record
                .agreement
                .as_ref()
                .is_some_and(|a| a.ended_at.is_some())
        );
        assert_eq!(decide(&record, &end), Err(Error::AlreadyEnded));
        let backwards = Command::MakeAgreement {
            agreement_id: "b".into(),
            from: org("A81001"),
            to: org("RY600"),
            valid_from: now,
            valid_until: Some(now),
        };
        assert!(matches!(
            decide(&SharingRecord::default(), &backwards),
            Err(Error::Invalid { .. })
        ));
    }
}
