//! `TestStack::start()` gives a test its own nats-server (JetStream, fresh
//! store, `sync_interval: always`), its own PostgreSQL (a temporary cluster,
//! or a fresh database on `DATABASE_URL` when set), carelog's API and
//! projectors on a free port, and a token issuer. Everything is removed when
//! the stack is dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use carelog::embedded::{NatsServer, Postgres};
use carelog::stack::{self, Parts, Running};
use carelog_kernel::auth::DevIssuer;
use carelog_kernel::store::{ContextStream, EventStore, StoreOptions};
use carelog_proto::consultations::v1::consultations_service_client::ConsultationsServiceClient;
use carelog_proto::demographics::v1 as pb;
use carelog_proto::demographics::v1::demographics_service_client::DemographicsServiceClient;
use carelog_proto::medications::v1::medications_service_client::MedicationsServiceClient;
use carelog_proto::tasks::v1::tasks_service_client::TasksServiceClient;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("carelog-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The servers a test runs against.
pub struct Servers {
    pub nats: NatsServer,
    pub postgres: Option<Postgres>,
    pub database_url: String,
    pub dir: TempDir,
}

impl Servers {
    pub async fn start() -> Servers {
        let dir = TempDir::new();
        let nats = NatsServer::start(&dir.0.join("nats"), None)
            .await
            .expect("start nats-server");
        let (postgres, database_url) = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => (None, fresh_database(&url).await),
            _ => {
                let pg = Postgres::start(&dir.0.join("pg"), None)
                    .await
                    .expect("start PostgreSQL");
                let url = pg.url.clone();
                (Some(pg), url)
            }
        };
        Servers {
            nats,
            postgres,
            database_url,
            dir,
        }
    }
}

/// A database of its own on the server of `DATABASE_URL`.
async fn fresh_database(url: &str) -> String {
    use sqlx::Connection as _;
    let name = format!("carelog_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => format!("{url}/{name}"),
    }
}

/// carelog's chosen parts on a free local port, with tokens of `issuer`:
/// what runs, a channel to its API, and the API's address.
async fn serve(
    store: EventStore,
    pool: PgPool,
    issuer: &DevIssuer,
    parts: Parts,
    settings: stack::Settings,
) -> (Running, Channel, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let auth = Arc::new(issuer.authenticator().expect("authenticator"));
    let running = stack::start_with(
        store,
        pool,
        auth,
        Some(listener),
        parts,
        settings,
        CancellationToken::new(),
    )
    .await
    .expect("start carelog");
    let channel = Channel::from_shared(endpoint.clone())
        .expect("endpoint")
        .connect_lazy();
    (running, channel, endpoint)
}

/// carelog running on its own servers.
pub struct TestStack {
    pub servers: Servers,
    pub store: EventStore,
    pub pool: PgPool,
    pub issuer: Arc<DevIssuer>,
    pub running: Option<Running>,
    pub channel: Channel,
    pub endpoint: String,
}

pub const DEMOGRAPHICS: &str = "CARELOG_DEMOGRAPHICS";

impl TestStack {
    /// Servers, streams, migrations, the API and the projectors.
    pub async fn start() -> TestStack {
        Self::start_parts(Parts {
            api: true,
            projectors: true,
        })
        .await
    }

    /// The API without the projectors: the test runs the projectors it
    /// needs itself, when it needs them.
    pub async fn without_projectors() -> TestStack {
        Self::start_parts(Parts {
            api: true,
            projectors: false,
        })
        .await
    }

    pub async fn start_parts(parts: Parts) -> TestStack {
        Self::start_with(parts, stack::Settings::default()).await
    }

    /// The chosen parts with explicit settings (contexts served, health port).
    pub async fn start_with(parts: Parts, settings: stack::Settings) -> TestStack {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("carelog=debug,carelog_kernel=debug,carelog_projections=debug")
            .with_test_writer()
            .try_init();
        let servers = Servers::start().await;
        let store = stack::event_store(&servers.nats.url, StoreOptions::default())
            .await
            .expect("event store");
        let pool = stack::database(&servers.database_url, 10)
            .await
            .expect("database");
        let issuer =
            Arc::new(DevIssuer::load_or_create(&servers.dir.0.join("issuer")).expect("dev issuer"));
        let (running, channel, endpoint) =
            serve(store.clone(), pool.clone(), &issuer, parts, settings).await;
        TestStack {
            servers,
            store,
            pool,
            issuer,
            running: Some(running),
            channel,
            endpoint,
        }
    }

