//! Every rule of the consultations context: `decide` turns a command, the
//! patient's consultations and what demographics knows of the patient into
//! events, or refuses with the rule that failed.

use carelog_demographics::gate::PatientFacts;
use carelog_kernel::confidential;
use carelog_kernel::date::PartialDate;
use carelog_kernel::envelope::{from_timestamp, timestamp};
use carelog_kernel::ids::{ConsultationId, EntryId, TopicId};
use carelog_kernel::{Change, Decision, Violations};
use carelog_proto::consultations::v1 as pb;
use chrono::{DateTime, Duration, Utc};
use pb::event::Event as E;

use super::error::Error;
use super::record::{PatientConsultations, current_entries, find_entry};
use super::values::{apply_mask, check_content, normalised};

/// National RBAC role codes that may sign a consultation on behalf of its
/// author. R0260 (General Medical Practitioner) is the GP who supervises
/// registrars, students and associates; R8000 (Clinical Practitioner Access
/// Role) is an access role any clinician holds and is not enough. Moves to
/// the shared-care access policy file later.
pub const SUPERVISING_ROLES: &[&str] = &["R0260"];

/// Clock skew tolerated on clinical times sent by a client.
pub const SKEW: Duration = Duration::minutes(1);

/// Where a new entry goes.
#[derive(Debug, Clone, PartialEq)]
pub enum TopicRef {
    Existing(TopicId),
    New { id: TopicId, title: String },
}

/// A consultations command, parsed and checked for shape at the edge.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Start {
        consultation: ConsultationId,
        kind: pb::ConsultationType,
        start_time: DateTime<Utc>,
        author: pb::Clinician,
        organisation: String,
    },
    AddEntry {
        consultation: ConsultationId,
        topic: TopicRef,
        entry: EntryId,
        content: pb::EntryContent,
        /// Visible only to users of `organisation` (the author's).
        confidential: bool,
        /// ODS code of the author's organisation.
        organisation: String,
    },
    EditEntry {
        consultation: ConsultationId,
        entry: EntryId,
        content: pb::EntryContent,
        paths: Vec<String>,
    },
    AmendEntry {
        consultation: ConsultationId,
        entry: EntryId,
        content: pb::EntryContent,
        paths: Vec<String>,
        reason: String,
    },
    MarkEntryInError {
        consultation: ConsultationId,
        entry: EntryId,
        reason: String,
    },
    MarkConsultationInError {
        consultation: ConsultationId,
        reason: String,
    },
    Sign {
        consultation: ConsultationId,
    },
}

/// Who asks, about whom, and when: the facts a rule may need besides the
/// record.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub patient: &'a PatientFacts,
    /// The caller as a clinician.
    pub clinician: pb::Clinician,
    /// ODS code of the caller's organisation: a confidential entry of
    /// another organisation is, to the caller, not there (ADR 0024).
    pub organisation: &'a str,
    pub now: DateTime<Utc>,
}

fn event(e: E) -> pb::Event {
    pb::Event { event: Some(e) }
}

fn reason_required(reason: &str) -> Result<(), Error> {
    carelog_kernel::edge::reason_given("reason", reason).map_err(Error::Invalid)
}

/// A consultation that exists and was not entered in error.
fn open(state: &PatientConsultations, id: ConsultationId) -> Result<&pb::Consultation, Error> {
    let c = state
        .get(&id.to_string())
        .ok_or_else(|| Error::ConsultationNotFound(id.to_string()))?;
    if c.entered_in_error {
        return Err(Error::ConsultationInError(id.to_string()));
    }
    Ok(c)
}

fn is_signed(c: &pb::Consultation) -> bool {
    c.status == pb::ConsultationStatus::Signed as i32
}

/// An entry that stands (exists, not entered in error).
fn standing<'c>(
    c: &'c pb::Consultation,
    entry: EntryId,
    organisation: &str,
) -> Result<&'c pb::Entry, Error> {
    let e = find_entry(c, &entry.to_string())
        .filter(|e| {
            confidential::visible_to_organisation(
                organisation,
                e.confidential,
                &e.author_organisation_ods,
            )
        })
        .ok_or_else(|| Error::EntryNotFound {
            consultation: c.consultation_id.clone(),
            entry: entry.to_string(),
        })?;
    if e.entered_in_error {
        return Err(Error::EntryInError(entry.to_string()));
    }
    Ok(e)
}

