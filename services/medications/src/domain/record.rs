//! The aggregate: one patient's medications record.

use carelog_kernel::Aggregate;
use carelog_proto::medications::v1 as pb;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MedicationRecord;

impl Aggregate for MedicationRecord {
    const CONTEXT: &'static str = "medications";
    type Event = pb::Event;

    fn event_type(event: &pb::Event) -> &'static str {
        match event.event {
            Some(pb::event::Event::Placeholder(_)) => "Placeholder",
            None => "Unknown",
        }
    }

    fn apply(&mut self, _event: &pb::Event) {}
}
