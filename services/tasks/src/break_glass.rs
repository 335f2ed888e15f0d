//! The privacy officer's review of an emergency access (ADR 0022): every
//! break-glass access raises a task in the work list of the patient's
//! registered organisation, created by carelog itself through the tasks
//! executor. The request id is derived from the access event's id, so a
//! retried raise creates the task once.

use std::sync::Arc;

use carelog_kernel::guard::BreakGlassHook;
use carelog_kernel::{Actor, Decision, Executor, Failure, OdsCode, PatientId, RequestContext};
use carelog_proto::access::v1::RecordAccessed;
use carelog_proto::tasks::v1 as pb;
use futures::FutureExt as _;
use futures::future::BoxFuture;

use crate::domain::{Command, NewTask, TaskList, decide};
use crate::input::{new_task_id, who};

/// The user id carelog acts as when it raises a review.
pub const SYSTEM_USER: &str = "carelog";

/// The title of an emergency-access review task.
pub const REVIEW_TITLE: &str = "Review emergency access (break glass)";

/// Raises review tasks through the tasks executor.
#[derive(Debug, Clone)]
pub struct PrivacyReview {
    executor: Arc<Executor<TaskList>>,
    /// Reviews emergency access to a patient with no registered practice.
    reviewer: Option<OdsCode>,
}

impl PrivacyReview {
    pub fn new(executor: Arc<Executor<TaskList>>) -> Self {
        Self {
            executor,
            reviewer: None,
        }
    }

    /// The organisation (a shared-care host's information governance) whose
    /// privacy officer reviews an emergency access to a patient with no
    /// registered practice; without one, the organisation that broke glass.
    pub fn with_reviewer(mut self, reviewer: Option<OdsCode>) -> Self {
        self.reviewer = reviewer;
        self
    }

    async fn raise_task(&self, event: &RecordAccessed) -> Result<(), Failure> {
        let patient = PatientId::parse(&event.patient_id)
            .map_err(|_| Failure::invalid_field("patient_id", "is not a patient id"))?;
        let caller = event.actor.clone().unwrap_or_default();
        // The review belongs to the registered organisation; a patient with
        // none is reviewed by the configured reviewer, or else where the
        // glass was broken.
        let organisation = OdsCode::parse(&event.registered_organisation)
            .ok()
            .or_else(|| self.reviewer.clone())
            .map_or_else(|| OdsCode::parse(&caller.organisation_ods), Ok)
            .map_err(|_| Failure::invalid_field("organisation", "no organisation to review"))?;
        let actor = Actor {
            user_id: SYSTEM_USER.to_owned(),
            display_name: "carelog (emergency access review)".to_owned(),
            role: "SYSTEM".to_owned(),
            organisation: organisation.clone(),
            purpose_of_use: "AUDIT".to_owned(),
        };
        let mut ctx = RequestContext::for_actor(actor, &tonic::metadata::MetadataMap::new())
            .with_request(
                &format!("break-glass:{}", event.access_id),
                "emergency access review",
            )?;
        ctx.correlation_id = event.correlation_id.clone();
        ctx.causation_id = event.access_id.clone();
        let task = new_task_id(&ctx, Some(patient));
        let command = Command::Create(NewTask {
            task_id: task.to_string(),
            patient_id: patient.to_string(),
            title: REVIEW_TITLE.to_owned(),
            description: format!(
                "{} ({}, {}) broke glass calling {}/{}: \"{}\"",
                caller.display_name,
                caller.user_id,
                caller.organisation_ods,
                event.service,
                event.method,
                event.break_glass_reason
            )
            .chars()
            .take(4000)
            .collect(),
            focus: Some(pb::Focus {
                kind: pb::FocusKind::Other as i32,
                reference: format!(
                    "{}{}",
                    carelog_kernel::access::REVIEW_FOCUS_PREFIX,
                    event.access_id
                ),
                display: "Emergency access".to_owned(),
            }),
            owner_user_id: String::new(),
            performer: Some(pb::Performer {
                performer: Some(pb::performer::Performer::OrganisationOds(
                    organisation.to_string(),
                )),
            }),
            priority: pb::TaskPriority::Urgent,
            due_date: None,
        });
        let who = who(&ctx);
        self.executor
            .execute(&ctx, &[patient], |loaded| {
                decide(&loaded[0].state, &who, None, &command, chrono::Utc::now())
                    .map(|events| Decision::single(patient, events))
                    .map_err(Failure::from)
            })
            .await?;
        Ok(())
    }
}

impl BreakGlassHook for PrivacyReview {
    fn raise<'a>(&'a self, event: &'a RecordAccessed) -> BoxFuture<'a, Result<(), Failure>> {
        self.raise_task(event).boxed()
    }
}
