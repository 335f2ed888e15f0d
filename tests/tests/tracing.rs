//! One registration is one trace: the gRPC server span, the publish span of
//! the append and the projector's span and transaction share one trace id,
//! and the projector's parent comes from the `traceparent` that travelled in
//! the NATS header. An in-process exporter collects the spans. (Its own test
//! binary: the OpenTelemetry layer must be the process's subscriber.)

use std::time::Duration;

use tracing::Instrument as _;

use carelog_kernel::envelope::StoredCommit;
use carelog_proto::demographics::v1 as pb;
use carelog_tests::harness::{DEMOGRAPHICS, TestStack, jane_smith};
use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry::{Key, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

/// The caller's own trace: the server span must join it.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == Key::from(key.to_owned()))
        .map(|kv| &kv.value)
}

fn attr_str(span: &SpanData, key: &str) -> String {
    attr(span, key)
        .map(|v| v.as_str().into_owned())
        .unwrap_or_default()
}

fn find<'a>(spans: &'a [SpanData], name: &str, projection: Option<&str>) -> Option<&'a SpanData> {
    spans.iter().find(|s| {
        s.name == name && projection.is_none_or(|p| attr_str(s, "carelog.projection") == p)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_registration_is_one_trace_from_grpc_through_the_nats_header_into_the_projector() {
    // Given carelog with an in-memory span exporter
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    carelog::telemetry::install(provider.clone());
    let stack = TestStack::start().await;

    // When a caller inside a trace of its own registers a patient
    let details = jane_smith();
    let nhs_number = details.nhs_number.clone();
    let mut request = stack.req(pb::RegisterPatientRequest {
        details: Some(details),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
            .parse()
            .expect("metadata"),
    );
    let patient = stack
        .client()
        .register_patient(request)
        .await
        .expect("register")
        .into_inner();

    // and the patients projector has committed it
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans = exporter.get_finished_spans().expect("spans");
        if find(&spans, "process CARELOG_DEMOGRAPHICS", Some("patients")).is_some() {
            break spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no projector span was exported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Then the server span joined the caller's trace
    let server = find(
        &spans,
        "carelog.demographics.v1.DemographicsService/RegisterPatient",
        None,
    )
    .expect("the gRPC server span");
    let trace_id = server.span_context.trace_id();
    assert_eq!(trace_id, TraceId::from_hex(CALLER_TRACE).expect("hex"));
    assert_eq!(server.parent_span_id.to_string(), CALLER_SPAN);
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(attr_str(server, "rpc.system"), "grpc");
    assert_eq!(
        attr_str(server, "rpc.service"),
        "carelog.demographics.v1.DemographicsService"
    );
    assert_eq!(attr_str(server, "rpc.method"), "RegisterPatient");
    assert_eq!(attr(server, "rpc.grpc.status_code"), Some(&Value::I64(0)));

    // and the publish span is its child, naming the patient's subject
    let subject = TestStack::demographics_stream().subject(&patient.patient_id);
    let publish = find(&spans, "publish carelog.demographics", None).expect("publish span");
    assert_eq!(publish.span_kind, SpanKind::Producer);
    assert_eq!(publish.span_context.trace_id(), trace_id);
    assert_eq!(publish.parent_span_id, server.span_context.span_id());
    assert_eq!(attr_str(publish, "messaging.system"), "nats");
    assert_eq!(attr_str(publish, "messaging.destination.name"), subject);

    // and the NATS header carries the publish span's context
    let message = stack
        .store
        .last_on_subject(DEMOGRAPHICS, &subject)
        .await
        .expect("direct get")
        .expect("the patient's commit");
    let header = message.header("traceparent").expect("traceparent header");
    assert_eq!(
        carelog_kernel::trace::trace_id_of(header),
        Some(trace_id.to_string()),
        "the header's trace id is the gRPC span's"
    );
    assert!(header.contains(&publish.span_context.span_id().to_string()));
    assert_eq!(
        attr(publish, "messaging.nats.sequence"),
        Some(&Value::I64(message.stream_sequence as i64))
    );
    // (the commit itself records the server span's context)
    let commit = StoredCommit::decode(&message).expect("commit");
    assert!(
        commit
            .commit
            .traceparent
            .contains(&server.span_context.span_id().to_string())
    );

    // and the projector's span is parented on the header's context, with its
    // PostgreSQL transaction inside
    let process =
        find(&spans, "process CARELOG_DEMOGRAPHICS", Some("patients")).expect("process span");
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_eq!(process.span_context.trace_id(), trace_id);
    assert_eq!(process.parent_span_id, publish.span_context.span_id());
    assert!(process.parent_span_is_remote);
    assert_eq!(attr_str(process, "messaging.system"), "nats");
    let transaction = spans
        .iter()
        .find(|s| {
            s.name == "projector transaction" && s.parent_span_id == process.span_context.span_id()
        })
        .expect("the projector's transaction span");
    assert_eq!(transaction.span_context.trace_id(), trace_id);

    // and no span names the patient
    for span in &spans {
        for kv in &span.attributes {
            let value = kv.value.as_str();
            for private in [nhs_number.as_str(), "Smith", "Jane", "LS1 5AB", "Park Row"] {
                assert!(
                    !value.contains(private),
                    "span {} attribute {} holds patient data",
                    span.name,
                    kv.key
                );
            }
        }
    }

    // When an application reads the patient through carelog's traced client
    // channel, inside a span of its own
    let read = {
        let mut traced = pb::demographics_service_client::DemographicsServiceClient::new(
            carelog_kernel::trace::traced(stack.channel.clone()),
        );
        let request = stack.req(pb::GetPatientRequest {
            patient_id: patient.patient_id.clone(),
            min_sequence: patient.stream_sequence,
        });
        traced
            .get_patient(request)
            // (under a target the exporter keeps: carelog's own)
            .instrument(tracing::info_span!(
                target: "carelog",
                "clinician looks up the patient"
            ))
            .await
    };
    assert!(read.is_ok(), "{read:?}");

    // Then a client span joins the application's trace and the server span
    // is its child, through the traceparent the client sent
    let get = "carelog.demographics.v1.DemographicsService/GetPatient";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans = exporter.get_finished_spans().expect("spans");
        let done = spans
            .iter()
            .filter(|s| s.name == get)
            .map(|s| s.span_kind.clone())
            .collect::<Vec<_>>();
        if done.contains(&SpanKind::Client) && done.contains(&SpanKind::Server) {
            break spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no client and server span pair for GetPatient"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let application = find(&spans, "clinician looks up the patient", None).expect("app span");
    let client = spans
        .iter()
        .find(|s| s.name == get && s.span_kind == SpanKind::Client)
        .expect("the client span");
    let server = spans
        .iter()
        .find(|s| s.name == get && s.span_kind == SpanKind::Server)
        .expect("the server span");
    assert_eq!(client.parent_span_id, application.span_context.span_id());
    assert_eq!(attr_str(client, "rpc.system"), "grpc");
    assert_eq!(attr_str(client, "rpc.method"), "GetPatient");
    assert_eq!(attr(client, "rpc.grpc.status_code"), Some(&Value::I64(0)));
    assert_eq!(
        server.span_context.trace_id(),
        client.span_context.trace_id()
    );
    assert_eq!(server.parent_span_id, client.span_context.span_id());
    assert!(server.parent_span_is_remote);

    stack.stop().await;
    let _ = provider.shutdown();
}
