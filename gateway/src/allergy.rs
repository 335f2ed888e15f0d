//! carelog's allergies as FHIR R4 AllergyIntolerance resources (UK Core),
//! and the search that lists a patient's. Pure: no I/O.

use carelog_proto::medications::v1 as pb;
use serde_json::{Map, Value, json};

use crate::outcome::Unrepresentable;
use crate::outcome::Violation;
use crate::patient::partial_date;

const UK_CORE_ALLERGY: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/UKCore-AllergyIntolerance";
const ALLERGY_END: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-AllergyIntoleranceEnd";
const CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
const VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";
/// SNOMED CT, whose UK edition holds the dm+d products too.
pub const SNOMED: &str = "http://snomed.info/sct";

/// The search parameters of AllergyIntolerance, with what each does.
pub const PARAMETERS: [(&str, &str, &str); 2] = [
    (
        "patient",
        "reference",
        "Required: the patient, as Patient/<id>, this server's full URL of it, or the id",
    ),
    (
        "clinical-status",
        "token",
        "Required: active or resolved (carelog lists one at a time; entries made in error are never listed)",
    ),
];

const NAMES: [&str; 1] = ["clinical-status"];

/// The FHIR name of a field of ListAllergiesRequest.
pub fn parameter_of(field: &str) -> &str {
    match field {
        "patient_id" => "patient",
        "status" => "clinical-status",
        other => crate::search::paging_parameter_of(other),
    }
}

/// A query string's pairs as a ListAllergies request.
/// `base` is this server's FHIR base URL (a patient may be referred to by
/// its full URL).
pub fn request(
    pairs: &[(String, String)],
    base: &str,
) -> Result<pb::ListAllergiesRequest, Vec<Violation>> {
    crate::search::patient_list(pairs, base, &NAMES, |list, get, violations| {
        let mut request = pb::ListAllergiesRequest {
            patient_id: list.patient_id,
            page_size: list.page_size,
            page_token: list.page_token,
            ..Default::default()
        };
        // A token: the code, or the code system and the code.
        let status = get("clinical-status").map(|v| crate::search::token(v, CLINICAL));
        match status {
            Some("active") => request.status = pb::AllergyStatus::Active as i32,
            Some("resolved") => request.status = pb::AllergyStatus::Resolved as i32,
            Some(v) if v.contains(',') => violations.push(Violation::new(
                "clinical-status",
                "names one status: carelog lists active and resolved allergies one at a time",
            )),
            Some(_) => violations.push(Violation::new(
                "clinical-status",
                "must be active or resolved",
            )),
            None if pairs.iter().any(|(n, _)| n == "clinical-status") => {}
            None => violations.push(Violation::new(
                "clinical-status",
                "is required (active or resolved): carelog lists one at a time, and a list of the active alone must not pass for all of them",
            )),
        }
        request
    })
}

fn coding(system: &str, code: &str) -> Value {
    json!({ "coding": [{ "system": system, "code": code }] })
}

