//! `carelog up` as a newcomer runs it: it starts its own nats-server and
//! PostgreSQL, serves a registration to a client that knows only the
//! server's reflection, and shuts everything down cleanly on SIGTERM. Its
//! spans reach an OpenTelemetry collector over OTLP/gRPC, configured only by
//! the standard `OTEL_*` variables, and are flushed before it exits.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// An OTLP/gRPC trace receiver, as a collector runs it: it keeps every
/// export it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::codegen::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .lock()
            .expect("collector lock")
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// (service.name, span name, span kind) of every span received.
    fn spans(&self) -> Vec<(String, String, i32)> {
        let exports = self.0.lock().expect("collector lock");
        let mut all = Vec::new();
        for export in exports.iter() {
            for resource in &export.resource_spans {
                let service = resource
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                    .map(|v| match v {
                        Value::StringValue(s) => s.clone(),
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_default();
                for scope in &resource.scope_spans {
                    for span in &scope.spans {
                        all.push((service.clone(), span.name.clone(), span.kind));
                    }
                }
            }
        }
        all
    }
}

async fn start_collector() -> (Collector, std::net::SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind collector");
    let addr = listener.local_addr().expect("collector address");
    let collector = Collector::default();
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    (collector, addr)
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test]
async fn carelog_up_serves_a_reflection_only_client_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("carelog-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    let port = carelog::embedded::free_port().expect("free port");
    let listen = format!("127.0.0.1:{port}");
    let (collector, collector_addr) = start_collector().await;
    let mut up = Command::new(env!("CARGO_BIN_EXE_carelog"))
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--listen", &listen])
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_SERVICE_NAME", "carelog-up-test")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .env_remove("OTEL_TRACES_SAMPLER")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start carelog up");
    let mut lines = BufReader::new(up.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if line.starts_with("carelog is up") {
                return true;
            }
        }
        false
    })
    .await
    .expect("carelog up did not come up within 90 s");
    assert!(ready, "carelog up exited before it was up");

    let token = Command::new(env!("CARGO_BIN_EXE_carelog"))
        .args([
            "dev-token",
            "--user",
            "newcomer",
            "--org",
            "A81001",
            "--role",
            "R8000",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .await
        .expect("dev-token");
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();

    let python = std::env::var_os("CARELOG_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".tools/venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/install-deps",
        python.display()
    );
    let client = Command::new(&python)
        .arg(workspace().join("tests/reflection/register_and_find.py"))
        .arg(&listen)
        .arg(&token)
        .output()
        .await
        .expect("run the reflection client");
    let said = String::from_utf8_lossy(&client.stdout).into_owned();
    assert!(
        client.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert!(said.contains("found patient"), "{said}");

    let pid = up.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(60), up.wait())
        .await
        .expect("stopped within 60 s")
        .expect("wait");
    let mut rest = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    assert!(status.success(), "exit {status}; {rest}");
    assert!(rest.contains("carelog stopped"), "{rest}");
    // PostgreSQL shut down cleanly: no postmaster.pid left behind.
    assert!(!data.join("pg/postmaster.pid").exists());

    // and the collector received the registration's server span (kind 2),
    // the append's publish span (kind 4) and the projector's span (kind 5),
    // all under the service name from OTEL_SERVICE_NAME, flushed before
    // carelog exited
    let spans = collector.spans();
    for (name, kind) in [
        (
            "carelog.demographics.v1.DemographicsService/RegisterPatient",
            2,
        ),
        ("publish carelog.demographics", 4),
        ("process CARELOG_DEMOGRAPHICS", 5),
    ] {
        assert!(
            spans
                .iter()
                .any(|(service, n, k)| service == "carelog-up-test" && n == name && *k == kind),
            "no {name} span (kind {kind}) reached the collector: {spans:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
