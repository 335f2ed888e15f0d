//! The RPC server span and metrics: a tower layer on the tonic server.
//! Every call gets a `SERVER` span named `{service}/{method}` with the
//! (legacy, widely supported) OpenTelemetry RPC attributes `rpc.system`,
//! `rpc.service`, `rpc.method` and `rpc.grpc.status_code`, parented on the
//! caller's W3C `traceparent`; and is counted and timed by method and
//! status in `carelog_rpc_requests_total` and
//! `carelog_rpc_duration_seconds`. No request or response metadata is
//! recorded.
//!
//! The client side, `carelog_kernel::trace::RpcClientLayer`, gives a
//! caller (the FHIR gateway) a `CLIENT` span per call whose context
//! travels in the request's `traceparent` header.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use carelog_kernel::access::AccessSink;
use carelog_kernel::guard::{RoleRefusal, record_role_refusal};
use carelog_kernel::trace::grpc_status_of;
pub use carelog_kernel::trace::service_and_method;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::trace::TraceContextExt as _;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Adds the span and metrics to every call of the wrapped service, and
/// records the calls the role check refused on the access log (the
/// interceptor that refuses them cannot wait for a write).
#[derive(Debug, Clone)]
pub struct RpcLayer {
    access_log: Arc<dyn AccessSink>,
}

impl RpcLayer {
    pub fn new(access_log: Arc<dyn AccessSink>) -> Self {
        Self { access_log }
    }
}

impl<S> tower_layer::Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            access_log: self.access_log.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
    access_log: Arc<dyn AccessSink>,
}

/// gRPC services whose names label metrics as they are; any other path is
/// `_OTHER`, so a caller cannot add label values at will.
const KNOWN_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

fn known(service: &str) -> bool {
    crate::stack::SERVICES.contains(&service) || KNOWN_SERVICES.contains(&service)
}

/// The name of a gRPC status code (as in the OpenTelemetry conventions).
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// Codes that are a server error (the conventions' list for servers).
fn server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for RpcService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let rpc = request.uri().path().to_owned();
        let path = carelog_kernel::policy::RpcPath(rpc.clone());
        request.extensions_mut().insert(path);
        let refusal = RoleRefusal::default();
        request.extensions_mut().insert(refusal.clone());
        let access_log = self.access_log.clone();
        let (service, method) = service_and_method(request.uri().path());
        let (service, method) = if known(service) {
            (service.to_owned(), method.to_owned())
        } else {
            ("_OTHER".to_owned(), "_OTHER".to_owned())
        };
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %format!("{service}/{method}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let parent = carelog_kernel::trace::extract_http(request.headers());
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
        let started = Instant::now();
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(async move {
            let result = future.instrument(span.clone()).await;
            if let Some(actor) = refusal.take() {
                record_role_refusal(&*access_log, actor, &rpc).await;
            }
            let code = grpc_status_of(&result, 2);
            span.record("rpc.grpc.status_code", code);
            if server_error(code) {
                span.record("otel.status_code", "ERROR");
            }
            // An unknown method of a known service is `_OTHER` too.
            let method = if code == 12 {
                "_OTHER".to_owned()
            } else {
                method
            };
            let labels = [
                ("rpc_service", service),
                ("rpc_method", method),
                ("grpc_status", code_name(code).to_owned()),
            ];
            metrics::counter!("carelog_rpc_requests_total", &labels).increment(1);
            metrics::histogram!("carelog_rpc_duration_seconds", &labels)
                .record(started.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            service_and_method("/carelog.tasks.v1.TasksService/GetTask"),
            ("carelog.tasks.v1.TasksService", "GetTask")
        );
        assert_eq!(service_and_method("/nonsense"), ("_OTHER", "_OTHER"));
        assert_eq!(code_name(5), "NOT_FOUND");
    }
}
