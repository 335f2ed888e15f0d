//! Why a demographics command is refused.

use carelog_kernel::{PatientId, Violations};
use thiserror::Error;

#[derive(Debug, Clone, Error)]
pub enum Error {
    #[error("invalid request")]
    Invalid(Violations),
    #[error("patient {0} is not registered")]
    NotFound(PatientId),
    #[error("patient {patient} was merged into patient {survivor}; act on the survivor")]
    Merged {
        patient: PatientId,
        survivor: String,
    },
    #[error(
        "patient {0} is recorded as deceased: only corrections (correction with a reason) and amendments of the death are accepted"
    )]
    Deceased(PatientId),
    #[error("patient {0} is already recorded as deceased; use AmendDeath to change the date")]
    AlreadyDeceased(PatientId),
    #[error("patient {0} is not recorded as deceased")]
    NotDeceased(PatientId),
    #[error("patient {0} is not merged into another record")]
    NotMerged(PatientId),
    #[error("cannot merge into patient {survivor}: it was itself merged into patient {into}")]
    SurvivorMerged { survivor: PatientId, into: String },
    #[error("patient {0} has duplicates merged into it; unmerge them before merging it")]
    HasMergedDuplicates(PatientId),
    #[error(
        "patient {flagged} is {flag} and patient {unflagged} is not: record it on both before merging them, so that neither record shows what it protects"
    )]
    MergeFlagDiffers {
        flag: &'static str,
        flagged: PatientId,
        unflagged: PatientId,
    },
}

impl Error {
    pub fn invalid(field: &str, rule: &str) -> Self {
        let mut v = Violations::new();
        v.add(field, rule);
        Self::Invalid(v)
    }
}
