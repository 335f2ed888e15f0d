//! Event schemas are forever: every tasks event type has an encoded sample
//! under tests/golden/tasks/, and every sample must still decode to the same
//! event. `CARELOG_WRITE_GOLDEN=1` writes samples that are missing; it never
//! overwrites one.

use carelog_kernel::Aggregate as _;
use carelog_proto::kernel::v1::PartialDate;
use carelog_proto::tasks::v1 as pb;
use carelog_tasks::domain::TaskList;
use carelog_tests::assert::golden_samples;
use pb::event::Event as E;

const TASK: &str = "01a20000-0000-7000-8000-0000000000aa";

fn samples() -> Vec<pb::Event> {
    let task_id = || TASK.to_owned();
    let at = Some(prost_types::Timestamp {
        seconds: 1_706_788_800,
        nanos: 0,
    });
    let who = Some(pb::Participant {
        user_id: "dr-jones".into(),
        display_name: "Dr Jones".into(),
        role: "R8000".into(),
        organisation_ods: "A81001".into(),
    });
    let team = Some(pb::Performer {
        performer: Some(pb::performer::Performer::TeamId(
            "a81001-pharmacists".into(),
        )),
    });
    [
        E::TaskCreated(pb::TaskCreated {
            task_id: task_id(),
            patient_id: "01a20000-0000-7000-8000-000000000001".into(),
            title: "Medication review".into(),
            description: "Annual review".into(),
            focus: Some(pb::Focus {
                kind: pb::FocusKind::MedicationAuthorisation as i32,
                reference: "01a20000-0000-7000-8000-0000000000bb".into(),
                display: "Atorvastatin 20mg tablets".into(),
            }),
            requester: who.clone(),
            owner_user_id: String::new(),
            performer: team.clone(),
            priority: pb::TaskPriority::Urgent as i32,
            due_date: Some(PartialDate {
                year: 2024,
                month: 3,
                day: 1,
            }),
            authored_on: at,
        }),
        E::TaskAssigned(pb::TaskAssigned {
            task_id: task_id(),
            owner_user_id: "ph-khan".into(),
            performer: team,
            previous_owner_user_id: "ph-patel".into(),
        }),
        E::TaskClaimed(pb::TaskClaimed {
            task_id: task_id(),
            owner_user_id: "ph-patel".into(),
        }),
        E::TaskStarted(pb::TaskStarted { task_id: task_id() }),
        E::TaskPutOnHold(pb::TaskPutOnHold {
            task_id: task_id(),
            reason: "awaiting bloods".into(),
        }),
        E::TaskResumed(pb::TaskResumed { task_id: task_id() }),
        E::TaskCompleted(pb::TaskCompleted {
            task_id: task_id(),
            outcome: "Reviewed: no change".into(),
        }),
        E::TaskCancelled(pb::TaskCancelled {
            task_id: task_id(),
            reason: "raised twice".into(),
        }),
        E::TaskRejected(pb::TaskRejected {
            task_id: task_id(),
            reason: "needs a GP".into(),
        }),
        E::TaskCommented(pb::TaskCommented {
            task_id: task_id(),
            author: who,
            text: "Prefers a telephone review".into(),
            at,
        }),
        E::TaskEnteredInError(pb::TaskEnteredInError {
            task_id: task_id(),
            reason: "wrong patient".into(),
        }),
    ]
    .into_iter()
    .map(|e| pb::Event { event: Some(e) })
    .collect()
}

#[test]
fn every_tasks_event_type_has_a_golden_sample_that_still_decodes() {
    let mut list = TaskList::default();
    golden_samples::<TaskList>("tasks", samples(), |e| list.apply(e));
    assert_eq!(list.tasks.len(), 1);
}
