//! Uniqueness across aggregates (one NHS number, one patient): a value is
//! claimed on its own subject with expected last sequence 0, or on top of
//! its release, in the same atomic batch as the commit that needs it.

use prost::Message as _;
use tonic::Code;

use carelog_proto::kernel::v1 as pb;

use crate::actor::RequestContext;
use crate::envelope::{header, timestamp};
use crate::error::Failure;
use crate::ids::PatientId;
use crate::store::{ContextStream, EventStore, Write};

/// A unique value taken or given up by an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimChange {
    Take {
        kind: &'static str,
        /// The request field holding the value, for the error message.
        field: &'static str,
        value: String,
        owner: PatientId,
        /// Aggregates merged into the owner: the same person's closed
        /// records, whose claim the owner may take over.
        merged_in: Vec<PatientId>,
    },
    Release {
        kind: &'static str,
        value: String,
        owner: PatientId,
        /// Aggregates merged into the owner: a value the owner took over
        /// from one of them goes back to it, whose record still shows it,
        /// and to no one else (ADR 0005).
        merged_in: Vec<PatientId>,
    },
}

/// The holder before the current one, when the current holder took the
/// value over from a record merged into it that is still merged: the
/// value goes back to that record.
async fn taken_over_from(
    store: &EventStore,
    stream: &ContextStream,
    kind: &str,
    value: &str,
    merged_in: &[PatientId],
) -> Result<Option<String>, Failure> {
    if merged_in.is_empty() {
        return Ok(None);
    }
    let history = store
        .read_subject(&stream.name, &stream.claim_subject(kind, value), 0)
        .await
        .map_err(|e| Failure::unavailable(format!("event store: {e}")))?;
    let before = history
        .iter()
        .rev()
        .nth(1)
        .map(|m| pb::Claim::decode(m.payload.as_ref()))
        .transpose()
        .map_err(|e| Failure::internal(&e))?;
    Ok(before
        .filter(|c| !c.released && merged_in.iter().any(|d| d.to_string() == c.owner_id))
        .map(|c| c.owner_id))
}

/// Who holds a value now, if anyone.
pub async fn holder(
    store: &EventStore,
    stream: &ContextStream,
    kind: &str,
    value: &str,
) -> Result<Option<(pb::Claim, u64)>, Failure> {
    let subject = stream.claim_subject(kind, value);
    let last = store
        .last_on_subject(&stream.name, &subject)
        .await
        .map_err(|e| Failure::unavailable(format!("event store: {e}")))?;
    match last {
        None => Ok(None),
        Some(m) => {
            let claim = pb::Claim::decode(m.payload.as_ref()).map_err(|e| Failure::internal(&e))?;
            Ok(Some((claim, m.stream_sequence)))
        }
    }
}

/// Turns claim changes into guarded writes; a value held by another
/// aggregate is `ALREADY_EXISTS` naming the holder.
pub(crate) async fn resolve(
    store: &EventStore,
    stream: &ContextStream,
    ctx: &RequestContext,
    changes: &[ClaimChange],
) -> Result<Vec<Write>, Failure> {
    let mut writes = Vec::new();
    for change in changes {
        let (kind, value, owner, released) = match change {
            ClaimChange::Take {
                kind, value, owner, ..
            } => (*kind, value, owner.to_string(), false),
            ClaimChange::Release {
                kind, value, owner, ..
            } => (*kind, value, owner.to_string(), true),
        };
        let current = holder(store, stream, kind, value).await?;
        let expected = match (change, &current) {
            (ClaimChange::Take { .. }, None) => 0,
            (ClaimChange::Take { .. }, Some((c, seq))) if c.released => *seq,
            (ClaimChange::Take { .. }, Some((c, _))) if c.owner_id == owner => continue,
            (ClaimChange::Take { merged_in, .. }, Some((c, seq)))
                if merged_in.iter().any(|d| d.to_string() == c.owner_id) =>
            {
                *seq
            }
            (ClaimChange::Take { field, .. }, Some((c, _))) => {
                return Err(Failure::new(
                    Code::AlreadyExists,
                    "ALREADY_CLAIMED",
                    format!("{field} is already held by patient {}", c.owner_id),
                )
                .with("field", *field)
                .with("existingPatientId", c.owner_id.clone()));
            }
            (ClaimChange::Release { .. }, Some((c, seq))) if !c.released && c.owner_id == owner => {
                *seq
            }
            (ClaimChange::Release { .. }, _) => continue,
        };
        // A value taken over from a record merged into its owner goes back
        // to that record instead of being released.
        let (owner, released) = match change {
            ClaimChange::Release { merged_in, .. } => {
                match taken_over_from(store, stream, kind, value, merged_in).await? {
                    Some(previous) => (previous, false),
                    None => (owner, released),
                }
            }
            ClaimChange::Take { .. } => (owner, released),
        };
        let claim = pb::Claim {
            kind: kind.to_owned(),
            owner_id: owner,
            released,
            recorded_at: Some(timestamp(chrono::Utc::now())),
            request_id: ctx.request_id.clone(),
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(header::KIND, header::KIND_CLAIM);
        headers.insert(header::CONTEXT, stream.context);
        writes.push(Write {
            subject: stream.claim_subject(kind, value),
            expected_last_subject_sequence: expected,
            message_id: None,
            headers,
            payload: claim.encode_to_vec().into(),
        });
    }
    Ok(writes)
}
