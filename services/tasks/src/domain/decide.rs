//! Every rule of the tasks context: `decide` turns a command and the
//! current task list into events, or refuses with the rule that failed.

use carelog_kernel::date::PartialDate;
use carelog_proto::tasks::v1 as pb;
use chrono::{DateTime, Utc};
use pb::TaskStatus as S;
use pb::event::Event as E;

use super::error::Error;
use super::record::TaskList;
use super::status;

/// Who is acting, from their verified token.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Who {
    pub user_id: String,
    pub display_name: String,
    pub role: String,
    pub organisation: String,
    /// Team ids the token names the user a member of.
    pub teams: Vec<String>,
}

impl Who {
    pub fn participant(&self) -> pb::Participant {
        pb::Participant {
            user_id: self.user_id.clone(),
            display_name: self.display_name.clone(),
            role: self.role.clone(),
            organisation_ods: self.organisation.clone(),
        }
    }
}

/// A new task, already checked for shape at the edge.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewTask {
    pub task_id: String,
    /// Empty for a task with no patient.
    pub patient_id: String,
    pub title: String,
    pub description: String,
    pub focus: Option<pb::Focus>,
    pub owner_user_id: String,
    pub performer: Option<pb::Performer>,
    pub priority: pb::TaskPriority,
    pub due_date: Option<PartialDate>,
}

/// A tasks command, already parsed and checked for shape at the edge.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Create(NewTask),
    /// `owner` / `performer`: `Some` when named in the update mask.
    Assign {
        task_id: String,
        owner: Option<String>,
        performer: Option<Option<pb::Performer>>,
    },
    Claim {
        task_id: String,
    },
    Start {
        task_id: String,
    },
    PutOnHold {
        task_id: String,
        reason: String,
    },
    Resume {
        task_id: String,
    },
    Complete {
        task_id: String,
        outcome: String,
    },
    Cancel {
        task_id: String,
        reason: String,
    },
    Reject {
        task_id: String,
        reason: String,
    },
    Comment {
        task_id: String,
        text: String,
    },
    EnterInError {
        task_id: String,
        reason: String,
    },
}

impl Command {
    /// Whether the command closes or corrects a task (completes, cancels,
    /// rejects, comments on or voids it): allowed on a task left open on a
    /// record merged away, which nothing else could close.
    pub fn closes(&self) -> bool {
        matches!(
            self,
            Command::Complete { .. }
                | Command::Cancel { .. }
                | Command::Reject { .. }
                | Command::EnterInError { .. }
                | Command::Comment { .. }
        )
    }
}

/// What the rules need to know about the patient (none for a patientless
/// task). A deceased patient is no obstacle: administration continues after
/// death.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Patient {
    pub birth_date: Option<PartialDate>,
}

fn event(e: E) -> pb::Event {
    pb::Event { event: Some(e) }
}

fn required(text: &str, field: &str, rule: &str) -> Result<(), Error> {
    if text.trim().is_empty() {
        Err(Error::invalid(field, rule))
    } else {
        Ok(())
    }
}

fn existing<'a>(list: &'a TaskList, task_id: &str) -> Result<&'a pb::Task, Error> {
    list.task(task_id)
        .ok_or_else(|| Error::NotFound(task_id.to_owned()))
}

fn current(task: &pb::Task) -> S {
    S::try_from(task.status).unwrap_or(S::Unspecified)
}

/// The task may move to `to`, else the error names both statuses.
fn may_become(task: &pb::Task, to: S) -> Result<(), Error> {
    let from = current(task);
    if status::can_move(from, to) {
        Ok(())
    } else {
        Err(Error::InvalidTransition {
            task: task.task_id.clone(),
            from: status::code(from),
            to: status::code(to),
        })
    }
}

/// Work on a task is its owner's: someone must own it (claim or assign
/// first), and only they start, pause, resume or complete it.
fn owner_only(task: &pb::Task, who: &Who) -> Result<(), Error> {
    if task.owner_user_id.is_empty() {
        return Err(Error::Unowned(task.task_id.clone()));
    }
    if task.owner_user_id != who.user_id {
        return Err(Error::NotOwner {
            task: task.task_id.clone(),
            owner: task.owner_user_id.clone(),
        });
    }
    Ok(())
}

/// Whether `who` performs the task: its owner, a member of its performing
/// team, or a user of its performing organisation.
pub fn performs(task: &pb::Task, who: &Who) -> bool {
    use pb::performer::Performer as P;
    task.owner_user_id == who.user_id
        || match task.performer.as_ref().and_then(|p| p.performer.as_ref()) {
            Some(P::TeamId(team)) => who.teams.contains(team),
            Some(P::OrganisationOds(ods)) => *ods == who.organisation,
            None => false,
        }
}

