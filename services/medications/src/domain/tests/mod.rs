//! Given past events, when a command, then these events or this refusal:
//! the rules of the medication record as clinical scenarios.

use carelog_kernel::Aggregate as _;
use carelog_kernel::date::PartialDate;
use carelog_kernel::ids::{AllergyId, AuthorisationId, IssueId};
use carelog_proto::kernel::v1 as kpb;
use carelog_proto::medications::v1 as pb;
use chrono::{Days, NaiveDate};
use pb::event::Event as E;

use super::values::date_proto;
use super::{Command, Error, Facts, MedicationRecord, decide};
use crate::catalogue::DrugCatalogue;

const PENICILLIN: &str = "764146007";
const AMOXICILLIN_500: &str = "323509004";
const CLARITHROMYCIN_500: &str = "324430000";
const PARACETAMOL_500: &str = "322236009";

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 10).expect("date")
}

fn in_days(days: u64) -> kpb::PartialDate {
    date_proto(today() + Days::new(days))
}

/// The harness: a record built from past events, decided on today.
struct Given {
    record: MedicationRecord,
    today: NaiveDate,
    catalogue: DrugCatalogue,
    /// The caller's organisation: the registered practice unless `from`.
    organisation: &'static str,
    /// Allergies of records merged into this one.
    merged_allergies: Vec<pb::Allergy>,
}

/// The registered practice, author of what the scenarios record.
const PRACTICE: &str = "A81001";
/// A hospital that shares the record.
const HOSPITAL: &str = "RR8";

fn given(events: Vec<pb::Event>) -> Given {
    let mut record = MedicationRecord::default();
    for e in &events {
        record.apply(e);
    }
    Given {
        record,
        today: today(),
        catalogue: DrugCatalogue::sample(),
        organisation: PRACTICE,
        merged_allergies: Vec::new(),
    }
}

impl Given {
    fn on(mut self, day: NaiveDate) -> Self {
        self.today = day;
        self
    }

    /// With a record merged into this one, holding these events.
    fn merged_in(mut self, events: Vec<pb::Event>) -> Self {
        self.merged_allergies
            .extend(given(events).record.active_allergies().cloned());
        self
    }

    /// The commands that follow are given by a user of `organisation`.
    fn from(mut self, organisation: &'static str) -> Self {
        self.organisation = organisation;
        self
    }

    fn when(&self, command: Command) -> Result<Vec<pb::Event>, Error> {
        let facts = Facts {
            today: self.today,
            birth_date: PartialDate::new(1950, 3, 14).ok(),
            catalogue: &self.catalogue,
            organisation: self.organisation,
            merged_allergies: &self.merged_allergies,
        };
        decide(&self.record, &facts, &command)
    }
}

fn ev(e: E) -> pb::Event {
    pb::Event { event: Some(e) }
}

fn only(events: Vec<pb::Event>) -> E {
    assert_eq!(events.len(), 1, "{events:?}");
    events
        .into_iter()
        .next()
        .and_then(|e| e.event)
        .expect("an event")
}

fn penicillin_allergy() -> pb::AllergyDetails {
    pb::AllergyDetails {
        substance: Some(pb::Coding {
            code: PENICILLIN.into(),
            display: "Penicillin".into(),
        }),
        kind: pb::AllergyKind::Allergy as i32,
        reaction: "urticaria".into(),
        severity: pb::Severity::Moderate as i32,
        certainty: pb::Certainty::Confirmed as i32,
        onset: Some(kpb::PartialDate {
            year: 1998,
            month: 0,
            day: 0,
        }),
    }
}

fn allergy_recorded(id: AllergyId) -> pb::Event {
    ev(E::AllergyRecorded(pb::AllergyRecorded {
        allergy_id: id.to_string(),
        details: Some(penicillin_allergy()),
        recorded_on: Some(date_proto(today())),
        ..Default::default()
    }))
}

fn repeat(product: &str, issues: u32) -> pb::AuthorisationDetails {
    pb::AuthorisationDetails {
        product: Some(pb::Coding {
            code: product.into(),
            display: String::new(),
        }),
        dose_instructions: "one tablet twice a day".into(),
        quantity: "28".into(),
        quantity_unit: "tablet".into(),
        prescription_type: pb::PrescriptionType::Repeat as i32,
        authorised_issues: issues,
        review_date: Some(in_days(90)),
        expiry_date: Some(in_days(180)),
        // No supply stated: not judged early unless a test says so.
        supply_days: 0,
    }
}

fn acute(product: &str) -> pb::AuthorisationDetails {
    pb::AuthorisationDetails {
        prescription_type: pb::PrescriptionType::Acute as i32,
        authorised_issues: 0,
        review_date: None,
        expiry_date: None,
        ..repeat(product, 0)
    }
}

/// The event of an authorisation decided on an empty record.
fn authorised(id: AuthorisationId, details: pb::AuthorisationDetails) -> pb::Event {
    let events = given(vec![])
        .when(Command::Authorise {
            authorisation_id: id,
            details,
            override_reason: String::new(),
            confidential: false,
        })
        .expect("authorised");
    events.into_iter().next().expect("one event")
}

/// An issue made a month before today.
fn issued(authorisation: AuthorisationId, number: u32) -> pb::Event {
    ev(E::PrescriptionIssued(pb::PrescriptionIssued {
        issue_id: IssueId::new().to_string(),
        authorisation_id: authorisation.to_string(),
        issue_number: number,
        issued_on: Some(date_proto(today() - Days::new(28))),
        overrides: vec![],
    }))
}

fn authorise(details: pb::AuthorisationDetails, override_reason: &str) -> Command {
    Command::Authorise {
        authorisation_id: AuthorisationId::new(),
        details,
        override_reason: override_reason.into(),
        confidential: false,
    }
}

fn issue(authorisation_id: AuthorisationId) -> Command {
    issue_overriding(authorisation_id, "")
}

fn issue_overriding(authorisation_id: AuthorisationId, override_reason: &str) -> Command {
    Command::Issue {
        issue_id: IssueId::new(),
        authorisation_id,
        override_reason: override_reason.into(),
    }
}

/// An active allergy to `substance` (a dm+d or SNOMED CT code).
fn allergy_to(id: AllergyId, substance: &str, display: &str) -> pb::Event {
    ev(E::AllergyRecorded(pb::AllergyRecorded {
        allergy_id: id.to_string(),
        details: Some(pb::AllergyDetails {
            substance: Some(pb::Coding {
                code: substance.into(),
                display: display.into(),
            }),
            ..penicillin_allergy()
        }),
        recorded_on: Some(date_proto(today())),
        ..Default::default()
    }))
}

fn fields(error: Error) -> Vec<String> {
    match error {
        Error::Invalid(v) => v.iter().map(|v| v.field.clone()).collect(),
        other => panic!("expected invalid input, got {other:?}"),
    }
}

mod allergies;
mod changes;
mod issuing;
mod prescribing;
