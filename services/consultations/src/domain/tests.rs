//! Given past events, when a command, then these events or this refusal:
//! clinical scenarios of a GP consultation.

use carelog_demographics::gate::PatientFacts;
use carelog_kernel::date::PartialDate;
use carelog_kernel::envelope::timestamp;
use carelog_kernel::ids::{ConsultationId, EntryId, TopicId};
use carelog_kernel::{Aggregate, PatientId, Violations};
use carelog_proto::consultations::v1 as pb;
use chrono::{DateTime, Duration, TimeZone, Utc};
use pb::event::Event as E;
use pb::observation_value::Value;

use super::views::{latest_observations, problems};
use super::*;

const HYPERTENSION: &str = "38341003";
const BLOOD_PRESSURE: &str = "75367002";
const BODY_WEIGHT: &str = "27113001";
const ASTHMA: &str = "195967001";
/// The registered practice, author of the scenarios' consultations.
const PRACTICE: &str = "A81001";
/// A hospital that shares the record.
const HOSPITAL: &str = "RR8";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0)
        .single()
        .expect("present")
}

fn jane() -> PatientFacts {
    PatientFacts {
        id: PatientId::new(),
        birth_date: PartialDate::new(1950, 3, 14).ok(),
        deceased: false,
        date_of_death: None,
        registered_practice: "A81001".into(),
        restricted: false,
        sharing_objection: false,
        demographics_sequence: 1,
        merged_patient_ids: vec![],
    }
}

fn clinician(user: &str, role: &str) -> pb::Clinician {
    pb::Clinician {
        user_id: user.into(),
        display_name: format!("Dr {user}"),
        role: role.into(),
    }
}

/// A scenario: one patient's consultations and one open consultation.
struct Scenario {
    patient: PatientFacts,
    state: PatientConsultations,
    consultation: ConsultationId,
    topic: TopicId,
}

impl Scenario {
    fn new() -> Self {
        Self {
            patient: jane(),
            state: PatientConsultations::default(),
            consultation: ConsultationId::new(),
            topic: TopicId::new(),
        }
    }

    /// When `user` in `role` gives the command: the events, or the refusal.
    fn when_by(&self, user: &str, role: &str, command: Command) -> Result<Vec<pb::Event>, Error> {
        self.when_from(PRACTICE, user, role, command)
    }

    /// When `user` of `organisation` gives the command.
    fn when_from(
        &self,
        organisation: &str,
        user: &str,
        role: &str,
        command: Command,
    ) -> Result<Vec<pb::Event>, Error> {
        let ctx = Context {
            patient: &self.patient,
            clinician: clinician(user, role),
            organisation,
            now: now(),
        };
        decide(&self.state, &command, &ctx).map(|d| {
            d.changes
                .into_iter()
                .flat_map(|c| c.events)
                .map(|(e, _)| e)
                .collect()
        })
    }

    fn when(&self, command: Command) -> Result<Vec<pb::Event>, Error> {
        self.when_by("dr-jones", "R8000", command)
    }

    /// Given the command succeeded: its events are history.
    fn given(mut self, command: Command) -> Self {
        let events = self.when(command).expect("given command succeeds");
        events.iter().for_each(|e| self.state.apply(e));
        self
    }

    fn given_by(mut self, user: &str, role: &str, command: Command) -> Self {
        let events = self
            .when_by(user, role, command)
            .expect("given command succeeds");
        events.iter().for_each(|e| self.state.apply(e));
        self
    }

    fn start(&self) -> Command {
        self.start_at(now() - Duration::minutes(15))
    }

    /// The scenario's consultation, started at `start_time`.
    fn start_at(&self, start_time: DateTime<Utc>) -> Command {
        Command::Start {
            consultation: self.consultation,
            kind: pb::ConsultationType::FaceToFace,
            start_time,
            author: clinician("dr-jones", "R8000"),
            organisation: "A81001".into(),
        }
    }

    fn add(&self, entry: EntryId, content: pb::EntryContent) -> Command {
        let topic = if self
            .state
            .get(&self.consultation.to_string())
            .is_some_and(|c| !c.topics.is_empty())
        {
            TopicRef::Existing(self.topic)
        } else {
            TopicRef::New {
                id: self.topic,
                title: "Raised blood pressure".into(),
            }
        };
        Command::AddEntry {
            consultation: self.consultation,
            topic,
            entry,
            content,
            confidential: false,
            organisation: "A81001".into(),
        }
    }

