//! The command executor: load the aggregate (cache or Direct Get), decide
//! (pure), append one guarded commit per aggregate (an atomic batch when a
//! command changes several, or claims a unique value), retry on a lost race,
//! and return the first result for a repeated `request_id`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lru::LruCache;
use prost::Message as _;
use tonic::Code;

use crate::actor::RequestContext;
use crate::claims::{self, ClaimChange};
use crate::envelope::{self, CommitSpec, GENESIS, Hash, NewEvent, StoredCommit};
use crate::error::Failure;
use crate::ids::PatientId;
use crate::store::{AppendError, ContextStream, EventStore, Write};

/// An aggregate: the patient's record in one context. `apply` holds no
/// rules and never fails; the rules live in the context's `decide`.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// Context name, e.g. "demographics"; names the stream and subjects.
    const CONTEXT: &'static str;
    /// The context's event envelope message (a oneof of every event).
    type Event: prost::Message + Default + Clone + Send + Sync + 'static;

    fn event_type(event: &Self::Event) -> &'static str;
    fn apply(&mut self, event: &Self::Event);
}

/// An aggregate as loaded: its state and where its history ends.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub id: PatientId,
    pub state: A,
    /// Stream sequence of the last commit (0: no history).
    pub last_sequence: u64,
    /// Number of commits (dense version).
    pub version: u64,
    pub last_hash: Hash,
    /// Recorded time of the last commit.
    pub last_recorded_at: Option<DateTime<Utc>>,
    /// (user, request id) of every commit, with its sequence and request
    /// digest: idempotency beyond the stream's duplicate window.
    requests: Arc<HashMap<String, (u64, Vec<u8>)>>,
}

impl<A: Default> Loaded<A> {
    fn empty(id: PatientId) -> Self {
        Self {
            id,
            state: A::default(),
            last_sequence: 0,
            version: 0,
            last_hash: GENESIS,
            last_recorded_at: None,
            requests: Arc::default(),
        }
    }

    pub fn exists(&self) -> bool {
        self.version > 0
    }

    /// Whether one of this record's commits was made by the caller's
    /// request (its user and `request_id`): a repeat of it is answered by
    /// the executor with that commit, whatever the record holds since.
    pub fn holds_request(&self, ctx: &RequestContext) -> bool {
        !ctx.request_id.is_empty()
            && self
                .requests
                .contains_key(&request_key(&ctx.actor.user_id, &ctx.request_id))
    }
}

/// The events decided for one aggregate, each with its clinical time.
#[derive(Debug, Clone)]
pub struct Change<E> {
    pub aggregate_id: PatientId,
    pub events: Vec<(E, DateTime<Utc>)>,
}

/// What `decide` returns: changes to one or more aggregates and the unique
/// values they claim or release.
#[derive(Debug, Clone)]
pub struct Decision<E> {
    pub changes: Vec<Change<E>>,
    pub claims: Vec<ClaimChange>,
}

impl<E> Decision<E> {
    /// Events for one aggregate, happening now.
    pub fn single(aggregate_id: PatientId, events: Vec<E>) -> Self {
        let now = Utc::now();
        Self {
            changes: vec![Change {
                aggregate_id,
                events: events.into_iter().map(|e| (e, now)).collect(),
            }],
            claims: Vec::new(),
        }
    }

    pub fn with_claims(mut self, claims: Vec<ClaimChange>) -> Self {
        self.claims = claims;
        self
    }
}

/// The result of a command.
#[derive(Debug, Clone)]
pub struct Committed<A> {
    /// Stream sequence of the last message written: the consistency token.
    pub sequence: u64,
    /// The request was seen before; nothing new was appended.
    pub duplicate: bool,
    /// This call stored its writes (commits and claims), each guarded by the
    /// last sequence of its subject it was decided on (false for a
    /// duplicate or a command that changed nothing).
    pub appended: bool,
    /// Every aggregate the command named, as it stands now.
    pub aggregates: Vec<Loaded<A>>,
}

