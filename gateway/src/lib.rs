//! carelog-gateway: the HTTP edge. FHIR R4 (JSON) over carelog's gRPC
//! services, for integrations that speak FHIR rather than gRPC (ADR 0035).
//!
//! The gateway holds no state and decides nothing about access: every
//! request becomes one gRPC call with the caller's own bearer token (and
//! break-glass, on-behalf-of and correlation headers), so the service
//! authenticates, applies the access policy and audits the read or the
//! write exactly as for a gRPC caller. Its answer is mapped to FHIR (one
//! module per resource; `outcome` for errors), strictly: what cannot be
//! asked or shown faithfully is refused, never dropped. The HTTP request's
//! span continues the caller's `traceparent`, and the gRPC call carries it
//! on to the service.

pub mod allergy;
pub mod capability;
pub mod condition;
pub mod encounter;
pub mod medication;
pub mod outcome;
pub mod patient;
pub mod register;
pub mod search;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use carelog_kernel::actor::{
    BREAK_GLASS_HEADER, CORRELATION_ID_HEADER, ON_BEHALF_OF_HEADER, TRACEPARENT_HEADER,
};
use carelog_kernel::trace::{RpcClient, traced};
use carelog_proto::consultations::v1::consultations_service_client::ConsultationsServiceClient;
use carelog_proto::demographics::v1 as pb;
use carelog_proto::demographics::v1::demographics_service_client::DemographicsServiceClient;
use carelog_proto::medications::v1::medications_service_client::MedicationsServiceClient;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

pub use outcome::Outcome;

/// Where the FHIR R4 API lives on the gateway.
pub const FHIR_BASE: &str = "/fhir/r4";
/// The media type of every FHIR answer.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
/// `_format` values meaning FHIR JSON.
pub const JSON_FORMATS: [&str; 4] = [
    "json",
    "application/json",
    "application/fhir+json",
    "application/json+fhir",
];
/// A request header asking the read model to have applied this stream
/// sequence first (read-your-writes after a gRPC command, whose answer
/// carries the sequence): the gRPC queries' `min_sequence`.
pub const MIN_SEQUENCE_HEADER: &str = "x-carelog-min-sequence";
/// How long a call to a service may take when the caller sets no deadline.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the gateway reaches each service it calls.
#[derive(Debug, Clone)]
pub struct Services {
    pub demographics: Channel,
    pub medications: Channel,
    pub consultations: Channel,
}

impl Services {
    /// Every service behind one address (as `carelog up` serves them).
    pub fn together(channel: Channel) -> Self {
        Self {
            demographics: channel.clone(),
            medications: channel.clone(),
            consultations: channel,
        }
    }
}

/// The services whose health `/readyz` asks, with the name each is asked by.
const HEALTH: [&str; 3] = [
    "carelog.demographics.v1.DemographicsService",
    "carelog.medications.v1.MedicationsService",
    "carelog.consultations.v1.ConsultationsService",
];