    fn started() -> Self {
        let s = Self::new();
        let start = s.start();
        s.given(start)
    }

    fn consultation(&self) -> &pb::Consultation {
        self.state
            .get(&self.consultation.to_string())
            .expect("consultation")
    }
}

fn problem(status: pb::ProblemStatus) -> pb::EntryContent {
    pb::EntryContent {
        kind: pb::EntryKind::Problem as i32,
        concept_id: HYPERTENSION.into(),
        display: "Hypertension".into(),
        text: "Three raised readings".into(),
        problem: Some(pb::ProblemDetails {
            status: status as i32,
            significance: pb::ProblemSignificance::Major as i32,
        }),
        ..Default::default()
    }
}

fn blood_pressure(systolic: u32, diastolic: u32) -> pb::EntryContent {
    pb::EntryContent {
        kind: pb::EntryKind::Observation as i32,
        concept_id: BLOOD_PRESSURE.into(),
        display: "Blood pressure".into(),
        observation: Some(pb::ObservationValue {
            value: Some(Value::BloodPressure(pb::BloodPressure {
                systolic,
                diastolic,
                unit: String::new(),
            })),
        }),
        ..Default::default()
    }
}

fn weight(value: &str, unit: &str) -> pb::EntryContent {
    pb::EntryContent {
        kind: pb::EntryKind::Observation as i32,
        concept_id: BODY_WEIGHT.into(),
        display: "Body weight".into(),
        observation: Some(pb::ObservationValue {
            value: Some(Value::Quantity(pb::Quantity {
                value: value.into(),
                unit: unit.into(),
            })),
        }),
        ..Default::default()
    }
}

fn fields(err: Error) -> Vec<String> {
    match err {
        Error::Invalid(v) => v.iter().map(|v| v.field.clone()).collect(),
        other => panic!("expected invalid input, got {other:?}"),
    }
}

fn content_fields(content: &pb::EntryContent) -> Vec<String> {
    let mut v = Violations::new();
    values::check_content(content, "entry", now(), &mut v);
    v.iter().map(|v| v.field.clone()).collect()
}

fn one(events: Vec<pb::Event>) -> E {
    assert_eq!(events.len(), 1, "{events:?}");
    events
        .into_iter()
        .next()
        .and_then(|e| e.event)
        .expect("event")
}

// Starting a consultation

#[test]
fn given_a_living_patient_when_a_face_to_face_consultation_starts_then_it_is_a_draft_by_its_author()
{
    let s = Scenario::new();
    let E::ConsultationStarted(e) = one(s.when(s.start()).expect("present")) else {
        panic!("expected ConsultationStarted")
    };
    assert_eq!(e.author.expect("present").user_id, "dr-jones");
    assert_eq!(e.organisation_ods, "A81001");
    let s = Scenario::started();
    assert_eq!(
        s.consultation().status,
        pb::ConsultationStatus::Draft as i32
    );
}

#[test]
fn when_a_consultation_starts_tomorrow_then_it_is_refused_naming_start_time() {
    let s = Scenario::new();
    let err = s
        .when(s.start_at(now() + Duration::days(1)))
        .expect_err("refused");
    assert_eq!(fields(err), ["start_time"]);
}

#[test]
fn when_a_consultation_starts_before_the_patient_was_born_then_it_is_refused() {
    let s = Scenario::new();
    let before_birth = Utc
        .with_ymd_and_hms(1950, 3, 13, 9, 0, 0)
        .single()
        .expect("present");
    let err = s.when(s.start_at(before_birth)).expect_err("refused");
    assert_eq!(fields(err), ["start_time"]);
}

