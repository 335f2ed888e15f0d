//! The FHIR R4 gateway over the real demographics service: a FHIR client
//! reads and searches patients with its own bearer token, each read is
//! audited as a gRPC read is, and every refusal is an OperationOutcome
//! naming the parameter and the rule.

use std::net::SocketAddr;

use carelog_proto::demographics::v1 as pb;
use carelog_tests::harness::{TestStack, jane_smith};
use carelog_tests::http::{Answer, get};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// The gateway in front of the stack's API, on a port of its own.
async fn gateway(stack: &TestStack) -> (SocketAddr, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the gateway");
    let addr = listener.local_addr().expect("address");
    let stop = CancellationToken::new();
    let gateway = carelog_gateway::Gateway::new(
        carelog_gateway::Services::together(stack.channel.clone()),
        &format!("http://{addr}/fhir/r4"),
    );
    tokio::spawn(carelog_gateway::serve(listener, gateway, stop.clone()));
    (addr, stop)
}

fn bearer(stack: &TestStack, user: &str) -> String {
    format!("Bearer {}", stack.token(user, "A81001"))
}

/// The issues of an OperationOutcome as (code, expression, diagnostics).
fn issues(answer: &Answer) -> Vec<(String, Value, String)> {
    let body = answer.json();
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    body["issue"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| {
            (
                i["code"].as_str().unwrap_or_default().to_owned(),
                i["expression"].clone(),
                i["diagnostics"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_clinician_reads_a_registered_patient_over_fhir_and_the_read_is_audited() {
    let stack = TestStack::start().await;
    let (addr, _stop) = gateway(&stack).await;
    let details = jane_smith();
    let nhs_number = details.nhs_number.clone();
    let jane = stack.register(details).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    let answer = get(
        addr,
        &format!("/fhir/r4/Patient/{}", jane.patient_id),
        &[
            ("Authorization", &bearer(&stack, "dr-jones")),
            ("Accept", "application/fhir+json"),
            ("x-carelog-min-sequence", &jane.stream_sequence.to_string()),
            ("x-correlation-id", "fhir-read-1"),
            ("traceparent", traceparent),
        ],
    )
    .await;

    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("application/fhir+json; charset=utf-8")
    );
    assert_eq!(answer.header("etag"), Some("W/\"1\""));
    assert!(answer.header("last-modified").is_some());
    let patient = answer.json();
    assert_eq!(patient["resourceType"], "Patient");
    assert_eq!(patient["id"], jane.patient_id.as_str());
    assert_eq!(
        patient["identifier"][0],
        json!({
            "system": NHS,
            "value": nhs_number,
            "extension": [{
                "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
                "valueCodeableConcept": { "coding": [{
                    "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
                    "code": "01",
                    "display": "Number present and verified"
                }] }
            }]
        })
    );
    assert_eq!(patient["name"][0]["family"], "Smith");
    assert_eq!(patient["birthDate"], "1950-03-14");
    assert_eq!(patient["gender"], "female");
    assert_eq!(patient["address"][0]["postalCode"], "LS1 5AB");
    assert_eq!(
        patient["generalPractitioner"][0]["identifier"]["value"],
        "A81001"
    );
    assert_eq!(patient["active"], true);

    // The service audited the read as its caller's, with the caller's
    // correlation id and trace.
    let access = stack.last_access(&jane.patient_id, "GetPatient").await;
    assert_eq!(access.actor.map(|a| a.user_id).as_deref(), Some("dr-jones"));
    assert_eq!(access.correlation_id, "fhir-read-1");
    assert_eq!(
        carelog_kernel::trace::trace_id_of(&access.traceparent).as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
}

#[tokio::test]
async fn a_restricted_or_merged_record_reads_over_fhir_as_it_does_over_grpc() {
    let stack = TestStack::start().await;
    let (addr, _stop) = gateway(&stack).await;
    let mut client = stack.client();
    let jane = stack.register(jane_smith()).await;
    let restricted = client
        .mark_restricted(stack.req(pb::PatientFlagRequest {
            patient_id: jane.patient_id.clone(),
            reason: "At risk of harm".into(),
            ..Default::default()
        }))
        .await
        .expect("restricted")
        .into_inner();

    // A practice nurse does not manage demographics: address, telecom and
    // practice are withheld, and the resource says so.
    let nurse = format!(
        "Bearer {}",
        stack
            .issuer
            .token(
                "nurse-patel",
                "Nurse Patel",
                "A81001",
                "R8001",
                std::time::Duration::from_secs(600)
            )
            .expect("token")
    );
    let answer = get(
        addr,
        &format!("/fhir/r4/Patient/{}", jane.patient_id),
        &[
            ("Authorization", &nurse),
            (
                "x-carelog-min-sequence",
                &restricted.stream_sequence.to_string(),
            ),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let patient = answer.json();
    assert_eq!(patient["meta"]["security"][0]["code"], "R");
    assert_eq!(patient["meta"]["tag"][0]["code"], "SUBSETTED");
    assert!(patient.get("address").is_none(), "{patient}");
    assert!(patient.get("telecom").is_none(), "{patient}");
    assert!(patient.get("generalPractitioner").is_none(), "{patient}");

    // A duplicate merged into its survivor is inactive and points at it.
    let survivor = stack.register(jane_smith()).await;
    let duplicate = stack.register(jane_smith()).await;
    let merged = client
        .merge_patient(stack.req(pb::MergePatientRequest {
            duplicate_patient_id: duplicate.patient_id.clone(),
            survivor_patient_id: survivor.patient_id.clone(),
            reason: "same person registered twice".into(),
            request_id: "merge-fhir-1".into(),
        }))
        .await
        .expect("merged")
        .into_inner();
    let answer = get(
        addr,
        &format!("/fhir/r4/Patient/{}", duplicate.patient_id),
        &[
            ("Authorization", &bearer(&stack, "dr-jones")),
            (
                "x-carelog-min-sequence",
                &merged.stream_sequence.to_string(),
            ),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let patient = answer.json();
    assert_eq!(patient["active"], false);
    assert_eq!(
        patient["link"],
        json!([{
            "other": { "reference": format!("Patient/{}", survivor.patient_id) },
            "type": "replaced-by"
        }])
    );
}

#[tokio::test]
async fn a_search_returns_a_searchset_bundle_a_page_at_a_time() {
    let stack = TestStack::start().await;
    let (addr, _stop) = gateway(&stack).await;
    let mut last = 0;
    let mut ids = Vec::new();
    let mut first_nhs = String::new();
    for given in ["Ann", "Beth", "Cara"] {
        let mut details = jane_smith();
        if let Some(name) = details.name.as_mut() {
            name.family = "Fhirson".into();
            name.given = vec![given.into()];
        }
        if first_nhs.is_empty() {
            first_nhs = details.nhs_number.clone();
        }
        let p = stack.register(details).await;
        last = last.max(p.stream_sequence);
        ids.push(p.patient_id);
    }
    let token = bearer(&stack, "dr-jones");
    let consistent = last.to_string();
    let headers = [
        ("Authorization", token.as_str()),
        ("x-carelog-min-sequence", consistent.as_str()),
    ];

    // By NHS number, with its system.
    let answer = get(
        addr,
        &format!(
            "/fhir/r4/Patient?identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C{first_nhs}"
        ),
        &headers,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let bundle = answer.json();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["entry"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        bundle["entry"][0]["fullUrl"],
        format!("http://{addr}/fhir/r4/Patient/{}", ids[0])
    );
    assert_eq!(bundle["entry"][0]["search"]["mode"], "match");

    // By family name prefix, two a page: the next link gives the third.
    let mut found = Vec::new();
    let mut path = "/fhir/r4/Patient?family=Fhirs&_count=2".to_owned();
    let mut pages = 0;
    loop {
        pages += 1;
        let answer = get(addr, &path, &headers).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let bundle = answer.json();
        for entry in bundle["entry"].as_array().expect("entries") {
            found.push(entry["resource"]["id"].as_str().expect("id").to_owned());
        }
        let next = bundle["link"]
            .as_array()
            .expect("links")
            .iter()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned);
        match next {
            Some(url) => {
                let base = format!("http://{addr}");
                path = url
                    .strip_prefix(&base)
                    .expect("a link to the gateway")
                    .to_owned();
            }
            None => break,
        }
        assert!(pages < 5, "paging does not end");
    }
    found.sort();
    ids.sort();
    assert_eq!(found, ids);
    assert_eq!(pages, 2);

    // By whole family name and a date of birth known to the month.
    let answer = get(
        addr,
        "/fhir/r4/Patient?family:exact=fhirson&birthdate=1950-03&_format=application/fhir+json",
        &headers,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["entry"].as_array().map(Vec::len), Some(3));

    // No match: a Bundle with no entry at all (FHIR JSON has no empty
    // arrays).
    let answer = get(addr, "/fhir/r4/Patient?family=Nobodyhere", &headers).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let bundle = answer.json();
    assert_eq!(bundle["type"], "searchset");
    assert!(bundle.get("entry").is_none(), "{bundle}");
}

#[tokio::test]
async fn bad_requests_get_an_operation_outcome_naming_the_parameter_and_nothing_is_read() {
    let stack = TestStack::start().await;
    let (addr, _stop) = gateway(&stack).await;
    let jane = stack.register(jane_smith()).await;
    let token = bearer(&stack, "dr-jones");
    let auth = [("Authorization", token.as_str())];

    // No token: 401, and the service refused it, not the gateway.
    let answer = get(addr, &format!("/fhir/r4/Patient/{}", jane.patient_id), &[]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    assert_eq!(issues(&answer)[0].0, "login");

    // An NHS number failing its check digit.
    let answer = get(addr, "/fhir/r4/Patient?identifier=9434765918", &auth).await;
    assert_eq!(answer.status, 400);
    let found = issues(&answer);
    assert_eq!(found[0].0, "invalid");
    assert_eq!(found[0].1, json!(["identifier"]));
    assert!(found[0].2.starts_with("identifier: "), "{found:?}");

    // A filter carelog cannot apply is refused, not ignored.
    let answer = get(addr, "/fhir/r4/Patient?family=Smith&given=Jane", &auth).await;
    assert_eq!(answer.status, 400);
    assert_eq!(issues(&answer)[0].1, json!(["given"]));

    // A malformed postcode names the FHIR parameter.
    let answer = get(
        addr,
        "/fhir/r4/Patient?address-postalcode=NOTAPOSTCODE",
        &auth,
    )
    .await;
    assert_eq!(answer.status, 400);
    assert_eq!(issues(&answer)[0].1, json!(["address-postalcode"]));

    // No such patient; not a patient id at all.
    let unknown = uuid::Uuid::now_v7();
    let answer = get(addr, &format!("/fhir/r4/Patient/{unknown}"), &auth).await;
    assert_eq!(answer.status, 404);
    assert_eq!(issues(&answer)[0].0, "not-found");
    let answer = get(addr, "/fhir/r4/Patient/not-a-uuid", &auth).await;
    assert_eq!(answer.status, 400);
    assert_eq!(issues(&answer)[0].1, json!(["id"]));

    // A family name with a birth date must say it is the whole name.
    let answer = get(addr, "/fhir/r4/Patient?family=Smi&birthdate=1950", &auth).await;
    assert_eq!(answer.status, 400);
    assert_eq!(issues(&answer)[0].1, json!(["family"]));

    // XML only, by Accept or by _format (which wins over Accept).
    let jane_url = format!("/fhir/r4/Patient/{}", jane.patient_id);
    let answer = get(
        addr,
        &jane_url,
        &[auth[0], ("Accept", "application/fhir+xml")],
    )
    .await;
    assert_eq!(answer.status, 406);
    assert_eq!(
        answer.header("content-type"),
        Some("application/fhir+json; charset=utf-8")
    );
    assert_eq!(issues(&answer)[0].0, "not-supported");
    let answer = get(addr, &format!("{jane_url}?_format=xml"), &auth).await;
    assert_eq!(answer.status, 406);
    let answer = get(addr, "/fhir/r4/metadata?_format=xml", &[]).await;
    assert_eq!(answer.status, 406);
    let answer = get(
        addr,
        &format!("{jane_url}?_format=json"),
        &[
            auth[0],
            ("Accept", "application/fhir+xml"),
            ("x-carelog-min-sequence", &jane.stream_sequence.to_string()),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // A read takes no search parameters.
    let answer = get(addr, &format!("{jane_url}?_summary=true"), &auth).await;
    assert_eq!(answer.status, 400);
    assert_eq!(issues(&answer)[0].1, json!(["_summary"]));

    // A break-glass reason gRPC cannot carry is refused, not dropped.
    let answer = get(
        addr,
        &jane_url,
        &[auth[0], ("x-carelog-break-glass", "unconscious – A&E")],
    )
    .await;
    assert_eq!(answer.status, 400);
    assert_eq!(issues(&answer)[0].1, json!(["x-carelog-break-glass"]));

    // A resource type, interaction or method carelog does not serve.
    let answer = get(addr, "/fhir/r4/Observation", &auth).await;
    assert_eq!(answer.status, 404);
    assert_eq!(issues(&answer)[0].0, "not-supported");
    let answer = get(addr, &format!("{jane_url}/_history"), &auth).await;
    assert_eq!(answer.status, 404);
    assert_eq!(issues(&answer)[0].0, "not-supported");
    let answer = get(addr, "/fhir/r5/Patient", &auth).await;
    assert_eq!(answer.status, 404);
    assert_eq!(issues(&answer)[0].0, "not-supported");
    let answer = carelog_tests::http::request(addr, "DELETE", &jane_url, &auth).await;
    assert_eq!(answer.status, 405);
    assert_eq!(issues(&answer)[0].0, "not-supported");

    // Of all these, one read of Jane's record was served (`_format=json`),
    // and it is the one granted access recorded: what the gateway refused
    // never reached her record.
    let granted: Vec<_> = stack
        .access_events(&jane.patient_id)
        .await
        .into_iter()
        .filter(|(_, e)| e.outcome() != carelog_proto::access::v1::AccessOutcome::Denied)
        .collect();
    assert_eq!(granted.len(), 1, "{granted:?}");

    // The capability statement needs no token and names no patient.
    let answer = get(addr, "/fhir/r4/metadata", &[]).await;
    assert_eq!(answer.status, 200);
    let statement = answer.json();
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    assert_eq!(
        statement["implementation"]["url"],
        format!("http://{addr}/fhir/r4")
    );

    // Health: the gateway is up, and ready while the service serves.
    assert_eq!(get(addr, "/healthz", &[]).await.status, 200);
    assert_eq!(get(addr, "/readyz", &[]).await.status, 200);
}

#[tokio::test]
async fn a_hospital_sees_a_patients_allergies_over_fhir_without_the_practices_confidential_one() {
    use carelog_proto::medications::v1 as mpb;
    use carelog_tests::medications::{PARACETAMOL_500, record_penicillin_allergy};

    // Given Jane, registered at her practice, with a penicillin allergy and
    // an allergy to paracetamol the practice recorded as confidential
    let stack = TestStack::start().await;
    let (addr, _stop) = gateway(&stack).await;
    let jane = stack.register(jane_smith()).await;
    let mut medications = stack.medications();
    let penicillin = medications
        .record_allergy(stack.req(record_penicillin_allergy(&jane.patient_id)))
        .await
        .expect("penicillin allergy")
        .into_inner();
    let mut paracetamol = record_penicillin_allergy(&jane.patient_id);
    if let Some(details) = paracetamol.allergy.as_mut() {
        details.substance = Some(mpb::Coding {
            code: PARACETAMOL_500.into(),
            display: "Paracetamol 500mg tablets".into(),
        });
    }
    paracetamol.confidential = true;
    let confidential = medications
        .record_allergy(stack.req(paracetamol))
        .await
        .expect("confidential allergy")
        .into_inner();
    // and a practice that shares its records with the hospital
    crate::shared_care::share(
        &stack,
        "A81001",
        carelog_proto::sharing::v1::party::Party::OrganisationOds("A81001".into()),
        "RR8",
    )
    .await;
    let consistent = confidential.stream_sequence.to_string();
    let query = format!(
        "/fhir/r4/AllergyIntolerance?patient=Patient/{}&clinical-status=active",
        jane.patient_id
    );

    // When her GP lists her active allergies over FHIR, both are there,
    // the confidential one labelled restricted
    let answer = get(
        addr,
        &query,
        &[
            ("Authorization", &bearer(&stack, "dr-jones")),
            ("x-carelog-min-sequence", &consistent),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let bundle = answer.json();
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{bundle}");
    let gp_sees_confidential = entries.iter().any(|e| {
        e["resource"]["id"] == confidential.allergy_id.as_str()
            && e["resource"]["meta"]["security"][0]["code"] == "R"
    });
    assert!(gp_sees_confidential, "{bundle}");

    // When a hospital clinician lists them, the penicillin allergy is
    // there, coded in SNOMED CT, and the confidential one is not: an
    // outcome entry says one item was withheld, and nothing else about it
    let hospital = format!("Bearer {}", stack.token("dr-ward", "RR8"));
    let answer = get(
        addr,
        &query,
        &[
            ("Authorization", &hospital),
            ("x-carelog-min-sequence", &consistent),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let bundle = answer.json();
    assert!(
        !answer.body.contains(&confidential.allergy_id) && !answer.body.contains("aracetamol"),
        "{bundle}"
    );
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{bundle}");
    let allergy = &entries[0]["resource"];
    assert_eq!(allergy["resourceType"], "AllergyIntolerance");
    assert_eq!(allergy["id"], penicillin.allergy_id.as_str());
    assert_eq!(
        allergy["code"]["coding"][0],
        json!({ "system": "http://snomed.info/sct", "code": "764146007", "display": "Penicillin" })
    );
    assert_eq!(allergy["clinicalStatus"]["coding"][0]["code"], "active");
    assert_eq!(
        allergy["verificationStatus"]["coding"][0]["code"],
        "confirmed"
    );
    assert_eq!(allergy["reaction"][0]["severity"], "moderate");
    assert_eq!(
        entries[0]["fullUrl"],
        format!(
            "http://{addr}/fhir/r4/AllergyIntolerance/{}",
            penicillin.allergy_id
        )
    );
    assert_eq!(entries[1]["search"]["mode"], "outcome");
    assert_eq!(entries[1]["resource"]["issue"][0]["code"], "suppressed");
    assert!(
        entries[1]["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| d.starts_with("1 item")),
        "{bundle}"
    );

    // and the hospital's read is audited as its own
    let access = stack.last_access(&jane.patient_id, "ListAllergies").await;
    assert_eq!(access.actor.map(|a| a.user_id).as_deref(), Some("dr-ward"));

    // A list that would pass the active allergies off as all of them is
    // refused, naming the parameter
    let answer = get(
        addr,
        &format!("/fhir/r4/AllergyIntolerance?patient={}", jane.patient_id),
        &[("Authorization", &bearer(&stack, "dr-jones"))],
    )
    .await;
    assert_eq!(answer.status, 400);
    assert_eq!(issues(&answer)[0].1, json!(["clinical-status"]));
    // and none resolved: a Bundle with no entry
    let answer = get(
        addr,
        &format!(
            "/fhir/r4/AllergyIntolerance?patient={}&clinical-status=resolved",
            jane.patient_id
        ),
        &[
            ("Authorization", &bearer(&stack, "dr-jones")),
            ("x-carelog-min-sequence", &consistent),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.json().get("entry").is_none(), "{}", answer.body);
}

#[tokio::test]
async fn a_patients_medication_list_reads_over_fhir_with_issues_made_and_stopped_items() {
    use carelog_proto::medications::v1 as mpb;
    use carelog_tests::medications::{
        AMOXICILLIN_500, CLARITHROMYCIN_500, PARACETAMOL_500, acute, authorise, issue, repeat,
    };

    // Given Jane with a clarithromycin repeat, issued once, and an
    // amoxicillin acute her GP stopped
    let stack = TestStack::start().await;
    let (addr, _stop) = gateway(&stack).await;
    let jane = stack.register(jane_smith()).await;
    let mut medications = stack.medications();
    let clarithromycin = medications
        .authorise_medication(stack.req(authorise(&jane.patient_id, repeat(CLARITHROMYCIN_500, 6))))
        .await
        .expect("repeat authorised")
        .into_inner();
    medications
        .issue_prescription(stack.req(issue(&jane.patient_id, &clarithromycin.authorisation_id)))
        .await
        .expect("issued");
    // and a paracetamol acute, issued: nothing of it is left to issue
    let paracetamol = medications
        .authorise_medication(stack.req(authorise(&jane.patient_id, acute(PARACETAMOL_500))))
        .await
        .expect("acute authorised")
        .into_inner();
    medications
        .issue_prescription(stack.req(issue(&jane.patient_id, &paracetamol.authorisation_id)))
        .await
        .expect("acute issued");
    let amoxicillin = medications
        .authorise_medication(stack.req(authorise(&jane.patient_id, acute(AMOXICILLIN_500))))
        .await
        .expect("acute authorised")
        .into_inner();
    let stopped = medications
        .discontinue_medication(stack.req(mpb::DiscontinueMedicationRequest {
            patient_id: jane.patient_id.clone(),
            authorisation_id: amoxicillin.authorisation_id.clone(),
            reason: "rash on day two".into(),
            ..Default::default()
        }))
        .await
        .expect("stopped")
        .into_inner();
    let headers_for = |consistent: String| {
        [
            ("Authorization".to_owned(), bearer(&stack, "dr-jones")),
            ("x-carelog-min-sequence".to_owned(), consistent),
        ]
    };
    let headers = headers_for(stopped.stream_sequence.to_string());
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    // When her current medication is asked for over FHIR, it is the repeat,
    // a continuous plan coded in dm+d (SNOMED CT), one issue made (the
    // issued acute has nothing left to issue, and the stopped one stopped)
    let answer = get(
        addr,
        &format!(
            "/fhir/r4/MedicationRequest?patient={}&status=active",
            jane.patient_id
        ),
        &headers,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let bundle = answer.json();
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{bundle}");
    let request = &entries[0]["resource"];
    assert_eq!(request["id"], clarithromycin.authorisation_id.as_str());
    assert_eq!(request["status"], "active");
    assert_eq!(request["intent"], "plan");
    assert_eq!(
        request["medicationCodeableConcept"]["coding"][0]["code"],
        CLARITHROMYCIN_500
    );
    assert_eq!(
        request["courseOfTherapyType"]["coding"][0]["code"],
        "continuous"
    );
    assert_eq!(request["dispenseRequest"]["numberOfRepeatsAllowed"], 5);
    assert_eq!(
        request["extension"][0]["extension"][0],
        json!({ "url": "numberOfPrescriptionsIssued", "valueUnsignedInt": 1 })
    );
    let expiry = request["dispenseRequest"]["validityPeriod"]["end"].clone();
    assert!(expiry.is_string(), "{request}");
    assert_eq!(
        request["extension"][0]["extension"][1],
        json!({ "url": "authorisationExpiryDate", "valueDateTime": expiry })
    );

    // and with no status, the issued acute is there too, completed, and
    // the stopped one, saying why
    let answer = get(
        addr,
        &format!("/fhir/r4/MedicationRequest?patient={}", jane.patient_id),
        &headers,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let bundle = answer.json();
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 3, "{bundle}");
    let issued = entries
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["id"] == paracetamol.authorisation_id.as_str())
        .expect("the issued acute");
    assert_eq!(issued["status"], "completed");
    let stopped = entries
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["id"] == amoxicillin.authorisation_id.as_str())
        .expect("the stopped acute");
    assert_eq!(stopped["status"], "stopped");
    assert_eq!(stopped["statusReason"]["text"], "rash on day two");
    assert_eq!(stopped["courseOfTherapyType"]["coding"][0]["code"], "acute");

    // and the read is audited
    let access = stack.last_access(&jane.patient_id, "ListMedications").await;
    assert_eq!(access.actor.map(|a| a.user_id).as_deref(), Some("dr-jones"));

    // Stopped items alone cannot be listed: refused, naming the parameter
    let answer = get(
        addr,
        &format!(
            "/fhir/r4/MedicationRequest?patient={}&status=stopped",
            jane.patient_id
        ),
        &headers,
    )
    .await;
    assert_eq!(answer.status, 400);
    assert_eq!(issues(&answer)[0].1, json!(["status"]));
}

#[tokio::test]
async fn a_duplicates_allergy_lists_under_its_survivor_and_a_resolved_one_says_when_and_why() {
    use carelog_proto::kernel::v1::PartialDate;
    use carelog_proto::medications::v1 as mpb;
    use carelog_tests::medications::{PARACETAMOL_500, record_penicillin_allergy};

    // Given a penicillin allergy recorded on a duplicate record, merged
    // into its survivor
    let stack = TestStack::start().await;
    let (addr, _stop) = gateway(&stack).await;
    let survivor = stack.register(jane_smith()).await;
    let duplicate = stack.register(jane_smith()).await;
    let mut medications = stack.medications();
    let penicillin = medications
        .record_allergy(stack.req(record_penicillin_allergy(&duplicate.patient_id)))
        .await
        .expect("allergy on the duplicate")
        .into_inner();
    stack
        .client()
        .merge_patient(stack.req(pb::MergePatientRequest {
            duplicate_patient_id: duplicate.patient_id.clone(),
            survivor_patient_id: survivor.patient_id.clone(),
            reason: "same person registered twice".into(),
            request_id: "merge-fhir-allergy".into(),
        }))
        .await
        .expect("merged");
    // and an allergy to paracetamol on the survivor, since resolved
    let mut paracetamol = record_penicillin_allergy(&survivor.patient_id);
    if let Some(details) = paracetamol.allergy.as_mut() {
        details.substance = Some(mpb::Coding {
            code: PARACETAMOL_500.into(),
            display: "Paracetamol 500mg tablets".into(),
        });
    }
    let paracetamol = medications
        .record_allergy(stack.req(paracetamol))
        .await
        .expect("allergy")
        .into_inner();
    let resolved = medications
        .resolve_allergy(stack.req(mpb::ResolveAllergyRequest {
            patient_id: survivor.patient_id.clone(),
            allergy_id: paracetamol.allergy_id.clone(),
            resolved_on: Some(PartialDate {
                year: 2026,
                month: 11,
                day: 0,
            }),
            reason: "tolerated under supervised challenge".into(),
            ..Default::default()
        }))
        .await
        .expect("resolved")
        .into_inner();
    let token = bearer(&stack, "dr-jones");
    let consistent = resolved.stream_sequence.to_string();
    let headers = [
        ("Authorization", token.as_str()),
        ("x-carelog-min-sequence", consistent.as_str()),
    ];

    // When the survivor's active allergies are listed over FHIR, the
    // duplicate's penicillin allergy is there, as the survivor's
    let answer = get(
        addr,
        &format!(
            "/fhir/r4/AllergyIntolerance?patient=http://{addr}/fhir/r4/Patient/{}&clinical-status=active",
            survivor.patient_id
        ),
        &headers,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let bundle = answer.json();
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{bundle}");
    assert_eq!(entries[0]["resource"]["id"], penicillin.allergy_id.as_str());
    assert_eq!(
        entries[0]["resource"]["patient"]["reference"],
        format!("Patient/{}", survivor.patient_id)
    );

    // and the resolved list holds the paracetamol allergy, with when and
    // why it ended on its clinical status
    let answer = get(
        addr,
        &format!(
            "/fhir/r4/AllergyIntolerance?patient={}&clinical-status=resolved",
            survivor.patient_id
        ),
        &headers,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let bundle = answer.json();
    let allergy = &bundle["entry"][0]["resource"];
    assert_eq!(allergy["id"], paracetamol.allergy_id.as_str());
    assert_eq!(allergy["clinicalStatus"]["coding"][0]["code"], "resolved");
    assert_eq!(
        allergy["clinicalStatus"]["extension"][0]["extension"],
        json!([
            { "url": "endDate", "valueDateTime": "2026-11" },
            { "url": "reasonEnded", "valueString": "tolerated under supervised challenge" }
        ])
    );
}

#[tokio::test]
async fn a_patients_problem_list_reads_over_fhir_as_conditions() {
    use carelog_proto::consultations::v1 as cpb;
    use carelog_tests::consultations::{HYPERTENSION, add_request, hypertension, start};

    // Given Jane, seen for raised blood pressure, with hypertension on her
    // problem list
    let stack = TestStack::start().await;
    let (addr, _stop) = gateway(&stack).await;
    let jane = stack.register(jane_smith()).await;
    let consultation = start(&stack, &jane.patient_id).await;
    let consultation_id = consultation
        .consultation
        .as_ref()
        .map(|c| c.consultation_id.clone())
        .expect("consultation");
    let added = stack
        .consultations()
        .add_entry(stack.req(add_request(
            &jane.patient_id,
            &consultation_id,
            "",
            hypertension(cpb::ProblemStatus::Active),
        )))
        .await
        .expect("problem recorded")
        .into_inner();
    // and an earlier hypertension entry, since resolved
    let resolved = stack
        .consultations()
        .add_entry(stack.req(add_request(
            &jane.patient_id,
            &consultation_id,
            &added.topic_id,
            hypertension(cpb::ProblemStatus::Resolved),
        )))
        .await
        .expect("resolved problem recorded")
        .into_inner();
    let token = bearer(&stack, "dr-jones");
    let consistent = resolved.stream_sequence.to_string();
    let headers = [
        ("Authorization", token.as_str()),
        ("x-carelog-min-sequence", consistent.as_str()),
    ];

    // When her active problems are asked for over FHIR, hypertension is a
    // problem-list Condition coded in SNOMED CT
    let answer = get(
        addr,
        &format!(
            "/fhir/r4/Condition?patient={}&clinical-status=active&category=problem-list-item",
            jane.patient_id
        ),
        &headers,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let bundle = answer.json();
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{bundle}");
    let condition = &entries[0]["resource"];
    assert_eq!(condition["id"], added.entry_id.as_str());
    assert_eq!(condition["clinicalStatus"]["coding"][0]["code"], "active");
    assert_eq!(
        condition["category"][0]["coding"][0]["code"],
        "problem-list-item"
    );
    assert_eq!(condition["code"]["coding"][0]["code"], HYPERTENSION);
    assert_eq!(
        condition["subject"]["reference"],
        format!("Patient/{}", jane.patient_id)
    );
    assert_eq!(
        condition["note"][0]["text"],
        "Raised readings on three occasions"
    );
    let access = stack.last_access(&jane.patient_id, "ListProblems").await;
    assert_eq!(access.actor.map(|a| a.user_id).as_deref(), Some("dr-jones"));

    // and her resolved ones are the resolved entry alone, and no status
    // lists both
    let answer = get(
        addr,
        &format!(
            "/fhir/r4/Condition?patient={}&clinical-status=resolved",
            jane.patient_id
        ),
        &headers,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let bundle = answer.json();
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{bundle}");
    assert_eq!(entries[0]["resource"]["id"], resolved.entry_id.as_str());
    assert_eq!(
        entries[0]["resource"]["clinicalStatus"]["coding"][0]["code"],
        "resolved"
    );
    let answer = get(
        addr,
        &format!("/fhir/r4/Condition?patient={}", jane.patient_id),
        &headers,
    )
    .await;
    assert_eq!(answer.json()["entry"].as_array().map(Vec::len), Some(2));

    // A category carelog does not keep is refused, not answered empty
    let answer = get(
        addr,
        &format!(
            "/fhir/r4/Condition?patient={}&category=encounter-diagnosis",
            jane.patient_id
        ),
        &headers,
    )
    .await;
    assert_eq!(answer.status, 400);
    assert_eq!(issues(&answer)[0].1, json!(["category"]));
}

#[tokio::test]
async fn a_patient_administration_system_registers_a_patient_over_fhir_once_however_often_it_retries()
 {
    use carelog_tests::harness::test_nhs_number;
    use carelog_tests::http::send;

    let stack = TestStack::start().await;
    let (addr, _stop) = gateway(&stack).await;
    let token = bearer(&stack, "clerk-ali");
    let nhs_number = test_nhs_number();
    let jane = json!({
        "resourceType": "Patient",
        "identifier": [{ "system": NHS, "value": nhs_number }],
        "name": [{ "use": "official", "family": "Fhirfield", "given": ["Jane"], "prefix": ["Mrs"] }],
        "gender": "female",
        "birthDate": "1950-03-14",
        "address": [{ "use": "home", "line": ["1 Park Row"], "city": "Leeds", "postalCode": "LS1 5AB" }],
        "generalPractitioner": [{ "identifier": {
            "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "A81001"
        } }]
    })
    .to_string();
    let fhir_json = ("Content-Type", "application/fhir+json");
    let post = |body: String, headers: Vec<(&'static str, String)>| {
        let token = token.clone();
        async move {
            let mut all: Vec<(&str, String)> = vec![("Authorization", token)];
            all.extend(headers);
            let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
            send(addr, "POST", "/fhir/r4/Patient", &all, &body).await
        }
    };
    let with = |request_id: &str| {
        vec![
            (fhir_json.0, fhir_json.1.to_owned()),
            ("X-Request-ID", request_id.to_owned()),
        ]
    };

    // When the system registers Jane, she is created: 201, where she is,
    // her version, and the sequence to read her back at
    let created = post(jane.clone(), with("pas-0001")).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let patient = created.json();
    let id = patient["id"].as_str().expect("id").to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("http://{addr}/fhir/r4/Patient/{id}/_history/1").as_str())
    );
    assert_eq!(created.header("etag"), Some("W/\"1\""));
    assert_eq!(patient["identifier"][0]["value"], nhs_number.as_str());
    assert_eq!(patient["birthDate"], "1950-03-14");
    let sequence = created
        .header("x-carelog-stream-sequence")
        .expect("stream sequence")
        .to_owned();
    let read = get(
        addr,
        &format!("/fhir/r4/Patient/{id}"),
        &[
            ("Authorization", &bearer(&stack, "clerk-ali")),
            ("x-carelog-min-sequence", &sequence),
        ],
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["name"][0]["family"], "Fhirfield");
    let stored = stack.last_sequence().await;

    // When it sends the same create again (its answer was lost), it is
    // answered with the same patient and nothing more is stored
    let again = post(jane.clone(), with("pas-0001")).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.json()["id"], id.as_str());
    assert_eq!(stack.last_sequence().await, stored);

    // And every create refused stores nothing, naming what is wrong:
    // no idempotency key,
    let refused = post(jane.clone(), vec![(fhir_json.0, fhir_json.1.to_owned())]).await;
    assert_eq!(refused.status, 400);
    assert_eq!(issues(&refused)[0].1, json!(["x-request-id"]));
    // an NHS number already registered (to another request),
    let refused = post(jane.clone(), with("pas-0002")).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(issues(&refused)[0].0, "duplicate");
    // an NHS number failing its check digit, named by its FHIRPath,
    let mut bad = serde_json::from_str::<Value>(&jane).expect("json");
    bad["identifier"][0]["value"] = json!("9434765918");
    let refused = post(bad.to_string(), with("pas-0003")).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(issues(&refused)[0].1, json!(["Patient.identifier"]));
    // a malformed postcode, by its FHIRPath,
    let mut bad = serde_json::from_str::<Value>(&jane).expect("json");
    bad["identifier"] = json!([]);
    bad["address"][0]["postalCode"] = json!("NOT A POSTCODE");
    let refused = post(bad.to_string(), with("pas-0004")).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(
        issues(&refused)[0].1,
        json!(["Patient.address[0].postalCode"])
    );
    // an element carelog would otherwise drop,
    let mut bad = serde_json::from_str::<Value>(&jane).expect("json");
    bad["maritalStatus"] = json!({ "text": "married" });
    let refused = post(bad.to_string(), with("pas-0005")).await;
    assert_eq!(refused.status, 400);
    assert_eq!(issues(&refused)[0].1, json!(["Patient.maritalStatus"]));
    // and a body that is not FHIR JSON.
    let refused = post(
        jane.clone(),
        vec![
            ("Content-Type", "application/xml".to_owned()),
            ("X-Request-ID", "pas-0006".to_owned()),
        ],
    )
    .await;
    assert_eq!(refused.status, 415);
    assert_eq!(stack.last_sequence().await, stored);
}

#[tokio::test]
async fn a_patients_consultations_read_over_fhir_as_encounters() {
    use carelog_proto::consultations::v1 as cpb;
    use carelog_tests::consultations::{add_request, blood_pressure, start};

    // Given Jane seen face to face, her blood pressure taken, the
    // consultation signed
    let stack = TestStack::start().await;
    let (addr, _stop) = gateway(&stack).await;
    let jane = stack.register(jane_smith()).await;
    let consultation_id = start(&stack, &jane.patient_id)
        .await
        .consultation
        .map(|c| c.consultation_id)
        .expect("consultation");
    stack
        .consultations()
        .add_entry(stack.req(add_request(
            &jane.patient_id,
            &consultation_id,
            "",
            blood_pressure(142, 88),
        )))
        .await
        .expect("entry");
    let signed = stack
        .consultations()
        .sign_consultation(stack.req(cpb::SignConsultationRequest {
            patient_id: jane.patient_id.clone(),
            consultation_id: consultation_id.clone(),
            ..Default::default()
        }))
        .await
        .expect("signed")
        .into_inner();

    // When her encounters are asked for over FHIR, the consultation is a
    // finished ambulatory Encounter, its clinician and practice named
    let answer = get(
        addr,
        &format!("/fhir/r4/Encounter?patient={}", jane.patient_id),
        &[
            ("Authorization", &bearer(&stack, "dr-jones")),
            (
                "x-carelog-min-sequence",
                &signed.stream_sequence.to_string(),
            ),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let bundle = answer.json();
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{bundle}");
    let encounter = &entries[0]["resource"];
    assert_eq!(encounter["id"], consultation_id.as_str());
    assert_eq!(encounter["status"], "finished");
    assert_eq!(encounter["class"]["code"], "AMB");
    assert_eq!(
        encounter["participant"][0]["individual"]["display"],
        "Dr dr-jones"
    );
    assert_eq!(
        encounter["serviceProvider"]["identifier"]["value"],
        "A81001"
    );
    assert!(encounter["period"]["start"].is_string(), "{encounter}");
    let access = stack
        .last_access(&jane.patient_id, "ListConsultations")
        .await;
    assert_eq!(access.actor.map(|a| a.user_id).as_deref(), Some("dr-jones"));
}
