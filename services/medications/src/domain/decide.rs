//! Every rule of the medications context: `decide` turns a command and the
//! patient's medication record into events, or refuses with the rule that
//! failed. Pure: today's date, the patient's birth date and the drug
//! catalogue are given to it.

use carelog_kernel::Violations;
use carelog_kernel::confidential;
use carelog_kernel::date::PartialDate;
use carelog_kernel::ids::{AllergyId, AuthorisationId, IssueId};
use carelog_proto::medications::v1 as pb;
use chrono::NaiveDate;
use pb::event::Event as E;

use super::error::Error;
use super::record::MedicationRecord;
use super::values::{apply_mask, check_allergy, check_authorisation, date_proto, full_date};
use crate::catalogue::{DrugCatalogue, Product};

/// What a decision needs besides the record.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub today: NaiveDate,
    pub birth_date: Option<PartialDate>,
    pub catalogue: &'a DrugCatalogue,
    /// ODS code of the caller's organisation (the author of what is
    /// recorded).
    pub organisation: &'a str,
    /// The allergies of records merged into this patient's (the same
    /// person's closed records): every safety check considers them.
    pub merged_allergies: &'a [pb::Allergy],
}

/// A medications command; ids of new resources are chosen at the edge.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    RecordAllergy {
        allergy_id: AllergyId,
        details: pb::AllergyDetails,
        /// Visible only to users of the author's organisation.
        confidential: bool,
    },
    ResolveAllergy {
        allergy_id: AllergyId,
        resolved_on: Option<PartialDate>,
        reason: String,
    },
    MarkAllergyEnteredInError {
        allergy_id: AllergyId,
        reason: String,
    },
    Authorise {
        authorisation_id: AuthorisationId,
        details: pb::AuthorisationDetails,
        override_reason: String,
        /// Visible (with its issues) only to users of the author's
        /// organisation.
        confidential: bool,
    },
    Issue {
        issue_id: IssueId,
        authorisation_id: AuthorisationId,
        /// Why an allergy recorded since the authorisation is overridden.
        override_reason: String,
    },
    Change {
        authorisation_id: AuthorisationId,
        new_authorisation_id: AuthorisationId,
        details: pb::AuthorisationDetails,
        paths: Vec<String>,
        reason: String,
        override_reason: String,
    },
    Discontinue {
        authorisation_id: AuthorisationId,
        reason: String,
    },
    Review {
        /// Empty: every active repeat.
        authorisation_ids: Vec<AuthorisationId>,
        next_review_date: Option<carelog_proto::kernel::v1::PartialDate>,
        note: String,
    },
}

fn event(e: E) -> pb::Event {
    pb::Event { event: Some(e) }
}

fn reason_required(reason: &str, field: &str) -> Result<(), Error> {
    carelog_kernel::edge::reason_given(field, reason).map_err(Error::Invalid)
}

/// The allergy `id` as the caller's organisation may see it: a confidential
/// allergy of another organisation is, to the caller, not there (ADR 0024).
fn allergy<'r>(
    record: &'r MedicationRecord,
    id: &str,
    organisation: &str,
) -> Result<&'r pb::Allergy, Error> {
    record
        .allergy(id)
        .filter(|a| {
            confidential::visible_to_organisation(
                organisation,
                a.confidential,
                &a.author_organisation_ods,
            )
        })
        .ok_or_else(|| Error::AllergyNotFound(id.to_owned()))
}

fn active_allergy<'r>(
    record: &'r MedicationRecord,
    id: &AllergyId,
    organisation: &str,
) -> Result<&'r pb::Allergy, Error> {
    let id = id.to_string();
    let allergy = allergy(record, &id, organisation)?;
    match pb::AllergyStatus::try_from(allergy.status).unwrap_or_default() {
        pb::AllergyStatus::Active => Ok(allergy),
        pb::AllergyStatus::EnteredInError => Err(Error::AllergyEnteredInError { id }),
        _ => Err(Error::AllergyNotActive {
            id,
            status: "resolved",
        }),
    }
}