#[test]
fn given_a_baby_born_in_2025_when_an_entry_is_timed_before_her_birth_then_it_is_refused() {
    let mut s = Scenario::new();
    s.patient.birth_date = PartialDate::new(2025, 6, 1).ok();
    let start = s.start();
    let s = s.given(start);
    let in_1925 = |mut content: pb::EntryContent| {
        content.effective_time = Some(timestamp(
            Utc.with_ymd_and_hms(1925, 3, 1, 9, 0, 0)
                .single()
                .expect("present"),
        ));
        content
    };
    // When a problem is added as having started in 1925
    let err = s
        .when(s.add(EntryId::new(), in_1925(problem(pb::ProblemStatus::Active))))
        .expect_err("before birth");
    // Then it is refused naming the entry's clinical time
    assert_eq!(fields(err), ["entry.effective_time"]);

    // And given a problem added today, an edit that moves it before her
    // birth is refused too
    let entry = EntryId::new();
    let add = s.add(entry, problem(pb::ProblemStatus::Active));
    let s = s.given(add);
    let err = s
        .when(Command::EditEntry {
            consultation: s.consultation,
            entry,
            content: in_1925(problem(pb::ProblemStatus::Active)),
            paths: vec!["effective_time".into()],
        })
        .expect_err("before birth");
    assert_eq!(fields(err), ["entry.effective_time"]);
}

#[test]
fn a_clinical_time_outside_the_years_1850_to_9999_is_refused_at_the_edge() {
    // 7500 BC: a time chrono holds but a read model's timestamptz does not
    let content = pb::EntryContent {
        effective_time: Some(prost_types::Timestamp {
            seconds: -300_000_000_000,
            nanos: 0,
        }),
        ..blood_pressure(140, 90)
    };
    assert_eq!(content_fields(&content), ["entry.effective_time"]);
}

#[test]
fn given_a_birth_known_only_by_year_when_a_consultation_starts_that_year_then_it_is_accepted() {
    let mut s = Scenario::new();
    s.patient.birth_date = PartialDate::new(1950, 0, 0).ok();
    let that_year = Utc
        .with_ymd_and_hms(1950, 1, 2, 9, 0, 0)
        .single()
        .expect("present");
    assert!(s.when(s.start_at(that_year)).is_ok());
}

#[test]
fn given_a_started_consultation_when_it_is_started_again_then_it_already_exists() {
    let s = Scenario::started();
    assert!(matches!(
        s.when(s.start()),
        Err(Error::ConsultationExists(_))
    ));
}

// Adding entries

#[test]
fn given_a_draft_when_the_first_entry_is_added_then_a_topic_opens_and_the_entry_takes_the_start_time()
 {
    let s = Scenario::started();
    let events = s
        .when(s.add(EntryId::new(), blood_pressure(150, 95)))
        .expect("present");
    assert!(matches!(events[0].event, Some(E::TopicOpened(_))));
    let Some(E::EntryAdded(added)) = &events[1].event else {
        panic!("expected EntryAdded")
    };
    let content = added.content.clone().expect("present");
    assert_eq!(content.effective_time, s.consultation().start_time);
    let Some(Value::BloodPressure(bp)) = content.observation.expect("present").value else {
        panic!("expected a blood pressure")
    };
    assert_eq!(bp.unit, "mm[Hg]");
}

#[test]
fn given_a_topic_when_another_entry_is_added_to_it_then_no_new_topic_opens() {
    let s = Scenario::started();
    let first = s.add(EntryId::new(), blood_pressure(150, 95));
    let s = s.given(first);
    let events = s
        .when(s.add(EntryId::new(), problem(pb::ProblemStatus::Active)))
        .expect("present");
    assert!(matches!(one(events), E::EntryAdded(_)));
    assert_eq!(s.consultation().topics.len(), 1);
}

#[test]
fn when_an_entry_names_an_unknown_topic_or_consultation_then_it_is_not_found() {
    let s = Scenario::started();
    let first = s.add(EntryId::new(), blood_pressure(150, 95));
    let s = s.given(first);
    let err = s
        .when(Command::AddEntry {
            consultation: s.consultation,
            topic: TopicRef::Existing(TopicId::new()),
            entry: EntryId::new(),
            content: blood_pressure(140, 90),
            confidential: false,
            organisation: "A81001".into(),
        })
        .expect_err("refused");
    assert!(matches!(err, Error::TopicNotFound { .. }));
    let err = s
        .when(Command::AddEntry {
            consultation: ConsultationId::new(),
            topic: TopicRef::Existing(s.topic),
            entry: EntryId::new(),
            content: blood_pressure(140, 90),
            confidential: false,
            organisation: "A81001".into(),
        })
        .expect_err("refused");
    assert!(matches!(err, Error::ConsultationNotFound(_)));
}

fn signed_with(entry: EntryId, content: pb::EntryContent) -> Scenario {
    let s = Scenario::started();
    let add = s.add(entry, content);
    let s = s.given(add);
    let sign = Command::Sign {
        consultation: s.consultation,
    };
    s.given(sign)
}

