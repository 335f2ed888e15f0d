//! Read access to patient records is audited (ADR 0018): every query that
//! returns patient data appends one `RecordAccessed` per patient in its
//! answer to `CARELOG_ACCESS` on `carelog.access.<patient_id>`, and returns
//! nothing unless JetStream acknowledged them all (fail closed).
//!
//! Access events are not aggregate commits: no expected-sequence guard (they
//! never conflict) and no hash chain. They travel in the commit envelope
//! (context `access`, version 0, one event record per access) so the audit
//! projectors read them like any other events into `audit_events`. The
//! events of concurrent reads share one message ([`AccessLog`], ADR 0029):
//! a message about one patient is on `carelog.access.<patient_id>`, one
//! about several on `carelog.access.shared`.

mod log;

use std::collections::BTreeMap;

use chrono::Utc;
use futures::future::BoxFuture;
use prost::Message as _;

use carelog_proto::access::v1 as pb;
use carelog_proto::kernel::v1 as kernel;

pub use log::{AccessLog, AccessMessage};

use crate::actor::RequestContext;
use crate::envelope::timestamp;
use crate::error::Failure;
use crate::store::ContextStream;

/// The context name of the access stream: `CARELOG_ACCESS` over
/// `carelog.access.>`.
pub const ACCESS: &str = "access";

/// The event type of an access event.
pub const RECORD_ACCESSED: &str = "RecordAccessed";

/// The subject token of a refusal whose patient is not known (a call
/// refused for the role's permissions before its request was read).
pub const UNKNOWN_PATIENT: &str = "unknown";

/// The subject token of a message holding the access events of several
/// patients (ADR 0029): `carelog.access.shared`.
pub const SHARED_SUBJECT: &str = "shared";

/// The stream of access events.
pub fn access_stream() -> ContextStream {
    ContextStream::new(ACCESS)
}

/// What one answer showed of one patient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientRead {
    pub patient_id: String,
    pub resource_ids: Vec<String>,
    /// Per stream, the highest sequence the answer was built from.
    pub positions: BTreeMap<String, u64>,
    pub records: u32,
    pub withheld: bool,
    /// The access rule this patient was shown under, when it is not the
    /// request's (a search's hits each have their own).
    pub rule: String,
}

/// The focus reference of the privacy officer's review of an emergency
/// access: this prefix and the access id.
pub const REVIEW_FOCUS_PREFIX: &str = "access:";

/// The reads of one answer, gathered per patient in the order first seen.
#[derive(Debug, Clone, Default)]
pub struct Reads {
    reads: Vec<PatientRead>,
}

impl Reads {
    pub fn new() -> Self {
        Self::default()
    }

    /// One record of `patient_id` in the answer: its resource id, the
    /// context stream it came from and its stream sequence (0: unknown).
    pub fn record(
        &mut self,
        patient_id: &str,
        resource_id: &str,
        context: &str,
        sequence: u64,
        withheld: bool,
    ) -> &mut Self {
        let at = match self.reads.iter().position(|r| r.patient_id == patient_id) {
            Some(at) => at,
            None => {
                self.reads.push(PatientRead {
                    patient_id: patient_id.to_owned(),
                    ..Default::default()
                });
                self.reads.len() - 1
            }
        };
        let read = &mut self.reads[at];
        if !resource_id.is_empty() && !read.resource_ids.iter().any(|r| r == resource_id) {
            read.resource_ids.push(resource_id.to_owned());
        }
        read.records += 1;
        read.withheld |= withheld;
        if sequence > 0 {
            let stream = ContextStream::new_named(context);
            let at = read.positions.entry(stream).or_insert(0);
            *at = (*at).max(sequence);
        }
        self
    }

