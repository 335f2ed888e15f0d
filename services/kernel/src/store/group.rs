//! Group commit behind `EventStore::append`: commands for different
//! aggregates that arrive while earlier appends are in flight share one
//! atomic batch, so one fsync covers them all (`sync_interval: always`
//! costs one fsync per message otherwise). Alone, a command is published at
//! once: grouping adds no latency at low load. A batch that fails (one lost
//! race makes an atomic batch fail whole) is retried command by command, so
//! each command gets its own answer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::config::subject_prefix;
use super::publish::{self, Ack, AppendError, Publisher, Write};

/// Appends in flight at once per stream.
const WORKERS: usize = 4;
/// Messages in one group (the server allows 1,000 in an atomic batch).
const MAX_GROUP: usize = 256;
/// Fewest messages worth an atomic batch: nats-server 2.15 spends about
/// 3 ms on any atomic batch (measured: 2 messages 3.3 ms, 100 messages
/// 4.8 ms; it stages each batch in a file store of its own on disk)
/// against about 0.25 ms per single publish, so a smaller group is
/// published as pipelined single commands instead (ADR 0007).
const MIN_BATCH: usize = 32;

struct Job {
    writes: Vec<Write>,
    reply: oneshot::Sender<Result<Ack, AppendError>>,
}

/// One committer per stream, started on first use.
#[derive(Default)]
pub(super) struct Committers {
    by_stream: std::sync::Mutex<HashMap<String, mpsc::Sender<Job>>>,
    pub(super) stats: Arc<GroupStats>,
}

/// How often commands shared a batch (for `/metrics` and tests).
#[derive(Debug, Default)]
pub struct GroupStats {
    /// Atomic batches that carried several commands.
    pub batches: std::sync::atomic::AtomicU64,
    /// Commands that went out in such batches.
    pub batched_commands: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Committers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Committers")
    }
}

impl Committers {
    pub(super) async fn append(
        &self,
        publisher: &Publisher,
        writes: Vec<Write>,
    ) -> Result<Ack, AppendError> {
        let Some(first) = writes.first() else {
            return Err(AppendError::Refused {
                code: 0,
                description: "nothing to append".into(),
            });
        };
        let sender = {
            let mut map = self
                .by_stream
                .lock()
                .map_err(|_| AppendError::Unavailable("committer poisoned".into()))?;
            map.entry(subject_prefix(&first.subject).to_owned())
                .or_insert_with(|| start(publisher.clone(), self.stats.clone()))
                .clone()
        };
        let (reply, answer) = oneshot::channel();
        sender
            .send(Job { writes, reply })
            .await
            .map_err(|_| AppendError::Unavailable("committer stopped".into()))?;
        answer
            .await
            .map_err(|_| AppendError::Unavailable("committer stopped".into()))?
    }
}

fn start(publisher: Publisher, stats: Arc<GroupStats>) -> mpsc::Sender<Job> {
    let (sender, receiver) = mpsc::channel::<Job>(4096);
    let receiver = Arc::new(Mutex::new(receiver));
    for _ in 0..WORKERS {
        let (receiver, publisher, stats) = (receiver.clone(), publisher.clone(), stats.clone());
        tokio::spawn(async move {
            let mut carry: Vec<Job> = Vec::new();
            loop {
                // A job carried over from the last group goes out at once,
                // without the receiver: another worker may hold it while it
                // waits for new jobs, and none may come until this one is
                // answered (its command holds the aggregate's lock).
                let jobs = if !carry.is_empty() {
                    std::mem::take(&mut carry)
                } else {
                    let mut rx = receiver.lock().await;
                    let mut jobs = match rx.recv().await {
                        Some(job) => vec![job],
                        None => return,
                    };
                    let mut subjects: HashSet<String> = jobs
                        .iter()
                        .flat_map(|j| j.writes.iter().map(|w| w.subject.clone()))
                        .collect();
                    let mut size: usize = jobs.iter().map(|j| j.writes.len()).sum();
                    while size < MAX_GROUP {
                        let Ok(job) = rx.try_recv() else { break };
                        // One guarded write per subject in a batch: a second
                        // command on a subject waits for the next group.
                        if job.writes.iter().any(|w| subjects.contains(&w.subject)) {
                            carry.push(job);
                            break;
                        }
                        subjects.extend(job.writes.iter().map(|w| w.subject.clone()));
                        size += job.writes.len();
                        jobs.push(job);
                    }
                    jobs
                };
                commit(&publisher, &stats, jobs).await;
            }
        });
    }
    sender
}

async fn commit(publisher: &Publisher, stats: &GroupStats, jobs: Vec<Job>) {
    let total: usize = jobs.iter().map(|j| j.writes.len()).sum();
    if jobs.len() == 1 || total < MIN_BATCH {
        alone(publisher, jobs).await;
        return;
    }
    let all: Vec<Write> = jobs.iter().flat_map(|j| j.writes.iter().cloned()).collect();
    let total = all.len() as u64;
    match publish::append(publisher, all).await {
        Ok(ack) => {
            stats
                .batches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            stats
                .batched_commands
                .fetch_add(jobs.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let mut next = ack.sequence + 1 - total;
            for job in jobs {
                next += job.writes.len() as u64;
                let _ = job.reply.send(Ok(Ack {
                    sequence: next - 1,
                    duplicate: false,
                }));
            }
        }
        Err(AppendError::Unavailable(e)) => {
            for job in jobs {
                let _ = job.reply.send(Err(AppendError::Unavailable(e.clone())));
            }
        }
        Err(_) => alone(publisher, jobs).await,
    }
}

/// Each command on its own, pipelined on the connection; each is answered
/// as soon as its own acknowledgement arrives. The writes are moved into
/// their publishes (nothing retries them here).
async fn alone(publisher: &Publisher, jobs: Vec<Job>) {
    futures::future::join_all(jobs.into_iter().map(|job| async move {
        let result = publish::append(publisher, job.writes).await;
        let _ = job.reply.send(result);
    }))
    .await;
}

#[cfg(test)]
mod tests {
    use super::subject_prefix as stream_key;

    #[test]
    fn subjects_of_one_context_share_a_committer() {
        assert_eq!(
            stream_key("carelog.demographics.0190-aa"),
            "carelog.demographics"
        );
        assert_eq!(
            stream_key("carelog.demographics.claims.nhs-number.ab"),
            "carelog.demographics"
        );
    }
}