#[test]
fn given_a_signed_consultation_when_a_new_entry_is_added_then_it_is_refused_as_signed() {
    let s = signed_with(EntryId::new(), blood_pressure(150, 95));
    assert!(matches!(
        s.when(s.add(EntryId::new(), weight("80", "kg"))),
        Err(Error::Signed(_))
    ));
}

// Editing a draft, amending a signed consultation

#[test]
fn given_a_draft_problem_when_its_status_is_edited_then_the_problem_list_follows() {
    let entry = EntryId::new();
    let s = Scenario::started();
    let add = s.add(entry, problem(pb::ProblemStatus::Active));
    let s = s.given(add);
    let edit = Command::EditEntry {
        consultation: s.consultation,
        entry,
        content: problem(pb::ProblemStatus::Resolved),
        paths: vec!["problem.status".into()],
    };
    let E::EntryEdited(e) = one(s.when(edit.clone()).expect("present")) else {
        panic!("expected EntryEdited")
    };
    assert_eq!(e.changed_paths, ["problem.status"]);
    let s = s.given(edit);
    let list = problems(&s.state);
    assert_eq!(list[0].status, pb::ProblemStatus::Resolved as i32);
    assert_eq!(s.consultation().topics[0].entries[0].revision, 2);
}

#[test]
fn given_a_signed_consultation_when_an_entry_is_edited_then_it_is_refused_amend_it_with_a_reason() {
    let entry = EntryId::new();
    let s = signed_with(entry, blood_pressure(150, 95));
    let err = s
        .when(Command::EditEntry {
            consultation: s.consultation,
            entry,
            content: blood_pressure(140, 90),
            paths: vec!["observation".into()],
        })
        .expect_err("refused");
    assert!(matches!(err, Error::Signed(_)));
    assert!(err.to_string().contains("amend"));
}

#[test]
fn given_a_signed_consultation_when_an_entry_is_amended_with_a_reason_then_the_original_stays_in_history()
 {
    let entry = EntryId::new();
    let s = signed_with(entry, problem(pb::ProblemStatus::Active));
    let amend = Command::AmendEntry {
        consultation: s.consultation,
        entry,
        content: problem(pb::ProblemStatus::Inactive),
        paths: vec!["problem.status".into()],
        reason: "Reviewed: controlled without treatment".into(),
    };
    let E::EntryAmended(e) = one(s.when(amend.clone()).expect("present")) else {
        panic!("expected EntryAmended")
    };
    assert_eq!(e.reason, "Reviewed: controlled without treatment");
    let before = s.consultation().clone();
    let s = s.given(amend);
    let after = &s.consultation().topics[0].entries[0];
    assert!(after.amended);
    assert_eq!(
        after
            .content
            .as_ref()
            .expect("present")
            .problem
            .expect("present")
            .status,
        pb::ProblemStatus::Inactive as i32
    );
    assert_eq!(
        before.topics[0].entries[0]
            .content
            .as_ref()
            .expect("present")
            .problem
            .expect("present")
            .status,
        pb::ProblemStatus::Active as i32
    );
}

#[test]
fn when_an_amendment_has_no_reason_then_it_is_refused_naming_reason() {
    let entry = EntryId::new();
    let s = signed_with(entry, problem(pb::ProblemStatus::Active));
    let err = s
        .when(Command::AmendEntry {
            consultation: s.consultation,
            entry,
            content: problem(pb::ProblemStatus::Inactive),
            paths: vec!["problem.status".into()],
            reason: " ".into(),
        })
        .expect_err("refused");
    assert_eq!(fields(err), ["reason"]);
}

#[test]
fn given_a_draft_when_an_entry_is_amended_then_it_is_refused_edit_it_instead() {
    let entry = EntryId::new();
    let s = Scenario::started();
    let add = s.add(entry, problem(pb::ProblemStatus::Active));
    let s = s.given(add);
    let err = s
        .when(Command::AmendEntry {
            consultation: s.consultation,
            entry,
            content: problem(pb::ProblemStatus::Inactive),
            paths: vec!["problem.status".into()],
            reason: "typo".into(),
        })
        .expect_err("refused");
    assert!(matches!(err, Error::NotSigned(_)));
}