    /// Names the access rule `patient_id` was shown under.
    pub fn rule(&mut self, patient_id: &str, rule: &str) -> &mut Self {
        if let Some(read) = self.reads.iter_mut().find(|r| r.patient_id == patient_id) {
            read.rule = rule.to_owned();
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.reads.is_empty()
    }

    pub fn patients(&self) -> impl Iterator<Item = &PatientRead> {
        self.reads.iter()
    }
}

/// Where access events go. The store's `AccessLog` in production; tests may
/// put a failing one in its place.
pub trait AccessSink: Send + Sync + std::fmt::Debug {
    /// Appends the events; Ok only when every one is durable.
    fn append(&self, events: Vec<pb::RecordAccessed>) -> BoxFuture<'_, Result<(), Failure>>;
}

/// The `RecordAccessed` events in an access message's payload, in order;
/// empty when the payload is not an access message. A message written
/// before ADR 0029 holds one.
pub fn decode(payload: &[u8]) -> Vec<pb::RecordAccessed> {
    let Ok(commit) = kernel::Commit::decode(payload) else {
        return Vec::new();
    };
    commit
        .events
        .iter()
        .filter(|record| record.event_type == RECORD_ACCESSED)
        .filter_map(|record| pb::RecordAccessed::decode(record.payload.as_slice()).ok())
        .collect()
}

/// The `RecordAccessed` events of one answer, one per patient.
pub fn events(
    ctx: &RequestContext,
    service: &str,
    method: &str,
    reads: &Reads,
) -> Vec<pb::RecordAccessed> {
    reads
        .patients()
        .map(|read| {
            let rule = if read.rule.is_empty() {
                ctx.access_rule.clone()
            } else {
                read.rule.clone()
            };
            let mut event = granted(ctx, service, method, &read.patient_id, &rule);
            event.resource_ids = read.resource_ids.clone();
            event.record_count = read.records;
            event.positions = read
                .positions
                .iter()
                .map(|(stream, sequence)| pb::StreamPosition {
                    stream: stream.clone(),
                    sequence: *sequence,
                })
                .collect();
            event.withheld = read.withheld;
            event
        })
        .collect()
}

/// An access event of this request about `patient_id`, before its outcome.
fn base(ctx: &RequestContext, service: &str, method: &str, patient_id: &str) -> pb::RecordAccessed {
    pb::RecordAccessed {
        access_id: uuid::Uuid::now_v7().to_string(),
        patient_id: patient_id.to_owned(),
        actor: Some(ctx.actor.to_proto()),
        purpose_of_use: ctx.purpose_of_use.clone(),
        on_behalf_of: ctx.on_behalf_of.clone(),
        service: service.to_owned(),
        method: method.to_owned(),
        correlation_id: ctx.correlation_id.clone(),
        accessed_at: Some(timestamp(Utc::now())),
        traceparent: ctx.traceparent.clone(),
        registered_organisation: ctx.registered_organisation.clone(),
        ..Default::default()
    }
}

/// A granted access under `rule`; a break-glass grant is marked emergency
/// with the stated reason.
pub fn granted(
    ctx: &RequestContext,
    service: &str,
    method: &str,
    patient_id: &str,
    rule: &str,
) -> pb::RecordAccessed {
    let emergency = rule == BREAK_GLASS_RULE;
    pb::RecordAccessed {
        outcome: pb::AccessOutcome::Granted as i32,
        rule: rule.to_owned(),
        emergency,
        break_glass_reason: if emergency {
            ctx.break_glass.clone()
        } else {
            String::new()
        },
        ..base(ctx, service, method, patient_id)
    }
}

/// A refused call about `patient_id` ("" when not known), naming the reason
/// code of the rule that failed.
pub fn refused(
    ctx: &RequestContext,
    service: &str,
    method: &str,
    patient_id: &str,
    reason_code: &str,
) -> pb::RecordAccessed {
    pb::RecordAccessed {
        outcome: pb::AccessOutcome::Denied as i32,
        reason_code: reason_code.to_owned(),
        ..base(ctx, service, method, patient_id)
    }
}

/// The rule name of a break-glass grant.
pub const BREAK_GLASS_RULE: &str = "break_glass";

/// Records the reads of an answer before it is returned: an empty answer
/// records nothing; a failure is `UNAVAILABLE` and the answer is dropped.
pub async fn audit(
    sink: &dyn AccessSink,
    ctx: &RequestContext,
    service: &str,
    method: &str,
    reads: &Reads,
) -> Result<(), Failure> {
    if reads.is_empty() {
        return Ok(());
    }
    sink.append(events(ctx, service, method, reads))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, service, method, "read not audited; answer withheld");
            Failure::unavailable(
                "the access to this record could not be audited, so it is not shown; retry",
            )
        })
}

