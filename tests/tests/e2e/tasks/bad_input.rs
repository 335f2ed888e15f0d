//! Bad input names its field and appends nothing.

use carelog_proto::kernel::v1::PartialDate;
use carelog_proto::tasks::v1 as pb;
use carelog_tests::consultations::mask;
use carelog_tests::harness::{TestStack, jane_smith};
use carelog_tests::tasks::{
    AUTHORISATION, PRACTICE_TEAM, fields, medication_review, organisation, team,
};
use tonic::Code;

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
            update_mask: mask(&["status"]),
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
