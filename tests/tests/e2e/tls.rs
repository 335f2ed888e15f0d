//! TLS and mutual TLS on the API port: with a certificate, a TLS client that
//! trusts the CA is served and a plaintext client is not; with a client CA,
//! a client without a certificate is refused and one with a certificate
//! signed by that CA is served. The health port stays plaintext.

use std::path::Path;

use carelog::stack::{self, Parts};
use carelog_proto::demographics::v1 as pb;
use carelog_proto::demographics::v1::demographics_service_client::DemographicsServiceClient;
use carelog_tests::harness::{TempDir, TestStack};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A CA, a server certificate for localhost / 127.0.0.1 and a client
/// certificate, as PEM files in `dir`.
struct Pki {
    ca: String,
    client_cert: String,
    client_key: String,
    stranger_cert: String,
    stranger_key: String,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(names).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, &**issuer).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write PEM");
    path
}

impl Pki {
    fn generate(dir: &Path, mutual: bool) -> (Self, tonic::transport::ServerTlsConfig) {
        let authority = ca("carelog test CA");
        let (server_cert, server_key) = leaf(
            &authority,
            vec!["localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            &authority,
            vec!["gp-system.example".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let other = ca("someone else's CA");
        let (stranger_cert, stranger_key) = leaf(
            &other,
            vec!["stranger.example".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let ca_path = write(dir, "ca.pem", &authority.pem());
        let tls = stack::server_tls(
            &write(dir, "server.pem", &server_cert),
            &write(dir, "server.key", &server_key),
            mutual.then_some(ca_path.as_path()),
        )
        .expect("server TLS");
        let pki = Self {
            ca: authority.pem(),
            client_cert,
            client_key,
            stranger_cert,
            stranger_key,
        };
        (pki, tls)
    }

    fn client_tls(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .domain_name("localhost")
    }
}

async fn tls_stack(mutual: bool) -> (TestStack, Pki, TempDir) {
    let dir = TempDir::new();
    let (pki, tls) = Pki::generate(&dir.0, mutual);
    let health = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let stack = TestStack::start_with(
        Parts {
            api: true,
            projectors: true,
        },
        stack::Settings {
            tls: Some(tls),
            health_listener: Some(health),
            ..Default::default()
        },
    )
    .await;
    (stack, pki, dir)
}

fn port(stack: &TestStack) -> u16 {
    stack
        .running
        .as_ref()
        .and_then(|r| r.api_addr)
        .expect("api address")
        .port()
}

/// A search over `channel` (an authenticated request).
async fn search(stack: &TestStack, channel: Channel) -> Result<(), tonic::Status> {
    DemographicsServiceClient::new(channel)
        .search_patients(stack.req(pb::SearchPatientsRequest {
            nhs_number: carelog_tests::harness::test_nhs_number(),
            ..Default::default()
        }))
        .await
        .map(|_| ())
}

async fn tls_channel(stack: &TestStack, tls: ClientTlsConfig) -> Result<Channel, String> {
    Channel::from_shared(format!("https://127.0.0.1:{}", port(stack)))
        .expect("endpoint")
        .tls_config(tls)
        .expect("client TLS")
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn plaintext_channel(stack: &TestStack) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{}", port(stack)))
        .expect("endpoint")
        .connect_lazy()
}

async fn health_is_plaintext(stack: &TestStack) {
    let addr = stack
        .running
        .as_ref()
        .and_then(|r| r.health_addr)
        .expect("health address");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_lazy();
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "liveness".into(),
        })
        .await
        .expect("the health port answers plaintext");
}

#[tokio::test]
async fn with_tls_a_client_trusting_the_ca_is_served_and_a_plaintext_client_is_not() {
    // Given carelog serving its API over TLS
    let (stack, pki, _dir) = tls_stack(false).await;

    // When a client that trusts the CA calls it, it is served
    let channel = tls_channel(&stack, pki.client_tls())
        .await
        .expect("TLS connection");
    search(&stack, channel).await.expect("served over TLS");

    // When a plaintext client calls it, the call fails
    let refused = search(&stack, plaintext_channel(&stack).await).await;
    assert!(refused.is_err(), "a plaintext client was served");

    // and the health port still answers in plaintext
    health_is_plaintext(&stack).await;
    stack.stop().await;
}

#[tokio::test]
async fn with_mutual_tls_only_a_client_with_a_certificate_from_the_ca_is_served() {
    // Given carelog requiring client certificates signed by its client CA
    let (stack, pki, _dir) = tls_stack(true).await;

    // When a client presents a certificate signed by that CA, it is served
    let channel = tls_channel(
        &stack,
        pki.client_tls()
            .identity(Identity::from_pem(&pki.client_cert, &pki.client_key)),
    )
    .await
    .expect("mTLS connection");
    search(&stack, channel).await.expect("served over mTLS");

    // When a client presents no certificate, it is refused
    let anonymous = match tls_channel(&stack, pki.client_tls()).await {
        Ok(channel) => search(&stack, channel).await.map_err(|s| format!("{s:?}")),
        Err(e) => Err(e),
    };
    assert!(
        anonymous.is_err(),
        "a client without a certificate was served"
    );

    // When a client presents a certificate of another CA, it is refused
    let stranger = match tls_channel(
        &stack,
        pki.client_tls()
            .identity(Identity::from_pem(&pki.stranger_cert, &pki.stranger_key)),
    )
    .await
    {
        Ok(channel) => search(&stack, channel).await.map_err(|s| format!("{s:?}")),
        Err(e) => Err(e),
    };
    assert!(
        stranger.is_err(),
        "a certificate of another CA was accepted"
    );

    // And a plaintext client is refused too, while health stays plaintext
    assert!(
        search(&stack, plaintext_channel(&stack).await)
            .await
            .is_err()
    );
    health_is_plaintext(&stack).await;
    stack.stop().await;
}

/// carelog's connections to PostgreSQL are encrypted, and the server is
/// verified, when the URL (or PGSSLMODE / PGSSLROOTCERT) asks for it, as the
/// production overlay does: patient data never crosses the network in clear.
#[tokio::test]
async fn connections_to_postgresql_are_encrypted_and_verified_when_asked() {
    let servers = carelog_tests::harness::Servers::start().await;
    let Some(pg) = servers.postgres.as_ref() else {
        // DATABASE_URL names a server this test cannot configure.
        return;
    };
    // Given PostgreSQL serving TLS with a certificate from the region's CA
    let authority = ca("carelog test CA");
    let (cert, key) = leaf(
        &authority,
        vec!["localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let ca_file = write(&servers.dir.0, "pg-ca.crt", &authority.pem());
    let stranger_ca = write(
        &servers.dir.0,
        "other-ca.crt",
        &ca("someone else's CA").pem(),
    );
    {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let owner = std::fs::metadata(&pg.data_dir).expect("data dir");
        for (name, text) in [("server.crt", &cert), ("server.key", &key)] {
            let path = write(&pg.data_dir, name, text);
            std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).expect("chown");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }
    for setting in [
        "ALTER SYSTEM SET ssl_cert_file = 'server.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'server.key'",
        "ALTER SYSTEM SET ssl = on",
        "SELECT pg_reload_conf()",
    ] {
        pg.psql("postgres", setting).await.expect(setting);
    }
    let url = |root: &Path| {
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            servers.database_url,
            root.display()
        )
    };

    // When carelog connects asking for a verified server
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let pool = loop {
        match stack::database(&url(&ca_file), 2).await {
            Ok(pool) => break pool,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "PostgreSQL not yet serving TLS");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no verified TLS connection: {e:#}"),
        }
    };

    // Then its connection is encrypted
    let (encrypted,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .expect("pg_stat_ssl");
    assert!(encrypted);
    pool.close().await;
    // and a server whose certificate another CA signed is refused
    let refused = stack::database(&url(&stranger_ca), 2).await;
    assert!(refused.is_err(), "a server the CA did not certify");
}

/// `carelog gateway` with these arguments, serving until the test ends.
async fn gateway(
    args: &[&str],
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let port = carelog::embedded::free_port().expect("free port");
    let listen = format!("127.0.0.1:{port}");
    let public = format!("http://{listen}/fhir/r4");
    let argv = [
        "carelog",
        "gateway",
        "--listen",
        &listen,
        "--public-url",
        &public,
    ]
    .into_iter()
    .chain(args.iter().copied());
    let cli = <carelog::cli::Cli as clap::Parser>::try_parse_from(argv).expect("gateway arguments");
    let running = tokio::spawn(carelog::commands::run(cli.command));
    let addr: std::net::SocketAddr = listen.parse().expect("address");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() || running.is_finished() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (addr, running)
}

#[tokio::test]
async fn the_fhir_gateway_reaches_a_mutual_tls_api_with_its_own_client_certificate() {
    // Given carelog requiring client certificates, and a gateway given the
    // CA and a client certificate signed by it
    let (stack, pki, dir) = tls_stack(true).await;
    let ca = write(&dir.0, "api-ca.pem", &pki.ca);
    let cert = write(&dir.0, "gateway.pem", &pki.client_cert);
    let key = write(&dir.0, "gateway.key", &pki.client_key);
    let url = format!("https://localhost:{}", port(&stack));
    let (ca, cert, key) = (
        ca.to_string_lossy().into_owned(),
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    let (addr, _running) = gateway(&[
        "--demographics-url",
        &url,
        "--medications-url",
        &url,
        "--consultations-url",
        &url,
        "--api-ca",
        &ca,
        "--api-cert",
        &cert,
        "--api-key",
        &key,
    ])
    .await;
    let token = format!("Bearer {}", stack.token("dr-jones", "A81001"));
    let nhs = carelog_tests::harness::test_nhs_number();
    let query = format!("/fhir/r4/Patient?identifier={nhs}");

    // When a clinician searches through it, the search is served
    let answer = carelog_tests::http::get(addr, &query, &[("Authorization", &token)]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["resourceType"], "Bundle");
    assert_eq!(
        carelog_tests::http::get(addr, "/readyz", &[]).await.status,
        200
    );

    // A gateway without a client certificate is refused by the API: its
    // caller is told the service is unavailable, and it is not ready
    let (addr, _running) = gateway(&[
        "--demographics-url",
        &url,
        "--medications-url",
        &url,
        "--consultations-url",
        &url,
        "--api-ca",
        &ca,
    ])
    .await;
    let answer = carelog_tests::http::get(addr, &query, &[("Authorization", &token)]).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(
        carelog_tests::http::get(addr, "/readyz", &[]).await.status,
        503
    );

    // And an https URL without a CA is a configuration error naming the flag
    let (_, running) = gateway(&["--demographics-url", &url]).await;
    let refused = running.await.expect("joined").expect_err("refused");
    assert!(format!("{refused:#}").contains("--api-ca"), "{refused:#}");
    stack.stop().await;
}