/// The gateway's connections to the services.
#[derive(Clone)]
pub struct Gateway {
    demographics: DemographicsServiceClient<RpcClient<Channel>>,
    medications: MedicationsServiceClient<RpcClient<Channel>>,
    consultations: ConsultationsServiceClient<RpcClient<Channel>>,
    health: [HealthClient<RpcClient<Channel>>; 3],
    /// The base URL callers reach the FHIR API at (links and `fullUrl`s),
    /// e.g. `https://fhir.example.nhs.uk/fhir/r4`. Never taken from a
    /// request's `Host`, which a caller chooses.
    public_url: String,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway calling `services`, reached by its callers at `public_url`.
    pub fn new(services: Services, public_url: &str) -> Self {
        let demographics = traced(services.demographics);
        let medications = traced(services.medications);
        let consultations = traced(services.consultations);
        Self {
            demographics: DemographicsServiceClient::new(demographics.clone()),
            medications: MedicationsServiceClient::new(medications.clone()),
            consultations: ConsultationsServiceClient::new(consultations.clone()),
            health: [
                HealthClient::new(demographics),
                HealthClient::new(medications),
                HealthClient::new(consultations),
            ],
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }

    /// The FHIR API's routes, `/healthz` (the gateway is up) and `/readyz`
    /// (every service it calls answers its health check).
    pub fn router(self) -> Router {
        let fhir = Router::new()
            .route("/metadata", get(metadata))
            .route("/Patient", get(search_patients).post(create_patient))
            .route("/Patient/{id}", get(read_patient))
            .route("/AllergyIntolerance", get(search_allergies))
            .route("/MedicationRequest", get(search_medications))
            .route("/Condition", get(search_conditions))
            .route("/Encounter", get(search_encounters))
            .fallback(unsupported)
            .method_not_allowed_fallback(method_not_allowed);
        Router::new()
            .nest(FHIR_BASE, fhir)
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready))
            .fallback(unsupported)
            .layer(middleware::from_fn(traced_request))
            .with_state(self)
    }
}

/// How long requests in flight may take to finish once the gateway is
/// told to stop; connections still open then are closed.
pub const DRAIN: Duration = Duration::from_secs(10);

/// Serves the gateway on `listener` until `shutdown`, letting requests in
/// flight finish for up to `DRAIN`.
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = gateway.router();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tokio::select! {
        served = server => served,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN).await;
        } => {
            tracing::warn!(after = ?DRAIN, "FHIR gateway: connections still open were closed");
            Ok(())
        }
    }
}

/// A span per HTTP request, continuing the caller's `traceparent`. Only
/// the route template is recorded, never the path or query, which hold
/// patient ids and NHS numbers.
async fn traced_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "_OTHER".to_owned());
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "http.server",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    let parent = carelog_kernel::trace::extract_http(request.headers());
    {
        use opentelemetry::trace::TraceContextExt as _;
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    response
}

/// A FHIR JSON answer.
fn fhir(status: u16, body: &Value, extra: &[(header::HeaderName, String)]) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name.clone(), value);
        }
    }
    response
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        let mut extra = Vec::new();
        if self.status == 401 {
            extra.push((header::WWW_AUTHENTICATE, "Bearer".to_owned()));
        }
        fhir(self.status, &self.body, &extra)
    }
}

/// A gRPC request carrying what the caller sent that the service reads:
/// the bearer token, break-glass reason, on-behalf-of and correlation id,
/// and the caller's trace context (which the traced channel replaces with
/// the gateway's own span's, a child of it, when traces are exported). A
/// value gRPC metadata cannot carry (not printable ASCII) is refused, not
/// dropped: a break-glass reason lost on the way would be a refusal the
/// caller could not explain.
fn call<T>(headers: &HeaderMap, message: T) -> Result<tonic::Request<T>, Outcome> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(DEFAULT_TIMEOUT);
    for name in [
        header::AUTHORIZATION.as_str(),
        BREAK_GLASS_HEADER,
        ON_BEHALF_OF_HEADER,
        CORRELATION_ID_HEADER,
        TRACEPARENT_HEADER,
        "tracestate",
    ] {
        let Some(value) = headers.get(name) else {
            continue;
        };
        let value = value
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                Outcome::invalid(&[outcome::Violation::new(
                    name,
                    "must be printable ASCII (gRPC metadata carries nothing else)",
                )])
            })?;
        request.metadata_mut().insert(name, value);
    }
    Ok(request)
}

/// The caller's `x-carelog-min-sequence`, or a refusal naming it.
fn min_sequence(headers: &HeaderMap) -> Result<u64, Outcome> {
    match headers.get(MIN_SEQUENCE_HEADER) {
        None => Ok(0),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                Outcome::invalid(&[outcome::Violation::new(
                    MIN_SEQUENCE_HEADER,
                    "must be a stream sequence (a whole number)",
                )])
            }),
    }
}

