//! The commit envelope: building a commit from decided events, its hash
//! chain, the message headers that carry its metadata, and decoding a stored
//! message back into a commit.

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use prost::Message as _;
use sha2::{Digest, Sha256};

use carelog_proto::kernel::v1 as pb;

use crate::actor::RequestContext;
use crate::ids::{CommitId, EventId, PatientId};

/// SHA-256 digest of a commit's bytes.
pub type Hash = [u8; 32];

/// The previous hash of an aggregate's first commit.
pub const GENESIS: Hash = [0u8; 32];

/// Header names (the `Nats-` prefix is reserved by NATS).
pub mod header {
    pub const KIND: &str = "Carelog-Kind";
    pub const CONTEXT: &str = "Carelog-Context";
    pub const COMMIT_ID: &str = "Carelog-Commit-Id";
    pub const EVENT_IDS: &str = "Carelog-Event-Ids";
    pub const EVENT_TYPES: &str = "Carelog-Event-Types";
    pub const AGGREGATE_ID: &str = "Carelog-Aggregate-Id";
    pub const AGGREGATE_VERSION: &str = "Carelog-Aggregate-Version";
    pub const PATIENT_ID: &str = "Carelog-Patient-Id";
    pub const ACTOR: &str = "Carelog-Actor";
    pub const ROLE: &str = "Carelog-Role";
    pub const ORGANISATION: &str = "Carelog-Organisation";
    pub const PURPOSE: &str = "Carelog-Purpose-Of-Use";
    pub const RECORDED_AT: &str = "Carelog-Recorded-At";
    pub const CORRELATION_ID: &str = "Carelog-Correlation-Id";
    pub const CAUSATION_ID: &str = "Carelog-Causation-Id";
    pub const HASH: &str = "Carelog-Commit-Hash";
    pub const TRACEPARENT: &str = "traceparent";
    pub const KIND_COMMIT: &str = "commit";
    pub const KIND_CLAIM: &str = "claim";
}

/// SHA-256 of exact bytes.
pub fn digest(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// One decided event, encoded, with its clinical time.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: &'static str,
    pub payload: Vec<u8>,
    pub occurred_at: DateTime<Utc>,
}

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

pub fn from_timestamp(ts: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    ts.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
}

/// Everything needed to seal one commit.
#[derive(Debug)]
pub struct CommitSpec<'a> {
    pub ctx: &'a RequestContext,
    pub context: &'static str,
    pub aggregate_id: PatientId,
    pub patient_id: PatientId,
    pub version: u64,
    pub previous_hash: Hash,
    pub events: Vec<NewEvent>,
    pub recorded_at: DateTime<Utc>,
}

/// A sealed commit: its bytes (the message payload), hash and headers.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub commit: pb::Commit,
    pub bytes: Bytes,
    pub hash: Hash,
    pub headers: HeaderMap,
}

pub fn seal(spec: CommitSpec<'_>) -> Sealed {
    let ctx = spec.ctx;
    let commit = pb::Commit {
        commit_id: CommitId::new().to_string(),
        context: spec.context.to_owned(),
        aggregate_id: spec.aggregate_id.to_string(),
        patient_id: spec.patient_id.to_string(),
        aggregate_version: spec.version,
        actor: Some(ctx.actor.to_proto()),
        on_behalf_of: ctx.on_behalf_of.clone(),
        purpose_of_use: ctx.purpose_of_use.clone(),
        reason: ctx.reason.clone(),
        request_id: ctx.request_id.clone(),
        correlation_id: ctx.correlation_id.clone(),
        causation_id: ctx.causation_id.clone(),
        // The current span's context (the RPC server span, itself parented
        // on the caller's `traceparent`); the caller's header only when no
        // tracing layer runs.
        traceparent: crate::trace::current_traceparent().unwrap_or_else(|| ctx.traceparent.clone()),
        recorded_at: Some(timestamp(spec.recorded_at)),
        events: spec
            .events
            .into_iter()
            .map(|e| pb::EventRecord {
                event_id: EventId::new().to_string(),
                event_type: e.event_type.to_owned(),
                occurred_at: Some(timestamp(e.occurred_at)),
                payload: e.payload,
            })
            .collect(),
        previous_hash: spec.previous_hash.to_vec(),
        request_digest: ctx.request_digest.map(|d| d.to_vec()).unwrap_or_default(),
    };
    let bytes = Bytes::from(commit.encode_to_vec());
    let hash = digest(&bytes);
    let headers = commit_headers(&commit, &hash, spec.recorded_at);
    Sealed {
        commit,
        bytes,
        hash,
        headers,
    }
}

