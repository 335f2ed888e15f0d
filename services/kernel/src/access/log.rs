//! `AccessLog`: appends access events to `CARELOG_ACCESS` with group
//! commit (ADR 0029). With `sync_interval: always` a single-replica stream
//! fsyncs every message, one after another, so one message per read caps
//! audited reads at the disk's fsync rate. Instead, the events of the reads
//! that arrive while earlier messages are being stored go out together as
//! one message: under load many reads share one fsync, alone a read is
//! published at once. Under load a message also waits, up to 2 ms, for as
//! many reads as a recent message held (ADR 0031), so that the reads
//! running together share a message instead of being split over several.
//! Every read still waits for the acknowledgement of the message holding
//! its events (fail closed).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::Utc;
use futures::future::BoxFuture;
use prost::Message as _;
use tokio::sync::{Mutex, mpsc, oneshot};

use carelog_proto::access::v1 as pb;
use carelog_proto::kernel::v1 as kernel;

use super::{ACCESS, AccessSink, RECORD_ACCESSED, SHARED_SUBJECT, UNKNOWN_PATIENT, access_stream};
use crate::envelope::{commit_headers, digest, from_timestamp, header, timestamp};
use crate::error::Failure;
use crate::store::{ContextStream, EventStore};

/// Messages being stored at once. One: the stream stores its messages one
/// after another anyway, and the reads that arrive while one message is
/// stored all go in the next (measured a little faster than two in flight,
/// with larger messages, docs/benchmarks.md).
const IN_FLIGHT: usize = 1;
/// How long a message waits for the reads it expects (see [`gather`]).
const LINGER: Duration = Duration::from_millis(2);
/// Most reads a message waits for.
const MAX_WANT: usize = 16;
/// Most access events in one message.
const MAX_EVENTS: usize = 512;
/// Most bytes of events in one message (NATS refuses payloads over 1 MiB by
/// default).
const MAX_BYTES: usize = 512 * 1024;

/// The events of one answer, waiting to be stored.
struct Job {
    events: Vec<pb::RecordAccessed>,
    reply: oneshot::Sender<Result<(), Failure>>,
}

/// Appends `RecordAccessed` events to `CARELOG_ACCESS`.
#[derive(Clone)]
pub struct AccessLog {
    store: EventStore,
    stream: ContextStream,
    queue: Arc<OnceLock<mpsc::Sender<Job>>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("stream", &self.stream.name)
            .finish()
    }
}

impl AccessLog {
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            stream: access_stream(),
            queue: Arc::default(),
        }
    }

    /// The committers, started on first use (inside the runtime).
    fn queue(&self) -> &mpsc::Sender<Job> {
        self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel::<Job>(4096);
            let receiver = Arc::new(Mutex::new(receiver));
            for _ in 0..IN_FLIGHT {
                let (receiver, log) = (receiver.clone(), self.clone());
                tokio::spawn(async move { log.commit_loop(receiver).await });
            }
            sender
        })
    }

    async fn commit_loop(&self, receiver: Arc<Mutex<mpsc::Receiver<Job>>>) {
        let mut want = 1;
        loop {
            let jobs = {
                let mut rx = receiver.lock().await;
                let Some(first) = rx.recv().await else { return };
                let gathered = gather(&mut rx, first, want).await;
                want = next_want(want, gathered.len());
                gathered
            };
            let mut events = Vec::new();
            let mut replies = Vec::with_capacity(jobs.len());
            for job in jobs {
                events.extend(job.events);
                replies.push(job.reply);
            }
            metrics::histogram!("carelog_access_message_events").record(events.len() as f64);
            let stored = self.publish(&events).await;
            for reply in replies {
                let _ = reply.send(stored.clone());
            }
        }
    }

    /// Publishes one message and awaits its acknowledgement.
    async fn publish(&self, events: &[pb::RecordAccessed]) -> Result<(), Failure> {
        let message = AccessMessage::new(events);
        let subject = self.stream.subject(&message.subject_token);
        let (headers, payload) = message.enveloped();
        let sent = self
            .store
            .jetstream()
            .publish_with_headers(subject, headers, payload)
            .await
            .map_err(|e| Failure::unavailable(format!("access log: {e}")))?;
        sent.await
            .map_err(|e| Failure::unavailable(format!("access log: {e}")))?;
        Ok(())
    }

    async fn enqueue(&self, events: Vec<pb::RecordAccessed>) -> Result<(), Failure> {
        let (reply, stored) = oneshot::channel();
        self.queue()
            .send(Job { events, reply })
            .await
            .map_err(|_| Failure::unavailable("access log: committer stopped"))?;
        stored
            .await
            .map_err(|_| Failure::unavailable("access log: committer stopped"))?
    }
}

