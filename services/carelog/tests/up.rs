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
use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
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
    let fhir = format!(
        "127.0.0.1:{}",
        carelog::embedded::free_port().expect("free port")
    );
    let (collector, collector_addr) = start_collector().await;
    let mut up = Command::new(env!("CARGO_BIN_EXE_carelog"))
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--listen", &listen, "--gateway-listen", &fhir])
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

    // The same patient, found over FHIR through up's gateway.
    let mut http = tokio::net::TcpStream::connect(&fhir)
        .await
        .expect("connect to the FHIR gateway");
    let request = format!(
        "GET /fhir/r4/Patient?family:exact=Reflection&birthdate=1971-05-02 HTTP/1.1\r\nHost: {fhir}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    http.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    http.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"resourceType\":\"Bundle\""), "{answer}");
    assert!(answer.contains("\"family\":\"Reflection\""), "{answer}");

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
        ("GET /fhir/r4/Patient", 2),
        (
            "carelog.demographics.v1.DemographicsService/SearchPatients",
            3,
        ),
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

/// The command lines of the processes naming `dir`: the servers that
/// `carelog up` started under it (nats-server's config and the
/// postmaster's `-D` are there), and initdb while it runs.
fn processes_under(dir: &std::path::Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&dir) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

/// Waits up to `secs` for no process to name `dir`, and says which remain.
async fn nothing_left_under(dir: &std::path::Path, secs: u64) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let left = processes_under(dir);
        if left.is_empty() || tokio::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `carelog up` on `data`, its stdout and stderr read line by line.
fn start_up(
    data: &std::path::Path,
) -> (
    tokio::process::Child,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    start_up_with(data, &[], &[])
}

/// [`start_up`] with more arguments.
fn start_up_with(
    data: &std::path::Path,
    more: &[&str],
    env: &[(&str, &std::path::Path)],
) -> (
    tokio::process::Child,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let port = carelog::embedded::free_port().expect("free port");
    let mut up = Command::new(env!("CARGO_BIN_EXE_carelog"))
        .args(["up", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--gateway-listen", "off"])
        .args(more)
        .envs(env.iter().copied())
        .env_remove("CARELOG_START_TIMEOUT")
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .env_remove("CARELOG_METRICS_LISTEN")
        .env_remove("CARELOG_HEALTH_LISTEN")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("CARELOG_LOG_FORMAT")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start carelog up");
    let read = |pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let stdout = read(Box::new(up.stdout.take().expect("stdout")));
    let stderr = read(Box::new(up.stderr.take().expect("stderr")));
    (up, stdout, stderr)
}

async fn sigterm(up: &tokio::process::Child) {
    let pid = up.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
}

/// Waits until `path` exists: `carelog up` is then starting PostgreSQL,
/// its nats-server already running.
async fn wait_for(path: &std::path::Path) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while !path.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} did not appear within 60 s", path.display()));
}

/// Waits for a line holding `text` (up to 60 s), and returns every line read.
async fn wait_line(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, text: &str) -> String {
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.recv().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(text) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "no line with {text:?}: {seen}");
    seen
}

/// What the exited process wrote that was not read yet: every line until
/// its output closes (at most 10 s, so that a server that inherited the
/// output cannot hold the test).
async fn rest(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    let mut rest = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.recv().await {
            rest.push_str(&line);
            rest.push('\n');
        }
    })
    .await;
    rest
}

async fn exits(up: &mut tokio::process::Child) -> std::process::ExitStatus {
    tokio::time::timeout(Duration::from_secs(60), up.wait())
        .await
        .expect("exited within 60 s")
        .expect("wait")
}

/// A `carelog up` on `data` comes up, stops on SIGTERM and leaves nothing
/// running.
async fn the_next_up_comes_up_and_stops(data: &std::path::Path) {
    let (mut up, mut stdout, _stderr) = start_up(data);
    wait_line(&mut stdout, "carelog is up").await;
    sigterm(&up).await;
    let status = exits(&mut up).await;
    let said = rest(&mut stdout).await;
    assert!(status.success(), "exit {status}; {said}");
    assert!(said.contains("carelog stopped"), "{said}");
    let left = nothing_left_under(data, 10).await;
    assert!(left.is_empty(), "still running: {left:?}");
}

