//! The aggregate: one patient's task list (or a patientless task on its
//! own), as the `Task` resources it shows. `apply` folds one event in, holds
//! no rules and never fails; the write model and the read model both use it.

use std::collections::BTreeMap;

use carelog_kernel::Aggregate;
use carelog_proto::tasks::v1 as pb;
use pb::event::Event as E;

/// The tasks of one partition, by task id. Timestamps of the last change
/// and stream sequences are set by whoever holds it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskList {
    pub tasks: BTreeMap<String, pb::Task>,
}

impl TaskList {
    pub fn from_tasks(tasks: impl IntoIterator<Item = pb::Task>) -> Self {
        Self {
            tasks: tasks.into_iter().map(|t| (t.task_id.clone(), t)).collect(),
        }
    }

    pub fn task(&self, task_id: &str) -> Option<&pb::Task> {
        self.tasks.get(task_id)
    }

    /// The task an event is about.
    pub fn task_of(event: &pb::Event) -> &str {
        match &event.event {
            Some(E::TaskCreated(e)) => &e.task_id,
            Some(E::TaskAssigned(e)) => &e.task_id,
            Some(E::TaskClaimed(e)) => &e.task_id,
            Some(E::TaskStarted(e)) => &e.task_id,
            Some(E::TaskPutOnHold(e)) => &e.task_id,
            Some(E::TaskResumed(e)) => &e.task_id,
            Some(E::TaskCompleted(e)) => &e.task_id,
            Some(E::TaskCancelled(e)) => &e.task_id,
            Some(E::TaskRejected(e)) => &e.task_id,
            Some(E::TaskCommented(e)) => &e.task_id,
            Some(E::TaskEnteredInError(e)) => &e.task_id,
            None => "",
        }
    }

    /// The reason, outcome or comment an event carries.
    pub fn note_of(event: &pb::Event) -> &str {
        match &event.event {
            Some(E::TaskPutOnHold(e)) => &e.reason,
            Some(E::TaskCompleted(e)) => &e.outcome,
            Some(E::TaskCancelled(e)) => &e.reason,
            Some(E::TaskRejected(e)) => &e.reason,
            Some(E::TaskCommented(e)) => &e.text,
            Some(E::TaskEnteredInError(e)) => &e.reason,
            _ => "",
        }
    }
}

impl Aggregate for TaskList {
    const CONTEXT: &'static str = "tasks";
    type Event = pb::Event;

    fn event_type(event: &pb::Event) -> &'static str {
        match &event.event {
            Some(E::TaskCreated(_)) => "TaskCreated",
            Some(E::TaskAssigned(_)) => "TaskAssigned",
            Some(E::TaskClaimed(_)) => "TaskClaimed",
            Some(E::TaskStarted(_)) => "TaskStarted",
            Some(E::TaskPutOnHold(_)) => "TaskPutOnHold",
            Some(E::TaskResumed(_)) => "TaskResumed",
            Some(E::TaskCompleted(_)) => "TaskCompleted",
            Some(E::TaskCancelled(_)) => "TaskCancelled",
            Some(E::TaskRejected(_)) => "TaskRejected",
            Some(E::TaskCommented(_)) => "TaskCommented",
            Some(E::TaskEnteredInError(_)) => "TaskEnteredInError",
            None => "Unknown",
        }
    }

    fn apply(&mut self, event: &pb::Event) {
        use pb::TaskStatus as S;
        /// A team performer recorded before team ids were qualified by
        /// their organisation (ADR 0012) names a team of the requester's
        /// organisation, which created the task: it reads as qualified so.
        fn qualified(
            performer: Option<pb::Performer>,
            requester: Option<&pb::Participant>,
        ) -> Option<pb::Performer> {
            use pb::performer::Performer as P;
            let mut performer = performer?;
            if let (Some(P::TeamId(team)), Some(r)) = (performer.performer.as_mut(), requester)
                && let Ok(organisation) = carelog_kernel::OdsCode::parse(&r.organisation_ods)
                && let Ok(qualified) = carelog_kernel::ids::TeamId::parse(&organisation, team)
            {
                *team = qualified.to_string();
            }
            Some(performer)
        }
        if let Some(E::TaskCreated(e)) = &event.event {
            self.tasks.insert(
                e.task_id.clone(),
                pb::Task {
                    task_id: e.task_id.clone(),
                    patient_id: e.patient_id.clone(),
                    status: S::Requested as i32,
                    priority: e.priority,
                    title: e.title.clone(),
                    description: e.description.clone(),
                    focus: e.focus.clone(),
                    requester: e.requester.clone(),
                    owner_user_id: e.owner_user_id.clone(),
                    performer: qualified(e.performer.clone(), e.requester.as_ref()),
                    due_date: e.due_date,
                    created_at: e.authored_on,
                    version: 1,
                    ..Default::default()
                },
            );
            return;
        }
        let Some(task) = self.tasks.get_mut(Self::task_of(event)) else {
            return;
        };
        task.version += 1;
        match &event.event {
            Some(E::TaskAssigned(e)) => {
                task.owner_user_id = e.owner_user_id.clone();
                task.performer = e.performer.clone();
            }
            Some(E::TaskClaimed(e)) => {
                set_status(task, S::Accepted, "");
                task.owner_user_id = e.owner_user_id.clone();
            }
            Some(E::TaskStarted(_)) | Some(E::TaskResumed(_)) => {
                set_status(task, S::InProgress, "")
            }
            Some(E::TaskPutOnHold(e)) => set_status(task, S::OnHold, &e.reason),
            Some(E::TaskCompleted(e)) => {
                set_status(task, S::Completed, "");
                task.outcome = e.outcome.clone();
            }
            Some(E::TaskCancelled(e)) => set_status(task, S::Cancelled, &e.reason),
            Some(E::TaskRejected(e)) => set_status(task, S::Rejected, &e.reason),
            Some(E::TaskEnteredInError(e)) => set_status(task, S::EnteredInError, &e.reason),
            Some(E::TaskCommented(e)) => task.notes.push(pb::TaskNote {
                author: e.author.clone(),
                text: e.text.clone(),
                at: e.at,
            }),
            Some(E::TaskCreated(_)) | None => {}
        }
    }
}

fn set_status(task: &mut pb::Task, status: pb::TaskStatus, reason: &str) {
    task.status = status as i32;
    task.status_reason = reason.to_owned();
}