impl AccessSink for AccessLog {
    fn append(&self, events: Vec<pb::RecordAccessed>) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let count = events.len() as u64;
            let appended = self.enqueue(events).await;
            let outcome = if appended.is_ok() { "ok" } else { "failed" };
            metrics::histogram!("carelog_access_audit_batch_duration_seconds", "outcome" => outcome)
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("carelog_access_events_total", "outcome" => outcome).increment(count);
            appended
        })
    }
}

/// The jobs of the next message: `first`, every job already queued, and,
/// while fewer than `want` reads are in, the reads that arrive within
/// [`LINGER`] (ADR 0031). `want` is about the number of reads the server
/// has running at once: under load the message waits for its companions
/// instead of leaving them to the next message, and the messages, their
/// fsyncs, deliveries and audit rows are fewer. A read alone (`want` 1)
/// never waits.
async fn gather(rx: &mut mpsc::Receiver<Job>, first: Job, want: usize) -> Vec<Job> {
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut size = encoded_len(&first.events);
    let mut count = first.events.len();
    let mut jobs = vec![first];
    while count < MAX_EVENTS && size < MAX_BYTES {
        let job = match rx.try_recv() {
            Ok(job) => job,
            Err(mpsc::error::TryRecvError::Empty) if jobs.len() < want => {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(job)) => job,
                    Ok(None) | Err(_) => break,
                }
            }
            Err(_) => break,
        };
        size += encoded_len(&job.events);
        count += job.events.len();
        jobs.push(job);
    }
    jobs
}

/// The reads the next message waits for, after one of `gathered` reads:
/// the most a recent message held, forgetting one a message, so that a
/// message that waited in vain lowers the wait of the next ones (at most
/// [`MAX_WANT`]).
fn next_want(want: usize, gathered: usize) -> usize {
    gathered.max(want.saturating_sub(1)).clamp(1, MAX_WANT)
}

fn encoded_len(events: &[pb::RecordAccessed]) -> usize {
    events.iter().map(|e| e.encoded_len()).sum()
}

/// One message of `CARELOG_ACCESS`: access events in the commit envelope,
/// so the audit projectors read it like any other commit.
#[derive(Debug, Clone)]
pub struct AccessMessage {
    pub commit: kernel::Commit,
    /// The last token of its subject: the patient when every event is
    /// about one (`unknown` when that patient is not known), else `shared`.
    pub subject_token: String,
}

impl AccessMessage {
    /// The message holding `events` (at least one): context `access`,
    /// version 0, no previous hash (access events are not an aggregate's
    /// history and are not hash-chained), one `RecordAccessed` record per
    /// event whose event id is the access id. The patient is named on the
    /// message when every event is about that one patient, and so are the
    /// actor and purpose when the message holds one event; otherwise they
    /// live in each event only.
    pub fn new(events: &[pb::RecordAccessed]) -> Self {
        let first = events.first().cloned().unwrap_or_default();
        let patient = events
            .iter()
            .all(|e| e.patient_id == first.patient_id)
            .then(|| first.patient_id.clone());
        let alone = events.len() == 1;
        let recorded_at = events
            .iter()
            .filter_map(|e| from_timestamp(e.accessed_at.as_ref()))
            .max()
            .unwrap_or_else(Utc::now);
        let commit = kernel::Commit {
            commit_id: uuid::Uuid::now_v7().to_string(),
            context: ACCESS.to_owned(),
            aggregate_id: patient.clone().unwrap_or_default(),
            patient_id: patient.clone().unwrap_or_default(),
            aggregate_version: 0,
            actor: if alone { first.actor.clone() } else { None },
            on_behalf_of: if alone {
                first.on_behalf_of.clone()
            } else {
                String::new()
            },
            purpose_of_use: if alone {
                first.purpose_of_use.clone()
            } else {
                String::new()
            },
            reason: String::new(),
            request_id: String::new(),
            request_digest: Vec::new(),
            correlation_id: if alone {
                first.correlation_id.clone()
            } else {
                String::new()
            },
            causation_id: String::new(),
            traceparent: if alone {
                first.traceparent.clone()
            } else {
                String::new()
            },
            recorded_at: Some(timestamp(recorded_at)),
            events: events
                .iter()
                .map(|event| kernel::EventRecord {
                    event_id: event.access_id.clone(),
                    event_type: RECORD_ACCESSED.to_owned(),
                    occurred_at: event.accessed_at,
                    payload: event.encode_to_vec(),
                })
                .collect(),
            previous_hash: Vec::new(),
        };
        let subject_token = match &patient {
            Some(id) if id.is_empty() => UNKNOWN_PATIENT.to_owned(),
            Some(id) => id.clone(),
            None => SHARED_SUBJECT.to_owned(),
        };
        Self {
            commit,
            subject_token,
        }
    }

