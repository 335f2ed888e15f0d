//! The assembled carelog: connections, streams, migrations, projectors and
//! the gRPC server, started from explicit settings and stopped by a
//! cancellation token. `carelog up`, `carelog serve`, `carelog project` and
//! the end-to-end tests all start carelog through here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use carelog_consultations::api::ConsultationsApi;
use carelog_consultations::domain::PatientConsultations;
use carelog_demographics::api::DemographicsApi;
use carelog_demographics::domain::PatientRecord;
use carelog_demographics::gate::PatientGate;
use carelog_kernel::Aggregate as _;
use carelog_kernel::Executor;
use carelog_kernel::access::{self, AccessLog, AccessSink};
use carelog_kernel::auth::Authenticator;
use carelog_kernel::guard::Guard;
use carelog_kernel::store::{ContextStream, EventStore, StoreOptions};
use carelog_medications::api::MedicationsApi;
use carelog_medications::catalogue::DrugCatalogue;
use carelog_medications::domain::MedicationRecord;
use carelog_projections::access::PgAccessFacts;
use carelog_projections::consultations::PgConsultationsQueries;
use carelog_projections::medications::PgMedicationsQueries;
use carelog_projections::patients::PgPatientQueries;
use carelog_projections::sharing::PgSharingQueries;
use carelog_projections::tasks::PgTasksQueries;
use carelog_projections::{ProjectorStatus, Runner};
use carelog_proto::audit::v1::audit_service_server::AuditServiceServer;
use carelog_proto::audit::v1::record_history_service_server::RecordHistoryServiceServer;
use carelog_proto::consultations::v1::consultations_service_server::ConsultationsServiceServer;
use carelog_proto::demographics::v1::demographics_service_server::DemographicsServiceServer;
use carelog_proto::medications::v1::medications_service_server::MedicationsServiceServer;
use carelog_proto::sharing::v1::sharing_service_server::SharingServiceServer;
use carelog_proto::tasks::v1::tasks_service_server::TasksServiceServer;
use carelog_sharing::api::SharingApi;
use carelog_sharing::domain::SharingRecord;
use carelog_tasks::api::TasksApi;
use carelog_tasks::break_glass::PrivacyReview;
use carelog_tasks::domain::TaskList;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Every context with a stream.
pub const CONTEXTS: [&str; 5] = [
    PatientRecord::CONTEXT,
    PatientConsultations::CONTEXT,
    MedicationRecord::CONTEXT,
    TaskList::CONTEXT,
    SharingRecord::CONTEXT,
];

/// Cache capacity (aggregates) of each context's executor.
const CACHE: usize = 100_000;

/// Connects to JetStream and checks (or creates) every stream.
pub async fn event_store(nats_url: &str, options: StoreOptions) -> anyhow::Result<EventStore> {
    let store = EventStore::connect(nats_url, options).await?;
    for context in CONTEXTS {
        store.ensure_stream(&ContextStream::new(context)).await?;
    }
    store.ensure_stream(&access::access_stream()).await?;
    Ok(store)
}

/// Connects to PostgreSQL and runs the read-model migrations.
pub async fn database(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    database_within(url, max_connections, Duration::ZERO).await
}

/// [`database`], trying for up to `wait` while PostgreSQL does not answer
/// yet (a pod started before it). Migrations are not retried.
pub async fn database_within(
    url: &str,
    max_connections: u32,
    wait: Duration,
) -> anyhow::Result<PgPool> {
    let options = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5));
    // The server by host and port, never with the URL's password.
    let server = url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .map(|o| format!("PostgreSQL at {}:{}", o.get_host(), o.get_port()))
        .unwrap_or_else(|_| "PostgreSQL (DATABASE_URL)".to_owned());
    // Not answering yet: refused or unreachable, or no connection opened
    // within the pool's timeout. Credentials, TLS or a database that does
    // not exist are configuration errors.
    let unreachable = |e: &sqlx::Error| matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut);
    let pool = carelog_kernel::store::until_reachable(&server, wait, unreachable, || {
        options.clone().connect(url)
    })
    .await
    .with_context(|| format!("cannot connect to {server} (DATABASE_URL)"))?;
    carelog_projections::MIGRATOR
        .run(&pool)
        .await
        .context("read-model migrations")?;
    Ok(pool)
}

/// What runs: the API, the projectors, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    pub api: bool,
    pub projectors: bool,
}

/// A running carelog.
pub struct Running {
    /// Where the gRPC API listens (when it runs).
    pub api_addr: Option<SocketAddr>,
    /// Where the separate health port listens (when asked for).
    pub health_addr: Option<SocketAddr>,
    /// Where `/metrics` is served (when asked for).
    pub metrics_addr: Option<SocketAddr>,
    pub store: EventStore,
    pub pool: PgPool,
    pub shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("api_addr", &self.api_addr)
            .finish()
    }
}

