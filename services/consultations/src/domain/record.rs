//! The aggregate: one patient's consultations record.

use carelog_kernel::Aggregate;
use carelog_proto::consultations::v1 as pb;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientConsultations;

impl Aggregate for PatientConsultations {
    const CONTEXT: &'static str = "consultations";
    type Event = pb::Event;

    fn event_type(event: &pb::Event) -> &'static str {
        match event.event {
            Some(pb::event::Event::Placeholder(_)) => "Placeholder",
            None => "Unknown",
        }
    }

    fn apply(&mut self, _event: &pb::Event) {}
}