#[test]
fn when_an_edit_would_leave_an_invalid_concept_then_it_is_refused_naming_the_field() {
    let entry = EntryId::new();
    let s = Scenario::started();
    let add = s.add(entry, problem(pb::ProblemStatus::Active));
    let s = s.given(add);
    let err = s
        .when(Command::EditEntry {
            consultation: s.consultation,
            entry,
            content: pb::EntryContent {
                concept_id: "38341004".into(),
                display: "Essential hypertension".into(),
                ..Default::default()
            },
            paths: vec!["concept_id".into(), "display".into()],
        })
        .expect_err("refused");
    assert_eq!(fields(err), ["entry.concept_id"]);
}

#[test]
fn when_an_edit_changes_a_problems_concept_but_not_its_term_then_it_is_refused_naming_the_display()
{
    // Given a draft hypertension problem
    let entry = EntryId::new();
    let s = Scenario::started();
    let add = s.add(entry, problem(pb::ProblemStatus::Active));
    let s = s.given(add);
    let to_asthma = |display: &str, paths: &[&str]| Command::EditEntry {
        consultation: s.consultation,
        entry,
        content: pb::EntryContent {
            concept_id: "195967001".into(),
            display: display.into(),
            ..Default::default()
        },
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    };
    // When its concept is changed to asthma alone, then the edit is refused
    // naming the display term, which would still say hypertension
    let err = s.when(to_asthma("", &["concept_id"])).expect_err("refused");
    assert_eq!(fields(err), ["entry.display"]);
    // and with asthma's own term, it is made
    let events = s
        .when(to_asthma("Asthma", &["concept_id", "display"]))
        .expect("edited");
    let E::EntryEdited(edited) = one(events) else {
        panic!("not an edit");
    };
    let content = edited.content.expect("content");
    assert_eq!(
        (content.concept_id.as_str(), content.display.as_str()),
        ("195967001", "Asthma")
    );
}

// Entered in error

#[test]
fn given_an_entry_when_it_is_marked_entered_in_error_then_it_leaves_current_views_but_not_the_record()
 {
    let entry = EntryId::new();
    let s = signed_with(entry, blood_pressure(150, 95));
    let mark = Command::MarkEntryInError {
        consultation: s.consultation,
        entry,
        reason: "Recorded against the wrong patient".into(),
    };
    assert!(matches!(
        one(s.when(mark.clone()).expect("present")),
        E::EntryEnteredInError(_)
    ));
    let s = s.given(mark);
    assert!(s.consultation().topics[0].entries[0].entered_in_error);
    assert!(current_view(s.consultation()).topics.is_empty());
    assert!(latest_observations(&s.state).is_empty());
}

#[test]
fn given_a_confidential_entry_when_another_organisation_names_it_then_it_is_not_there_for_them() {
    // Given the practice's confidential entry in an open consultation
    let entry = EntryId::new();
    let s = Scenario::started();
    let Command::AddEntry {
        consultation,
        topic,
        content,
        ..
    } = s.add(entry, blood_pressure(150, 95))
    else {
        unreachable!("add is AddEntry")
    };
    let s = s.given(Command::AddEntry {
        consultation,
        topic,
        entry,
        content,
        confidential: true,
        organisation: PRACTICE.into(),
    });
    let mark = Command::MarkEntryInError {
        consultation: s.consultation,
        entry,
        reason: "Recorded against the wrong patient".into(),
    };
    let edit = Command::EditEntry {
        consultation: s.consultation,
        entry,
        content: blood_pressure(120, 80),
        paths: vec!["observation".into()],
    };
    // When a hospital clinician names it by id, then it is not found, as if
    // it did not exist (its existence is not revealed)
    for command in [mark.clone(), edit] {
        assert!(
            matches!(
                s.when_from(HOSPITAL, "dr-ward", "R8000", command),
                Err(Error::EntryNotFound { .. })
            ),
            "the hospital may not change what it may not see"
        );
    }
    // while the practice, which wrote it, may correct it
    assert!(matches!(
        one(s.when(mark).expect("the practice corrects its entry")),
        E::EntryEnteredInError(_)
    ));
}

