//! Who is asking and why: the `Actor` from the verified token, and the
//! per-request context (purpose, idempotency key, correlation, trace) that
//! every commit records.

use std::time::Duration;

use tonic::metadata::MetadataMap;

use crate::error::{Failure, Violations};
use crate::ids::{OdsCode, PatientId};

/// The longest reason a change may give.
pub const MAX_REASON: usize = 4000;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Surrogate user id (the token's `sub`).
    pub user_id: String,
    pub display_name: String,
    /// The session's selected role code.
    pub role: String,
    pub organisation: OdsCode,
    /// Purpose of use asserted by the token (default `DIRECT_CARE`).
    pub purpose_of_use: String,
}

impl Actor {
    pub fn to_proto(&self) -> carelog_proto::kernel::v1::Actor {
        carelog_proto::kernel::v1::Actor {
            user_id: self.user_id.clone(),
            display_name: self.display_name.clone(),
            role: self.role.clone(),
            organisation_ods: self.organisation.to_string(),
        }
    }
}

/// The teams the token names the caller a member of (the optional `teams`
/// claim); the interceptor puts it beside the `Actor`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Teams(pub Vec<String>);

/// Metadata keys a caller may send besides the bearer token.
pub const CORRELATION_ID_HEADER: &str = "x-correlation-id";
pub const ON_BEHALF_OF_HEADER: &str = "x-carelog-on-behalf-of";
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The emergency reason of a break-glass access (ADR 0022).
pub const BREAK_GLASS_HEADER: &str = "x-carelog-break-glass";

/// Everything about one request that a commit records besides its events.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub actor: Actor,
    pub purpose_of_use: String,
    /// The teams of the token's `teams` claim, qualified by the token's
    /// organisation (`ids::TeamId`; empty when none).
    pub teams: Vec<String>,
    pub on_behalf_of: String,
    /// Why (required for amendments, corrections and break-glass).
    pub reason: String,
    /// The client's idempotency key, empty when none was sent.
    pub request_id: String,
    /// What the request that carried `request_id` was (its gRPC method and
    /// protobuf encoding, hashed): a retry repeats it exactly, so a request
    /// id sent again with another request is refused, not deduplicated.
    pub request_digest: Option<crate::envelope::Hash>,
    pub correlation_id: String,
    pub causation_id: String,
    pub traceparent: String,
    /// The gRPC path called (`/package.Service/Method`), when known.
    pub rpc: String,
    /// The emergency reason the caller stated (`x-carelog-break-glass`),
    /// empty when none.
    pub break_glass: String,
    /// The access rule that admitted the caller to the patient (set by the
    /// access guard; read events record it).
    pub access_rule: String,
    /// The patient's registered organisation, when the guard looked.
    pub registered_organisation: String,
    /// When the caller stops waiting (from `grpc-timeout`, else a default).
    pub deadline: tokio::time::Instant,
}

