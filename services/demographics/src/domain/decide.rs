//! Every rule of the demographics context: `decide` turns a command and the
//! current records into events, or refuses with the rule that failed.

use carelog_kernel::claims::ClaimChange;
use carelog_kernel::date::{PartialDate, uk_today};
use carelog_kernel::{Decision, PatientId};
use carelog_proto::demographics::v1 as pb;
use chrono::Utc;
use pb::event::Event as E;

use super::error::Error;
use super::record::PatientRecord;
use super::values::apply_mask;

/// The claim kind of NHS numbers.
pub const NHS_NUMBER_CLAIM: &str = "nhs-number";

/// A demographics command, already parsed and checked for shape at the edge.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Register {
        details: pb::PatientDetails,
    },
    Update {
        details: pb::PatientDetails,
        paths: Vec<String>,
        correction: bool,
        reason: String,
    },
    RecordDeath {
        date: PartialDate,
    },
    AmendDeath {
        date: Option<PartialDate>,
        reason: String,
    },
    Merge {
        survivor: PatientId,
        reason: String,
    },
    Unmerge {
        reason: String,
    },
    MarkRestricted,
    ClearRestricted {
        reason: String,
    },
    RecordSharingObjection,
    WithdrawSharingObjection {
        reason: String,
    },
}

fn event(e: E) -> pb::Event {
    pb::Event { event: Some(e) }
}

fn reason_required(reason: &str, field: &str) -> Result<(), Error> {
    carelog_kernel::edge::reason_given(field, reason).map_err(Error::Invalid)
}

pub fn open(id: PatientId, record: &PatientRecord) -> Result<(), Error> {
    if !record.is_registered() {
        return Err(Error::NotFound(id));
    }
    if let Some(survivor) = record.merged_into() {
        return Err(Error::Merged {
            patient: id,
            survivor: survivor.to_owned(),
        });
    }
    Ok(())
}

pub fn alive(id: PatientId, record: &PatientRecord) -> Result<(), Error> {
    open(id, record)?;
    if record.patient.deceased {
        return Err(Error::Deceased(id));
    }
    Ok(())
}

/// The claims of a change of NHS number from `before` to `after`. The new
/// number may be taken over from a record merged into this one (`record`):
/// the same person's, closed, so a survivor can adopt its duplicate's traced
/// number; and the old one, if it was so taken over, goes back to that
/// record, which still shows it.
fn nhs_claims(
    id: PatientId,
    record: &PatientRecord,
    before: &str,
    after: &str,
) -> Vec<ClaimChange> {
    let mut claims = Vec::new();
    if before != after && !before.is_empty() {
        claims.push(ClaimChange::Release {
            kind: NHS_NUMBER_CLAIM,
            value: before.to_owned(),
            owner: id,
            merged_in: record.merged_patient_ids(),
        });
    }
    if before != after && !after.is_empty() {
        claims.push(ClaimChange::Take {
            kind: NHS_NUMBER_CLAIM,
            field: "details.nhs_number",
            value: after.to_owned(),
            owner: id,
            merged_in: record.merged_patient_ids(),
        });
    }
    claims
}

fn birth(record: &PatientRecord) -> Option<PartialDate> {
    PartialDate::from_proto(record.details().birth_date.as_ref()).ok()
}

fn check_death_date(record: &PatientRecord, date: PartialDate, field: &str) -> Result<(), Error> {
    if date.is_after(uk_today()) {
        return Err(Error::invalid(field, "must not be in the future"));
    }
    if birth(record).is_some_and(|born| date.is_certainly_before(&born)) {
        return Err(Error::invalid(
            field,
            "must not be before the date of birth",
        ));
    }
    Ok(())
}