#[test]
fn given_an_entry_entered_in_error_when_it_is_edited_or_marked_again_then_it_is_refused() {
    let entry = EntryId::new();
    let s = Scenario::started();
    let add = s.add(entry, blood_pressure(150, 95));
    let s = s.given(add);
    let mark = Command::MarkEntryInError {
        consultation: s.consultation,
        entry,
        reason: "duplicate".into(),
    };
    let s = s.given(mark.clone());
    assert!(matches!(s.when(mark), Err(Error::EntryInError(_))));
    let edit = Command::EditEntry {
        consultation: s.consultation,
        entry,
        content: blood_pressure(140, 90),
        paths: vec!["observation".into()],
    };
    assert!(matches!(s.when(edit), Err(Error::EntryInError(_))));
}

#[test]
fn when_something_is_marked_entered_in_error_without_a_reason_then_it_is_refused_naming_reason() {
    let s = Scenario::started();
    let err = s
        .when(Command::MarkConsultationInError {
            consultation: s.consultation,
            reason: String::new(),
        })
        .expect_err("refused");
    assert_eq!(fields(err), ["reason"]);
}

#[test]
fn given_a_consultation_entered_in_error_when_an_entry_is_added_then_it_is_refused() {
    let s = Scenario::started();
    let add = s.add(EntryId::new(), problem(pb::ProblemStatus::Active));
    let s = s.given(add);
    let mark = Command::MarkConsultationInError {
        consultation: s.consultation,
        reason: "Wrong patient's record".into(),
    };
    let s = s.given(mark);
    assert!(matches!(
        s.when(s.add(EntryId::new(), weight("80", "kg"))),
        Err(Error::ConsultationInError(_))
    ));
    assert!(problems(&s.state).is_empty());
}

// Signing

#[test]
fn given_a_draft_with_an_entry_when_its_author_signs_then_it_is_locked() {
    let s = Scenario::started();
    let add = s.add(EntryId::new(), blood_pressure(150, 95));
    let s = s.given(add);
    let E::ConsultationSigned(e) = one(s
        .when(Command::Sign {
            consultation: s.consultation,
        })
        .expect("present"))
    else {
        panic!("expected ConsultationSigned")
    };
    assert!(!e.on_behalf_of_author);
}

#[test]
fn when_another_clinician_without_a_supervising_role_signs_then_it_is_refused() {
    let s = Scenario::started();
    let add = s.add(EntryId::new(), blood_pressure(150, 95));
    let s = s.given(add);
    let err = s
        .when_by(
            "dr-patel",
            "R8000",
            Command::Sign {
                consultation: s.consultation,
            },
        )
        .expect_err("refused");
    assert!(matches!(err, Error::NotAuthor { .. }));
}

#[test]
fn when_a_supervising_gp_signs_for_the_author_then_it_is_signed_on_their_behalf() {
    let s = Scenario::started();
    let add = s.add(EntryId::new(), blood_pressure(150, 95));
    let s = s.given(add);
    let E::ConsultationSigned(e) = one(s
        .when_by(
            "dr-supervisor",
            "R0260",
            Command::Sign {
                consultation: s.consultation,
            },
        )
        .expect("present"))
    else {
        panic!("expected ConsultationSigned")
    };
    assert!(e.on_behalf_of_author);
    assert_eq!(e.signed_by.expect("present").user_id, "dr-supervisor");
}

#[test]
fn given_an_empty_consultation_when_it_is_signed_then_it_is_refused() {
    let s = Scenario::started();
    assert!(matches!(
        s.when(Command::Sign {
            consultation: s.consultation
        }),
        Err(Error::Empty(_))
    ));
    let entry = EntryId::new();
    let add = s.add(entry, blood_pressure(150, 95));
    let s = s.given(add);
    let mark = Command::MarkEntryInError {
        consultation: s.consultation,
        entry,
        reason: "wrong patient".into(),
    };
    let s = s.given(mark);
    assert!(matches!(
        s.when(Command::Sign {
            consultation: s.consultation
        }),
        Err(Error::Empty(_))
    ));
}

#[test]
fn given_a_signed_consultation_when_it_is_signed_again_then_it_is_already_signed() {
    let s = signed_with(EntryId::new(), blood_pressure(150, 95));
    assert!(matches!(
        s.when(Command::Sign {
            consultation: s.consultation
        }),
        Err(Error::AlreadySigned(_))
    ));
}