/// A query string's pairs, decoded.
pub(crate) fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Answers in JSON, or refuses (406) a caller who wants only something
/// else. `_format` wins over `Accept`, as FHIR says. A `+` left unencoded
/// in `_format=application/fhir+json` arrives as a space, and is read
/// back as the `+` it was.
fn json_wanted(headers: &HeaderMap, pairs: &[(String, String)]) -> Result<(), Outcome> {
    let refused =
        || Outcome::not_supported(406, "carelog speaks FHIR JSON only (application/fhir+json)");
    if let Some((_, format)) = pairs.iter().find(|(k, _)| k == "_format") {
        let format = format.trim().replace(' ', "+");
        return if JSON_FORMATS.contains(&format.as_str()) {
            Ok(())
        } else {
            Err(refused())
        };
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let json = accept.split(',').any(|media| {
        let media = media.split(';').next().unwrap_or("").trim();
        media.is_empty()
            || media == "*/*"
            || media == "application/*"
            || JSON_FORMATS.contains(&media)
    });
    if json { Ok(()) } else { Err(refused()) }
}

/// Refuses any parameter but `_format` (a read takes no other).
fn only_format(pairs: &[(String, String)]) -> Result<(), Outcome> {
    let mut violations: Vec<outcome::Violation> = pairs
        .iter()
        .filter(|(name, _)| name != "_format")
        .map(|(name, _)| {
            let name = if name.is_empty() { "query" } else { name };
            outcome::Violation::new(name, "is not a parameter of a read (only _format is)")
        })
        .collect();
    if pairs.iter().filter(|(name, _)| name == "_format").count() > 1 {
        violations.push(outcome::Violation::new(
            "_format",
            "is given more than once",
        ));
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Outcome::invalid(&violations))
    }
}