impl Running {
    /// Stops everything and waits for it (bounded by `grace`).
    pub async fn stop(self, grace: Duration) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let mut first = Ok(());
        for task in self.tasks {
            match tokio::time::timeout(grace, task).await {
                Ok(Ok(Err(e))) if first.is_ok() => first = Err(e),
                Ok(Err(e)) if first.is_ok() => first = Err(e.into()),
                Err(_) => tracing::warn!("a task did not stop within the grace period"),
                _ => {}
            }
        }
        self.pool.close().await;
        first
    }

    /// Waits until a part stops by itself (an error) or shutdown is asked.
    pub async fn wait(&mut self) {
        self.shutdown.cancelled().await;
    }
}

/// What the API serves and how.
#[derive(Debug)]
pub struct Settings {
    /// The drug catalogue of the prescribing safety checks.
    pub drug_catalogue: Arc<DrugCatalogue>,
    /// The contexts whose gRPC services the API serves (`serve <context>`
    /// serves one; `up` and the tests serve all of `CONTEXTS`).
    pub contexts: Vec<&'static str>,
    /// The audit checkpoint signing key and origin (AuditService signs on
    /// demand with it).
    pub audit_signer: Option<(carelog_kernel::merkle::checkpoint::SigningKey, String)>,
    /// A plaintext port for gRPC health alone (Kubernetes probes), apart
    /// from the API port.
    pub health_listener: Option<TcpListener>,
    /// The admin port serving Prometheus `/metrics`.
    pub metrics_listener: Option<TcpListener>,
    /// Where reads are audited; `None` is `CARELOG_ACCESS` on the event
    /// store (tests put a failing log here).
    pub access_log: Option<Arc<dyn AccessSink>>,
    /// Which permissions each role code grants (the built-in default, or a
    /// site's `--access-policy` file).
    pub access_policy: Arc<carelog_kernel::policy::Policy>,
    /// TLS (and, with a client CA, mutual TLS) on the API port; the health
    /// and metrics ports stay plaintext.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Whose privacy officer reviews an emergency access to a patient with
    /// no registered practice; `None`: the organisation that broke glass.
    pub break_glass_reviewer: Option<carelog_kernel::OdsCode>,
}

impl Default for Settings {
    /// Every context, no separate health port, and the built-in SAMPLE drug
    /// catalogue (development and tests only).
    fn default() -> Self {
        Self {
            drug_catalogue: Arc::new(DrugCatalogue::sample()),
            contexts: CONTEXTS.to_vec(),
            audit_signer: None,
            health_listener: None,
            metrics_listener: None,
            access_log: None,
            access_policy: Arc::new(carelog_kernel::policy::Policy::default()),
            tls: None,
            break_glass_reviewer: None,
        }
    }
}

/// Starts the chosen parts on an open listener, with the default settings.
pub async fn start(
    store: EventStore,
    pool: PgPool,
    auth: Arc<Authenticator>,
    listener: Option<TcpListener>,
    parts: Parts,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    start_with(
        store,
        pool,
        auth,
        listener,
        parts,
        Settings::default(),
        shutdown,
    )
    .await
}