impl<A> Committed<A> {
    pub fn get(&self, id: PatientId) -> Option<&Loaded<A>> {
        self.aggregates.iter().find(|l| l.id == id)
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ExecutorStats {
    pub commands: AtomicU64,
    pub appends: AtomicU64,
    pub conflicts: AtomicU64,
    pub duplicates: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Refusals or answers that change nothing decided again because the
    /// cached state they were decided on was stale.
    pub stale: AtomicU64,
}

const STRIPES: usize = 1024;

/// Runs commands of one context against its stream.
pub struct Executor<A: Aggregate> {
    store: EventStore,
    stream: ContextStream,
    cache: Mutex<LruCache<PatientId, Loaded<A>>>,
    /// Commands on one aggregate are serialised in this process, so guarded
    /// publishes to one subject are never pipelined.
    stripes: Vec<tokio::sync::Mutex<()>>,
    max_retries: u32,
    pub stats: ExecutorStats,
}

impl<A: Aggregate> std::fmt::Debug for Executor<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("stream", &self.stream.name)
            .finish()
    }
}

impl<A: Aggregate> Executor<A> {
    pub fn new(store: EventStore, cache_capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(cache_capacity.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            store,
            stream: ContextStream::new(A::CONTEXT),
            cache: Mutex::new(LruCache::new(capacity)),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            max_retries: 5,
            stats: ExecutorStats::default(),
        }
    }

    /// Counts in `stats` and in the `/metrics` counter `metric`, labelled
    /// by context.
    fn count(&self, counter: &AtomicU64, metric: &'static str) {
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(metric, "context" => A::CONTEXT).increment(1);
    }