/// The authorisation `id` as the caller's organisation may see it (a
/// confidential one of another organisation is not there for it).
fn authorisation<'r>(
    record: &'r MedicationRecord,
    id: &AuthorisationId,
    organisation: &str,
) -> Result<&'r pb::Authorisation, Error> {
    let id = id.to_string();
    record
        .authorisation(&id)
        .filter(|a| {
            confidential::visible_to_organisation(
                organisation,
                a.confidential,
                &a.author_organisation_ods,
            )
        })
        .ok_or(Error::AuthorisationNotFound(id))
}

fn active_authorisation<'r>(
    record: &'r MedicationRecord,
    id: &AuthorisationId,
    organisation: &str,
) -> Result<&'r pb::Authorisation, Error> {
    let a = authorisation(record, id, organisation)?;
    if a.status != pb::AuthorisationStatus::Active as i32 {
        return Err(Error::AuthorisationStopped(id.to_string()));
    }
    Ok(a)
}

/// A change that leaves the authorisation as it was.
fn changes_nothing() -> Error {
    Error::invalid(
        "update_mask",
        "changes nothing: name a field with a new value",
    )
}

fn is_repeat(a: &pb::Authorisation) -> bool {
    a.details
        .as_ref()
        .is_some_and(|d| d.prescription_type == pb::PrescriptionType::Repeat as i32)
}

/// Whether an active authorisation can still be issued: issues left and not
/// expired. One that cannot (last month's acute, a used-up repeat) is no
/// duplicate of a new prescription of its product.
fn still_issuable(a: &pb::Authorisation, today: NaiveDate) -> bool {
    let details = a.details.clone().unwrap_or_default();
    a.issues_made < details.authorised_issues.max(1)
        && day(details.expiry_date.as_ref()).is_none_or(|expiry| expiry >= today)
}

