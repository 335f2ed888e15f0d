//! A FHIR Patient a client creates, as carelog's RegisterPatient. Pure.
//!
//! Every element is read or refused: an element carelog does not keep
//! (a second name, an identifier of another system, a death recorded at
//! registration) is a 400 naming it, never dropped, so nothing a clerk
//! entered is silently lost.

use carelog_proto::demographics::v1 as pb;
use serde_json::{Map, Value};

use crate::outcome::Violation;
use crate::patient::{NHS_NUMBER_SYSTEM, ODS_SYSTEM, VERIFICATION_EXTENSION, VERIFICATION_SYSTEM};

/// The FHIRPath of a field of RegisterPatientRequest, for the errors the
/// service gives (`details.addresses[1].postcode` is
/// `Patient.address[1].postalCode`).
pub fn path_of(field: &str) -> String {
    if field == "request_id" {
        return "x-request-id".to_owned();
    }
    let Some(rest) = field.strip_prefix("details.") else {
        return field.to_owned();
    };
    let fixed = [
        ("name.family", "Patient.name[0].family"),
        ("name.given", "Patient.name[0].given"),
        ("name.prefix", "Patient.name[0].prefix"),
        ("name", "Patient.name"),
        ("birth_date", "Patient.birthDate"),
        ("gender", "Patient.gender"),
        ("registered_practice_ods", "Patient.generalPractitioner"),
        ("nhs_number", "Patient.identifier"),
        (
            "nhs_number_verification_status",
            "Patient.identifier.extension",
        ),
        ("addresses", "Patient.address"),
        ("telecom", "Patient.telecom"),
    ];
    if let Some((_, path)) = fixed.iter().find(|(f, _)| *f == rest) {
        return (*path).to_owned();
    }
    let renamed = rest
        .replace("addresses[", "address[")
        .replace(".lines", ".line")
        .replace(".postcode", ".postalCode");
    format!("Patient.{renamed}")
}

/// Refuses every key of `object` but `known`, naming it under `at`.
fn only(object: &Map<String, Value>, known: &[&str], at: &str, v: &mut Vec<Violation>) {
    for key in object.keys() {
        if !known.contains(&key.as_str()) {
            v.push(Violation::new(
                format!("{at}.{key}"),
                "is not kept by carelog; it is refused rather than dropped",
            ));
        }
    }
}

fn text(value: Option<&Value>, at: &str, v: &mut Vec<Violation>) -> String {
    match value {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            v.push(Violation::new(at, "must be a string"));
            String::new()
        }
    }
}

fn array<'a>(value: Option<&'a Value>, at: &str, v: &mut Vec<Violation>) -> &'a [Value] {
    match value {
        None => &[],
        Some(Value::Array(items)) => items,
        Some(_) => {
            v.push(Violation::new(at, "must be an array"));
            &[]
        }
    }
}

fn object<'a>(
    value: &'a Value,
    at: &str,
    v: &mut Vec<Violation>,
) -> Option<&'a Map<String, Value>> {
    let object = value.as_object();
    if object.is_none() {
        v.push(Violation::new(at, "must be an object"));
    }
    object
}

fn verification(identifier: &Map<String, Value>, at: &str, v: &mut Vec<Violation>) -> i32 {
    use pb::NhsNumberVerificationStatus as S;
    let extensions = array(identifier.get("extension"), &format!("{at}.extension"), v);
    let mut status = S::Unspecified as i32;
    for (i, extension) in extensions.iter().enumerate() {
        let at = format!("{at}.extension[{i}]");
        let Some(extension) = object(extension, &at, v) else {
            continue;
        };
        if extension.get("url").and_then(Value::as_str) != Some(VERIFICATION_EXTENSION) {
            v.push(Violation::new(
                &at,
                "only the NHS number verification status extension is kept",
            ));
            continue;
        }
        let coding = extension
            .get("valueCodeableConcept")
            .and_then(|c| c.get("coding"))
            .and_then(|c| c.get(0));
        let code = coding
            .filter(|c| c.get("system").and_then(Value::as_str) == Some(VERIFICATION_SYSTEM))
            .and_then(|c| c.get("code"))
            .and_then(Value::as_str);
        status = match code {
            Some("01") => S::Verified as i32,
            Some("02") => S::NotTraced as i32,
            Some("03") => S::TraceRequired as i32,
            Some("04") => S::TraceNoMatch as i32,
            Some("05") => S::TraceConflict as i32,
            Some("06") => S::TraceInProgress as i32,
            Some("07") => S::NotPresent as i32,
            Some("08") => S::TracePostponed as i32,
            _ => {
                v.push(Violation::new(
                    format!("{at}.valueCodeableConcept"),
                    "must be a code 01 to 08 of the NHS number verification status (England)",
                ));
                S::Unspecified as i32
            }
        };
    }
    status
}