/// The content after a change, checked; the clinical time defaults to the
/// consultation's start.
/// Refuses a command on a consultation another organisation recorded: a
/// consultation is one organisation's encounter, and only it adds to,
/// changes, corrects or signs it (admission to the patient is not enough).
fn own<'c>(c: &'c pb::Consultation, ctx: &Context<'_>) -> Result<&'c pb::Consultation, Error> {
    if c.organisation_ods.is_empty() || c.organisation_ods == ctx.organisation {
        Ok(c)
    } else {
        Err(Error::OtherOrganisation {
            consultation: c.consultation_id.clone(),
            organisation: c.organisation_ods.clone(),
        })
    }
}

/// Refuses a clinical time on a UK day before the patient's birth.
fn after_birth(birth: Option<PartialDate>, at: DateTime<Utc>, field: &str) -> Result<(), Error> {
    let day = PartialDate::from_naive(carelog_kernel::date::uk_date(at));
    match birth {
        Some(birth) if day.is_certainly_before(&birth) => Err(Error::invalid(
            field,
            format!("must not be before the patient's birth ({})", birth.iso()),
        )),
        _ => Ok(()),
    }
}

/// Refuses an entry timed on a UK day after the patient's death: the
/// write-up of an encounter in life goes on after the death is recorded,
/// nothing new happens after it.
fn before_death(ctx: &Context<'_>, at: DateTime<Utc>) -> Result<(), Error> {
    let day = PartialDate::from_naive(carelog_kernel::date::uk_date(at));
    match ctx.patient.date_of_death {
        Some(died) if died.is_certainly_before(&day) => Err(Error::invalid(
            "entry.effective_time",
            format!("must not be after the patient's death ({})", died.iso()),
        )),
        _ => Ok(()),
    }
}

/// When an entry's content says it happened (the consultation's start when
/// it says nothing), not before the patient's birth.
fn clinical_time(
    c: &pb::Consultation,
    content: &pb::EntryContent,
    ctx: &Context<'_>,
) -> Result<DateTime<Utc>, Error> {
    let at = from_timestamp(content.effective_time.as_ref().or(c.start_time.as_ref()))
        .unwrap_or(ctx.now);
    after_birth(ctx.patient.birth_date, at, "entry.effective_time")?;
    Ok(at)
}

fn changed(
    c: &pb::Consultation,
    old: &pb::Entry,
    new: &pb::EntryContent,
    paths: &[String],
    ctx: &Context<'_>,
) -> Result<pb::EntryContent, Error> {
    let old_content = old.content.clone().unwrap_or_default();
    let mut merged = apply_mask(&old_content, new, paths);
    merged.kind = old_content.kind;
    if merged.effective_time.is_none() {
        merged.effective_time = c.start_time;
    }
    let mut v = Violations::new();
    // The display term names the concept: a new concept needs its own, or
    // the record would carry one code under another's name.
    if merged.concept_id != old_content.concept_id.trim() && !paths.iter().any(|p| p == "display") {
        v.add(
            "entry.display",
            "must be in the update mask with a changed concept_id: the display term of the new concept",
        );
    }
    check_content(&merged, "entry", ctx.now, &mut v);
    if !v.is_empty() {
        return Err(Error::Invalid(v));
    }
    let at = clinical_time(c, &merged, ctx)?;
    before_death(ctx, at)?;
    Ok(normalised(merged))
}

