//! Work lists: overdue first, then priority, then due date, in pages; an
//! organisation's task claimed by one of its users and worked through.

use carelog_proto::kernel::v1::PartialDate;
use carelog_proto::tasks::v1 as pb;
use carelog_tests::consultations::mask;
use carelog_tests::harness::TestStack;
use carelog_tests::tasks::{action, fields, organisation, status};
use tonic::Code;

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
            update_mask: mask(&["owner_user_id"]),
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
