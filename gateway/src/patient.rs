//! carelog's patient as a FHIR R4 Patient resource, following the UK Core
//! profile's identifiers and extensions (ADR 0035). Pure: no I/O.

use carelog_proto::demographics::v1 as pb;
use carelog_proto::kernel::v1::PartialDate;
use serde_json::{Map, Value, json};

/// The NHS number's identifier system.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// The ODS organisation code's identifier system.
pub const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const UK_CORE_PATIENT: &str = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient";
pub const VERIFICATION_EXTENSION: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus";
pub const VERIFICATION_SYSTEM: &str =
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland";
const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
const OBSERVATION_VALUE: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// The confidentiality label of a restricted record or a confidential
/// item (`meta.security`).
pub(crate) fn restricted() -> Value {
    json!([{ "system": CONFIDENTIALITY, "code": "R", "display": "restricted" }])
}

/// A partial date as FHIR writes it: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`
/// (valid as `date` and as `dateTime`). None for an empty one.
pub fn partial_date(date: Option<&PartialDate>) -> Option<String> {
    carelog_kernel::date::PartialDate::from_proto(date)
        .ok()
        .map(|d| d.iso())
}

fn verification(status: i32) -> Option<(&'static str, &'static str)> {
    use pb::NhsNumberVerificationStatus as S;
    Some(match S::try_from(status).ok()? {
        S::Verified => ("01", "Number present and verified"),
        S::NotTraced => ("02", "Number present but not traced"),
        S::TraceRequired => ("03", "Trace required"),
        S::TraceNoMatch => ("04", "Trace attempted - No match or multiple match found"),
        S::TraceConflict => (
            "05",
            "Trace needs to be resolved - (NHS number or patient detail conflict)",
        ),
        S::TraceInProgress => ("06", "Trace in progress"),
        S::NotPresent => ("07", "Number not present and trace not required"),
        S::TracePostponed => ("08", "Trace postponed (baby under six weeks old)"),
        S::Unspecified => return None,
    })
}

fn gender(gender: i32) -> Option<&'static str> {
    use pb::AdministrativeGender as G;
    Some(match G::try_from(gender).ok()? {
        G::Male => "male",
        G::Female => "female",
        G::Other => "other",
        G::Unknown => "unknown",
        G::Unspecified => return None,
    })
}

fn address(a: &pb::Address) -> Value {
    use pb::AddressUse as U;
    let mut out = Map::new();
    let use_ = match U::try_from(a.r#use).unwrap_or(U::Unspecified) {
        U::Home => Some("home"),
        U::Temporary => Some("temp"),
        U::Billing => Some("billing"),
        U::Work => Some("work"),
        U::Unspecified => None,
    };
    if let Some(u) = use_ {
        out.insert("use".into(), json!(u));
    }
    if !a.lines.is_empty() {
        out.insert("line".into(), json!(a.lines));
    }
    for (key, value) in [
        ("city", &a.city),
        ("district", &a.district),
        ("postalCode", &a.postcode),
    ] {
        if !value.is_empty() {
            out.insert(key.into(), json!(value));
        }
    }
    Value::Object(out)
}

fn telecom(c: &pb::ContactPoint) -> Value {
    use pb::{ContactSystem as S, ContactUse as U};
    let mut out = Map::new();
    let system = match S::try_from(c.system).unwrap_or(S::Unspecified) {
        S::Phone => Some("phone"),
        S::Email => Some("email"),
        S::Sms => Some("sms"),
        S::Unspecified => None,
    };
    if let Some(s) = system {
        out.insert("system".into(), json!(s));
    }
    out.insert("value".into(), json!(c.value));
    let use_ = match U::try_from(c.r#use).unwrap_or(U::Unspecified) {
        U::Home => Some("home"),
        U::Work => Some("work"),
        U::Mobile => Some("mobile"),
        U::Temporary => Some("temp"),
        U::Unspecified => None,
    };
    if let Some(u) = use_ {
        out.insert("use".into(), json!(u));
    }
    Value::Object(out)
}

fn reference(patient_id: &str, kind: &str) -> Value {
    json!({ "other": { "reference": format!("Patient/{patient_id}") }, "type": kind })
}