/// The AllergyIntolerance resource for an allergy as carelog answered it
/// in a list of `patient`'s: an allergy carried over from a record merged
/// into theirs is theirs. An allergy the gateway cannot represent
/// faithfully (no status it knows, no substance) is an error, never a
/// resource a client could take for an inactive or uncoded one.
pub fn allergy(a: &pb::Allergy, patient: &str) -> Result<Value, Unrepresentable> {
    let mut meta = Map::new();
    meta.insert("profile".into(), json!([UK_CORE_ALLERGY]));
    if a.confidential {
        meta.insert("security".into(), crate::patient::restricted());
    }
    let mut out = Map::new();
    out.insert("resourceType".into(), json!("AllergyIntolerance"));
    out.insert("id".into(), json!(a.allergy_id));
    out.insert("meta".into(), Value::Object(meta));
    let status = match pb::AllergyStatus::try_from(a.status) {
        Ok(pb::AllergyStatus::Unspecified) | Err(_) => {
            return Err(Unrepresentable(
                "an allergy with a status the gateway does not know",
            ));
        }
        Ok(status) => status,
    };
    let details = a.details.clone().unwrap_or_default();
    // An entry made in error has no clinical status (FHIR's invariant).
    // A resolved allergy's end (date, reason) is UK Core's extension on
    // its clinical status.
    match status {
        pb::AllergyStatus::Active => {
            out.insert("clinicalStatus".into(), coding(CLINICAL, "active"));
        }
        pb::AllergyStatus::Resolved => {
            let mut clinical = coding(CLINICAL, "resolved");
            let mut end = Vec::new();
            if let Some(on) = partial_date(a.resolved_on.as_ref()) {
                end.push(json!({ "url": "endDate", "valueDateTime": on }));
            }
            if !a.resolution_reason.is_empty() {
                end.push(json!({ "url": "reasonEnded", "valueString": a.resolution_reason }));
            }
            if !end.is_empty() {
                clinical["extension"] = json!([{ "url": ALLERGY_END, "extension": end }]);
            }
            out.insert("clinicalStatus".into(), clinical);
        }
        _ => {}
    }
    let verification = if status == pb::AllergyStatus::EnteredInError {
        Some("entered-in-error")
    } else {
        match pb::Certainty::try_from(details.certainty).unwrap_or(pb::Certainty::Unspecified) {
            pb::Certainty::Confirmed => Some("confirmed"),
            pb::Certainty::Unconfirmed => Some("unconfirmed"),
            pb::Certainty::Unspecified => None,
        }
    };
    if let Some(v) = verification {
        out.insert("verificationStatus".into(), coding(VERIFICATION, v));
    }
    match pb::AllergyKind::try_from(details.kind).unwrap_or(pb::AllergyKind::Unspecified) {
        pb::AllergyKind::Allergy => {
            out.insert("type".into(), json!("allergy"));
        }
        pb::AllergyKind::Intolerance => {
            out.insert("type".into(), json!("intolerance"));
        }
        pb::AllergyKind::Unspecified => {}
    }
    let substance = details
        .substance
        .as_ref()
        .filter(|s| !s.code.is_empty())
        .ok_or(Unrepresentable("an allergy with no substance"))?;
    out.insert(
        "code".into(),
        json!({
            "coding": [{ "system": SNOMED, "code": substance.code, "display": substance.display }],
            "text": substance.display,
        }),
    );
    out.insert(
        "patient".into(),
        json!({ "reference": format!("Patient/{patient}") }),
    );
    if let Some(onset) = partial_date(details.onset.as_ref()) {
        out.insert("onsetDateTime".into(), json!(onset));
    }
    if let Some(recorded) = partial_date(a.recorded_on.as_ref()) {
        out.insert("recordedDate".into(), json!(recorded));
    }
    let mut reaction = Map::new();
    if !details.reaction.is_empty() {
        reaction.insert(
            "manifestation".into(),
            json!([{ "text": details.reaction }]),
        );
    }
    let severity =
        match pb::Severity::try_from(details.severity).unwrap_or(pb::Severity::Unspecified) {
            pb::Severity::Mild => Some("mild"),
            pb::Severity::Moderate => Some("moderate"),
            pb::Severity::Severe => Some("severe"),
            pb::Severity::Unspecified => None,
        };
    // A reaction needs its manifestation (1..*): a severity alone is not one.
    if reaction.contains_key("manifestation") {
        if let Some(s) = severity {
            reaction.insert("severity".into(), json!(s));
        }
        out.insert("reaction".into(), json!([Value::Object(reaction)]));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use carelog_proto::kernel::v1::PartialDate;

    const BASE: &str = "https://fhir.example.org/fhir/r4";

    fn query(text: &str) -> Vec<(String, String)> {
        crate::pairs(Some(text))
    }

    const PATIENT: &str = "0193a5b0-7c1e-7000-8000-000000000001";

    fn penicillin() -> pb::Allergy {
        pb::Allergy {
            allergy_id: "0193a5b0-7c1e-7000-8000-0000000000a1".into(),
            patient_id: "0193a5b0-7c1e-7000-8000-000000000001".into(),
            details: Some(pb::AllergyDetails {
                substance: Some(pb::Coding {
                    code: "764146007".into(),
                    display: "Penicillin".into(),
                }),
                kind: pb::AllergyKind::Allergy as i32,
                reaction: "urticaria".into(),
                severity: pb::Severity::Moderate as i32,
                certainty: pb::Certainty::Confirmed as i32,
                onset: Some(PartialDate {
                    year: 1998,
                    month: 0,
                    day: 0,
                }),
            }),
            status: pb::AllergyStatus::Active as i32,
            recorded_on: Some(PartialDate {
                year: 2026,
                month: 11,
                day: 3,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_penicillin_allergy_is_a_uk_core_allergy_intolerance_coded_in_snomed() {
        let r = allergy(&penicillin(), PATIENT).expect("represented");
        assert_eq!(r["resourceType"], "AllergyIntolerance");
        assert_eq!(r["clinicalStatus"]["coding"][0]["code"], "active");
        assert_eq!(r["verificationStatus"]["coding"][0]["code"], "confirmed");
        assert_eq!(r["type"], "allergy");
        assert_eq!(r["code"]["coding"][0]["system"], SNOMED);
        assert_eq!(r["code"]["coding"][0]["code"], "764146007");
        assert_eq!(r["code"]["text"], "Penicillin");
        assert_eq!(
            r["patient"]["reference"],
            "Patient/0193a5b0-7c1e-7000-8000-000000000001"
        );
        assert_eq!(r["onsetDateTime"], "1998");
        assert_eq!(r["recordedDate"], "2026-11-03");
        assert_eq!(r["reaction"][0]["manifestation"][0]["text"], "urticaria");
        assert_eq!(r["reaction"][0]["severity"], "moderate");
        assert!(r["clinicalStatus"].get("extension").is_none());
    }

    #[test]
    fn a_resolved_allergy_says_when_and_why_it_ended() {
        let mut a = penicillin();
        a.status = pb::AllergyStatus::Resolved as i32;
        a.resolved_on = Some(PartialDate {
            year: 2026,
            month: 12,
            day: 1,
        });
        a.resolution_reason = "tolerated amoxicillin under challenge".into();
        let r = allergy(&a, PATIENT).expect("represented");
        assert_eq!(r["clinicalStatus"]["coding"][0]["code"], "resolved");
        let end = &r["clinicalStatus"]["extension"][0];
        assert_eq!(end["url"], ALLERGY_END);
        assert_eq!(
            end["extension"],
            json!([
                { "url": "endDate", "valueDateTime": "2026-12-01" },
                { "url": "reasonEnded", "valueString": "tolerated amoxicillin under challenge" }
            ])
        );
        a.status = pb::AllergyStatus::EnteredInError as i32;
        let r = allergy(&a, PATIENT).expect("represented");
        assert!(r.get("clinicalStatus").is_none(), "{r}");
        assert_eq!(
            r["verificationStatus"]["coding"][0]["code"],
            "entered-in-error"
        );
    }

    #[test]
    fn a_patients_allergies_are_listed_one_clinical_status_at_a_time() {
        let r = request(
            &query(
                "patient=Patient%2F0193a5b0-7c1e-7000-8000-000000000001&clinical-status=resolved&_count=10",
            ),
            BASE,
        )
        .expect("search");
        assert_eq!(r.patient_id, "0193a5b0-7c1e-7000-8000-000000000001");
        assert_eq!(r.status, pb::AllergyStatus::Resolved as i32);
        assert_eq!(r.page_size, 10);
        let fields = |text: &str| -> Vec<String> {
            request(&query(text), BASE)
                .expect_err("refused")
                .into_iter()
                .map(|v| v.field)
                .collect()
        };
        assert_eq!(fields("clinical-status=active"), ["patient"]);
        assert_eq!(fields("patient=x"), ["clinical-status"]);
        assert_eq!(
            fields("patient=x&clinical-status=inactive"),
            ["clinical-status"]
        );
        assert_eq!(
            fields("patient=x&clinical-status=active&code=764146007"),
            ["code"]
        );
        assert_eq!(
            fields("patient=x&clinical-status=active,resolved"),
            ["clinical-status"]
        );
        assert_eq!(
            fields("patient=&clinical-status="),
            ["patient", "clinical-status"]
        );
        assert_eq!(
            fields("patient=https://elsewhere.example/fhir/Patient/x&clinical-status=active"),
            ["patient"]
        );
        // A token with its system, and this server's full patient URL
        let r = request(
            &query(&format!(
                "patient={BASE}/Patient/p1&clinical-status={CLINICAL}|active"
            )),
            BASE,
        )
        .expect("full forms");
        assert_eq!(r.patient_id, "p1");
        assert_eq!(r.status, pb::AllergyStatus::Active as i32);
    }

    #[test]
    fn an_allergy_the_gateway_cannot_represent_faithfully_is_an_error_not_a_resource() {
        let mut a = penicillin();
        a.status = 0;
        assert!(allergy(&a, PATIENT).is_err());
        let mut a = penicillin();
        a.status = 99;
        assert!(allergy(&a, PATIENT).is_err());
        let mut a = penicillin();
        if let Some(d) = a.details.as_mut() {
            d.substance = None;
        }
        assert!(allergy(&a, PATIENT).is_err());
    }

    #[test]
    fn an_allergy_carried_over_from_a_merged_record_belongs_to_the_patient_searched() {
        let mut a = penicillin();
        a.patient_id = "0193a5b0-7c1e-7000-8000-00000000dead".into();
        let r = allergy(&a, PATIENT).expect("represented");
        assert_eq!(r["patient"]["reference"], format!("Patient/{PATIENT}"));
    }
}
