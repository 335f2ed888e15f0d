//! `carelog bench`: drives RegisterPatient and UpdateDemographics over gRPC
//! with N concurrent clients for D seconds and, in the same run, the raw
//! ceiling: plain guarded JetStream publishes of the same size and
//! concurrency, one subject per patient. Then the projection lag at a fixed
//! rate and the rebuild rate, a mixed clinical workload across all four
//! services (`clinical`), reads with and without auditing (`reads`) and
//! the rate of `audit verify`. Each timed phase also reports where the
//! machine's CPU went (`cpu`). Figures go to docs/benchmarks.md by hand.

mod clinical;
mod cpu;
mod reads;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::stream::Config;
use bytes::Bytes;
use carelog_kernel::auth::DevIssuer;
use carelog_kernel::store::{ContextStream, EventStore, StoreOptions, Write, required_config};
use carelog_proto::demographics::v1 as pb;
use carelog_proto::demographics::v1::demographics_service_client::DemographicsServiceClient;
use clap::Args;
use hdrhistogram::Histogram;
use tokio::sync::Mutex;
use tonic::transport::Channel;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The running carelog's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,
    /// The NATS server carelog uses (for the raw ceiling).
    #[arg(long, env = "NATS_URL")]
    pub nats_url: String,
    /// carelog's PostgreSQL (projection lag and rebuild).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Seconds per throughput phase.
    #[arg(long, default_value = "10s", value_parser = crate::cli::humantime)]
    pub duration: Duration,
    /// Commands per second of the lag phase.
    #[arg(long, default_value_t = 1000)]
    pub lag_rate: u64,
    /// Updates per registered patient in the throughput phase.
    #[arg(long, default_value_t = 3)]
    pub updates_per_patient: usize,
    /// Data directory of `carelog up` (for a development token).
    #[arg(long, env = "CARELOG_DATA_DIR", default_value = "./data")]
    pub data_dir: std::path::PathBuf,
    /// Skip the rebuild measurement.
    #[arg(long)]
    pub skip_rebuild: bool,
    /// Skip the projection-lag measurement (when no projector runs).
    #[arg(long)]
    pub skip_lag: bool,
    /// Skip the mixed clinical workload.
    #[arg(long)]
    pub skip_clinical: bool,
    /// Skip reads with and without auditing (they need the `patients`
    /// projector running).
    #[arg(long)]
    pub skip_reads: bool,
    /// Skip the `audit verify` rate.
    #[arg(long)]
    pub skip_verify: bool,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

struct Phase {
    ops: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
    /// The machine's CPU over the timed window, where `/proc` can be read.
    cpu: Option<cpu::Usage>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    /// Two phases of the same kind as one.
    fn merge(mut self, other: Phase) -> anyhow::Result<Phase> {
        self.latency_us.add(&other.latency_us)?;
        let cpu = match (&self.cpu, &other.cpu) {
            (Some(a), Some(b)) => Some(a.merge(b)),
            _ => None,
        };
        Ok(Phase {
            ops: self.ops + other.ops,
            elapsed: self.elapsed + other.elapsed,
            latency_us: self.latency_us,
            cpu,
        })
    }

    /// The phase's figures, and under them its CPU.
    fn line(&self, name: &str) -> String {
        let mut line = format!(
            "{name:<28} {:>9.0} ops/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} ops in {:.1}s)",
            self.rate(),
            self.latency_us.value_at_quantile(0.5) as f64 / 1000.0,
            self.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
            self.ops,
            self.elapsed.as_secs_f64()
        );
        if let Some(cpu) = &self.cpu {
            line.push_str(&format!("\n{:<28} {cpu}", ""));
        }
        line
    }
}

fn details(i: u64) -> pb::PatientDetails {
    pb::PatientDetails {
        nhs_number: String::new(),
        nhs_number_verification_status: pb::NhsNumberVerificationStatus::NotPresent as i32,
        name: Some(pb::HumanName {
            family: format!("Bench{}", i % 1000),
            given: vec!["Alex".into()],
            prefix: String::new(),
        }),
        birth_date: Some(carelog_proto::kernel::v1::PartialDate {
            year: 1950 + (i % 60) as i32,
            month: 1 + (i % 12) as i32,
            day: 1 + (i % 28) as i32,
        }),
        gender: pb::AdministrativeGender::Unknown as i32,
        addresses: vec![pb::Address {
            lines: vec![format!("{} High Street", i % 200)],
            postcode: "LS1 4AP".into(),
            ..Default::default()
        }],
        telecom: vec![],
        registered_practice_ods: "A81001".into(),
    }
}