    /// The headers and bytes of the message. `Nats-Msg-Id` is the message's
    /// commit id: a resent message is stored once within the duplicate
    /// window.
    pub fn enveloped(&self) -> (HeaderMap, Bytes) {
        let bytes = Bytes::from(self.commit.encode_to_vec());
        let recorded_at = from_timestamp(self.commit.recorded_at.as_ref()).unwrap_or_else(Utc::now);
        let mut h = commit_headers(&self.commit, &digest(&bytes), recorded_at);
        h.insert(header::KIND, header::KIND_COMMIT);
        h.insert("Nats-Msg-Id", self.commit.commit_id.as_str());
        (h, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One clinician's read of `patient`, waiting to be stored.
    fn read(patient: &str) -> Job {
        let (reply, _stored) = oneshot::channel();
        let events = vec![pb::RecordAccessed {
            access_id: uuid::Uuid::now_v7().to_string(),
            patient_id: patient.to_owned(),
            service: "carelog.demographics.v1.DemographicsService".to_owned(),
            method: "GetPatient".to_owned(),
            ..Default::default()
        }];
        Job { events, reply }
    }

    /// `patient`'s read reaches the log.
    async fn arrives(tx: &mpsc::Sender<Job>, patient: &str) {
        tx.send(read(patient)).await.expect("the log is listening");
    }

    fn patients(jobs: &[Job]) -> Vec<&str> {
        jobs.iter()
            .flat_map(|j| j.events.iter().map(|e| e.patient_id.as_str()))
            .collect()
    }

    #[test]
    fn a_message_expects_as_many_reads_as_a_recent_one_held_and_forgets_one_a_message() {
        // A lone read: the next message expects one (does not wait).
        assert_eq!(next_want(1, 1), 1);
        // Seven reads arrived together: the next message expects seven.
        assert_eq!(next_want(1, 7), 7);
        // The clinicians went home: each message expects one fewer.
        assert_eq!(next_want(7, 1), 6);
        assert_eq!(next_want(2, 1), 1);
        // A burst of forty reads: never more than the cap.
        assert_eq!(next_want(16, 40), MAX_WANT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_alone_is_published_at_once() {
        let (tx, mut rx) = mpsc::channel(8);
        let started = tokio::time::Instant::now();
        let jobs = gather(&mut rx, read("patient-a"), 1).await;
        assert_eq!(patients(&jobs), ["patient-a"]);
        assert_eq!(started.elapsed(), Duration::ZERO);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn under_load_a_message_waits_for_the_reads_it_expects_and_takes_what_is_queued() {
        let (tx, mut rx) = mpsc::channel(8);
        arrives(&tx, "patient-b").await;
        let late = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            arrives(&late, "patient-c").await;
            tokio::task::yield_now().await;
            arrives(&late, "patient-d").await;
        });
        let started = tokio::time::Instant::now();
        let jobs = gather(&mut rx, read("patient-a"), 4).await;
        assert_eq!(
            patients(&jobs),
            ["patient-a", "patient-b", "patient-c", "patient-d"]
        );
        // Published as the fourth read arrived, before the linger ran out.
        assert_eq!(started.elapsed(), Duration::from_millis(1));
        // Reads already queued go in even beyond what was expected.
        for p in ["patient-e", "patient-f", "patient-g"] {
            arrives(&tx, p).await;
        }
        let jobs = gather(&mut rx, read("patient-h"), 2).await;
        assert_eq!(
            patients(&jobs),
            ["patient-h", "patient-e", "patient-f", "patient-g"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_waits_no_longer_than_the_linger_for_reads_that_do_not_come() {
        let (tx, mut rx) = mpsc::channel(8);
        arrives(&tx, "patient-b").await;
        let started = tokio::time::Instant::now();
        let jobs = gather(&mut rx, read("patient-a"), 5).await;
        assert_eq!(patients(&jobs), ["patient-a", "patient-b"]);
        assert_eq!(started.elapsed(), LINGER);
        // The server shut down while a message waited: what it has goes out.
        arrives(&tx, "patient-c").await;
        drop(tx);
        let jobs = gather(&mut rx, read("patient-d"), 5).await;
        assert_eq!(patients(&jobs), ["patient-d", "patient-c"]);
    }
}
