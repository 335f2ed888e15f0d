//! FHIR Patient search parameters to carelog's SearchPatients. Pure.
//!
//! A parameter carelog cannot honour is refused, never ignored: a search
//! that silently dropped a filter would hand a clinician the wrong
//! patients (FHIR lets a server choose strict handling).

use carelog_proto::demographics::v1 as pb;
use carelog_proto::kernel::v1::PartialDate;

use crate::outcome::Violation;
use crate::patient::NHS_NUMBER_SYSTEM;

/// The search parameters served, with what each does (also the
/// CapabilityStatement's documentation).
pub const PARAMETERS: [(&str, &str, &str); 4] = [
    (
        "identifier",
        "token",
        "The NHS number, as https://fhir.nhs.uk/Id/nhs-number|9434765919 or the bare number",
    ),
    (
        "family",
        "string",
        "The family name starts with it (any case, two characters at least). family:exact with birthdate: the whole family name",
    ),
    (
        "birthdate",
        "date",
        "Only with family:exact: YYYY, YYYY-MM or YYYY-MM-DD (no prefix but eq); a partially known date of birth matches where it may fall",
    ),
    (
        "address-postalcode",
        "string",
        "A full UK postcode, e.g. LS1 5HD",
    ),
];

/// Every parameter name a Patient search accepts besides `COMMON`.
const NAMES: [&str; 5] = [
    "identifier",
    "family",
    "family:exact",
    "birthdate",
    "address-postalcode",
];

/// The parameters of every search: the page (`_count`, 1 to 200, default
/// 50; `_page_token`, from the Bundle's next link) and `_format`.
pub const COMMON: [&str; 3] = ["_count", "_page_token", "_format"];

const ONE_WAY: &str =
    "search one way: identifier; family; family:exact with birthdate; or address-postalcode";

/// The FHIR name of a field of SearchPatientsRequest, for the errors the
/// service gives.
pub fn parameter_of(field: &str) -> &str {
    match field {
        "nhs_number" => "identifier",
        "family_name" => "family:exact",
        "family_name_prefix" => "family",
        "birth_date" => "birthdate",
        "postcode" => "address-postalcode",
        other => paging_parameter_of(other),
    }
}

/// The FHIR name of the page fields every list request has.
pub fn paging_parameter_of(field: &str) -> &str {
    match field {
        "page_size" => "_count",
        "page_token" => "_page_token",
        other => other,
    }
}

/// Parameters named once each, every name one of `names` or `COMMON`,
/// none empty: the checks every search shares. Returns the value of a
/// parameter by name.
pub fn checked<'p>(
    pairs: &'p [(String, String)],
    names: &[&str],
    violations: &mut Vec<Violation>,
) -> impl Fn(&str) -> Option<&'p str> + use<'p> {
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in pairs {
        if name.is_empty() {
            violations.push(Violation::new("query", "holds a parameter without a name"));
        } else if seen.contains(&name.as_str()) {
            violations.push(Violation::new(name, "is given more than once"));
        } else if !names.contains(&name.as_str()) && !COMMON.contains(&name.as_str()) {
            let supported: Vec<&str> = names.iter().chain(&COMMON[..2]).copied().collect();

            violations.push(Violation::new(
                name,
                format!(
                    "is not a search parameter carelog supports here (supported: {}); it is refused rather than ignored",
                    supported.join(", ")
                ),
            ));
        } else if value.trim().is_empty() {
            violations.push(Violation::new(name, "is empty"));
        }
        seen.push(name);
    }
    move |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// The patient a search is about, from its `patient` parameter:
/// `Patient/<id>`, `<base>/Patient/<id>` (this server's) or the bare id.
/// A reference to another server's patient is refused.
pub fn patient(
    pairs: &[(String, String)],
    value: Option<&str>,
    base: &str,
    violations: &mut Vec<Violation>,
) -> String {
    let Some(value) = value else {
        // (an empty one is already refused as empty)
        if !pairs.iter().any(|(n, _)| n == "patient") {
            violations.push(Violation::new(
                "patient",
                "is required: the patient whose record to list",
            ));
        }
        return String::new();
    };
    let local = value
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(value);
    if local.contains("://") {
        violations.push(Violation::new(
            "patient",
            format!("refers to another server's patient: give Patient/<id> or {base}/Patient/<id>"),
        ));
        return String::new();
    }
    local.strip_prefix("Patient/").unwrap_or(local).to_owned()
}

/// What every list of one patient's items is asked by.
#[derive(Debug)]
pub struct PatientList {
    pub patient_id: String,
    pub page_size: i32,
    pub page_token: String,
}

/// A search of one patient's items: `patient`, the page and `names` (the
/// list's own parameters) checked, and `build` making the service's
/// request from them, reading its own parameters with `get` and naming
/// what is wrong in `violations`.
pub fn patient_list<'p, R>(
    pairs: &'p [(String, String)],
    base: &str,
    names: &[&str],
    build: impl FnOnce(PatientList, &dyn Fn(&str) -> Option<&'p str>, &mut Vec<Violation>) -> R,
) -> Result<R, Vec<Violation>> {
    let mut violations = Vec::new();
    let known: Vec<&str> = std::iter::once("patient")
        .chain(names.iter().copied())
        .collect();
    let get = checked(pairs, &known, &mut violations);
    let list = PatientList {
        patient_id: patient(pairs, get("patient"), base, &mut violations),
        page_size: page_size(get("_count"), &mut violations),
        page_token: get("_page_token").unwrap_or_default().to_owned(),
    };
    let request = build(list, &get, &mut violations);
    if violations.is_empty() {
        Ok(request)
    } else {
        Err(violations)
    }
}

/// A token parameter's code, given bare or as `system|code`.
pub fn token<'v>(value: &'v str, system: &str) -> &'v str {
    value
        .strip_prefix(system)
        .and_then(|v| v.strip_prefix('|'))
        .unwrap_or(value)
}

