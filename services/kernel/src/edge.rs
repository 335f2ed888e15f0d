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