/// The Patient resource for a patient as carelog answered it to this
/// caller: what was withheld from the caller is absent, and the resource
/// says that it was (`SUBSETTED`), and a restricted record carries the
/// restricted confidentiality label (the NHS "S flag").
pub fn patient(p: &pb::Patient) -> Value {
    let mut meta = Map::new();
    meta.insert("profile".into(), json!([UK_CORE_PATIENT]));
    if p.version > 0 {
        meta.insert("versionId".into(), json!(p.version.to_string()));
    }
    if let Some(at) = p.updated_at.as_ref().and_then(timestamp) {
        meta.insert("lastUpdated".into(), json!(at));
    }
    if p.restricted {
        meta.insert("security".into(), restricted());
    }
    if p.withheld || p.identity_only {
        meta.insert(
            "tag".into(),
            json!([{ "system": OBSERVATION_VALUE, "code": "SUBSETTED", "display": "subsetted" }]),
        );
    }
    let mut out = Map::new();
    out.insert("resourceType".into(), json!("Patient"));
    out.insert("id".into(), json!(p.patient_id));
    out.insert("meta".into(), Value::Object(meta));
    let details = p.details.clone().unwrap_or_default();
    if !details.nhs_number.is_empty() {
        let mut identifier = Map::new();
        identifier.insert("system".into(), json!(NHS_NUMBER_SYSTEM));
        identifier.insert("value".into(), json!(details.nhs_number));
        if let Some((code, display)) = verification(details.nhs_number_verification_status) {
            identifier.insert(
                "extension".into(),
                json!([{
                    "url": VERIFICATION_EXTENSION,
                    "valueCodeableConcept": { "coding": [{
                        "system": VERIFICATION_SYSTEM, "code": code, "display": display
                    }] }
                }]),
            );
        }
        out.insert("identifier".into(), json!([Value::Object(identifier)]));
    }
    // A merged record is no longer in use: its survivor holds the record.
    // A search hit shown as minimal identity says nothing of it.
    if !p.identity_only {
        out.insert("active".into(), json!(p.merged_into_patient_id.is_empty()));
    }
    if let Some(name) = &details.name {
        let mut n = Map::new();
        n.insert("use".into(), json!("official"));
        n.insert("family".into(), json!(name.family));
        if !name.given.is_empty() {
            n.insert("given".into(), json!(name.given));
        }
        if !name.prefix.is_empty() {
            n.insert("prefix".into(), json!([name.prefix]));
        }
        out.insert("name".into(), json!([Value::Object(n)]));
    }
    if !details.telecom.is_empty() {
        out.insert(
            "telecom".into(),
            Value::Array(details.telecom.iter().map(telecom).collect()),
        );
    }
    if let Some(g) = gender(details.gender) {
        out.insert("gender".into(), json!(g));
    }
    if let Some(born) = partial_date(details.birth_date.as_ref()) {
        out.insert("birthDate".into(), json!(born));
    }
    if p.deceased {
        match partial_date(p.date_of_death.as_ref()) {
            Some(died) => out.insert("deceasedDateTime".into(), json!(died)),
            None => out.insert("deceasedBoolean".into(), json!(true)),
        };
    }
    if !details.addresses.is_empty() {
        out.insert(
            "address".into(),
            Value::Array(details.addresses.iter().map(address).collect()),
        );
    }
    if !details.registered_practice_ods.is_empty() {
        out.insert(
            "generalPractitioner".into(),
            json!([{
                "type": "Organization",
                "identifier": { "system": ODS_SYSTEM, "value": details.registered_practice_ods }
            }]),
        );
    }
    let mut links: Vec<Value> = Vec::new();
    if !p.merged_into_patient_id.is_empty() {
        links.push(reference(&p.merged_into_patient_id, "replaced-by"));
    }
    links.extend(
        p.merged_patient_ids
            .iter()
            .map(|duplicate| reference(duplicate, "replaces")),
    );
    if !links.is_empty() {
        out.insert("link".into(), Value::Array(links));
    }
    Value::Object(out)
}