pub(crate) fn commit_headers(
    commit: &pb::Commit,
    hash: &Hash,
    recorded_at: DateTime<Utc>,
) -> HeaderMap {
    let mut h = HeaderMap::new();
    let actor = commit.actor.clone().unwrap_or_default();
    let join =
        |f: fn(&pb::EventRecord) -> &str| commit.events.iter().map(f).collect::<Vec<_>>().join(",");
    h.insert(header::KIND, header::KIND_COMMIT);
    h.insert(header::CONTEXT, commit.context.as_str());
    h.insert(header::COMMIT_ID, commit.commit_id.as_str());
    h.insert(header::EVENT_IDS, join(|e| &e.event_id).as_str());
    h.insert(header::EVENT_TYPES, join(|e| &e.event_type).as_str());
    h.insert(header::AGGREGATE_ID, commit.aggregate_id.as_str());
    h.insert(
        header::AGGREGATE_VERSION,
        commit.aggregate_version.to_string().as_str(),
    );
    h.insert(header::PATIENT_ID, commit.patient_id.as_str());
    h.insert(header::ACTOR, actor.user_id.as_str());
    h.insert(header::ROLE, actor.role.as_str());
    h.insert(header::ORGANISATION, actor.organisation_ods.as_str());
    h.insert(header::PURPOSE, commit.purpose_of_use.as_str());
    h.insert(header::RECORDED_AT, recorded_at.to_rfc3339().as_str());
    h.insert(header::CORRELATION_ID, commit.correlation_id.as_str());
    if !commit.causation_id.is_empty() {
        h.insert(header::CAUSATION_ID, commit.causation_id.as_str());
    }
    if !commit.traceparent.is_empty() {
        h.insert(header::TRACEPARENT, commit.traceparent.as_str());
    }
    h.insert(header::HASH, hex::encode(hash).as_str());
    h
}

/// A message read back from a stream.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub stream_sequence: u64,
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
    pub published: DateTime<Utc>,
}

impl StoredMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.as_str())
    }

    pub fn is_commit(&self) -> bool {
        self.header(header::KIND) == Some(header::KIND_COMMIT)
    }
}

/// A commit read back, with its position and hash.
#[derive(Debug, Clone)]
pub struct StoredCommit {
    pub stream_sequence: u64,
    pub subject: String,
    pub commit: pb::Commit,
    pub hash: Hash,
    pub published: DateTime<Utc>,
    /// The commit exactly as stored (the bytes `hash` is computed over).
    pub bytes: Bytes,
}

impl StoredCommit {
    pub fn decode(message: &StoredMessage) -> Result<Self, prost::DecodeError> {
        Ok(Self {
            stream_sequence: message.stream_sequence,
            subject: message.subject.clone(),
            commit: pb::Commit::decode(message.payload.as_ref())?,
            hash: digest(&message.payload),
            published: message.published,
            bytes: message.payload.clone(),
        })
    }

    pub fn previous_hash(&self) -> Hash {
        Hash::try_from(self.commit.previous_hash.as_slice()).unwrap_or(GENESIS)
    }

    pub fn recorded_at(&self) -> DateTime<Utc> {
        from_timestamp(self.commit.recorded_at.as_ref()).unwrap_or(self.published)
    }
}
