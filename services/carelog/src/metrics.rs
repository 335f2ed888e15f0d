//! Prometheus metrics on `/metrics`, on an admin port of its own
//! (`--metrics-listen`). Instrumented code uses the `metrics` facade; the
//! Prometheus recorder is installed once per process, on first use.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Latency buckets (seconds) of every histogram.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the events in one access message (ADR 0029).
const ACCESS_MESSAGE_EVENTS: [f64; 10] =
    [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The Prometheus recorder's handle, installing the recorder the first time.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = match builder.set_buckets(&BUCKETS).and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("carelog_access_message_events".into()),
                    &ACCESS_MESSAGE_EVENTS,
                )
            }) {
                Ok(b) => b,
                Err(_) => PrometheusBuilder::new(),
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed: /metrics stays empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "carelog_rpc_requests_total",
        "gRPC calls served, by service, method and status"
    );
    describe_histogram!(
        "carelog_rpc_duration_seconds",
        metrics::Unit::Seconds,
        "gRPC call latency, by service, method and status"
    );
    describe_counter!("carelog_commands_total", "Commands run, by context");
    describe_counter!(
        "carelog_appends_total",
        "Commits appended to JetStream, by context"
    );
    describe_counter!(
        "carelog_append_conflicts_total",
        "Appends refused because another writer was first (retried), by context"
    );
    describe_counter!(
        "carelog_duplicate_requests_total",
        "Commands answered from an earlier commit of the same request id, by context"
    );
    describe_counter!(
        "carelog_aggregate_cache_hits_total",
        "Aggregate loads served by the executor's cache, by context"
    );
    describe_counter!(
        "carelog_aggregate_cache_misses_total",
        "Aggregate loads read from JetStream, by context"
    );
    describe_counter!(
        "carelog_projector_messages_total",
        "Messages applied by projectors, by projection and stream"
    );
    describe_histogram!(
        "carelog_projector_batch_duration_seconds",
        metrics::Unit::Seconds,
        "Time to apply and commit one projector batch"
    );
    describe_gauge!(
        "carelog_projector_lag_messages",
        "Messages of the stream not yet applied by the projector"
    );
    describe_gauge!(
        "carelog_projector_lag_seconds",
        "Age of the last applied message while more are pending (0 when caught up)"
    );
    describe_gauge!(
        "carelog_projector_position",
        "Stream sequence of the projector's last applied message"
    );
    describe_gauge!(
        "carelog_projector_up",
        "1 while the projector runs, 0 when stopped or failed"
    );
    describe_gauge!(
        "carelog_rebuild_messages_done",
        "Messages replayed by the running rebuild"
    );
    describe_gauge!(
        "carelog_rebuild_messages_total",
        "Messages the running rebuild replays"
    );
    describe_gauge!(
        "carelog_dependency_up",
        "1 while the dependency (nats, postgresql) answers the readiness check"
    );
    describe_histogram!(
        "carelog_access_audit_batch_duration_seconds",
        metrics::Unit::Seconds,
        "Time to append one answer's access events to CARELOG_ACCESS and await their acks, by outcome (ok, failed)"
    );
    describe_counter!(
        "carelog_access_events_total",
        "Access events appended (or failed to append), by outcome"
    );
    describe_histogram!(
        "carelog_access_message_events",
        metrics::Unit::Count,
        "Access events per message of CARELOG_ACCESS: the reads that shared one write (ADR 0029)"
    );
    describe_gauge!(
        "carelog_db_pool_connections",
        "PostgreSQL pool connections, by state (idle, in_use)"
    );
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let handle = handle();
    let upkeep = {
        let (handle, token) = (handle.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tick.tick() => handle.run_upkeep(),
                }
            }
        })
    };
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, &handle)).await;
        });
    }
    upkeep.abort();
    Ok(())
}

/// One HTTP/1.1 exchange: `/metrics` or 404; the connection then closes.
async fn answer(
    mut stream: tokio::net::TcpStream,
    handle: &PrometheusHandle,
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", handle.render()),
        ("GET", _) => ("404 Not Found", "not found: try /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", "GET /metrics\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