/// Decides a command on one patient's record.
pub fn decide(
    id: PatientId,
    record: &PatientRecord,
    command: &Command,
) -> Result<Decision<pb::Event>, Error> {
    let single = |events: Vec<pb::Event>| Decision::single(id, events);
    match command {
        Command::Register { details } => {
            if record.is_registered() {
                return Err(Error::invalid("patient_id", "is already registered"));
            }
            Ok(
                single(vec![event(E::PatientRegistered(pb::PatientRegistered {
                    details: Some(details.clone()),
                }))])
                .with_claims(nhs_claims(id, record, "", &details.nhs_number)),
            )
        }
        Command::Update {
            details,
            paths,
            correction,
            reason,
        } => {
            open(id, record)?;
            if *correction {
                reason_required(reason, "reason")?;
            } else if record.patient.deceased {
                return Err(Error::Deceased(id));
            }
            let mut updated = record.details().clone();
            apply_mask(&mut updated, details, paths);
            if let (Some(born), Some(died)) = (
                PartialDate::from_proto(updated.birth_date.as_ref()).ok(),
                PartialDate::from_proto(record.patient.date_of_death.as_ref()).ok(),
            ) && died.is_certainly_before(&born)
            {
                return Err(Error::invalid(
                    "details.birth_date",
                    "must not be after the date of death",
                ));
            }
            let before = record.details();
            // A new NHS number is not verified because the old one was: the
            // update says what its status is.
            if updated.nhs_number != before.nhs_number
                && !paths.iter().any(|p| p == "nhs_number_verification_status")
            {
                return Err(Error::invalid(
                    "update_mask.paths",
                    "a changed nhs_number needs nhs_number_verification_status in the mask too",
                ));
            }
            let changed: Vec<String> = paths
                .iter()
                .filter(|p| {
                    let mut probe = before.clone();
                    apply_mask(&mut probe, &updated, std::slice::from_ref(p));
                    probe != *before
                })
                .cloned()
                .collect();
            if changed.is_empty() {
                return Ok(single(vec![]));
            }
            let claims = nhs_claims(id, record, &before.nhs_number, &updated.nhs_number);
            Ok(single(vec![event(E::DemographicsUpdated(
                pb::DemographicsUpdated {
                    details: Some(updated),
                    changed_paths: changed,
                    correction: *correction,
                },
            ))])
            .with_claims(claims))
        }
        Command::RecordDeath { date } => {
            open(id, record)?;
            if record.patient.deceased {
                return Err(Error::AlreadyDeceased(id));
            }
            check_death_date(record, *date, "date_of_death")?;
            Ok(single(vec![event(E::DeathRecorded(pb::DeathRecorded {
                date_of_death: Some(date.to_proto()),
            }))]))
        }
        Command::AmendDeath { date, reason } => {
            open(id, record)?;
            if !record.patient.deceased {
                return Err(Error::NotDeceased(id));
            }
            reason_required(reason, "reason")?;
            match date {
                None => Ok(single(vec![event(E::DeathEnteredInError(
                    pb::DeathEnteredInError {},
                ))])),
                Some(date) => {
                    check_death_date(record, *date, "date_of_death")?;
                    if record.patient.date_of_death == Some(date.to_proto()) {
                        return Ok(single(vec![]));
                    }
                    Ok(single(vec![event(E::DeathAmended(pb::DeathAmended {
                        date_of_death: Some(date.to_proto()),
                    }))]))
                }
            }
        }
        Command::MarkRestricted => flag(
            id,
            record,
            !record.patient.restricted,
            E::RestrictionMarked(pb::RestrictionMarked {}),
        ),
        Command::ClearRestricted { reason } => {
            reason_required(reason, "reason")?;
            flag(
                id,
                record,
                record.patient.restricted,
                E::RestrictionCleared(pb::RestrictionCleared {}),
            )
        }
        Command::RecordSharingObjection => flag(
            id,
            record,
            !record.patient.sharing_objection,
            E::SharingObjectionRecorded(pb::SharingObjectionRecorded {}),
        ),
        Command::WithdrawSharingObjection { reason } => {
            reason_required(reason, "reason")?;
            flag(
                id,
                record,
                record.patient.sharing_objection,
                E::SharingObjectionWithdrawn(pb::SharingObjectionWithdrawn {}),
            )
        }
        Command::Merge { .. } | Command::Unmerge { .. } => Err(Error::invalid(
            "duplicate_patient_id",
            "a merge names two records; use decide_merge",
        )),
    }
}

