//! The gRPC face of tasks: requests become commands (checked for shape
//! here, for rules in the domain), domain errors become `Failure`s in one
//! `From`, queries go to the read model through the `queries` port.

use std::sync::Arc;

use carelog_demographics::api::page;
use carelog_demographics::gate::PatientGate;
use carelog_kernel::access::{self, AccessLog, AccessSink, Reads};
use carelog_kernel::edge::check_text;
use carelog_kernel::guard::Guard;
use carelog_kernel::ids::{TaskId, TeamId};
use carelog_kernel::{Decision, Executor, Failure, OdsCode, PatientId, RequestContext, Violations};
use carelog_proto::tasks::v1 as pb;
use pb::tasks_service_server::TasksService;
use tonic::{Code, Request, Response, Status};

use crate::domain::decide::is_party;
use crate::domain::{Command, Error, NewTask, Patient, TaskList, decide, status};
use crate::input::{
    TEXT_MAX, TITLE_MAX, check_focus, check_performer, due_date, new_task_id, optional_patient,
    partition, task_id, user_id, who,
};
use crate::queries::{Consistency, TasksQueries, WorkList};

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::Invalid(v) => Failure::invalid(v),
            Error::NotFound(id) => Failure::not_found("task", &id),
            Error::Exists(id) => {
                Failure::new(Code::AlreadyExists, "TASK_EXISTS", message).with("taskId", id)
            }
            Error::InvalidTransition { from, to, .. } => {
                Failure::new(Code::FailedPrecondition, "INVALID_TRANSITION", message)
                    .with("currentStatus", from)
                    .with("requestedStatus", to)
            }
            Error::Closed { status, .. } => {
                Failure::new(Code::FailedPrecondition, "TASK_CLOSED", message)
                    .with("currentStatus", status)
            }
            Error::NotClaimable(_) => {
                Failure::new(Code::FailedPrecondition, "NOT_CLAIMABLE", message)
            }
            Error::NotTeamMember { team, .. } => {
                Failure::new(Code::PermissionDenied, "NOT_TEAM_MEMBER", message)
                    .with("teamId", team)
            }
            Error::OtherOrganisation { organisation, .. } => Failure::new(
                Code::PermissionDenied,
                "NOT_PERFORMING_ORGANISATION",
                message,
            )
            .with("organisationOds", organisation),
            Error::AlreadyOwned { owner, .. } => {
                Failure::new(Code::FailedPrecondition, "ALREADY_OWNED", message)
                    .with("ownerUserId", owner)
            }
            Error::Unowned(_) => Failure::new(Code::FailedPrecondition, "TASK_UNOWNED", message),
            Error::NotOwner { owner, .. } => {
                Failure::new(Code::FailedPrecondition, "NOT_TASK_OWNER", message)
                    .with("ownerUserId", owner)
            }
            Error::NotParty { .. } => {
                Failure::new(Code::PermissionDenied, "NOT_TASK_PARTY", message)
            }
        }
    }
}

/// The tasks gRPC service over an executor, the patient gate and a read model.
pub struct TasksApi<Q> {
    executor: Arc<Executor<TaskList>>,
    gate: PatientGate,
    queries: Arc<Q>,
    access: Arc<dyn AccessSink>,
    guard: Guard,
}

const SERVICE: &str = "carelog.tasks.v1.TasksService";
/// The access rule of the performer of an emergency-access review working on
/// it without access to the patient's record (ADR 0022).
const REVIEW_RULE: &str = "access_review";
const CONTEXT: &str = "tasks";

/// The tasks of an answer that are about a patient, for the access log.
fn reads<'a>(tasks: impl Iterator<Item = &'a pb::Task>) -> Reads {
    let mut reads = Reads::new();
    for t in tasks.filter(|t| !t.patient_id.is_empty()) {
        reads.record(&t.patient_id, &t.task_id, CONTEXT, t.stream_sequence, false);
    }
    reads
}

impl<Q> std::fmt::Debug for TasksApi<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TasksApi")
    }
}

