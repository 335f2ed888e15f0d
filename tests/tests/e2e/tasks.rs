//! Tasks on the real servers: a medication review for the practice team,
//! claimed and completed; work lists ordered overdue first; the patient
//! gate; bad input refused with nothing appended; every event audited.

mod golden;

use std::time::Duration;

use carelog_proto::demographics::v1 as dpb;
use carelog_proto::kernel::v1::PartialDate;
use carelog_proto::tasks::v1 as pb;
use carelog_tests::harness::{TestStack, jane_smith};
use carelog_tests::tasks::{
    PRACTICE_TEAM, action, fields, medication_review, organisation, reason, req_in_teams, team,
};
use tonic::Code;
use tonic_types::StatusExt as _;

const AUTHORISATION: &str = "01930000-0000-7000-8000-0000000000bb";

fn status(task: &pb::Task) -> pb::TaskStatus {
    pb::TaskStatus::try_from(task.status).expect("status")
}

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

    let claimed = tasks
        .claim_task(req_in_teams(
            &stack,
            "ph-patel",
            "A81001",
            &[PRACTICE_TEAM],
            action(&created, ""),
        ))
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
        .complete_task(req_in_teams(
            &stack,
            "ph-patel",
            "A81001",
            &[PRACTICE_TEAM],
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
        .start_task(req_in_teams(
            &stack,
            "ph-patel",
            "A81001",
            &[PRACTICE_TEAM],
            action(&created, ""),
        ))
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
async fn a_practice_work_list_shows_overdue_first_then_priority_then_due_date_in_pages() {
    let stack = TestStack::start().await;
    let mut tasks = stack.tasks();
    let date = |year, month, day| Some(PartialDate { year, month, day });
    let mut last = 0;
    let mut ids = Vec::new();
    for (title, priority, due) in [
        (
            "Routine, due next year",
            pb::TaskPriority::Routine,
            date(2099, 1, 1),
        ),
        ("Stat, no due date", pb::TaskPriority::Stat, None),
        (
            "Routine, overdue",
            pb::TaskPriority::Routine,
            date(2020, 1, 1),
        ),
        (
            "Urgent, due later",
            pb::TaskPriority::Urgent,
            date(2098, 6, 1),
        ),
    ] {
        // Tasks with no patient: each is its own partition.
        let created = tasks
            .create_task(stack.req(pb::CreateTaskRequest {
                title: title.into(),
                performer: organisation("A81001"),
                priority: priority as i32,
                due_date: due,
                ..Default::default()
            }))
            .await
            .expect(title)
            .into_inner();
        assert!(created.patient_id.is_empty());
        last = last.max(created.stream_sequence);
        ids.push(created);
    }
    let page = |token: String| {
        let mut tasks = stack.tasks();
        let request = stack.req(pb::ListTasksRequest {
            organisation_ods: "A81001".into(),
            page_size: 2,
            page_token: token,
            min_sequence: last,
            ..Default::default()
        });
        async move { tasks.list_tasks(request).await.expect("page").into_inner() }
    };
    let first = page(String::new()).await;
    let second = page(first.next_page_token.clone()).await;
    let titles: Vec<String> = first
        .tasks
        .iter()
        .chain(&second.tasks)
        .map(|t| t.title.clone())
        .collect();
    assert_eq!(
        titles,
        vec![
            "Routine, overdue",
            "Stat, no due date",
            "Urgent, due later",
            "Routine, due next year"
        ]
    );
    assert!(second.next_page_token.is_empty());

    // Any user of the organisation may claim; another organisation may not.
    let overdue = ids
        .iter()
        .find(|t| t.title == "Routine, overdue")
        .expect("task");
    let refused = tasks
        .claim_task(stack.req_in_role("dr-far", "B82002", "R8000", action(overdue, "")))
        .await
        .expect_err("other organisation");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let claimed = tasks
        .claim_task(stack.req_as("rx-clerk", action(overdue, "")))
        .await
        .expect("claim")
        .into_inner();
    assert_eq!(claimed.owner_user_id, "rx-clerk");
    let started = tasks
        .start_task(stack.req_as("rx-clerk", action(overdue, "")))
        .await
        .expect("start")
        .into_inner();
    let held = tasks
        .put_task_on_hold(stack.req_as("rx-clerk", action(&started, "awaiting the pharmacy")))
        .await
        .expect("hold")
        .into_inner();
    assert_eq!(status(&held), pb::TaskStatus::OnHold);
    assert_eq!(held.status_reason, "awaiting the pharmacy");
    let resumed = tasks
        .resume_task(stack.req_as("rx-clerk", action(&held, "")))
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(status(&resumed), pb::TaskStatus::InProgress);
    let reassigned = tasks
        .assign_task(stack.req(pb::AssignTaskRequest {
            task_id: resumed.task_id.clone(),
            owner_user_id: "dr-jones".into(),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["owner_user_id".into()],
            }),
            reason: "rx-clerk on leave".into(),
            ..Default::default()
        }))
        .await
        .expect("reassign")
        .into_inner();
    assert_eq!(reassigned.owner_user_id, "dr-jones");
    let stat = ids
        .iter()
        .find(|t| t.title == "Stat, no due date")
        .expect("task");
    let no_reason = tasks
        .cancel_task(stack.req(action(stat, "")))
        .await
        .expect_err("reason required");
    assert_eq!(fields(&no_reason), vec!["reason"]);
    let cancelled = tasks
        .cancel_task(stack.req(action(stat, "Raised twice")))
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(status(&cancelled), pb::TaskStatus::Cancelled);
    let urgent = ids
        .iter()
        .find(|t| t.title == "Urgent, due later")
        .expect("task");
    let rejected = tasks
        .reject_task(stack.req(action(urgent, "Not for this practice")))
        .await
        .expect("reject")
        .into_inner();
    assert_eq!(status(&rejected), pb::TaskStatus::Rejected);
    let corrected = tasks
        .mark_task_entered_in_error(stack.req(action(&rejected, "Raised on the wrong list")))
        .await
        .expect("entered in error")
        .into_inner();
    assert_eq!(status(&corrected), pb::TaskStatus::EnteredInError);
    stack.stop().await;
}

