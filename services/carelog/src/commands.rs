//! The subcommands. Configuration is checked before any port is bound; a
//! bad setting exits with status 64.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use carelog_kernel::auth::{Authenticator, DEV_AUDIENCE, DEV_ISSUER, DevIssuer};
use carelog_kernel::store::StoreOptions;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::{
    Command, Connections, DevTokenArgs, GatewayArgs, Identity, ProjectArgs, RebuildArgs, ServeArgs,
    UpArgs,
};
use crate::embedded::{NatsServer, Postgres};
use crate::stack::{self, Parts, Settings};

/// A configuration mistake: exit status 64, nothing started.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn config(message: impl Into<String>) -> anyhow::Error {
    ConfigError(message.into()).into()
}

const GRACE: Duration = Duration::from_secs(20);

/// The settings of the API: a site's drug catalogue, or the built-in
/// sample; a site's access policy, or the built-in default. A malformed
/// catalogue or policy is a configuration error naming the problem.
fn settings(
    drug_catalogue: Option<&Path>,
    access_policy: Option<&Path>,
) -> anyhow::Result<Settings> {
    let mut settings = Settings::default();
    if let Some(path) = access_policy {
        let policy =
            carelog_kernel::policy::Policy::load(path).map_err(|e| config(e.to_string()))?;
        tracing::info!(roles = policy.roles().count(), "access policy loaded");
        settings.access_policy = Arc::new(policy);
    } else {
        tracing::info!("no --access-policy: using the built-in default access policy");
    }
    let Some(path) = drug_catalogue else {
        tracing::warn!(
            "no --drug-catalogue: using the built-in SAMPLE drug catalogue (not clinical reference data)"
        );
        return Ok(settings);
    };
    let catalogue = carelog_medications::catalogue::DrugCatalogue::load(path)
        .map_err(|e| config(e.to_string()))?;
    tracing::info!(products = catalogue.len(), "drug catalogue loaded");
    settings.drug_catalogue = Arc::new(catalogue);
    Ok(settings)
}

/// The admin port of `/metrics`, when one is asked for.
async fn metrics_listener(
    addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<Option<TcpListener>> {
    match addr {
        None => Ok(None),
        Some(addr) => Ok(Some(TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} (--metrics-listen)")
        })?)),
    }
}

/// The separate plaintext health port, when one is asked for.
async fn health_listener(
    addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<Option<TcpListener>> {
    match addr {
        None => Ok(None),
        Some(addr) => {
            Ok(Some(TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} (--health-listen)")
            })?))
        }
    }
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up(args).await,
        Command::Serve(args) => serve(args).await,
        Command::Project(args) => project(args).await,
        Command::Rebuild(args) => rebuild(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::DevToken(args) => dev_token(args),
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Audit(args) => crate::audit_cli::run(args).await,
        Command::Gateway(args) => gateway(args).await,
    }
}

/// `carelog gateway`: the FHIR R4 API over the demographics, medications
/// and consultations services.
async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let public_url = args.public_url.as_deref().ok_or_else(|| {
        config("--public-url (CARELOG_GATEWAY_PUBLIC_URL) is required: the URL callers reach the FHIR API at, for the links in its answers")
    })?;
    if !public_url.starts_with("https://") && !public_url.starts_with("http://") {
        return Err(config(format!(
            "--public-url '{public_url}' is not a URL such as https://fhir.example.nhs.uk/fhir/r4"
        )));
    }
    let services = carelog_gateway::Services {
        demographics: service_channel(&args, "--demographics-url", &args.demographics_url)?,
        medications: service_channel(&args, "--medications-url", &args.medications_url)?,
        consultations: service_channel(&args, "--consultations-url", &args.consultations_url)?,
    };
    let https = |url: &str| url.starts_with("https://");
    if !https(&args.demographics_url)
        && !https(&args.medications_url)
        && !https(&args.consultations_url)
        && (args.api_ca.is_some() || args.api_cert.is_some())
    {
        return Err(config(
            "--api-ca and --api-cert are for https:// service URLs",
        ));
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let metrics = metrics_listener(args.metrics_listen).await?;
    let shutdown = CancellationToken::new();
    crate::shutdown::on_signal(shutdown.clone());
    if let Some(metrics) = metrics {
        tokio::spawn(crate::metrics::serve(metrics, shutdown.clone()));
    }
    let gateway = carelog_gateway::Gateway::new(services, public_url);
    tracing::info!(
        listen = %args.listen,
        demographics = %args.demographics_url,
        medications = %args.medications_url,
        consultations = %args.consultations_url,
        "FHIR gateway serving"
    );
    carelog_gateway::serve(listener, gateway, shutdown)
        .await
        .context("FHIR gateway")
}

