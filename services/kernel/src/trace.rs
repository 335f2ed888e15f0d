//! W3C trace context across carelog's hops: the current span's context is
//! written as `traceparent` into a commit and its NATS headers, and read
//! back by the projectors, so one trace runs from the gRPC call through
//! JetStream into the projector's transaction. Spans carry surrogate ids
//! only (patient UUIDs, sequences), never names, NHS numbers or addresses.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use async_nats::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The `messaging.system` of every NATS span ("nats" is not yet a
/// registered value; other NATS clients use it too).
pub const MESSAGING_SYSTEM: &str = "nats";

struct NatsHeaders<'a>(&'a mut HeaderMap);

impl Injector for NatsHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct NatsHeadersRef<'a>(&'a HeaderMap);

impl Extractor for NatsHeadersRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        // Only the W3C keys are ever asked for.
        ["traceparent", "tracestate"]
            .into_iter()
            .filter(|k| self.0.get(*k).is_some())
            .collect()
    }
}

struct One(Option<String>);

impl Injector for One {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

/// The `traceparent` of a span, when it belongs to a trace (an
/// OpenTelemetry layer is installed and the span is enabled).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut one = One(None);
    TraceContextPropagator::new().inject_context(&cx, &mut one);
    one.0
}

/// The current span's `traceparent`.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// Writes the span's context as `traceparent` (and `tracestate`) into NATS
/// headers, replacing what was there. Leaves them unchanged when the span
/// has no trace context.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut NatsHeaders(headers));
    }
}

/// The remote context carried by NATS headers (empty when none).
pub fn extract(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&NatsHeadersRef(headers))
}

/// The remote context of a `traceparent` value (empty when malformed).
pub fn extract_traceparent(traceparent: &str) -> Context {
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", traceparent);
    extract(&headers)
}

/// The trace id (32 hex digits) of a `traceparent`, when well formed.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let cx = extract_traceparent(traceparent);
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The remote context carried by HTTP (or gRPC) request headers.
pub fn extract_http(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HttpHeaders(headers))
}

struct HttpHeaders<'a>(&'a http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// `(service, method)` of a gRPC path `/package.Service/Method`.
pub fn service_and_method(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    match path.split_once('/') {
        Some((service, method)) if !service.is_empty() && !method.is_empty() => (service, method),
        _ => ("_OTHER", "_OTHER"),
    }
}

/// The gRPC status of an answer. A failed call is answered trailers only
/// (`grpc-status` in the headers); a successful one carries status 0 in its
/// trailers, which the layers do not wait for. A transport error is
/// `on_error`.
pub fn grpc_status_of<RB, E>(result: &Result<http::Response<RB>, E>, on_error: i32) -> i32 {
    match result {
        Ok(response) => response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(0),
        Err(_) => on_error,
    }
}

/// Adds a client span to every call made through the wrapped channel, and
/// injects its context as the request's `traceparent`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcClientLayer;

impl<S> tower_layer::Layer<S> for RpcClientLayer {
    type Service = RpcClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcClient { inner }
    }
}

/// A channel whose calls are traced (see [`RpcClientLayer`]).
#[derive(Debug, Clone)]
pub struct RpcClient<S> {
    inner: S,
}

/// A tonic channel with client spans.
pub fn traced(channel: tonic::transport::Channel) -> RpcClient<tonic::transport::Channel> {
    tower_layer::Layer::layer(&RpcClientLayer, channel)
}

struct HeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for RpcClient<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let (service, method) = service_and_method(request.uri().path());
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %format!("{service}/{method}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        TraceContextPropagator::new()
            .inject_context(&span.context(), &mut HeadersMut(request.headers_mut()));
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(async move {
            let result = future.instrument(span.clone()).await;
            let code = grpc_status_of(&result, 14);
            span.record("rpc.grpc.status_code", code);
            if code != 0 {
                span.record("otel.status_code", "ERROR");
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_through_nats_headers() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = extract_traceparent(tp);
        assert!(cx.span().span_context().is_remote());
        assert_eq!(
            trace_id_of(tp).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id_of("garbage"), None);
    }
}