#[tokio::test]
async fn tasks_refuse_unknown_and_merged_patients_but_not_deceased_ones() {
    let stack = TestStack::start().await;
    let mut tasks = stack.tasks();
    let unknown = tasks
        .create_task(stack.req(medication_review(
            &uuid::Uuid::now_v7().to_string(),
            AUTHORISATION,
            team(PRACTICE_TEAM),
        )))
        .await
        .expect_err("unknown patient");
    assert_eq!(unknown.code(), Code::NotFound);

    let duplicate = stack.register(jane_smith()).await;
    let survivor = stack.register(jane_smith()).await;
    stack
        .client()
        .merge_patient(stack.req(dpb::MergePatientRequest {
            duplicate_patient_id: duplicate.patient_id.clone(),
            survivor_patient_id: survivor.patient_id.clone(),
            reason: "same person registered twice".into(),
            request_id: String::new(),
        }))
        .await
        .expect("merge");
    let merged = tasks
        .create_task(stack.req(medication_review(
            &duplicate.patient_id,
            AUTHORISATION,
            team(PRACTICE_TEAM),
        )))
        .await
        .expect_err("merged patient");
    assert_eq!(merged.code(), Code::FailedPrecondition);
    let info = merged.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "PATIENT_MERGED");
    assert_eq!(
        info.metadata.get("survivorPatientId"),
        Some(&survivor.patient_id)
    );

    // Administration continues after death: closing the record's loose ends.
    stack
        .client()
        .record_death(stack.req(dpb::RecordDeathRequest {
            patient_id: survivor.patient_id.clone(),
            date_of_death: Some(PartialDate {
                year: 2024,
                month: 2,
                day: 1,
            }),
            ..Default::default()
        }))
        .await
        .expect("death");
    let after_death = tasks
        .create_task(stack.req(pb::CreateTaskRequest {
            title: "Cancel outstanding repeat prescriptions".into(),
            ..medication_review(&survivor.patient_id, AUTHORISATION, organisation("A81001"))
        }))
        .await
        .expect("a task about a deceased patient")
        .into_inner();
    assert_eq!(status(&after_death), pb::TaskStatus::Requested);
    stack.stop().await;
}

