//! Who may see which patient (ADR 0020): the one access decision of
//! carelog, pure. Given the caller's organisation, user and teams, the
//! patient's facts, the sharing agreements and organisation groups in force,
//! the legitimate relationships on record and an optional break-glass
//! reason, it grants naming the rule that held or refuses naming the rule
//! that failed. It never looks at clinical content.
//!
//! The rules, tried in order (the first that holds is the one recorded):
//! 1. `registered`: the patient is registered at the caller's organisation;
//! 2. `agreement:<id>`: an agreement in force shares from the registered
//!    organisation (or a group holding it) to the caller's organisation (or
//!    a group holding it), and the patient has not objected to sharing;
//! 3. `task:<id>` / `consultation:<id>`: an open task about the patient
//!    assigned to the caller, one of the caller's teams or the caller's
//!    organisation; or a consultation the caller's organisation started in
//!    the last 24 hours and has not signed (the consultations service also
//!    admits the write-up of an older draft to that draft alone);
//! 4. `break_glass`: the caller stated an emergency reason.
//!
//! Whether the role may call the RPC at all is `policy::Policy::check`,
//! asked before this.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use tonic::Code;

use crate::error::Failure;

/// The caller, as far as access is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub user_id: &'a str,
    pub organisation: &'a str,
    pub teams: &'a [String],
}

/// What access needs to know about the patient (from the demographics
/// history: registered practice, objection, S-flag).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientAccess {
    pub patient_id: String,
    /// ODS code of the registered practice ("" when none).
    pub registered_practice: String,
    pub sharing_objection: bool,
    pub restricted: bool,
}

impl PatientAccess {
    /// The facts of a record merged into `survivor`: the same person, so a
    /// flag on either protects it, and the survivor's practice (when it has
    /// one) holds it.
    pub fn as_merged_into(&self, survivor: &PatientAccess) -> PatientAccess {
        PatientAccess {
            patient_id: self.patient_id.clone(),
            registered_practice: if survivor.registered_practice.is_empty() {
                self.registered_practice.clone()
            } else {
                survivor.registered_practice.clone()
            },
            sharing_objection: self.sharing_objection || survivor.sharing_objection,
            restricted: self.restricted || survivor.restricted,
        }
    }
}

/// One side of a sharing agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Party {
    Organisation(String),
    Group(String),
}

/// A sharing agreement for direct care, as projected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    pub id: String,
    pub from: Party,
    pub to: Party,
    pub valid_from: DateTime<Utc>,
    /// Exclusive; `None` is open-ended.
    pub valid_until: Option<DateTime<Utc>>,
    /// When it was ended early; access ends from that moment.
    pub ended_at: Option<DateTime<Utc>>,
}

impl Agreement {
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.valid_from <= now
            && self.valid_until.is_none_or(|until| now < until)
            && self.ended_at.is_none_or(|ended| now < ended)
    }
}

/// The agreements and organisation groups that may concern a decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sharing {
    pub agreements: Vec<Agreement>,
    /// Group id → member ODS codes.
    pub groups: BTreeMap<String, BTreeSet<String>>,
}

impl Sharing {
    fn holds(&self, party: &Party, organisation: &str) -> bool {
        match party {
            Party::Organisation(ods) => ods == organisation,
            Party::Group(group) => self
                .groups
                .get(group)
                .is_some_and(|members| members.contains(organisation)),
        }
    }

    /// The agreements sharing from `registered` to `caller`, in force or not.
    fn between<'a>(
        &'a self,
        registered: &'a str,
        caller: &'a str,
    ) -> impl Iterator<Item = &'a Agreement> + 'a {
        self.agreements
            .iter()
            .filter(move |a| self.holds(&a.from, registered) && self.holds(&a.to, caller))
    }
}

/// A legitimate relationship on record with the patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relationship {
    /// An open (not terminal) task about the patient.
    Task {
        id: String,
        owner_user_id: String,
        performer_team: String,
        performer_organisation: String,
    },
    /// A consultation not yet signed (nor entered in error), started by
    /// `organisation`.
    Consultation { id: String, organisation: String },
}