/// Whether the task is the privacy officer's review of an emergency access
/// (focus `access:<id>`): work about the access, done by its performer
/// whether or not they may access the patient's record.
pub fn reviews_emergency_access(task: &pb::Task) -> bool {
    task.focus.as_ref().is_some_and(|f| {
        f.reference
            .starts_with(carelog_kernel::access::REVIEW_FOCUS_PREFIX)
    })
}

/// Whether `who` performs this task and it is the review of an emergency
/// access: they work on it without access to the patient's record.
pub fn reviewed_by(task: &pb::Task, who: &Who) -> bool {
    reviews_emergency_access(task) && performs(task, who)
}

/// Whether `who` asked for the task: its requester, or a user of the
/// requester's organisation.
fn requested(task: &pb::Task, who: &Who) -> bool {
    task.requester
        .as_ref()
        .is_some_and(|r| r.user_id == who.user_id || r.organisation_ods == who.organisation)
}

/// Whether `who` is a party to the task: asked for it or performs it. A
/// task about no patient is its parties' business alone.
pub fn is_party(task: &pb::Task, who: &Who) -> bool {
    performs(task, who) || requested(task, who)
}

/// Refuses `action` to anyone who neither asked for the task nor performs
/// it (and, `performer_only`, to anyone who does not perform it): being
/// admitted to the patient is not being a party to their task.
fn party(
    task: &pb::Task,
    who: &Who,
    action: &'static str,
    performer_only: bool,
) -> Result<(), Error> {
    let allowed = if performer_only {
        performs(task, who)
    } else {
        is_party(task, who)
    };
    if allowed {
        return Ok(());
    }
    Err(Error::NotParty {
        task: task.task_id.clone(),
        parties: if performer_only {
            "the performer"
        } else {
            "the requester or the performer"
        },
        action,
    })
}

fn has_assignee(owner: &str, performer: &Option<pb::Performer>) -> bool {
    !owner.is_empty() || performer.as_ref().is_some_and(|p| p.performer.is_some())
}