impl<Q: TasksQueries> TasksApi<Q> {
    /// Every call about a patient is admitted by `guard` (ADR 0020).
    pub fn new(
        executor: Arc<Executor<TaskList>>,
        gate: PatientGate,
        queries: Arc<Q>,
        guard: Guard,
    ) -> Self {
        let access = Arc::new(AccessLog::new(executor.store().clone()));
        Self {
            executor,
            gate,
            queries,
            access,
            guard,
        }
    }

    /// Admits the caller to the patient a call concerns, when it concerns one.
    async fn admit(
        &self,
        ctx: &mut RequestContext,
        patient: Option<PatientId>,
    ) -> Result<(), Failure> {
        match patient {
            Some(id) => self.guard.admit(ctx, id).await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// Admits the caller to the patient of an existing task, or, when the
    /// task is the review of an emergency access and the caller performs it
    /// (ADR 0022), lets them work on it without access to the record: the
    /// review must reach its privacy officer even where no rule admits
    /// them (a patient with no practice, or registered elsewhere since). A
    /// task about no patient is there only for its parties: to anyone else
    /// it is NOT_FOUND, as a task that does not exist.
    async fn admit_to_task(
        &self,
        ctx: &mut RequestContext,
        patient: Option<PatientId>,
        task: TaskId,
    ) -> Result<(), Failure> {
        let list = self.executor.load_current(partition(patient, task)).await?;
        let id = task.to_string();
        let who = who(ctx);
        let found = list.state.task(&id);
        if found.is_some_and(|t| crate::domain::decide::reviewed_by(t, &who)) {
            ctx.access_rule = REVIEW_RULE.to_owned();
            return Ok(());
        }
        if patient.is_none() && !found.is_some_and(|t| is_party(t, &who)) {
            return Err(Failure::not_found("task", &id));
        }
        self.admit(ctx, patient).await
    }

    /// Reads are audited to `access` instead of `CARELOG_ACCESS`.
    pub fn with_access_log(mut self, access: Arc<dyn AccessSink>) -> Self {
        self.access = access;
        self
    }

    /// The patient's facts for the rules: unknown is NOT_FOUND, merged is
    /// PATIENT_MERGED unless the command closes the task (a duplicate's
    /// open work must still be closed once it is merged away). A deceased
    /// patient passes: administration (closing referrals, notifying others)
    /// continues after death.
    async fn patient(
        &self,
        id: Option<PatientId>,
        closes: bool,
    ) -> Result<Option<Patient>, Failure> {
        match id {
            None => Ok(None),
            Some(id) => {
                let facts = if closes {
                    self.gate.registered(id).await?
                } else {
                    self.gate.open(id).await?
                };
                Ok(Some(Patient {
                    birth_date: facts.birth_date,
                }))
            }
        }
    }

    /// Runs a command on the task list of `partition` and answers with the
    /// task after it.
    async fn run(
        &self,
        mut ctx: RequestContext,
        patient: Option<PatientId>,
        task: TaskId,
        command: Command,
        create: bool,
    ) -> Result<Response<pb::Task>, Status> {
        if create {
            self.admit(&mut ctx, patient).await?;
        } else {
            self.admit_to_task(&mut ctx, patient, task).await?;
        }
        let aggregate = partition(patient, task);
        let facts = match self.patient(patient, command.closes()).await {
            // Done before the patient was merged: answered as it was, not
            // refused as if new.
            Err(refused)
                if refused.code == Code::FailedPrecondition
                    && self.executor.repeats(&ctx, aggregate).await? =>
            {
                self.patient(patient, true).await?
            }
            facts => facts?,
        };
        let who = who(&ctx);
        let decide = |loaded: &[&carelog_kernel::Loaded<TaskList>]| {
            decide(
                &loaded[0].state,
                &who,
                facts.as_ref(),
                &command,
                chrono::Utc::now(),
            )
            .map(|events| Decision::single(aggregate, events))
            .map_err(Failure::from)
        };
        let executed = if create {
            self.executor.create(&ctx, aggregate, decide).await
        } else {
            self.executor.execute(&ctx, &[aggregate], decide).await
        };
        // A task about no patient is no patient's record: its refusals
        // concern the task alone.
        let committed = match patient {
            Some(patient) => self.guard.recorded(&ctx, patient, executed).await?,
            None => executed?,
        };
        let loaded = committed
            .aggregates
            .first()
            .ok_or_else(|| Failure::not_found("task", &task.to_string()))?;
        let mut resource = loaded
            .state
            .task(&task.to_string())
            .cloned()
            .ok_or_else(|| Failure::not_found("task", &task.to_string()))?;
        // The task as it stands, at its own position: a repeated request is
        // answered with the task now, not as its first answer showed it.
        resource.stream_sequence = loaded.last_sequence;
        resource.updated_at = loaded
            .last_recorded_at
            .map(carelog_kernel::envelope::timestamp);
        if !committed.appended {
            access::audit_unwritten(
                &*self.access,
                &ctx,
                SERVICE,
                &reads(std::iter::once(&resource)),
            )
            .await?;
        }
        Ok(Response::new(resource))
    }

    /// A command on an existing task named by (patient_id, task_id).
    async fn on_task(
        &self,
        ctx: RequestContext,
        patient_id: &str,
        task_text: &str,
        command: impl FnOnce(String) -> Command,
    ) -> Result<Response<pb::Task>, Status> {
        let mut v = Violations::new();
        let patient = optional_patient(patient_id, &mut v);
        let task = task_id(task_text, &mut v);
        v.into_result()?;
        let task = task.ok_or_else(|| Failure::invalid_field("task_id", "is required"))?;
        self.run(ctx, patient, task, command(task.to_string()), false)
            .await
    }

    async fn action(
        &self,
        request: Request<pb::TaskActionRequest>,
        command: impl FnOnce(String, String) -> Command,
    ) -> Result<Response<pb::Task>, Status> {
        // The reason is bounded where every commit's is (`MAX_REASON`).
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let reason = r.reason;
        self.on_task(ctx, &r.patient_id, &r.task_id, |id| command(id, reason))
            .await
    }

    /// The tasks of a work list this caller may see: a task about a patient
    /// the caller may not access is left out (a patient's own list was
    /// admitted as a whole).
    async fn visible(
        &self,
        ctx: &RequestContext,
        list: &WorkList,
        tasks: Vec<pb::Task>,
    ) -> Result<(Vec<pb::Task>, Reads), Failure> {
        if matches!(list, WorkList::Patient(_)) {
            let read = reads(tasks.iter());
            return Ok((tasks, read));
        }
        let admitted = self
            .guard
            .admitted(ctx, tasks.iter().map(|t| t.patient_id.as_str()))
            .await?;
        let who = who(ctx);
        let tasks: Vec<pb::Task> = tasks
            .into_iter()
            .filter(|t| {
                (t.patient_id.is_empty() && is_party(t, &who))
                    || admitted.contains_key(&t.patient_id)
                    || crate::domain::decide::reviewed_by(t, &who)
            })
            .collect();
        // Each patient's tasks are recorded under the rule that admitted
        // the caller to the patient, or as the review they perform.
        let mut read = reads(tasks.iter());
        for t in tasks.iter().filter(|t| !t.patient_id.is_empty()) {
            let rule = admitted
                .get(&t.patient_id)
                .map_or(REVIEW_RULE, String::as_str);
            read.rule(&t.patient_id, rule);
        }
        Ok((tasks, read))
    }

    /// The task from the read model, if it is the one the caller addressed
    /// as (patient, task); else NOT_FOUND.
    async fn addressed(
        &self,
        patient: Option<PatientId>,
        task: TaskId,
        at: Consistency,
    ) -> Result<pb::Task, Failure> {
        let patient = patient.map(|p| p.to_string()).unwrap_or_default();
        self.queries
            .get(task, at)
            .await?
            .filter(|t| t.patient_id == patient)
            .ok_or_else(|| Failure::not_found("task", &task.to_string()))
    }
}

#[tonic::async_trait]
impl<Q: TasksQueries> TasksService for TasksApi<Q> {
    async fn create_task(
        &self,
        request: Request<pb::CreateTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, ""))?;
        let mut v = Violations::new();
        let patient = optional_patient(&r.patient_id, &mut v);
        let title = r.title.trim().to_owned();
        if title.is_empty() {
            v.add("title", "is required, at most 200 characters");
        }
        check_text("title", &title, TITLE_MAX, &mut v);
        check_text("description", &r.description, TEXT_MAX, &mut v);
        let focus = check_focus(r.focus, &mut v);
        let owner_user_id = user_id("owner_user_id", &r.owner_user_id, &mut v);
        let performer = check_performer(r.performer, &ctx.actor.organisation, &mut v);
        let priority = pb::TaskPriority::try_from(r.priority).unwrap_or_else(|_| {
            v.add("priority", "must be ROUTINE, URGENT, ASAP or STAT");
            pb::TaskPriority::Unspecified
        });
        let due_date = due_date(r.due_date, &mut v);
        v.into_result()?;
        let task = new_task_id(&ctx, patient);
        let command = Command::Create(NewTask {
            task_id: task.to_string(),
            patient_id: patient.map(|p| p.to_string()).unwrap_or_default(),
            title,
            description: r.description.trim().to_owned(),
            focus,
            owner_user_id,
            performer,
            priority,
            due_date,
        });
        // A task with no patient is a new partition of its own.
        self.run(ctx, patient, task, command, patient.is_none())
            .await
    }