/// The active allergies, of this record and of the records merged into it,
/// to a substance `matches` says a product contains, each with its
/// substance.
fn allergy_conflicts<'r>(
    record: &'r MedicationRecord,
    facts: &'r Facts<'_>,
    matches: impl Fn(&str) -> bool + 'r,
) -> impl Iterator<Item = (&'r pb::Allergy, pb::Coding)> + 'r {
    let merged = facts
        .merged_allergies
        .iter()
        .filter(|a| a.status == pb::AllergyStatus::Active as i32);
    record
        .active_allergies()
        .chain(merged)
        .filter_map(move |allergy| {
            let substance = allergy
                .details
                .as_ref()
                .and_then(|d| d.substance.clone())
                .unwrap_or_default();
            matches(&substance.code).then_some((allergy, substance))
        })
}

/// An allergy conflict: the refusal, and the override recorded when the
/// prescriber gives a reason. An allergy the prescriber's organisation may
/// not see (recorded confidentially by another) still refuses, without
/// saying which allergy or substance it is (ADR 0024).
fn allergy_conflict(
    allergy: &pb::Allergy,
    substance: pb::Coding,
    product: &str,
    facts: &Facts<'_>,
    reason: &str,
) -> (Error, pb::SafetyOverride) {
    let refusal = if shown(
        facts,
        allergy.confidential,
        &allergy.author_organisation_ods,
    ) {
        Error::AllergyConflict {
            allergy_id: allergy.allergy_id.clone(),
            substance_code: substance.code.clone(),
            substance_display: substance.display.clone(),
            product: product.to_owned(),
        }
    } else {
        Error::ConfidentialAllergyConflict {
            product: product.to_owned(),
        }
    };
    (
        refusal,
        pb::SafetyOverride {
            kind: pb::safety_override::Kind::Allergy as i32,
            allergy_id: allergy.allergy_id.clone(),
            substance: Some(substance),
            reason: reason.to_owned(),
            confidential: allergy.confidential,
            author_organisation_ods: allergy.author_organisation_ods.clone(),
            ..Default::default()
        },
    )
}

/// Whether the caller's organisation may see an item with this marking.
fn shown(facts: &Facts<'_>, confidential: bool, author_organisation: &str) -> bool {
    confidential::visible_to_organisation(facts.organisation, confidential, author_organisation)
}

/// Every conflict refuses together, naming each, unless the prescriber gave
/// a reason: then each is recorded as overridden by the prescriber's
/// organisation.
fn overridden(
    conflicts: Vec<(Error, pb::SafetyOverride)>,
    reason: &str,
    facts: &Facts<'_>,
) -> Result<Vec<pb::SafetyOverride>, Error> {
    let (refusals, overrides): (Vec<_>, Vec<_>) = conflicts.into_iter().unzip();
    match Error::conflicts(refusals) {
        Some(refused) if reason.is_empty() => Err(refused),
        _ => Ok(overrides
            .into_iter()
            .map(|o| pb::SafetyOverride {
                prescriber_organisation_ods: facts.organisation.to_owned(),
                ..o
            })
            .collect()),
    }
}

/// The allergy and duplicate checks on a product about to be authorised:
/// refusals, or the overrides to record when the prescriber gave a reason.
fn safety_checks(
    record: &MedicationRecord,
    facts: &Facts<'_>,
    product: &Product,
    replacing: Option<&str>,
    override_reason: &str,
) -> Result<Vec<pb::SafetyOverride>, Error> {
    let reason = override_reason.trim();
    let mut conflicts: Vec<_> = allergy_conflicts(record, facts, |code| product.contains(code))
        .map(|(allergy, substance)| {
            allergy_conflict(allergy, substance, &product.name, facts, reason)
        })
        .collect();
    let duplicates = record.active_authorisations().filter(|a| {
        Some(a.authorisation_id.as_str()) != replacing
            && still_issuable(a, facts.today)
            && a.details
                .as_ref()
                .and_then(|d| d.product.as_ref())
                .is_some_and(|p| p.code == product.code.as_str())
    });
    for duplicate in duplicates {
        // Another organisation's confidential authorisation still counts,
        // without saying which it is.
        let refusal = if shown(
            facts,
            duplicate.confidential,
            &duplicate.author_organisation_ods,
        ) {
            Error::DuplicatePrescription {
                authorisation_id: duplicate.authorisation_id.clone(),
                product: product.name.clone(),
            }
        } else {
            Error::ConfidentialDuplicate {
                product: product.name.clone(),
            }
        };
        conflicts.push((
            refusal,
            pb::SafetyOverride {
                kind: pb::safety_override::Kind::Duplicate as i32,
                authorisation_id: duplicate.authorisation_id.clone(),
                reason: reason.to_owned(),
                confidential: duplicate.confidential,
                author_organisation_ods: duplicate.author_organisation_ods.clone(),
                ..Default::default()
            },
        ));
    }
    overridden(conflicts, reason, facts)
}

/// The safety checks on an issue: allergies to the authorised product that
/// its authorisation (or an earlier issue) did not override, recorded
/// since; an issue of the same authorisation already made today, which a
/// second prescriber (or a second click under a new request id) would
/// otherwise double; and an issue before three quarters of the last one's
/// supply have passed. The last issue is the authorisation's own or, before
/// its first, that of the one of the same product it replaced.
fn issue_checks(
    record: &MedicationRecord,
    facts: &Facts<'_>,
    a: &pb::Authorisation,
    override_reason: &str,
) -> Result<Vec<pb::SafetyOverride>, Error> {
    let reason = override_reason.trim();
    let product = a
        .details
        .as_ref()
        .and_then(|d| d.product.clone())
        .unwrap_or_default();
    let ingredients = record
        .ingredients
        .get(&a.authorisation_id)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let acknowledged = |allergy: &str| {
        a.overrides
            .iter()
            .any(|o| o.kind == pb::safety_override::Kind::Allergy as i32 && o.allergy_id == allergy)
    };
    let mut conflicts: Vec<_> = allergy_conflicts(record, facts, |code| {
        !code.is_empty() && (code == product.code || ingredients.iter().any(|i| i == code))
    })
    .filter(|(allergy, _)| !acknowledged(&allergy.allergy_id))
    .map(|(allergy, substance)| {
        allergy_conflict(allergy, substance, &product.display, facts, reason)
    })
    .collect();
    let again = |kind: pb::safety_override::Kind| pb::SafetyOverride {
        kind: kind as i32,
        authorisation_id: a.authorisation_id.clone(),
        reason: reason.to_owned(),
        ..Default::default()
    };
    let issued = last_issued(record, a);
    let last = issued.and_then(|i| day(i.last_issued_on.as_ref()));
    let issued = issued.unwrap_or(a);
    if last == Some(facts.today) {
        conflicts.push((
            Error::IssuedToday {
                id: a.authorisation_id.clone(),
                issued: issued.authorisation_id.clone(),
                issue: issued.issues_made,
            },
            again(pb::safety_override::Kind::IssuedToday),
        ));
    } else if let Some((last, supply_days)) =
        last.zip(issued.details.as_ref().map(|d| d.supply_days))
        && let Some(due) = issuable_again(last, supply_days)
        && facts.today < due
    {
        conflicts.push((
            Error::IssuedEarly {
                id: a.authorisation_id.clone(),
                issued: issued.authorisation_id.clone(),
                last_issued: last.to_string(),
                supply_days,
                due: due.to_string(),
            },
            again(pb::safety_override::Kind::IssuedEarly),
        ));
    }
    overridden(conflicts, reason, facts)
}

/// The authorisation whose last issue the next issue of `a` follows: `a`
/// once issued; before that, the authorisation of the same product that
/// `a` replaced (`ChangeMedication` of dose, quantity or supply), and so
/// back, so that a change does not restart the count of what the patient
/// already holds. A change of product starts afresh. None when nothing of
/// the line was issued.
fn last_issued<'r>(
    record: &'r MedicationRecord,
    a: &'r pb::Authorisation,
) -> Option<&'r pb::Authorisation> {
    let product = |a: &pb::Authorisation| {
        a.details
            .as_ref()
            .and_then(|d| d.product.as_ref())
            .map(|p| p.code.clone())
    };
    let mut line = a;
    // Each step goes to another authorisation: bounded by their number.
    for _ in 0..=record.authorisations.len() {
        if line.last_issued_on.is_some() {
            return Some(line);
        }
        let replaced = record.authorisation(&line.replaces_authorisation_id)?;
        if product(replaced) != product(a) {
            return None;
        }
        line = replaced;
    }
    None
}