#[tokio::test]
async fn a_signal_during_start_up_stops_the_servers_carelog_up_started() {
    let dir = std::env::temp_dir().join(format!("carelog-up-signal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");

    // Given `carelog up` starting PostgreSQL, its nats-server already up,
    let (mut up, mut stdout, _stderr) = start_up(&data);
    wait_for(&data.join("pg")).await;
    // when it is sent SIGTERM
    sigterm(&up).await;
    let status = exits(&mut up).await;
    // it finishes starting what it was starting, stops it and exits cleanly,
    let said = rest(&mut stdout).await;
    assert!(status.success(), "exit {status}; {said}");
    assert!(said.contains("carelog stopped"), "{said}");
    assert!(!said.contains("carelog is up"), "{said}");
    // leaving no server running on its data directory
    let left = nothing_left_under(&data, 10).await;
    assert!(left.is_empty(), "still running: {left:?}");
    assert!(!data.join("pg/postmaster.pid").exists());

    // and the next `carelog up` on the same directory comes up and stops.
    the_next_up_comes_up_and_stops(&data).await;

    // A second signal exits at once, having passed a stop signal on to the
    // servers: none outlives carelog for long. (Should the start-up finish
    // between the two signals, carelog has stopped cleanly instead: the
    // servers are gone either way.)
    let data = dir.join("data-2");
    let (mut up, _stdout, mut stderr) = start_up(&data);
    wait_for(&data.join("pg")).await;
    sigterm(&up).await;
    wait_line(&mut stderr, "shutting down").await;
    sigterm(&up).await;
    let status = exits(&mut up).await;
    if !(status.code() == Some(130) || status.success()) {
        panic!("exit {status}; {}", rest(&mut stderr).await);
    }
    let left = nothing_left_under(&data, 30).await;
    assert!(left.is_empty(), "still running: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_carelog_up_killed_outright_leaves_no_server_behind_and_the_next_one_starts() {
    let dir = std::env::temp_dir().join(format!("carelog-up-killed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");

    // Given `carelog up` running with its own nats-server and PostgreSQL,
    let (mut up, mut stdout, _stderr) = start_up(&data);
    wait_line(&mut stdout, "carelog is up").await;
    assert!(!processes_under(&data).is_empty(), "its servers run");
    // when it is killed outright, with no chance to stop them (SIGKILL, or
    // the kernel out of memory),
    let pid = up.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
    exits(&mut up).await;
    // its servers stop too, PostgreSQL with a fast shutdown,
    let left = nothing_left_under(&data, 30).await;
    assert!(left.is_empty(), "still running: {left:?}");
    assert!(!data.join("pg/postmaster.pid").exists());

    // and the next `carelog up` on the same directory comes up and stops.
    the_next_up_comes_up_and_stops(&data).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_server_that_does_not_come_up_within_the_start_timeout_is_stopped_naming_the_setting() {
    let dir = std::env::temp_dir().join(format!("carelog-up-timeout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let data = dir.join("data");
    // A nats-server that starts but never takes a connection, as one
    // recovering a large store for a long while.
    let stuck = dir.join("stuck-nats-server");
    std::fs::write(
        &stuck,
        "#!/bin/sh\n\
         if [ \"$1\" = --version ]; then echo 'nats-server: v2.15.1'; exit 0; fi\n\
         while :; do sleep 1; done\n",
    )
    .expect("script");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&stuck, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    // Given `carelog up` told to wait 2 s for its servers
    let (mut up, _stdout, mut stderr) = start_up_with(
        &data,
        &["--start-timeout", "2s"],
        &[("CARELOG_NATS_SERVER", &stuck)],
    );
    let status = exits(&mut up).await;
    let said = rest(&mut stderr).await;

    // Then it fails, saying which server did not come up, how long it
    // waited and which setting gives it longer
    assert!(!status.success(), "exit {status}; {said}");
    assert!(
        said.contains("nats-server did not accept connections"),
        "{said}"
    );
    assert!(said.contains("waiting up to 2s"), "{said}");
    assert!(said.contains("--start-timeout"), "{said}");
    // and leaves nothing running on its data directory or of the server
    let left = nothing_left_under(&dir, 10).await;
    assert!(left.is_empty(), "still running: {left:?}");

    // And with a nats-server that comes up, the next `carelog up` does.
    the_next_up_comes_up_and_stops(&data).await;
    let _ = std::fs::remove_dir_all(&dir);
}
