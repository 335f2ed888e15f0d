//! Demographic value rules: the UK postcode, names, contact points and the
//! whole set of editable details, checked once at the edge. Each rule names
//! the field it refuses.

use carelog_kernel::date::PartialDate;
use carelog_kernel::edge::{NO_CONTROL, check_text, has_control};
use carelog_kernel::{NhsNumber, OdsCode, Violations};
use carelog_proto::demographics::v1 as pb;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("must be a UK postcode such as \"LS1 4AP\"")]
pub struct PostcodeError;

/// A UK postcode in canonical form: upper case, one space before the
/// inward code ("SW1A 1AA").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Postcode(String);

impl Postcode {
    pub fn parse(text: &str) -> Result<Self, PostcodeError> {
        let compact: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if compact == "GIR0AA" {
            return Ok(Self("GIR 0AA".into()));
        }
        if !(5..=7).contains(&compact.len()) || !compact.is_ascii() {
            return Err(PostcodeError);
        }
        let (outward, inward) = compact.split_at(compact.len() - 3);
        if !valid_inward(inward.as_bytes()) || !valid_outward(outward.as_bytes()) {
            return Err(PostcodeError);
        }
        Ok(Self(format!("{outward} {inward}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn valid_inward(b: &[u8]) -> bool {
    // Digit then two letters, never C, I, K, M, O or V.
    let letter = |c: u8| c.is_ascii_uppercase() && !b"CIKMOV".contains(&c);
    b.len() == 3 && b[0].is_ascii_digit() && letter(b[1]) && letter(b[2])
}

fn valid_outward(b: &[u8]) -> bool {
    let d = |c: u8| c.is_ascii_digit();
    let of = |c: u8, letters: &[u8]| letters.contains(&c);
    // Area: one letter, never Q, V or X, and maybe a second, never I, J or
    // Z; district: a digit, then maybe a digit or, after a one-letter area,
    // one of ABCDEFGHJKPSTUW ("W1A"), after a two-letter one, one of
    // ABEHMNPRVWXY ("EC1A").
    const FIRST: &[u8] = b"ABCDEFGHIJKLMNOPRSTUWYZ";
    const SECOND: &[u8] = b"ABCDEFGHKLMNOPQRSTUVWXY";
    const AFTER_ONE: &[u8] = b"ABCDEFGHJKPSTUW";
    const AFTER_TWO: &[u8] = b"ABEHMNPRVWXY";
    match *b {
        [l, n] => of(l, FIRST) && d(n),
        [l, n, x] => {
            of(l, FIRST) && d(n) && (d(x) || of(x, AFTER_ONE))
                || of(l, FIRST) && of(n, SECOND) && d(x)
        }
        [l, m, n, x] => of(l, FIRST) && of(m, SECOND) && d(n) && (d(x) || of(x, AFTER_TWO)),
        _ => false,
    }
}

/// Field-mask paths of UpdateDemographics, relative to PatientDetails.
pub const UPDATABLE_PATHS: [&str; 11] = [
    "nhs_number",
    "nhs_number_verification_status",
    "name",
    "name.family",
    "name.given",
    "name.prefix",
    "birth_date",
    "gender",
    "addresses",
    "telecom",
    "registered_practice_ods",
];

const MAX_TEXT: usize = 200;

/// Validates and normalises a whole set of details; every broken rule is
/// recorded under `prefix` (e.g. "details").
pub fn check_details(
    details: &pb::PatientDetails,
    prefix: &str,
    v: &mut Violations,
) -> pb::PatientDetails {
    let field = |name: &str| format!("{prefix}.{name}");
    let mut out = details.clone();

    out.nhs_number = match details.nhs_number.trim() {
        "" => String::new(),
        text => v
            .check(&field("nhs_number"), NhsNumber::parse(text))
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default(),
    };
    let status = pb::NhsNumberVerificationStatus::try_from(details.nhs_number_verification_status);
    match status {
        Err(_) => v.add(
            field("nhs_number_verification_status"),
            "is not a known verification status",
        ),
        Ok(pb::NhsNumberVerificationStatus::Verified) if details.nhs_number.trim().is_empty() => v
            .add(
                field("nhs_number_verification_status"),
                "cannot be verified without an NHS number",
            ),
        // 02 says a number is present; 07 that none is.
        Ok(pb::NhsNumberVerificationStatus::NotTraced) if details.nhs_number.trim().is_empty() => v
            .add(
                field("nhs_number_verification_status"),
                "is \"present but not traced\": it needs an NHS number",
            ),
        Ok(pb::NhsNumberVerificationStatus::NotPresent)
            if !details.nhs_number.trim().is_empty() =>
        {
            v.add(
                field("nhs_number_verification_status"),
                "is \"number not present\", but an NHS number is given",
            )
        }
        _ => {}
    }

    match &details.name {
        None => v.add(field("name.family"), "is required"),
        Some(name) => {
            let family = name.family.trim();
            if family.is_empty() {
                v.add(field("name.family"), "is required");
            } else {
                check_text(&field("name.family"), family, 100, v);
            }
            if name.given.iter().any(|g| g.trim().is_empty()) {
                v.add(field("name.given"), "must not hold an empty name");
            }
            if name.given.iter().any(|g| g.chars().count() > 100) || name.given.len() > 5 {
                v.add(
                    field("name.given"),
                    "at most 5 given names of at most 100 characters",
                );
            } else if name.given.iter().any(|g| has_control(g)) {
                v.add(field("name.given"), NO_CONTROL);
            }
            check_text(&field("name.prefix"), &name.prefix, 40, v);
            out.name = Some(pb::HumanName {
                family: family.to_owned(),
                given: name.given.iter().map(|g| g.trim().to_owned()).collect(),
                prefix: name.prefix.trim().to_owned(),
            });
        }
    }

    if let Some(date) = v.check(
        &field("birth_date"),
        PartialDate::from_proto(details.birth_date.as_ref()).and_then(PartialDate::not_in_future),
    ) {
        out.birth_date = Some(date.to_proto());
    }

    match pb::AdministrativeGender::try_from(details.gender) {
        Ok(pb::AdministrativeGender::Unspecified) | Err(_) => {
            v.add(field("gender"), "must be male, female, other or unknown")
        }
        Ok(_) => {}
    }

    if details.addresses.len() > 10 {
        v.add(field("addresses"), "at most 10 addresses");
    }
    for (i, address) in details.addresses.iter().enumerate() {
        let at = |name: &str| format!("{prefix}.addresses[{i}].{name}");
        if address.lines.len() > 5 || address.lines.iter().any(|l| l.chars().count() > MAX_TEXT) {
            v.add(at("lines"), "at most 5 lines of at most 200 characters");
        } else if address.lines.iter().any(|l| has_control(l)) {
            v.add(at("lines"), NO_CONTROL);
        }
        check_text(&at("city"), &address.city, MAX_TEXT, v);
        check_text(&at("district"), &address.district, MAX_TEXT, v);
        if pb::AddressUse::try_from(address.r#use).is_err() {
            v.add(at("use"), "is not a known address use");
        }
        if address.postcode.trim().is_empty() {
            out.addresses[i].postcode = String::new();
        } else if let Some(p) = v.check(&at("postcode"), Postcode::parse(&address.postcode)) {
            out.addresses[i].postcode = p.as_str().to_owned();
        }
        if address.lines.iter().all(|l| l.trim().is_empty()) && address.postcode.trim().is_empty() {
            v.add(at("lines"), "an address needs a line or a postcode");
        }
    }

    if details.telecom.len() > 10 {
        v.add(field("telecom"), "at most 10 contact points");
    }
    for (i, contact) in details.telecom.iter().enumerate() {
        let at = |name: &str| format!("{prefix}.telecom[{i}].{name}");
        let value = contact.value.trim();
        match pb::ContactSystem::try_from(contact.system) {
            Ok(pb::ContactSystem::Email) if !(value.contains('@') && value.len() <= MAX_TEXT) => {
                v.add(at("value"), "must be an email address")
            }
            Ok(pb::ContactSystem::Phone | pb::ContactSystem::Sms)
                if value.is_empty()
                    || value.len() > 30
                    || !value
                        .chars()
                        .all(|c| c.is_ascii_digit() || " +()-".contains(c)) =>
            {
                v.add(
                    at("value"),
                    "must be a telephone number (digits, spaces, + ( ) -)",
                )
            }
            Ok(pb::ContactSystem::Unspecified) | Err(_) => {
                v.add(at("system"), "must be phone, email or sms")
            }
            _ => {}
        }
        if has_control(value) {
            v.add(at("value"), NO_CONTROL);
        }
        if pb::ContactUse::try_from(contact.r#use).is_err() {
            v.add(at("use"), "is not a known contact use");
        }
        out.telecom[i].value = value.to_owned();
    }

    out.registered_practice_ods = match details.registered_practice_ods.trim() {
        "" => String::new(),
        code => v
            .check(
                &field("registered_practice_ods"),
                OdsCode::parse_gp_practice(code),
            )
            .map(|c| c.to_string())
            .unwrap_or_default(),
    };
    out
}

/// Copies the masked paths of `from` onto `onto`.
pub fn apply_mask(onto: &mut pb::PatientDetails, from: &pb::PatientDetails, paths: &[String]) {
    let from_name = from.name.clone().unwrap_or_default();
    for path in paths {
        match path.as_str() {
            "nhs_number" => onto.nhs_number = from.nhs_number.clone(),
            "nhs_number_verification_status" => {
                onto.nhs_number_verification_status = from.nhs_number_verification_status
            }
            "name" => onto.name = from.name.clone(),
            "name.family" => {
                onto.name.get_or_insert_with(Default::default).family = from_name.family.clone()
            }
            "name.given" => {
                onto.name.get_or_insert_with(Default::default).given = from_name.given.clone()
            }
            "name.prefix" => {
                onto.name.get_or_insert_with(Default::default).prefix = from_name.prefix.clone()
            }
            "birth_date" => onto.birth_date = from.birth_date,
            "gender" => onto.gender = from.gender,
            "addresses" => onto.addresses = from.addresses.clone(),
            "telecom" => onto.telecom = from.telecom.clone(),
            "registered_practice_ods" => {
                onto.registered_practice_ods = from.registered_practice_ods.clone()
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn postcodes_are_canonicalised() {
        assert_eq!(Postcode::parse("ls14ap").map(|p| p.0), Ok("LS1 4AP".into()));
        assert_eq!(
            Postcode::parse("SW1A 1AA").map(|p| p.0),
            Ok("SW1A 1AA".into())
        );
        assert_eq!(Postcode::parse("m1 1ae").map(|p| p.0), Ok("M1 1AE".into()));
        assert_eq!(
            Postcode::parse("W1A 0AX").map(|p| p.0),
            Ok("W1A 0AX".into())
        );
        assert_eq!(
            Postcode::parse("EC1A 1BB").map(|p| p.0),
            Ok("EC1A 1BB".into())
        );
        for valid in [
            "CR2 6XH", "DN55 1PT", "B33 8TH", "GIR 0AA", "E1W 1AA", "WC2H 7LT",
        ] {
            assert_eq!(Postcode::parse(valid).map(|p| p.0), Ok(valid.into()));
        }
    }

    #[test]
    fn malformed_postcodes_are_refused() {
        for bad in [
            "",
            "LS1",
            "LS1 4A",
            "1LS 4AP",
            "LS1 4CP",
            "QS1 4AP",
            "LS12345",
            "LS1 4AP X",
            "ŁS1 4AP",
            // a second area letter I, J or Z; a district letter no
            // postcode uses after a one- or two-letter area
            "AZ1 1AA",
            "LI1 1AA",
            "W1Z 1AA",
            "EC1Z 1BB",
            "SW1C 1AA",
        ] {
            assert_eq!(Postcode::parse(bad), Err(PostcodeError), "{bad}");
        }
    }

    #[test]
    fn an_address_with_a_blank_postcode_keeps_no_postcode() {
        let details = pb::PatientDetails {
            addresses: vec![pb::Address {
                lines: vec!["1 Park Row".into()],
                postcode: "   ".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut v = Violations::new();
        let checked = check_details(&details, "details", &mut v);
        assert!(v.iter().all(|x| x.field != "details.addresses[0].postcode"));
        assert_eq!(checked.addresses[0].postcode, "");
    }

    fn outward() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-PR-UWYZ][0-9]",
            "[A-PR-UWYZ][0-9][0-9]",
            "[A-PR-UWYZ][A-HK-Y][0-9]",
            "[A-PR-UWYZ][A-HK-Y][0-9][0-9]",
            "[A-PR-UWYZ][0-9][A-HJKPSTUW]",
            "[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY]",
        ]
    }

    proptest! {
        #[test]
        fn every_well_formed_postcode_parses_in_any_spacing_and_case(o in outward(), i in "[0-9][ABD-HJLNP-UW-Z]{2}", lower in any::<bool>(), spaced in any::<bool>()) {
            let text = format!("{o}{}{i}", if spaced { " " } else { "" });
            let text = if lower { text.to_lowercase() } else { text };
            let parsed = Postcode::parse(&text);
            prop_assert_eq!(parsed.map(|p| p.0), Ok(format!("{o} {i}")));
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,12}") {
            let _ = Postcode::parse(&text);
        }
    }
}
