//! The edge: request fields parsed and checked for shape (lengths, ids,
//! codes, dates), each refusal a field violation naming the field and the
//! rule. The rules of the domain are `domain::decide`'s.

use carelog_kernel::date::PartialDate;
use carelog_kernel::ids::{TaskId, TeamId};
use carelog_kernel::{OdsCode, PatientId, RequestContext, Violations};
use carelog_proto::tasks::v1 as pb;

use crate::domain::Who;

pub(crate) const TITLE_MAX: usize = 200;
pub(crate) const TEXT_MAX: usize = 4000;
pub(crate) const REFERENCE_MAX: usize = 256;

pub(crate) fn too_long(text: &str, max: usize) -> bool {
    text.chars().count() > max
}

pub(crate) fn optional_patient(text: &str, v: &mut Violations) -> Option<PatientId> {
    if text.trim().is_empty() {
        return None;
    }
    v.check("patient_id", PatientId::parse(text))
}

pub(crate) fn task_id(text: &str, v: &mut Violations) -> Option<TaskId> {
    carelog_kernel::edge::required("task_id", text, TaskId::parse, v)
}

pub(crate) fn user_id(field: &str, text: &str, v: &mut Violations) -> String {
    let text = text.trim();
    if too_long(text, 128) || text.chars().any(char::is_whitespace) {
        v.add(
            field,
            "must be a user id: at most 128 characters, no spaces",
        );
    }
    text.to_owned()
}

/// The performer named by a user of `organisation`: a team qualified by
/// its organisation (`ids::TeamId`), or an organisation.
pub(crate) fn check_performer(
    p: Option<pb::Performer>,
    organisation: &OdsCode,
    v: &mut Violations,
) -> Option<pb::Performer> {
    use pb::performer::Performer as P;
    let performer = p?.performer?;
    let checked = match performer {
        P::TeamId(team) => P::TeamId(
            v.check("performer.team_id", TeamId::parse(organisation, &team))
                .map(|t| t.to_string())
                .unwrap_or_default(),
        ),
        P::OrganisationOds(ods) => P::OrganisationOds(
            v.check("performer.organisation_ods", OdsCode::parse(&ods))
                .map(|o| o.to_string())
                .unwrap_or_default(),
        ),
    };
    Some(pb::Performer {
        performer: Some(checked),
    })
}

pub(crate) fn check_focus(focus: Option<pb::Focus>, v: &mut Violations) -> Option<pb::Focus> {
    let mut focus = focus?;
    focus.reference = focus.reference.trim().to_owned();
    match pb::FocusKind::try_from(focus.kind) {
        Ok(pb::FocusKind::Consultation | pb::FocusKind::MedicationAuthorisation) => {
            if uuid::Uuid::parse_str(&focus.reference).is_err() {
                v.add(
                    "focus.reference",
                    "must be the UUID of the consultation or medication authorisation",
                );
            }
        }
        Ok(pb::FocusKind::Other) => {
            if focus.reference.is_empty() || too_long(&focus.reference, REFERENCE_MAX) {
                v.add("focus.reference", "must be 1 to 256 characters");
            }
        }
        _ => v.add(
            "focus.kind",
            "must be CONSULTATION, MEDICATION_AUTHORISATION or OTHER",
        ),
    }
    carelog_kernel::edge::check_text("focus.display", &focus.display, TITLE_MAX, v);
    Some(focus)
}

pub(crate) fn due_date(
    date: Option<carelog_proto::kernel::v1::PartialDate>,
    v: &mut Violations,
) -> Option<PartialDate> {
    let date = date.filter(|d| d.year != 0 || d.month != 0 || d.day != 0)?;
    let parsed = v.check("due_date", PartialDate::from_proto(Some(&date)))?;
    if !parsed.is_full() {
        v.add("due_date", "must be a full date: year, month and day");
        return None;
    }
    Some(parsed)
}

/// The id a create with a client's `request_id` gives its task: derived
/// from (user, request id, the task's patient if any), so a repeat of the
/// request names the same task.
pub(crate) fn new_task_id(ctx: &RequestContext, patient: Option<PatientId>) -> TaskId {
    TaskId::from_uuid(ctx.new_resource_id("carelog.task", patient))
}

/// The partition of a task: its patient, or the task itself.
pub(crate) fn partition(patient: Option<PatientId>, task: TaskId) -> PatientId {
    patient.unwrap_or_else(|| PatientId::parse(&task.to_string()).unwrap_or_default())
}

pub(crate) fn who(ctx: &RequestContext) -> Who {
    Who {
        user_id: ctx.actor.user_id.clone(),
        display_name: ctx.actor.display_name.clone(),
        role: ctx.actor.role.clone(),
        organisation: ctx.actor.organisation.to_string(),
        teams: ctx.teams.clone(),
    }
}