    /// A second carelog API on the same servers, as another replica with
    /// caches of its own, and a channel to it. Stop it with `Running::stop`.
    pub async fn replica(&self) -> (Running, Channel) {
        let pool = stack::database(&self.servers.database_url, 4)
            .await
            .expect("database");
        let api = Parts {
            api: true,
            projectors: false,
        };
        let (running, channel, _) = serve(
            self.store.clone(),
            pool,
            &self.issuer,
            api,
            stack::Settings::default(),
        )
        .await;
        (running, channel)
    }

    /// A token for a clinician at practice A81001 (or `org`).
    pub fn token(&self, user: &str, org: &str) -> String {
        self.issuer
            .token(
                user,
                &format!("Dr {user}"),
                org,
                "R8000",
                Duration::from_secs(600),
            )
            .expect("token")
    }

    pub fn client(&self) -> DemographicsServiceClient<Channel> {
        DemographicsServiceClient::new(self.channel.clone())
    }

    pub fn consultations(&self) -> ConsultationsServiceClient<Channel> {
        ConsultationsServiceClient::new(self.channel.clone())
    }

    pub fn medications(&self) -> MedicationsServiceClient<Channel> {
        MedicationsServiceClient::new(self.channel.clone())
    }

    pub fn tasks(&self) -> TasksServiceClient<Channel> {
        TasksServiceClient::new(self.channel.clone())
    }

    /// A request from `user` of organisation `org` acting in `role` (a
    /// national RBAC role code, e.g. R8000 clinical practitioner).
    pub fn req_in_role<T>(
        &self,
        user: &str,
        org: &str,
        role: &str,
        message: T,
    ) -> tonic::Request<T> {
        let token = self
            .issuer
            .token(
                user,
                &format!("Dr {user}"),
                org,
                role,
                Duration::from_secs(600),
            )
            .expect("token");
        let mut request = tonic::Request::new(message);
        let value = format!("Bearer {token}").parse().expect("metadata");
        request.metadata_mut().insert("authorization", value);
        request
    }

    /// The last sequence of a context's stream (e.g. "medications").
    pub async fn last_sequence_of(&self, context: &'static str) -> u64 {
        self.store
            .last_sequence(&ContextStream::new(context).name)
            .await
            .expect("stream info")
    }

    /// Every access event recorded for a patient, with the sequence in
    /// `CARELOG_ACCESS` of the message holding it, oldest first (a message
    /// may hold the accesses of several reads, ADR 0029).
    pub async fn access_events(
        &self,
        patient_id: &str,
    ) -> Vec<(u64, carelog_proto::access::v1::RecordAccessed)> {
        let stream = carelog_kernel::access::access_stream();
        self.store
            .read_subject(&stream.name, &stream.all_subjects(), 0)
            .await
            .expect("read access stream")
            .iter()
            .flat_map(|m| {
                carelog_kernel::access::decode(m.payload.as_ref())
                    .into_iter()
                    .map(move |event| (m.stream_sequence, event))
            })
            .filter(|(_, event)| event.patient_id == patient_id)
            .collect()
    }

    /// The refusals recorded for a patient, oldest first.
    pub async fn refusals(
        &self,
        patient_id: &str,
    ) -> Vec<carelog_proto::access::v1::RecordAccessed> {
        self.access_events(patient_id)
            .await
            .into_iter()
            .map(|(_, event)| event)
            .filter(|event| event.outcome() == carelog_proto::access::v1::AccessOutcome::Denied)
            .collect()
    }

    /// The last access recorded for a patient by `method`.
    pub async fn last_access(
        &self,
        patient_id: &str,
        method: &str,
    ) -> carelog_proto::access::v1::RecordAccessed {
        self.access_events(patient_id)
            .await
            .into_iter()
            .map(|(_, event)| event)
            .rfind(|event| event.method == method)
            .unwrap_or_else(|| panic!("no access by {method} recorded"))
    }

    /// A request carrying a clinician's token.
    pub fn req<T>(&self, message: T) -> tonic::Request<T> {
        self.req_as("dr-jones", message)
    }

    pub fn req_as<T>(&self, user: &str, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let value = format!("Bearer {}", self.token(user, "A81001"))
            .parse()
            .expect("metadata");
        request.metadata_mut().insert("authorization", value);
        request
    }

    /// `carelog rebuild <projection>`: replays it from the start and swaps
    /// its fresh tables in.
    pub async fn rebuild(&self, projection: &str) {
        let projection = carelog_projections::by_name(projection).expect("a known projection");
        carelog_projections::rebuild::rebuild(
            &self.pool,
            &self.store,
            projection.as_ref(),
            &|_, _| {},
        )
        .await
        .expect("rebuild");
    }