/// `GET /fhir/r4/metadata`: what this server supports. Open to anyone, as
/// FHIR expects of a capability statement; it names no patient.
async fn metadata(
    State(gateway): State<Gateway>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Outcome> {
    json_wanted(&headers, &pairs(query.as_deref()))?;
    Ok(fhir(200, &capability::statement(&gateway.public_url), &[]))
}

/// `GET /fhir/r4/Patient/{id}`: GetPatient, audited by the service.
async fn read_patient(
    State(mut gateway): State<Gateway>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Outcome> {
    let pairs = pairs(query.as_deref());
    json_wanted(&headers, &pairs)?;
    only_format(&pairs)?;
    let min_sequence = min_sequence(&headers)?;
    let request = call(
        &headers,
        pb::GetPatientRequest {
            patient_id: id,
            min_sequence,
        },
    )?;
    let answer = gateway
        .demographics
        .get_patient(request)
        .await
        .map_err(|status| {
            Outcome::from_status(&status, |field| match field {
                "patient_id" => "id".to_owned(),
                other => other.to_owned(),
            })
        })?
        .into_inner();
    let mut extra = vec![(header::ETAG, format!("W/\"{}\"", answer.version))];
    if let Some(at) = answer
        .updated_at
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
    {
        extra.push((
            header::LAST_MODIFIED,
            at.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        ));
    }
    Ok(fhir(200, &patient::patient(&answer), &extra))
}

/// The header whose value is a create's idempotency key (carelog's
/// `request_id`), as NHS England's APIs ask of every request.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The stream sequence a create was stored at: the read-your-writes token
/// to send back as `x-carelog-min-sequence`.
pub const STREAM_SEQUENCE_HEADER: &str = "x-carelog-stream-sequence";

/// `POST /fhir/r4/Patient`: RegisterPatient. `X-Request-ID` is required,
/// so that a create retried after a lost answer registers the patient
/// once. Answers 201 with the patient as stored, its `Location` and
/// version.
async fn create_patient(
    State(mut gateway): State<Gateway>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Outcome> {
    let pairs = pairs(query.as_deref());
    json_wanted(&headers, &pairs)?;
    only_format(&pairs)?;
    if headers.contains_key("if-none-exist") {
        return Err(Outcome::not_supported(
            412,
            "conditional create is not supported: carelog refuses an NHS number already registered itself (409)",
        ));
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .is_some_and(|media| JSON_FORMATS.contains(&media));
    if !json_body {
        return Err(Outcome::not_supported(
            415,
            "Content-Type: carelog takes FHIR JSON only (application/fhir+json)",
        ));
    }
    let request_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Outcome::invalid(&[outcome::Violation::new(
                REQUEST_ID_HEADER,
                "is required: a create retried after a lost answer must register the patient once",
            )])
        })?
        .to_owned();
    let resource: Value = serde_json::from_slice(&body).map_err(|e| {
        Outcome::invalid(&[outcome::Violation::new(
            "Patient",
            format!("the body is not JSON: {e}"),
        )])
    })?;
    let details = register::details(&resource).map_err(|v| Outcome::invalid(&v))?;
    let request = call(
        &headers,
        pb::RegisterPatientRequest {
            details: Some(details),
            request_id,
            ..Default::default()
        },
    )?;
    let created = gateway
        .demographics
        .register_patient(request)
        .await
        .map_err(|status| Outcome::from_status(&status, register::path_of))?
        .into_inner();
    let location = format!(
        "{}/Patient/{}/_history/{}",
        gateway.public_url, created.patient_id, created.version
    );
    Ok(fhir(
        201,
        &patient::patient(&created),
        &[
            (header::LOCATION, location),
            (header::ETAG, format!("W/\"{}\"", created.version)),
            (
                header::HeaderName::from_static(STREAM_SEQUENCE_HEADER),
                created.stream_sequence.to_string(),
            ),
        ],
    ))
}

/// A page of a search, as the service answered it: each match under its
/// path (`Patient/<id>`), the next page's token, and how many items the
/// service withheld from the caller.
struct Page {
    matches: Vec<(String, Value)>,
    next_page_token: String,
    withheld: i32,
}

/// A search: the query `parse`d into the service's request (every
/// violation named, as FHIR names it), the read-your-writes sequence set,
/// the caller's headers passed on, the service `ask`ed, and its answer
/// made a page (`page`, which sees the request asked) and then a
/// `searchset` Bundle. A refusal is named by `rename` as the caller named
/// the field.
#[allow(clippy::too_many_arguments)]
async fn search<Req, Resp, Fut>(
    gateway: &Gateway,
    headers: &HeaderMap,
    query: Option<&str>,
    resource_type: &str,
    parse: impl Fn(&[(String, String)], &str) -> Result<Req, Vec<outcome::Violation>>,
    set_min_sequence: impl FnOnce(&mut Req, u64),
    ask: impl FnOnce(tonic::Request<Req>) -> Fut,
    rename: impl Fn(&str) -> &str,
    page: impl FnOnce(&Req, Resp) -> Result<Page, Outcome>,
) -> Result<Response, Outcome>
where
    Req: Clone,
    Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
{
    let pairs = pairs(query);
    json_wanted(headers, &pairs)?;
    let mut request = parse(&pairs, &gateway.public_url).map_err(|v| Outcome::invalid(&v))?;
    set_min_sequence(&mut request, min_sequence(headers)?);
    let asked = request.clone();
    let answer = ask(call(headers, request)?)
        .await
        .map_err(|status| Outcome::from_status(&status, |f| rename(f).to_owned()))?
        .into_inner();
    let page = page(&asked, answer)?;
    let bundle = searchset(
        &gateway.public_url,
        resource_type,
        &pairs,
        &page.next_page_token,
        page.matches,
        page.withheld,
    );
    Ok(fhir(200, &bundle, &[]))
}

/// `GET /fhir/r4/Patient?...`: SearchPatients, one page at a time.
async fn search_patients(
    State(gateway): State<Gateway>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Outcome> {
    let mut service = gateway.demographics.clone();
    search(
        &gateway,
        &headers,
        query.as_deref(),
        "Patient",
        |pairs, _| search::request(pairs),
        |r, at| r.min_sequence = at,
        |r| async move { service.search_patients(r).await },
        search::parameter_of,
        |_, answer| {
            Ok(Page {
                matches: answer
                    .patients
                    .iter()
                    .map(|p| (format!("Patient/{}", p.patient_id), patient::patient(p)))
                    .collect(),
                next_page_token: answer.next_page_token,
                withheld: 0,
            })
        },
    )
    .await
}

/// `GET /fhir/r4/AllergyIntolerance?patient=..&clinical-status=..`:
/// ListAllergies, audited by the service.
async fn search_allergies(
    State(gateway): State<Gateway>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Outcome> {
    let mut service = gateway.medications.clone();
    search(
        &gateway,
        &headers,
        query.as_deref(),
        "AllergyIntolerance",
        allergy::request,
        |r, at| r.min_sequence = at,
        |r| async move { service.list_allergies(r).await },
        allergy::parameter_of,
        |asked, answer| {
            Ok(Page {
                matches: answer
                    .allergies
                    .iter()
                    .map(|a| {
                        allergy::allergy(a, &asked.patient_id)
                            .map(|r| (format!("AllergyIntolerance/{}", a.allergy_id), r))
                    })
                    .collect::<Result<_, _>>()?,
                next_page_token: answer.next_page_token,
                withheld: answer.withheld_count,
            })
        },
    )
    .await
}

/// `GET /fhir/r4/MedicationRequest?patient=..[&status=active]`:
/// ListMedications (the authorisations), audited by the service.
async fn search_medications(
    State(gateway): State<Gateway>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Outcome> {
    let mut service = gateway.medications.clone();
    search(
        &gateway,
        &headers,
        query.as_deref(),
        "MedicationRequest",
        medication::request,
        |r, at| r.min_sequence = at,
        |r| async move { service.list_medications(r).await },
        medication::parameter_of,
        |asked, answer| {
            // The service's active list keeps what is not stopped; FHIR's
            // active is what can still be issued, so the used-up ones
            // leave it here (a page may then hold fewer than _count, as
            // FHIR allows).
            let current_only = !asked.include_discontinued;
            Ok(Page {
                matches: answer
                    .authorisations
                    .iter()
                    .filter(|a| !(current_only && medication::issues_used_up(a)))
                    .map(|a| {
                        medication::medication_request(a, &asked.patient_id)
                            .map(|r| (format!("MedicationRequest/{}", a.authorisation_id), r))
                    })
                    .collect::<Result<_, _>>()?,
                next_page_token: answer.next_page_token,
                withheld: answer.withheld_count,
            })
        },
    )
    .await
}

/// `GET /fhir/r4/Condition?patient=..[&clinical-status=..]`: the problem
/// list (ListProblems), audited by the service.
async fn search_conditions(
    State(gateway): State<Gateway>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Outcome> {
    let mut service = gateway.consultations.clone();
    search(
        &gateway,
        &headers,
        query.as_deref(),
        "Condition",
        condition::request,
        |r, at| r.min_sequence = at,
        |r| async move { service.list_problems(r).await },
        condition::parameter_of,
        |asked, answer| {
            Ok(Page {
                matches: answer
                    .problems
                    .iter()
                    .map(|p| {
                        condition::condition(p, &asked.patient_id)
                            .map(|r| (format!("Condition/{}", p.entry_id), r))
                    })
                    .collect::<Result<_, _>>()?,
                next_page_token: answer.next_page_token,
                withheld: answer.withheld_count,
            })
        },
    )
    .await
}

/// `GET /fhir/r4/Encounter?patient=..`: the consultations
/// (ListConsultations), audited by the service.
async fn search_encounters(
    State(gateway): State<Gateway>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Outcome> {
    let mut service = gateway.consultations.clone();
    search(
        &gateway,
        &headers,
        query.as_deref(),
        "Encounter",
        encounter::request,
        |r, at| r.min_sequence = at,
        |r| async move { service.list_consultations(r).await },
        encounter::parameter_of,
        |asked, answer| {
            Ok(Page {
                matches: answer
                    .consultations
                    .iter()
                    .map(|c| {
                        encounter::encounter(c, &asked.patient_id)
                            .map(|r| (format!("Encounter/{}", c.consultation_id), r))
                    })
                    .collect::<Result<_, _>>()?,
                next_page_token: answer.next_page_token,
                // What was withheld is inside consultations, as entries:
                // an Encounter shows no entries, so there is nothing to
                // count here.
                withheld: 0,
            })
        },
    )
    .await
}

/// A page of search results as a `searchset` Bundle: `self` and, while
/// there is more, `next` links; each match under its full URL; and, when
/// the service left items out that the caller may not see, an outcome
/// entry saying how many (and nothing else about them).
fn searchset(
    base: &str,
    resource_type: &str,
    pairs: &[(String, String)],
    next_page_token: &str,
    matches: Vec<(String, Value)>,
    withheld: i32,
) -> Value {
    let link = |pairs: &[(String, String)]| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
        format!("{base}/{resource_type}?{}", query.finish())
    };
    let mut links = vec![json!({ "relation": "self", "url": link(pairs) })];
    if !next_page_token.is_empty() {
        let mut next: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k != "_page_token")
            .cloned()
            .collect();
        next.push(("_page_token".to_owned(), next_page_token.to_owned()));
        links.push(json!({ "relation": "next", "url": link(&next) }));
    }
    let mut entries: Vec<Value> = matches
        .into_iter()
        .map(|(path, resource)| {
            json!({
                "fullUrl": format!("{base}/{path}"),
                "resource": resource,
                "search": { "mode": "match" },
            })
        })
        .collect();
    if withheld > 0 {
        entries.push(json!({
            "resource": { "resourceType": "OperationOutcome", "issue": [{
                "severity": "information",
                "code": "suppressed",
                "diagnostics": format!(
                    "{withheld} item(s) on this page were withheld: confidential items of another organisation"
                ),
            }] },
            "search": { "mode": "outcome" },
        }));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "link": links,
    });
    // FHIR JSON has no empty arrays: no match, no `entry`.
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    bundle
}

/// What the gateway serves, for the refusals of anything else.
const SERVED: &str = "this carelog gateway serves GET metadata, GET Patient/{id}, GET Patient?search, POST Patient, GET AllergyIntolerance?patient&clinical-status, GET MedicationRequest?patient, GET Condition?patient and GET Encounter?patient (see metadata)";

/// Anything else under the FHIR base.
async fn unsupported() -> Outcome {
    Outcome::not_supported(404, &format!("not supported: {SERVED}"))
}

/// A method other than GET on a path the gateway serves.
async fn method_not_allowed() -> Outcome {
    Outcome::not_supported(405, &format!("method not supported: {SERVED}"))
}

/// `/readyz`: ready while every service the gateway calls says it is
/// serving.
async fn ready(State(gateway): State<Gateway>) -> (StatusCode, String) {
    for (mut health, service) in gateway.health.into_iter().zip(HEALTH) {
        let mut request = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
            service: service.to_owned(),
        });
        request.set_timeout(Duration::from_secs(2));
        let serving = matches!(
            health.check(request).await,
            Ok(answer) if answer.get_ref().status == ServingStatus::Serving as i32
        );
        if !serving {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {service} is not serving\n"),
            );
        }
    }
    (StatusCode::OK, "ready\n".to_owned())
}
