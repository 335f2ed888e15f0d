//! The patient's problem list as FHIR R4 Condition resources (UK Core,
//! category `problem-list-item`), and the search that lists them. Pure.

use carelog_proto::consultations::v1 as pb;
use serde_json::{Map, Value, json};

use crate::allergy::SNOMED;
use crate::outcome::{Unrepresentable, Violation};

const UK_CORE_CONDITION: &str = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Condition";
const CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";

/// The search parameters of Condition, with what each does.
pub const PARAMETERS: [(&str, &str, &str); 3] = [
    (
        "patient",
        "reference",
        "Required: the patient, as Patient/<id>, this server's full URL of it, or the id",
    ),
    (
        "clinical-status",
        "token",
        "active, inactive or resolved; left out: every problem",
    ),
    (
        "category",
        "token",
        "problem-list-item (every Condition carelog serves is one)",
    ),
];

const NAMES: [&str; 2] = ["clinical-status", "category"];

/// The FHIR name of a field of ListProblemsRequest.
pub fn parameter_of(field: &str) -> &str {
    match field {
        "patient_id" => "patient",
        "status" => "clinical-status",
        other => crate::search::paging_parameter_of(other),
    }
}

/// A query string's pairs as a ListProblems request; `base` is this
/// server's FHIR base URL.
pub fn request(
    pairs: &[(String, String)],
    base: &str,
) -> Result<pb::ListProblemsRequest, Vec<Violation>> {
    crate::search::patient_list(pairs, base, &NAMES, |list, get, violations| {
        let mut request = pb::ListProblemsRequest {
            patient_id: list.patient_id,
            page_size: list.page_size,
            page_token: list.page_token,
            ..Default::default()
        };
        match get("clinical-status").map(|v| crate::search::token(v, CLINICAL)) {
            None => {}
            Some("active") => request.status = pb::ProblemStatus::Active as i32,
            Some("inactive") => request.status = pb::ProblemStatus::Inactive as i32,
            Some("resolved") => request.status = pb::ProblemStatus::Resolved as i32,
            Some(_) => violations.push(Violation::new(
                "clinical-status",
                "must be one of active, inactive or resolved (one at a time), or be left out for every problem",
            )),
        }
        match get("category").map(|v| crate::search::token(v, CATEGORY)) {
            None | Some("problem-list-item") => {}
            Some(_) => violations.push(Violation::new(
                "category",
                "must be problem-list-item: carelog serves the problem list only",
            )),
        }
        request
    })
}

/// The Condition resource for a problem as carelog answered it in a list
/// of `patient`'s. A problem with a status the gateway does not know, or
/// without a concept, is an error, never a resource a client could misread.
pub fn condition(p: &pb::Problem, patient: &str) -> Result<Value, Unrepresentable> {
    let status = match pb::ProblemStatus::try_from(p.status) {
        Ok(pb::ProblemStatus::Active) => "active",
        Ok(pb::ProblemStatus::Inactive) => "inactive",
        Ok(pb::ProblemStatus::Resolved) => "resolved",
        _ => {
            return Err(Unrepresentable(
                "a problem with a status the gateway does not know",
            ));
        }
    };
    if p.concept_id.is_empty() {
        return Err(Unrepresentable("a problem with no concept"));
    }
    let mut meta = Map::new();
    meta.insert("profile".into(), json!([UK_CORE_CONDITION]));
    if p.confidential {
        meta.insert("security".into(), crate::patient::restricted());
    }
    let mut out = Map::new();
    out.insert("resourceType".into(), json!("Condition"));
    out.insert("id".into(), json!(p.entry_id));
    out.insert("meta".into(), Value::Object(meta));
    out.insert(
        "clinicalStatus".into(),
        json!({ "coding": [{ "system": CLINICAL, "code": status }] }),
    );
    out.insert(
        "category".into(),
        json!([{ "coding": [{ "system": CATEGORY, "code": "problem-list-item", "display": "Problem List Item" }] }]),
    );
    out.insert(
        "code".into(),
        json!({
            "coding": [{ "system": SNOMED, "code": p.concept_id, "display": p.display }],
            "text": p.display,
        }),
    );
    out.insert(
        "subject".into(),
        json!({ "reference": format!("Patient/{patient}") }),
    );
    // The entry's clinical time: when the problem was noted as being, as
    // GP Connect maps it (the time it was written is not in the list).
    if let Some(at) = p
        .effective_time
        .as_ref()
        .and_then(crate::patient::timestamp)
    {
        out.insert("onsetDateTime".into(), json!(at));
    }
    if !p.text.is_empty() {
        out.insert("note".into(), json!([{ "text": p.text }]));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hypertension() -> pb::Problem {
        pb::Problem {
            entry_id: "0193a5b0-7c1e-7000-8000-0000000000c1".into(),
            consultation_id: "0193a5b0-7c1e-7000-8000-0000000000c0".into(),
            concept_id: "38341003".into(),
            display: "Hypertensive disorder".into(),
            status: pb::ProblemStatus::Active as i32,
            significance: pb::ProblemSignificance::Major as i32,
            effective_time: Some(prost_types::Timestamp {
                seconds: 1_765_000_000,
                nanos: 0,
            }),
            text: "home readings 150s over 90s".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_problem_is_a_problem_list_condition_coded_in_snomed() {
        let r = condition(&hypertension(), "p1").expect("represented");
        assert_eq!(r["resourceType"], "Condition");
        assert_eq!(r["clinicalStatus"]["coding"][0]["code"], "active");
        assert_eq!(r["category"][0]["coding"][0]["code"], "problem-list-item");
        assert_eq!(
            r["code"]["coding"][0],
            json!({ "system": SNOMED, "code": "38341003", "display": "Hypertensive disorder" })
        );
        assert_eq!(r["subject"]["reference"], "Patient/p1");
        assert_eq!(r["onsetDateTime"], "2025-12-06T05:46:40.000Z");
        assert_eq!(r["note"][0]["text"], "home readings 150s over 90s");
        let mut unknown = hypertension();
        unknown.status = 0;
        assert!(condition(&unknown, "p1").is_err());
    }

    #[test]
    fn the_problem_list_is_searched_by_status_or_whole() {
        let all = request(&crate::pairs(Some("patient=p1")), "").expect("all");
        assert_eq!(all.status, pb::ProblemStatus::Unspecified as i32);
        let resolved = request(
            &crate::pairs(Some(
                "patient=p1&clinical-status=resolved&category=problem-list-item",
            )),
            "",
        )
        .expect("resolved");
        assert_eq!(resolved.status, pb::ProblemStatus::Resolved as i32);
        let fields = |text: &str| -> Vec<String> {
            request(&crate::pairs(Some(text)), "")
                .expect_err("refused")
                .into_iter()
                .map(|v| v.field)
                .collect()
        };
        assert_eq!(
            fields("patient=p1&category=encounter-diagnosis"),
            ["category"]
        );
        assert_eq!(
            fields("patient=p1&clinical-status=active,resolved"),
            ["clinical-status"]
        );
        assert_eq!(fields("clinical-status=active"), ["patient"]);
    }
}
