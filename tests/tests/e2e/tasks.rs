//! Tasks on the real servers: a medication review for the practice team,
//! claimed and completed, with its history and audit; work lists ordered
//! overdue first; the patient gate; bad input refused with nothing
//! appended; the read models rebuilt identical.

mod bad_input;
mod golden;
mod patients;
mod rebuild;
mod work_lists;

use std::time::Duration;

use carelog_proto::tasks::v1 as pb;
use carelog_tests::audit::position;
use carelog_tests::harness::{TestStack, jane_smith};
use carelog_tests::tasks::{
    AUTHORISATION, PRACTICE_TEAM, action, as_practice_pharmacist, medication_review, reason,
    req_in_teams, status, team,
};
use tonic::Code;
use tonic_types::StatusExt as _;

#[tokio::test]
async fn a_medication_review_for_the_practice_team_is_claimed_completed_and_its_history_kept() {
    let stack = TestStack::start().await;
    // Registered a moment before: the task is accepted at once.
    let jane = stack.register(jane_smith()).await;
    let mut tasks = stack.tasks();
    let create = medication_review(&jane.patient_id, AUTHORISATION, team(PRACTICE_TEAM));
    let created = tasks
        .create_task(stack.req(create.clone()))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(status(&created), pb::TaskStatus::Requested);
    assert_eq!(created.patient_id, jane.patient_id);
    assert!(created.stream_sequence > 0);
    let repeat = tasks
        .create_task(stack.req(create))
        .await
        .expect("repeated create")
        .into_inner();
    assert_eq!(
        (repeat.task_id.as_str(), repeat.stream_sequence),
        (created.task_id.as_str(), created.stream_sequence),
        "a repeated request_id returns the first result"
    );

    let team_list = tasks
        .list_tasks(stack.req(pb::ListTasksRequest {
            team_id: PRACTICE_TEAM.into(),
            min_sequence: created.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("team work list")
        .into_inner();
    assert_eq!(team_list.tasks.len(), 1);
    assert_eq!(team_list.tasks[0].task_id, created.task_id);

    let outsider = tasks
        .claim_task(req_in_teams(
            &stack,
            "nurse-lee",
            "A81001",
            &["nurses"],
            action(&created, ""),
        ))
        .await
        .expect_err("not a member");
    assert_eq!(outsider.code(), Code::PermissionDenied);
    assert_eq!(reason(&outsider), "NOT_TEAM_MEMBER");
    // and the refusal is recorded, as every refusal is (ADR 0021)
    let refusals = stack.refusals(&jane.patient_id).await;
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(
        (
            refusals[0].method.as_str(),
            refusals[0].reason_code.as_str()
        ),
        ("ClaimTask", "NOT_TEAM_MEMBER")
    );
    assert_eq!(
        refusals[0].actor.as_ref().map(|a| a.user_id.as_str()),
        Some("nurse-lee")
    );

    let unclaimed = tasks
        .start_task(stack.req(action(&created, "")))
        .await
        .expect_err("work needs an owner");
    assert_eq!(unclaimed.code(), Code::FailedPrecondition);
    assert_eq!(reason(&unclaimed), "TASK_UNOWNED");

    let claimed = tasks
        .claim_task(as_practice_pharmacist(&stack, action(&created, "")))
        .await
        .expect("claim")
        .into_inner();
    assert_eq!(status(&claimed), pb::TaskStatus::Accepted);
    assert_eq!(claimed.owner_user_id, "ph-patel");

    let commented = tasks
        .comment_on_task(stack.req(pb::CommentOnTaskRequest {
            patient_id: jane.patient_id.clone(),
            task_id: created.task_id.clone(),
            text: "Patient prefers a telephone review".into(),
            request_id: String::new(),
        }))
        .await
        .expect("comment")
        .into_inner();
    assert_eq!(commented.notes.len(), 1);
    // A comment PostgreSQL could not hold is refused, naming its field
    let garbled = tasks
        .comment_on_task(stack.req(pb::CommentOnTaskRequest {
            patient_id: jane.patient_id.clone(),
            task_id: created.task_id.clone(),
            text: "ok\0".into(),
            request_id: String::new(),
        }))
        .await
        .expect_err("a NUL in the comment");
    assert_eq!(garbled.code(), Code::InvalidArgument);
    assert_eq!(
        carelog_tests::assert::violated_fields(&garbled),
        vec!["text"]
    );

    let not_owner = tasks
        .complete_task(stack.req(pb::CompleteTaskRequest {
            patient_id: jane.patient_id.clone(),
            task_id: created.task_id.clone(),
            outcome: "done".into(),
            request_id: String::new(),
        }))
        .await
        .expect_err("only the owner completes");
    assert_eq!(not_owner.code(), Code::FailedPrecondition);
    assert_eq!(reason(&not_owner), "NOT_TASK_OWNER");

    let completed = tasks
        .complete_task(as_practice_pharmacist(
            &stack,
            pb::CompleteTaskRequest {
                patient_id: jane.patient_id.clone(),
                task_id: created.task_id.clone(),
                outcome: "Reviewed: continue, next review in 12 months".into(),
                request_id: uuid::Uuid::now_v7().to_string(),
            },
        ))
        .await
        .expect("complete")
        .into_inner();
    assert_eq!(status(&completed), pb::TaskStatus::Completed);

    let late = tasks
        .start_task(as_practice_pharmacist(&stack, action(&created, "")))
        .await
        .expect_err("completed is terminal");
    assert_eq!(late.code(), Code::FailedPrecondition);
    let info = late.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "INVALID_TRANSITION");
    assert_eq!(
        info.metadata.get("currentStatus").map(String::as_str),
        Some("completed")
    );
    assert_eq!(
        info.metadata.get("requestedStatus").map(String::as_str),
        Some("in-progress")
    );
    assert!(late.message().contains("completed") && late.message().contains("in-progress"));

    let read = tasks
        .get_task(stack.req(pb::GetTaskRequest {
            patient_id: jane.patient_id.clone(),
            task_id: created.task_id.clone(),
            min_sequence: completed.stream_sequence,
        }))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(status(&read), pb::TaskStatus::Completed);
    assert_eq!(read.outcome, "Reviewed: continue, next review in 12 months");
    assert_eq!(read.version, 4);

    let active = tasks
        .list_tasks(stack.req(pb::ListTasksRequest {
            team_id: PRACTICE_TEAM.into(),
            min_sequence: completed.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("active list")
        .into_inner();
    assert!(
        active.tasks.is_empty(),
        "a completed task leaves the work list"
    );
    let mine = tasks
        .list_tasks(stack.req(pb::ListTasksRequest {
            owner_user_id: "ph-patel".into(),
            statuses: vec![pb::TaskStatus::Completed as i32],
            ..Default::default()
        }))
        .await
        .expect("owner list")
        .into_inner();
    assert_eq!(mine.tasks.len(), 1);
    let theirs = tasks
        .list_tasks(stack.req(pb::ListTasksRequest {
            patient_id: jane.patient_id.clone(),
            statuses: vec![pb::TaskStatus::Completed as i32],
            ..Default::default()
        }))
        .await
        .expect("patient list")
        .into_inner();
    assert_eq!(theirs.tasks.len(), 1);

    let history = tasks
        .list_task_history(stack.req(pb::ListTaskHistoryRequest {
            patient_id: jane.patient_id.clone(),
            task_id: created.task_id.clone(),
            page_size: 3,
            min_sequence: completed.stream_sequence,
            ..Default::default()
        }))
        .await
        .expect("history")
        .into_inner();
    let steps: Vec<(String, i32, i32, String)> = history
        .entries
        .iter()
        .map(|e| {
            (
                e.event_type.clone(),
                e.from_status,
                e.to_status,
                e.actor.clone().unwrap_or_default().user_id,
            )
        })
        .collect();
    use pb::TaskStatus as S;
    assert_eq!(
        steps,
        vec![
            (
                "TaskCreated".into(),
                0,
                S::Requested as i32,
                "dr-jones".into()
            ),
            (
                "TaskClaimed".into(),
                S::Requested as i32,
                S::Accepted as i32,
                "ph-patel".into()
            ),
            (
                "TaskCommented".into(),
                S::Accepted as i32,
                S::Accepted as i32,
                "dr-jones".into()
            ),
        ]
    );
    assert!(history.entries.iter().all(|e| e.recorded_at.is_some()));
    let rest = tasks
        .list_task_history(stack.req(pb::ListTaskHistoryRequest {
            patient_id: jane.patient_id.clone(),
            task_id: created.task_id.clone(),
            page_token: history.next_page_token,
            ..Default::default()
        }))
        .await
        .expect("history page 2")
        .into_inner();
    assert_eq!(rest.entries.len(), 1);
    assert_eq!(rest.entries[0].event_type, "TaskCompleted");
    assert_eq!(
        rest.entries[0].note,
        "Reviewed: continue, next review in 12 months"
    );
    assert!(rest.next_page_token.is_empty());

    // Every event of the task is in the medico-legal audit history.
    let last = stack.last_sequence_of("tasks").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    assert!(
        carelog_projections::checkpoint::wait_for(
            &stack.pool,
            "audit_events",
            "CARELOG_TASKS",
            last,
            deadline
        )
        .await
        .expect("checkpoint")
    );
    let (audited,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM audit_events WHERE context = 'tasks' AND patient_id = $1",
    )
    .bind(&jane.patient_id)
    .fetch_one(&stack.pool)
    .await
    .expect("audit");
    assert_eq!(audited, 4, "created, claimed, commented, completed");
    stack.stop().await;
}

#[tokio::test]
async fn a_hospital_team_of_the_same_name_neither_claims_the_practice_teams_task_nor_reads_the_record_through_it()
 {
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let mut tasks = stack.tasks();
    // Given a medication review the practice gave its own pharmacists
    let created = tasks
        .create_task(stack.req(medication_review(
            &jane.patient_id,
            AUTHORISATION,
            team(PRACTICE_TEAM),
        )))
        .await
        .expect("create")
        .into_inner();
    // Then the task names the team with its organisation
    let performer = created.performer.as_ref().and_then(|p| p.performer.clone());
    assert_eq!(
        performer,
        Some(pb::performer::Performer::TeamId(format!(
            "A81001/{PRACTICE_TEAM}"
        )))
    );

    // When a hospital pharmacist, whose token names a hospital team of the
    // same name, claims it or reads it, then the task opens nothing to
    // them: they have no relationship with the patient
    let at_hospital = |message| req_in_teams(&stack, "ph-ward", "RR8", &[PRACTICE_TEAM], message);
    let refused = tasks
        .claim_task(at_hospital(action(&created, "")))
        .await
        .expect_err("another organisation's team");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "NO_LEGITIMATE_RELATIONSHIP");
    // and their own team's work list does not hold it
    let hospital_list = tasks
        .list_tasks(req_in_teams(
            &stack,
            "ph-ward",
            "RR8",
            &[PRACTICE_TEAM],
            pb::ListTasksRequest {
                team_id: PRACTICE_TEAM.into(),
                min_sequence: created.stream_sequence,
                ..Default::default()
            },
        ))
        .await
        .expect("the hospital team's work list")
        .into_inner();
    assert!(hospital_list.tasks.is_empty());

    // while a practice pharmacist claims it, the practice's work list naming
    // the team either way
    for named in [PRACTICE_TEAM.to_owned(), format!("a81001/{PRACTICE_TEAM}")] {
        let listed = tasks
            .list_tasks(stack.req(pb::ListTasksRequest {
                team_id: named,
                min_sequence: created.stream_sequence,
                ..Default::default()
            }))
            .await
            .expect("the practice team's work list")
            .into_inner();
        assert_eq!(listed.tasks.len(), 1);
    }
    let claimed = tasks
        .claim_task(as_practice_pharmacist(&stack, action(&created, "")))
        .await
        .expect("claimed by the practice's pharmacist")
        .into_inner();
    assert_eq!(claimed.owner_user_id, "ph-patel");
    stack.stop().await;
}

/// A repeated CreateTask is answered with the task as it stands, at its own
/// position, and audited at that position: the audit then shows the task
/// as the answer showed it.
#[tokio::test]
async fn a_repeated_task_creation_answers_with_the_task_now_and_is_audited_there() {
    // Given Jane's medication review created under its request id, and
    // claimed since by the practice pharmacist
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let mut tasks = stack.tasks();
    let create = medication_review(&jane.patient_id, AUTHORISATION, team(PRACTICE_TEAM));
    let created = tasks
        .create_task(stack.req(create.clone()))
        .await
        .expect("created")
        .into_inner();
    let claimed = tasks
        .claim_task(as_practice_pharmacist(&stack, action(&created, "")))
        .await
        .expect("claimed")
        .into_inner();

    // When the creation is sent again
    let again = tasks
        .create_task(stack.req(create))
        .await
        .expect("the creation again")
        .into_inner();

    // Then it answers with the task claimed, at the claim's position
    assert_eq!(again.task_id, created.task_id);
    assert_eq!(again.owner_user_id, "ph-patel");
    assert_eq!(again.stream_sequence, claimed.stream_sequence);
    // and its read is audited at that position
    let read = stack.last_access(&jane.patient_id, "CreateTask").await;
    assert_eq!(read.resource_ids, [created.task_id.as_str()]);
    assert_eq!(
        position(&read, "CARELOG_TASKS"),
        Some(claimed.stream_sequence)
    );
}