/// The first day a repeat last issued on `last` for `supply_days` may be
/// issued again without a reason: once three quarters of the supply have
/// passed, in whole days (a 28-day supply 21 days on, a 30-day supply 23).
/// None when no supply is stated.
fn issuable_again(last: NaiveDate, supply_days: u32) -> Option<NaiveDate> {
    (supply_days > 0).then(|| last + chrono::Days::new((u64::from(supply_days) * 3).div_ceil(4)))
}

/// The authorisation event for checked details, after the safety checks.
fn authorise(
    record: &MedicationRecord,
    facts: &Facts<'_>,
    id: AuthorisationId,
    details: &pb::AuthorisationDetails,
    field: &str,
    replacing: Option<&str>,
    override_reason: &str,
) -> Result<pb::MedicationAuthorised, Error> {
    let mut v = Violations::new();
    let (details, product) =
        check_authorisation(details, field, facts.today, facts.catalogue, &mut v);
    if !v.is_empty() {
        return Err(Error::Invalid(v));
    }
    let product = product.ok_or_else(|| {
        Error::invalid(
            &format!("{field}.product.code"),
            "is not in the drug catalogue",
        )
    })?;
    let overrides = safety_checks(record, facts, product, replacing, override_reason)?;
    Ok(pb::MedicationAuthorised {
        authorisation_id: id.to_string(),
        details: Some(details),
        authorised_on: Some(date_proto(facts.today)),
        replaces_authorisation_id: replacing.unwrap_or_default().to_owned(),
        overrides,
        ingredient_codes: product
            .ingredients
            .iter()
            .map(ToString::to_string)
            .collect(),
        ..Default::default()
    })
}

fn day(date: Option<&carelog_proto::kernel::v1::PartialDate>) -> Option<NaiveDate> {
    PartialDate::from_proto(date).ok().map(|d| d.earliest())
}