/// A lazily connected channel to the service at `url` (its `flag`), over
/// TLS for an https:// URL.
fn service_channel(
    args: &GatewayArgs,
    flag: &str,
    url: &str,
) -> anyhow::Result<tonic::transport::Channel> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| {
            config(format!(
                "{flag} '{url}' is not a URL such as http://carelog-demographics:50051: {e}"
            ))
        })?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        endpoint = endpoint
            .tls_config(gateway_tls(args)?)
            .with_context(|| format!("{flag}: TLS"))?;
    }
    Ok(endpoint.connect_lazy())
}

/// TLS to the services: their CA, and a client certificate for mutual TLS.
fn gateway_tls(args: &GatewayArgs) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
    let read = |path: &Path, flag: &str| {
        std::fs::read(path).with_context(|| format!("cannot read {} ({flag})", path.display()))
    };
    let Some(ca) = &args.api_ca else {
        return Err(config(
            "an https:// service URL needs --api-ca (CARELOG_GATEWAY_API_CA), the CA the services' certificates chain to",
        ));
    };
    let mut tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
        tonic::transport::Certificate::from_pem(read(ca, "--api-ca")?),
    );
    if let (Some(cert), Some(key)) = (&args.api_cert, &args.api_key) {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            read(cert, "--api-cert")?,
            read(key, "--api-key")?,
        ));
    }
    Ok(tls)
}

pub(crate) fn store_options(c: &Connections) -> StoreOptions {
    StoreOptions {
        replicas: c.replicas,
        duplicate_window: c.duplicate_window,
        connect_wait: c.connect_timeout,
        ..Default::default()
    }
}

pub(crate) fn urls(c: &Connections) -> anyhow::Result<(String, String)> {
    let nats = c
        .nats_url
        .clone()
        .ok_or_else(|| config("--nats-url (NATS_URL) is required"))?;
    let db = c
        .database_url
        .clone()
        .ok_or_else(|| config("--database-url (DATABASE_URL) is required"))?;
    if !nats.starts_with("nats://") && !nats.starts_with("tls://") && !nats.contains(':') {
        return Err(config(format!(
            "--nats-url '{nats}' is not a NATS URL such as nats://host:4222"
        )));
    }
    if !db.starts_with("postgres://") && !db.starts_with("postgresql://") {
        return Err(config("--database-url must be a postgres:// URL"));
    }
    Ok((nats, db))
}

async fn authenticator(identity: &Identity) -> anyhow::Result<Arc<Authenticator>> {
    let issuer = identity
        .issuer
        .as_deref()
        .ok_or_else(|| config("--issuer (CARELOG_OIDC_ISSUER) is required"))?;
    if let Some(url) = &identity.jwks_url {
        let auth = Arc::new(
            Authenticator::from_jwks_url(url, issuer, &identity.audience)
                .await?
                .with_clock_skew(identity.clock_skew),
        );
        auth.refresh_from(
            url.clone(),
            identity.jwks_refresh,
            identity.jwks_refetch_interval,
        );
        return Ok(auth);
    }
    let path = identity.jwks_file.as_ref().ok_or_else(|| {
        config("--jwks-file (CARELOG_JWKS_FILE) or --jwks-url (CARELOG_JWKS_URL) is required: the OIDC issuer's key set")
    })?;
    Authenticator::from_jwks_file(path, issuer, &identity.audience)
        .map(|auth| Arc::new(auth.with_clock_skew(identity.clock_skew)))
        .map_err(|e| config(e.to_string()))
}