#[test]
fn given_a_supervisor_signed_consultation_then_the_record_shows_who_signed() {
    let s = Scenario::started();
    let add = s.add(EntryId::new(), blood_pressure(150, 95));
    let sign = Command::Sign {
        consultation: s.consultation,
    };
    let s = s.given(add).given_by("dr-supervisor", "R0260", sign);
    assert_eq!(
        s.consultation()
            .signed_by
            .as_ref()
            .expect("present")
            .user_id,
        "dr-supervisor"
    );
}

// Entry content

#[test]
fn a_valid_entry_of_each_kind_passes() {
    for content in [
        problem(pb::ProblemStatus::Active),
        blood_pressure(150, 95),
        weight("80.5", "kg"),
        weight("27.1", "kg/m2"),
        pb::EntryContent {
            kind: pb::EntryKind::Comment as i32,
            text: "Patient prefers morning appointments".into(),
            ..Default::default()
        },
        pb::EntryContent {
            kind: pb::EntryKind::History as i32,
            concept_id: ASTHMA.into(),
            display: "Asthma".into(),
            ..Default::default()
        },
    ] {
        assert!(content_fields(&content).is_empty(), "{content:?}");
    }
}

#[test]
fn bad_entries_are_refused_naming_each_field() {
    let cases: Vec<(&str, pb::EntryContent)> = vec![
        ("entry.observation.quantity.unit", weight("80", "")),
        ("entry.observation.quantity.unit", weight("80", "kilos")),
        ("entry.observation.quantity.value", weight("eighty", "kg")),
        (
            "entry.observation.blood_pressure.systolic",
            blood_pressure(80, 95),
        ),
        (
            "entry.observation",
            pb::EntryContent {
                observation: None,
                ..blood_pressure(1, 1)
            },
        ),
        (
            "entry.concept_id",
            pb::EntryContent {
                concept_id: "38341004".into(),
                ..problem(pb::ProblemStatus::Active)
            },
        ),
        (
            "entry.concept_id",
            pb::EntryContent {
                concept_id: "38341001".into(),
                ..problem(pb::ProblemStatus::Active)
            },
        ),
        (
            "entry.problem.status",
            problem(pb::ProblemStatus::Unspecified),
        ),
        (
            "entry.problem",
            pb::EntryContent {
                problem: None,
                ..problem(pb::ProblemStatus::Active)
            },
        ),
        (
            "entry.kind",
            pb::EntryContent {
                kind: 0,
                ..weight("80", "kg")
            },
        ),
        (
            "entry.display",
            pb::EntryContent {
                display: String::new(),
                ..weight("80", "kg")
            },
        ),
        (
            "entry.effective_time",
            pb::EntryContent {
                effective_time: Some(timestamp(now() + Duration::days(2))),
                ..weight("80", "kg")
            },
        ),
        (
            "entry.problem",
            pb::EntryContent {
                problem: problem(pb::ProblemStatus::Active).problem,
                ..weight("80", "kg")
            },
        ),
    ];
    for (field, content) in cases {
        assert!(
            content_fields(&content).contains(&field.to_owned()),
            "{field}: {:?}",
            content_fields(&content)
        );
    }
}

// Read-model views

#[test]
fn the_latest_observation_of_a_concept_is_the_most_recent_by_clinical_time() {
    let s = Scenario::started();
    let earlier = pb::EntryContent {
        effective_time: Some(timestamp(now() - Duration::days(30))),
        ..weight("82", "kg")
    };
    let later = pb::EntryContent {
        effective_time: Some(timestamp(now() - Duration::days(1))),
        ..weight("80", "kg")
    };
    let add_later = s.add(EntryId::new(), later);
    let s = s.given(add_later);
    let add_earlier = s.add(EntryId::new(), earlier);
    let s = s.given(add_earlier);
    let latest = latest_observations(&s.state);
    assert_eq!(latest.len(), 1);
    let Some(Value::Quantity(q)) = latest[0].value.clone().expect("present").value else {
        panic!("expected a quantity")
    };
    assert_eq!(q.value, "80");
}

#[test]
fn every_event_has_a_type_name() {
    let s = Scenario::started();
    let add = s.add(EntryId::new(), blood_pressure(150, 95));
    for e in s.when(add).expect("present") {
        assert_ne!(PatientConsultations::event_type(&e), "Unknown");
    }
}

#[test]
fn the_concepts_a_gp_record_uses_are_valid_snomed_ct_ids() {
    for id in [
        HYPERTENSION,
        BLOOD_PRESSURE,
        "271649006",
        "271650006",
        BODY_WEIGHT,
        "22298006",
        ASTHMA,
        "44054006",
    ] {
        assert!(carelog_kernel::snomed::ConceptId::parse(id).is_ok(), "{id}");
    }
}