/// Decides a command on one patient's medication record.
pub fn decide(
    record: &MedicationRecord,
    facts: &Facts<'_>,
    command: &Command,
) -> Result<Vec<pb::Event>, Error> {
    let today = date_proto(facts.today);
    match command {
        Command::RecordAllergy {
            allergy_id,
            details,
            confidential,
        } => {
            let mut v = Violations::new();
            let details = check_allergy(details, "allergy", facts.today, facts.birth_date, &mut v);
            if !v.is_empty() {
                return Err(Error::Invalid(v));
            }
            if record.allergy(&allergy_id.to_string()).is_some() {
                return Err(Error::invalid("allergy_id", "is already recorded"));
            }
            Ok(vec![event(E::AllergyRecorded(pb::AllergyRecorded {
                allergy_id: allergy_id.to_string(),
                details: Some(details),
                recorded_on: Some(today),
                confidential: *confidential,
                author_organisation_ods: facts.organisation.to_owned(),
            }))])
        }
        Command::ResolveAllergy {
            allergy_id,
            resolved_on,
            reason,
        } => {
            reason_required(reason, "reason")?;
            if let Some(date) = resolved_on
                && date.is_after(facts.today)
            {
                return Err(Error::invalid("resolved_on", "must not be in the future"));
            }
            let allergy = active_allergy(record, allergy_id, facts.organisation)?;
            if let (Some(date), Some(onset)) = (
                resolved_on,
                allergy
                    .details
                    .as_ref()
                    .and_then(|d| PartialDate::from_proto(d.onset.as_ref()).ok()),
            ) && date.is_certainly_before(&onset)
            {
                return Err(Error::invalid(
                    "resolved_on",
                    "must not be before the onset",
                ));
            }
            Ok(vec![event(E::AllergyResolved(pb::AllergyResolved {
                allergy_id: allergy_id.to_string(),
                resolved_on: Some(resolved_on.map(PartialDate::to_proto).unwrap_or(today)),
                reason: reason.trim().to_owned(),
            }))])
        }
        Command::MarkAllergyEnteredInError { allergy_id, reason } => {
            reason_required(reason, "reason")?;
            let id = allergy_id.to_string();
            let allergy = allergy(record, &id, facts.organisation)?;
            if allergy.status == pb::AllergyStatus::EnteredInError as i32 {
                return Err(Error::AllergyEnteredInError { id });
            }
            Ok(vec![event(E::AllergyEnteredInError(
                pb::AllergyEnteredInError {
                    allergy_id: id,
                    reason: reason.trim().to_owned(),
                },
            ))])
        }
        Command::Authorise {
            authorisation_id,
            details,
            override_reason,
            confidential,
        } => {
            if record
                .authorisation(&authorisation_id.to_string())
                .is_some()
            {
                return Err(Error::invalid("authorisation_id", "is already authorised"));
            }
            let authorised = pb::MedicationAuthorised {
                confidential: *confidential,
                author_organisation_ods: facts.organisation.to_owned(),
                ..authorise(
                    record,
                    facts,
                    *authorisation_id,
                    details,
                    "authorisation",
                    None,
                    override_reason,
                )?
            };
            Ok(vec![event(E::MedicationAuthorised(authorised))])
        }
        Command::Issue {
            issue_id,
            authorisation_id,
            override_reason,
        } => {
            let a = active_authorisation(record, authorisation_id, facts.organisation)?;
            let id = authorisation_id.to_string();
            let details = a.details.clone().unwrap_or_default();
            if let Some(expiry) = day(details.expiry_date.as_ref())
                && expiry < facts.today
            {
                return Err(Error::AuthorisationExpired {
                    id,
                    expiry: expiry.to_string(),
                });
            }
            if a.issues_made >= details.authorised_issues.max(1) {
                return Err(Error::IssuesUsedUp {
                    id,
                    authorised: details.authorised_issues.max(1),
                });
            }
            if let Some(review) = day(details.review_date.as_ref())
                && review < facts.today
            {
                return Err(Error::ReviewOverdue {
                    id,
                    review_date: review.to_string(),
                });
            }
            let overrides = issue_checks(record, facts, a, override_reason)?;
            Ok(vec![event(E::PrescriptionIssued(pb::PrescriptionIssued {
                issue_id: issue_id.to_string(),
                authorisation_id: id,
                issue_number: a.issues_made + 1,
                issued_on: Some(today),
                overrides,
            }))])
        }
        Command::Change {
            authorisation_id,
            new_authorisation_id,
            details,
            paths,
            reason,
            override_reason,
        } => {
            reason_required(reason, "reason")?;
            let old = active_authorisation(record, authorisation_id, facts.organisation)?;
            let mut changed = old.details.clone().unwrap_or_default();
            apply_mask(&mut changed, details, paths);
            // Said at once when plain, before any check of the details.
            if Some(&changed) == old.details.as_ref() {
                return Err(changes_nothing());
            }
            let old_id = authorisation_id.to_string();
            // The new authorisation keeps the old one's marking; its author
            // is the organisation that changed it.
            let authorised = pb::MedicationAuthorised {
                confidential: old.confidential,
                author_organisation_ods: facts.organisation.to_owned(),
                ..authorise(
                    record,
                    facts,
                    *new_authorisation_id,
                    &changed,
                    "authorisation",
                    Some(&old_id),
                    override_reason,
                )?
            };
            // Compared as checked (the product's name from the catalogue,
            // text trimmed): a change only in what input ignores is none.
            if authorised.details == old.details {
                return Err(changes_nothing());
            }
            Ok(vec![
                event(E::MedicationDiscontinued(pb::MedicationDiscontinued {
                    authorisation_id: old_id,
                    discontinued_on: Some(today),
                    reason: reason.trim().to_owned(),
                    replaced_by_authorisation_id: new_authorisation_id.to_string(),
                })),
                event(E::MedicationAuthorised(authorised)),
            ])
        }
        Command::Discontinue {
            authorisation_id,
            reason,
        } => {
            reason_required(reason, "reason")?;
            active_authorisation(record, authorisation_id, facts.organisation)?;
            Ok(vec![event(E::MedicationDiscontinued(
                pb::MedicationDiscontinued {
                    authorisation_id: authorisation_id.to_string(),
                    discontinued_on: Some(today),
                    reason: reason.trim().to_owned(),
                    replaced_by_authorisation_id: String::new(),
                },
            ))])
        }
        Command::Review {
            authorisation_ids,
            next_review_date,
            note,
        } => {
            let mut v = Violations::new();
            if let Some(next) = full_date("next_review_date", next_review_date.as_ref(), &mut v)
                && next <= facts.today
            {
                v.add("next_review_date", "must be after today");
            }
            carelog_kernel::edge::check_text("note", note, 2000, &mut v);
            if !v.is_empty() {
                return Err(Error::Invalid(v));
            }
            let next = day(next_review_date.as_ref());
            let expires_before_next = |a: &pb::Authorisation| {
                let expiry = a.details.as_ref().and_then(|d| day(d.expiry_date.as_ref()));
                expiry.zip(next).is_some_and(|(expiry, next)| next > expiry)
            };
            let ids: Vec<String> = if authorisation_ids.is_empty() {
                // Every repeat that runs on past the next review: one that
                // can no longer be issued, or ends before it, is not due
                // for review (the answer lists what was reviewed).
                record
                    .active_authorisations()
                    .filter(|a| {
                        is_repeat(a)
                            && shown(facts, a.confidential, &a.author_organisation_ods)
                            && still_issuable(a, facts.today)
                            && !expires_before_next(a)
                    })
                    .map(|a| a.authorisation_id.clone())
                    .collect()
            } else {
                let mut ids = Vec::new();
                for (i, id) in authorisation_ids.iter().enumerate() {
                    let a = active_authorisation(record, id, facts.organisation)?;
                    if !is_repeat(a) {
                        v.add(
                            format!("authorisation_ids[{i}]"),
                            "is an acute prescription: only repeats are reviewed",
                        );
                    }
                    // Not due after it has expired: it would then fail its
                    // own rule (review not after expiry) at its next change.
                    if expires_before_next(a) {
                        v.add(
                            "next_review_date",
                            format!(
                                "must not be after the expiry of authorisation {id}; give an earlier date, or change its expiry"
                            ),
                        );
                    }
                    ids.push(id.to_string());
                }
                ids
            };
            if !v.is_empty() {
                return Err(Error::Invalid(v));
            }
            if ids.is_empty() {
                return Err(Error::NothingToReview);
            }
            Ok(vec![event(E::MedicationReviewed(pb::MedicationReviewed {
                authorisation_ids: ids,
                reviewed_on: Some(today),
                next_review_date: *next_review_date,
                note: note.trim().to_owned(),
            }))])
        }
    }
}