/// How long a request may wait when its caller set no deadline.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Parses the gRPC `grpc-timeout` header ("100m", "5S", "1H"...).
pub fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl RequestContext {
    /// The id of something this request creates (`namespace` says what)
    /// in the record of `patient`, if it belongs to one: derived from the
    /// caller, the request id and the patient when the client sent a request
    /// id, so a retry names the same thing and one request id reused on
    /// another patient names another thing (ADR 0011); else a new UUIDv7.
    pub fn new_resource_id(&self, namespace: &str, patient: Option<PatientId>) -> uuid::Uuid {
        if self.request_id.is_empty() {
            return uuid::Uuid::now_v7();
        }
        let namespace = match patient {
            Some(patient) => format!("{namespace}/{patient}"),
            None => namespace.to_owned(),
        };
        crate::ids::derived_uuid(&namespace, &self.actor.user_id, &self.request_id)
    }

    /// Builds the context of an authenticated gRPC request; the interceptor
    /// has put the `Actor` in the request's extensions.
    pub fn from_grpc<T>(request: &tonic::Request<T>) -> Result<Self, Failure> {
        let actor = request
            .extensions()
            .get::<Actor>()
            .cloned()
            .ok_or_else(|| Failure::unauthenticated("a bearer token is required"))?;
        let mut ctx = Self::for_actor(actor, request.metadata());
        if let Some(Teams(teams)) = request.extensions().get::<Teams>() {
            ctx.teams = crate::ids::TeamId::memberships(&ctx.actor.organisation, teams);
        }
        if let Some(crate::policy::RpcPath(path)) =
            request.extensions().get::<crate::policy::RpcPath>()
        {
            ctx.rpc = path.clone();
        }
        Ok(ctx)
    }

    pub fn for_actor(actor: Actor, metadata: &MetadataMap) -> Self {
        let header = |name: &str| {
            metadata
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_default()
        };
        let correlation_id = match header(CORRELATION_ID_HEADER) {
            id if !id.is_empty() && id.len() <= 128 => id,
            _ => uuid::Uuid::now_v7().to_string(),
        };
        Self {
            purpose_of_use: actor.purpose_of_use.clone(),
            actor,
            teams: Vec::new(),
            on_behalf_of: header(ON_BEHALF_OF_HEADER),
            reason: String::new(),
            request_id: String::new(),
            request_digest: None,
            correlation_id,
            causation_id: String::new(),
            traceparent: header(TRACEPARENT_HEADER),
            rpc: String::new(),
            break_glass: header(BREAK_GLASS_HEADER)
                .trim()
                .chars()
                .take(1000)
                .collect(),
            access_rule: String::new(),
            registered_organisation: String::new(),
            deadline: tokio::time::Instant::now()
                + grpc_timeout(metadata).unwrap_or(DEFAULT_DEADLINE),
        }
    }

    /// The context and body of a mutating request, whose body names its
    /// idempotency key and reason.
    pub fn command<T: prost::Message>(
        request: tonic::Request<T>,
        key: impl FnOnce(&T) -> (&str, &str),
    ) -> Result<(Self, T), Failure> {
        let ctx = Self::from_grpc(&request)?;
        let body = request.into_inner();
        let (request_id, reason) = key(&body);
        let mut ctx = ctx.with_request(request_id, reason)?;
        if !ctx.request_id.is_empty() {
            ctx.request_digest = Some(request_digest(&ctx.rpc, &body));
        }
        Ok((ctx, body))
    }

    /// Refuses this request if its request id was used before, by the same
    /// caller on the same record, for a different request (`earlier`: the
    /// digest that commit recorded, empty for commits that recorded none).
    pub fn check_retry(&self, earlier: &[u8]) -> Result<(), Failure> {
        match self.request_digest {
            Some(digest) if !earlier.is_empty() && earlier != digest.as_slice() => {
                let mut failure = Failure::invalid_field(
                    "request_id",
                    "was already used for a different request; a retry must repeat its \
                     request exactly, and a new request needs a new request_id",
                );
                failure.reason = "REQUEST_ID_REUSED";
                Err(failure)
            }
            _ => Ok(()),
        }
    }

    /// The gRPC service and method called (empty when unknown).
    pub fn service_and_method(&self) -> (&str, &str) {
        self.rpc
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .unwrap_or(("", ""))
    }

    /// The context and body of a query.
    pub fn query<T>(request: tonic::Request<T>) -> Result<(Self, T), Failure> {
        let ctx = Self::from_grpc(&request)?;
        Ok((ctx, request.into_inner()))
    }

    /// The idempotency key and reason of a mutating request (a reason of at
    /// most [`MAX_REASON`] characters); a request id is
    /// at most 64 characters of letters, digits, `-`, `_`, `.` and `:`.
    pub fn with_request(mut self, request_id: &str, reason: &str) -> Result<Self, Failure> {
        let request_id = request_id.trim();
        if !crate::ids::is_key(request_id) {
            return Err(Failure::invalid_field(
                "request_id",
                "must be at most 64 letters, digits, '-', '_', '.' or ':' (a UUID is recommended)",
            ));
        }
        let reason = reason.trim();
        let mut v = Violations::new();
        crate::edge::check_text("reason", reason, MAX_REASON, &mut v);
        v.into_result()?;
        self.request_id = request_id.to_owned();
        self.reason = reason.to_owned();
        Ok(self)
    }
}

/// SHA-256 of a request's gRPC method and its protobuf encoding (prost
/// encodes fields in field order, so a repeated request encodes the same).
fn request_digest(rpc: &str, body: &impl prost::Message) -> crate::envelope::Hash {
    let mut bytes = Vec::with_capacity(rpc.len() + 1 + body.encoded_len());
    bytes.extend_from_slice(rpc.as_bytes());
    bytes.push(0);
    body.encode_raw(&mut bytes);
    crate::envelope::digest(&bytes)
}
