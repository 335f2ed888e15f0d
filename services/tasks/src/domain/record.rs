//! The aggregate: one patient's tasks record.

use carelog_kernel::Aggregate;
use carelog_proto::tasks::v1 as pb;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskList;

impl Aggregate for TaskList {
    const CONTEXT: &'static str = "tasks";
    type Event = pb::Event;

    fn event_type(event: &pb::Event) -> &'static str {
        match event.event {
            Some(pb::event::Event::Placeholder(_)) => "Placeholder",
            None => "Unknown",
        }
    }

    fn apply(&mut self, _event: &pb::Event) {}
}