impl Relationship {
    fn serves(&self, caller: &Caller<'_>) -> bool {
        let given = |s: &str, wanted: &str| !s.is_empty() && s == wanted;
        match self {
            Self::Task {
                owner_user_id,
                performer_team,
                performer_organisation,
                ..
            } => {
                given(owner_user_id, caller.user_id)
                    || (!performer_team.is_empty()
                        && caller.teams.iter().any(|t| t == performer_team))
                    || given(performer_organisation, caller.organisation)
            }
            Self::Consultation { organisation, .. } => given(organisation, caller.organisation),
        }
    }
}

/// The rule that granted access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Registered,
    Agreement(String),
    Task(String),
    Consultation(String),
    BreakGlass,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registered => f.write_str("registered"),
            Self::Agreement(id) => write!(f, "agreement:{id}"),
            Self::Task(id) => write!(f, "task:{id}"),
            Self::Consultation(id) => write!(f, "consultation:{id}"),
            Self::BreakGlass => f.write_str("break_glass"),
        }
    }
}

/// Why access was refused: the rule that failed. Never clinical content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No rule holds: not registered here, no agreement, no relationship.
    NoLegitimateRelationship,
    /// An agreement in force would share, but the patient objected.
    SharingObjection,
    /// The only agreement that would share has ended or expired.
    AgreementEnded,
    /// A patient may only be registered at the caller's own organisation.
    RegisteringForAnotherOrganisation,
    /// Only the patient's registered practice may transfer the registration.
    NotTheRegisteredPractice,
    /// An agreement would share, but only for direct care, and the token
    /// states another purpose of use.
    PurposeNotDirectCare,
    /// The role does not grant the permission the RPC requires.
    PermissionMissing,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Self::NoLegitimateRelationship => "NO_LEGITIMATE_RELATIONSHIP",
            Self::SharingObjection => "SHARING_OBJECTION",
            Self::AgreementEnded => "AGREEMENT_ENDED",
            Self::RegisteringForAnotherOrganisation => "REGISTERING_FOR_ANOTHER_ORGANISATION",
            Self::NotTheRegisteredPractice => "NOT_THE_REGISTERED_PRACTICE",
            Self::PurposeNotDirectCare => "PURPOSE_NOT_DIRECT_CARE",
            Self::PermissionMissing => "PERMISSION_MISSING",
        }
    }

    fn explain(self) -> &'static str {
        match self {
            Self::NoLegitimateRelationship => {
                "the patient is not registered at your organisation, no sharing agreement covers it and it has no open task or consultation with the patient; state an emergency reason (x-carelog-break-glass) to break glass"
            }
            Self::SharingObjection => {
                "the patient has objected to sharing their record beyond their registered practice"
            }
            Self::AgreementEnded => {
                "the sharing agreement that covered your organisation has ended"
            }
            Self::RegisteringForAnotherOrganisation => {
                "a patient may only be registered at your own organisation (registered_practice_ods)"
            }
            Self::PurposeNotDirectCare => {
                "sharing agreements share a record for direct care only, and your token states another purpose of use"
            }
            Self::NotTheRegisteredPractice => {
                "only the patient's registered practice may change registered_practice_ods (a transfer); ask that practice"
            }
            Self::PermissionMissing => "your role does not grant the permission this call requires",
        }
    }

    /// The failure the caller is told (ADR 0021: PERMISSION_DENIED with the
    /// reason code, nothing about the record).
    pub fn failure(self) -> Failure {
        Failure::new(Code::PermissionDenied, self.code(), self.explain())
    }
}

/// Everything one decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub caller: Caller<'a>,
    pub patient: &'a PatientAccess,
    pub sharing: &'a Sharing,
    pub relationships: &'a [Relationship],
    /// The stated emergency reason, when the caller broke glass.
    pub break_glass: Option<&'a str>,
    /// The token's purpose of use: agreements share for direct care only.
    pub purpose_of_use: &'a str,
    pub now: DateTime<Utc>,
}

/// The purpose of use agreements share for (and a token's default).
pub const DIRECT_CARE: &str = "DIRECT_CARE";

