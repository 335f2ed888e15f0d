//! Logging and traces: `tracing` with `RUST_LOG` filtering (default info),
//! JSON lines when `CARELOG_LOG_FORMAT=json`, and OpenTelemetry spans
//! exported by OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Surrogate ids only, never
//! patient data (docs/operations.md, "Telemetry").
//!
//! Spans are created and their context propagated (gRPC `traceparent` in,
//! NATS `traceparent` out, projectors) whether or not they are exported, so
//! the commits' `traceparent` always names the trace of the request.

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The guard of the tracer provider: `shutdown` flushes spans not yet
/// exported. Every command shuts it down before the process exits.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is still buffered and stops the exporter (bounded by
    /// the exporter's timeout).
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            // The OTLP exporter's batch thread may need the runtime's I/O:
            // never block a runtime worker on it.
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = done {
                eprintln!("carelog: flushing traces: {e}");
            }
        }
    }
}

/// Installs logging and tracing from the environment. Call once, inside
/// the Tokio runtime (the gRPC OTLP exporter needs it).
pub fn init() -> Telemetry {
    let (provider, exporting) = match provider_from_env() {
        Ok(found) => found,
        Err(e) => {
            eprintln!("carelog: OTLP trace export is off: {e}");
            (SdkTracerProvider::builder().build(), None)
        }
    };
    install(provider.clone());
    if let Some(protocol) = exporting {
        tracing::info!(protocol, "exporting traces by OTLP");
    }
    Telemetry {
        provider: Some(provider),
    }
}

/// Installs the global subscriber: the log layer (filtered by `RUST_LOG`)
/// and an OpenTelemetry layer on `provider` (carelog's own spans, from
/// info). Tests call it with a provider of their own (an in-memory
/// exporter). Does nothing if a subscriber is already installed.
pub fn install(provider: SdkTracerProvider) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn,sqlx=warn"));
    let json = std::env::var("CARELOG_LOG_FORMAT").is_ok_and(|f| f == "json");
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    };
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("carelog"))
        .with_filter(
            Targets::new()
                .with_target("carelog", Level::INFO)
                .with_target("carelog_kernel", Level::INFO)
                .with_target("carelog_projections", Level::INFO),
        );
    let result = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init();
    if result.is_err() {
        tracing::debug!("a tracing subscriber was already installed");
    }
}

/// The tracer provider the `OTEL_*` variables describe, and the OTLP
/// protocol when spans are exported. Without an endpoint nothing is
/// exported (spans still carry their context across hops).
fn provider_from_env() -> anyhow::Result<(SdkTracerProvider, Option<&'static str>)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let endpoint =
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
    // Sampler: OTEL_TRACES_SAMPLER / _ARG, read by the SDK's defaults.
    let builder = SdkTracerProvider::builder().with_resource(resource());
    let Some(_) = endpoint else {
        return Ok((builder.build(), None));
    };
    let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "grpc".into());
    // The endpoint, headers, timeout and compression are read from the
    // OTEL_EXPORTER_OTLP_* variables by the exporter builders.
    let (exporter, protocol) = match protocol.as_str() {
        "grpc" => (
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()?,
            "grpc",
        ),
        "http/protobuf" => (
            {
                // reqwest's rustls needs the process's one crypto provider
                // (ring); installing it twice is harmless.
                let _ = rustls::crypto::ring::default_provider().install_default();
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .build()?
            },
            "http/protobuf",
        ),
        other => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL '{other}' is not supported (grpc or http/protobuf)"
        ),
    };
    Ok((
        builder.with_batch_exporter(exporter).build(),
        Some(protocol),
    ))
}

/// `service.name` from `OTEL_SERVICE_NAME` (default `carelog`), attributes
/// from `OTEL_RESOURCE_ATTRIBUTES`, and `service.version`.
fn resource() -> Resource {
    let mut builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    if !named {
        builder = builder.with_service_name("carelog");
    }
    builder.build()
}