fn authorised<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let issuer = DevIssuer::load(&args.data_dir.join("dev-issuer"))?;
    let token = issuer.token(
        "bench",
        "Benchmark",
        "A81001",
        "R8000",
        Duration::from_secs(3600),
    )?;
    let store = EventStore::connect(&args.nats_url, StoreOptions::default()).await?;
    let channel = Channel::from_shared(args.endpoint.clone())?
        .connect()
        .await
        .context("cannot reach the gRPC endpoint")?;
    println!(
        "carelog bench: {} clients, {:?} per phase, server {}",
        args.clients,
        args.duration,
        store.client().server_info().version
    );

    let sample = sample_commit();
    let raw = raw_ceiling(
        &store,
        args.clients,
        args.duration,
        sample.clone(),
        args.updates_per_patient,
        false,
    )
    .await?;
    let grouped = raw_ceiling(
        &store,
        args.clients,
        args.duration,
        sample.clone(),
        args.updates_per_patient,
        true,
    )
    .await?;
    let commands = commands(
        channel.clone(),
        &token,
        args.clients,
        args.duration,
        args.updates_per_patient,
    )
    .await?;
    let clinical = if args.skip_clinical {
        None
    } else {
        Some(clinical::workload(channel.clone(), &token, args.clients, args.duration).await?)
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&args.database_url)
        .await?;
    let lag = if args.skip_lag {
        None
    } else {
        Some(lag(channel, &token, &pool, args.lag_rate, args.duration).await?)
    };
    let reads = if args.skip_reads {
        None
    } else {
        Some(
            reads::audited_vs_unaudited(
                &args.nats_url,
                &args.database_url,
                &issuer,
                &token,
                args.clients,
                args.duration,
            )
            .await?,
        )
    };
    println!();
    println!("{}", raw.line("raw guarded publish"));
    println!("{}", grouped.line("EventStore::append (grouped)"));
    println!("{}", commands.line("commands over gRPC"));
    println!(
        "{:<28} {:>9.1} %",
        "ratio to raw ceiling",
        100.0 * commands.rate() / raw.rate()
    );
    if let Some(clinical) = &clinical {
        println!("{}", clinical.line("mixed clinical commands"));
        println!(
            "{:<28} {:>9.1} visits/s ({} commands each: register, consult with 3 entries and sign, allergy, repeat issued twice, task claimed and completed)",
            "mixed clinical visits",
            clinical.rate() / clinical::COMMANDS_PER_UNIT as f64,
            clinical::COMMANDS_PER_UNIT
        );
    }
    if let Some(reads) = &reads {
        println!("{}", reads.audited.line("GetPatient, audited"));
        println!("{}", reads.unaudited.line("GetPatient, not audited"));
        println!(
            "{:<28} {:>9.1} % (target >= 70 %)",
            "audited / not audited",
            100.0 * reads.ratio()
        );
    }
    if let Some(lag) = &lag {
        println!(
            "{:<28} p50 {:>7.2} ms   p99 {:>7.2} ms   at {} commands/s ({} samples)",
            "projection lag",
            lag.value_at_quantile(0.5) as f64 / 1000.0,
            lag.value_at_quantile(0.99) as f64 / 1000.0,
            args.lag_rate,
            lag.len()
        );
    }
    if !args.skip_rebuild {
        // Let the live projectors finish first, so the rebuild runs alone.
        let stream = ContextStream::new("demographics").name;
        let end = store.last_sequence(&stream).await?;
        if !args.skip_lag {
            for projection in ["patients", "audit_events"] {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
                carelog_projections::checkpoint::wait_for(
                    &pool, projection, &stream, end, deadline,
                )
                .await?;
            }
        }
        let projection = carelog_projections::patients::PatientsProjection;
        let report =
            carelog_projections::rebuild::rebuild(&pool, &store, &projection, &|_, _| {}).await?;
        println!(
            "{:<28} {:>9.0} events/s ({} messages in {:.1}s)",
            "rebuild patients",
            report.per_second(),
            report.messages,
            report.elapsed.as_secs_f64()
        );
    }
    if !args.skip_verify {
        let started = Instant::now();
        let report = carelog_projections::audit_log::verify(&pool, &store, &[]).await?;
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{:<28} {:>9.0} entries/s ({} entries of {} logs in {:.1}s, {})",
            "audit verify",
            report.entries() as f64 / elapsed,
            report.entries(),
            report.logs.len(),
            elapsed,
            if report.ok() {
                "verified"
            } else {
                "NOT verified"
            }
        );
    }
    Ok(())
}

