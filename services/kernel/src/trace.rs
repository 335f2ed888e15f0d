//! W3C trace context across carelog's hops: the current span's context is
//! written as `traceparent` into a commit and its NATS headers, and read
//! back by the projectors, so one trace runs from the gRPC call through
//! JetStream into the projector's transaction. Spans carry surrogate ids
//! only (patient UUIDs, sequences), never names, NHS numbers or addresses.

use async_nats::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
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
