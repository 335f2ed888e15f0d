//! Reads with and without auditing, in the same run: two API servers
//! started in this process on the same NATS and PostgreSQL, one auditing to
//! `CARELOG_ACCESS` as in production, one whose access sink records
//! nothing (a benchmark-only sink: no production setting turns auditing
//! off). Both serve GetPatient over the same patients, in alternating
//! phases, so drift in the machine falls on both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use carelog_kernel::Failure;
use carelog_kernel::access::AccessSink;
use carelog_kernel::auth::DevIssuer;
use carelog_kernel::store::StoreOptions;
use carelog_proto::access::v1::RecordAccessed;
use carelog_proto::demographics::v1 as pb;
use carelog_proto::demographics::v1::demographics_service_client::DemographicsServiceClient;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::{Phase, authorised, details, drive};
use crate::stack::{self, Parts, Running, Settings};

/// The benchmark's stand-in for an access log that records nothing.
#[derive(Debug)]
struct NotAudited;

impl AccessSink for NotAudited {
    fn append(&self, _events: Vec<RecordAccessed>) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(async { Ok(()) })
    }
}

/// The figures of the phase.
pub struct Reads {
    pub audited: Phase,
    pub unaudited: Phase,
}

impl Reads {
    /// Audited reads as a share of unaudited reads.
    pub fn ratio(&self) -> f64 {
        self.audited.rate() / self.unaudited.rate()
    }
}

async fn serve(
    nats_url: &str,
    database_url: &str,
    issuer: &DevIssuer,
    access_log: Option<Arc<dyn AccessSink>>,
) -> anyhow::Result<(Running, Channel)> {
    let store = stack::event_store(nats_url, StoreOptions::default()).await?;
    let pool = stack::database(database_url, 8).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let running = stack::start_with(
        store,
        pool,
        Arc::new(issuer.authenticator()?),
        Some(listener),
        Parts {
            api: true,
            projectors: false,
        },
        Settings {
            access_log,
            ..Settings::default()
        },
        CancellationToken::new(),
    )
    .await?;
    let channel = Channel::from_shared(endpoint)?.connect().await?;
    Ok((running, channel))
}

/// GetPatient of the seeded patients, round robin, for `duration`.
async fn read_phase(
    channel: Channel,
    token: Arc<String>,
    patients: Arc<Vec<String>>,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Phase> {
    drive(clients, duration, move |i| {
        let (mut client, token, patients) = (
            DemographicsServiceClient::new(channel.clone()),
            token.clone(),
            patients.clone(),
        );
        async move {
            let patient_id = patients[i as usize % patients.len()].clone();
            let started = Instant::now();
            client
                .get_patient(authorised(
                    pb::GetPatientRequest {
                        patient_id,
                        min_sequence: 0,
                    },
                    &token,
                )?)
                .await?;
            Ok(vec![started.elapsed()])
        }
    })
    .await
}

/// Seeds patients through the audited server, then measures both servers'
/// reads in alternating halves (audited, unaudited, audited, unaudited).
pub async fn audited_vs_unaudited(
    nats_url: &str,
    database_url: &str,
    issuer: &DevIssuer,
    token: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Reads> {
    const PATIENTS: u64 = 500;
    let (audited, audited_channel) = serve(nats_url, database_url, issuer, None).await?;
    let (unaudited, unaudited_channel) =
        serve(nats_url, database_url, issuer, Some(Arc::new(NotAudited))).await?;
    let token = Arc::new(token.to_owned());
    let mut client = DemographicsServiceClient::new(audited_channel.clone());
    let mut patients = Vec::new();
    let mut last = 0;
    for i in 0..PATIENTS {
        let p = client
            .register_patient(authorised(
                pb::RegisterPatientRequest {
                    details: Some(details(1_000_000 + i)),
                    ..Default::default()
                },
                &token,
            )?)
            .await?
            .into_inner();
        last = last.max(p.stream_sequence);
        patients.push(p.patient_id);
    }
    // Every seeded patient is in the read model before timing starts.
    client
        .get_patient(authorised(
            pb::GetPatientRequest {
                patient_id: patients[patients.len() - 1].clone(),
                min_sequence: last,
            },
            &token,
        )?)
        .await?;
    let patients = Arc::new(patients);
    let half = duration / 2;
    let mut phases = Vec::new();
    for _ in 0..2 {
        for channel in [&audited_channel, &unaudited_channel] {
            phases.push(
                read_phase(
                    channel.clone(),
                    token.clone(),
                    patients.clone(),
                    clients,
                    half,
                )
                .await?,
            );
        }
    }
    audited.stop(Duration::from_secs(10)).await?;
    unaudited.stop(Duration::from_secs(10)).await?;
    let mut phases = phases.into_iter();
    let mut next = || {
        phases
            .next()
            .ok_or_else(|| anyhow::anyhow!("missing phase"))
    };
    let (a1, u1, a2, u2) = (next()?, next()?, next()?, next()?);
    Ok(Reads {
        audited: a1.merge(a2)?,
        unaudited: u1.merge(u2)?,
    })
}