/// A registration commit exactly as carelog writes it (payload and
/// headers), so the raw ceiling publishes messages of the same size.
fn sample_commit() -> (async_nats::HeaderMap, Bytes) {
    use prost::Message as _;
    let event = pb::Event {
        event: Some(pb::event::Event::PatientRegistered(pb::PatientRegistered {
            details: Some(details(1)),
        })),
    };
    let actor = carelog_kernel::Actor {
        user_id: "bench".into(),
        display_name: "Benchmark".into(),
        role: "R8000".into(),
        organisation: carelog_kernel::OdsCode::parse("A81001").unwrap_or_else(|_| unreachable!()),
        purpose_of_use: "DIRECT_CARE".into(),
    };
    let ctx =
        carelog_kernel::RequestContext::for_actor(actor, &tonic::metadata::MetadataMap::new());
    let id = carelog_kernel::PatientId::new();
    let sealed = carelog_kernel::envelope::seal(carelog_kernel::envelope::CommitSpec {
        ctx: &ctx,
        context: "demographics",
        aggregate_id: id,
        patient_id: id,
        version: 1,
        previous_hash: carelog_kernel::envelope::GENESIS,
        events: vec![carelog_kernel::envelope::NewEvent {
            event_type: "PatientRegistered",
            payload: event.encode_to_vec(),
            occurred_at: chrono::Utc::now(),
        }],
        recorded_at: chrono::Utc::now(),
    });
    (sealed.headers, sealed.bytes)
}

async fn raw_ceiling(
    store: &EventStore,
    clients: usize,
    duration: Duration,
    (headers, payload): (async_nats::HeaderMap, Bytes),
    updates: usize,
    grouped: bool,
) -> anyhow::Result<Phase> {
    let stream = ContextStream::new("benchraw");
    let mut config: Config = required_config(&stream, store.options());
    config.deny_delete = false;
    config.deny_purge = false;
    let _ = store.jetstream().delete_stream(&stream.name).await;
    store.jetstream().create_stream(config).await?;
    let (owned_store, owned_stream, owned_headers) = (store.clone(), stream.clone(), headers);
    let result = drive(clients, duration, move |_| {
        let (store, stream, payload, headers) = (
            owned_store.clone(),
            owned_stream.clone(),
            payload.clone(),
            owned_headers.clone(),
        );
        async move {
            let subject = stream.subject(&uuid::Uuid::now_v7());
            let mut last = 0;
            let mut latencies = Vec::with_capacity(updates + 1);
            for _ in 0..=updates {
                let started = Instant::now();
                let write = vec![Write {
                    subject: subject.clone(),
                    expected_last_subject_sequence: last,
                    message_id: None,
                    headers: headers.clone(),
                    payload: payload.clone(),
                }];
                let ack = if grouped {
                    store.append(write).await?
                } else {
                    store.append_alone(write).await?
                };
                latencies.push(started.elapsed());
                last = ack.sequence;
            }
            Ok(latencies)
        }
    })
    .await;
    let _ = store.jetstream().delete_stream(&stream.name).await;
    result
}

