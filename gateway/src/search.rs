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
pub const PARAMETERS: [(&str, &str, &str); 6] = [
    (
        "identifier",
        "token",
        "The NHS number, as https://fhir.nhs.uk/Id/nhs-number|9434765919 or the bare number",
    ),
    (
        "family",
        "string",
        "With birthdate: the whole family name (any case). Alone: the family name starts with it (two characters at least)",
    ),
    (
        "birthdate",
        "date",
        "With family: YYYY, YYYY-MM or YYYY-MM-DD (prefix eq only); a partially known date of birth matches where it may fall",
    ),
    (
        "address-postalcode",
        "string",
        "A full UK postcode, e.g. LS1 5HD",
    ),
    ("_count", "number", "Page size, 1 to 200 (default 50)"),
    (
        "_page_token",
        "string",
        "The next page, as given in the Bundle's next link",
    ),
];

/// The FHIR name of a field of SearchPatientsRequest, for the errors the
/// service gives.
pub fn parameter_of(field: &str) -> &str {
    match field {
        "nhs_number" => "identifier",
        "family_name" | "family_name_prefix" => "family",
        "birth_date" => "birthdate",
        "postcode" => "address-postalcode",
        "page_size" => "_count",
        "page_token" => "_page_token",
        other => other,
    }
}

/// A query string's pairs as a SearchPatients request.
pub fn request(pairs: &[(String, String)]) -> Result<pb::SearchPatientsRequest, Vec<Violation>> {
    let mut violations = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    let get = |name: &str| -> Option<String> {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    for (name, _) in pairs {
        if seen.contains(&name.as_str()) {
            violations.push(Violation::new(name, "is given more than once"));
            continue;
        }
        seen.push(name);
        let known = name == "_format" || PARAMETERS.iter().any(|(p, _, _)| p == name);
        if !known {
            let supported: Vec<&str> = PARAMETERS.iter().map(|(p, _, _)| *p).collect();
            violations.push(Violation::new(
                name,
                format!(
                    "is not a search parameter carelog supports (supported: {}); it is refused rather than ignored",
                    supported.join(", ")
                ),
            ));
        }
    }
    let mut request = pb::SearchPatientsRequest::default();
    if let Some(identifier) = get("identifier") {
        match identifier.split_once('|') {
            Some((system, value)) if system.is_empty() || system == NHS_NUMBER_SYSTEM => {
                request.nhs_number = value.to_owned();
            }
            Some(_) => violations.push(Violation::new(
                "identifier",
                format!("only the NHS number ({NHS_NUMBER_SYSTEM}) is searchable"),
            )),
            None => request.nhs_number = identifier,
        }
    }
    let birth_date = get("birthdate");
    if let Some(family) = get("family") {
        if birth_date.is_some() {
            request.family_name = family;
        } else {
            request.family_name_prefix = family;
        }
    }
    if let Some(date) = birth_date {
        match birthdate(&date) {
            Some(d) => request.birth_date = Some(d),
            None => violations.push(Violation::new(
                "birthdate",
                "must be YYYY, YYYY-MM or YYYY-MM-DD, with no prefix or eq",
            )),
        }
    }
    if let Some(postcode) = get("address-postalcode") {
        request.postcode = postcode;
    }
    if let Some(count) = get("_count") {
        match count.parse::<i32>() {
            Ok(n) if (1..=200).contains(&n) => request.page_size = n,
            _ => violations.push(Violation::new(
                "_count",
                "must be a whole number from 1 to 200",
            )),
        }
    }
    if let Some(token) = get("_page_token") {
        request.page_token = token;
    }
    if let Some(format) = get("_format")
        && !crate::JSON_FORMATS.contains(&format.as_str())
    {
        violations.push(Violation::new(
            "_format",
            "must be json (carelog speaks FHIR JSON only)",
        ));
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
    let parts: Vec<&str> = text.split('-').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let number = |s: &str| s.parse::<i32>().ok();
    match parts.as_slice() {
        [y] if digits(y, 4) => Some(PartialDate {
            year: number(y)?,
            month: 0,
            day: 0,
        }),
        [y, m] if digits(y, 4) && digits(m, 2) => Some(PartialDate {
            year: number(y)?,
            month: number(m)?,
            day: 0,
        }),
        [y, m, d] if digits(y, 4) && digits(m, 2) && digits(d, 2) => Some(PartialDate {
            year: number(y)?,
            month: number(m)?,
            day: number(d)?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
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
        let r = request(&query("family=Smith&birthdate=1980-03")).expect("search");
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
        let r = request(&query("family=Smith&birthdate=eq1980-03-14")).expect("eq");
        assert_eq!(r.birth_date.map(|d| d.day), Some(14));
    }

    #[test]
    fn a_parameter_carelog_cannot_honour_is_refused_not_ignored() {
        assert_eq!(refused("family=Smith&given=Jane"), ["given"]);
        assert_eq!(refused("family:exact=Smith"), ["family:exact"]);
        assert_eq!(refused("family=Smith&birthdate=ge1980"), ["birthdate"]);
        assert_eq!(refused("family=Smith&birthdate=14/03/1980"), ["birthdate"]);
        assert_eq!(
            refused("identifier=https%3A%2F%2Fexample.org%2Fmrn%7C123"),
            ["identifier"]
        );
        assert_eq!(refused("identifier=1&identifier=2"), ["identifier"]);
        assert_eq!(refused("family=Sm&_count=0"), ["_count"]);
        assert_eq!(refused("family=Sm&_count=201"), ["_count"]);
        assert_eq!(refused("family=Sm&_format=xml"), ["_format"]);
        assert!(request(&query("family=Sm&_format=application/fhir%2Bjson")).is_ok());
    }

    #[test]
    fn the_services_field_names_are_given_as_search_parameters() {
        assert_eq!(parameter_of("nhs_number"), "identifier");
        assert_eq!(parameter_of("family_name_prefix"), "family");
        assert_eq!(parameter_of("postcode"), "address-postalcode");
        assert_eq!(parameter_of("page_token"), "_page_token");
    }
}