/// A protobuf timestamp as a FHIR `instant` (UTC).
pub fn timestamp(t: &prost_types::Timestamp) -> Option<String> {
    let nanos = u32::try_from(t.nanos).ok()?;
    chrono::DateTime::from_timestamp(t.seconds, nanos)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: i32, month: i32, day: i32) -> Option<PartialDate> {
        Some(PartialDate { year, month, day })
    }

    fn jane() -> pb::Patient {
        pb::Patient {
            patient_id: "0193a5b0-7c1e-7000-8000-000000000001".into(),
            details: Some(pb::PatientDetails {
                nhs_number: "9434765919".into(),
                nhs_number_verification_status: pb::NhsNumberVerificationStatus::Verified as i32,
                name: Some(pb::HumanName {
                    family: "Smith".into(),
                    given: vec!["Jane".into(), "Anne".into()],
                    prefix: "Mrs".into(),
                }),
                birth_date: date(1980, 3, 14),
                gender: pb::AdministrativeGender::Female as i32,
                addresses: vec![pb::Address {
                    r#use: pb::AddressUse::Home as i32,
                    lines: vec!["1 Park Row".into()],
                    city: "Leeds".into(),
                    district: String::new(),
                    postcode: "LS1 5HD".into(),
                }],
                telecom: vec![pb::ContactPoint {
                    system: pb::ContactSystem::Phone as i32,
                    value: "0113 496 0000".into(),
                    r#use: pb::ContactUse::Mobile as i32,
                }],
                registered_practice_ods: "A81001".into(),
            }),
            version: 3,
            updated_at: Some(prost_types::Timestamp {
                seconds: 1_765_000_000,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_registered_patient_is_a_uk_core_patient_with_her_nhs_number_and_practice() {
        let r = patient(&jane());
        assert_eq!(r["resourceType"], "Patient");
        assert_eq!(r["identifier"][0]["system"], NHS_NUMBER_SYSTEM);
        assert_eq!(r["identifier"][0]["value"], "9434765919");
        assert_eq!(
            r["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"],
            "01"
        );
        assert_eq!(r["name"][0]["family"], "Smith");
        assert_eq!(r["name"][0]["given"], json!(["Jane", "Anne"]));
        assert_eq!(r["name"][0]["prefix"], json!(["Mrs"]));
        assert_eq!(r["gender"], "female");
        assert_eq!(r["birthDate"], "1980-03-14");
        assert_eq!(r["address"][0]["postalCode"], "LS1 5HD");
        assert_eq!(r["address"][0]["use"], "home");
        assert_eq!(r["telecom"][0]["use"], "mobile");
        assert_eq!(r["generalPractitioner"][0]["identifier"]["value"], "A81001");
        assert_eq!(
            r["generalPractitioner"][0]["identifier"]["system"],
            ODS_SYSTEM
        );
        assert_eq!(r["meta"]["versionId"], "3");
        assert_eq!(r["meta"]["lastUpdated"], "2025-12-06T05:46:40.000Z");
        assert_eq!(r["active"], true);
        assert!(r.get("deceasedDateTime").is_none());
        assert!(r["meta"].get("security").is_none());
    }

    #[test]
    fn a_death_known_only_to_the_month_keeps_its_precision() {
        let mut p = jane();
        p.deceased = true;
        p.date_of_death = date(2026, 11, 0);
        assert_eq!(patient(&p)["deceasedDateTime"], "2026-11");
        p.date_of_death = None;
        assert_eq!(patient(&p)["deceasedBoolean"], true);
        assert_eq!(
            partial_date(date(1931, 0, 0).as_ref()).as_deref(),
            Some("1931")
        );
        assert_eq!(partial_date(date(0, 0, 0).as_ref()), None);
    }

    #[test]
    fn a_restricted_record_is_labelled_restricted_and_subsetted() {
        let mut p = jane();
        p.restricted = true;
        p.withheld = true;
        if let Some(d) = p.details.as_mut() {
            d.addresses.clear();
            d.telecom.clear();
            d.registered_practice_ods.clear();
        }
        let r = patient(&p);
        assert_eq!(r["meta"]["security"][0]["code"], "R");
        assert_eq!(r["meta"]["tag"][0]["code"], "SUBSETTED");
        assert!(r.get("address").is_none());
        assert!(r.get("telecom").is_none());
        assert!(r.get("generalPractitioner").is_none());
    }

    #[test]
    fn a_merged_duplicate_is_inactive_and_points_at_its_survivor() {
        let mut duplicate = jane();
        duplicate.merged_into_patient_id = "0193a5b0-7c1e-7000-8000-000000000002".into();
        let r = patient(&duplicate);
        assert_eq!(r["active"], false);
        assert_eq!(r["link"][0]["type"], "replaced-by");
        assert_eq!(
            r["link"][0]["other"]["reference"],
            "Patient/0193a5b0-7c1e-7000-8000-000000000002"
        );
        let mut survivor = jane();
        survivor.merged_patient_ids = vec!["0193a5b0-7c1e-7000-8000-000000000003".into()];
        let r = patient(&survivor);
        assert_eq!(r["active"], true);
        assert_eq!(r["link"][0]["type"], "replaces");
    }

    #[test]
    fn a_hit_shown_as_minimal_identity_does_not_claim_to_be_active() {
        let mut hit = jane();
        hit.identity_only = true;
        let r = patient(&hit);
        assert!(r.get("active").is_none(), "{r}");
        assert_eq!(r["meta"]["tag"][0]["code"], "SUBSETTED");
    }
}