/// TLS on the API port when a certificate is given.
fn tls(args: &crate::cli::Tls) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    stack::server_tls(cert, key, args.tls_client_ca.as_deref())
        .map(Some)
        .map_err(|e| config(format!("{e:#}")))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (nats, db) = urls(&args.connections)?;
    let auth = authenticator(&args.identity).await?;
    let mut settings = settings(
        args.drug_catalogue.as_deref(),
        args.access_policy.as_deref(),
    )?;
    settings.break_glass_reviewer = args.break_glass_reviewer.clone();
    let store = stack::event_store(&nats, store_options(&args.connections)).await?;
    let pool = stack::database_within(
        &db,
        args.connections.db_pool,
        args.connections.connect_timeout,
    )
    .await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    settings.contexts = stack::CONTEXTS
        .into_iter()
        .filter(|c| *c == args.context)
        .collect();
    settings.health_listener = health_listener(args.health_listen).await?;
    settings.metrics_listener = metrics_listener(args.metrics_listen).await?;
    settings.tls = tls(&args.tls)?;
    let shutdown = CancellationToken::new();
    crate::shutdown::on_signal(shutdown.clone());
    let mut running = stack::start_with(
        store,
        pool,
        auth,
        Some(listener),
        Parts {
            api: true,
            projectors: false,
        },
        settings,
        shutdown,
    )
    .await?;
    tracing::info!(listen = %args.listen, context = %args.context, "serving");
    running.wait().await;
    running.stop(GRACE).await
}

async fn project(args: ProjectArgs) -> anyhow::Result<()> {
    let (nats, db) = urls(&args.connections)?;
    let store = stack::event_store(&nats, store_options(&args.connections)).await?;
    let pool = stack::database_within(
        &db,
        args.connections.db_pool,
        args.connections.connect_timeout,
    )
    .await?;
    let shutdown = CancellationToken::new();
    crate::shutdown::on_signal(shutdown.clone());
    if let Some((key, origin)) = crate::audit_cli::signing_key(&args.audit)? {
        let every = crate::audit_cli::SIGN_EVERY;
        tokio::spawn(crate::audit_cli::run_signer(
            pool.clone(),
            key,
            origin,
            every,
            shutdown.clone(),
        ));
    } else {
        tracing::warn!(
            "no --audit-signing-key (CARELOG_AUDIT_SIGNING_KEY): the audit log is projected \
             but no checkpoint is signed, so nothing proves it has not been altered since"
        );
    }
    let issuer = Arc::new(DevIssuer::ephemeral().authenticator()?);
    let settings = Settings {
        health_listener: health_listener(args.health_listen).await?,
        metrics_listener: metrics_listener(args.metrics_listen).await?,
        ..Settings::default()
    };
    let mut running = stack::start_with(
        store,
        pool,
        issuer,
        None,
        Parts {
            api: false,
            projectors: true,
        },
        settings,
        shutdown,
    )
    .await?;
    tracing::info!("projecting");
    running.wait().await;
    running.stop(GRACE).await
}

async fn migrate(args: ProjectArgs) -> anyhow::Result<()> {
    let (nats, db) = urls(&args.connections)?;
    stack::event_store(&nats, store_options(&args.connections)).await?;
    stack::database_within(&db, 2, args.connections.connect_timeout).await?;
    println!("streams and read-model migrations are in place");
    Ok(())
}

async fn rebuild(args: RebuildArgs) -> anyhow::Result<()> {
    let projection = carelog_projections::by_name(&args.projection).ok_or_else(|| {
        let names: Vec<_> = carelog_projections::all()
            .iter()
            .map(|p| p.name())
            .collect();
        config(format!(
            "unknown projection '{}'; projections: {}",
            args.projection,
            names.join(", ")
        ))
    })?;
    let (nats, db) = urls(&args.connections)?;
    let store = stack::event_store(&nats, store_options(&args.connections)).await?;
    let pool = stack::database_within(&db, 4, args.connections.connect_timeout).await?;
    let serving_metrics = CancellationToken::new();
    if let Some(listener) = metrics_listener(args.metrics_listen).await? {
        tokio::spawn(crate::metrics::serve(listener, serving_metrics.clone()));
    }
    let _stop_metrics = serving_metrics.drop_guard();
    crate::metrics::handle();
    let name = projection.name();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} rebuilding {msg} [{bar:40}] {pos}/{len} events, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(projection.name());
    let report = carelog_projections::rebuild::rebuild(
        &pool,
        &store,
        projection.as_ref(),
        &|done, total| {
            bar.set_length(total);
            bar.set_position(done);
            metrics::gauge!("carelog_rebuild_messages_done", "projection" => name).set(done as f64);
            metrics::gauge!("carelog_rebuild_messages_total", "projection" => name)
                .set(total as f64);
        },
    )
    .await?;
    bar.finish_and_clear();
    println!(
        "rebuilt {}: {} messages in {:.1}s ({:.0} events/s)",
        projection.name(),
        report.messages,
        report.elapsed.as_secs_f64(),
        report.per_second()
    );
    Ok(())
}