/// Decides a command on one task list; `now` is the clinical time of what
/// it records.
pub fn decide(
    list: &TaskList,
    who: &Who,
    patient: Option<&Patient>,
    command: &Command,
    now: DateTime<Utc>,
) -> Result<Vec<pb::Event>, Error> {
    let at = Some(carelog_kernel::envelope::timestamp(now));
    match command {
        Command::Create(new) => {
            if list.task(&new.task_id).is_some() {
                return Err(Error::Exists(new.task_id.clone()));
            }
            if !has_assignee(&new.owner_user_id, &new.performer) {
                return Err(Error::invalid(
                    "owner_user_id",
                    "name an owner (a user) or a performer (a team or an organisation)",
                ));
            }
            if let (Some(due), Some(born)) = (new.due_date, patient.and_then(|p| p.birth_date))
                && due.is_certainly_before(&born)
            {
                return Err(Error::invalid(
                    "due_date",
                    "must not be before the patient's date of birth",
                ));
            }
            let priority = match new.priority {
                pb::TaskPriority::Unspecified => pb::TaskPriority::Routine,
                p => p,
            };
            Ok(vec![event(E::TaskCreated(pb::TaskCreated {
                task_id: new.task_id.clone(),
                patient_id: new.patient_id.clone(),
                title: new.title.clone(),
                description: new.description.clone(),
                focus: new.focus.clone(),
                requester: Some(who.participant()),
                owner_user_id: new.owner_user_id.clone(),
                performer: new.performer.clone(),
                priority: priority as i32,
                due_date: new.due_date.map(|d| d.to_proto()),
                authored_on: at,
            }))])
        }
        Command::Assign {
            task_id,
            owner,
            performer,
        } => {
            let task = existing(list, task_id)?;
            if status::is_terminal(current(task)) {
                return Err(Error::Closed {
                    task: task_id.clone(),
                    status: status::code(current(task)),
                });
            }
            party(task, who, "reassign", false)?;
            let owner = owner.clone().unwrap_or_else(|| task.owner_user_id.clone());
            let performer = performer.clone().unwrap_or_else(|| task.performer.clone());
            if !has_assignee(&owner, &performer) {
                return Err(Error::invalid(
                    "update_mask",
                    "a task keeps an owner (a user) or a performer (a team or an organisation)",
                ));
            }
            if owner == task.owner_user_id && performer == task.performer {
                return Ok(vec![]);
            }
            Ok(vec![event(E::TaskAssigned(pb::TaskAssigned {
                task_id: task_id.clone(),
                owner_user_id: owner,
                performer,
                previous_owner_user_id: task.owner_user_id.clone(),
            }))])
        }
        Command::Claim { task_id } => {
            let task = existing(list, task_id)?;
            use pb::performer::Performer as P;
            match task.performer.as_ref().and_then(|p| p.performer.as_ref()) {
                None => return Err(Error::NotClaimable(task_id.clone())),
                Some(P::TeamId(team)) if !who.teams.contains(team) => {
                    return Err(Error::NotTeamMember {
                        task: task_id.clone(),
                        team: team.clone(),
                    });
                }
                Some(P::OrganisationOds(ods)) if *ods != who.organisation => {
                    return Err(Error::OtherOrganisation {
                        task: task_id.clone(),
                        organisation: ods.clone(),
                    });
                }
                Some(_) => {}
            }
            if task.owner_user_id == who.user_id && current(task) == S::Accepted {
                return Ok(vec![]);
            }
            if !task.owner_user_id.is_empty() && task.owner_user_id != who.user_id {
                return Err(Error::AlreadyOwned {
                    task: task_id.clone(),
                    owner: task.owner_user_id.clone(),
                });
            }
            // An accepted task left without an owner (reassigned to its
            // team alone) is claimed again as it stands.
            if !(current(task) == S::Accepted && task.owner_user_id.is_empty()) {
                may_become(task, S::Accepted)?;
            }
            Ok(vec![event(E::TaskClaimed(pb::TaskClaimed {
                task_id: task_id.clone(),
                owner_user_id: who.user_id.clone(),
            }))])
        }
        Command::Start { task_id } => {
            let task = existing(list, task_id)?;
            may_become(task, S::InProgress)?;
            owner_only(task, who)?;
            Ok(vec![event(E::TaskStarted(pb::TaskStarted {
                task_id: task_id.clone(),
            }))])
        }
        Command::PutOnHold { task_id, reason } => {
            let task = existing(list, task_id)?;
            may_become(task, S::OnHold)?;
            owner_only(task, who)?;
            Ok(vec![event(E::TaskPutOnHold(pb::TaskPutOnHold {
                task_id: task_id.clone(),
                reason: reason.trim().to_owned(),
            }))])
        }
        Command::Resume { task_id } => {
            let task = existing(list, task_id)?;
            if current(task) != S::OnHold {
                return Err(Error::InvalidTransition {
                    task: task_id.clone(),
                    from: status::code(current(task)),
                    to: status::code(S::InProgress),
                });
            }
            owner_only(task, who)?;
            Ok(vec![event(E::TaskResumed(pb::TaskResumed {
                task_id: task_id.clone(),
            }))])
        }
        Command::Complete { task_id, outcome } => {
            let task = existing(list, task_id)?;
            may_become(task, S::Completed)?;
            owner_only(task, who)?;
            required(outcome, "outcome", "is required: say what came of the task")?;
            Ok(vec![event(E::TaskCompleted(pb::TaskCompleted {
                task_id: task_id.clone(),
                outcome: outcome.trim().to_owned(),
            }))])
        }
        Command::Cancel { task_id, reason } => {
            let task = existing(list, task_id)?;
            may_become(task, S::Cancelled)?;
            party(task, who, "cancel", false)?;
            required(
                reason,
                "reason",
                "is required: say why the task is cancelled",
            )?;
            Ok(vec![event(E::TaskCancelled(pb::TaskCancelled {
                task_id: task_id.clone(),
                reason: reason.trim().to_owned(),
            }))])
        }
        Command::Reject { task_id, reason } => {
            let task = existing(list, task_id)?;
            may_become(task, S::Rejected)?;
            party(task, who, "reject", true)?;
            required(
                reason,
                "reason",
                "is required: say why the task is rejected",
            )?;
            Ok(vec![event(E::TaskRejected(pb::TaskRejected {
                task_id: task_id.clone(),
                reason: reason.trim().to_owned(),
            }))])
        }
        Command::Comment { task_id, text } => {
            let task = existing(list, task_id)?;
            if current(task) == S::EnteredInError {
                return Err(Error::Closed {
                    task: task_id.clone(),
                    status: status::code(S::EnteredInError),
                });
            }
            required(text, "text", "is required")?;
            Ok(vec![event(E::TaskCommented(pb::TaskCommented {
                task_id: task_id.clone(),
                author: Some(who.participant()),
                text: text.trim().to_owned(),
                at,
            }))])
        }
        Command::EnterInError { task_id, reason } => {
            let task = existing(list, task_id)?;
            may_become(task, S::EnteredInError)?;
            party(task, who, "mark entered in error", false)?;
            required(
                reason,
                "reason",
                "is required: say why the task was entered in error",
            )?;
            Ok(vec![event(E::TaskEnteredInError(pb::TaskEnteredInError {
                task_id: task_id.clone(),
                reason: reason.trim().to_owned(),
            }))])
        }
    }
}