/// May this caller access this patient?
pub fn decide(q: &Question<'_>) -> Result<Rule, Refusal> {
    let registered = q.patient.registered_practice.as_str();
    if !registered.is_empty() && registered == q.caller.organisation {
        return Ok(Rule::Registered);
    }
    let mut refusal = Refusal::NoLegitimateRelationship;
    if !registered.is_empty() {
        for agreement in q.sharing.between(registered, q.caller.organisation) {
            if !agreement.in_force(q.now) {
                if refusal == Refusal::NoLegitimateRelationship {
                    refusal = Refusal::AgreementEnded;
                }
            } else if q.patient.sharing_objection {
                refusal = Refusal::SharingObjection;
            } else if q.purpose_of_use != DIRECT_CARE {
                refusal = Refusal::PurposeNotDirectCare;
            } else {
                return Ok(Rule::Agreement(agreement.id.clone()));
            }
        }
    }
    if let Some(r) = q.relationships.iter().find(|r| r.serves(&q.caller)) {
        return Ok(match r {
            Relationship::Task { id, .. } => Rule::Task(id.clone()),
            Relationship::Consultation { id, .. } => Rule::Consultation(id.clone()),
        });
    }
    if q.break_glass
        .is_some_and(|reason| !reason.trim().is_empty())
    {
        return Ok(Rule::BreakGlass);
    }
    Err(refusal)
}

/// May this caller register a patient at `practice`? Only at their own
/// organisation (ADR 0021).
pub fn decide_registration(caller: &Caller<'_>, practice: &str) -> Result<Rule, Refusal> {
    if practice == caller.organisation {
        Ok(Rule::Registered)
    } else {
        Err(Refusal::RegisteringForAnotherOrganisation)
    }
}

/// May this caller change a patient's registered practice from `current`
/// to `new` (ADR 0021)? A transfer is the act of the current practice; a
/// patient with no practice may only be registered at the caller's own.
pub fn decide_transfer(caller: &Caller<'_>, current: &str, new: &str) -> Result<(), Refusal> {
    if new == current {
        Ok(())
    } else if current.is_empty() {
        decide_registration(caller, new).map(|_| ())
    } else if current == caller.organisation {
        Ok(())
    } else {
        Err(Refusal::NotTheRegisteredPractice)
    }
}

