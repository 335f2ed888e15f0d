//! Helpers for audit scenarios: waiting until the audit read models have
//! applied everything appended so far.

use std::time::Duration;

use carelog_kernel::store::ContextStream;

use crate::harness::TestStack;

/// Every stream the audit projections read.
pub const STREAMS: [&str; 6] = [
    "demographics",
    "consultations",
    "medications",
    "tasks",
    "sharing",
    "access",
];

/// Waits until `projection` has applied every message appended so far to
/// each of its streams (`audit_events` or `audit_log`).
pub async fn caught_up(stack: &TestStack, projection: &str) {
    for context in STREAMS {
        let stream = ContextStream::new(context).name;
        let last = stack
            .store
            .last_sequence(&stream)
            .await
            .expect("stream info");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let reached = carelog_projections::checkpoint::wait_for(
            &stack.pool,
            projection,
            &stream,
            last,
            deadline,
        )
        .await
        .expect("checkpoint");
        assert!(reached, "{projection} did not reach {stream} {last}");
    }
}

/// The position in `stream` an access event says its answer was built from.
pub fn position(event: &carelog_proto::access::v1::RecordAccessed, stream: &str) -> Option<u64> {
    event
        .positions
        .iter()
        .find(|p| p.stream == stream)
        .map(|p| p.sequence)
}