fn dev_token(args: DevTokenArgs) -> anyhow::Result<()> {
    carelog_kernel::OdsCode::parse(&args.org).map_err(|e| config(format!("--org {e}")))?;
    let issuer =
        DevIssuer::load(&args.data_dir.join("dev-issuer")).map_err(|e| config(e.to_string()))?;
    println!(
        "{}",
        issuer.token_in_teams(
            &args.user,
            &args.name,
            &args.org,
            &args.role,
            &args.teams,
            args.ttl
        )?
    );
    Ok(())
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    // Before anything is started: a signal during start-up then stops what
    // was started so far, rather than killing carelog and leaving its
    // nats-server and PostgreSQL running on the data directory.
    let shutdown = CancellationToken::new();
    crate::shutdown::on_signal(shutdown.clone());
    let mut settings = settings(
        args.drug_catalogue.as_deref(),
        args.access_policy.as_deref(),
    )?;
    settings.break_glass_reviewer = args.break_glass_reviewer.clone();
    settings.health_listener = health_listener(args.health_listen).await?;
    settings.metrics_listener = metrics_listener(args.metrics_listen).await?;
    settings.tls = tls(&args.tls)?;
    let data = &args.data_dir;
    std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    let data = data.canonicalize()?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // The gateway calls the API in plaintext; with TLS it is run apart.
    let gateway_listen = args
        .gateway_listen
        .0
        .filter(|_| args.tls.tls_cert.is_none());
    let gateway_listener = match gateway_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} (--gateway-listen; `off` runs no gateway)")
        })?),
        None => None,
    };
    let mut children = Children::default();
    let started = start_up(&args, &data, listener, settings, &shutdown, &mut children).await;
    let result = match started {
        Ok(Some((mut running, nats_url))) => {
            // The gateway stops before the API it calls, so that requests
            // in flight through it are answered.
            let gateway_stop = CancellationToken::new();
            let mut gateway = gateway_listener
                .map(|listener| {
                    let api =
                        tonic::transport::Endpoint::from_shared(format!("http://{}", args.listen))
                            .map(|e| e.tcp_nodelay(true).connect_lazy());
                    let public = format!("http://{}/fhir/r4", listener.local_addr()?);
                    let stop = gateway_stop.clone();
                    anyhow::Ok(tokio::spawn(async move {
                        let services = carelog_gateway::Services::together(api?);
                        let gateway = carelog_gateway::Gateway::new(services, &public);
                        carelog_gateway::serve(listener, gateway, stop).await?;
                        anyhow::Ok(())
                    }))
                })
                .transpose()?;
            if !shutdown.is_cancelled() {
                print_banner(
                    &args,
                    &data,
                    &nats_url,
                    children.nats.is_some(),
                    children.pg.is_some(),
                );
            }
            // A gateway that fails stops `up` with its error.
            let mut failed = None;
            match gateway.as_mut() {
                Some(task) => tokio::select! {
                    () = running.wait() => {}
                    ended = task => {
                        failed = Some(match ended {
                            Ok(Ok(())) => anyhow::anyhow!("the FHIR gateway stopped"),
                            Ok(Err(e)) => e.context("FHIR gateway"),
                            Err(e) => anyhow::Error::new(e).context("FHIR gateway"),
                        });
                        gateway = None;
                        shutdown.cancel();
                    }
                },
                None => running.wait().await,
            }
            if let Some(task) = gateway {
                gateway_stop.cancel();
                match tokio::time::timeout(carelog_gateway::DRAIN + GRACE, task).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(e))) => failed = Some(e.context("FHIR gateway")),
                    Ok(Err(e)) => failed = Some(anyhow::Error::new(e).context("FHIR gateway")),
                    Err(_) => tracing::warn!("the FHIR gateway did not stop in time"),
                }
            }
            let stopped = running.stop(GRACE).await;
            match failed {
                Some(e) => Err(e),
                None => stopped,
            }
        }
        Ok(None) => {
            tracing::info!("start-up interrupted by a signal");
            Ok(())
        }
        // Ctrl-C in a terminal reaches the child servers too: one that
        // stopped while starting is part of the interruption, not a fault.
        Err(e) if shutdown.is_cancelled() => {
            tracing::info!(error = %format!("{e:#}"), "start-up interrupted by a signal");
            Ok(())
        }
        Err(e) => Err(e),
    };
    let stopped = children.stop().await;
    let result = result.and(stopped);
    if result.is_ok() {
        println!("carelog stopped");
    }
    result
}

