//! carelog's medication authorisations as FHIR R4 MedicationRequest
//! resources (UK Core, intent `plan`: what the prescriber authorised, of
//! which issues are made), and the search that lists a patient's. Pure.

use carelog_proto::medications::v1 as pb;
use serde_json::{Map, Value, json};

use crate::allergy::SNOMED;
use crate::outcome::Unrepresentable;
use crate::outcome::Violation;
use crate::patient::partial_date;

const UK_CORE_MEDICATION_REQUEST: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/UKCore-MedicationRequest";
const REPEAT_INFORMATION: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-MedicationRepeatInformation";
const STATUS: &str = "http://hl7.org/fhir/CodeSystem/medicationrequest-status";
const COURSE_OF_THERAPY: &str =
    "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy";

/// The search parameters of MedicationRequest, with what each does.
pub const PARAMETERS: [(&str, &str, &str); 2] = [
    (
        "patient",
        "reference",
        "Required: the patient, as Patient/<id>, this server's full URL of it, or the id",
    ),
    (
        "status",
        "token",
        "active: what can still be issued (not stopped, issues left). Left out: every authorisation, stopped and completed ones too. carelog cannot list the stopped or completed ones alone",
    ),
];

const NAMES: [&str; 1] = ["status"];

/// The FHIR name of a field of ListMedicationsRequest.
pub fn parameter_of(field: &str) -> &str {
    match field {
        "patient_id" => "patient",
        "include_discontinued" => "status",
        other => crate::search::paging_parameter_of(other),
    }
}

/// A query string's pairs as a ListMedications request.
/// `base` is this server's FHIR base URL (a patient may be referred to by
/// its full URL).
pub fn request(
    pairs: &[(String, String)],
    base: &str,
) -> Result<pb::ListMedicationsRequest, Vec<Violation>> {
    crate::search::patient_list(pairs, base, &NAMES, |list, get, violations| {
        let mut request = pb::ListMedicationsRequest {
            patient_id: list.patient_id,
            page_size: list.page_size,
            page_token: list.page_token,
            ..Default::default()
        };
        // FHIR: no status is every status.
        request.include_discontinued = match get("status").map(|v| crate::search::token(v, STATUS))
        {
            None => true,
            Some("active") => false,
            Some(_) => {
                violations.push(Violation::new(
                    "status",
                    "must be active (the current medication list), or be left out for every authorisation",
                ));
                false
            }
        };
        request
    })
}

/// A decimal string as a JSON number (the quantity: "28", "12.5", and
/// "028", which carelog accepts and JSON does not).
fn decimal(text: &str) -> Option<Value> {
    let text = text.trim();
    let digits = text.trim_start_matches('0');
    let text = if digits.is_empty() || digits.starts_with('.') {
        format!("0{digits}")
    } else {
        digits.to_owned()
    };
    text.parse::<serde_json::Number>().ok().map(Value::Number)
}

/// Whether every issue an authorisation allows has been made: an acute
/// issued once, a repeat issued as often as authorised. FHIR calls such a
/// request `completed`; carelog keeps it active until it is stopped.
pub fn issues_used_up(a: &pb::Authorisation) -> bool {
    let details = a.details.as_ref();
    let repeat =
        details.is_some_and(|d| d.prescription_type == pb::PrescriptionType::Repeat as i32);
    let allowed = if repeat {
        details.map_or(1, |d| d.authorised_issues.max(1))
    } else {
        1
    };
    a.issues_made >= allowed
}

