//! Input checks: allergy and authorisation details as the clinician sends
//! them, checked field by field (every violation at once), and returned in
//! the form they are recorded in.

use carelog_kernel::Violations;
use carelog_kernel::date::PartialDate;
use carelog_kernel::snomed::ConceptId;
use carelog_proto::kernel::v1 as kpb;
use carelog_proto::medications::v1 as pb;
use chrono::NaiveDate;

use crate::catalogue::{DrugCatalogue, Product};

/// The paths of `AuthorisationDetails` a change may name.
pub const CHANGEABLE_PATHS: [&str; 9] = [
    "product",
    "dose_instructions",
    "quantity",
    "quantity_unit",
    "prescription_type",
    "authorised_issues",
    "review_date",
    "expiry_date",
    "supply_days",
];

/// Longest free text of a reaction, dose instructions or quantity unit.
pub const MAX_TEXT: usize = 500;
/// Most issues a repeat may authorise.
pub const MAX_ISSUES: u32 = 99;
/// Longest supply an issue may be expected to last, in days.
pub const MAX_SUPPLY_DAYS: u32 = 365;

fn text(field: &str, value: &str, v: &mut Violations) -> String {
    let value = value.trim();
    if value.is_empty() {
        v.add(field, "is required");
    } else {
        carelog_kernel::edge::check_text(field, value, MAX_TEXT, v);
    }
    value.to_owned()
}

/// A required full date (year, month and day).
pub fn full_date(
    field: &str,
    date: Option<&kpb::PartialDate>,
    v: &mut Violations,
) -> Option<NaiveDate> {
    let parsed = v.check(field, PartialDate::from_proto(date))?;
    if !parsed.is_full() {
        v.add(field, "must be a full date (year, month and day)");
        return None;
    }
    Some(parsed.earliest())
}

pub fn date_proto(date: NaiveDate) -> kpb::PartialDate {
    PartialDate::from_naive(date).to_proto()
}

/// The allergy as recorded, or the violations.
pub fn check_allergy(
    d: &pb::AllergyDetails,
    prefix: &str,
    today: NaiveDate,
    birth: Option<PartialDate>,
    v: &mut Violations,
) -> pb::AllergyDetails {
    let f = |name: &str| format!("{prefix}.{name}");
    let substance = d.substance.clone().unwrap_or_default();
    let code = match ConceptId::parse(&substance.code) {
        Ok(code) => code.to_string(),
        Err(e) => {
            v.add(f("substance.code"), e.to_string());
            String::new()
        }
    };
    let display = text(&f("substance.display"), &substance.display, v);
    let reaction = text(&f("reaction"), &d.reaction, v);
    if pb::Severity::try_from(d.severity).unwrap_or_default() == pb::Severity::Unspecified {
        v.add(f("severity"), "is required: mild, moderate or severe");
    }
    if pb::Certainty::try_from(d.certainty).unwrap_or_default() == pb::Certainty::Unspecified {
        v.add(f("certainty"), "is required: unconfirmed or confirmed");
    }
    if pb::AllergyKind::try_from(d.kind).is_err() {
        v.add(f("kind"), "is not a known kind");
    }
    if d.onset.is_some()
        && let Some(onset) = v.check(&f("onset"), PartialDate::from_proto(d.onset.as_ref()))
    {
        if onset.is_after(today) {
            v.add(f("onset"), "must not be in the future");
        }
        if birth.is_some_and(|born| onset.is_certainly_before(&born)) {
            v.add(f("onset"), "must not be before the patient's birth");
        }
    }
    pb::AllergyDetails {
        substance: Some(pb::Coding { code, display }),
        kind: d.kind,
        reaction,
        severity: d.severity,
        certainty: d.certainty,
        onset: d.onset,
    }
}

/// A positive decimal quantity, e.g. "28" or "12.5", without a sign or
/// exponent.
fn quantity(field: &str, value: &str, v: &mut Violations) -> String {
    let value = value.trim();
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let well_formed = !whole.is_empty()
        && digits(whole)
        && digits(fraction)
        && (fraction.len() <= 3)
        && !(value.contains('.') && fraction.is_empty());
    if !well_formed {
        v.add(
            field,
            "must be a decimal number such as 28 or 12.5 (at most 3 decimals)",
        );
    } else if value.bytes().all(|b| b == b'0' || b == b'.') {
        v.add(field, "must be greater than zero");
    } else if whole.len() > 6 {
        v.add(field, "must be less than 1000000");
    }
    value.to_owned()
}