    async fn assign_task(
        &self,
        request: Request<pb::AssignTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, &r.reason))?;
        let mut v = Violations::new();
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            v.add(
                "update_mask",
                "is required: name owner_user_id and/or performer",
            );
        }
        let (mut owner, mut performer) = (None, None);
        for (i, path) in paths.iter().enumerate() {
            match path.as_str() {
                "owner_user_id" => owner = Some(user_id("owner_user_id", &r.owner_user_id, &mut v)),
                "performer" => {
                    performer = Some(check_performer(
                        r.performer.clone(),
                        &ctx.actor.organisation,
                        &mut v,
                    ))
                }
                other => v.add(
                    format!("update_mask.paths[{i}]"),
                    format!("unknown field '{other}'; assignable fields: owner_user_id, performer"),
                ),
            }
        }
        if v.is_empty() {
            self.on_task(ctx, &r.patient_id, &r.task_id, |task_id| Command::Assign {
                task_id,
                owner,
                performer,
            })
            .await
        } else {
            Err(Failure::invalid(v).into())
        }
    }

    async fn claim_task(
        &self,
        request: Request<pb::TaskActionRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        self.action(request, |task_id, _| Command::Claim { task_id })
            .await
    }

    async fn start_task(
        &self,
        request: Request<pb::TaskActionRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        self.action(request, |task_id, _| Command::Start { task_id })
            .await
    }

    async fn put_task_on_hold(
        &self,
        request: Request<pb::TaskActionRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        self.action(request, |task_id, reason| Command::PutOnHold {
            task_id,
            reason,
        })
        .await
    }

    async fn resume_task(
        &self,
        request: Request<pb::TaskActionRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        self.action(request, |task_id, _| Command::Resume { task_id })
            .await
    }

    async fn complete_task(
        &self,
        request: Request<pb::CompleteTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, ""))?;
        let mut v = Violations::new();
        check_text("outcome", &r.outcome, TEXT_MAX, &mut v);
        v.into_result()?;
        let outcome = r.outcome;
        self.on_task(ctx, &r.patient_id, &r.task_id, |task_id| {
            Command::Complete { task_id, outcome }
        })
        .await
    }

    async fn cancel_task(
        &self,
        request: Request<pb::TaskActionRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        self.action(request, |task_id, reason| Command::Cancel {
            task_id,
            reason,
        })
        .await
    }

    async fn reject_task(
        &self,
        request: Request<pb::TaskActionRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        self.action(request, |task_id, reason| Command::Reject {
            task_id,
            reason,
        })
        .await
    }

    async fn comment_on_task(
        &self,
        request: Request<pb::CommentOnTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (ctx, r) = RequestContext::command(request, |r| (&r.request_id, ""))?;
        let mut v = Violations::new();
        check_text("text", &r.text, TEXT_MAX, &mut v);
        v.into_result()?;
        let text = r.text;
        self.on_task(ctx, &r.patient_id, &r.task_id, |task_id| Command::Comment {
            task_id,
            text,
        })
        .await
    }

    async fn mark_task_entered_in_error(
        &self,
        request: Request<pb::TaskActionRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        self.action(request, |task_id, reason| Command::EnterInError {
            task_id,
            reason,
        })
        .await
    }

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let patient = optional_patient(&r.patient_id, &mut v);
        let task = task_id(&r.task_id, &mut v);
        v.into_result()?;
        let task = task.ok_or_else(|| Failure::invalid_field("task_id", "is required"))?;
        self.admit_to_task(&mut ctx, patient, task).await?;
        let found = self
            .addressed(
                patient,
                task,
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?;
        let read = reads(std::iter::once(&found));
        access::audit(&*self.access, &ctx, SERVICE, "GetTask", &read).await?;
        Ok(Response::new(found))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let named = [
            &r.owner_user_id,
            &r.team_id,
            &r.organisation_ods,
            &r.patient_id,
        ]
        .iter()
        .filter(|s| !s.trim().is_empty())
        .count();
        let list = if named != 1 {
            v.add(
                "owner_user_id",
                "name exactly one work list: owner_user_id, team_id, organisation_ods or patient_id",
            );
            None
        } else if !r.owner_user_id.trim().is_empty() {
            Some(WorkList::Owner(r.owner_user_id.trim().to_owned()))
        } else if !r.team_id.trim().is_empty() {
            v.check(
                "team_id",
                TeamId::parse(&ctx.actor.organisation, &r.team_id),
            )
            .map(|t| WorkList::Team(t.to_string()))
        } else if !r.organisation_ods.trim().is_empty() {
            v.check("organisation_ods", OdsCode::parse(&r.organisation_ods))
                .map(|o| WorkList::Organisation(o.to_string()))
        } else {
            optional_patient(&r.patient_id, &mut v).map(WorkList::Patient)
        };
        let mut statuses = Vec::new();
        for (i, s) in r.statuses.iter().enumerate() {
            match pb::TaskStatus::try_from(*s) {
                Ok(pb::TaskStatus::Unspecified) | Err(_) => {
                    v.add(format!("statuses[{i}]"), "is not a task status")
                }
                Ok(s) => statuses.push(s),
            }
        }
        if statuses.is_empty() {
            statuses = status::ACTIVE.to_vec();
        }
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let list =
            list.ok_or_else(|| Failure::invalid_field("owner_user_id", "name a work list"))?;
        if let WorkList::Patient(patient) = &list {
            self.admit(&mut ctx, Some(*patient)).await?;
        }
        let (tasks, next_page_token) = self
            .queries
            .list(
                &list,
                &statuses,
                &page,
                Consistency::until_deadline(&ctx, r.min_sequence),
            )
            .await?;
        let (tasks, read) = self.visible(&ctx, &list, tasks).await?;
        access::audit(&*self.access, &ctx, SERVICE, "ListTasks", &read).await?;
        Ok(Response::new(pb::ListTasksResponse {
            tasks,
            next_page_token,
        }))
    }

    async fn list_task_history(
        &self,
        request: Request<pb::ListTaskHistoryRequest>,
    ) -> Result<Response<pb::ListTaskHistoryResponse>, Status> {
        let (mut ctx, r) = RequestContext::query(request)?;
        let mut v = Violations::new();
        let patient = optional_patient(&r.patient_id, &mut v);
        let task = task_id(&r.task_id, &mut v);
        let page = page(r.page_size, r.page_token, &mut v);
        v.into_result()?;
        let task = task.ok_or_else(|| Failure::invalid_field("task_id", "is required"))?;
        self.admit_to_task(&mut ctx, patient, task).await?;
        let at = Consistency::until_deadline(&ctx, r.min_sequence);
        let found = self.addressed(patient, task, at).await?;
        let (entries, next_page_token) = self.queries.history(task, &page, at).await?;
        let mut read = Reads::new();
        if !found.patient_id.is_empty() {
            for e in &entries {
                read.record(
                    &found.patient_id,
                    &found.task_id,
                    CONTEXT,
                    e.stream_sequence,
                    false,
                );
            }
        }
        access::audit(&*self.access, &ctx, SERVICE, "ListTaskHistory", &read).await?;
        Ok(Response::new(pb::ListTaskHistoryResponse {
            entries,
            next_page_token,
        }))
    }
}
