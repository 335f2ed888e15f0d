//! SNOMED CT identifiers (SCTIDs) and dm+d codes, which are SCTIDs in the
//! UK namespace: 6 to 18 digits, no leading zero, a Verhoeff check digit
//! last, and a partition identifier (the two digits before it) saying what
//! the id names. Coded clinical data stores concepts: partition 00 (short
//! format) or 10 (long format, an extension's: an item, a 7-digit namespace,
//! the partition and the check digit, so 11 digits or more).

use std::fmt;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SctIdError {
    #[error("must be a SNOMED CT identifier of 6 to 18 digits without a leading zero")]
    Format,
    #[error("fails the SNOMED CT Verhoeff check digit")]
    CheckDigit,
    #[error("is not a concept identifier (partition {0}; a concept has 00 or 10)")]
    NotAConcept(String),
    #[error(
        "is too short for its partition 10: an extension's identifier holds an item, a 7-digit namespace, the partition and the check digit (11 digits or more)"
    )]
    NoNamespace,
}

/// Verhoeff multiplication table (dihedral group D5).
const D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];

/// Verhoeff permutation table.
const P: [[u8; 10]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

/// Verhoeff inverse table.
const INV: [u8; 10] = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9];

/// True when the last digit of `digits` is their Verhoeff check digit.
pub fn verhoeff_valid(digits: &[u8]) -> bool {
    digits.iter().rev().enumerate().fold(0u8, |c, (i, d)| {
        D[c as usize][P[i % 8][*d as usize] as usize]
    }) == 0
}

/// The Verhoeff check digit to append to `digits`.
pub fn verhoeff_digit(digits: &[u8]) -> u8 {
    let c = digits.iter().rev().enumerate().fold(0u8, |c, (i, d)| {
        D[c as usize][P[(i + 1) % 8][*d as usize] as usize]
    });
    INV[c as usize]
}

/// A SNOMED CT concept identifier (also the form of dm+d product codes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConceptId(String);

impl ConceptId {
    pub fn parse(text: &str) -> Result<Self, SctIdError> {
        let text = text.trim();
        let ok = (6..=18).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_digit())
            && !text.starts_with('0');
        if !ok {
            return Err(SctIdError::Format);
        }
        let digits: Vec<u8> = text.bytes().map(|b| b - b'0').collect();
        if !verhoeff_valid(&digits) {
            return Err(SctIdError::CheckDigit);
        }
        let partition = &text[text.len() - 3..text.len() - 1];
        if partition != "00" && partition != "10" {
            return Err(SctIdError::NotAConcept(partition.to_owned()));
        }
        // The long format (an extension's, such as the UK's dm+d codes)
        // puts a namespace between the item and the partition.
        if partition == "10" && text.len() < 11 {
            return Err(SctIdError::NoNamespace);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConceptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_concepts_parse() {
        // Penicillin (substance), asthma (disorder), essential hypertension.
        for id in ["764146007", "195967001", "59621000"] {
            assert!(ConceptId::parse(id).is_ok(), "{id}");
        }
        // A dm+d VMP in the UK namespace: amoxicillin 500mg capsules.
        assert!(ConceptId::parse("323509004").is_ok());
        // A dm+d AMP in the long format: item, UK namespace 1000001, 10.
        assert!(ConceptId::parse("39732311000001104").is_ok());
    }

    /// `body` with its Verhoeff check digit, as text.
    fn with_check_digit(body: &[u8]) -> String {
        body.iter()
            .chain(std::iter::once(&verhoeff_digit(body)))
            .map(|d| char::from(b'0' + d))
            .collect()
    }

    #[test]
    fn a_long_format_id_without_room_for_a_namespace_is_refused() {
        // partition 10 with a valid check digit, but 6 and 10 digits: no
        // 7-digit namespace between an item and the partition
        for body in [&[1, 2, 3, 1, 0][..], &[1, 2, 3, 4, 5, 6, 7, 1, 0]] {
            let id = with_check_digit(body);
            assert_eq!(ConceptId::parse(&id), Err(SctIdError::NoNamespace), "{id}");
        }
        // while 11 digits hold one
        let id = with_check_digit(&[1, 1, 0, 0, 0, 0, 0, 1, 1, 0]);
        assert_eq!(ConceptId::parse(&id).map(|c| c.to_string()), Ok(id));
    }

    #[test]
    fn bad_ids_are_refused_with_the_rule() {
        assert_eq!(ConceptId::parse("195967002"), Err(SctIdError::CheckDigit));
        assert_eq!(ConceptId::parse("01959670"), Err(SctIdError::Format));
        assert_eq!(ConceptId::parse("12345"), Err(SctIdError::Format));
        // A description id (partition 01) is not a concept.
        let id = with_check_digit(&[1, 4, 8, 2, 0, 1]);
        assert!(matches!(ConceptId::parse(&id), Err(SctIdError::NotAConcept(p)) if p == "01"));
    }

    proptest! {
        #[test]
        fn an_id_built_with_its_check_digit_passes_verhoeff(body in proptest::collection::vec(0u8..10, 5..17)) {
            let mut digits = body.clone();
            digits.push(verhoeff_digit(&body));
            prop_assert!(verhoeff_valid(&digits));
        }

        #[test]
        fn any_single_digit_error_is_caught(body in proptest::collection::vec(0u8..10, 5..17), pos in 0usize..18, delta in 1u8..10) {
            let mut digits = body.clone();
            digits.push(verhoeff_digit(&body));
            let pos = pos % digits.len();
            digits[pos] = (digits[pos] + delta) % 10;
            prop_assert!(!verhoeff_valid(&digits));
        }

        #[test]
        fn adjacent_transpositions_are_caught(body in proptest::collection::vec(0u8..10, 5..17), pos in 0usize..17) {
            let mut digits = body.clone();
            digits.push(verhoeff_digit(&body));
            let pos = pos % (digits.len() - 1);
            prop_assume!(digits[pos] != digits[pos + 1]);
            digits.swap(pos, pos + 1);
            prop_assert!(!verhoeff_valid(&digits));
        }
    }
}
