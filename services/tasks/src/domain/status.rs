//! The FHIR R4 Task state machine as an explicit transition table
//! (http://hl7.org/fhir/R4/task.html#statemachine), and the FHIR codes of
//! the statuses.

use TaskStatus as S;
use carelog_proto::tasks::v1::TaskStatus;

/// The statuses a task may move to from `from`.
///
/// Besides the FHIR diagram: a task may be completed straight from
/// `accepted` or `ready` (work done in one sitting, the start implied), and
/// any task that is not already `entered-in-error` may be marked so, as a
/// correction of the record.
pub fn allowed(from: TaskStatus) -> &'static [TaskStatus] {
    match from {
        S::Draft => &[S::Requested, S::Ready, S::Cancelled, S::EnteredInError],
        S::Requested => &[
            S::Received,
            S::Accepted,
            S::Rejected,
            S::Ready,
            S::InProgress,
            S::Cancelled,
            S::EnteredInError,
        ],
        S::Received => &[
            S::Accepted,
            S::Rejected,
            S::Ready,
            S::InProgress,
            S::Cancelled,
            S::EnteredInError,
        ],
        // Once accepted, the performer has agreed: it is no longer rejected
        // but cancelled.
        S::Accepted => &[
            S::Ready,
            S::InProgress,
            S::Completed,
            S::Cancelled,
            S::EnteredInError,
        ],
        // Ready stands for an acceptance that is a given, with nothing yet
        // attempted: neither rejected nor failed.
        S::Ready => &[S::InProgress, S::Completed, S::Cancelled, S::EnteredInError],
        S::InProgress => &[
            S::OnHold,
            S::Completed,
            S::Failed,
            S::Cancelled,
            S::EnteredInError,
        ],
        S::OnHold => &[S::InProgress, S::Failed, S::Cancelled, S::EnteredInError],
        S::Completed | S::Cancelled | S::Rejected | S::Failed => &[S::EnteredInError],
        S::EnteredInError | S::Unspecified => &[],
    }
}

pub fn can_move(from: TaskStatus, to: TaskStatus) -> bool {
    allowed(from).contains(&to)
}

/// Finished: no more work happens on it.
pub fn is_terminal(status: TaskStatus) -> bool {
    matches!(
        status,
        S::Completed | S::Cancelled | S::EnteredInError | S::Failed | S::Rejected
    )
}

/// Every status that is not terminal: the default of a work list.
pub const ACTIVE: [TaskStatus; 7] = [
    S::Draft,
    S::Requested,
    S::Received,
    S::Accepted,
    S::Ready,
    S::InProgress,
    S::OnHold,
];

/// The FHIR code, e.g. `in-progress`.
pub fn code(status: TaskStatus) -> &'static str {
    match status {
        S::Unspecified => "unspecified",
        S::Draft => "draft",
        S::Requested => "requested",
        S::Received => "received",
        S::Accepted => "accepted",
        S::Rejected => "rejected",
        S::Ready => "ready",
        S::Cancelled => "cancelled",
        S::InProgress => "in-progress",
        S::OnHold => "on-hold",
        S::Failed => "failed",
        S::Completed => "completed",
        S::EnteredInError => "entered-in-error",
    }
}