/// A flag change on a living, open record; setting a flag already set
/// appends nothing.
fn flag(
    id: PatientId,
    record: &PatientRecord,
    changes: bool,
    e: E,
) -> Result<Decision<pb::Event>, Error> {
    alive(id, record)?;
    Ok(Decision::single(
        id,
        if changes { vec![event(e)] } else { vec![] },
    ))
}

/// Decides a merge or unmerge over the duplicate and the survivor.
pub fn decide_merge(
    (duplicate_id, duplicate): (PatientId, &PatientRecord),
    (survivor_id, survivor): (PatientId, &PatientRecord),
    command: &Command,
) -> Result<Decision<pb::Event>, Error> {
    let now = Utc::now();
    let change = |id: PatientId, e: E| carelog_kernel::Change {
        aggregate_id: id,
        events: vec![(event(e), now)],
    };
    match command {
        Command::Merge { reason, .. } => {
            reason_required(reason, "reason")?;
            if duplicate_id == survivor_id {
                return Err(Error::invalid(
                    "survivor_patient_id",
                    "must differ from the duplicate",
                ));
            }
            open(duplicate_id, duplicate)?;
            if !survivor.is_registered() {
                return Err(Error::NotFound(survivor_id));
            }
            if let Some(into) = survivor.merged_into() {
                return Err(Error::SurvivorMerged {
                    survivor: survivor_id,
                    into: into.to_owned(),
                });
            }
            if !duplicate.patient.merged_patient_ids.is_empty() {
                return Err(Error::HasMergedDuplicates(duplicate_id));
            }
            // The two records are one person: a restriction or an objection
            // on either protects both, and the merge moves neither flag.
            let flags = |p: &pb::Patient| {
                [
                    ("restricted (S flag)", p.restricted),
                    ("objecting to sharing", p.sharing_objection),
                ]
            };
            let pairs = flags(&duplicate.patient)
                .into_iter()
                .zip(flags(&survivor.patient));
            for ((flag, on_duplicate), (_, on_survivor)) in pairs {
                if on_duplicate != on_survivor {
                    let (flagged, unflagged) = if on_duplicate {
                        (duplicate_id, survivor_id)
                    } else {
                        (survivor_id, duplicate_id)
                    };
                    return Err(Error::MergeFlagDiffers {
                        flag,
                        flagged,
                        unflagged,
                    });
                }
            }
            Ok(Decision {
                changes: vec![
                    change(
                        duplicate_id,
                        E::PatientMerged(pb::PatientMerged {
                            survivor_patient_id: survivor_id.to_string(),
                        }),
                    ),
                    change(
                        survivor_id,
                        E::DuplicateMergedIn(pb::DuplicateMergedIn {
                            duplicate_patient_id: duplicate_id.to_string(),
                        }),
                    ),
                ],
                claims: vec![],
            })
        }
        Command::Unmerge { reason } => {
            reason_required(reason, "reason")?;
            if !duplicate.is_registered() {
                return Err(Error::NotFound(duplicate_id));
            }
            if duplicate.merged_into() != Some(survivor_id.to_string().as_str()) {
                return Err(Error::NotMerged(duplicate_id));
            }
            // The duplicate takes its NHS number back: it still holds it
            // unless the survivor took it over while they were merged, and
            // then the survivor must give it up first.
            let number = &duplicate.details().nhs_number;
            let claims = (!number.is_empty())
                .then(|| ClaimChange::Take {
                    kind: NHS_NUMBER_CLAIM,
                    field: "duplicate.details.nhs_number",
                    value: number.clone(),
                    owner: duplicate_id,
                    merged_in: Vec::new(),
                })
                .into_iter()
                .collect();
            Ok(Decision {
                changes: vec![
                    change(
                        duplicate_id,
                        E::PatientUnmerged(pb::PatientUnmerged {
                            survivor_patient_id: survivor_id.to_string(),
                        }),
                    ),
                    change(
                        survivor_id,
                        E::DuplicateUnmerged(pb::DuplicateUnmerged {
                            duplicate_patient_id: duplicate_id.to_string(),
                        }),
                    ),
                ],
                claims,
            })
        }
        _ => Err(Error::invalid("command", "is not a merge")),
    }
}
