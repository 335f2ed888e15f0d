//! Identifiers every context shares, parsed once at the edge: typed UUIDv7
//! ids, the NHS number (modulus 11) and ODS organisation codes.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;
use uuid::Uuid;

/// Why an identifier was refused; the text names the rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("must be a UUID")]
    NotUuid,
    #[error("must be 10 digits")]
    NhsNumberFormat,
    #[error("fails the NHS number modulus 11 check")]
    NhsNumberCheckDigit,
    #[error("must not be ten identical digits")]
    NhsNumberRepeated,
    #[error("must be an ODS code: 3 to 10 upper-case letters and digits")]
    OdsFormat,
    #[error("must be a GP practice ODS code: a letter followed by five digits")]
    PracticeOdsFormat,
    #[error(
        "must be a team id (1 to 64 letters, digits, '-', '_', '.' or ':'), optionally after the ODS code of its organisation and '/'"
    )]
    TeamFormat,
}

macro_rules! typed_uuid {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn parse(text: &str) -> Result<Self, IdError> {
                Uuid::parse_str(text.trim()).map(Self).map_err(|_| IdError::NotUuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

typed_uuid!(
    /// A patient: the partition key of every clinical context.
    PatientId
);
impl PatientId {
    /// The id a registration with a client's `request_id` creates: derived
    /// from (user, request id), so a repeat of the request, even after the
    /// deduplication window, names the same record and returns it.
    pub fn for_request(user: &str, request_id: &str) -> Self {
        Self(derived_uuid("carelog.patient", user, request_id))
    }
}

/// The id of something a request creates, derived from (what it is, user,
/// request id): a repeat of the request, even after the deduplication
/// window, names the same thing (ADR 0011). A UUIDv8 of the first 16 bytes
/// of the SHA-256 of `namespace NUL user NUL request_id`.
pub fn derived_uuid(namespace: &str, user: &str, request_id: &str) -> Uuid {
    let digest =
        crate::envelope::digest(format!("{namespace}\u{0}{user}\u{0}{request_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::new_v8(bytes)
}

typed_uuid!(
    /// An allergy or intolerance in a patient's medication record.
    AllergyId
);
typed_uuid!(
    /// A medication authorisation (acute or repeat) in a patient's record.
    AuthorisationId
);
typed_uuid!(
    /// One issue (prescription) made against an authorisation.
    IssueId
);
typed_uuid!(
    /// A task of the tasks context; a task with no patient is its own
    /// partition, so its id is also its aggregate id.
    TaskId
);
typed_uuid!(
    /// One event inside a commit.
    EventId
);
typed_uuid!(
    /// One commit (the events of one command).
    CommitId
);
typed_uuid!(
    /// A consultation (an encounter) inside a patient's consultations.
    ConsultationId
);
typed_uuid!(
    /// A topic inside a consultation.
    TopicId
);
typed_uuid!(
    /// An entry inside a consultation's topic.
    EntryId
);

/// A valid NHS number: ten digits whose last is the modulus 11 check digit.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NhsNumber(String);

impl NhsNumber {
    /// Accepts "9434765919" and the display form "943 476 5919".
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let digits: String = text.chars().filter(|c| *c != ' ').collect();
        if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::NhsNumberFormat);
        }
        let d: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
        if d.iter().all(|x| *x == d[0]) {
            return Err(IdError::NhsNumberRepeated);
        }
        if Self::check_digit(&d[..9]) != Some(d[9]) {
            return Err(IdError::NhsNumberCheckDigit);
        }
        Ok(Self(digits))
    }

    /// The modulus 11 check digit of the first nine digits; `None` when the
    /// remainder makes the number invalid (check value 10).
    pub fn check_digit(first_nine: &[u32]) -> Option<u32> {
        let sum: u32 = first_nine
            .iter()
            .zip((2..=10).rev())
            .map(|(digit, weight)| digit * weight)
            .sum();
        match 11 - (sum % 11) {
            11 => Some(0),
            10 => None,
            check => Some(check),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// "943 476 5919".
    pub fn display(&self) -> String {
        format!("{} {} {}", &self.0[..3], &self.0[3..6], &self.0[6..])
    }
}

/// Redacted: an NHS number identifies a patient and never reaches a log.
impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NhsNumber(***)")
    }
}

/// An Organisation Data Service code (a practice, trust, site or other body).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OdsCode(String);

impl OdsCode {
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let code = text.trim().to_ascii_uppercase();
        let ok = (3..=10).contains(&code.len())
            && code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && code.bytes().any(|b| b.is_ascii_uppercase());
        if ok {
            Ok(Self(code))
        } else {
            Err(IdError::OdsFormat)
        }
    }

    /// A GP practice code: one letter then five digits (e.g. A81001).
    pub fn parse_gp_practice(text: &str) -> Result<Self, IdError> {
        let code = text.trim().to_ascii_uppercase();
        let b = code.as_bytes();
        if b.len() == 6 && b[0].is_ascii_uppercase() && b[1..].iter().all(u8::is_ascii_digit) {
            Ok(Self(code))
        } else {
            Err(IdError::PracticeOdsFormat)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `text` is a key a client chooses (a request id, a team id): at
/// most 64 letters, digits, `-`, `_`, `.` and `:`.
pub fn is_key(text: &str) -> bool {
    text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A team, qualified by the organisation whose team it is: `<ODS>/<team>`.
/// Two organisations' teams of the same name ("district-nurses") are two
/// teams: a task performed by one is not the other's work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TeamId(String);

impl TeamId {
    /// A team named by a user of `organisation`: `<ODS>/<team>` names
    /// another organisation's team, a bare `<team>` one of `organisation`.
    pub fn parse(organisation: &OdsCode, text: &str) -> Result<Self, IdError> {
        let text = text.trim();
        let (ods, team) = match text.split_once('/') {
            Some((ods, team)) => (OdsCode::parse(ods).map_err(|_| IdError::TeamFormat)?, team),
            None => (organisation.clone(), text),
        };
        if !team.is_empty() && is_key(team) {
            Ok(Self(format!("{ods}/{team}")))
        } else {
            Err(IdError::TeamFormat)
        }
    }

    /// The teams a token's `teams` claim makes its user a member of: teams
    /// of the token's own organisation only. A claim naming another
    /// organisation's team, or malformed, makes no one a member of anything.
    pub fn memberships(organisation: &OdsCode, claims: &[String]) -> Vec<String> {
        claims
            .iter()
            .filter_map(|claim| Self::parse(organisation, claim).ok())
            .filter(|team| team.organisation() == organisation.as_str())
            .map(|team| team.0)
            .collect()
    }

    /// The ODS code of the organisation whose team it is.
    pub fn organisation(&self) -> &str {
        self.0.split_once('/').map_or("", |(ods, _)| ods)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TeamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_team_is_qualified_by_its_organisation() {
        let practice = OdsCode::parse("A81001").expect("ods");
        // A bare name is a team of the organisation naming it
        assert_eq!(
            TeamId::parse(&practice, " district-nurses ").map(|t| t.to_string()),
            Ok("A81001/district-nurses".into())
        );
        // another organisation's team is named with its ODS code
        let theirs = TeamId::parse(&practice, "rr8/pharmacy").expect("qualified");
        assert_eq!(theirs.as_str(), "RR8/pharmacy");
        assert_eq!(theirs.organisation(), "RR8");
        for bad in [
            "",
            "a b",
            "RR8/",
            "/pharmacy",
            "R/pharmacy",
            "RR8/x/y",
            &"t".repeat(65),
        ] {
            assert_eq!(
                TeamId::parse(&practice, bad),
                Err(IdError::TeamFormat),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_token_makes_its_user_a_member_only_of_its_own_organisations_teams() {
        let hospital = OdsCode::parse("RR8").expect("ods");
        let claims = [
            "district-nurses".to_owned(),
            "RR8/pharmacy".to_owned(),
            "A81001/district-nurses".to_owned(),
            "not a team".to_owned(),
        ];
        assert_eq!(
            TeamId::memberships(&hospital, &claims),
            ["RR8/district-nurses", "RR8/pharmacy"]
        );
    }

    #[test]
    fn a_known_valid_nhs_number_parses_in_either_form() {
        assert_eq!(
            NhsNumber::parse("9434765919").map(|n| n.display()),
            Ok("943 476 5919".into())
        );
        assert!(NhsNumber::parse("943 476 5919").is_ok());
    }

    #[test]
    fn a_wrong_check_digit_is_refused_with_the_rule() {
        assert_eq!(
            NhsNumber::parse("9434765918"),
            Err(IdError::NhsNumberCheckDigit)
        );
        assert_eq!(NhsNumber::parse("94347659"), Err(IdError::NhsNumberFormat));
        assert_eq!(
            NhsNumber::parse("1111111111"),
            Err(IdError::NhsNumberRepeated)
        );
    }

    #[test]
    fn the_nhs_number_is_never_shown_by_debug() {
        let n = NhsNumber::parse("9434765919").expect("valid");
        assert!(!format!("{n:?}").contains("943"));
    }

    #[test]
    fn ods_codes_are_checked_by_format() {
        assert!(OdsCode::parse("A81001").is_ok());
        assert!(OdsCode::parse("rxx").is_ok());
        assert_eq!(OdsCode::parse("A-1"), Err(IdError::OdsFormat));
        assert!(OdsCode::parse_gp_practice("A81001").is_ok());
        assert_eq!(
            OdsCode::parse_gp_practice("RXX01"),
            Err(IdError::PracticeOdsFormat)
        );
    }

    proptest! {
        #[test]
        fn every_number_built_with_its_check_digit_parses(first in proptest::collection::vec(0u32..10, 9)) {
            prop_assume!(!first.iter().all(|d| *d == first[0]));
            if let Some(check) = NhsNumber::check_digit(&first) {
                let text: String = first.iter().chain(std::iter::once(&check)).map(|d| char::from_digit(*d, 10).unwrap_or('0')).collect();
                prop_assert!(NhsNumber::parse(&text).is_ok());
            }
        }

        #[test]
        fn changing_one_digit_of_a_valid_number_is_always_caught(first in proptest::collection::vec(0u32..10, 9), pos in 0usize..10, delta in 1u32..10) {
            prop_assume!(!first.iter().all(|d| *d == first[0]));
            if let Some(check) = NhsNumber::check_digit(&first) {
                let mut digits: Vec<u32> = first.clone();
                digits.push(check);
                digits[pos] = (digits[pos] + delta) % 10;
                let text: String = digits.iter().map(|d| char::from_digit(*d, 10).unwrap_or('0')).collect();
                prop_assert!(NhsNumber::parse(&text).is_err());
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,20}") {
            let _ = NhsNumber::parse(&text);
            let _ = OdsCode::parse(&text);
        }
    }
}