#[test]
fn given_a_consultation_recorded_for_a_named_clinician_when_that_clinician_signs_then_it_is_theirs()
{
    let s = Scenario::new();
    let start = Command::Start {
        consultation: s.consultation,
        kind: pb::ConsultationType::HomeVisit,
        start_time: now() - Duration::hours(2),
        author: clinician("dr-okafor", "R8000"),
        organisation: "A81001".into(),
    };
    let s = s.given(start);
    let add = s.add(EntryId::new(), weight("61.3", "kg"));
    let s = s.given(add);
    let sign = Command::Sign {
        consultation: s.consultation,
    };
    assert!(matches!(s.when(sign.clone()), Err(Error::NotAuthor { .. })));
    let E::ConsultationSigned(e) = one(s.when_by("dr-okafor", "R8000", sign).expect("signed"))
    else {
        panic!("expected ConsultationSigned")
    };
    assert!(!e.on_behalf_of_author);
}

#[test]
fn given_the_practices_consultation_when_a_hospital_clinician_changes_or_signs_it_then_it_is_refused()
 {
    // Given the practice's draft with a problem, and a copy of it signed
    let entry = EntryId::new();
    let draft = Scenario::started();
    let add = draft.add(entry, problem(pb::ProblemStatus::Active));
    let draft = draft.given(add);
    let sign = Command::Sign {
        consultation: draft.consultation,
    };
    let hospital =
        |s: &Scenario, command: Command| s.when_from(HOSPITAL, "dr-ward", "R0260", command);
    // When a supervising GP of the hospital signs the practice's draft,
    // or adds to it, then it is refused naming the practice
    for command in [
        sign.clone(),
        draft.add(EntryId::new(), blood_pressure(120, 80)),
        Command::EditEntry {
            consultation: draft.consultation,
            entry,
            content: problem(pb::ProblemStatus::Resolved),
            paths: vec!["problem.status".into()],
        },
    ] {
        assert!(
            matches!(hospital(&draft, command), Err(Error::OtherOrganisation { organisation, .. }) if organisation == PRACTICE)
        );
    }
    let signed = draft.given(sign);
    // When the hospital amends, or marks in error, the signed record
    for command in [
        Command::AmendEntry {
            consultation: signed.consultation,
            entry,
            content: problem(pb::ProblemStatus::Resolved),
            paths: vec!["problem.status".into()],
            reason: "resolved".into(),
        },
        Command::MarkEntryInError {
            consultation: signed.consultation,
            entry,
            reason: "wrong patient".into(),
        },
        Command::MarkConsultationInError {
            consultation: signed.consultation,
            reason: "wrong patient".into(),
        },
    ] {
        // Then it is refused, and the practice's problem stands
        assert!(
            matches!(
                hospital(&signed, command.clone()),
                Err(Error::OtherOrganisation { .. })
            ),
            "{command:?}"
        );
        // while the practice itself may
        assert!(signed.when(command).is_ok());
    }
}

#[test]
fn given_a_visit_written_up_after_the_death_when_an_entry_is_moved_after_the_death_then_it_is_refused()
 {
    // Given a visit on 18 November, and the death recorded on the 19th
    let mut s = Scenario::new();
    s.patient.deceased = true;
    s.patient.date_of_death = PartialDate::new(2026, 11, 19).ok();
    let visit = Utc
        .with_ymd_and_hms(2026, 11, 18, 9, 0, 0)
        .single()
        .expect("present");
    let start = s.start_at(visit);
    let s = s.given(start);
    // When the visit's blood pressure is written up, then it is accepted
    let entry = EntryId::new();
    let add = s.add(entry, blood_pressure(130, 80));
    let s = s.given(add);
    // When it is edited to a time after the death, then it is refused
    let mut moved = blood_pressure(130, 80);
    moved.effective_time = Some(timestamp(
        Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0)
            .single()
            .expect("present"),
    ));
    let err = s
        .when(Command::EditEntry {
            consultation: s.consultation,
            entry,
            content: moved,
            paths: vec!["effective_time".into()],
        })
        .expect_err("after the death");
    assert_eq!(fields(err), ["entry.effective_time"]);
}