pub fn decide(
    state: &PatientConsultations,
    command: &Command,
    ctx: &Context<'_>,
) -> Result<Decision<pb::Event>, Error> {
    let now = ctx.now;
    let at = |events: Vec<(pb::Event, DateTime<Utc>)>| Decision {
        changes: vec![Change {
            aggregate_id: ctx.patient.id,
            events,
        }],
        claims: Vec::new(),
    };
    match command {
        Command::Start {
            consultation,
            kind,
            start_time,
            author,
            organisation,
        } => {
            if state.get(&consultation.to_string()).is_some() {
                return Err(Error::ConsultationExists(consultation.to_string()));
            }
            if *start_time > now + SKEW {
                return Err(Error::invalid("start_time", "must not be in the future"));
            }
            after_birth(ctx.patient.birth_date, *start_time, "start_time")?;
            Ok(at(vec![(
                event(E::ConsultationStarted(pb::ConsultationStarted {
                    consultation_id: consultation.to_string(),
                    r#type: *kind as i32,
                    start_time: Some(timestamp(*start_time)),
                    author: Some(author.clone()),
                    organisation_ods: organisation.clone(),
                })),
                *start_time,
            )]))
        }
        Command::AddEntry {
            consultation,
            topic,
            entry,
            content,
            confidential,
            organisation,
        } => {
            let c = own(open(state, *consultation)?, ctx)?;
            if is_signed(c) {
                return Err(Error::Signed(consultation.to_string()));
            }
            let mut content = normalised(content.clone());
            if content.effective_time.is_none() {
                content.effective_time = c.start_time;
            }
            let clinical = clinical_time(c, &content, ctx)?;
            before_death(ctx, clinical)?;
            let mut events = Vec::new();
            let topic_id = match topic {
                TopicRef::Existing(id) => {
                    if !c.topics.iter().any(|t| t.topic_id == id.to_string()) {
                        return Err(Error::TopicNotFound {
                            consultation: consultation.to_string(),
                            topic: id.to_string(),
                        });
                    }
                    *id
                }
                TopicRef::New { id, title } => {
                    events.push((
                        event(E::TopicOpened(pb::TopicOpened {
                            consultation_id: consultation.to_string(),
                            topic_id: id.to_string(),
                            title: title.clone(),
                        })),
                        now,
                    ));
                    *id
                }
            };
            events.push((
                event(E::EntryAdded(pb::EntryAdded {
                    consultation_id: consultation.to_string(),
                    topic_id: topic_id.to_string(),
                    entry_id: entry.to_string(),
                    content: Some(content),
                    confidential: *confidential,
                    author_organisation_ods: organisation.clone(),
                })),
                clinical,
            ));
            Ok(at(events))
        }
        Command::EditEntry {
            consultation,
            entry,
            content,
            paths,
        } => {
            let c = open(state, *consultation)?;
            if is_signed(c) {
                return Err(Error::Signed(consultation.to_string()));
            }
            let old = standing(c, *entry, ctx.organisation)?;
            own(c, ctx)?;
            let content = changed(c, old, content, paths, ctx)?;
            Ok(at(vec![(
                event(E::EntryEdited(pb::EntryEdited {
                    consultation_id: consultation.to_string(),
                    entry_id: entry.to_string(),
                    content: Some(content),
                    changed_paths: paths.clone(),
                })),
                now,
            )]))
        }
        Command::AmendEntry {
            consultation,
            entry,
            content,
            paths,
            reason,
        } => {
            reason_required(reason)?;
            let c = open(state, *consultation)?;
            if !is_signed(c) {
                return Err(Error::NotSigned(consultation.to_string()));
            }
            let old = standing(c, *entry, ctx.organisation)?;
            own(c, ctx)?;
            let content = changed(c, old, content, paths, ctx)?;
            Ok(at(vec![(
                event(E::EntryAmended(pb::EntryAmended {
                    consultation_id: consultation.to_string(),
                    entry_id: entry.to_string(),
                    content: Some(content),
                    changed_paths: paths.clone(),
                    reason: reason.trim().to_owned(),
                })),
                now,
            )]))
        }
        Command::MarkEntryInError {
            consultation,
            entry,
            reason,
        } => {
            reason_required(reason)?;
            let c = open(state, *consultation)?;
            standing(c, *entry, ctx.organisation)?;
            own(c, ctx)?;
            Ok(at(vec![(
                event(E::EntryEnteredInError(pb::EntryEnteredInError {
                    consultation_id: consultation.to_string(),
                    entry_id: entry.to_string(),
                    reason: reason.trim().to_owned(),
                })),
                now,
            )]))
        }
        Command::MarkConsultationInError {
            consultation,
            reason,
        } => {
            reason_required(reason)?;
            own(open(state, *consultation)?, ctx)?;
            Ok(at(vec![(
                event(E::ConsultationEnteredInError(
                    pb::ConsultationEnteredInError {
                        consultation_id: consultation.to_string(),
                        reason: reason.trim().to_owned(),
                    },
                )),
                now,
            )]))
        }
        Command::Sign { consultation } => {
            let c = own(open(state, *consultation)?, ctx)?;
            if is_signed(c) {
                return Err(Error::AlreadySigned(consultation.to_string()));
            }
            let author = c.author.clone().unwrap_or_default();
            let by_author = author.user_id == ctx.clinician.user_id;
            if !by_author && !SUPERVISING_ROLES.contains(&ctx.clinician.role.as_str()) {
                return Err(Error::NotAuthor {
                    consultation: consultation.to_string(),
                    author: author.display_name,
                });
            }
            if current_entries(c).next().is_none() {
                return Err(Error::Empty(consultation.to_string()));
            }
            Ok(at(vec![(
                event(E::ConsultationSigned(pb::ConsultationSigned {
                    consultation_id: consultation.to_string(),
                    signed_by: Some(ctx.clinician.clone()),
                    on_behalf_of_author: !by_author,
                })),
                now,
            )]))
        }
    }
}