/// `_count`, when given: 1 to 200.
pub fn page_size(count: Option<&str>, violations: &mut Vec<Violation>) -> i32 {
    match count.map(str::parse::<i32>) {
        None => 0,
        Some(Ok(n)) if (1..=200).contains(&n) => n,
        Some(_) => {
            violations.push(Violation::new(
                "_count",
                "must be a whole number from 1 to 200",
            ));
            0
        }
    }
}

/// A query string's pairs as a SearchPatients request.
pub fn request(pairs: &[(String, String)]) -> Result<pb::SearchPatientsRequest, Vec<Violation>> {
    let mut violations = Vec::new();
    let get = checked(pairs, &NAMES, &mut violations);
    let mut request = pb::SearchPatientsRequest::default();
    if let Some(identifier) = get("identifier") {
        let (system, value) = identifier.split_once('|').unwrap_or(("", identifier));
        if !system.is_empty() && system != NHS_NUMBER_SYSTEM {
            violations.push(Violation::new(
                "identifier",
                format!("only the NHS number ({NHS_NUMBER_SYSTEM}) is searchable"),
            ));
        } else if value.is_empty() {
            violations.push(Violation::new("identifier", "names no NHS number"));
        } else {
            request.nhs_number = value.to_owned();
        }
    }
    let birth_date = get("birthdate");
    if let Some(family) = get("family") {
        if birth_date.is_some() {
            violations.push(Violation::new(
                "family",
                "with birthdate, carelog matches the whole family name: use family:exact",
            ));
        } else {
            request.family_name_prefix = family.to_owned();
        }
    }
    if let Some(family) = get("family:exact") {
        if birth_date.is_none() {
            violations.push(Violation::new(
                "family:exact",
                "is used with birthdate; alone, search by family (the start of the name)",
            ));
        } else {
            request.family_name = family.to_owned();
        }
    }
    if let Some(date) = birth_date {
        if get("family:exact").is_none() {
            // (with family, the violation names family)
            if get("family").is_none() {
                violations.push(Violation::new(
                    "birthdate",
                    "is used only with family:exact",
                ));
            }
        } else {
            match birthdate(date) {
                Some(d) => request.birth_date = Some(d),
                None => violations.push(Violation::new(
                    "birthdate",
                    "must be YYYY, YYYY-MM or YYYY-MM-DD, with no prefix or eq",
                )),
            }
        }
    }
    if let Some(postcode) = get("address-postalcode") {
        request.postcode = postcode.to_owned();
    }
    request.page_size = page_size(get("_count"), &mut violations);
    if let Some(token) = get("_page_token") {
        request.page_token = token.to_owned();
    }
    let ways: Vec<&str> = ["identifier", "family", "family:exact", "address-postalcode"]
        .into_iter()
        .filter(|n| get(n).is_some())
        .collect();
    match ways.len() {
        0 if violations.is_empty() => violations.push(Violation::new("identifier", ONE_WAY)),
        0 | 1 => {}
        _ => ways
            .iter()
            .for_each(|n| violations.push(Violation::new(*n, ONE_WAY))),
    }
    if violations.is_empty() {
        Ok(request)
    } else {
        Err(violations)
    }
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, optionally prefixed `eq`.
fn birthdate(text: &str) -> Option<PartialDate> {
    let text = text.strip_prefix("eq").unwrap_or(text);
    carelog_kernel::date::PartialDate::parse_iso(text)
        .ok()
        .map(|d| d.to_proto())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> Vec<(String, String)> {
        crate::pairs(Some(text))
    }

    fn refused(text: &str) -> Vec<String> {
        request(&query(text))
            .expect_err("refused")
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn an_nhs_number_is_searched_with_or_without_its_system() {
        let r = request(&query(
            "identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9434765919",
        ))
        .expect("search");
        assert_eq!(r.nhs_number, "9434765919");
        assert_eq!(r.page_size, 0, "the service's default page");
        assert_eq!(
            request(&query("identifier=9434765919"))
                .expect("bare")
                .nhs_number,
            "9434765919"
        );
        assert_eq!(
            request(&query("identifier=%7C9434765919"))
                .expect("no system")
                .nhs_number,
            "9434765919"
        );
    }

    #[test]
    fn a_family_name_with_a_birth_date_is_matched_whole_and_alone_as_a_prefix() {
        let r = request(&query("family%3Aexact=Smith&birthdate=1980-03")).expect("search");
        assert_eq!(r.family_name, "Smith");
        assert_eq!(
            r.birth_date,
            Some(PartialDate {
                year: 1980,
                month: 3,
                day: 0
            })
        );
        let r = request(&query("family=Smi&_count=5")).expect("search");
        assert_eq!(r.family_name_prefix, "Smi");
        assert_eq!(r.page_size, 5);
        let r = request(&query("family:exact=Smith&birthdate=eq1980-03-14")).expect("eq");
        assert_eq!(r.birth_date.map(|d| d.day), Some(14));
    }

    #[test]
    fn a_parameter_carelog_cannot_honour_is_refused_not_ignored() {
        assert_eq!(refused("family=Smith&given=Jane"), ["given"]);
        assert_eq!(refused("family:contains=Smith"), ["family:contains"]);
        assert_eq!(
            refused("family:exact=Smith&birthdate=ge1980"),
            ["birthdate"]
        );
        assert_eq!(
            refused("family:exact=Smith&birthdate=14/03/1980"),
            ["birthdate"]
        );
        assert_eq!(
            refused("identifier=https%3A%2F%2Fexample.org%2Fmrn%7C123"),
            ["identifier"]
        );
        assert_eq!(refused("identifier=1&identifier=2"), ["identifier"]);
        assert_eq!(refused("family=Sm&_count=0"), ["_count"]);
        assert_eq!(refused("family=Sm&_count=201"), ["_count"]);
    }

    #[test]
    fn a_search_that_would_lose_a_filter_or_match_differently_is_refused() {
        // FHIR's family matches the start of the name: with a birth date
        // carelog matches the whole name, so the caller must say so.
        assert_eq!(refused("family=Smi&birthdate=1950"), ["family"]);
        assert_eq!(refused("birthdate=1950"), ["birthdate"]);
        assert_eq!(refused("family:exact=Smith"), ["family:exact"]);
        // An empty value names nothing: not "no filter".
        assert_eq!(
            refused("identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C"),
            ["identifier"]
        );
        assert_eq!(refused("family="), ["family"]);
        assert_eq!(refused("=x"), ["query"]);
        // One way of searching, and at least one.
        assert_eq!(refused(""), ["identifier"]);
        assert_eq!(
            refused("identifier=9434765919&address-postalcode=LS1%205HD"),
            ["identifier", "address-postalcode"]
        );
    }

    #[test]
    fn the_services_field_names_are_given_as_search_parameters() {
        assert_eq!(parameter_of("nhs_number"), "identifier");
        assert_eq!(parameter_of("family_name_prefix"), "family");
        assert_eq!(parameter_of("family_name"), "family:exact");
        assert_eq!(parameter_of("postcode"), "address-postalcode");
        assert_eq!(parameter_of("page_token"), "_page_token");
    }
}
