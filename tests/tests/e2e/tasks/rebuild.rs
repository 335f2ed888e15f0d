//! The tasks read models rebuilt from sequence 1 are identical to the ones
//! the live projector built.

use std::time::Duration;

use carelog_proto::tasks::v1 as pb;
use carelog_tests::harness::{TestStack, jane_smith};
use carelog_tests::tasks::{
    AUTHORISATION, PRACTICE_TEAM, action, as_practice_pharmacist, medication_review, organisation,
    team,
};

async fn dump(pool: &sqlx::PgPool) -> Vec<String> {
    let mut out = Vec::new();
    for (table, order) in [
        ("tasks", "task_id"),
        ("task_history", "task_id, stream_sequence, event_index"),
    ] {
        let sql = format!(
            "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY {order}), '') FROM {table} t"
        );
        let (text,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .expect("dump");
        out.push(format!("== {table}\n{text}"));
    }
    out
}

#[tokio::test]
async fn the_tasks_read_models_rebuilt_from_the_start_are_identical() {
    let stack = TestStack::start().await;
    let mut tasks = stack.tasks();
    for i in 0..4 {
        let jane = stack.register(jane_smith()).await;
        let created = tasks
            .create_task(stack.req(medication_review(
                &jane.patient_id,
                AUTHORISATION,
                team(PRACTICE_TEAM),
            )))
            .await
            .expect("create")
            .into_inner();
        tasks
            .create_task(stack.req(pb::CreateTaskRequest {
                title: format!("Practice admin {i}"),
                performer: organisation("A81001"),
                ..Default::default()
            }))
            .await
            .expect("patientless");
        tasks
            .claim_task(as_practice_pharmacist(&stack, action(&created, "")))
            .await
            .expect("claim");
        if i % 2 == 0 {
            tasks
                .complete_task(as_practice_pharmacist(
                    &stack,
                    pb::CompleteTaskRequest {
                        patient_id: created.patient_id.clone(),
                        task_id: created.task_id.clone(),
                        outcome: "Reviewed".into(),
                        request_id: String::new(),
                    },
                ))
                .await
                .expect("complete");
        }
    }
    let last = stack.last_sequence_of("tasks").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    assert!(
        carelog_projections::checkpoint::wait_for(
            &stack.pool,
            "tasks",
            "CARELOG_TASKS",
            last,
            deadline
        )
        .await
        .expect("checkpoint")
    );
    let live = dump(&stack.pool).await;
    stack.rebuild("tasks").await;
    let rebuilt = dump(&stack.pool).await;
    assert_eq!(live, rebuilt);
    assert_eq!(live[0].lines().count(), 1 + 8, "eight tasks");
    stack.stop().await;
}