/// Starts the chosen parts on an open listener.
pub async fn start_with(
    store: EventStore,
    pool: PgPool,
    auth: Arc<Authenticator>,
    listener: Option<TcpListener>,
    parts: Parts,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let mut tasks = Vec::new();
    let runner = Runner::new(pool.clone(), store.clone());
    if parts.projectors {
        let (runner, token) = (runner.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            runner
                .run(carelog_projections::all(), token)
                .await
                .map_err(anyhow::Error::from)
        }));
    }
    // Readiness follows the projectors and the dependencies: NOT_SERVING
    // while a projector is stopped on an event it cannot apply, while NATS
    // or PostgreSQL does not answer (checked every READINESS_CHECK), and
    // from the moment shutdown begins. Liveness stays SERVING.
    let (readiness, mut status, token) = (health.clone(), runner.status(), shutdown.clone());
    let watch_projectors = parts.projectors;
    let (check_store, check_pool) = (store.clone(), pool.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(READINESS_CHECK);
        let mut dependencies = Dependencies::default();
        let mut watching = true;
        let mut last = None;
        loop {
            let failed = watch_projectors
                && status
                    .borrow()
                    .values()
                    .any(|s| matches!(s, ProjectorStatus::Failed { .. }));
            let serving = if failed || !dependencies.up() {
                tonic_health::ServingStatus::NotServing
            } else {
                tonic_health::ServingStatus::Serving
            };
            if last != Some(serving) {
                readiness.set_service_status("readiness", serving).await;
                last = Some(serving);
            }
            tokio::select! {
                _ = token.cancelled() => break,
                changed = status.changed(), if watching => watching = changed.is_ok(),
                _ = tick.tick() => dependencies.check(&check_store, &check_pool).await,
            }
        }
        readiness
            .set_service_status("readiness", tonic_health::ServingStatus::NotServing)
            .await;
    });
    health
        .set_service_status("liveness", tonic_health::ServingStatus::Serving)
        .await;
    let mut metrics_addr = None;
    crate::metrics::handle();
    if let Some(listener) = settings.metrics_listener {
        metrics_addr = Some(listener.local_addr()?);
        tasks.push(tokio::spawn(crate::metrics::serve(
            listener,
            shutdown.clone(),
        )));
    }
    let mut health_addr = None;
    if let Some(listener) = settings.health_listener {
        health_addr = Some(listener.local_addr()?);
        let (service, token) = (health_service.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming(listener), token.cancelled_owned())
                .await
                .map_err(anyhow::Error::from)
        }));
    }
    let mut api_addr = None;
    if let (true, Some(listener)) = (parts.api, listener) {
        api_addr = Some(listener.local_addr()?);
        let serves = |context: &str| settings.contexts.contains(&context);
        let access_log = settings
            .access_log
            .clone()
            .unwrap_or_else(|| Arc::new(AccessLog::new(store.clone())));
        let patients = Arc::new(Executor::<PatientRecord>::new(store.clone(), CACHE));
        let gate = PatientGate::new(patients.clone());
        let task_executor = Arc::new(Executor::<TaskList>::new(store.clone(), CACHE));
        // The one access decision every handler asks (ADR 0020); emergency
        // accesses raise the privacy officer's review task (ADR 0022).
        let guard = Guard::new(
            settings.access_policy.clone(),
            Arc::new(PgAccessFacts::new(gate.clone(), pool.clone())),
            access_log.clone(),
        )
        .with_break_glass(Arc::new(
            PrivacyReview::new(task_executor.clone())
                .with_reviewer(settings.break_glass_reviewer.clone()),
        ));
        let demographics = serves(PatientRecord::CONTEXT).then(|| {
            DemographicsServiceServer::with_interceptor(
                DemographicsApi::new(
                    patients,
                    Arc::new(PgPatientQueries::new(pool.clone())),
                    guard.clone(),
                )
                .with_access_log(access_log.clone()),
                auth.clone().interceptor(settings.access_policy.clone()),
            )
        });
        let consultations = serves(PatientConsultations::CONTEXT).then(|| {
            ConsultationsServiceServer::with_interceptor(
                ConsultationsApi::new(
                    Arc::new(Executor::<PatientConsultations>::new(store.clone(), CACHE)),
                    gate.clone(),
                    Arc::new(PgConsultationsQueries::new(pool.clone())),
                    guard.clone(),
                )
                .with_access_log(access_log.clone()),
                auth.clone().interceptor(settings.access_policy.clone()),
            )
        });
        let medications = serves(MedicationRecord::CONTEXT).then(|| {
            MedicationsServiceServer::with_interceptor(
                MedicationsApi::new(
                    Arc::new(Executor::<MedicationRecord>::new(store.clone(), CACHE)),
                    gate.clone(),
                    Arc::new(PgMedicationsQueries::new(pool.clone())),
                    guard.clone(),
                )
                .with_catalogue(settings.drug_catalogue.clone())
                .with_access_log(access_log.clone()),
                auth.clone().interceptor(settings.access_policy.clone()),
            )
        });
        let task_service = serves(TaskList::CONTEXT).then(|| {
            TasksServiceServer::with_interceptor(
                TasksApi::new(
                    task_executor.clone(),
                    gate.clone(),
                    Arc::new(PgTasksQueries::new(pool.clone())),
                    guard.clone(),
                )
                .with_access_log(access_log.clone()),
                auth.clone().interceptor(settings.access_policy.clone()),
            )
        });
        let sharing = serves(SharingRecord::CONTEXT).then(|| {
            SharingServiceServer::with_interceptor(
                SharingApi::new(
                    Arc::new(Executor::<SharingRecord>::new(store.clone(), CACHE)),
                    Arc::new(PgSharingQueries::new(pool.clone())),
                ),
                auth.clone().interceptor(settings.access_policy.clone()),
            )
        });
        let audit = AuditServiceServer::with_interceptor(
            crate::audit_api::AuditApi::new(
                pool.clone(),
                settings.audit_signer.clone(),
                access_log.clone(),
                guard.clone(),
            ),
            auth.clone().interceptor(settings.access_policy.clone()),
        );
        let history = RecordHistoryServiceServer::with_interceptor(
            crate::history_api::RecordHistoryApi::new(
                carelog_projections::history::RecordHistory::new(store.clone(), pool.clone()),
                access_log.clone(),
                guard.clone(),
            ),
            auth.clone().interceptor(settings.access_policy.clone()),
        );
        let served = served_services(&settings.contexts);
        set_services(&health, &served, tonic_health::ServingStatus::Serving).await;
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(carelog_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(carelog_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let token = shutdown.clone();
        let health_on_stop = health.clone();
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = settings.tls {
            server = server
                .tls_config(tls)
                .context("TLS settings of the API port")?;
        }
        tasks.push(tokio::spawn(async move {
            let stop = async move {
                token.cancelled().await;
                set_services(
                    &health_on_stop,
                    &served,
                    tonic_health::ServingStatus::NotServing,
                )
                .await;
            };
            server
                .layer(crate::rpc::RpcLayer::new(access_log.clone()))
                .add_service(health_service)
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha)
                .add_optional_service(demographics)
                .add_optional_service(consultations)
                .add_optional_service(medications)
                .add_optional_service(task_service)
                .add_optional_service(sharing)
                .add_service(audit)
                .add_service(history)
                .serve_with_incoming_shutdown(incoming(listener), stop)
                .await
                .map_err(anyhow::Error::from)
        }));
    }
    Ok(Running {
        api_addr,
        health_addr,
        metrics_addr,
        store,
        pool,
        shutdown,
        tasks,
    })
}