    /// On a stack without projectors: runs every projector until the
    /// patients read model has applied `sequence` of the demographics
    /// stream, then stops them, so what is recorded next is in the event
    /// store but not yet in the read model.
    pub async fn project_patients_until(&self, sequence: u64) {
        let stop = tokio_util::sync::CancellationToken::new();
        let projecting = tokio::spawn(
            carelog_projections::Runner::new(self.pool.clone(), self.store.clone())
                .run(carelog_projections::all(), stop.clone()),
        );
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        let projected = carelog_projections::checkpoint::wait_for(
            &self.pool,
            "patients",
            "CARELOG_DEMOGRAPHICS",
            sequence,
            deadline,
        )
        .await
        .expect("checkpoint");
        assert!(projected, "sequence {sequence} projected within 20 s");
        stop.cancel();
        projecting
            .await
            .expect("join")
            .expect("the projectors stop");
    }

    /// The demographics stream's last sequence.
    pub async fn last_sequence(&self) -> u64 {
        self.store
            .last_sequence(DEMOGRAPHICS)
            .await
            .expect("stream info")
    }

    pub fn demographics_stream() -> ContextStream {
        ContextStream::new("demographics")
    }

    /// Registers a patient and returns it.
    pub async fn register(&self, details: pb::PatientDetails) -> pb::Patient {
        self.client()
            .register_patient(self.req(pb::RegisterPatientRequest {
                details: Some(details),
                ..Default::default()
            }))
            .await
            .expect("register")
            .into_inner()
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running
                .stop(Duration::from_secs(10))
                .await
                .expect("clean stop");
        }
    }
}

/// A valid NHS number from the 999 test range, different each call.
pub fn test_nhs_number() -> String {
    // From a random start, one after another: never the same number twice
    // in a test (each test is a process of its own), which random numbers
    // alone would give now and then.
    static NEXT: std::sync::OnceLock<std::sync::atomic::AtomicU32> = std::sync::OnceLock::new();
    let next = NEXT.get_or_init(|| {
        std::sync::atomic::AtomicU32::new((uuid::Uuid::new_v4().as_u128() % 1_000_000) as u32)
    });
    loop {
        let n = 999_000_000 + next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1_000_000;
        let digits: Vec<u32> = n
            .to_string()
            .chars()
            .filter_map(|c| c.to_digit(10))
            .collect();
        if let Some(check) = carelog_kernel::NhsNumber::check_digit(&digits) {
            return format!("{n}{check}");
        }
    }
}

/// A registered patient's details: Jane Smith, born 14 March 1950, Leeds.
pub fn jane_smith() -> pb::PatientDetails {
    pb::PatientDetails {
        nhs_number: test_nhs_number(),
        nhs_number_verification_status: pb::NhsNumberVerificationStatus::Verified as i32,
        name: Some(pb::HumanName {
            family: "Smith".into(),
            given: vec!["Jane".into()],
            prefix: "Mrs".into(),
        }),
        birth_date: Some(carelog_proto::kernel::v1::PartialDate {
            year: 1950,
            month: 3,
            day: 14,
        }),
        gender: pb::AdministrativeGender::Female as i32,
        addresses: vec![pb::Address {
            lines: vec!["1 Park Row".into()],
            city: "Leeds".into(),
            postcode: "LS1 5AB".into(),
            ..Default::default()
        }],
        telecom: vec![pb::ContactPoint {
            system: pb::ContactSystem::Phone as i32,
            value: "0113 496 0000".into(),
            r#use: pb::ContactUse::Home as i32,
        }],
        registered_practice_ods: "A81001".into(),
    }
}

/// An UpdateDemographics of `paths` to the values in `details`.
pub fn update_request(
    patient_id: &str,
    details: pb::PatientDetails,
    paths: &[&str],
) -> pb::UpdateDemographicsRequest {
    pb::UpdateDemographicsRequest {
        patient_id: patient_id.into(),
        details: Some(details),
        update_mask: crate::consultations::mask(paths),
        ..Default::default()
    }
}

/// An UpdateDemographics of her telephone to `number` alone, on Jane
/// Smith's details.
pub fn new_phone(patient_id: &str, number: &str) -> pb::UpdateDemographicsRequest {
    update_request(patient_id, jane_with_phone(number), &["telecom"])
}

/// Jane Smith's details with one telephone number.
pub fn jane_with_phone(number: &str) -> pb::PatientDetails {
    pb::PatientDetails {
        telecom: vec![pb::ContactPoint {
            system: pb::ContactSystem::Phone as i32,
            value: number.into(),
            r#use: 0,
        }],
        ..jane_smith()
    }
}
