//! Checking an entry's content at the edge (or, for an edit, after the
//! mask is applied): every field violation is named with its path.

use carelog_kernel::Violations;
use carelog_kernel::edge::check_text;
use carelog_kernel::snomed::ConceptId;
use carelog_proto::consultations::v1 as pb;
use chrono::{DateTime, Utc};
use pb::EntryKind as K;

use super::ucum;

/// The unit of a blood pressure.
pub const MM_HG: &str = "mm[Hg]";
/// Longest free text of an entry.
pub const MAX_TEXT: usize = 10_000;
/// Longest display term and topic title.
pub const MAX_TITLE: usize = 200;
/// Paths of `EntryContent` an edit or amendment may change (`kind` never).
pub const UPDATABLE_PATHS: &[&str] = &[
    "concept_id",
    "display",
    "text",
    "observation",
    "problem",
    "problem.status",
    "problem.significance",
    "effective_time",
];

/// Checks the shape and the rules of an entry's content; `field` is its
/// path in the request (e.g. `entry`). `now` bounds the clinical time.
pub fn check_content(c: &pb::EntryContent, field: &str, now: DateTime<Utc>, v: &mut Violations) {
    let kind = K::try_from(c.kind).unwrap_or(K::Unspecified);
    if kind == K::Unspecified {
        v.add(
            format!("{field}.kind"),
            "is required: history, examination, problem, observation, procedure, plan or comment",
        );
    }
    let concept = c.concept_id.trim();
    if concept.is_empty() {
        if kind != K::Comment {
            v.add(
                format!("{field}.concept_id"),
                "is required: a SNOMED CT concept id (only a comment may go without)",
            );
        }
    } else {
        v.check(&format!("{field}.concept_id"), ConceptId::parse(concept));
        if c.display.trim().is_empty() {
            v.add(
                format!("{field}.display"),
                "is required with a concept id: its display term",
            );
        }
    }
    check_text(&format!("{field}.display"), &c.display, MAX_TITLE, v);
    check_text(&format!("{field}.text"), &c.text, MAX_TEXT, v);
    if kind == K::Comment && c.text.trim().is_empty() {
        v.add(format!("{field}.text"), "is required for a comment");
    }
    match (kind, &c.observation) {
        (K::Observation, None) => v.add(
            format!("{field}.observation"),
            "is required for an observation: a quantity with a UCUM unit or a blood pressure",
        ),
        (K::Observation, Some(o)) => check_observation(o, &format!("{field}.observation"), v),
        (_, Some(_)) => v.add(
            format!("{field}.observation"),
            "is only for an observation entry",
        ),
        (_, None) => {}
    }
    match (kind, &c.problem) {
        (K::Problem, None) => v.add(
            format!("{field}.problem"),
            "is required for a problem: status and significance",
        ),
        (K::Problem, Some(p)) => {
            if pb::ProblemStatus::try_from(p.status).unwrap_or_default()
                == pb::ProblemStatus::Unspecified
            {
                v.add(
                    format!("{field}.problem.status"),
                    "is required: active, inactive or resolved",
                );
            }
            if pb::ProblemSignificance::try_from(p.significance).unwrap_or_default()
                == pb::ProblemSignificance::Unspecified
            {
                v.add(
                    format!("{field}.problem.significance"),
                    "is required: major or minor",
                );
            }
        }
        (_, Some(_)) => v.add(format!("{field}.problem"), "is only for a problem entry"),
        (_, None) => {}
    }
    if let Some(at) = c.effective_time.as_ref() {
        match carelog_kernel::edge::instant(at) {
            Ok(at) if at > now + chrono::Duration::minutes(1) => v.add(
                format!("{field}.effective_time"),
                "must not be in the future",
            ),
            Ok(_) => {}
            Err(rule) => v.add(format!("{field}.effective_time"), rule),
        }
    }
}

fn check_observation(o: &pb::ObservationValue, field: &str, v: &mut Violations) {
    use pb::observation_value::Value;
    match &o.value {
        None => v.add(
            field,
            "needs a value: a quantity with a UCUM unit or a blood pressure",
        ),
        Some(Value::Quantity(q)) => {
            if !is_decimal(&q.value) {
                v.add(
                    format!("{field}.quantity.value"),
                    "must be a decimal number, e.g. 72.5",
                );
            }
            v.check(&format!("{field}.quantity.unit"), ucum::parse(&q.unit));
        }
        Some(Value::BloodPressure(bp)) => {
            let f = format!("{field}.blood_pressure");
            for (name, n) in [("systolic", bp.systolic), ("diastolic", bp.diastolic)] {
                if !(1..=400).contains(&n) {
                    v.add(format!("{f}.{name}"), "must be 1 to 400 mm[Hg]");
                }
            }
            if bp.systolic <= bp.diastolic {
                v.add(format!("{f}.systolic"), "must be above the diastolic");
            }
            if !bp.unit.is_empty() && bp.unit != MM_HG {
                v.add(format!("{f}.unit"), "must be mm[Hg] (or left empty)");
            }
        }
    }
}

/// A decimal: optional '-', digits, optionally '.' and digits; at most 18
/// digits.
pub fn is_decimal(text: &str) -> bool {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = body.split_once('.').unwrap_or((body, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && digits(fraction) && whole.len() + fraction.len() <= 18
}

/// The content with the masked paths taken from `new`.
pub fn apply_mask(
    old: &pb::EntryContent,
    new: &pb::EntryContent,
    paths: &[String],
) -> pb::EntryContent {
    let mut merged = old.clone();
    for path in paths {
        match path.as_str() {
            "concept_id" => merged.concept_id = new.concept_id.trim().to_owned(),
            "display" => merged.display = new.display.trim().to_owned(),
            "text" => merged.text = new.text.clone(),
            "observation" => merged.observation = new.observation.clone(),
            "problem" => merged.problem = new.problem,
            "problem.status" => {
                let status = new.problem.map(|p| p.status).unwrap_or_default();
                merged.problem.get_or_insert_with(Default::default).status = status;
            }
            "problem.significance" => {
                let significance = new.problem.map(|p| p.significance).unwrap_or_default();
                merged
                    .problem
                    .get_or_insert_with(Default::default)
                    .significance = significance;
            }
            "effective_time" => merged.effective_time = new.effective_time,
            _ => {}
        }
    }
    merged
}

/// Normalises a checked content: trimmed concept and display, the blood
/// pressure's unit spelled out.
pub fn normalised(mut c: pb::EntryContent) -> pb::EntryContent {
    c.concept_id = c.concept_id.trim().to_owned();
    c.display = c.display.trim().to_owned();
    if let Some(pb::ObservationValue {
        value: Some(pb::observation_value::Value::BloodPressure(bp)),
    }) = c.observation.as_mut()
    {
        bp.unit = MM_HG.to_owned();
    }
    c
}
