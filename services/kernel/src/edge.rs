//! What every context's API edge shares before its domain sees a request:
//! required ids parsed into field violations, page sizes bounded (AIP-158)
//! and free-text explanations required.

use std::fmt;

use crate::error::Violations;

/// Default and largest page sizes (AIP-158).
pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

/// A requested page size bounded: 0 is the default, more than the largest
/// is the largest, a negative size is a violation (answered with the default).
pub fn page_size(size: i32, v: &mut Violations) -> u32 {
    if size < 0 {
        v.add("page_size", "must not be negative");
    }
    match size {
        n if n <= 0 => DEFAULT_PAGE,
        n => (n as u32).min(MAX_PAGE),
    }
}

/// A required id of a typed kind: blank is "is required", else the parse's
/// error names the rule.
pub fn required<T, E: fmt::Display>(
    field: &str,
    text: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
    v: &mut Violations,
) -> Option<T> {
    if text.trim().is_empty() {
        v.add(field, "is required");
        return None;
    }
    v.check(field, parse(text))
}

/// A free-text explanation (a reason) that must not be blank; `rule` says
/// what it is for.
pub fn require_text(field: &str, text: &str, rule: &str, v: &mut Violations) {
    if text.trim().is_empty() {
        v.add(field, rule);
    }
}

/// A free-text field's shape: at most `max` characters, and no control
/// characters but tab and line breaks (a read model's text cannot hold NUL,
/// and no clinical text needs the others).
pub fn check_text(field: &str, text: &str, max: usize, v: &mut Violations) {
    if text.chars().count() > max {
        v.add(field, format!("must be at most {max} characters"));
    } else if has_control(text) {
        v.add(field, NO_CONTROL);
    }
}

/// The rule [`has_control`] checks.
pub const NO_CONTROL: &str = "must not contain control characters (only tab and line breaks)";

/// Whether `text` holds a control character other than tab and line breaks.
pub fn has_control(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// The rule [`instant`] checks.
pub const VALID_TIME: &str = "is not a valid time between the years 1850 and 9999";

/// A time a client sent, within the years carelog's dates hold
/// (`date::YEARS`): outside them it is no clinical or administrative time,
/// and PostgreSQL's `timestamptz` could not hold every such value, so a read
/// model would stop on it.
pub fn instant(at: &prost_types::Timestamp) -> Result<chrono::DateTime<chrono::Utc>, &'static str> {
    use chrono::Datelike as _;
    crate::envelope::from_timestamp(Some(at))
        .filter(|t| crate::date::YEARS.contains(&t.year()))
        .ok_or(VALID_TIME)
}

/// The reason a change to the record must give (its audit's "why").
pub fn reason_given(field: &str, reason: &str) -> Result<(), Violations> {
    let mut v = Violations::new();
    require_text(field, reason, "is required: say why", &mut v);
    if v.is_empty() { Ok(()) } else { Err(v) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PatientId;

    #[test]
    fn a_time_is_refused_outside_the_years_of_carelogs_dates() {
        let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        // 1 January 1850 and 31 December 9999, 23:59:59 UTC
        assert!(instant(&at(-3_786_825_600)).is_ok());
        assert!(instant(&at(253_402_300_799)).is_ok());
        // a second either side, and a time chrono holds but PostgreSQL does not
        assert_eq!(instant(&at(-3_786_825_601)), Err(VALID_TIME));
        assert_eq!(instant(&at(253_402_300_800)), Err(VALID_TIME));
        assert_eq!(instant(&at(-300_000_000_000)), Err(VALID_TIME));
    }

    #[test]
    fn free_text_is_bounded_and_holds_no_control_characters() {
        let mut v = Violations::new();
        check_text(
            "reason",
            "Patient asked\tfor it\r\non the phone",
            100,
            &mut v,
        );
        assert!(v.is_empty());
        check_text("name.family", "Smith\0", 100, &mut v);
        check_text("reason", "a\u{1b}[31m", 100, &mut v);
        check_text("city", "Leeds", 3, &mut v);
        let rules: Vec<(String, String)> = v
            .iter()
            .map(|x| (x.field.clone(), x.rule.clone()))
            .collect();
        assert_eq!(rules.len(), 3, "{rules:?}");
        assert_eq!(rules[0].0, "name.family");
        assert!(rules[0].1.contains("control characters"));
        assert_eq!(rules[1].0, "reason");
        assert_eq!(
            rules[2],
            ("city".into(), "must be at most 3 characters".into())
        );
    }

    #[test]
    fn page_sizes_are_bounded() {
        let mut v = Violations::new();
        assert_eq!(page_size(0, &mut v), DEFAULT_PAGE);
        assert_eq!(page_size(10, &mut v), 10);
        assert_eq!(page_size(10_000, &mut v), MAX_PAGE);
        assert!(v.is_empty());
        assert_eq!(page_size(-1, &mut v), DEFAULT_PAGE);
        assert_eq!(v.iter().next().expect("as asserted").field, "page_size");
    }

    #[test]
    fn a_required_id_is_required_and_parsed() {
        let mut v = Violations::new();
        assert!(required("patient_id", " ", PatientId::parse, &mut v).is_none());
        assert!(required("patient_id", "nope", PatientId::parse, &mut v).is_none());
        let rules: Vec<_> = v.iter().map(|x| x.rule.clone()).collect();
        assert_eq!(rules[0], "is required");
        assert_ne!(rules[1], "is required");
        require_text("reason", "  ", "is required: say why", &mut v);
        assert_eq!(v.iter().count(), 3);
        assert!(reason_given("reason", "typo").is_ok());
        let refused = reason_given("reason", " ").expect_err("blank");
        assert_eq!(
            refused.iter().next().map(|x| x.rule.as_str()),
            Some("is required: say why")
        );
    }
}