/// The details of a Patient resource a client sent to be created.
pub fn details(resource: &Value) -> Result<pb::PatientDetails, Vec<Violation>> {
    let mut v = Vec::new();
    let Some(patient) = resource.as_object() else {
        return Err(vec![Violation::new(
            "Patient",
            "the body must be a JSON object",
        )]);
    };
    if patient.get("resourceType").and_then(Value::as_str) != Some("Patient") {
        v.push(Violation::new("resourceType", "must be Patient"));
    }
    only(
        patient,
        &[
            "resourceType",
            "meta",
            "identifier",
            "name",
            "gender",
            "birthDate",
            "address",
            "telecom",
            "generalPractitioner",
        ],
        "Patient",
        &mut v,
    );
    if let Some(meta) = patient.get("meta").and_then(Value::as_object) {
        // A profile claimed is harmless; a version or a security label
        // would claim what carelog decides.
        only(meta, &["profile"], "Patient.meta", &mut v);
    }
    let mut out = pb::PatientDetails::default();
    for (i, identifier) in array(patient.get("identifier"), "Patient.identifier", &mut v)
        .iter()
        .enumerate()
    {
        let at = format!("Patient.identifier[{i}]");
        let Some(identifier) = object(identifier, &at, &mut v) else {
            continue;
        };
        only(identifier, &["system", "value", "extension"], &at, &mut v);
        if identifier.get("system").and_then(Value::as_str) != Some(NHS_NUMBER_SYSTEM) {
            v.push(Violation::new(
                format!("{at}.system"),
                format!("only the NHS number ({NHS_NUMBER_SYSTEM}) is kept"),
            ));
            continue;
        }
        if !out.nhs_number.is_empty() {
            v.push(Violation::new(&at, "a patient has one NHS number"));
            continue;
        }
        out.nhs_number = text(identifier.get("value"), &format!("{at}.value"), &mut v);
        out.nhs_number_verification_status = verification(identifier, &at, &mut v);
    }
    let names = array(patient.get("name"), "Patient.name", &mut v);
    if names.len() > 1 {
        v.push(Violation::new("Patient.name", "carelog keeps one name"));
    }
    if let Some(name) = names
        .first()
        .and_then(|n| object(n, "Patient.name[0]", &mut v))
    {
        only(
            name,
            &["use", "family", "given", "prefix"],
            "Patient.name[0]",
            &mut v,
        );
        if let Some(use_) = name.get("use").and_then(Value::as_str)
            && use_ != "official"
            && use_ != "usual"
        {
            v.push(Violation::new(
                "Patient.name[0].use",
                "must be official or usual",
            ));
        }
        let given = array(name.get("given"), "Patient.name[0].given", &mut v)
            .iter()
            .enumerate()
            .map(|(i, g)| text(Some(g), &format!("Patient.name[0].given[{i}]"), &mut v))
            .collect();
        let prefixes = array(name.get("prefix"), "Patient.name[0].prefix", &mut v);
        if prefixes.len() > 1 {
            v.push(Violation::new(
                "Patient.name[0].prefix",
                "carelog keeps one prefix",
            ));
        }
        out.name = Some(pb::HumanName {
            family: text(name.get("family"), "Patient.name[0].family", &mut v),
            given,
            prefix: text(prefixes.first(), "Patient.name[0].prefix[0]", &mut v),
        });
    }
    out.gender = match patient.get("gender").and_then(Value::as_str) {
        None => pb::AdministrativeGender::Unspecified as i32,
        Some("male") => pb::AdministrativeGender::Male as i32,
        Some("female") => pb::AdministrativeGender::Female as i32,
        Some("other") => pb::AdministrativeGender::Other as i32,
        Some("unknown") => pb::AdministrativeGender::Unknown as i32,
        Some(_) => {
            v.push(Violation::new(
                "Patient.gender",
                "must be male, female, other or unknown",
            ));
            pb::AdministrativeGender::Unspecified as i32
        }
    };
    let born = text(patient.get("birthDate"), "Patient.birthDate", &mut v);
    if !born.is_empty() {
        match carelog_kernel::date::PartialDate::parse_iso(&born) {
            Ok(d) => out.birth_date = Some(d.to_proto()),
            Err(e) => v.push(Violation::new("Patient.birthDate", e.to_string())),
        }
    }
    for (i, address) in array(patient.get("address"), "Patient.address", &mut v)
        .iter()
        .enumerate()
    {
        let at = format!("Patient.address[{i}]");
        let Some(address) = object(address, &at, &mut v) else {
            continue;
        };
        only(
            address,
            &["use", "line", "city", "district", "postalCode"],
            &at,
            &mut v,
        );
        let use_ = match address.get("use").and_then(Value::as_str) {
            None => pb::AddressUse::Unspecified,
            Some("home") => pb::AddressUse::Home,
            Some("temp") => pb::AddressUse::Temporary,
            Some("billing") => pb::AddressUse::Billing,
            Some("work") => pb::AddressUse::Work,
            Some(_) => {
                v.push(Violation::new(
                    format!("{at}.use"),
                    "must be home, temp, billing or work",
                ));
                pb::AddressUse::Unspecified
            }
        };
        let lines = array(address.get("line"), &format!("{at}.line"), &mut v)
            .iter()
            .enumerate()
            .map(|(j, l)| text(Some(l), &format!("{at}.line[{j}]"), &mut v))
            .collect();
        out.addresses.push(pb::Address {
            r#use: use_ as i32,
            lines,
            city: text(address.get("city"), &format!("{at}.city"), &mut v),
            district: text(address.get("district"), &format!("{at}.district"), &mut v),
            postcode: text(
                address.get("postalCode"),
                &format!("{at}.postalCode"),
                &mut v,
            ),
        });
    }
    for (i, contact) in array(patient.get("telecom"), "Patient.telecom", &mut v)
        .iter()
        .enumerate()
    {
        let at = format!("Patient.telecom[{i}]");
        let Some(contact) = object(contact, &at, &mut v) else {
            continue;
        };
        only(contact, &["system", "value", "use"], &at, &mut v);
        let system = match contact.get("system").and_then(Value::as_str) {
            Some("phone") => pb::ContactSystem::Phone,
            Some("email") => pb::ContactSystem::Email,
            Some("sms") => pb::ContactSystem::Sms,
            _ => {
                v.push(Violation::new(
                    format!("{at}.system"),
                    "must be phone, email or sms",
                ));
                pb::ContactSystem::Unspecified
            }
        };
        let use_ = match contact.get("use").and_then(Value::as_str) {
            None => pb::ContactUse::Unspecified,
            Some("home") => pb::ContactUse::Home,
            Some("work") => pb::ContactUse::Work,
            Some("mobile") => pb::ContactUse::Mobile,
            Some("temp") => pb::ContactUse::Temporary,
            Some(_) => {
                v.push(Violation::new(
                    format!("{at}.use"),
                    "must be home, work, mobile or temp",
                ));
                pb::ContactUse::Unspecified
            }
        };
        out.telecom.push(pb::ContactPoint {
            system: system as i32,
            value: text(contact.get("value"), &format!("{at}.value"), &mut v),
            r#use: use_ as i32,
        });
    }
    let practices = array(
        patient.get("generalPractitioner"),
        "Patient.generalPractitioner",
        &mut v,
    );
    if practices.len() > 1 {
        v.push(Violation::new(
            "Patient.generalPractitioner",
            "carelog keeps one registered practice",
        ));
    }
    if let Some(practice) = practices
        .first()
        .and_then(|p| object(p, "Patient.generalPractitioner[0]", &mut v))
    {
        let at = "Patient.generalPractitioner[0]";
        only(practice, &["type", "identifier"], at, &mut v);
        let identifier = practice.get("identifier").and_then(Value::as_object);
        match identifier {
            Some(id) if id.get("system").and_then(Value::as_str) == Some(ODS_SYSTEM) => {
                only(
                    id,
                    &["system", "value"],
                    &format!("{at}.identifier"),
                    &mut v,
                );
                out.registered_practice_ods =
                    text(id.get("value"), &format!("{at}.identifier.value"), &mut v);
            }
            _ => v.push(Violation::new(
                format!("{at}.identifier"),
                format!("must name the practice by its ODS code ({ODS_SYSTEM})"),
            )),
        }
    }
    if v.is_empty() { Ok(out) } else { Err(v) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carelog_proto::kernel::v1::PartialDate;
    use serde_json::json;

    fn jane() -> Value {
        json!({
            "resourceType": "Patient",
            "identifier": [{
                "system": NHS_NUMBER_SYSTEM,
                "value": "9434765919",
                "extension": [{
                    "url": VERIFICATION_EXTENSION,
                    "valueCodeableConcept": { "coding": [{ "system": VERIFICATION_SYSTEM, "code": "01" }] }
                }]
            }],
            "name": [{ "use": "official", "family": "Smith", "given": ["Jane"], "prefix": ["Mrs"] }],
            "gender": "female",
            "birthDate": "1950-03",
            "address": [{ "use": "home", "line": ["1 Park Row"], "city": "Leeds", "postalCode": "LS1 5AB" }],
            "telecom": [{ "system": "phone", "value": "0113 496 0000", "use": "home" }],
            "generalPractitioner": [{ "type": "Organization", "identifier": { "system": ODS_SYSTEM, "value": "A81001" } }]
        })
    }

    #[test]
    fn a_uk_core_patient_becomes_the_details_carelog_registers() {
        let d = details(&jane()).expect("details");
        assert_eq!(d.nhs_number, "9434765919");
        assert_eq!(
            d.nhs_number_verification_status,
            pb::NhsNumberVerificationStatus::Verified as i32
        );
        let name = d.name.expect("name");
        assert_eq!(
            (name.family.as_str(), name.prefix.as_str()),
            ("Smith", "Mrs")
        );
        assert_eq!(name.given, ["Jane"]);
        assert_eq!(d.gender, pb::AdministrativeGender::Female as i32);
        assert_eq!(
            d.birth_date,
            Some(PartialDate {
                year: 1950,
                month: 3,
                day: 0
            })
        );
        assert_eq!(d.addresses[0].postcode, "LS1 5AB");
        assert_eq!(d.addresses[0].r#use, pb::AddressUse::Home as i32);
        assert_eq!(d.telecom[0].system, pb::ContactSystem::Phone as i32);
        assert_eq!(d.registered_practice_ods, "A81001");
    }

    #[test]
    fn an_element_carelog_does_not_keep_is_refused_by_its_path_not_dropped() {
        let mut p = jane();
        p["deceasedBoolean"] = json!(true);
        p["name"][0]["suffix"] = json!(["PhD"]);
        p["address"][0]["country"] = json!("GBR");
        p["identifier"][0]["system"] = json!("https://example.org/mrn");
        let fields: Vec<String> = details(&p)
            .expect_err("refused")
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(
            fields,
            [
                "Patient.deceasedBoolean",
                "Patient.identifier[0].system",
                "Patient.name[0].suffix",
                "Patient.address[0].country"
            ]
        );
        let mut two_names = jane();
        two_names["name"] = json!([{ "family": "Smith" }, { "family": "Jones" }]);
        assert!(details(&two_names).is_err());
        assert!(details(&json!({ "resourceType": "Observation" })).is_err());
    }

    #[test]
    fn the_services_field_names_are_given_as_fhir_paths() {
        assert_eq!(path_of("details.name.family"), "Patient.name[0].family");
        assert_eq!(
            path_of("details.addresses[1].postcode"),
            "Patient.address[1].postalCode"
        );
        assert_eq!(
            path_of("details.addresses[0].lines"),
            "Patient.address[0].line"
        );
        assert_eq!(
            path_of("details.telecom[0].value"),
            "Patient.telecom[0].value"
        );
        assert_eq!(path_of("details.nhs_number"), "Patient.identifier");
        assert_eq!(path_of("request_id"), "x-request-id");
    }
}
