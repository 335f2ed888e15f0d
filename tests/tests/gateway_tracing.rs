//! A FHIR read is one trace: the gateway's HTTP server span continues the
//! caller's `traceparent`, its gRPC client span is the HTTP span's child,
//! and the service's server span is the client span's child. (Its own test
//! binary: the OpenTelemetry layer must be the process's subscriber.)

use std::time::Duration;

use carelog_tests::harness::{TestStack, jane_smith};
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tokio_util::sync::CancellationToken;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn find<'a>(spans: &'a [SpanData], name: &str, kind: SpanKind) -> Option<&'a SpanData> {
    spans.iter().find(|s| s.name == name && s.span_kind == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fhir_read_is_one_trace_from_the_http_caller_into_the_service() {
    // Given carelog and its FHIR gateway with an in-memory span exporter
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    carelog::telemetry::install(provider.clone());
    let stack = TestStack::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let gateway = carelog_gateway::Gateway::new(
        carelog_gateway::Services::together(stack.channel.clone()),
        &format!("http://{addr}/fhir/r4"),
    );
    let stop = CancellationToken::new();
    tokio::spawn(carelog_gateway::serve(listener, gateway, stop.clone()));
    let jane = stack.register(jane_smith()).await;

    // When a caller inside a trace of its own reads her over FHIR
    let token = format!("Bearer {}", stack.token("dr-jones", "A81001"));
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let answer = carelog_tests::http::get(
        addr,
        &format!("/fhir/r4/Patient/{}", jane.patient_id),
        &[
            ("Authorization", &token),
            ("traceparent", &traceparent),
            ("x-carelog-min-sequence", &jane.stream_sequence.to_string()),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // Then the HTTP span joined the caller's trace, naming the route only
    let server_name = "carelog.demographics.v1.DemographicsService/GetPatient";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans = exporter.get_finished_spans().expect("spans");
        if find(&spans, "GET /fhir/r4/Patient/{id}", SpanKind::Server).is_some() {
            break spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no HTTP span was exported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let http = find(&spans, "GET /fhir/r4/Patient/{id}", SpanKind::Server).expect("HTTP span");
    assert_eq!(http.span_context.trace_id().to_string(), CALLER_TRACE);
    assert_eq!(http.parent_span_id.to_string(), CALLER_SPAN);
    assert!(
        http.attributes
            .iter()
            .all(|kv| !kv.value.as_str().contains(&jane.patient_id)),
        "the HTTP span records the patient's id: {:?}",
        http.attributes
    );

    // and the gRPC call is its child, and the service's span the call's
    let client = find(&spans, server_name, SpanKind::Client).expect("gRPC client span");
    assert_eq!(client.span_context.trace_id(), http.span_context.trace_id());
    assert_eq!(client.parent_span_id, http.span_context.span_id());
    let server = find(&spans, server_name, SpanKind::Server).expect("gRPC server span");
    assert_eq!(server.span_context.trace_id(), http.span_context.trace_id());
    assert_eq!(server.parent_span_id, client.span_context.span_id());
    stop.cancel();
}