/// Whether the viewer may see a restricted (S-flag) patient's address,
/// telecom and registered practice: users of the registered organisation
/// who manage demographics.
pub fn sees_restricted(
    viewer_organisation: &str,
    manages_demographics: bool,
    patient: &PatientAccess,
) -> bool {
    !patient.restricted
        || (manages_demographics
            && !patient.registered_practice.is_empty()
            && patient.registered_practice == viewer_organisation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, day, 12, 0, 0)
            .single()
            .expect("valid")
    }

    fn patient(practice: &str, objection: bool) -> PatientAccess {
        PatientAccess {
            patient_id: "p1".into(),
            registered_practice: practice.into(),
            sharing_objection: objection,
            restricted: false,
        }
    }

    fn agreement(
        id: &str,
        from: Party,
        to: Party,
        until: Option<u32>,
        ended: Option<u32>,
    ) -> Agreement {
        Agreement {
            id: id.into(),
            from,
            to,
            valid_from: at(1),
            valid_until: until.map(at),
            ended_at: ended.map(at),
        }
    }

    fn sharing() -> Sharing {
        let mut groups = BTreeMap::new();
        groups.insert(
            "leeds-practices".to_owned(),
            ["A81001".to_owned(), "A81002".to_owned()].into(),
        );
        groups.insert("hospices".to_owned(), ["H00001".to_owned()].into());
        Sharing {
            agreements: vec![
                // Every Leeds practice shares with the community trust.
                agreement(
                    "g2o",
                    Party::Group("leeds-practices".into()),
                    Party::Organisation("RY600".into()),
                    None,
                    None,
                ),
                // A81001 shared with the hospices until the 10th.
                agreement(
                    "o2g",
                    Party::Organisation("A81001".into()),
                    Party::Group("hospices".into()),
                    Some(10),
                    None,
                ),
                // A81002 shared with the walk-in centre, ended on the 5th.
                agreement(
                    "ended",
                    Party::Organisation("A81002".into()),
                    Party::Organisation("W00001".into()),
                    None,
                    Some(5),
                ),
            ],
            groups,
        }
    }

    fn task(id: &str, owner: &str, team: &str, org: &str) -> Relationship {
        Relationship::Task {
            id: id.into(),
            owner_user_id: owner.into(),
            performer_team: team.into(),
            performer_organisation: org.into(),
        }
    }

    struct Case {
        name: &'static str,
        org: &'static str,
        user: &'static str,
        teams: &'static [&'static str],
        practice: &'static str,
        objection: bool,
        relationships: Vec<Relationship>,
        break_glass: Option<&'static str>,
        purpose: &'static str,
        day: u32,
        expect: Result<Rule, Refusal>,
    }

    fn case(name: &'static str, org: &'static str, practice: &'static str) -> Case {
        Case {
            name,
            org,
            user: "u-1",
            teams: &[],
            practice,
            objection: false,
            relationships: vec![],
            break_glass: None,
            purpose: DIRECT_CARE,
            day: 3,
            expect: Err(Refusal::NoLegitimateRelationship),
        }
    }

    #[test]
    fn each_rule_grants_or_refuses_as_the_model_says() {
        use Refusal::*;
        let cases = vec![
            Case {
                expect: Ok(Rule::Registered),
                ..case("registered here", "A81001", "A81001")
            },
            Case {
                objection: true,
                expect: Ok(Rule::Registered),
                ..case(
                    "the objection does not bind the registered practice",
                    "A81001",
                    "A81001",
                )
            },
            case("an unrelated organisation", "B82002", "A81001"),
            case("no registered practice", "B82002", ""),
            Case {
                expect: Ok(Rule::Agreement("g2o".into())),
                ..case("a group shares with an organisation", "RY600", "A81002")
            },
            Case {
                objection: true,
                expect: Err(SharingObjection),
                ..case("the patient objected", "RY600", "A81002")
            },
            Case {
                purpose: "RESEARCH",
                expect: Err(PurposeNotDirectCare),
                ..case(
                    "an agreement shares for direct care only",
                    "RY600",
                    "A81002",
                )
            },
            Case {
                purpose: "RESEARCH",
                expect: Ok(Rule::Registered),
                ..case(
                    "the registered practice for any purpose",
                    "A81001",
                    "A81001",
                )
            },
            Case {
                expect: Ok(Rule::Agreement("o2g".into())),
                ..case("an organisation shares with a group", "H00001", "A81001")
            },
            Case {
                day: 10,
                expect: Err(AgreementEnded),
                ..case("the agreement expired", "H00001", "A81001")
            },
            Case {
                day: 4,
                expect: Ok(Rule::Agreement("ended".into())),
                ..case("before the agreement was ended", "W00001", "A81002")
            },
            Case {
                day: 5,
                expect: Err(AgreementEnded),
                ..case("from the moment it was ended", "W00001", "A81002")
            },
            Case {
                relationships: vec![task("t1", "u-1", "", "")],
                expect: Ok(Rule::Task("t1".into())),
                ..case("a task owned by the caller", "B82002", "A81001")
            },
            Case {
                teams: &["B82002/district-nurses"],
                relationships: vec![task("t2", "", "B82002/district-nurses", "")],
                expect: Ok(Rule::Task("t2".into())),
                ..case("a task for the caller's team", "B82002", "A81001")
            },
            Case {
                teams: &["B82002/district-nurses"],
                relationships: vec![task("t2", "", "A81001/district-nurses", "")],
                ..case(
                    "a task for another organisation's team of the same name",
                    "B82002",
                    "A81001",
                )
            },
            Case {
                relationships: vec![task("t3", "", "", "B82002")],
                expect: Ok(Rule::Task("t3".into())),
                ..case("a task for the caller's organisation", "B82002", "A81001")
            },
            Case {
                relationships: vec![task("t4", "u-2", "pharmacists", "C83003")],
                ..case("a task for someone else", "B82002", "A81001")
            },
            Case {
                objection: true,
                relationships: vec![task("t5", "", "", "RY600")],
                expect: Ok(Rule::Task("t5".into())),
                ..case(
                    "a relationship holds despite an objection",
                    "RY600",
                    "A81002",
                )
            },
            Case {
                relationships: vec![Relationship::Consultation {
                    id: "c1".into(),
                    organisation: "B82002".into(),
                }],
                expect: Ok(Rule::Consultation("c1".into())),
                ..case(
                    "an open consultation of the caller's organisation",
                    "B82002",
                    "A81001",
                )
            },
            Case {
                break_glass: Some("unconscious in A&E"),
                expect: Ok(Rule::BreakGlass),
                ..case("break glass", "B82002", "A81001")
            },
            Case {
                break_glass: Some("  "),
                ..case("a blank reason is no reason", "B82002", "A81001")
            },
            Case {
                break_glass: Some("emergency"),
                expect: Ok(Rule::Registered),
                ..case("no glass broken when a rule holds", "A81001", "A81001")
            },
        ];
        for c in cases {
            let teams: Vec<String> = c.teams.iter().map(|t| (*t).to_owned()).collect();
            let patient = patient(c.practice, c.objection);
            let sharing = sharing();
            let q = Question {
                caller: Caller {
                    user_id: c.user,
                    organisation: c.org,
                    teams: &teams,
                },
                patient: &patient,
                sharing: &sharing,
                relationships: &c.relationships,
                break_glass: c.break_glass,
                purpose_of_use: c.purpose,
                now: at(c.day),
            };
            assert_eq!(decide(&q), c.expect, "{}", c.name);
        }
    }

    #[test]
    fn rules_and_refusals_have_stable_names() {
        assert_eq!(Rule::Agreement("a1".into()).to_string(), "agreement:a1");
        assert_eq!(Rule::BreakGlass.to_string(), "break_glass");
        let failure = Refusal::SharingObjection.failure();
        assert_eq!(failure.code, Code::PermissionDenied);
        assert_eq!(failure.reason, "SHARING_OBJECTION");
    }

    #[test]
    fn registration_is_at_the_callers_own_organisation() {
        let caller = Caller {
            user_id: "u",
            organisation: "A81001",
            teams: &[],
        };
        assert_eq!(decide_registration(&caller, "A81001"), Ok(Rule::Registered));
        assert_eq!(
            decide_registration(&caller, "B82002"),
            Err(Refusal::RegisteringForAnotherOrganisation)
        );
        assert!(decide_registration(&caller, "").is_err());
    }

    #[test]
    fn a_merged_record_is_protected_by_its_survivors_flags_and_held_by_its_practice() {
        let duplicate = PatientAccess {
            patient_id: "d".into(),
            registered_practice: "A81001".into(),
            ..Default::default()
        };
        let survivor = PatientAccess {
            patient_id: "s".into(),
            registered_practice: "B82002".into(),
            restricted: true,
            sharing_objection: true,
        };
        let merged = duplicate.as_merged_into(&survivor);
        assert_eq!(merged.patient_id, "d");
        assert_eq!(merged.registered_practice, "B82002");
        assert!(merged.restricted && merged.sharing_objection);
        // and a flag on the duplicate itself stays
        let flagged = PatientAccess {
            restricted: true,
            ..duplicate.clone()
        };
        let plain = PatientAccess {
            patient_id: "s".into(),
            ..Default::default()
        };
        let merged = flagged.as_merged_into(&plain);
        assert!(merged.restricted);
        assert_eq!(merged.registered_practice, "A81001");
    }

    #[test]
    fn only_the_registered_practice_transfers_a_patient() {
        let caller = |organisation| Caller {
            user_id: "u",
            organisation,
            teams: &[],
        };
        // The registered practice transfers its patient to another practice
        assert_eq!(
            decide_transfer(&caller("A81001"), "A81001", "B82002"),
            Ok(())
        );
        // Another organisation, however admitted, may not take the patient
        assert_eq!(
            decide_transfer(&caller("RY600"), "A81001", "RY600"),
            Err(Refusal::NotTheRegisteredPractice)
        );
        // nor leave a practice's patient without one
        assert_eq!(
            decide_transfer(&caller("RY600"), "A81001", ""),
            Err(Refusal::NotTheRegisteredPractice)
        );
        // A patient with no practice is registered at the caller's own only
        assert_eq!(decide_transfer(&caller("RY600"), "", "RY600"), Ok(()));
        assert_eq!(
            decide_transfer(&caller("RY600"), "", "A81001"),
            Err(Refusal::RegisteringForAnotherOrganisation)
        );
        // and an update that leaves the practice as it is needs nothing
        assert_eq!(
            decide_transfer(&caller("RY600"), "A81001", "A81001"),
            Ok(())
        );
    }

    #[test]
    fn a_restricted_record_is_seen_whole_only_by_its_practices_demographics_managers() {
        let mut p = patient("A81001", false);
        assert!(sees_restricted("B82002", false, &p));
        p.restricted = true;
        assert!(sees_restricted("A81001", true, &p));
        assert!(!sees_restricted("A81001", false, &p));
        assert!(!sees_restricted("B82002", true, &p));
    }
}