/// The servers `carelog up` started itself, stopped in reverse order.
#[derive(Default)]
struct Children {
    nats: Option<NatsServer>,
    pg: Option<Postgres>,
}

impl Children {
    async fn stop(self) -> anyhow::Result<()> {
        let pg = match self.pg {
            Some(pg) => pg.stop().await,
            None => Ok(()),
        };
        let nats = match self.nats {
            Some(nats) => nats.stop().await,
            None => Ok(()),
        };
        pg.and(nats)
    }
}

/// What `carelog up` was doing when one of its servers failed to start.
fn started_within(server: &str, timeout: Duration) -> String {
    format!("starting {server}, waiting up to {timeout:?} for it (--start-timeout)")
}

/// Starts `carelog up`'s servers (into `children`, for the caller to stop
/// whatever happens) and then carelog itself. `None` when a signal arrived
/// before it was running. A child server being started is left to finish
/// starting (bounded by --start-timeout) and is then stopped
/// cleanly, never killed half-started.
async fn start_up(
    args: &UpArgs,
    data: &Path,
    listener: TcpListener,
    mut settings: Settings,
    shutdown: &CancellationToken,
    children: &mut Children,
) -> anyhow::Result<Option<(stack::Running, String)>> {
    let nats_url = match &args.connections.nats_url {
        Some(url) => url.clone(),
        None => {
            let server = NatsServer::start_within(&data.join("nats"), None, args.start_timeout)
                .await
                .with_context(|| started_within("nats-server", args.start_timeout))?;
            let url = server.url.clone();
            children.nats = Some(server);
            url
        }
    };
    if shutdown.is_cancelled() {
        return Ok(None);
    }
    let db_url = match &args.connections.database_url {
        Some(url) => url.clone(),
        None => {
            let server = Postgres::start_within(&data.join("pg"), None, args.start_timeout)
                .await
                .with_context(|| started_within("PostgreSQL", args.start_timeout))?;
            let url = server.url.clone();
            children.pg = Some(server);
            url
        }
    };
    if shutdown.is_cancelled() {
        return Ok(None);
    }
    let issuer = DevIssuer::load_or_create(&data.join("dev-issuer"))?;
    let auth = Arc::new(issuer.authenticator()?);
    let store_options = store_options(&args.connections);
    let Some(store) = shutdown
        .run_until_cancelled(stack::event_store(&nats_url, store_options))
        .await
        .transpose()?
    else {
        return Ok(None);
    };
    let Some(pool) = shutdown
        .run_until_cancelled(stack::database_within(
            &db_url,
            args.connections.db_pool,
            args.connections.connect_timeout,
        ))
        .await
        .transpose()?
    else {
        return Ok(None);
    };
    let (key, origin) = crate::audit_cli::signing_key_or_dev(&args.audit, &data.join("audit"))?;
    settings.audit_signer = Some((key.clone(), origin.clone()));
    let every = crate::audit_cli::SIGN_EVERY;
    tokio::spawn(crate::audit_cli::run_signer(
        pool.clone(),
        key,
        origin,
        every,
        shutdown.clone(),
    ));
    // Started even when a signal arrives meanwhile: it sees the cancelled
    // token and is stopped through its own graceful path.
    let running = stack::start_with(
        store,
        pool,
        auth,
        Some(listener),
        Parts {
            api: true,
            projectors: !args.without_projectors,
        },
        settings,
        shutdown.clone(),
    )
    .await?;
    Ok(Some((running, nats_url)))
}

