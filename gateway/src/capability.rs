//! The CapabilityStatement: what this FHIR server does, and nothing more.

use serde_json::{Value, json};

fn search_parameters(parameters: &[(&str, &str, &str)]) -> Vec<Value> {
    parameters
        .iter()
        .filter(|(name, _, _)| !name.starts_with('_'))
        .map(|(name, kind, documentation)| {
            json!({ "name": name, "type": kind, "documentation": documentation })
        })
        .collect()
}

/// The statement for a server reached at `base`.
pub fn statement(base: &str) -> Value {
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
        "kind": "instance",
        "software": { "name": "carelog", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "carelog FHIR R4 gateway", "url": base },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Every request needs an OAuth bearer token (Authorization: Bearer), checked by carelog's services; every read of a patient's record is audited. An emergency access states its reason in x-carelog-break-glass. A search parameter carelog cannot honour is refused, never ignored. Every search pages with _count (1 to 200, default 50) and the Bundle's next link (_page_token).",
            "security": {
                "service": [{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "OAuth"
                }] }]
            },
            "resource": [
                {
                    "type": "Patient",
                    "profile": "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient",
                    "interaction": [
                        { "code": "read" },
                        { "code": "search-type" },
                        { "code": "create", "documentation": "x-request-id is required: a create retried with the same one registers the patient once" }
                    ],
                    "versioning": "versioned",
                    "readHistory": false,
                    "searchParam": search_parameters(&crate::search::PARAMETERS)
                },
                {
                    "type": "AllergyIntolerance",
                    "profile": "https://fhir.hl7.org.uk/StructureDefinition/UKCore-AllergyIntolerance",
                    "interaction": [{ "code": "search-type" }],
                    "searchParam": search_parameters(&crate::allergy::PARAMETERS)
                },
                {
                    "type": "MedicationRequest",
                    "profile": "https://fhir.hl7.org.uk/StructureDefinition/UKCore-MedicationRequest",
                    "interaction": [{ "code": "search-type" }],
                    "searchParam": search_parameters(&crate::medication::PARAMETERS)
                },
                {
                    "type": "Condition",
                    "profile": "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Condition",
                    "interaction": [{ "code": "search-type" }],
                    "searchParam": search_parameters(&crate::condition::PARAMETERS)
                },
                {
                    "type": "Encounter",
                    "profile": "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Encounter",
                    "interaction": [{ "code": "search-type" }],
                    "searchParam": search_parameters(&crate::encounter::PARAMETERS)
                }
            ]
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_offers_what_the_gateway_serves_over_fhir_4_0_1() {
        let s = statement("http://localhost:8080/fhir/r4");
        assert_eq!(s["fhirVersion"], "4.0.1");
        let offered: Vec<(String, Vec<String>, Vec<String>)> = s["rest"][0]["resource"]
            .as_array()
            .expect("resources")
            .iter()
            .map(|r| {
                let codes = |key: &str, field: &str| -> Vec<String> {
                    r[key]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x[field].as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                (
                    r["type"].as_str().unwrap_or_default().to_owned(),
                    codes("interaction", "code"),
                    codes("searchParam", "name"),
                )
            })
            .collect();
        let expected = [
            (
                "Patient",
                vec!["read", "search-type", "create"],
                vec!["identifier", "family", "birthdate", "address-postalcode"],
            ),
            (
                "AllergyIntolerance",
                vec!["search-type"],
                vec!["patient", "clinical-status"],
            ),
            (
                "MedicationRequest",
                vec!["search-type"],
                vec!["patient", "status"],
            ),
            (
                "Condition",
                vec!["search-type"],
                vec!["patient", "clinical-status", "category"],
            ),
            ("Encounter", vec!["search-type"], vec!["patient"]),
        ];
        let expected: Vec<(String, Vec<String>, Vec<String>)> = expected
            .iter()
            .map(|(t, i, p)| {
                (
                    (*t).to_owned(),
                    i.iter().map(|x| (*x).to_owned()).collect(),
                    p.iter().map(|x| (*x).to_owned()).collect(),
                )
            })
            .collect();
        assert_eq!(offered, expected);
    }
}
