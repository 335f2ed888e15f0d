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

    // Any user of the organisation may claim; to another organisation, a
    // task about no patient that it is no party to is not there.
    let overdue = ids
        .iter()
        .find(|t| t.title == "Routine, overdue")
        .expect("task");
    let refused = tasks
        .claim_task(stack.req_in_role("dr-far", "B82002", "R8000", action(overdue, "")))
        .await
        .expect_err("other organisation");
    assert_eq!(refused.code(), Code::NotFound);
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

#[tokio::test]
async fn a_task_about_no_patient_is_its_parties_business_alone() {
    let stack = TestStack::start().await;
    let mut tasks = stack.tasks();
    fn at_hospital<T>(stack: &TestStack, message: T) -> tonic::Request<T> {
        stack.req_in_role("dr-ward", "RR8", "R8000", message)
    }
    // Given the practice's own task about no patient, and one it asks of
    // the hospital
    let create = |title: &str, performer: &str| pb::CreateTaskRequest {
        title: title.into(),
        description: "Practice business".into(),
        performer: organisation(performer),
        ..Default::default()
    };
    let own = tasks
        .create_task(stack.req(create("Restock the vaccine fridge", "A81001")))
        .await
        .expect("the practice's own task")
        .into_inner();
    let asked = tasks
        .create_task(stack.req(create("Send the discharge letters", "RR8")))
        .await
        .expect("a task for the hospital")
        .into_inner();
    let last = own.stream_sequence.max(asked.stream_sequence);

    // When a hospital clinician lists the practice's work list, then the
    // practice's own task is not in it
    let practice_list = |request| {
        let mut tasks = stack.tasks();
        async move {
            tasks
                .list_tasks(request)
                .await
                .expect("work list")
                .into_inner()
        }
    };
    let listing = || pb::ListTasksRequest {
        organisation_ods: "A81001".into(),
        min_sequence: last,
        ..Default::default()
    };
    assert!(
        practice_list(at_hospital(&stack, listing()))
            .await
            .tasks
            .is_empty()
    );
    // and reading it, its history or commenting on it is NOT_FOUND, as for
    // a task that does not exist
    let get = pb::GetTaskRequest {
        task_id: own.task_id.clone(),
        min_sequence: last,
        ..Default::default()
    };
    let refused = [
        tasks
            .get_task(at_hospital(&stack, get.clone()))
            .await
            .map(|_| ()),
        tasks
            .list_task_history(at_hospital(
                &stack,
                pb::ListTaskHistoryRequest {
                    task_id: own.task_id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(|_| ()),
        tasks
            .comment_on_task(at_hospital(
                &stack,
                pb::CommentOnTaskRequest {
                    task_id: own.task_id.clone(),
                    text: "seen".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(|_| ()),
    ];
    for answer in refused {
        assert_eq!(answer.expect_err("not a party").code(), Code::NotFound);
    }

    // while the practice sees its own task, and the hospital the one asked
    // of it
    assert_eq!(practice_list(stack.req(listing())).await.tasks.len(), 1);
    let for_hospital = tasks
        .get_task(at_hospital(
            &stack,
            pb::GetTaskRequest {
                task_id: asked.task_id.clone(),
                min_sequence: last,
                ..Default::default()
            },
        ))
        .await
        .expect("the hospital performs it")
        .into_inner();
    assert_eq!(for_hospital.title, "Send the discharge letters");
    tasks
        .get_task(stack.req(get))
        .await
        .expect("the practice's own task");
    stack.stop().await;
}