/// The authorisation as recorded (product name from the catalogue, acute
/// issues set to 1) and the catalogue's product, or the violations.
pub fn check_authorisation<'c>(
    d: &pb::AuthorisationDetails,
    prefix: &str,
    today: NaiveDate,
    catalogue: &'c DrugCatalogue,
    v: &mut Violations,
) -> (pb::AuthorisationDetails, Option<&'c Product>) {
    let f = |name: &str| format!("{prefix}.{name}");
    let code = d
        .product
        .as_ref()
        .map(|p| p.code.as_str())
        .unwrap_or_default();
    let product = match ConceptId::parse(code) {
        Ok(code) => {
            let product = catalogue.product(code.as_str());
            if product.is_none() {
                v.add(f("product.code"), "is not in the drug catalogue");
            }
            product
        }
        Err(e) => {
            v.add(f("product.code"), e.to_string());
            None
        }
    };
    let dose = text(&f("dose_instructions"), &d.dose_instructions, v);
    let quantity = quantity(&f("quantity"), &d.quantity, v);
    let unit = text(&f("quantity_unit"), &d.quantity_unit, v);
    let kind = pb::PrescriptionType::try_from(d.prescription_type).unwrap_or_default();
    let mut issues = d.authorised_issues;
    let future = |field: String, date: Option<&kpb::PartialDate>, v: &mut Violations| {
        let date = full_date(&field, date, v)?;
        if date < today {
            v.add(field, "must not be in the past");
            return None;
        }
        Some(date)
    };
    if d.supply_days > MAX_SUPPLY_DAYS {
        v.add(
            f("supply_days"),
            format!("must be 0 (not stated) to {MAX_SUPPLY_DAYS}"),
        );
    }
    let mut review = None;
    let mut expiry = None;
    match kind {
        pb::PrescriptionType::Unspecified => {
            v.add(f("prescription_type"), "is required: acute or repeat")
        }
        pb::PrescriptionType::Acute => {
            if issues > 1 {
                v.add(
                    f("authorised_issues"),
                    "must be 0 or 1 for an acute: it allows one issue",
                );
            }
            issues = 1;
            if d.review_date.is_some() {
                v.add(f("review_date"), "must be empty for an acute");
            }
            if d.expiry_date.is_some() {
                expiry = future(f("expiry_date"), d.expiry_date.as_ref(), v);
            }
        }
        pb::PrescriptionType::Repeat => {
            if !(1..=MAX_ISSUES).contains(&issues) {
                v.add(
                    f("authorised_issues"),
                    format!("must be 1 to {MAX_ISSUES} for a repeat"),
                );
            }
            review = future(f("review_date"), d.review_date.as_ref(), v);
            expiry = future(f("expiry_date"), d.expiry_date.as_ref(), v);
            if let (Some(r), Some(e)) = (review, expiry)
                && r > e
            {
                v.add(f("review_date"), "must not be after the expiry date");
            }
        }
    }
    let details = pb::AuthorisationDetails {
        product: Some(pb::Coding {
            code: product.map(|p| p.code.to_string()).unwrap_or_default(),
            display: product.map(|p| p.name.clone()).unwrap_or_default(),
        }),
        dose_instructions: dose,
        quantity,
        quantity_unit: unit,
        prescription_type: d.prescription_type,
        authorised_issues: issues,
        review_date: review.map(date_proto),
        expiry_date: expiry.map(date_proto),
        supply_days: d.supply_days,
    };
    (details, product)
}

/// `base` with the fields named by `paths` taken from `new`.
pub fn apply_mask(
    base: &mut pb::AuthorisationDetails,
    new: &pb::AuthorisationDetails,
    paths: &[String],
) {
    for path in paths {
        match path.as_str() {
            "product" => base.product = new.product.clone(),
            "dose_instructions" => base.dose_instructions = new.dose_instructions.clone(),
            "quantity" => base.quantity = new.quantity.clone(),
            "quantity_unit" => base.quantity_unit = new.quantity_unit.clone(),
            "prescription_type" => base.prescription_type = new.prescription_type,
            "authorised_issues" => base.authorised_issues = new.authorised_issues,
            "review_date" => base.review_date = new.review_date,
            "expiry_date" => base.expiry_date = new.expiry_date,
            "supply_days" => base.supply_days = new.supply_days,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_changeable_path_takes_its_value_from_the_change() {
        let day = |d| {
            Some(date_proto(
                NaiveDate::from_ymd_opt(2027, 1, d).expect("a date"),
            ))
        };
        let new = pb::AuthorisationDetails {
            product: Some(pb::Coding {
                code: "39732311000001104".into(),
                display: String::new(),
            }),
            dose_instructions: "one at night".into(),
            quantity: "56".into(),
            quantity_unit: "capsule".into(),
            prescription_type: pb::PrescriptionType::Repeat as i32,
            authorised_issues: 3,
            review_date: day(2),
            expiry_date: day(3),
            supply_days: 28,
        };
        for path in CHANGEABLE_PATHS {
            let mut changed = pb::AuthorisationDetails::default();
            apply_mask(&mut changed, &new, &[path.to_owned()]);
            assert_ne!(changed, pb::AuthorisationDetails::default(), "{path}");
        }
        let mut all = pb::AuthorisationDetails::default();
        let paths: Vec<_> = CHANGEABLE_PATHS.iter().map(|p| p.to_string()).collect();
        apply_mask(&mut all, &new, &paths);
        assert_eq!(all, new);
    }
}
