//! Operations: Prometheus `/metrics` on its own port, and readiness that
//! follows NATS and PostgreSQL (NOT_SERVING while one is down, SERVING
//! again after it returns) while liveness stays SERVING.

use std::sync::Arc;
use std::time::Duration;

use carelog::embedded::{NatsServer, Postgres};
use carelog::stack::{self, Parts, Settings};
use carelog_kernel::auth::DevIssuer;
use carelog_kernel::store::StoreOptions;
use carelog_proto::demographics::v1 as pb;
use carelog_tests::harness::{Servers, TestStack, jane_smith, new_phone};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// One plain HTTP/1.1 GET; returns (status line, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: carelog\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// carelog's API (and its projectors, when asked) with `--metrics-listen`,
/// and the address of `/metrics`.
async fn with_metrics(projectors: bool) -> (TestStack, std::net::SocketAddr) {
    let metrics = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stack = TestStack::start_with(
        Parts {
            api: true,
            projectors,
        },
        Settings {
            metrics_listener: Some(metrics),
            ..Settings::default()
        },
    )
    .await;
    let addr = stack
        .running
        .as_ref()
        .and_then(|r| r.metrics_addr)
        .expect("metrics address");
    (stack, addr)
}

#[tokio::test]
async fn metrics_count_rpcs_appends_and_projector_progress_on_the_admin_port() {
    // Given carelog with `--metrics-listen`
    let (stack, addr) = with_metrics(true).await;

    // When a patient is registered, read back, and a malformed id is asked for
    let patient = stack.register(jane_smith()).await;
    let read = stack
        .client()
        .get_patient(stack.req(pb::GetPatientRequest {
            patient_id: patient.patient_id.clone(),
            min_sequence: patient.stream_sequence,
        }))
        .await;
    assert!(read.is_ok(), "{read:?}");
    let bad = stack
        .client()
        .get_patient(stack.req(pb::GetPatientRequest {
            patient_id: "not-a-uuid".into(),
            ..Default::default()
        }))
        .await
        .expect_err("a malformed id");
    assert_eq!(bad.code(), Code::InvalidArgument);

    // Then /metrics answers, once the projectors have applied the commit and
    // the dependency checks have run, with every family the operations
    // guide names
    let service = "carelog.demographics.v1.DemographicsService";
    let expected = [
        format!(
            "carelog_rpc_requests_total{{rpc_service=\"{service}\",rpc_method=\"RegisterPatient\",grpc_status=\"OK\"}} 1"
        ),
        format!(
            "carelog_rpc_requests_total{{rpc_service=\"{service}\",rpc_method=\"GetPatient\",grpc_status=\"INVALID_ARGUMENT\"}} 1"
        ),
        format!(
            "carelog_rpc_duration_seconds_bucket{{rpc_service=\"{service}\",rpc_method=\"RegisterPatient\",grpc_status=\"OK\",le=\"+Inf\"}} 1"
        ),
        "carelog_commands_total{context=\"demographics\"} 1".to_owned(),
        "carelog_appends_total{context=\"demographics\"} 1".to_owned(),
        "carelog_projector_messages_total{projection=\"patients\",stream=\"CARELOG_DEMOGRAPHICS\"}"
            .to_owned(),
        "carelog_projector_lag_messages{projection=\"patients\",stream=\"CARELOG_DEMOGRAPHICS\"}"
            .to_owned(),
        "carelog_projector_lag_seconds{projection=\"patients\",stream=\"CARELOG_DEMOGRAPHICS\"}"
            .to_owned(),
        "carelog_projector_batch_duration_seconds_bucket".to_owned(),
        "carelog_projector_up{projector=\"patients/CARELOG_DEMOGRAPHICS\"} 1".to_owned(),
        "carelog_dependency_up{dependency=\"nats\"} 1".to_owned(),
        "carelog_dependency_up{dependency=\"postgresql\"} 1".to_owned(),
        "# TYPE carelog_rpc_duration_seconds histogram".to_owned(),
        "carelog_access_audit_batch_duration_seconds_bucket{outcome=\"ok\",le=\"+Inf\"}".to_owned(),
        "carelog_access_events_total{outcome=\"ok\"}".to_owned(),
        "carelog_access_message_events_bucket".to_owned(),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        let missing: Vec<&String> = expected
            .iter()
            .filter(|e| !body.contains(e.as_str()))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing {missing:?} in:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // and nothing else is served there
    let (status, _) = get(addr, "/").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    stack.stop().await;
}

/// The value of the sample `series` (its name and labels) in
/// a Prometheus exposition, 0 when absent.
fn sample(body: &str, series: &str) -> u64 {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// ADR 0032: an update of a record the server holds is admitted on that
/// record. The executor then looks the record up once per update; before,
/// the admission looked it up a second time, checked by a Direct Get of
/// the patient's last commit.
#[tokio::test]
async fn an_update_of_a_record_the_server_holds_looks_it_up_once() {
    // Given Jane registered, so the server holds her record,
    let (stack, addr) = with_metrics(false).await;
    let jane = stack.register(jane_smith()).await;
    let hits = "carelog_aggregate_cache_hits_total{context=\"demographics\"}";
    let misses = "carelog_aggregate_cache_misses_total{context=\"demographics\"}";
    let (_, before) = get(addr, "/metrics").await;

    // when her telephone number is changed three times,
    for i in 1..=3 {
        let phone = new_phone(&jane.patient_id, &format!("0113 496 000{i}"));
        stack
            .client()
            .update_demographics(stack.req(phone))
            .await
            .expect("updated");
    }

    // then each update found her record held once, and none read it again.
    let (_, after) = get(addr, "/metrics").await;
    assert_eq!(sample(&after, hits) - sample(&before, hits), 3, "{after}");
    assert_eq!(sample(&after, misses), sample(&before, misses), "{after}");
    stack.stop().await;
}

async fn readiness(health: &mut HealthClient<tonic::transport::Channel>, service: &str) -> i32 {
    health
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("the health port answers")
        .into_inner()
        .status
}

/// Polls `service` until it reports `wanted` (a generous deadline guards a
/// broken build, not a timing claim).
async fn until(
    health: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
    wanted: ServingStatus,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while readiness(health, service).await != wanted as i32 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{service} never became {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readiness_fails_while_nats_or_postgresql_is_down_and_recovers_when_it_returns() {
    // Given carelog (API and projectors) with a health port, on servers the
    // test controls
    let Servers {
        nats,
        postgres,
        database_url,
        dir,
    } = Servers::start().await;
    let store = stack::event_store(&nats.url, StoreOptions::default())
        .await
        .expect("event store");
    let pool = stack::database(&database_url, 10).await.expect("database");
    let issuer = DevIssuer::load_or_create(&dir.0.join("issuer")).expect("issuer");
    let health_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let health_addr = health_listener.local_addr().expect("addr");
    let api = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let running = stack::start_with(
        store,
        pool,
        Arc::new(issuer.authenticator().expect("authenticator")),
        Some(api),
        Parts {
            api: true,
            projectors: true,
        },
        Settings {
            health_listener: Some(health_listener),
            ..Settings::default()
        },
        CancellationToken::new(),
    )
    .await
    .expect("start carelog");
    let channel = tonic::transport::Channel::from_shared(format!("http://{health_addr}"))
        .expect("endpoint")
        .connect_lazy();
    let mut health = HealthClient::new(channel);
    until(&mut health, "readiness", ServingStatus::Serving).await;

    // When NATS stops
    let port = nats.port;
    nats.stop().await.expect("stop nats-server");

    // Then readiness fails and liveness stays up
    until(&mut health, "readiness", ServingStatus::NotServing).await;
    assert_eq!(
        readiness(&mut health, "liveness").await,
        ServingStatus::Serving as i32
    );

    // When NATS returns on the same port and store
    let nats = NatsServer::start(&dir.0.join("nats"), Some(port))
        .await
        .expect("restart nats-server");

    // Then readiness recovers
    until(&mut health, "readiness", ServingStatus::Serving).await;
    assert_eq!(
        readiness(&mut health, "liveness").await,
        ServingStatus::Serving as i32
    );

    // When PostgreSQL stops (when the test runs its own)
    let postgres = match postgres {
        Some(pg) => {
            let (data_dir, port) = (pg.data_dir.clone(), pg.port);
            pg.stop().await.expect("stop PostgreSQL");

            // Then readiness fails, liveness stays up
            until(&mut health, "readiness", ServingStatus::NotServing).await;
            assert_eq!(
                readiness(&mut health, "liveness").await,
                ServingStatus::Serving as i32
            );

            // and recovers when PostgreSQL returns
            let pg = Postgres::start(&data_dir, Some(port))
                .await
                .expect("restart PostgreSQL");
            until(&mut health, "readiness", ServingStatus::Serving).await;
            Some(pg)
        }
        None => None,
    };

    running
        .stop(Duration::from_secs(10))
        .await
        .expect("clean stop");
    nats.stop().await.expect("stop nats-server");
    if let Some(pg) = postgres {
        pg.stop().await.expect("stop PostgreSQL");
    }
}