#[tokio::test]
async fn bad_task_input_names_its_field_and_appends_nothing() {
    let stack = TestStack::start().await;
    let jane = stack.register(jane_smith()).await;
    let mut tasks = stack.tasks();
    let good = medication_review(&jane.patient_id, AUTHORISATION, team(PRACTICE_TEAM));
    let existing = tasks
        .create_task(stack.req(good.clone()))
        .await
        .expect("create")
        .into_inner();
    let before = stack.last_sequence_of("tasks").await;
    // Each case is a new request (a repeated request_id returns the first
    // result before any rule is checked).
    let good = pb::CreateTaskRequest {
        request_id: String::new(),
        ..good
    };
    let cases: Vec<(&str, pb::CreateTaskRequest)> = vec![
        (
            "title",
            pb::CreateTaskRequest {
                title: " ".into(),
                ..good.clone()
            },
        ),
        (
            "patient_id",
            pb::CreateTaskRequest {
                patient_id: "not-a-uuid".into(),
                ..good.clone()
            },
        ),
        (
            "focus.reference",
            pb::CreateTaskRequest {
                focus: Some(pb::Focus {
                    kind: pb::FocusKind::Consultation as i32,
                    reference: "yesterday's".into(),
                    display: String::new(),
                }),
                ..good.clone()
            },
        ),
        (
            "performer.organisation_ods",
            pb::CreateTaskRequest {
                performer: organisation("nope!"),
                ..good.clone()
            },
        ),
        (
            "performer.team_id",
            pb::CreateTaskRequest {
                performer: team("a team with spaces"),
                ..good.clone()
            },
        ),
        (
            "priority",
            pb::CreateTaskRequest {
                priority: 42,
                ..good.clone()
            },
        ),
        (
            "due_date",
            pb::CreateTaskRequest {
                due_date: Some(PartialDate {
                    year: 2025,
                    month: 2,
                    day: 0,
                }),
                ..good.clone()
            },
        ),
        (
            "due_date",
            pb::CreateTaskRequest {
                due_date: Some(PartialDate {
                    year: 1949,
                    month: 1,
                    day: 1,
                }),
                ..good.clone()
            },
        ),
        (
            "owner_user_id",
            pb::CreateTaskRequest {
                performer: None,
                ..good.clone()
            },
        ),
    ];
    for (field, request) in cases {
        let refused = tasks
            .create_task(stack.req(request))
            .await
            .expect_err(field);
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{field}: {}",
            refused.message()
        );
        assert_eq!(
            fields(&refused),
            vec![field.to_owned()],
            "{}",
            refused.message()
        );
        assert!(refused.message().contains(field), "{}", refused.message());
    }
    let unknown_mask = tasks
        .assign_task(stack.req(pb::AssignTaskRequest {
            patient_id: jane.patient_id.clone(),
            task_id: existing.task_id.clone(),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["status".into()],
            }),
            ..Default::default()
        }))
        .await
        .expect_err("unknown mask path");
    assert_eq!(fields(&unknown_mask), vec!["update_mask.paths[0]"]);
    let no_outcome = tasks
        .complete_task(stack.req(pb::CompleteTaskRequest {
            patient_id: jane.patient_id.clone(),
            task_id: existing.task_id.clone(),
            outcome: String::new(),
            request_id: String::new(),
        }))
        .await
        .expect_err("requested cannot complete");
    assert_eq!(no_outcome.code(), Code::FailedPrecondition);
    let no_task = tasks
        .start_task(stack.req(pb::TaskActionRequest {
            patient_id: jane.patient_id.clone(),
            task_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        }))
        .await
        .expect_err("unknown task");
    assert_eq!(no_task.code(), Code::NotFound);
    let bad_list = tasks
        .list_tasks(stack.req(pb::ListTasksRequest {
            team_id: PRACTICE_TEAM.into(),
            owner_user_id: "dr-jones".into(),
            ..Default::default()
        }))
        .await
        .expect_err("two work lists");
    assert_eq!(fields(&bad_list), vec!["owner_user_id"]);
    assert_eq!(
        stack.last_sequence_of("tasks").await,
        before,
        "nothing was appended"
    );
    stack.stop().await;
}