/// Audits the answer of a command that wrote nothing (a repeated request,
/// a change to what already was): it shows the record as it stands now,
/// which is a read like any other. The method is the one the context names.
pub async fn audit_unwritten(
    sink: &dyn AccessSink,
    ctx: &RequestContext,
    service: &str,
    reads: &Reads,
) -> Result<(), Failure> {
    let (_, method) = ctx.service_and_method();
    audit(sink, ctx, service, method, reads).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_gathered_per_patient() {
        let mut reads = Reads::new();
        reads
            .record("p1", "c1", "consultations", 7, false)
            .record("p1", "c2", "consultations", 9, false)
            .record("p2", "p2", "demographics", 3, true)
            .record("p1", "c1", "consultations", 4, false);
        let all: Vec<_> = reads.patients().collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].patient_id, "p1");
        assert_eq!(all[0].resource_ids, ["c1", "c2"]);
        assert_eq!(all[0].records, 3);
        assert_eq!(all[0].positions.get("CARELOG_CONSULTATIONS"), Some(&9));
        assert!(!all[0].withheld);
        assert!(all[1].withheld);
    }

    #[derive(Debug)]
    struct Refusing(std::sync::atomic::AtomicUsize);

    impl AccessSink for Refusing {
        fn append(&self, events: Vec<pb::RecordAccessed>) -> BoxFuture<'_, Result<(), Failure>> {
            self.0
                .fetch_add(events.len(), std::sync::atomic::Ordering::SeqCst);
            Box::pin(async { Err(Failure::unavailable("refused")) })
        }
    }

    fn ctx() -> RequestContext {
        let actor = crate::Actor {
            user_id: "dr-a".into(),
            display_name: "Dr A".into(),
            role: "R8000".into(),
            organisation: crate::OdsCode::parse("A81001").expect("ods"),
            purpose_of_use: "DIRECT_CARE".into(),
        };
        RequestContext::for_actor(actor, &tonic::metadata::MetadataMap::new())
    }

    #[tokio::test]
    async fn an_unrecorded_read_is_unavailable_and_an_empty_answer_records_nothing() {
        let sink = Refusing(Default::default());
        let ctx = ctx();
        assert!(audit(&sink, &ctx, "S", "M", &Reads::new()).await.is_ok());
        assert_eq!(sink.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        let mut reads = Reads::new();
        reads.record("p1", "p1", "demographics", 1, false).record(
            "p2",
            "p2",
            "demographics",
            2,
            false,
        );
        let refused = audit(&sink, &ctx, "S", "M", &reads)
            .await
            .expect_err("fail closed");
        assert_eq!(
            tonic::Status::from(refused).code(),
            tonic::Code::Unavailable
        );
        assert_eq!(sink.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn an_access_message_holds_its_events_and_names_its_patient() {
        let mut reads = Reads::new();
        reads.record("p1", "c1", "consultations", 5, true).record(
            "p2",
            "p2",
            "demographics",
            3,
            false,
        );
        let all = events(&ctx(), "S", "M", &reads);

        let alone = AccessMessage::new(&all[..1]);
        assert_eq!(alone.subject_token, "p1");
        let (headers, bytes) = alone.enveloped();
        assert_eq!(
            headers
                .get(crate::envelope::header::KIND)
                .map(|v| v.as_str()),
            Some(crate::envelope::header::KIND_COMMIT)
        );
        assert_eq!(decode(&bytes), all[..1]);
        let commit = kernel::Commit::decode(bytes.as_ref()).expect("commit");
        assert_eq!(commit.context, ACCESS);
        assert_eq!(commit.aggregate_version, 0);
        assert!(commit.previous_hash.is_empty());
        assert_eq!(commit.patient_id, "p1");
        assert_eq!(commit.events[0].event_id, all[0].access_id);
        assert_eq!(all[0].positions[0].stream, "CARELOG_CONSULTATIONS");
        assert!(all[0].withheld);

        let shared = AccessMessage::new(&all);
        assert_eq!(shared.subject_token, SHARED_SUBJECT);
        let (_, bytes) = shared.enveloped();
        assert_eq!(decode(&bytes), all);
        let commit = kernel::Commit::decode(bytes.as_ref()).expect("commit");
        assert_eq!(commit.patient_id, "");
        assert_eq!(commit.actor, None);

        let unknown = refused(&ctx(), "S", "M", "", "PERMISSION_MISSING");
        let message = AccessMessage::new(&[unknown.clone(), unknown]);
        assert_eq!(message.subject_token, UNKNOWN_PATIENT);
    }

    #[test]
    fn a_message_written_before_shared_messages_still_decodes() {
        // The envelope of one access as written until ADR 0029: commit id
        // the access id, a random event id, the event's actor on the commit.
        let mut reads = Reads::new();
        reads.record("p1", "p1", "demographics", 2, false);
        let event = events(&ctx(), "S", "M", &reads).remove(0);
        let old = kernel::Commit {
            commit_id: event.access_id.clone(),
            context: ACCESS.to_owned(),
            aggregate_id: event.patient_id.clone(),
            patient_id: event.patient_id.clone(),
            actor: event.actor.clone(),
            events: vec![kernel::EventRecord {
                event_id: uuid::Uuid::now_v7().to_string(),
                event_type: RECORD_ACCESSED.to_owned(),
                occurred_at: event.accessed_at,
                payload: event.encode_to_vec(),
            }],
            ..Default::default()
        };
        assert_eq!(decode(&old.encode_to_vec()), vec![event]);
        assert!(decode(b"not a commit").is_empty());
    }
}