/// How often readiness checks NATS and PostgreSQL.
pub const READINESS_CHECK: Duration = Duration::from_secs(2);

/// The last readiness check of NATS and PostgreSQL.
#[derive(Debug)]
struct Dependencies {
    nats: bool,
    postgres: bool,
}

impl Default for Dependencies {
    fn default() -> Self {
        Self {
            nats: true,
            postgres: true,
        }
    }
}

impl Dependencies {
    fn up(&self) -> bool {
        self.nats && self.postgres
    }

    /// The NATS connection's state and `SELECT 1`, each logged when it
    /// changes; also samples the pool for `/metrics`.
    async fn check(&mut self, store: &EventStore, pool: &PgPool) {
        let nats = matches!(
            store.client().connection_state(),
            async_nats::connection::State::Connected
        );
        let postgres = tokio::time::timeout(READINESS_CHECK, sqlx::query("SELECT 1").execute(pool))
            .await
            .is_ok_and(|r| r.is_ok());
        for (name, was, now) in [
            ("nats", self.nats, nats),
            ("postgresql", self.postgres, postgres),
        ] {
            metrics::gauge!("carelog_dependency_up", "dependency" => name).set(if now {
                1.0
            } else {
                0.0
            });
            match (was, now) {
                (true, false) => tracing::warn!(dependency = name, "unreachable: not ready"),
                (false, true) => tracing::info!(dependency = name, "reachable again"),
                _ => {}
            }
        }
        let idle = pool.num_idle() as f64;
        metrics::gauge!("carelog_db_pool_connections", "state" => "idle").set(idle);
        metrics::gauge!("carelog_db_pool_connections", "state" => "in_use")
            .set(f64::from(pool.size()) - idle);
        self.nats = nats;
        self.postgres = postgres;
    }
}

/// The gRPC health status of the services served.
async fn set_services(
    health: &tonic_health::server::HealthReporter,
    services: &[&'static str],
    status: tonic_health::ServingStatus,
) {
    for service in services {
        health.set_service_status(*service, status).await;
    }
}

/// The full gRPC service names of some contexts.
fn served_services(contexts: &[&str]) -> Vec<&'static str> {
    CONTEXTS
        .iter()
        .zip(SERVICES)
        .filter(|(context, _)| contexts.contains(context))
        .map(|(_, service)| service)
        .collect()
}

/// The full names of carelog's gRPC services (gRPC health and reflection).
pub const SERVICES: [&str; 5] = [
    "carelog.demographics.v1.DemographicsService",
    "carelog.consultations.v1.ConsultationsService",
    "carelog.medications.v1.MedicationsService",
    "carelog.tasks.v1.TasksService",
    "carelog.sharing.v1.SharingService",
];

/// Accepted connections with Nagle's algorithm off: a gRPC reply is written
/// as several frames, and with Nagle on, the later ones wait for the
/// client's delayed ACK (about 40 ms).
fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// TLS on the API port from PEM files: the server's certificate chain and
/// private key, and, for mutual TLS, the CA whose certificates clients must
/// present (a client without one is refused during the handshake).
pub fn server_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    // One crypto provider for the whole process (ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
    };
    let identity = tonic::transport::Identity::from_pem(
        read(cert, "TLS certificate")?,
        read(key, "TLS private key")?,
    );
    let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = client_ca {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(
            ca,
            "client CA certificate",
        )?));
    }
    Ok(tls)
}