/// The MedicationRequest resource for an authorisation as carelog
/// answered it in a list of `patient`'s. An authorisation the gateway
/// cannot represent faithfully (no status it knows, no product) is an
/// error, never a resource a client could misread.
pub fn medication_request(a: &pb::Authorisation, patient: &str) -> Result<Value, Unrepresentable> {
    let details = a.details.clone().unwrap_or_default();
    let stopped = match pb::AuthorisationStatus::try_from(a.status) {
        Ok(pb::AuthorisationStatus::Active) => false,
        Ok(pb::AuthorisationStatus::Discontinued) => true,
        _ => {
            return Err(Unrepresentable(
                "an authorisation with a status the gateway does not know",
            ));
        }
    };
    let product = details
        .product
        .clone()
        .filter(|p| !p.code.is_empty())
        .ok_or(Unrepresentable("an authorisation with no product"))?;
    let repeat = details.prescription_type == pb::PrescriptionType::Repeat as i32;
    let mut meta = Map::new();
    meta.insert("profile".into(), json!([UK_CORE_MEDICATION_REQUEST]));
    if a.confidential {
        meta.insert("security".into(), crate::patient::restricted());
    }
    let mut out = Map::new();
    out.insert("resourceType".into(), json!("MedicationRequest"));
    out.insert("id".into(), json!(a.authorisation_id));
    out.insert("meta".into(), Value::Object(meta));
    // The issues made, for an acute too: one issued is no longer to issue.
    {
        let mut information = vec![json!({
            "url": "numberOfPrescriptionsIssued",
            "valueUnsignedInt": a.issues_made,
        })];
        if let Some(expiry) = partial_date(details.expiry_date.as_ref()) {
            information.push(json!({ "url": "authorisationExpiryDate", "valueDateTime": expiry }));
        }
        out.insert(
            "extension".into(),
            json!([{ "url": REPEAT_INFORMATION, "extension": information }]),
        );
    }
    let status = if stopped {
        "stopped"
    } else if issues_used_up(a) {
        "completed"
    } else {
        "active"
    };
    out.insert("status".into(), json!(status));
    if stopped && !a.discontinued_reason.is_empty() {
        out.insert(
            "statusReason".into(),
            json!({ "text": a.discontinued_reason }),
        );
    }
    out.insert("intent".into(), json!("plan"));
    out.insert(
        "medicationCodeableConcept".into(),
        json!({
            "coding": [{ "system": SNOMED, "code": product.code, "display": product.display }],
            "text": product.display,
        }),
    );
    out.insert(
        "subject".into(),
        json!({ "reference": format!("Patient/{patient}") }),
    );
    let authorised = partial_date(a.authorised_on.as_ref());
    if let Some(on) = &authorised {
        out.insert("authoredOn".into(), json!(on));
    }
    let (code, display) = if repeat {
        ("continuous", "Continuous long term therapy")
    } else {
        ("acute", "Short course (acute) therapy")
    };
    out.insert(
        "courseOfTherapyType".into(),
        json!({ "coding": [{ "system": COURSE_OF_THERAPY, "code": code, "display": display }] }),
    );
    if !details.dose_instructions.is_empty() {
        out.insert(
            "dosageInstruction".into(),
            json!([{ "text": details.dose_instructions }]),
        );
    }
    let mut dispense = Map::new();
    let mut validity = Map::new();
    if let Some(on) = authorised {
        validity.insert("start".into(), json!(on));
    }
    if let Some(expiry) = partial_date(details.expiry_date.as_ref()) {
        validity.insert("end".into(), json!(expiry));
    }
    if !validity.is_empty() {
        dispense.insert("validityPeriod".into(), Value::Object(validity));
    }
    // Repeats allowed after the first issue.
    let allowed = if repeat {
        details.authorised_issues.saturating_sub(1)
    } else {
        0
    };
    dispense.insert("numberOfRepeatsAllowed".into(), json!(allowed));
    let quantity = decimal(&details.quantity).ok_or(Unrepresentable(
        "an authorisation whose quantity is not a decimal",
    ))?;
    dispense.insert(
        "quantity".into(),
        json!({ "value": quantity, "unit": details.quantity_unit }),
    );
    if details.supply_days > 0 {
        dispense.insert(
            "expectedSupplyDuration".into(),
            json!({
                "value": details.supply_days,
                "unit": "day",
                "system": "http://unitsofmeasure.org",
                "code": "d",
            }),
        );
    }
    out.insert("dispenseRequest".into(), Value::Object(dispense));
    if !a.replaces_authorisation_id.is_empty() {
        out.insert(
            "priorPrescription".into(),
            json!({ "reference": format!("MedicationRequest/{}", a.replaces_authorisation_id) }),
        );
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use carelog_proto::kernel::v1::PartialDate;

    fn date(year: i32, month: i32, day: i32) -> Option<PartialDate> {
        Some(PartialDate { year, month, day })
    }

    fn clarithromycin_repeat() -> pb::Authorisation {
        pb::Authorisation {
            authorisation_id: "0193a5b0-7c1e-7000-8000-0000000000b1".into(),
            patient_id: "0193a5b0-7c1e-7000-8000-000000000001".into(),
            details: Some(pb::AuthorisationDetails {
                product: Some(pb::Coding {
                    code: "324430000".into(),
                    display: "Clarithromycin 500mg tablets".into(),
                }),
                dose_instructions: "one tablet twice a day".into(),
                quantity: "12.5".into(),
                quantity_unit: "tablet".into(),
                prescription_type: pb::PrescriptionType::Repeat as i32,
                authorised_issues: 6,
                review_date: date(2027, 3, 1),
                expiry_date: date(2027, 6, 1),
                supply_days: 28,
            }),
            status: pb::AuthorisationStatus::Active as i32,
            authorised_on: date(2026, 12, 1),
            issues_made: 2,
            ..Default::default()
        }
    }

    #[test]
    fn a_repeat_is_a_continuous_plan_with_its_repeats_and_issues_made() {
        let r = medication_request(&clarithromycin_repeat(), "p1").expect("represented");
        assert_eq!(r["resourceType"], "MedicationRequest");
        assert_eq!(r["status"], "active");
        assert_eq!(r["intent"], "plan");
        assert_eq!(
            r["medicationCodeableConcept"]["coding"][0]["system"],
            SNOMED
        );
        assert_eq!(
            r["medicationCodeableConcept"]["coding"][0]["code"],
            "324430000"
        );
        assert_eq!(r["courseOfTherapyType"]["coding"][0]["code"], "continuous");
        assert_eq!(r["dosageInstruction"][0]["text"], "one tablet twice a day");
        assert_eq!(r["authoredOn"], "2026-12-01");
        let dispense = &r["dispenseRequest"];
        assert_eq!(dispense["numberOfRepeatsAllowed"], 5);
        assert_eq!(
            dispense["quantity"],
            json!({ "value": 12.5, "unit": "tablet" })
        );
        assert_eq!(dispense["validityPeriod"]["end"], "2027-06-01");
        assert_eq!(dispense["expectedSupplyDuration"]["value"], 28);
        assert_eq!(r["extension"][0]["url"], REPEAT_INFORMATION);
        assert_eq!(
            r["extension"][0]["extension"],
            json!([
                { "url": "numberOfPrescriptionsIssued", "valueUnsignedInt": 2 },
                { "url": "authorisationExpiryDate", "valueDateTime": "2027-06-01" }
            ])
        );
    }

    #[test]
    fn a_stopped_acute_says_why_and_what_it_replaced() {
        let mut a = clarithromycin_repeat();
        if let Some(d) = a.details.as_mut() {
            d.prescription_type = pb::PrescriptionType::Acute as i32;
            d.authorised_issues = 1;
        }
        a.status = pb::AuthorisationStatus::Discontinued as i32;
        a.discontinued_reason = "rash on day two".into();
        a.replaces_authorisation_id = "0193a5b0-7c1e-7000-8000-0000000000b0".into();
        let r = medication_request(&a, "p1").expect("represented");
        assert_eq!(r["status"], "stopped");
        assert_eq!(r["statusReason"]["text"], "rash on day two");
        assert_eq!(r["courseOfTherapyType"]["coding"][0]["code"], "acute");
        assert_eq!(r["dispenseRequest"]["numberOfRepeatsAllowed"], 0);
        assert_eq!(r["extension"][0]["extension"][0]["valueUnsignedInt"], 2);
        assert_eq!(
            r["priorPrescription"]["reference"],
            "MedicationRequest/0193a5b0-7c1e-7000-8000-0000000000b0"
        );
    }

    #[test]
    fn an_acute_issued_and_a_repeat_used_up_are_completed() {
        let mut repeat = clarithromycin_repeat();
        repeat.issues_made = 6;
        let r = medication_request(&repeat, "p1").expect("represented");
        assert_eq!(r["status"], "completed");
        let mut acute = clarithromycin_repeat();
        if let Some(d) = acute.details.as_mut() {
            d.prescription_type = pb::PrescriptionType::Acute as i32;
            d.authorised_issues = 1;
        }
        acute.issues_made = 0;
        assert_eq!(
            medication_request(&acute, "p1").expect("represented")["status"],
            "active"
        );
        acute.issues_made = 1;
        let r = medication_request(&acute, "p1").expect("represented");
        assert_eq!(r["status"], "completed");
        assert_eq!(r["extension"][0]["extension"][0]["valueUnsignedInt"], 1);
    }

    #[test]
    fn a_quantity_carelog_accepts_is_always_shown() {
        assert_eq!(decimal("028"), Some(json!(28)));
        assert_eq!(decimal("0.5"), Some(json!(0.5)));
        assert_eq!(decimal("12.5"), Some(json!(12.5)));
        let mut a = clarithromycin_repeat();
        if let Some(d) = a.details.as_mut() {
            d.quantity = "lots".into();
        }
        assert!(medication_request(&a, "p1").is_err());
    }

    #[test]
    fn no_status_lists_every_authorisation_and_active_the_current_list() {
        let all = request(&crate::pairs(Some("patient=p1")), "").expect("all");
        assert!(all.include_discontinued);
        let current =
            request(&crate::pairs(Some("patient=Patient/p1&status=active")), "").expect("active");
        assert!(!current.include_discontinued);
        assert_eq!(current.patient_id, "p1");
        let token =
            "patient=p1&status=http://hl7.org/fhir/CodeSystem/medicationrequest-status|active";
        assert!(
            !request(&crate::pairs(Some(token)), "")
                .expect("a token with its system")
                .include_discontinued
        );
        let refused: Vec<String> = request(&crate::pairs(Some("patient=p1&status=stopped")), "")
            .expect_err("stopped alone")
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(refused, ["status"]);
    }

    #[test]
    fn an_authorisation_the_gateway_cannot_represent_is_an_error() {
        let mut a = clarithromycin_repeat();
        a.status = 0;
        assert!(medication_request(&a, "p1").is_err());
        let mut a = clarithromycin_repeat();
        if let Some(d) = a.details.as_mut() {
            d.product = None;
        }
        assert!(medication_request(&a, "p1").is_err());
    }
}