    pub fn stream(&self) -> &ContextStream {
        &self.stream
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The aggregate from the cache, or from its subject: possibly stale,
    /// so only for the executor's own decisions, which a guarded append
    /// or [`Self::stale`] confirms.
    async fn load(&self, id: PatientId) -> Result<Loaded<A>, Failure> {
        if let Some(hit) = self.cache_get(id) {
            self.count(&self.stats.cache_hits, "carelog_aggregate_cache_hits_total");
            return Ok(hit);
        }
        self.count(
            &self.stats.cache_misses,
            "carelog_aggregate_cache_misses_total",
        );
        let loaded = self.load_from_store(id).await?;
        self.cache_put(loaded.clone());
        Ok(loaded)
    }

    /// The aggregate as the store holds it now: the cached state when its
    /// subject has nothing newer (one Direct Get of the last message), else
    /// read again. For deciding on another context's aggregate, where no
    /// guarded append would catch a stale cache.
    pub async fn load_current(&self, id: PatientId) -> Result<Loaded<A>, Failure> {
        let last = self
            .store
            .last_on_subject(&self.stream.name, &self.stream.subject(&id))
            .await
            .map_err(|e| Failure::unavailable(format!("event store: {e}")))?
            .map_or(0, |m| m.stream_sequence);
        if let Some(hit) = self.cache_get(id)
            && hit.last_sequence == last
        {
            self.count(&self.stats.cache_hits, "carelog_aggregate_cache_hits_total");
            return Ok(hit);
        }
        self.count(
            &self.stats.cache_misses,
            "carelog_aggregate_cache_misses_total",
        );
        let loaded = self.load_from_store(id).await?;
        self.cache_put(loaded.clone());
        Ok(loaded)
    }

    async fn load_from_store(&self, id: PatientId) -> Result<Loaded<A>, Failure> {
        let messages = self
            .store
            .read_subject(&self.stream.name, &self.stream.subject(&id), 0)
            .await
            .map_err(|e| Failure::unavailable(format!("event store: {e}")))?;
        let mut loaded: Loaded<A> = Loaded::empty(id);
        let mut requests = HashMap::new();
        for message in &messages {
            let stored = StoredCommit::decode(message).map_err(|e| Failure::internal(&e))?;
            if stored.previous_hash() != loaded.last_hash {
                tracing::error!(sequence = stored.stream_sequence, aggregate = %id, "hash chain broken");
                return Err(Failure::new(
                    Code::Internal,
                    "HASH_CHAIN_BROKEN",
                    format!(
                        "the history of aggregate {id} fails its hash chain at stream sequence {}",
                        stored.stream_sequence
                    ),
                ));
            }
            for record in &stored.commit.events {
                let event = A::Event::decode(record.payload.as_slice())
                    .map_err(|e| Failure::internal(&e))?;
                loaded.state.apply(&event);
            }
            if !stored.commit.request_id.is_empty() {
                let user = stored
                    .commit
                    .actor
                    .as_ref()
                    .map(|a| a.user_id.as_str())
                    .unwrap_or_default();
                requests.insert(
                    request_key(user, &stored.commit.request_id),
                    (stored.stream_sequence, stored.commit.request_digest.clone()),
                );
            }
            loaded.last_sequence = stored.stream_sequence;
            loaded.version = stored.commit.aggregate_version;
            loaded.last_hash = stored.hash;
            loaded.last_recorded_at = Some(stored.recorded_at());
        }
        loaded.requests = Arc::new(requests);
        Ok(loaded)
    }

    /// What the cache holds of `id`, without reading the store: possibly
    /// stale, so only for a decision that a guarded append confirms.
    pub fn peek<R>(&self, id: PatientId, f: impl FnOnce(&Loaded<A>) -> R) -> Option<R> {
        self.cache.lock().ok()?.peek(&id).map(f)
    }

    fn cache_get(&self, id: PatientId) -> Option<Loaded<A>> {
        self.cache.lock().ok()?.get(&id).cloned()
    }

    /// Caches `loaded` unless the cache holds a later state of it: a read
    /// that finished after a command's append must not put back what the
    /// command replaced.
    fn cache_put(&self, loaded: Loaded<A>) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache
                .peek(&loaded.id)
                .is_some_and(|held| held.last_sequence > loaded.last_sequence)
            {
                return;
            }
            cache.put(loaded.id, loaded);
        }
    }

    /// Whether the store holds anything newer than `loaded` of any of them
    /// (one Direct Get of each subject's last message). Asked before a
    /// refusal, or an answer that changes nothing, decided on a cached or
    /// assumed state: no guarded append would catch that it was stale (a
    /// write through another replica, or a command whose caller went away
    /// before its append was acknowledged). If the store cannot say, the
    /// answer stands.
    async fn stale(&self, loaded: &[Loaded<A>]) -> bool {
        for l in loaded {
            let last = self
                .store
                .last_on_subject(&self.stream.name, &self.stream.subject(&l.id))
                .await
                .map(|m| m.map_or(0, |m| m.stream_sequence));
            match last {
                // Only a later commit: a replica of the stream answering
                // the Direct Get may lag one just acknowledged to us.
                Ok(last) if last > l.last_sequence => {
                    self.count(&self.stats.stale, "carelog_stale_decisions_total");
                    return true;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(aggregate = %l.id, error = %e, "could not check the cached state");
                    return false;
                }
            }
        }
        false
    }

    fn cache_forget(&self, ids: &[PatientId]) {
        if let Ok(mut cache) = self.cache.lock() {
            for id in ids {
                cache.pop(id);
            }
        }
    }

    /// The events the caller's request committed to `loaded`'s aggregate,
    /// if it was made there: what a repeat of it did, whatever the record
    /// holds since.
    pub async fn events_of_request(
        &self,
        ctx: &RequestContext,
        loaded: &Loaded<A>,
    ) -> Result<Option<Vec<A::Event>>, Failure> {
        if ctx.request_id.is_empty() {
            return Ok(None);
        }
        let Some((sequence, _)) = loaded
            .requests
            .get(&request_key(&ctx.actor.user_id, &ctx.request_id))
        else {
            return Ok(None);
        };
        self.stored_commit(*sequence)
            .await?
            .commit
            .events
            .iter()
            .map(|record| {
                A::Event::decode(record.payload.as_slice()).map_err(|e| Failure::internal(&e))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Whether the caller's request was already made on `id` (a repeat,
    /// which [`Executor::execute`] answers with its first commit): a gate
    /// that refuses the patient as they are now (deceased, merged) lets a
    /// repeat of what was done before through to that answer. A lookup of
    /// the current record: for after a refusal, not on every command.
    pub async fn repeats(&self, ctx: &RequestContext, id: PatientId) -> Result<bool, Failure> {
        if ctx.request_id.is_empty() {
            return Ok(false);
        }
        Ok(self.load_current(id).await?.holds_request(ctx))
    }

    /// Runs a command over the aggregates `ids` (in that order in `decide`).
    pub async fn execute<F>(
        &self,
        ctx: &RequestContext,
        ids: &[PatientId],
        decide: F,
    ) -> Result<Committed<A>, Failure>
    where
        F: Fn(&[&Loaded<A>]) -> Result<Decision<A::Event>, Failure>,
    {
        self.run(ctx, ids, false, decide).await
    }

    /// Runs a command that creates the aggregate `id`, deciding first on an
    /// empty history without reading it: a fresh id has none, and if the id
    /// was used after all (a repeated request) the guard refuses the append
    /// and the command is decided again on the real history.
    pub async fn create<F>(
        &self,
        ctx: &RequestContext,
        id: PatientId,
        decide: F,
    ) -> Result<Committed<A>, Failure>
    where
        F: Fn(&[&Loaded<A>]) -> Result<Decision<A::Event>, Failure>,
    {
        self.run(ctx, &[id], true, decide).await
    }

    async fn run<F>(
        &self,
        ctx: &RequestContext,
        ids: &[PatientId],
        assume_new: bool,
        decide: F,
    ) -> Result<Committed<A>, Failure>
    where
        F: Fn(&[&Loaded<A>]) -> Result<Decision<A::Event>, Failure>,
    {
        self.count(&self.stats.commands, "carelog_commands_total");
        let _guards = self.lock(ids).await;
        let key =
            (!ctx.request_id.is_empty()).then(|| request_key(&ctx.actor.user_id, &ctx.request_id));
        for attempt in 0..=self.max_retries {
            let mut loaded = Vec::with_capacity(ids.len());
            for id in ids {
                loaded.push(match attempt {
                    0 if assume_new => Loaded::empty(*id),
                    0 => self.load(*id).await?,
                    _ => self.load_from_store(*id).await?,
                });
            }
            if attempt > 0 {
                loaded.iter().for_each(|l| self.cache_put(l.clone()));
            }
            // A command over several aggregates (a merge) answered with
            // its last commit's sequence: the latest of them.
            if let Some(key) = &key
                && let Some((sequence, digest)) = loaded
                    .iter()
                    .filter_map(|l| l.requests.get(key))
                    .max_by_key(|(sequence, _)| *sequence)
            {
                ctx.check_retry(digest)?;
                let sequence = *sequence;
                self.count(&self.stats.duplicates, "carelog_duplicate_requests_total");
                return Ok(Committed {
                    sequence,
                    duplicate: true,
                    appended: false,
                    aggregates: loaded,
                });
            }
            // The first attempt decides on the cached (or an assumed
            // empty) state; only an append is guarded against its being
            // stale, so an answer without one is given only once the store
            // has nothing newer, else decided again on what it holds.
            let unchecked = attempt == 0;
            let refs: Vec<&Loaded<A>> = loaded.iter().collect();
            let decision = match decide(&refs) {
                Ok(decision) => decision,
                Err(_) if unchecked && self.stale(&loaded).await => continue,
                Err(refused) => return Err(refused),
            };
            if decision.changes.iter().all(|c| c.events.is_empty()) && decision.claims.is_empty() {
                if unchecked && self.stale(&loaded).await {
                    continue;
                }
                let sequence = loaded.iter().map(|l| l.last_sequence).max().unwrap_or(0);
                return Ok(Committed {
                    sequence,
                    duplicate: false,
                    appended: false,
                    aggregates: loaded,
                });
            }
            let recorded_at = Utc::now();
            // A claim refused (an NHS number taken since) may be the
            // command's own, repeated: its aggregate then has a history.
            let (writes, sealed) = match self.writes(ctx, &loaded, &decision, recorded_at).await {
                Ok(writes) => writes,
                Err(_) if unchecked && self.stale(&loaded).await => continue,
                Err(refused) => return Err(refused),
            };
            let written = writes.len() as u64;
            match self.store.append(writes).await {
                Ok(ack) if ack.duplicate => {
                    self.count(&self.stats.duplicates, "carelog_duplicate_requests_total");
                    return self.original(ctx, ack.sequence, ids).await;
                }
                Ok(ack) => {
                    self.count(&self.stats.appends, "carelog_appends_total");
                    let first = ack.sequence + 1 - written;
                    let offset = written - sealed.len() as u64;
                    for (i, (id, events, seal)) in sealed.into_iter().enumerate() {
                        if let Some(l) = loaded.iter_mut().find(|l| l.id == id) {
                            events.iter().for_each(|e| l.state.apply(e));
                            l.version += 1;
                            l.last_sequence = first + offset + i as u64;
                            l.last_hash = seal;
                            l.last_recorded_at = Some(recorded_at);
                            if let Some(key) = &key {
                                let digest = ctx.request_digest.map(|d| d.to_vec());
                                Arc::make_mut(&mut l.requests).insert(
                                    key.clone(),
                                    (l.last_sequence, digest.unwrap_or_default()),
                                );
                            }
                            self.cache_put(l.clone());
                        }
                    }
                    return Ok(Committed {
                        sequence: ack.sequence,
                        duplicate: false,
                        appended: true,
                        aggregates: loaded,
                    });
                }
                Err(AppendError::Conflict { subject }) => {
                    self.count(&self.stats.conflicts, "carelog_append_conflicts_total");
                    let subject = crate::store::loggable_subject(&subject);
                    tracing::debug!(subject, attempt, "lost a race; reloading");
                    self.cache_forget(ids);
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(AppendError::InProcess) => tokio::time::sleep(backoff(attempt)).await,
                Err(
                    e @ (AppendError::NoStream(_)
                    | AppendError::Unavailable(_)
                    | AppendError::Refused { .. }),
                ) => {
                    self.cache_forget(ids);
                    return Err(append_failure(&e));
                }
            }
        }
        Err(Failure::new(
            Code::Aborted,
            "CONCURRENT_MODIFICATION",
            "the record was changed by someone else at the same time; read it again and retry",
        ))
    }

    /// Seals the commits and resolves the claims into guarded writes:
    /// claims first, then one commit per changed aggregate.
    #[allow(clippy::type_complexity)]
    async fn writes(
        &self,
        ctx: &RequestContext,
        loaded: &[Loaded<A>],
        decision: &Decision<A::Event>,
        recorded_at: DateTime<Utc>,
    ) -> Result<(Vec<Write>, Vec<(PatientId, Vec<A::Event>, Hash)>), Failure> {
        let mut writes = claims::resolve(&self.store, &self.stream, ctx, &decision.claims).await?;
        let mut sealed = Vec::new();
        for change in decision.changes.iter().filter(|c| !c.events.is_empty()) {
            let current = loaded
                .iter()
                .find(|l| l.id == change.aggregate_id)
                .ok_or_else(|| {
                    Failure::new(
                        Code::Internal,
                        "INTERNAL",
                        "decision names an aggregate that was not loaded",
                    )
                })?;
            let seal = envelope::seal(CommitSpec {
                ctx,
                context: A::CONTEXT,
                aggregate_id: change.aggregate_id,
                patient_id: change.aggregate_id,
                version: current.version + 1,
                previous_hash: current.last_hash,
                events: change
                    .events
                    .iter()
                    .map(|(e, at)| NewEvent {
                        event_type: A::event_type(e),
                        payload: e.encode_to_vec(),
                        occurred_at: *at,
                    })
                    .collect(),
                recorded_at,
            });
            writes.push(Write {
                subject: self.stream.subject(&change.aggregate_id),
                expected_last_subject_sequence: current.last_sequence,
                message_id: None,
                headers: seal.headers,
                payload: seal.bytes,
            });
            sealed.push((
                change.aggregate_id,
                change.events.iter().map(|(e, _)| e.clone()).collect(),
                seal.hash,
            ));
        }
        if !ctx.request_id.is_empty() {
            let named: Vec<PatientId> = loaded.iter().map(|l| l.id).collect();
            let base = message_id(&ctx.actor.user_id, &named, &ctx.request_id);
            let n = writes.len();
            for (i, w) in writes.iter_mut().enumerate() {
                w.message_id = Some(if n == 1 {
                    base.clone()
                } else {
                    format!("{base}-{i}")
                });
            }
        }
        Ok((writes, sealed))
    }

    /// The commit a request made, at `sequence` of this context's stream.
    async fn stored_commit(&self, sequence: u64) -> Result<StoredCommit, Failure> {
        let message = self
            .store
            .get(&self.stream.name, sequence)
            .await
            .map_err(|e| Failure::unavailable(format!("event store: {e}")))?
            .ok_or_else(|| {
                Failure::new(
                    Code::Internal,
                    "INTERNAL",
                    format!("the commit of a request, at {sequence}, is missing"),
                )
            })?;
        StoredCommit::decode(&message).map_err(|e| Failure::internal(&e))
    }

    /// The result of the original of a duplicate request: the aggregate of
    /// its commit first, then the others the command named.
    async fn original(
        &self,
        ctx: &RequestContext,
        sequence: u64,
        ids: &[PatientId],
    ) -> Result<Committed<A>, Failure> {
        let stored = self.stored_commit(sequence).await?;
        ctx.check_retry(&stored.commit.request_digest)?;
        let first =
            PatientId::parse(&stored.commit.aggregate_id).map_err(|e| Failure::internal(&e))?;
        let mut aggregates = Vec::new();
        for id in std::iter::once(first).chain(ids.iter().copied().filter(|id| *id != first)) {
            self.cache_forget(&[id]);
            aggregates.push(self.load(id).await?);
        }
        Ok(Committed {
            sequence,
            duplicate: true,
            appended: false,
            aggregates,
        })
    }

    async fn lock(&self, ids: &[PatientId]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = ids
            .iter()
            .map(|id| {
                let mut h = DefaultHasher::new();
                id.hash(&mut h);
                (h.finish() as usize) % STRIPES
            })
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.stripes[s].lock().await);
        }
        guards
    }
}

/// What the caller is told when the event store did not take an append:
/// UNAVAILABLE when it may take it later (no stream answering, the
/// connection, a refusal for resources or availability), else INTERNAL.
fn append_failure(e: &AppendError) -> Failure {
    if e.is_unavailable() {
        Failure::unavailable(format!("event store: {e}"))
    } else {
        Failure::internal(e)
    }
}

fn request_key(user: &str, request_id: &str) -> String {
    format!("{user}\u{0}{request_id}")
}

/// `Nats-Msg-Id`: the request id scoped to its user and to the aggregates
/// the command names (in the command's order), so that two users' ids never
/// collide and a request id reused on another patient is a new command
/// there, as it is beyond the duplicate window (each aggregate remembers the
/// request ids of its own commits). A repeated request names the same
/// aggregates: a registration's id is derived from the request (ADR 0011), a
/// merge names its two records.
fn message_id(user: &str, aggregates: &[PatientId], request_id: &str) -> String {
    let mut scope = request_key(user, request_id);
    for id in aggregates {
        scope.push('\u{0}');
        scope.push_str(&id.to_string());
    }
    hex::encode(&envelope::digest(scope.as_bytes())[..20])
}

fn backoff(attempt: u32) -> Duration {
    let base = 2u64.pow(attempt.min(6));
    Duration::from_millis(base + rand::random::<u64>() % (base * 3 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_refused_for_want_of_resources_is_unavailable_and_any_other_refusal_internal() {
        let exhausted = AppendError::Refused {
            code: 10023,
            description: "insufficient resources".into(),
        };
        assert_eq!(append_failure(&exhausted).code, Code::Unavailable);
        let storage = AppendError::Refused {
            code: 10047,
            description: "insufficient storage resources available".into(),
        };
        assert_eq!(append_failure(&storage).code, Code::Unavailable);
        let lost = AppendError::Unavailable("request timed out".into());
        assert_eq!(append_failure(&lost).code, Code::Unavailable);
        let no_stream = AppendError::NoStream("carelog.demographics.x".into());
        assert_eq!(append_failure(&no_stream).code, Code::Unavailable);
        let too_large = AppendError::Refused {
            code: 10054,
            description: "message size exceeds maximum allowed".into(),
        };
        let internal = append_failure(&too_large);
        assert_eq!(internal.code, Code::Internal);
        assert_eq!(internal.message, "internal error");
    }

    #[test]
    fn a_request_id_is_scoped_to_its_user_and_to_the_aggregates_it_names() {
        let (a, b) = (PatientId::new(), PatientId::new());
        let id = |user: &str, ids: &[PatientId], request: &str| message_id(user, ids, request);
        // the same request on the same records: the same id (a retry)
        assert_eq!(id("dr-jones", &[a], "r-1"), id("dr-jones", &[a], "r-1"));
        assert_eq!(
            id("dr-jones", &[a, b], "merge-1"),
            id("dr-jones", &[a, b], "merge-1")
        );
        // on another record, by another user, or another request: another id
        assert_ne!(id("dr-jones", &[a], "r-1"), id("dr-jones", &[b], "r-1"));
        assert_ne!(id("dr-jones", &[a], "r-1"), id("dr-patel", &[a], "r-1"));
        assert_ne!(id("dr-jones", &[a], "r-1"), id("dr-jones", &[a], "r-2"));
        assert_ne!(id("dr-jones", &[a, b], "r-1"), id("dr-jones", &[a], "r-1"));
    }
}