async fn commands(
    channel: Channel,
    token: &str,
    clients: usize,
    duration: Duration,
    updates: usize,
) -> anyhow::Result<Phase> {
    let token = Arc::new(token.to_owned());
    drive(clients, duration, move |i| {
        let (mut client, token) = (
            DemographicsServiceClient::new(channel.clone()),
            token.clone(),
        );
        async move {
            let mut latencies = Vec::with_capacity(updates + 1);
            let started = Instant::now();
            let patient = client
                .register_patient(authorised(
                    pb::RegisterPatientRequest {
                        details: Some(details(i)),
                        request_id: String::new(),
                        reason: String::new(),
                    },
                    &token,
                )?)
                .await?
                .into_inner();
            latencies.push(started.elapsed());
            for u in 0..updates {
                let started = Instant::now();
                let mut d = details(i);
                d.addresses[0].lines = vec![format!("{} Low Street", u)];
                client
                    .update_demographics(authorised(
                        pb::UpdateDemographicsRequest {
                            patient_id: patient.patient_id.clone(),
                            details: Some(d),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["addresses".into()],
                            }),
                            ..Default::default()
                        },
                        &token,
                    )?)
                    .await?;
                latencies.push(started.elapsed());
            }
            Ok(latencies)
        }
    })
    .await
}

/// Runs `clients` loops of `unit` for `duration`; each unit returns the
/// latencies of the operations it did.
async fn drive<F, Fut>(clients: usize, duration: Duration, unit: F) -> anyhow::Result<Phase>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Vec<Duration>>> + Send,
{
    let unit = Arc::new(unit);
    let stop = Arc::new(AtomicBool::new(false));
    let latency = Arc::new(Mutex::new(histogram()));
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let cpu_before = cpu::Sample::take();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (unit, stop, latency, counter) =
            (unit.clone(), stop.clone(), latency.clone(), counter.clone());
        tasks.spawn(async move {
            let mut local = histogram();
            let mut ops = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                for d in unit(i).await? {
                    local.record(d.as_micros().max(1) as u64)?;
                    ops += 1;
                }
            }
            latency.lock().await.add(&local)?;
            anyhow::Ok(ops)
        });
    }
    tokio::time::sleep(duration).await;
    let cpu = cpu_before.and_then(|before| before.until_now());
    stop.store(true, Ordering::Relaxed);
    let mut ops = 0;
    while let Some(result) = tasks.join_next().await {
        ops += result??;
    }
    let elapsed = started.elapsed();
    let latency_us = Arc::try_unwrap(latency)
        .map_err(|_| anyhow::anyhow!("histogram still shared"))?
        .into_inner();
    Ok(Phase {
        ops,
        elapsed,
        latency_us,
        cpu,
    })
}

/// Registers patients at a fixed rate and measures, for each, the time from
/// the command's acknowledgement to the projector's checkpoint covering it.
async fn lag(
    channel: Channel,
    token: &str,
    pool: &sqlx::PgPool,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<Histogram<u64>> {
    let stream = ContextStream::new("demographics").name;
    let acked: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let token = Arc::new(token.to_owned());
    let mut tasks = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::now();
    let poller = {
        let (acked, pool, stream) = (acked.clone(), pool.clone(), stream.clone());
        tokio::spawn(async move {
            let mut lag = histogram();
            let mut seen = 0u64;
            while seen < total {
                let applied =
                    carelog_projections::checkpoint::read(&pool, "patients", &stream).await?;
                let now = Instant::now();
                let mut pending = acked.lock().await;
                pending.retain(|(seq, at)| {
                    if *seq <= applied {
                        let _ = lag.record(now.duration_since(*at).as_micros().max(1) as u64);
                        seen += 1;
                        false
                    } else {
                        true
                    }
                });
                drop(pending);
                tokio::time::sleep(Duration::from_millis(1)).await;
                if start.elapsed() > duration * 4 + Duration::from_secs(30) {
                    break;
                }
            }
            anyhow::Ok(lag)
        })
    };
    for i in 0..total {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let (mut client, token, acked) = (
            DemographicsServiceClient::new(channel.clone()),
            token.clone(),
            acked.clone(),
        );
        tasks.spawn(async move {
            let reply = client
                .register_patient(authorised(
                    pb::RegisterPatientRequest {
                        details: Some(details(i)),
                        ..Default::default()
                    },
                    &token,
                )?)
                .await?
                .into_inner();
            acked
                .lock()
                .await
                .push((reply.stream_sequence, Instant::now()));
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    poller.await?
}