fn print_banner(args: &UpArgs, data: &Path, nats_url: &str, own_nats: bool, own_pg: bool) {
    let listen = args.listen;
    let nats_url = carelog_kernel::store::redacted_url(nats_url);
    // With TLS, grpcurl is given the API's certificate authority.
    let grpcurl = match (&args.tls.tls_cert, &args.tls.tls_client_ca) {
        (Some(cert), None) => format!("-cacert {}", cert.display()),
        (Some(cert), Some(_)) => format!(
            "-cacert {} -cert <your client certificate> -key <its key>",
            cert.display()
        ),
        (None, _) => "-plaintext".to_owned(),
    };
    let own = |yes: bool| if yes { " (started by carelog up)" } else { "" };
    let gateway = match (args.gateway_listen.0, &args.tls.tls_cert) {
        (Some(addr), None) => format!("http://{addr}/fhir/r4"),
        (Some(_), Some(_)) => "off: the API speaks TLS (run carelog gateway --public-url .. --api-ca .., and --api-cert/--api-key under mutual TLS)".to_owned(),
        (None, _) => "off".to_owned(),
    };
    let fhir_try = match (args.gateway_listen.0, &args.tls.tls_cert) {
        (Some(addr), None) => format!(
            "\n  curl -H \"Authorization: Bearer $TOKEN\" 'http://{addr}/fhir/r4/Patient?identifier=9434765919'"
        ),
        _ => String::new(),
    };
    println!(
        "carelog is up
  gRPC API      {listen}  (health, reflection v1 and v1alpha)
  FHIR R4       {gateway}
  NATS          {nats_url}{}
  PostgreSQL    {}{}
  data          {}
  token issuer  {DEV_ISSUER} (audience {DEV_AUDIENCE}), keys in {}

Get a token:
  TOKEN=$(carelog dev-token --data-dir {} --user dev-clinician --org A81001 --role R8000 --name 'Dr Dev')

Try it:
  grpcurl {grpcurl} {listen} list
  grpcurl {grpcurl} -H \"authorization: Bearer $TOKEN\" -d '{{\"details\":{{\"name\":{{\"family\":\"Smith\",\"given\":[\"Jane\"]}},\"birthDate\":{{\"year\":1950,\"month\":3,\"day\":14}},\"gender\":\"ADMINISTRATIVE_GENDER_FEMALE\",\"nhsNumber\":\"9434765919\"}}}}' {listen} carelog.demographics.v1.DemographicsService/RegisterPatient{fhir_try}

Ctrl-C stops everything.",
        own(own_nats),
        if own_pg { "embedded" } else { "DATABASE_URL" },
        own(own_pg),
        data.display(),
        data.join("dev-issuer").display(),
        data.display(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_access_policy_is_a_configuration_error_naming_the_problem() {
        let dir = std::env::temp_dir().join(format!("carelog-policy-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("policy.json");
        std::fs::write(
            &path,
            r#"{"roles": {"R8000": {"permissions": ["view_record", "teleport"]}}}"#,
        )
        .expect("write");
        let error = settings(None, Some(&path)).expect_err("malformed");
        let config = error.downcast_ref::<ConfigError>().expect("exit 64");
        assert!(config.0.contains("teleport"), "{}", config.0);
        let missing = settings(None, Some(&dir.join("absent.json"))).expect_err("absent");
        assert!(missing.downcast_ref::<ConfigError>().is_some());
        std::fs::write(
            &path,
            r#"{"roles": {"R8000": {"permissions": ["view_record"]}}}"#,
        )
        .expect("write");
        let loaded = settings(None, Some(&path)).expect("valid");
        assert!(
            !loaded
                .access_policy
                .grants("R8000", carelog_kernel::policy::Permission::Prescribe)
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
